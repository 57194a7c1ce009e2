// The coordinator <-> worker control protocol, shared by scheduler/ and worker/.
//
// Typed messages travel as MPI point-to-point messages on the cluster communicator:
// the MPI tag is the MessageType, the payload is the message encoded as compact JSON.
//
//   worker -> coordinator: Register (once, at start), Heartbeat (every interval),
//                          Progress (per epoch), Result (once per assignment);
//                          Vectors / Checkpoint just before the Result of an embed / train
//                          attempt
//   coordinator -> worker: Assign, Cancel, Shutdown; Checkpoint before the first Assign
//                          that needs it (encoder {type: trial})
//
// A worker runs one task at a time, in the order assigned. For very short tasks the
// coordinator may assign a few ahead (pipelining), so the next task is already there
// when one ends; every Assign gets exactly one Result (Cancelled for a queued task
// that was cancelled before it started).
//
// Every Progress/Result carries the trial id and the attempt number it belongs to, so
// the coordinator can drop messages of an attempt it has already given up on.
//
// Threading: a ControlChannel is owned by exactly one thread (the thread that owns MPI
// in its process, MPI_THREAD_FUNNELED). Other threads hand it work through queues.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <mpi.h>
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
};

struct RegisterMsg {
  std::string host;
  int threads = 1;           // intra-op threads this worker gives a task
  std::string device = "cpu";
};

struct AssignMsg {
  TrialId trial;
  int attempt = 0;           // 1-based
  nlohmann::json config;     // the job config (see jobs/job_config.h)
};

struct ProgressMsg {
  TrialId trial;
  int attempt = 0;
  int epoch = 0;             // 1-based
  std::map<std::string, double> metrics;
};

enum class ResultCode : int {
  kOk = 0,
  kRetryable = 1,            // may succeed on another attempt (internal error, I/O)
  kPermanent = 2,            // will fail again (NaN loss, bad config): do not retry
  kCancelled = 3,
};

struct ResultMsg {
  TrialId trial;
  int attempt = 0;
  ResultCode code = ResultCode::kOk;
  std::map<std::string, double> metrics;
  int epochs_done = 0;
  std::string error;
  double run_seconds = 0;    // time the worker spent running it (not queued)
};

struct HeartbeatMsg {
  std::optional<TrialId> trial;  // the task running now, if any
  int64_t rss_bytes = 0;
  int64_t vram_bytes = 0;        // device memory in use (0 on CPU workers)
};

struct CancelMsg {
  TrialId trial;
};

struct ShutdownMsg {};

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

// The final weights of a train trial (jobs/checkpoint.h). Worker -> coordinator: sent just
// before the attempt's Result. Coordinator -> worker: the stored checkpoint of `trial`,
// sent once per worker before the first Assign whose encoder is {type: trial}; the worker
// keeps it for the rest of its life (attempt is 0). Encoded as a JSON header line + the bytes.
struct CheckpointMsg {
  TrialId trial;
  int attempt = 0;
  std::string bytes;
};

using Message = std::variant<RegisterMsg, AssignMsg, ProgressMsg, ResultMsg, HeartbeatMsg,
                             CancelMsg, ShutdownMsg, VectorsMsg, CheckpointMsg>;

MessageType TypeOf(const Message& m);
std::string EncodeMessage(const Message& m);
StatusOr<Message> DecodeMessage(MessageType type, const std::string& payload);

struct Envelope {
  int source = -1;  // MPI rank of the sender
  Message message;
};

// MPI transport of the protocol over one communicator. Not thread-safe: one owner thread.
class ControlChannel {
 public:
  explicit ControlChannel(MPI_Comm comm);

  int rank() const { return rank_; }
  int size() const { return size_; }

  // Sends `m` to `dest` (small messages complete eagerly).
  Status Send(int dest, const Message& m);

  // Returns the next pending message from any rank, or nullopt if none is waiting.
  // A message that fails to decode is returned as an error (and consumed).
  std::optional<StatusOr<Envelope>> Poll();

 private:
  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace lattice
