// The coordinator <-> worker control protocol, shared by scheduler/ and worker/.
//
// Typed messages, each encoded on its own (EncodeMessage / DecodeMessage): the transport
// (control/channel.h; over MPI: control/mpi_channel.h) carries the MessageType beside the
// payload, which is compact JSON (Vectors / Checkpoint: a JSON header line + raw bytes).
//
//   worker -> coordinator: Register (once, at start), Heartbeat (every interval),
//                          Progress (per epoch), Result (once per assignment);
//                          Vectors / Checkpoint just before the Result of an embed / train
//                          attempt
//   coordinator -> worker: Assign, Cancel, Shutdown; Checkpoint before the first Assign
//                          that needs it (encoder {type: trial}); Heartbeat (empty) as a
//                          keep-alive: a worker that hears nothing from the coordinator for
//                          its timeout exits; Drain when the cluster is asked to stop
//                          (docs/ARCHITECTURE.md, "Stopping and Slurm requeue")
//
// A worker runs one task at a time, in the order assigned. For very short tasks the
// coordinator may assign a few ahead (pipelining), so the next task is already there
// when one ends; every Assign gets exactly one Result (Cancelled for a queued task
// that was cancelled before it started).
//
// Every Progress/Result carries the trial id and the attempt number it belongs to, so
// the coordinator can drop messages of an attempt it has already given up on.
//
// Encoding edge cases: text that is not valid UTF-8 (an error naming a file whose name is
// not) is sent with U+FFFD in place of the bad bytes; a metric or run_seconds that is not
// finite is sent as null and decoded as NaN. Integer fields must decode as integers within
// their C++ type, or the message is InvalidArgument.
//
#pragma once

#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/ids.h"
#include "common/status.h"

