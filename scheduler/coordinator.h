// The coordinator (MPI rank 0): owns the scheduling state and the control channel.
//
// One loop, run on the thread that owns MPI, does everything that changes state:
//   1. receive worker messages (register, heartbeat, progress, result);
//   2. take commands from other threads (submit, cancel) off a queue;
//   3. place queued trials on idle workers (FIFO by sweep, then grid index,
//      respecting each sweep's max_concurrent_trials); trials that take only a few
//      milliseconds are assigned a few ahead per worker so the worker never waits for
//      the coordinator's round trip. A multi-worker trial (resources.workers_per_trial =
//      k > 1) is placed on k idle workers at once or not at all (so no gang is ever half
//      formed, and no two gangs wait on each other's workers); a worker holds one gang
//      task and nothing else. Gangs are placed before one-worker trials, and when the
//      oldest waiting gang (the first in placement order) cannot form, nothing else is
//      placed: the idle workers wait for it and busy ones join it as they finish, so a
//      stream of one-worker trials (older sweeps' too) cannot starve it; unless fewer
//      than k workers are alive, when it waits without holding anyone. No backfill (the
//      coordinator does not know how long trials take). A gang attempt ends as a whole: a
//      member's failure or loss fails it, and every other member is sent Cancel (they
//      stay busy until they answer, so a worker is never given a second task);
//   4. declare silent workers lost and queue their trials again;
//   5. commit all changes of this iteration as ONE synced RocksDB batch (group commit);
//   6. only then act: send Assign/Cancel messages and answer the waiting commands.
// So a change is durable before anyone can observe it, and a crash at any point loses
// nothing that was acknowledged.
//
// Time and transport are injected (CoordinatorOptions::clock, ControlChannel), so tests
// drive the loop one RunOnce() at a time with a fake channel and a fake clock
// (tests/scheduler/coordinator_test.cc); production runs Run() over MPI.
//
// Disk full / I/O errors (ARCHITECTURE.md, "Disk full"): below
// CoordinatorOptions::min_free_bytes free on the data directory's disk, commands (submit,
// cancel, resume) are refused with InsufficientStorage (HTTP 507) before anything is
// applied, no trial is placed and step checkpoints are skipped; results of running trials
// still commit into that reserve. A commit that fails anyway (disk full, I/O error) is held:
// none of its sends and replies happen, nothing else is committed, no worker message is
// read and no worker declared lost, commands are refused, keep-alives still go out, and the
// same batch is committed again every second or two until it succeeds; then the loop
// carries on where it stopped (no restart, nothing acknowledged before it was durable).
//
// Recovery (Recover(), before Run()): sweeps still "running" are loaded; their trials
// that were "running" go back to "queued" (the next assignment is attempt + 1);
// terminal trials are never touched again. A trial is one grid point, so a sweep never
// runs the same point twice: only attempts of the same trial repeat, one at a time.
//
// Draining (RequestDrain(), or the first stop signal: SIGTERM, SIGINT, SIGUSR1 — what Slurm
// sends before a requeue, a preemption or the time limit): no trial is placed any more;
// every worker gets Drain, so its running task writes a step checkpoint of where it stands
// (train / distill with a checkpoint policy) and answers with a Result marked preempted;
// each such trial goes back to "queued" (TrialEvent::kPreempt: the attempt is not spent)
// in the iteration that receives it, its checkpoint stored before. Run() returns once no
// trial runs, or after drain_grace_ms, when the trials still running are committed as
// preempted too (they resume from their latest stored checkpoint); a second stop signal
// does that at once. Recover() then finds them queued, and the next Assign resumes each
// from its latest checkpoint. docs/ARCHITECTURE.md, "Stopping and Slurm requeue".
//
// Thread-safety: Submit(Async), Cancel(Async), Workers, RequestStop and RequestDrain may be
// called from any thread (HTTP handlers); Recover, RunOnce and Run from the channel's
// thread only.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "common/clock.h"
#include "common/disk_space.h"
#include "common/ids.h"
#include "common/status.h"
#include "control/channel.h"
#include "index/builder.h"
#include "monitoring/metrics.h"
#include "scheduler/sweep_spec.h"
#include "scheduler/trial_state_machine.h"
#include "store/checkpoint_store.h"
#include "store/records.h"
#include "store/state_store.h"

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
  // Stop signals counted by a signal handler (SIGTERM, SIGINT, SIGUSR1). Not owned; null:
  // none. The first drains (see the top of this file), a second stops at once.
  const std::atomic<int>* stop_signals = nullptr;
  // How long a drain waits for the running trials' Results, milliseconds, before it stops
  // anyway. Keep it below Slurm's KillWait (30 s by default), which SIGKILLs the step.
  // Default: 20000.
  int drain_grace_ms = 20000;
  // Builds the index of finished embed sweeps. Not owned; null: embed sweeps fail.
  IndexBuilder* index_builder = nullptr;
  // Where time comes from. Not owned; null: SystemClock().
  Clock* clock = nullptr;
  // Queued trials of a sweep whose records (params, config) are held in memory: the next
  // ones to place. The others are only ids in the queue until their turn, then read from
  // the store this many at a time, so that a 100,000-point grid does not sit in memory.
  // Default: 512.
  int queued_records_in_memory = 512;
  // Every this many milliseconds, each registered worker (lost ones too) gets an empty
  // Heartbeat, so that workers notice a dead coordinator (WorkerOptions::
  // coordinator_timeout_ms). 0: none. Default: 0 (the cluster sets worker_timeout_ms / 4).
  int keepalive_ms = 0;
  // Free bytes to keep on the disk of the state store (the data directory): below it,
  // commands get InsufficientStorage (HTTP 507) before anything is applied, no trial is
  // placed, step checkpoints are skipped and held index builds wait (see the top of this
  // file). 0: no reserve (only a failing commit degrades). Default: kDefaultMinFreeBytes.
  int64_t min_free_bytes = kDefaultMinFreeBytes;
};

