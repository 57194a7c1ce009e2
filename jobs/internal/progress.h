// Per-run bookkeeping of the train loop over epochs: the best epoch by a metric (early
// stopping, the final weights' epoch) and the best values so far (torch-free; internal to
// lattice_jobs). Thread-safety: none; the training thread owns these.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "jobs/train_config.h"

namespace lattice::jobs::internal {

// The best epoch by one metric. An epoch is better when its score (the value; negated when
// lower is better) exceeds the best score so far by more than min_delta; the first epoch
// offered always is (as Keras' EarlyStopping / restore_best_weights). A NaN never wins after
// the first epoch.
class BestEpoch {
 public:
  BestEpoch(bool lower_is_better, double min_delta)
      : lower_is_better_(lower_is_better), min_delta_(min_delta) {}

  // Returns true when `value` makes `epoch` the best so far.
  bool Offer(int epoch, double value);

  int epoch() const { return epoch_; }     // 0 before any epoch
  double score() const { return score_; }  // higher is better

  // For step checkpoints: restores what epoch() and score() returned.
  void Restore(int epoch, double score) {
    epoch_ = epoch;
    score_ = score;
  }

 private:
  bool lower_is_better_;
  double min_delta_;
  int epoch_ = 0;
  double score_ = 0;
};

// Tracks best values and the early-stopping counter.
class Progress {
 public:
  explicit Progress(const std::optional<EarlyStoppingConfig>& es);

  // Records one epoch; returns true when early stopping says stop.
  bool Record(int epoch, double val_loss, double val_accuracy);

  // best_val_accuracy (max over epochs), best_val_loss (min), best_epoch (by the
  // early-stopping metric; val_loss without early stopping).
  void Fill(std::map<std::string, double>* m) const;

  // For step checkpoints (an infinite best_val_loss, before any epoch, is null).
  nlohmann::json ToJson() const;
  void Restore(const nlohmann::json& j);

 private:
  std::optional<EarlyStoppingConfig> es_;
  bool by_accuracy_;
  BestEpoch best_;
  double best_val_accuracy_ = 0;
  double best_val_loss_;
  int64_t stale_ = 0;
};

// Which epoch's weights a run keeps as its final checkpoint: with checkpoint.keep_best >= 1,
// the best by checkpoint.metric (lower is better for names containing "loss", no min_delta);
// else with train.early_stopping, the best by its metric and min_delta (the result's
// best_epoch); else none (the last epoch's weights).
struct SelectionRule {
  std::string metric;
  bool lower_is_better = true;
  double min_delta = 0;

  static std::optional<SelectionRule> For(const JobConfig& cfg);
};

}  // namespace lattice::jobs::internal