namespace lattice {

enum class MessageType : int {
  kRegister = 1,
  kAssign = 2,
  kProgress = 3,
  kResult = 4,
  kHeartbeat = 5,
  kCancel = 6,
  kShutdown = 7,
  kVectors = 8,
  kCheckpoint = 9,
  kDrain = 10,
};

struct RegisterMsg {
  std::string host;
  int threads = 1;           // intra-op threads this worker gives a task
  std::string device = "cpu";
  int pid = 0;               // of the worker rank's process
  int64_t vram_total_bytes = 0;  // memory of its device (0 on a CPU worker)
};

struct AssignMsg {
  TrialId trial;
  int attempt = 0;           // 1-based
  nlohmann::json config;     // the job config (see jobs/job_config.h)
  // A multi-worker trial (resources.workers_per_trial > 1): the world ranks of its gang,
  // member 0 first; every member gets the same Assign. Member 0 reports Progress, step
  // and final checkpoints; every member sends a Result. Empty: a one-worker trial.
  std::vector<int> gang = {};
};

struct ProgressMsg {
  TrialId trial;
  int attempt = 0;
  int epoch = 0;             // 1-based
  std::map<std::string, double> metrics;
  // Rows the task processed since its previous Progress (train / distill: training samples
  // through an optimizer step), for the throughput counters; 0 when not measured.
  int64_t processed = 0;
};

struct ResultMsg {
  TrialId trial;
  int attempt = 0;
  // The task's outcome as a status code: kOk, kCancelled (the worker stopped it), or the
  // error. The coordinator classifies it (scheduler::EventForResult): one classification.
  StatusCode code = StatusCode::kOk;
  std::map<std::string, double> metrics;
  int epochs_done = 0;
  std::string error;
  double run_seconds = 0;    // time the worker spent running it (not queued)
  // Rows processed since the attempt's last Progress (train / distill: training samples;
  // embed: corpus rows embedded), also when it failed or was cancelled; 0: none or not
  // measured.
  int64_t processed = 0;
  // The worker stopped the task because it was draining (DrainMsg, or a stop signal of its
  // own): the attempt was interrupted, not at fault; code is kCancelled. A train / distill
  // task with a checkpoint policy sent a step checkpoint of where it stood just before.
  bool preempted = false;
};

struct HeartbeatMsg {
  std::optional<TrialId> trial;  // the task running now, if any
  int64_t rss_bytes = 0;
  int64_t vram_bytes = 0;        // device memory in use (0 on CPU workers)
  // Times the worker restarted its task process (a task crashed it), and why the last
  // time ("task process killed by signal 11 (Segmentation fault) while running s1-t3").
  int task_restarts = 0;
  std::string fault;
};

struct CancelMsg {
  TrialId trial;
};

struct ShutdownMsg {};

// The cluster is stopping (a stop signal: Slurm's requeue, preemption or time limit):
// stop the running task now — a train / distill task with a checkpoint policy first writes
// a step checkpoint of where it is and sends it — and answer it with a Result marked
// `preempted`; tasks queued behind it and any later Assign are answered the same way
// without running. Shutdown follows once the coordinator has the Results (or its grace
// period ran out).
struct DrainMsg {};

// The vectors an embed attempt produced, sent just before its Result (same sender,
// so MPI's ordering delivers it first). Encoded as a JSON header line + raw floats.
struct VectorsMsg {
  TrialId trial;
  int attempt = 0;
  int64_t begin = 0;          // corpus row of the first vector
  int64_t rows = 0;
  int dim = 0;
  std::vector<float> data;    // rows * dim, row-major
  // Per row, a compact JSON object (e.g. {"path": ...} or {"label": 3}); empty when the
  // corpus has no metadata.
  std::vector<std::string> metadata;
};

// A piece of a checkpoint (jobs/checkpoint.h): bytes [offset, offset + bytes.size()) of a
// checkpoint of `total` bytes. A checkpoint travels as consecutive pieces of at most
// kCheckpointPieceBytes (SplitCheckpoint), so no single message holds a multi-GB model; the
// receiver puts them together (CheckpointAssembler) or stores each as a chunk. Encoded as
// a JSON header line + the bytes.
//   step == 0, worker -> coordinator: the final weights of a train / distill attempt, sent
//     just before its Result.
//   step > 0, worker -> coordinator: a step checkpoint of the running attempt (after
//     `step` optimizer steps), stored as it arrives.
//   step == 0, coordinator -> worker: the stored final checkpoint of `trial`, sent once per
//     worker before the first Assign that uses it as an encoder or teacher; the worker keeps
//     it for the rest of its life (attempt is 0).
//   step > 0, coordinator -> worker: resume attempt `attempt` of `trial` from this step
//     checkpoint; sent just before that Assign.
struct CheckpointMsg {
  TrialId trial;
  int attempt = 0;
  std::string bytes;
  int64_t step = 0;
  int64_t offset = 0;  // of the first byte in the whole checkpoint
  int64_t total = 0;   // bytes of the whole checkpoint

  bool last() const { return offset + static_cast<int64_t>(bytes.size()) == total; }
};

// The largest piece a checkpoint is split into: 16 MiB.
inline constexpr int64_t kCheckpointPieceBytes = int64_t{16} << 20;

// The messages that carry `bytes` (at least one, even when empty), in order.
std::vector<CheckpointMsg> SplitCheckpoint(const TrialId& trial, int attempt, int64_t step,
                                           std::string bytes,
                                           int64_t piece_bytes = kCheckpointPieceBytes);

// Puts the pieces of checkpoints back together on the receiving side, per (trial, attempt,
// step). Add returns the whole checkpoint (offset 0, total bytes) with its last piece;
// nullopt before that; InvalidArgument when a piece does not continue its checkpoint (what
// was received of it is dropped).
class CheckpointAssembler {
 public:
  StatusOr<std::optional<CheckpointMsg>> Add(CheckpointMsg piece);

 private:
  std::map<std::tuple<TrialId, int, int64_t>, CheckpointMsg> partial_;
};

using Message = std::variant<RegisterMsg, AssignMsg, ProgressMsg, ResultMsg, HeartbeatMsg,
                             CancelMsg, ShutdownMsg, VectorsMsg, CheckpointMsg, DrainMsg>;

MessageType TypeOf(const Message& m);
std::string EncodeMessage(const Message& m);
StatusOr<Message> DecodeMessage(MessageType type, const std::string& payload);

struct Envelope {
  WorkerRank source;  // the sender (the coordinator is kCoordinatorRank)
  Message message;
};

}  // namespace lattice