// What /healthz says about the data directory.
struct StorageHealth {
  bool degraded = false;     // below the reserve, or a commit is held
  bool commit_held = false;  // a commit failed and is being retried
  std::string reason;        // why degraded (the error a command would get)
  std::string data_dir;      // the state store's directory
  int64_t free_bytes = -1;   // on its disk; -1 when unknown
  int64_t min_free_bytes = 0;
  int64_t held_bytes = 0;    // size of the held commit
  int64_t held_since_ms = 0;
};

// A worker's life as the coordinator sees it: starting (no Register yet) -> idle <-> busy;
// lost after worker_timeout_ms of silence (its trials are queued again), back to idle/busy
// when it speaks again.
enum class WorkerState { kStarting, kIdle, kBusy, kLost };

// "starting", "idle", "busy", "lost".
const char* WorkerStateName(WorkerState state);
std::optional<WorkerState> ParseWorkerState(std::string_view text);

// What the API shows about one worker.
struct WorkerView {
  WorkerRank rank;
  std::string host;
  WorkerState state = WorkerState::kStarting;
  std::optional<TrialId> trial;  // running now
  int threads = 0;
  std::string device;            // "cpu" or "cuda:0 NVIDIA H100 ... (79.1 GiB)"
  int64_t rss_bytes = 0;
  int64_t vram_bytes = 0;        // device memory in use
  int64_t vram_total_bytes = 0;  // device memory (0 on a CPU worker)
  int64_t last_seen_ms = 0;
  int64_t trials_done = 0;
  int pid = 0;                   // the worker rank's process
  int task_restarts = 0;         // times its task process died and was restarted
  std::string fault;             // why the last time ("task process killed by signal 11 ...")
  std::string lost_reason;       // why it is (or was last) declared lost
  // The gang of `trial` (member 0 first) when it is a multi-worker trial; else empty.
  std::vector<WorkerRank> gang;
};

class Coordinator {
 public:
  // `store`, `channel` and `metrics` must outlive the coordinator. `metrics` may be null:
  // no metric is updated (what bench/metrics_bench.sh compares against).
  Coordinator(CoordinatorOptions options, StateStore* store, ControlChannel* channel,
              SchedulerMetrics* metrics);

  // Loads running sweeps and re-queues their interrupted trials. MPI thread, before Run.
  Status Recover();

