#include "jobs/train_job.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "jobs/checkpoint.h"
#include "jobs/job_config.h"
#include "tests/jobs/npy_writer.h"
#include "tests/testutil/testutil.h"

namespace lattice::jobs {
namespace {

using nlohmann::json;
using testing::kDigitsCsv;

// The acceptance config: digits, standardized, 80/20 split, 256-wide MLP with batchnorm.
json DigitsConfig(int epochs = 30) {
  return {{"kind", "train"},
          {"seed", 42},
          {"dataset",
           {{"format", "csv"}, {"path", kDigitsCsv}, {"standardize", true},
            {"split", {{"validation_fraction", 0.2}, {"seed", 42}}}}},
          {"model", {{"type", "mlp"}, {"hidden", 256}, {"batchnorm", true}, {"dropout", 0.2}}},
          {"train",
           {{"epochs", epochs}, {"batch_size", 32}, {"lr", 1e-3}, {"optimizer", "adamw"},
            {"threads", 1}}}};
}

class TrainJobTest : public ::testing::Test {
 protected:
  DatasetCache cache_;
  JobContext Context() {
    JobContext ctx;
    ctx.cache = &cache_;
    ctx.num_threads = 1;
    return ctx;
  }
};

TEST_F(TrainJobTest, DigitsMlpReachesNinetyFivePercent) {
  JobContext ctx = Context();
  std::vector<int> epochs;
  ctx.on_epoch = [&](int epoch, const std::map<std::string, double>& m) {
    epochs.push_back(epoch);
    EXPECT_EQ(m.count("train_loss"), 1u);
    EXPECT_EQ(m.count("val_loss"), 1u);
    EXPECT_EQ(m.count("val_accuracy"), 1u);
    ASSERT_EQ(m.count("lr"), 1u);
    EXPECT_EQ(m.at("lr"), 1e-3);  // no schedule: constant
  };
  auto start = std::chrono::steady_clock::now();
  ASSERT_OK_AND_ASSIGN(JobResult r, RunJob(DigitsConfig(), ctx));
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("digits MLP, 30 epochs, 1 thread: %.2f s, val_accuracy %.4f\n", secs,
              r.metrics["val_accuracy"]);
  EXPECT_EQ(r.epochs_done, 30);
  ASSERT_EQ(epochs.size(), 30u);
  EXPECT_EQ(epochs.front(), 1);
  EXPECT_EQ(epochs.back(), 30);
  EXPECT_GE(r.metrics["val_accuracy"], 0.95);
  EXPECT_GE(r.metrics["best_val_accuracy"], r.metrics["val_accuracy"]);
  EXPECT_LE(r.metrics["best_val_loss"], r.metrics["val_loss"]);
  EXPECT_EQ(r.metrics["final_val_accuracy"], r.metrics["val_accuracy"]);
  EXPECT_EQ(r.metrics["final_train_loss"], r.metrics["train_loss"]);
  EXPECT_GE(r.metrics["best_epoch"], 1);
  EXPECT_LE(r.metrics["best_epoch"], 30);
  EXPECT_LT(r.metrics["train_loss"], 0.5);
}

TEST_F(TrainJobTest, SameConfigAndSeedGiveBitIdenticalMetrics) {
  std::vector<std::map<std::string, double>> history[2];
  JobResult results[2];
  for (int run = 0; run < 2; ++run) {
    JobContext ctx = Context();
    ctx.on_epoch = [&, run](int, const std::map<std::string, double>& m) {
      history[run].push_back(m);
    };
    ASSERT_OK_AND_ASSIGN(results[run], RunJob(DigitsConfig(3), ctx));
  }
  EXPECT_EQ(results[0].metrics, results[1].metrics);  // exact double equality
  EXPECT_EQ(history[0], history[1]);
  EXPECT_EQ(cache_.loads(), 1);  // the second run reused the loaded dataset

  json other = DigitsConfig(3);
  other["seed"] = 7;
  JobContext ctx = Context();
  ASSERT_OK_AND_ASSIGN(JobResult different, RunJob(other, ctx));
  EXPECT_NE(different.metrics["train_loss"], results[0].metrics["train_loss"]);
}

// Jobs run on JobContext::device. This machine's LibTorch (Debian's) is CPU-only, so a CUDA
// device is a clear, permanent error here (the GPU path runs on the device machine).
TEST_F(TrainJobTest, DeviceIsCheckedAndAGpuWithoutCudaIsAClearError) {
  EXPECT_OK(CheckJobDevice("cpu"));
  EXPECT_EQ(CheckJobDevice("tpu:0").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckJobDevice("banana").code(), StatusCode::kInvalidArgument);
  Status cuda = CheckJobDevice("cuda:0");
  if (cuda.ok()) GTEST_SKIP() << "this LibTorch has a CUDA device";
  EXPECT_EQ(cuda.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(cuda.message().find("sees no CUDA device"), std::string::npos) << cuda.ToString();
  JobContext ctx = Context();
  ctx.device = "cuda:0";
  auto r = RunJob(DigitsConfig(1), ctx);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << r.status().ToString();
}

TEST_F(TrainJobTest, HugeLearningRateFailsWithNonFiniteLoss) {
  json c = DigitsConfig(30);
  c["train"]["optimizer"] = "sgd";
  c["train"]["lr"] = 1e6;
  c["train"]["weight_decay"] = 0;
  c["model"]["batchnorm"] = false;
  c["model"]["dropout"] = 0.0;
  JobContext ctx = Context();
  auto r = RunJob(c, ctx);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << r.status().ToString();
  const std::string& msg = r.status().message();
  EXPECT_EQ(msg.rfind("epoch ", 0), 0u) << msg;
  EXPECT_TRUE(msg.find("training loss is NaN") != std::string::npos ||
              msg.find("training loss is Inf") != std::string::npos)
      << msg;
}

TEST_F(TrainJobTest, CancellationStopsBetweenBatches) {
  JobContext ctx = Context();
  int polls = 0;
  ctx.cancelled = [&] { return ++polls > 10; };
  auto r = RunJob(DigitsConfig(30), ctx);
  EXPECT_EQ(r.status().code(), StatusCode::kCancelled) << r.status().ToString();
  EXPECT_EQ(polls, 11);
}

TEST_F(TrainJobTest, EarlyStoppingStopsAfterPatience) {
  json c = DigitsConfig(30);
  // No epoch can beat the first by a whole unit of accuracy.
  c["train"]["early_stopping"] = {{"patience", 2}, {"metric", "val_accuracy"}, {"min_delta", 1.0}};
  JobContext ctx = Context();
  ASSERT_OK_AND_ASSIGN(JobResult r, RunJob(c, ctx));
  EXPECT_EQ(r.epochs_done, 3);
  EXPECT_EQ(r.metrics["best_epoch"], 1);
}

TEST_F(TrainJobTest, ExplicitValidationNpyLinearWithWeightsAndSmoothing) {
  // Two well-separated, imbalanced Gaussian-ish blobs written as .npy files.
  testutil::TempDir dir;
  std::mt19937_64 rng(1);
  std::normal_distribution<float> noise(0.f, 0.3f);
  auto make = [&](int n, const std::string& x_path, const std::string& y_path) {
    std::vector<float> x;
    std::vector<int64_t> y;
    for (int i = 0; i < n; ++i) {
      int64_t label = i % 5 == 0 ? 1 : 0;
      x.push_back((label ? 2.f : -2.f) + noise(rng));
      x.push_back(noise(rng));
      y.push_back(label);
    }
    testing::WriteNpy(x_path, "<f4", "(" + std::to_string(n) + ", 2)", x);
    testing::WriteNpy(y_path, "<i8", "(" + std::to_string(n) + ",)", y);
  };
  make(200, dir.Join("x.npy"), dir.Join("y.npy"));
  make(50, dir.Join("vx.npy"), dir.Join("vy.npy"));
  json c = {{"kind", "train"},
            {"dataset",
             {{"features", dir.Join("x.npy")}, {"labels", dir.Join("y.npy")},
              {"validation", {{"features", dir.Join("vx.npy")}, {"labels", dir.Join("vy.npy")}}}}},
            {"model", {{"type", "linear"}}},
            {"train",
             {{"epochs", 20}, {"lr", 0.05}, {"optimizer", "adam"}, {"label_smoothing", 0.1},
              {"class_weights", "inverse_frequency"}}}};
  ASSERT_OK(ValidateJobConfig(c));
  JobContext ctx = Context();
  ASSERT_OK_AND_ASSIGN(JobResult r, RunJob(c, ctx));
  EXPECT_EQ(r.metrics["val_accuracy"], 1.0);
}

TEST_F(TrainJobTest, GeluTanhSgdVariantsRun) {
  for (const char* act : {"gelu", "tanh"}) {
    json c = DigitsConfig(2);
    c["model"]["activation"] = act;
    c["model"]["hidden"] = {64, 32};
    c["train"]["optimizer"] = "sgd";
    c["train"]["lr"] = 0.05;
    c["dataset"]["limit"] = 500;
    JobContext ctx = Context();
    ASSERT_OK_AND_ASSIGN(JobResult r, RunJob(c, ctx));
    EXPECT_GT(r.metrics["val_accuracy"], 0.5) << act;
  }
}

TEST_F(TrainJobTest, BadConfigAndMissingFilesAreInvalidArgument) {
  json c = DigitsConfig(1);
  c["train"]["lr"] = -1;
  JobContext ctx = Context();
  EXPECT_EQ(RunJob(c, ctx).status().code(), StatusCode::kInvalidArgument);
  c = DigitsConfig(1);
  c["dataset"]["path"] = "/nonexistent/digits.csv";
  auto r = RunJob(c, ctx);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("dataset.path: file not found"), std::string::npos)
      << r.status().ToString();
}

// A small, fast variant: 500 digits rows -> 400 training rows -> 13 batches of 32 (the
// last of 16), no batchnorm.
constexpr int kStepsPerEpoch = 13;

json SmallConfig(int epochs) {
  json c = DigitsConfig(epochs);
  c["dataset"]["limit"] = 500;
  c["model"]["batchnorm"] = false;
  c["model"]["hidden"] = 64;
  return c;
}

// Runs `c` and returns each epoch's metrics, in order.
std::vector<std::map<std::string, double>> EpochMetrics(const json& c, DatasetCache* cache,
                                                        JobResult* result = nullptr) {
  std::vector<std::map<std::string, double>> out;
  JobContext ctx;
  ctx.cache = cache;
  ctx.on_epoch = [&](int, const std::map<std::string, double>& m) { out.push_back(m); };
  StatusOr<JobResult> r = RunJob(c, ctx);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (r.ok() && result) *result = *r;
  return out;
}

TEST_F(TrainJobTest, StepScheduleLrPerEpoch) {
  json c = SmallConfig(5);
  c["train"]["lr"] = 0.01;
  c["train"]["schedule"] = {{"type", "step"}, {"step_size", 2}, {"gamma", 0.5}};
  JobResult r;
  auto epochs = EpochMetrics(c, &cache_, &r);
  ASSERT_EQ(epochs.size(), 5u);
  const std::vector<double> expected = {0.01, 0.01, 0.005, 0.005, 0.0025};
  for (size_t e = 0; e < epochs.size(); ++e) EXPECT_DOUBLE_EQ(epochs[e]["lr"], expected[e]) << e;
  EXPECT_EQ(r.metrics["lr"], epochs.back()["lr"]);
  EXPECT_GE(r.metrics["val_accuracy"], 0.8);

  // The optimizer really uses it: up to the first decay the run is bit-identical to one
  // without a schedule, after it the losses differ.
  c["train"].erase("schedule");
  auto constant = EpochMetrics(c, &cache_);
  ASSERT_EQ(constant.size(), 5u);
  for (size_t e = 0; e < 2; ++e) EXPECT_EQ(epochs[e], constant[e]) << e;
  for (size_t e = 2; e < 5; ++e) {
    EXPECT_NE(epochs[e]["train_loss"], constant[e]["train_loss"]) << e;
    EXPECT_EQ(constant[e]["lr"], 0.01);
  }
}

TEST_F(TrainJobTest, CosineScheduleWithWarmupLrPerEpochFollowsTheFormula) {
  const int epochs = 4, warmup = 20;
  const double base = 0.01, min_lr = 1e-4;
  json c = SmallConfig(epochs);
  c["train"]["lr"] = base;
  c["train"]["schedule"] = {{"type", "cosine"}, {"warmup_steps", warmup}, {"min_lr", min_lr}};
  auto metrics = EpochMetrics(c, &cache_);
  ASSERT_EQ(metrics.size(), static_cast<size_t>(epochs));
  const int total = epochs * kStepsPerEpoch;
  const double pi = std::acos(-1.0);
  for (int e = 0; e < epochs; ++e) {
    const int t = (e + 1) * kStepsPerEpoch - 1;  // the epoch's last step
    const double expected =
        t < warmup ? base * (t + 1) / warmup
                   : min_lr + (base - min_lr) *
                                  (1 + std::cos(pi * (t - warmup) / (total - warmup))) / 2;
    EXPECT_NEAR(metrics[e]["lr"], expected, 1e-15) << "epoch " << e + 1;
  }
  EXPECT_LT(metrics[0]["lr"], base);  // still warming up after 13 of 20 steps
  EXPECT_LT(metrics[3]["lr"], 2 * min_lr);
}

TEST_F(TrainJobTest, PlateauScheduleReducesLrWhenValLossStalls) {
  // A high lr and zero patience: val_loss bounces, and each bounce halves the lr.
  json c = SmallConfig(8);
  c["train"]["lr"] = 0.05;
  c["train"]["schedule"] = {{"type", "plateau"}, {"patience", 0}, {"factor", 0.5},
                            {"min_lr", 0.01}};
  auto metrics = EpochMetrics(c, &cache_);
  ASSERT_EQ(metrics.size(), 8u);
  // Replay the rule on the reported val_loss values.
  double lr = 0.05, best = std::numeric_limits<double>::infinity();
  int reductions = 0;
  for (size_t e = 0; e < metrics.size(); ++e) {
    EXPECT_DOUBLE_EQ(metrics[e]["lr"], lr) << "epoch " << e + 1;
    if (metrics[e]["val_loss"] < best) {
      best = metrics[e]["val_loss"];
    } else {
      lr = std::max(lr * 0.5, 0.01);
      ++reductions;
    }
  }
  EXPECT_GE(reductions, 1);
}

TEST_F(TrainJobTest, ScheduleAndClippingAreDeterministic) {
  json c = SmallConfig(3);
  c["train"]["schedule"] = {{"type", "cosine"}, {"warmup_steps", 5}};
  c["train"]["clip_grad_norm"] = 0.5;
  JobResult a, b;
  auto ma = EpochMetrics(c, &cache_, &a);
  auto mb = EpochMetrics(c, &cache_, &b);
  EXPECT_EQ(ma, mb);
  EXPECT_EQ(a.metrics, b.metrics);
}

TEST_F(TrainJobTest, ClippingKeepsAHugeLearningRateFinite) {
  // Without clipping this diverges to a NaN loss (HugeLearningRateFailsWithNonFiniteLoss);
  // clipped, each plain-SGD step moves the weights by at most lr * clip = 1e-3.
  json c = SmallConfig(2);
  c["train"]["optimizer"] = "sgd";
  c["train"]["momentum"] = 0.0;
  c["train"]["lr"] = 1e6;
  c["model"]["dropout"] = 0.0;
  JobContext ctx = Context();
  EXPECT_EQ(RunJob(c, ctx).status().code(), StatusCode::kFailedPrecondition);
  c["train"]["clip_grad_norm"] = 1e-9;
  ASSERT_OK_AND_ASSIGN(JobResult r, RunJob(c, ctx));
  EXPECT_TRUE(std::isfinite(r.metrics["train_loss"]));
  EXPECT_EQ(r.metrics["lr"], 1e6);
}

TEST_F(TrainJobTest, ClippingAboveTheGradientNormChangesNothing) {
  json c = SmallConfig(2);
  JobResult plain, clipped, tight;
  EpochMetrics(c, &cache_, &plain);
  c["train"]["clip_grad_norm"] = 1e9;
  EpochMetrics(c, &cache_, &clipped);
  EXPECT_EQ(plain.metrics, clipped.metrics);  // bit-identical
  c["train"]["clip_grad_norm"] = 1e-3;
  EpochMetrics(c, &cache_, &tight);
  EXPECT_NE(plain.metrics["train_loss"], tight.metrics["train_loss"]);
}

// Final weights of the best epoch. A run on 400 digits rows at a high learning rate whose
// validation accuracy (100 rows) peaks before its last epoch.
json OvershootingConfig() {
  json c = SmallConfig(12);
  c["train"]["lr"] = 2e-2;
  return c;
}

// The validation loss and accuracy of checkpoint `blob`'s weights, measured independently:
// a distill job with the checkpoint as its teacher (same dataset and split) reports them as
// teacher_val_loss / teacher_val_accuracy.
std::pair<double, double> EvaluateCheckpoint(const json& trained, const std::string& blob,
                                             DatasetCache* cache) {
  json d = {{"kind", "distill"},
            {"dataset", trained["dataset"]},
            {"model", {{"type", "linear"}}},
            {"teacher", {{"type", "trial"}, {"trial", "s0-t0"}}},
            {"train", {{"epochs", 1}, {"threads", 1}}}};
  JobContext ctx;
  ctx.cache = cache;
  auto shared = std::make_shared<const std::string>(blob);
  ctx.checkpoint = [shared](const std::string&) { return shared; };
  StatusOr<JobResult> r = RunJob(d, ctx);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (!r.ok()) return {0, 0};
  return {r->metrics.at("teacher_val_loss"), r->metrics.at("teacher_val_accuracy")};
}

// The first epoch (from 1) with the highest `key`, or the lowest when `lower` is set.
int BestEpochOf(const std::vector<std::map<std::string, double>>& epochs, const char* key,
                bool lower) {
  size_t best = 0;
  for (size_t e = 1; e < epochs.size(); ++e) {
    const double v = epochs[e].at(key), b = epochs[best].at(key);
    if (lower ? v < b : v > b) best = e;
  }
  return static_cast<int>(best) + 1;
}

TEST_F(TrainJobTest, KeepBestMakesTheFinalWeightsThoseOfTheBestEpoch) {
  json c = OvershootingConfig();
  c["checkpoint"] = {{"every_steps", 1000000}, {"keep_best", 1}, {"metric", "val_accuracy"}};
  JobResult r;
  auto epochs = EpochMetrics(c, &cache_, &r);
  ASSERT_EQ(epochs.size(), 12u);
  const int best = BestEpochOf(epochs, "val_accuracy", /*lower=*/false);
  const auto& chosen = epochs[best - 1];
  ASSERT_LT(epochs.back().at("val_accuracy"), chosen.at("val_accuracy"))
      << "the run must not peak at its last epoch for this test to mean anything";
  EXPECT_EQ(r.metrics.at("selected_epoch"), best);
  EXPECT_EQ(r.metrics.at("selected_val_accuracy"), chosen.at("val_accuracy"));
  EXPECT_EQ(r.metrics.at("val_accuracy"), epochs.back().at("val_accuracy"));  // the last
  ASSERT_TRUE(r.checkpoint.has_value());
  ASSERT_OK_AND_ASSIGN(CheckpointHeader h, ReadCheckpointHeader(*r.checkpoint));
  EXPECT_EQ(h.metrics.at("val_accuracy").get<double>(), chosen.at("val_accuracy"));
  EXPECT_EQ(h.metrics.at("val_loss").get<double>(), chosen.at("val_loss"));
  EXPECT_EQ(h.metrics.at("selected_epoch").get<int>(), best);
  EXPECT_EQ(h.epochs, 12);
  // The weights themselves are the best epoch's: evaluated afresh, they score its accuracy.
  auto [loss, accuracy] = EvaluateCheckpoint(c, *r.checkpoint, &cache_);
  EXPECT_DOUBLE_EQ(accuracy, chosen.at("val_accuracy"));
  EXPECT_NEAR(loss, chosen.at("val_loss"), 1e-5);
}

TEST_F(TrainJobTest, EarlyStoppingKeepsItsBestEpochsWeights) {
  json c = OvershootingConfig();
  c["train"]["early_stopping"] = {{"patience", 4}, {"metric", "val_loss"}};
  JobResult r;
  auto epochs = EpochMetrics(c, &cache_, &r);
  const int best = BestEpochOf(epochs, "val_loss", /*lower=*/true);
  ASSERT_LT(best, r.epochs_done);
  EXPECT_EQ(r.metrics.at("best_epoch"), best);
  EXPECT_EQ(r.metrics.at("selected_epoch"), best);
  EXPECT_EQ(r.metrics.at("selected_val_loss"), epochs[best - 1].at("val_loss"));
  auto [loss, accuracy] = EvaluateCheckpoint(c, *r.checkpoint, &cache_);
  EXPECT_DOUBLE_EQ(accuracy, epochs[best - 1].at("val_accuracy"));
  EXPECT_NEAR(loss, epochs[best - 1].at("val_loss"), 1e-5);
  EXPECT_GT(std::abs(loss - epochs.back().at("val_loss")), 1e-4) << "not the last epoch's";
}

TEST_F(TrainJobTest, WithoutSelectionTheFinalWeightsAreTheLastEpochs) {
  json c = OvershootingConfig();
  JobResult r;
  auto epochs = EpochMetrics(c, &cache_, &r);
  EXPECT_EQ(r.metrics.count("selected_epoch"), 0u);
  ASSERT_OK_AND_ASSIGN(CheckpointHeader h, ReadCheckpointHeader(*r.checkpoint));
  EXPECT_EQ(h.metrics.at("val_accuracy").get<double>(), epochs.back().at("val_accuracy"));
  auto [loss, accuracy] = EvaluateCheckpoint(c, *r.checkpoint, &cache_);
  EXPECT_DOUBLE_EQ(accuracy, epochs.back().at("val_accuracy"));
  EXPECT_NEAR(loss, epochs.back().at("val_loss"), 1e-5);
}

TEST_F(TrainJobTest, KeepBestNeedsAPerEpochMetric) {
  json c = SmallConfig(1);
  c["checkpoint"] = {{"every_steps", 10}, {"keep_best", 1}, {"metric", "val_acc"}};
  Status s = ValidateJobConfig(c);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("checkpoint.metric: with keep_best, must be a per-epoch metric"),
            std::string::npos)
      << s.ToString();
  c["checkpoint"]["keep_best"] = 0;  // retention only by recency: the metric is not read
  EXPECT_OK(ValidateJobConfig(c));
}

TEST_F(TrainJobTest, NoopRunsAndCancels) {
  JobContext ctx = Context();
  ASSERT_OK_AND_ASSIGN(JobResult r, RunJob({{"kind", "noop"}, {"sleep_ms", 5}}, ctx));
  EXPECT_EQ(r.epochs_done, 0);
  ctx.cancelled = [] { return true; };
  EXPECT_EQ(RunJob({{"kind", "noop"}, {"sleep_ms", 10000}}, ctx).status().code(),
            StatusCode::kCancelled);
}

}  // namespace
}  // namespace lattice::jobs
