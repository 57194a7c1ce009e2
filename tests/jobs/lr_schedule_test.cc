#include "jobs/internal/lr_schedule.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "tests/testutil/testutil.h"

namespace lattice::jobs::internal {
namespace {

using nlohmann::json;

constexpr double kPi = 3.14159265358979323846;

LrScheduleConfig Step(int64_t step_size, double gamma, int64_t warmup = 0) {
  LrScheduleConfig c;
  c.type = LrScheduleType::kStep;
  c.step_size = step_size;
  c.gamma = gamma;
  c.warmup_steps = warmup;
  return c;
}

LrScheduleConfig Cosine(double min_lr, int64_t warmup = 0) {
  LrScheduleConfig c;
  c.type = LrScheduleType::kCosine;
  c.min_lr = min_lr;
  c.warmup_steps = warmup;
  return c;
}

LrScheduleConfig Plateau(int64_t patience, double factor, double min_lr, int64_t warmup = 0) {
  LrScheduleConfig c;
  c.type = LrScheduleType::kPlateau;
  c.patience = patience;
  c.factor = factor;
  c.min_lr = min_lr;
  c.warmup_steps = warmup;
  return c;
}

// Drives `s` through epochs of `steps_per_epoch` steps, ending epoch e with val_losses[e]
// (or 0 when val_losses is shorter); returns the lr of every step.
std::vector<double> Curve(LrSchedule& s, int epochs, int steps_per_epoch,
                          const std::vector<double>& val_losses = {}) {
  std::vector<double> lrs;
  for (int e = 0; e < epochs; ++e) {
    for (int i = 0; i < steps_per_epoch; ++i) {
      lrs.push_back(s.lr());
      s.OnStep();
    }
    s.OnEpochEnd(e < static_cast<int>(val_losses.size()) ? val_losses[e] : 0.0);
  }
  return lrs;
}

TEST(LrScheduleTest, NoScheduleIsConstant) {
  LrSchedule s(std::nullopt, 0.03, 12);
  for (double lr : Curve(s, 4, 3, {1, 2, 3, 4})) EXPECT_EQ(lr, 0.03);
}

TEST(LrScheduleTest, StepDecaysByGammaEveryStepSizeEpochs) {
  const double base = 0.1, gamma = 0.5;
  const int step_size = 2, steps = 3;
  LrSchedule s(Step(step_size, gamma), base, 7 * steps);
  std::vector<double> lrs = Curve(s, 7, steps);
  ASSERT_EQ(lrs.size(), 21u);
  for (int t = 0; t < 21; ++t) {
    const int epoch = t / steps;
    EXPECT_DOUBLE_EQ(lrs[t], base * std::pow(gamma, std::floor(epoch / step_size))) << t;
  }
  // Spot values, so a formula error shared with the loop above still shows.
  EXPECT_DOUBLE_EQ(lrs[0], 0.1);
  EXPECT_DOUBLE_EQ(lrs[5], 0.1);    // epoch 1
  EXPECT_DOUBLE_EQ(lrs[6], 0.05);   // epoch 2
  EXPECT_DOUBLE_EQ(lrs[20], 0.0125);  // epoch 6
}

TEST(LrScheduleTest, CosineWithoutWarmupFollowsTheFormulaPerStep) {
  const double base = 0.2, min_lr = 0.01;
  const int n = 4 * 5;
  LrSchedule s(Cosine(min_lr), base, n);
  std::vector<double> lrs = Curve(s, 4, 5);
  ASSERT_EQ(lrs.size(), static_cast<size_t>(n));
  for (int t = 0; t < n; ++t) {
    EXPECT_DOUBLE_EQ(lrs[t], min_lr + (base - min_lr) * (1 + std::cos(kPi * t / n)) / 2) << t;
    if (t > 0) {
      EXPECT_LT(lrs[t], lrs[t - 1]) << t;
    }
  }
  EXPECT_DOUBLE_EQ(lrs[0], base);
  EXPECT_DOUBLE_EQ(lrs[n / 2], (base + min_lr) / 2);
  EXPECT_GT(lrs[n - 1], min_lr);
  EXPECT_DOUBLE_EQ(s.lr(), min_lr);  // past the planned run
}

TEST(LrScheduleTest, CosineWithWarmupRampsLinearlyThenAnnealsOverTheRest) {
  const double base = 0.1, min_lr = 0.0;
  const int warmup = 5, n = 25;
  LrSchedule s(Cosine(min_lr, warmup), base, n);
  std::vector<double> lrs = Curve(s, 5, 5);
  ASSERT_EQ(lrs.size(), static_cast<size_t>(n));
  for (int t = 0; t < warmup; ++t) {
    EXPECT_DOUBLE_EQ(lrs[t], base * (t + 1) / warmup) << t;
  }
  EXPECT_DOUBLE_EQ(lrs[0], 0.02);
  EXPECT_DOUBLE_EQ(lrs[warmup - 1], base);
  const int T = n - warmup;
  for (int t = warmup; t < n; ++t) {
    EXPECT_DOUBLE_EQ(lrs[t], min_lr + (base - min_lr) * (1 + std::cos(kPi * (t - warmup) / T)) / 2)
        << t;
  }
  EXPECT_DOUBLE_EQ(lrs[warmup], base);
}

TEST(LrScheduleTest, WarmupScalesAStepDecayThatHappensDuringIt) {
  // Warmup of 4 steps over epochs of 2 steps, decay every epoch: epoch 1 is still warming up.
  const double base = 0.08;
  LrSchedule s(Step(1, 0.5, /*warmup=*/4), base, 8);
  std::vector<double> lrs = Curve(s, 4, 2);
  const std::vector<double> expected = {base * 1 / 4,       base * 2 / 4,       // epoch 0
                                        base * 0.5 * 3 / 4, base * 0.5 * 4 / 4,  // epoch 1
                                        base * 0.25,        base * 0.25,         // epoch 2
                                        base * 0.125,       base * 0.125};
  ASSERT_EQ(lrs.size(), expected.size());
  for (size_t t = 0; t < lrs.size(); ++t) EXPECT_DOUBLE_EQ(lrs[t], expected[t]) << t;
}

TEST(LrScheduleTest, PlateauReducesAfterPatienceBadEpochsDownToMinLr) {
  const double base = 0.1;
  LrSchedule s(Plateau(/*patience=*/2, /*factor=*/0.5, /*min_lr=*/0.02), base, 100);
  // Per epoch: its val_loss and the lr the NEXT epoch uses.
  struct Epoch {
    double val_loss;
    double next_lr;
  };
  const std::vector<Epoch> epochs = {
      {1.0, 0.1},    // first: improvement
      {0.9, 0.1},    // improvement
      {0.95, 0.1},   // bad 1
      {0.9, 0.1},    // bad 2 (equal is not better)
      {0.91, 0.05},  // bad 3 > patience: reduce, counter restarts
      {0.8, 0.05},   // improvement
      {0.85, 0.05},  // bad 1
      {std::nan(""), 0.05},  // NaN: bad 2
      {0.85, 0.025},         // bad 3: reduce
      {0.9, 0.025}, {0.9, 0.025}, {0.9, 0.02},  // reduce to max(0.0125, min_lr)
      {0.9, 0.02}, {0.9, 0.02}, {0.9, 0.02},    // at the floor
  };
  EXPECT_DOUBLE_EQ(s.lr(), base);
  for (size_t e = 0; e < epochs.size(); ++e) {
    s.OnStep();
    s.OnEpochEnd(epochs[e].val_loss);
    EXPECT_DOUBLE_EQ(s.lr(), epochs[e].next_lr) << "after epoch " << e;
  }
  EXPECT_DOUBLE_EQ(*s.state().best_val_loss, 0.8);
}

TEST(LrScheduleTest, PlateauWithZeroPatienceReducesOnEveryBadEpoch) {
  LrSchedule s(Plateau(0, 0.1, 0.0), 1.0, 100);
  const std::vector<double> losses = {1.0, 1.1, 0.5, 0.6, 0.7};
  const std::vector<double> next = {1.0, 0.1, 0.1, 0.01, 0.001};
  for (size_t e = 0; e < losses.size(); ++e) {
    s.OnEpochEnd(losses[e]);
    EXPECT_DOUBLE_EQ(s.lr(), next[e]) << e;
  }
}

TEST(LrScheduleTest, PlateauWarmupRampsToTheCurrentLevel) {
  LrSchedule s(Plateau(0, 0.5, 0.0, /*warmup=*/4), 0.1, 100);
  EXPECT_DOUBLE_EQ(s.lr(), 0.025);
  s.OnStep();
  s.OnEpochEnd(1.0);
  s.OnStep();
  s.OnEpochEnd(2.0);  // reduce to 0.05 while warming up
  EXPECT_DOUBLE_EQ(s.lr(), 0.05 * 3 / 4);
  s.OnStep();
  s.OnStep();
  EXPECT_DOUBLE_EQ(s.lr(), 0.05);
}

// A schedule restored from the JSON of another one's state continues its curve exactly.
void ExpectRestoredCurveMatches(const LrScheduleConfig& config, const std::vector<double>& losses) {
  const double base = 0.1;
  const int steps = 3, epochs = static_cast<int>(losses.size()), half = epochs / 2;
  const int64_t n = int64_t{epochs} * steps;
  LrSchedule original(config, base, n);
  Curve(original, half, steps, losses);
  const std::string text = original.state().ToJson().dump();
  ASSERT_OK_AND_ASSIGN(LrScheduleState state, LrScheduleState::FromJson(json::parse(text)));
  EXPECT_EQ(state.ToJson(), original.state().ToJson());

  LrSchedule restored(config, base, n);
  LrSchedule fresh(config, base, n);
  ASSERT_OK(restored.Restore(state));
  EXPECT_EQ(restored.lr(), original.lr());
  const std::vector<double> rest(losses.begin() + half, losses.end());
  const std::vector<double> a = Curve(original, epochs - half, steps, rest);
  const std::vector<double> b = Curve(restored, epochs - half, steps, rest);
  const std::vector<double> c = Curve(fresh, epochs - half, steps, rest);
  EXPECT_EQ(a, b);  // bit-identical
  EXPECT_NE(a, c);  // the state mattered: starting over gives another curve
}

TEST(LrScheduleTest, StateJsonRoundTripContinuesTheSameCurve) {
  const std::vector<double> losses = {1.0, 0.9, 0.95, 0.97, 0.99, 0.99, 0.8, 0.9, 0.9, 0.9};
  ExpectRestoredCurveMatches(Plateau(1, 0.5, 0.001, /*warmup=*/2), losses);
  ExpectRestoredCurveMatches(Cosine(0.001, /*warmup=*/4), losses);
  ExpectRestoredCurveMatches(Step(2, 0.7, /*warmup=*/1), losses);
}

TEST(LrScheduleTest, StateFromJsonNamesTheBadKey) {
  LrSchedule s(Plateau(1, 0.5, 0.0), 0.1, 10);
  json good = s.state().ToJson();
  EXPECT_TRUE(good["best_val_loss"].is_null());
  ASSERT_OK(LrScheduleState::FromJson(good).status());
  struct Case {
    const char* key;
    json value;  // null: erase the key
    const char* expect;
  };
  const std::vector<Case> cases = {
      {"step", nullptr, "lr_schedule.step: required"},
      {"epoch", -1, "lr_schedule.epoch: must be >= 0"},
      {"bad_epochs", "two", "lr_schedule.bad_epochs: expected an integer"},
      {"level", 0, "lr_schedule.level: must be > 0"},
      {"best_val_loss", "low", "lr_schedule.best_val_loss: expected a number"},
      {"extra", 1, "lr_schedule.extra: unknown key"},
  };
  for (const Case& c : cases) {
    json j = good;
    if (c.value.is_null()) {
      j.erase(c.key);
    } else {
      j[c.key] = c.value;
    }
    StatusOr<LrScheduleState> r = LrScheduleState::FromJson(j);
    ASSERT_FALSE(r.ok()) << c.key;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos) << r.status().message();
  }
  LrScheduleState bad;
  bad.level = 0.1;
  bad.step = -1;
  EXPECT_EQ(s.Restore(bad).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lattice::jobs::internal