  // The scheduling loop: RunOnce, then an idle back-off on the clock; returns after
  // RequestStop() or options.stop, or when a drain ended (RequestDrain(), stop signals),
  // once every worker was sent Shutdown (Stop()).
  void Run();
  // One iteration of the loop (see the top of this file); true if it did any work.
  bool RunOnce();
  // Sends every worker Shutdown and fails the commands still waiting. Run() ends with it.
  void Stop();

  // Stores the sweep and its trials (durably) and queues them. Any thread; blocks until
  // the scheduler thread has committed. Returns the stored sweep.
  StatusOr<SweepRecord> Submit(scheduler::SweepSpec spec);
  // Cancels queued and running trials of a running sweep. Any thread; blocks.
  StatusOr<SweepRecord> Cancel(SweepId id);
  // The same without blocking: the future is ready after the iteration that commits it.
  std::future<StatusOr<SweepRecord>> SubmitAsync(scheduler::SweepSpec spec);
  std::future<StatusOr<SweepRecord>> CancelAsync(SweepId id);

  // `lattice resume`: a finished (completed, failed or cancelled) trial runs again as a new
  // attempt from one of its step checkpoints: `from_step`, or the latest. `epochs` (> 0)
  // changes train.epochs (e.g. to train longer). Its sweep runs again until the trial ends.
  // FailedPrecondition naming what is wrong: a trial that is not finished, one without step
  // checkpoints, a step that was pruned or never written (the stored ones are listed).
  struct ResumeRequest {
    TrialId trial;
    std::optional<int64_t> from_step;
    std::optional<int64_t> epochs;
  };
  StatusOr<SweepRecord> Resume(ResumeRequest request);
  std::future<StatusOr<SweepRecord>> ResumeAsync(ResumeRequest request);
  std::vector<WorkerView> Workers() const;
  // The data directory's state for /healthz. Any thread.
  StorageHealth Storage() const;
  void RequestStop();
  // Starts a drain at the next iteration (see the top of this file). Any thread.
  void RequestDrain();
  // Whether a drain has ended: no trial runs any more (or the grace period ran out). Run()
  // returns at that point; tests driving RunOnce() poll it.
  bool Drained() const { return drain_.has_value() && drain_->finished; }
  // Trial records held in memory: running trials and the next queued ones of running
  // sweeps (CoordinatorOptions::queued_records_in_memory); finished ones are only in the
  // store. Scheduler thread only (tests, benchmarks).
  size_t TrialsInMemory() const { return trials_.size(); }

 private:
  struct ActiveSweep {
    SweepRecord record;
    // Its trials by state and its best trial, stored with every change (CountTransition).
    SweepCounts counts;
    // (index, objective) of its completed trials with a finite objective: where the best is
    // found again when the best trial is resumed.
    std::vector<std::pair<uint32_t, double>> objectives;
    // Moving average of successful attempts' run time on the workers, seconds, and how
    // many fed it: decides whether this sweep's trials are short enough to pipeline.
    double mean_run_seconds = 0;
    int run_samples = 0;
    // Embed sweeps that build indexes: one entry per variant (one without variants), from
    // the trials (Recover) or counted as shards complete. A variant's build has ended when
    // its trials' metrics hold "index_version" or "index_error" (stored with the outcome).
    struct Variant {
      uint32_t shards_done = 0;
      bool building = false;    // started (or held for disk space), no outcome yet
      bool ended = false;       // published, or failed (error)
      std::string error;
      std::string index;        // published as
      int64_t version = 0;      // of the published index
      std::string summary;      // "index X v2: 2000 vectors, recall@10 ..."
      std::optional<double> value;  // the spec's retrieval metric, when it has one
    };
    std::vector<Variant> variants;
  };
  struct Inflight {
    TrialId trial;
    int attempt = 0;
  };
  struct Slot {
    WorkerView view;
    std::deque<Inflight> inflight;  // assigned, in the order the worker runs them
    std::set<TrialId> checkpoints_sent;  // checkpoints this worker holds (encoder trial)
    bool registered = false;             // it sent Register (keep-alives go to these)
    bool draining = false;  // it preempted a task on its own (a stop signal): no new tasks
  };
  struct Command {
    std::optional<scheduler::SweepSpec> submit;
    std::optional<SweepId> cancel;
    std::optional<ResumeRequest> resume;
    std::promise<StatusOr<SweepRecord>> done;
  };
  // Side effects that wait for the iteration's commit.
  struct Pending {
    StateWriteBatch batch;
    std::vector<std::pair<WorkerRank, Message>> sends;
    std::vector<std::pair<std::shared_ptr<Command>, StatusOr<SweepRecord>>> replies;
    // Index builds (the variant's view of the sweep, the variant), started once their last
    // shard is durable.
    std::vector<std::pair<SweepRecord, int>> index_builds;
    std::vector<SweepId> reclaim_blocks;    // vector blocks deleted: compact after commit
    std::set<SweepId> counts_changed;       // active sweeps whose counts go into the batch
    bool release_memory = false;            // much was freed: give it back after the commit
    size_t progress_ops = 0;  // batch changes that are only per-epoch progress
    int64_t checkpoint_bytes = 0;  // checkpoint chunk bytes in `batch` (metrics)
  };

