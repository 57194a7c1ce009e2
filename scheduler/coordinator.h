// The coordinator (MPI rank 0): owns the scheduling state and the control channel.
//
// One loop, run on the thread that owns MPI, does everything that changes state:
//   1. receive worker messages (register, heartbeat, progress, result);
//   2. take commands from other threads (submit, cancel) off a queue;
//   3. place queued trials on idle workers (FIFO by sweep, then grid index,
//      respecting each sweep's max_concurrent_trials); trials that take only a few
//      milliseconds are assigned a few ahead per worker so the worker never waits for
//      the coordinator's round trip;
//   4. declare silent workers lost and queue their trials again;
//   5. commit all changes of this iteration as ONE synced RocksDB batch (group commit);
//   6. only then act: send Assign/Cancel messages and answer the waiting commands.
// So a change is durable before anyone can observe it, and a crash at any point loses
// nothing that was acknowledged.
//
// Recovery (Recover(), before Run()): sweeps still "running" are loaded; their trials
// that were "running" go back to "queued" (the next assignment is attempt + 1);
// terminal trials are never touched again. A trial is one grid point, so a sweep never
// runs the same point twice: only attempts of the same trial repeat, one at a time.
//
// Thread-safety: Submit, Cancel, Workers and RequestStop may be called from any thread
// (HTTP handlers); Recover and Run from the MPI thread only.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/ids.h"
#include "common/status.h"
#include "monitoring/metrics.h"
#include "scheduler/index_builder.h"
#include "scheduler/sweep_spec.h"
#include "scheduler/trial_state_machine.h"
#include "store/records.h"
#include "store/state_store.h"
#include "worker/protocol.h"

namespace lattice {

struct CoordinatorOptions {
  // Trials whose attempts take less than this on average (milliseconds) are assigned
  // ahead, up to `max_pipeline` per worker, to hide the dispatch round trip. Default: 20.
  double pipeline_below_ms = 20;
  // Most trials one worker holds at once when pipelining. Default: 8.
  int max_pipeline = 8;
  // Milliseconds without any message before a busy worker is declared lost and its
  // trial queued again. Default: 60000.
  int worker_timeout_ms = 60000;
  // Set by a signal handler to stop the loop (workers get Shutdown). Not owned.
  const std::atomic<bool>* stop = nullptr;
  // Builds the index of finished embed sweeps. Not owned; null: embed sweeps fail.
  IndexBuilder* index_builder = nullptr;
};

// What the API shows about one worker.
struct WorkerView {
  int rank = 0;
  std::string host;
  std::string state;             // "starting" | "idle" | "busy" | "lost"
  std::optional<TrialId> trial;  // running now
  int threads = 0;
  std::string device;            // "cpu" or "cuda:0 NVIDIA H100 ... (79.1 GiB)"
  int64_t rss_bytes = 0;
  int64_t vram_bytes = 0;        // device memory in use
  int64_t last_seen_ms = 0;
  int64_t trials_done = 0;
};

class Coordinator {
 public:
  // `store`, `channel` and `metrics` must outlive the coordinator.
  Coordinator(CoordinatorOptions options, StateStore* store, ControlChannel* channel,
              SchedulerMetrics* metrics);

  // Loads running sweeps and re-queues their interrupted trials. MPI thread, before Run.
  Status Recover();

  // The scheduling loop; returns after RequestStop() or options.stop, once every worker
  // was sent Shutdown. MPI thread.
  void Run();

  // Stores the sweep and its trials (durably) and queues them. Any thread; blocks until
  // the scheduler thread has committed. Returns the stored sweep.
  StatusOr<SweepRecord> Submit(scheduler::SweepSpec spec);
  // Cancels queued and running trials of a running sweep. Any thread; blocks.
  StatusOr<SweepRecord> Cancel(SweepId id);
  std::vector<WorkerView> Workers() const;
  void RequestStop();

