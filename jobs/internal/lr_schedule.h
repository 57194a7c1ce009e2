// The learning-rate schedule of a train job (torch-free; internal to lattice_jobs_config).
//
// Why a class of its own: the schedule is pure arithmetic over a few counters, so it is
// unit-tested against its formulas without training, and its whole state is one small
// struct (LrScheduleState) that a checkpoint can serialise (ToJson / FromJson) to resume
// the same curve.
//
// Notation: base = train.lr; t = optimizer steps taken so far (the step about to run is
// step t, counted from 0); e = epochs finished so far (the epoch running is epoch e,
// counted from 0); W = warmup_steps; N = total optimizer steps of the run as planned
// (epochs * steps per epoch; early stopping may end it sooner).
//
// The lr of step t is lr_t = warm(t) * decay_t, where
//   warm(t) = (t + 1) / W for t < W, else 1     (linear warmup; W = 0: no warmup)
// and decay_t is the type's lr:
//   none (no schedule):  base
//   step:     base * gamma^floor(e / step_size)            (changes at epoch boundaries)
//   cosine:   base for t < W; then with T = N - W and s = t - W:
//             min_lr + (base - min_lr) * (1 + cos(pi * s / T)) / 2 for s < T, min_lr after
//             (per optimizer step; the last planned step has lr just above min_lr)
//   plateau:  a level that starts at base; after each epoch's val_loss, as PyTorch's
//             ReduceLROnPlateau(mode="min", threshold=0, cooldown=0): an epoch improves if
//             val_loss < the best so far (the first finite one always does; NaN never);
//             otherwise bad_epochs += 1, and when bad_epochs > patience the level becomes
//             max(level * factor, min_lr) and bad_epochs restarts at 0.
// So during warmup lr_t = base * (t + 1) / W exactly, unless a step or plateau decay has
// already happened (warmup longer than an epoch): then the warmup ramps to the decayed lr
// instead of jumping from base down to it when the warmup ends.
//
// Usage per optimizer step: set the optimizer's lr to lr(), step, then OnStep(); after each
// epoch's evaluation: OnEpochEnd(val_loss). Thread-safety: none (one trainer's state).
#pragma once

#include <cstdint>
#include <optional>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "jobs/train_config.h"

namespace lattice::jobs::internal {

// Everything that changes while training; the config, base lr and N are not included
// (they come from the job config, which a checkpoint stores anyway).
struct LrScheduleState {
  int64_t step = 0;        // t: optimizer steps taken
  int64_t epoch = 0;       // e: epochs finished (OnEpochEnd calls)
  double lr = 0;           // lr of the next step; derived from the rest (recomputed on Restore)
  double level = 0;        // plateau: the current level (before warmup); other types: base
  std::optional<double> best_val_loss;  // plateau: lowest val_loss so far; unset before any
  int64_t bad_epochs = 0;  // plateau: epochs since the last improvement (or reduction)

  // {"step":.., "epoch":.., "lr":.., "level":.., "best_val_loss": x|null, "bad_epochs":..};
  // doubles are written with round-trip precision.
  nlohmann::json ToJson() const;
  // Parses ToJson's output; InvalidArgument naming the key ("lr_schedule.step: ...") for a
  // missing key, a wrong type or a value out of range.
  static StatusOr<LrScheduleState> FromJson(const nlohmann::json& j);
};

class LrSchedule {
 public:
  // `config` unset: constant base_lr. `total_steps` (N) matters for cosine only.
  LrSchedule(const std::optional<LrScheduleConfig>& config, double base_lr, int64_t total_steps);

  // The learning rate for the next optimizer step.
  double lr() const { return state_.lr; }
  // Call after every optimizer step.
  void OnStep();
  // Call after every epoch with that epoch's validation loss.
  void OnEpochEnd(double val_loss);

  const LrScheduleState& state() const { return state_; }
  // Continues from `state` (e.g. from a checkpoint of a run with the same config), so the
  // future curve is the one the saved run would have followed. state.lr is recomputed.
  // InvalidArgument for negative counters or a non-positive / non-finite level.
  Status Restore(const LrScheduleState& state);

 private:
  double Compute() const;

  std::optional<LrScheduleConfig> config_;
  double base_lr_;
  int64_t total_steps_;
  LrScheduleState state_;
};

}  // namespace lattice::jobs::internal