  std::future<StatusOr<SweepRecord>> Enqueue(std::shared_ptr<Command> cmd);
  bool PollWorkers(Pending& p);
  bool RunCommands(Pending& p);
  bool PlaceTrials(Pending& p);
  // One placement pass over the queue, of gang trials or of one-worker trials; sets
  // *reserved when the oldest waiting gang cannot form yet.
  bool PlacePass(bool gangs, bool* reserved, Pending& p);
  bool CheckLiveness(Pending& p);
  void Flush(Pending& p);
  // Commits p.batch (synced unless it holds only progress).
  Status CommitPending(Pending& p);
  // After the commit: sends, replies, index builds, reclaims.
  void Act(Pending& p);
  // A commit failed for lack of space or an I/O error: keep `p` to commit again.
  void Hold(Pending p, const Status& error);
  // One iteration while a commit is held (see the top of this file).
  bool RetryHeldCommit();
  // Stop(): the held commit is dropped (never acknowledged); its commands get Unavailable.
  void DropHeldCommit();
  // Answers every waiting command with `why` (nothing is applied).
  void RefuseCommands(const Status& why);
  // What commands get while a commit is held.
  Status HeldError() const;
  // OK, or InsufficientStorage when the data directory's disk is below min_free_bytes
  // (read at most once per iteration).
  Status SpaceCheck();
  // Every keepalive_ms: an empty Heartbeat to each registered worker.
  void SendKeepAlives(std::vector<std::pair<WorkerRank, Message>>& sends);
  // Draining (scheduler/coordinator_drain.cc). Stop signals seen so far.
  int StopSignals() const;
  // A drain was asked for and has not started: send every worker Drain. True if it started.
  bool StartDrainIfRequested(Pending& p);
  // While draining, instead of PlaceTrials: ends the drain when no trial runs, or at the
  // grace deadline (the trials still running are preempted). True if it did anything.
  bool ContinueDrain(Pending& p);
  // Commits every running trial as preempted (`why`), e.g. on a second stop signal.
  void PreemptRunningTrials(const std::string& why, Pending& p);