 private:
  struct ActiveSweep {
    SweepRecord record;
    int running = 0;
    uint32_t unfinished = 0;
    uint32_t completed = 0;  // trials that reached "completed"
    // Moving average of successful attempts' run time on the workers, seconds, and how
    // many fed it: decides whether this sweep's trials are short enough to pipeline.
    double mean_run_seconds = 0;
    int run_samples = 0;
  };
  struct Inflight {
    TrialId trial;
    int attempt = 0;
  };
  struct Slot {
    WorkerView view;
    std::deque<Inflight> inflight;  // assigned, in the order the worker runs them
    std::set<TrialId> checkpoints_sent;  // checkpoints this worker holds (encoder trial)
  };
  struct Command {
    std::optional<scheduler::SweepSpec> submit;
    std::optional<SweepId> cancel;
    std::promise<StatusOr<SweepRecord>> done;
  };
  // Side effects that wait for the iteration's commit.
  struct Pending {
    StateWriteBatch batch;
    std::vector<std::pair<int, Message>> sends;
    std::vector<std::pair<std::shared_ptr<Command>, StatusOr<SweepRecord>>> replies;
    std::vector<SweepRecord> index_builds;  // started once their last shard is durable
    size_t progress_ops = 0;  // batch changes that are only per-epoch progress
  };

  StatusOr<SweepRecord> Enqueue(std::shared_ptr<Command> cmd);
  bool PollWorkers(Pending& p);
  bool RunCommands(Pending& p);
  bool PlaceTrials(Pending& p);
  bool CheckLiveness(Pending& p);
  void Flush(Pending& p);

  void OnRegister(int rank, const RegisterMsg& m);
  void OnProgress(int rank, const ProgressMsg& m, Pending& p);
  void OnResult(int rank, const ResultMsg& m, Pending& p);
  void OnHeartbeat(int rank, const HeartbeatMsg& m, Pending& p);
  void OnVectors(int rank, VectorsMsg& m);
  void OnCheckpoint(int rank, CheckpointMsg& m);
  // Train trial done: its checkpoint goes into the same batch as its completion.
  void StoreCheckpoint(TrialRecord& t, int attempt, Pending& p);
  // Before assigning an embed shard whose encoder is a trial's checkpoint: queue the
  // checkpoint for the worker unless it already has it.
  void SendCheckpointIfNeeded(int rank, const TrialRecord& t, Pending& p);
  // Embed shard done: its vectors go into the same batch as its completion.
  Status StoreVectors(const TrialRecord& t, int attempt, Pending& p);
  // All shards of an embed sweep are done: build its index in the background.
  void StartIndexBuild(SweepRecord& sweep, Pending& p);
  bool CollectIndexBuilds(Pending& p);
  StatusOr<SweepRecord> DoSubmit(scheduler::SweepSpec& spec, Pending& p);
  StatusOr<SweepRecord> DoCancel(SweepId id, Pending& p);

  // Applies a state-machine event to a live trial, persists it and keeps the
  // queue / counters / sweep completion in step.
  Status Transition(TrialRecord& trial, scheduler::TrialEvent event, int worker, const std::string& error,
                    Pending& p);
  void FinishTrial(const TrialRecord& trial, Pending& p);
  // Removes (trial, attempt) from the worker's in-flight list; false if not there.
  bool ReleaseWorker(int rank, const TrialId& trial, int attempt);
  // How many trials of `sweep` a worker may hold at once (1, or more when short).
  size_t PipelineDepth(const ActiveSweep& sweep) const;
  // The worker with the fewest in-flight trials below `depth`, or 0 if none.
  int PickWorker(size_t depth) const;
  void UpdateGauges();

  const CoordinatorOptions options_;
  StateStore* const store_;
  ControlChannel* const channel_;
  SchedulerMetrics* const metrics_;

  // Scheduler-thread state.
  std::map<SweepId, ActiveSweep> sweeps_;
  std::map<TrialId, TrialRecord> trials_;  // live (non-terminal) trials of active sweeps
  std::set<TrialId> queue_;                // queued trials, in placement order
  std::vector<Slot> slots_;                // index = rank; slot 0 unused
  // Vectors of embed attempts whose Result has not arrived yet, by (trial, attempt).
  std::map<std::pair<TrialId, int>, VectorsMsg> vector_blocks_;
  // Checkpoints of train attempts whose Result has not arrived yet, by (trial, attempt).
  std::map<std::pair<TrialId, int>, std::string> checkpoint_blobs_;
  int64_t rss_sampled_ms_ = 0;  // last time the coordinator's RSS gauge was refreshed

  // Shared with other threads.
  mutable std::mutex mu_;
  std::deque<std::shared_ptr<Command>> commands_;
  std::vector<WorkerView> worker_views_;  // snapshot for Workers()
  std::atomic<bool> stop_requested_{false};
};

}  // namespace lattice
