// Durable records of the scheduler's state: sweeps, trials, per-epoch metrics, events.
//
// These are plain values; JSON (de)serialisation is how they are stored in RocksDB and
// sent over the HTTP API. Enum text forms ("queued", "running", ...) are part of the API.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

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

int64_t NowMillis();

}  // namespace lattice