  void OnRegister(WorkerRank rank, const RegisterMsg& m);
  void OnProgress(WorkerRank rank, const ProgressMsg& m, Pending& p);
  void OnResult(WorkerRank rank, const ResultMsg& m, Pending& p);
  void OnHeartbeat(WorkerRank rank, const HeartbeatMsg& m, Pending& p);
  void OnVectors(WorkerRank rank, VectorsMsg& m);
  void OnCheckpoint(WorkerRank rank, CheckpointMsg& m, Pending& p);
  // Whether a message about (trial, attempt) from `rank` belongs to the attempt running
  // there now (anything else is a stale report of an attempt already given up on).
  bool IsCurrentAttempt(WorkerRank rank, const TrialId& trial, int attempt) const;
  // Train trial done: its final checkpoint's manifest goes into the same batch as its
  // completion (its chunks were stored as they arrived).
  void StoreCheckpoint(TrialRecord& t, int attempt, Pending& p);
  // An attempt of `trial` ended: the chunks of its unfinished checkpoints are deleted.
  void AbandonCheckpointTransfers(const TrialId& trial, Pending& p);
  // Before assigning an embed shard whose encoder is a trial's checkpoint: queue the
  // checkpoint for the worker unless it already has it.
  void SendCheckpointIfNeeded(WorkerRank rank, const TrialRecord& t, Pending& p);
  // The last piece of a step checkpoint of a running attempt arrived: its manifest is
  // stored with retention's deletions in the same batch (keep_last newest + keep_best best
  // by the policy's metric).
  void StoreStepCheckpoint(const TrialRecord& t, const CheckpointStore::Writer& writer,
                           Pending& p);
  // Before assigning an attempt of a trial that has step checkpoints: queue the latest
  // readable one (or the one `lattice resume --from-step` chose) for the worker, which
  // resumes from it.
  void SendResumeIfAny(const std::vector<WorkerRank>& ranks, const TrialRecord& t, Pending& p);
  struct StepCheckpoint {
    int64_t step = 0;
    double metric = 0;  // the policy's metric at that point; NaN when it had none yet
    nlohmann::json summary;  // {"epochs", "metrics"} from its header (kept when pruned)
  };
  static StepCheckpoint DescribeStep(int64_t step, const std::string& header_line,
                                     const std::string& metric);
  // The stored step checkpoints of trial `t`, ascending (read from the store on first use).
  std::vector<StepCheckpoint>& StepCheckpoints(const TrialRecord& t);
  // Embed shard done: its vectors go into the same batch as its completion.
  Status StoreVectors(const TrialRecord& t, int attempt, Pending& p);
  // Embed sweeps that build indexes (scheduler/coordinator_embed.cc). Protocol:
  //   1. each completed shard counts for its variant (OnIndexShardFinished); when a
  //      variant's shards are all done, its index is built in the background
  //      (StartIndexBuild, with the variant's view of the sweep: VariantView);
  //   2. its outcome (CollectIndexBuilds) is stored in the variant's trials' metrics
  //      ("index", "index_version" or "index_error", and the spec metric's value, which
  //      becomes their objective): durable, so Recover knows which builds ended;
  //   3. when no trial is unfinished and no build runs, the sweep ends (EndIndexSweep):
  //      completed when every variant's index was published, else failed naming the first
  //      variant that was not; its vector blocks are deleted with one range deletion.
  bool IsIndexSweep(const SweepRecord& sweep) const;
  static int NumVariants(const SweepRecord& sweep);
  // The sweep as variant `variant`'s build sees it: index.name the variant's index, its
  // encoder / pooling / normalize, and "variant": {variant, params}.
  static SweepRecord VariantView(const SweepRecord& sweep, int variant);
  // Sizes active.variants and, from `trials` (all of the sweep's), their shard counts and
  // ended builds (Recover).
  static void CountVariants(ActiveSweep& active, const std::vector<TrialRecord>& trials);
  // A trial of an index sweep ended; starts its variant's build when it was the last shard.
  void OnIndexShardFinished(ActiveSweep& active, const TrialRecord& trial, Pending& p);
  // Starts the build of every variant whose shards are done and whose build did not end.
  void StartDueIndexBuilds(ActiveSweep& active, Pending& p);
  void StartIndexBuild(ActiveSweep& active, int variant, Pending& p);
  bool CollectIndexBuilds(Pending& p);
  // Builds held for lack of disk space start again once there is space; true if any did.
  bool RestartHeldIndexBuilds(Pending& p);
  // A build ended: held again (no disk space), or recorded (step 2), and the sweep ended
  // when it was the last thing it waited for (step 3).
  void OnIndexBuildOutcome(const IndexBuildOutcome& o, Pending& p);
  // Stores a variant's build outcome in its trials (step 2 above).
  Status RecordVariantOutcome(ActiveSweep& active, int variant, Pending& p);
  // Ends the sweep if nothing of it is left to run or build (step 3); true if it did (the
  // ActiveSweep is gone then).
  bool MaybeEndIndexSweep(ActiveSweep& active, Pending& p);
  StatusOr<SweepRecord> DoSubmit(scheduler::SweepSpec& spec, Pending& p);
  // An embed sweep over variants: each variant's trial encoder resolved (DoSubmit).
  Status ResolveVariantEncoders(scheduler::SweepSpec& spec);
  // Activation datasets (scheduler/coordinator_datasets.cc, jobs/activation_dataset.h).
  // At submit, before anything is stored: an embed sweep's output.dataset must be a new
  // name (or one whose last writer failed); a train sweep's dataset.activations must name a
  // ready dataset, whose sweep id then goes into every trial's config (dataset.source).
  Status ResolveActivationDatasets(scheduler::SweepSpec& spec);
  // With the submit: the "writing" record of an embed sweep's output dataset.
  void RecordDatasetSweep(const SweepRecord& sweep, Pending& p);
  // A dataset sweep ended (state set): ready (its blocks stay) or failed. True when its
  // vector blocks are to be kept.
  bool FinishDatasetSweep(SweepRecord& sweep, Pending& p);
  // The datasets whose sweeps completed in an earlier (committed) iteration: their blocks are
  // read whole (every row once) and the record becomes ready or failed. True if any.
  bool VerifyDatasets(Pending& p);
  // Before assigning a trial that reads an activation dataset: queue the dataset for the
  // worker unless it already has it.
  void SendDatasetIfNeeded(WorkerRank rank, const TrialRecord& t, Pending& p);
  StatusOr<SweepRecord> DoCancel(SweepId id, Pending& p);
  StatusOr<SweepRecord> DoResume(const ResumeRequest& request, Pending& p);

