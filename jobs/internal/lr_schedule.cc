#include "jobs/internal/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "jobs/internal/config_fields.h"

namespace lattice::jobs::internal {

using nlohmann::json;

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr const char* kPath = "lr_schedule";

StatusOr<int64_t> RequiredCount(const json& j, const char* key) {
  const json* v = Find(j, key);
  if (!v) return Bad(Join(kPath, key), "required");
  int64_t out = 0;
  LATTICE_RETURN_IF_ERROR(GetInt(j, key, kPath, &out, 0));
  return out;
}

StatusOr<double> RequiredNumber(const json& j, const char* key) {
  const json* v = Find(j, key);
  if (!v) return Bad(Join(kPath, key), "required");
  return AsNumber(*v, Join(kPath, key));
}

}  // namespace

json LrScheduleState::ToJson() const {
  return {{"step", step},
          {"epoch", epoch},
          {"lr", lr},
          {"level", level},
          {"best_val_loss", best_val_loss ? json(*best_val_loss) : json(nullptr)},
          {"bad_epochs", bad_epochs}};
}

StatusOr<LrScheduleState> LrScheduleState::FromJson(const json& j) {
  LATTICE_RETURN_IF_ERROR(
      CheckObject(j, kPath, {"step", "epoch", "lr", "level", "best_val_loss", "bad_epochs"}));
  LrScheduleState s;
  LATTICE_ASSIGN_OR_RETURN(s.step, RequiredCount(j, "step"));
  LATTICE_ASSIGN_OR_RETURN(s.epoch, RequiredCount(j, "epoch"));
  LATTICE_ASSIGN_OR_RETURN(s.bad_epochs, RequiredCount(j, "bad_epochs"));
  LATTICE_ASSIGN_OR_RETURN(s.lr, RequiredNumber(j, "lr"));
  LATTICE_ASSIGN_OR_RETURN(s.level, RequiredNumber(j, "level"));
  if (s.level <= 0) return Bad(Join(kPath, "level"), "must be > 0, got " + FormatNumber(s.level));
  const json* best = Find(j, "best_val_loss");
  if (!best) return Bad(Join(kPath, "best_val_loss"), "required");
  if (!best->is_null()) {
    LATTICE_ASSIGN_OR_RETURN(double b, AsNumber(*best, Join(kPath, "best_val_loss")));
    s.best_val_loss = b;
  }
  return s;
}

LrSchedule::LrSchedule(const std::optional<LrScheduleConfig>& config, double base_lr,
                       int64_t total_steps)
    : config_(config), base_lr_(base_lr), total_steps_(total_steps) {
  state_.level = base_lr;
  state_.lr = Compute();
}

double LrSchedule::Compute() const {
  if (!config_) return base_lr_;
  const LrScheduleConfig& c = *config_;
  const int64_t t = state_.step;
  double decay = base_lr_;
  switch (c.type) {
    case LrScheduleType::kStep:
      decay = base_lr_ * std::pow(c.gamma, static_cast<double>(state_.epoch / c.step_size));
      break;
    case LrScheduleType::kCosine: {
      const int64_t s = t - c.warmup_steps;
      const int64_t T = total_steps_ - c.warmup_steps;
      if (s < 0) {
        decay = base_lr_;
      } else if (s >= T) {  // past the planned run (or no steps after the warmup)
        decay = c.min_lr;
      } else {
        const double progress = static_cast<double>(s) / static_cast<double>(T);
        decay = c.min_lr + (base_lr_ - c.min_lr) * (1 + std::cos(kPi * progress)) / 2;
      }
      break;
    }
    case LrScheduleType::kPlateau: decay = state_.level; break;
  }
  if (t < c.warmup_steps) {
    decay *= static_cast<double>(t + 1) / static_cast<double>(c.warmup_steps);
  }
  return decay;
}

void LrSchedule::OnStep() {
  ++state_.step;
  state_.lr = Compute();
}

void LrSchedule::OnEpochEnd(double val_loss) {
  ++state_.epoch;
  if (config_ && config_->type == LrScheduleType::kPlateau) {
    // `<` is false for NaN, so a NaN loss counts as an epoch without improvement.
    if (!state_.best_val_loss ? !std::isnan(val_loss) : val_loss < *state_.best_val_loss) {
      state_.best_val_loss = val_loss;
      state_.bad_epochs = 0;
    } else if (++state_.bad_epochs > config_->patience) {
      state_.level = std::max(state_.level * config_->factor, config_->min_lr);
      state_.bad_epochs = 0;
    }
  }
  state_.lr = Compute();
}

Status LrSchedule::Restore(const LrScheduleState& state) {
  if (state.step < 0 || state.epoch < 0 || state.bad_epochs < 0) {
    return Status::InvalidArgument("lr_schedule: negative counter");
  }
  if (!(state.level > 0) || !std::isfinite(state.level)) {
    return Status::InvalidArgument("lr_schedule.level: must be finite and > 0, got " +
                                   FormatNumber(state.level));
  }
  state_ = state;
  state_.lr = Compute();
  return Status::Ok();
}

}  // namespace lattice::jobs::internal
