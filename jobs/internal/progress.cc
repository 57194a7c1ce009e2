#include "jobs/internal/progress.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace lattice::jobs::internal {

bool BestEpoch::Offer(int epoch, double value) {
  const double score = lower_is_better_ ? -value : value;
  if (epoch_ != 0 && !(score > score_ + min_delta_)) return false;
  score_ = score;
  epoch_ = epoch;
  return true;
}

Progress::Progress(const std::optional<EarlyStoppingConfig>& es)
    : es_(es),
      by_accuracy_(es && es->metric == EarlyStoppingMetric::kValAccuracy),
      best_(/*lower_is_better=*/!by_accuracy_, es ? es->min_delta : 0.0),
      best_val_loss_(std::numeric_limits<double>::infinity()) {}

bool Progress::Record(int epoch, double val_loss, double val_accuracy) {
  best_val_accuracy_ = std::max(best_val_accuracy_, val_accuracy);
  best_val_loss_ = std::min(best_val_loss_, val_loss);
  if (best_.Offer(epoch, by_accuracy_ ? val_accuracy : val_loss)) {
    stale_ = 0;
  } else {
    ++stale_;
  }
  return es_ && stale_ >= es_->patience;
}

void Progress::Fill(std::map<std::string, double>* m) const {
  (*m)["best_val_accuracy"] = best_val_accuracy_;
  (*m)["best_val_loss"] = best_val_loss_;
  (*m)["best_epoch"] = best_.epoch();
}

nlohmann::json Progress::ToJson() const {
  return {{"best_val_accuracy", best_val_accuracy_},
          {"best_val_loss",
           std::isfinite(best_val_loss_) ? nlohmann::json(best_val_loss_) : nlohmann::json()},
          {"best_score", best_.score()},
          {"best_epoch", best_.epoch()},
          {"stale", stale_}};
}

void Progress::Restore(const nlohmann::json& j) {
  best_val_accuracy_ = j.at("best_val_accuracy").get<double>();
  best_val_loss_ = j.at("best_val_loss").is_null() ? std::numeric_limits<double>::infinity()
                                                   : j.at("best_val_loss").get<double>();
  best_.Restore(j.at("best_epoch").get<int>(), j.at("best_score").get<double>());
  stale_ = j.at("stale").get<int64_t>();
}

std::optional<SelectionRule> SelectionRule::For(const JobConfig& cfg) {
  if (cfg.checkpoints && cfg.checkpoints->keep_best >= 1) {
    return SelectionRule{cfg.checkpoints->metric, cfg.checkpoints->LowerIsBetter(), 0.0};
  }
  if (const auto& es = cfg.train.early_stopping) {
    const bool by_accuracy = es->metric == EarlyStoppingMetric::kValAccuracy;
    return SelectionRule{by_accuracy ? "val_accuracy" : "val_loss", !by_accuracy, es->min_delta};
  }
  return std::nullopt;
}

}  // namespace lattice::jobs::internal