  // Applies a state-machine event to a live trial, persists it and keeps the
  // queue / counters / sweep completion in step.
  Status Transition(TrialRecord& trial, scheduler::TrialEvent event, WorkerRank worker,
                    const std::string& error, Pending& p);
  void FinishTrial(const TrialRecord& trial, Pending& p);
  // Counts (and finds the best of) `trials`, all of the sweep's, from scratch.
  static void CountTrials(ActiveSweep& sweep, const std::vector<TrialRecord>& trials);
  // Moves `trial`'s count from `before` to its state and keeps the best trial in step.
  void CountTransition(ActiveSweep& sweep, const TrialRecord& trial, TrialState before,
                       Pending& p);
  // Puts the counts of the sweeps in p.counts_changed into the batch (once per commit).
  void PutChangedCounts(Pending& p);
  // Counts some of uncounted_ (about 20 ms of them) into the batch; true if it did.
  bool CountOldSweeps(Pending& p);
  // Reads the stored records of queued trials of first.sweep, from `first` on, that are not
  // in memory: at most `limit` (0: all of them) into trials_.
  Status LoadQueued(const TrialId& first, size_t limit);
  size_t QueuedBatch() const {
    return static_cast<size_t>(std::max(1, options_.queued_records_in_memory));
  }
  // Removes (trial, attempt) from the worker's in-flight list; false if not there.
  bool ReleaseWorker(WorkerRank rank, const TrialId& trial, int attempt);
  // How many trials of `sweep` a worker may hold at once (1, or more when short).
  size_t PipelineDepth(const ActiveSweep& sweep) const;
  // The worker with the fewest in-flight trials below `depth`, or nullopt if none.
  std::optional<WorkerRank> PickWorker(size_t depth) const;
  // Gangs (resources.workers_per_trial; the policy is at the top of this file).
  // The gang size of a sweep's trials (1 for a one-worker trial).
  static int WorkersPerTrial(const SweepRecord& sweep);
  // The `k` lowest idle workers with nothing in flight, or fewer when there are not k.
  std::vector<WorkerRank> PickGang(size_t k) const;
  // Workers that are up (idle or busy) and not draining.
  size_t LiveWorkers() const;
  // Whether `rank` holds (trial, attempt) in flight.
  bool Holds(WorkerRank rank, const TrialId& trial, int attempt) const;
  // A gang attempt ended: every member but `except` that still holds it gets Cancel.
  void CancelGangMembers(const TrialId& trial, int attempt, WorkerRank except, Pending& p);
  // A member other than member 0 answered: its failure (or its own preemption while the
  // cluster is not draining) ends the attempt for the whole gang.
  void OnGangMemberResult(WorkerRank rank, const ResultMsg& m, Pending& p);
  Slot& slot(WorkerRank rank) { return slots_[static_cast<size_t>(rank.value)]; }
  const Slot& slot(WorkerRank rank) const { return slots_[static_cast<size_t>(rank.value)]; }
  int64_t Now() const { return clock_->NowMillis(); }
  void UpdateGauges();
  // Adds `rows` a worker processed for a trial of `trial`'s sweep to the throughput
  // counter of its kind (lattice_samples_total / lattice_items_total).
  void CountProcessed(WorkerRank rank, const TrialId& trial, int64_t rows);

