// Durable records of the scheduler's state: sweeps, trials, per-epoch metrics, events.
//
// These are plain values; JSON (de)serialisation is how they are stored in RocksDB and
// sent over the HTTP API. Enum text forms ("queued", "running", ...) are part of the API.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/ids.h"
#include "common/job_kind.h"
#include "common/status.h"

namespace lattice {

enum class SweepState { kRunning, kCompleted, kCancelled, kFailed };
enum class TrialState { kQueued, kRunning, kCompleted, kFailed, kCancelled };

const char* SweepStateName(SweepState s);
const char* TrialStateName(TrialState s);
std::optional<SweepState> ParseSweepState(const std::string& s);
std::optional<TrialState> ParseTrialState(const std::string& s);
// Completed, failed and cancelled are terminal: a terminal trial never runs again.
inline bool IsTerminal(TrialState s) {
  return s == TrialState::kCompleted || s == TrialState::kFailed || s == TrialState::kCancelled;
}

struct SweepRecord {
  SweepId id;
  std::string name;
  JobKind kind = JobKind::kTrain;
  nlohmann::json spec;       // the validated spec as submitted (normalised to JSON)
  SweepState state = SweepState::kRunning;
  std::string metric;        // e.g. "val_accuracy"
  bool maximize = true;
  uint32_t num_trials = 0;   // size of the expansion
  int max_concurrent = 0;    // 0 = unlimited
  int max_attempts = 1;
  int64_t created_ms = 0;    // unix epoch milliseconds
  int64_t finished_ms = 0;   // 0 while running
  std::string message;       // why it failed / was cancelled, if it did

  nlohmann::json ToJson() const;
  static StatusOr<SweepRecord> FromJson(const nlohmann::json& j);
};

struct TrialRecord {
  TrialId id;
  nlohmann::json params;          // the grid/random point, e.g. {"lr":0.001,"dropout":0.2}
  nlohmann::json config;          // the full job config with params applied
  TrialState state = TrialState::kQueued;
  int attempts = 0;               // number of times it was assigned to a worker
  // Of those, attempts a stopping cluster interrupted (drain on SIGTERM / Slurm requeue):
  // they do not count against the sweep's max_attempts.
  int preemptions = 0;
  WorkerRank worker;               // rank running it now (or last); -1 = none
  nlohmann::json metrics = nlohmann::json::object();  // final and best metrics
  std::optional<double> objective;  // value of the sweep metric, when known
  int epochs_done = 0;
  std::string error;              // failure reason
  int64_t started_ms = 0;
  int64_t finished_ms = 0;
  int64_t checkpoint_bytes = 0;   // size of the stored checkpoint (train), 0 = none

  nlohmann::json ToJson() const;
  // ToJson() as text (how the store keeps it), without copying params and config into a
  // JSON tree first.
  std::string Dump() const;
  static StatusOr<TrialRecord> FromJson(const nlohmann::json& j);
};

struct EpochMetrics {
  TrialId trial;
  int attempt = 0;
  int epoch = 0;                        // 1-based
  std::map<std::string, double> values; // train_loss, val_loss, val_accuracy, ...

  nlohmann::json ToJson() const;
  static StatusOr<EpochMetrics> FromJson(const nlohmann::json& j);
};

// A sweep's trials counted by state, and its best completed trial so far: what sweep
// listings show, stored beside the sweep (StateWriteBatch::PutSweepCounts) in the same
// commit as every trial change that moves them, so that a listing reads one small record per
// sweep instead of every trial. The coordinator owns the counting (Transition).
struct SweepCounts {
  SweepId sweep;
  std::array<uint32_t, 5> by_state{};  // trials per TrialState, indexed by its value
  // The completed trial with the best finite objective (the highest when maximize, else the
  // lowest; a tie keeps the lower index), its objective and params; unset while there is none.
  std::optional<TrialId> best;
  double best_objective = 0;
  nlohmann::json best_params;

  uint32_t count(TrialState s) const { return by_state[static_cast<size_t>(s)]; }
  // Queued + running: trials that have not ended.
  uint32_t unfinished() const { return count(TrialState::kQueued) + count(TrialState::kRunning); }
  // One trial went from `from` (nullopt: a new trial) to `to`.
  void Move(std::optional<TrialState> from, TrialState to);
  // Makes `t` the best if it is completed with a finite objective that beats the best (the
  // tie rule above). Returns whether it did.
  bool Consider(const TrialRecord& t, bool maximize);
  // Counts `trials` (any order) from scratch.
  static SweepCounts FromTrials(SweepId sweep, const std::vector<TrialRecord>& trials,
                                bool maximize);

  // {"sweep", "queued", "running", "completed", "failed", "cancelled",
  //  "best": {"trial", "objective", "params"} | null}
  nlohmann::json ToJson() const;
  static StatusOr<SweepCounts> FromJson(const nlohmann::json& j);
  friend bool operator==(const SweepCounts& a, const SweepCounts& b) {
    return a.ToJson() == b.ToJson();
  }
  friend bool operator!=(const SweepCounts& a, const SweepCounts& b) { return !(a == b); }
};

int64_t NowMillis();

}  // namespace lattice