  const CoordinatorOptions options_;
  StateStore* const store_;
  ControlChannel* const channel_;
  SchedulerMetrics* const metrics_;
  Clock* const clock_;

  // Scheduler-thread state.
  std::map<SweepId, ActiveSweep> sweeps_;
  // Records of live trials of active sweeps: the running ones and the next queued ones.
  std::map<TrialId, TrialRecord> trials_;
  std::set<TrialId> queue_;                // queued trials, in placement order
  std::vector<Slot> slots_;                // index = rank; slot 0 unused
  // Vectors of embed attempts whose Result has not arrived yet, by (trial, attempt).
  std::map<std::pair<TrialId, int>, VectorsMsg> vector_blocks_;
  // Checkpoints arriving piece by piece, by (trial, attempt, step); a complete final one
  // (step 0) waits here for its attempt's Result.
  std::map<std::tuple<TrialId, int, int64_t>, CheckpointStore::Writer> checkpoint_writers_;
  // Step checkpoints per trial of the active sweeps (see StepCheckpoints).
  std::map<TrialId, std::vector<StepCheckpoint>> step_checkpoints_;
  // Trials a user resumed from a chosen step (not the latest): used by their next Assign.
  std::map<TrialId, int64_t> resume_from_step_;
  // Step checkpoints skipped for lack of space, by (trial, attempt, step): their further
  // pieces are dropped quietly.
  std::set<std::tuple<TrialId, int, int64_t>> skipped_checkpoints_;
  // Embed sweeps whose index could not be published for lack of space: started again
  // (when there is space) at the time given.
  std::map<std::pair<SweepId, int>, int64_t> held_index_builds_;  // by (sweep, variant)
  // Completed dataset sweeps whose rows VerifyDatasets checks once their completion is
  // committed (the last shard's block is in that batch).
  std::vector<SweepId> datasets_to_verify_;
  // A commit that failed: retried until it succeeds (RetryHeldCommit); its error, when the
  // next try is due and how many failed.
  std::optional<Pending> held_;
  Status held_error_;
  int64_t held_since_ms_ = 0;
  int64_t held_retry_ms_ = 0;
  int held_failures_ = 0;
  Status space_;               // SpaceCheck() of this iteration
  bool space_checked_ = false;
  bool space_was_low_ = false;  // to log the change only
  struct Drain {
    int64_t started_ms = 0;
    bool finished = false;
  };
  std::optional<Drain> drain_;  // set when a drain started
  // Finished sweeps (id, maximize) of a data directory from before sweep counts were
  // stored, still to count (Recover finds them, CountOldSweeps counts them).
  std::deque<std::pair<SweepId, bool>> uncounted_;
  int64_t rss_sampled_ms_ = 0;  // last time the coordinator's RSS gauge was refreshed
  int64_t keepalive_sent_ms_ = 0;  // last keep-alive round (options_.keepalive_ms)
  std::chrono::microseconds idle_sleep_{20};  // Run()'s back-off after idle iterations

  // Shared with other threads.
  mutable std::mutex mu_;
  std::deque<std::shared_ptr<Command>> commands_;
  std::vector<WorkerView> worker_views_;  // snapshot for Workers()
  // Snapshot of the held commit for Storage(): its error (empty: none), size and start.
  std::string held_reason_;
  int64_t held_bytes_ = 0;
  int64_t held_view_since_ms_ = 0;
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> drain_requested_{false};
};

}  // namespace lattice
