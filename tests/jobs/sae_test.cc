#include "jobs/internal/sae.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "jobs/activation_dataset.h"
#include "jobs/internal/flat_optimizer.h"
#include "jobs/job_config.h"
#include "jobs/train_job.h"
#include "tests/jobs/npy_writer.h"
#include "tests/testutil/testutil.h"

namespace lattice::jobs {
namespace {

using internal::NamedWeights;
using internal::SaeModel;
using nlohmann::json;

// Sets the weights of `m` (d = 2, m = 2) by hand.
void SetWeights(SaeModel& m, std::vector<float> b_pre, std::vector<float> w_enc,
                std::vector<float> b_enc, std::vector<float> w_dec) {
  NamedWeights w = m.CloneWeights();
  w[0].second = torch::tensor(b_pre);
  w[1].second = torch::tensor(w_enc).reshape({2, 2});
  w[2].second = torch::tensor(b_enc);
  w[3].second = torch::tensor(w_dec).reshape({2, 2});
  m.LoadWeights(w);
}

TEST(SaeTest, DecoderColumnsHaveUnitNormAfterAStep) {
  torch::manual_seed(3);
  SaeModel model(6, 24);
  torch::Tensor norms = model.DecoderNorms().detach();
  EXPECT_TRUE(torch::allclose(norms, torch::ones_like(norms), 1e-5, 1e-6));  // at init
  internal::FlatParameters flat(model.parameters());
  TrainConfig t;
  t.lr = 0.05;
  internal::FlatOptimizer optimizer(flat, internal::FlatOptimizerOptions::FromTrainConfig(t));
  torch::Tensor x = torch::randn({32, 6}) * 3;
  torch::Tensor f;
  torch::Tensor x_hat = model.Forward(x, &f);
  internal::SaeLoss(x, x_hat, f, model.DecoderNorms(), 0.01).loss.backward();
  optimizer.Step();
  norms = model.DecoderNorms().detach();
  ASSERT_GT((norms - 1).abs().max().item<double>(), 1e-3);  // the step moved them off 1
  model.RenormaliseDecoder();
  norms = model.DecoderNorms().detach();
  EXPECT_LT((norms - 1).abs().max().item<double>(), 1e-6);
}

TEST(SaeTest, LossMatchesAHandComputedValue) {
  SaeModel model(2, 2);
  // b_pre [1, 0]; W_enc = I; b_enc [0, -0.5]; W_dec = diag(2, 1) (column norms 2 and 1).
  SetWeights(model, {1, 0}, {1, 0, 0, 1}, {0, -0.5f}, {2, 0, 0, 1});
  torch::Tensor x = torch::tensor({3.0f, 1.0f}).reshape({1, 2});
  torch::Tensor f;
  torch::Tensor x_hat = model.Forward(x, &f);
  // x - b_pre = [2, 1]; f = relu([2, 0.5]) = [2, 0.5]; x_hat = [2*2, 0.5*1] + [1, 0] = [5, 0.5].
  EXPECT_TRUE(torch::allclose(f, torch::tensor({2.0f, 0.5f}).reshape({1, 2})));
  EXPECT_TRUE(torch::allclose(x_hat, torch::tensor({5.0f, 0.5f}).reshape({1, 2})));
  internal::SaeLossParts parts = internal::SaeLoss(x, x_hat, f, model.DecoderNorms(), 0.1);
  // mse = ((5-3)^2 + (0.5-1)^2) / 2 = 2.125; sparsity = 2 * 2 + 0.5 * 1 = 4.5.
  EXPECT_NEAR(parts.mse, 2.125, 1e-6);
  EXPECT_NEAR(parts.sparsity, 4.5, 1e-6);
  EXPECT_NEAR(parts.loss.item<double>(), 2.125 + 0.1 * 4.5, 1e-6);
}

TEST(SaeTest, L0ExplainedVarianceDeadAndPurityOnAHandMadeCase) {
  SaeModel model(2, 2);
  SetWeights(model, {0, 0}, {1, 0, 0, 1}, {0, 0}, {1, 0, 0, 1});  // identity, ReLU'd
  torch::Tensor x = torch::tensor({1.0f, -1.0f, 2.0f, 3.0f, -1.0f, -1.0f}).reshape({3, 2});
  torch::Tensor labels = torch::tensor({int64_t{0}, int64_t{1}, int64_t{1}});
  internal::SaeEval e = internal::EvaluateSae(model, x, labels, 0.0, 2);
  // f = [[1, 0], [2, 3], [0, 0]]: L0 = 3 / 3; errors 1 + 0 + 2 over 6 values.
  EXPECT_NEAR(e.l0, 1.0, 1e-9);
  EXPECT_NEAR(e.mse, 0.5, 1e-7);
  // Total variance about the mean [2/3, 1/3]: 42/9 + 96/9.
  EXPECT_NEAR(e.explained_variance, 1.0 - 3.0 / (138.0 / 9.0), 1e-6);
  EXPECT_EQ(e.live_features, 2);
  // Feature 0's top 2: rows 1 (label 1), 0 (label 0) -> 1/2; feature 1: row 1 only -> 1.
  EXPECT_NEAR(e.label_purity, 0.75, 1e-9);

  // Purity over top 3, a dead feature left out of the mean.
  torch::Tensor f = torch::tensor({1.0f, 0.0f, 0.0f, 2.0f, 0.0f, 0.0f, 0.0f, 3.0f, 0.0f,
                                   0.5f, 1.0f, 0.0f}).reshape({4, 3});
  torch::Tensor y = torch::tensor({int64_t{0}, int64_t{0}, int64_t{1}, int64_t{1}});
  int64_t live = 0;
  // Feature 0: 2 (0), 1 (0), 0.5 (1) -> 2/3; feature 1: 3 (1), 1 (1) -> 1; feature 2: dead.
  EXPECT_NEAR(internal::LabelPurity(f, y, 3, &live), (2.0 / 3.0 + 1.0) / 2.0, 1e-9);
  EXPECT_EQ(live, 2);

  internal::DeadFeatureTracker dead(3, 2);
  dead.Record(torch::tensor({1.0f, 0.0f, 0.0f}).reshape({1, 3}));
  EXPECT_EQ(dead.Dead(), 2);  // of 1 input seen: features 1 and 2 never fired
  dead.Record(torch::tensor({0.0f, 1.0f, 0.0f}).reshape({1, 3}));
  EXPECT_EQ(dead.Dead(), 1);  // both fired within the last 2 inputs
  dead.Record(torch::tensor({0.0f, 1.0f, 0.0f}).reshape({1, 3}));
  EXPECT_EQ(dead.Dead(), 2);  // feature 0 last fired 2 inputs ago: out of the window
  EXPECT_EQ(dead.seen(), 3);
}

TEST(SaeTest, CheckpointRoundTrip) {
  torch::manual_seed(1);
  SaeModel a(5, 10, torch::randn({5}));
  torch::manual_seed(2);
  SaeModel b(5, 10);
  CheckpointHeader header;
  header.config = {{"kind", "train"}, {"model", {{"type", "sae"}}}};
  header.in_dim = 5;
  header.classes = 10;
  const std::string blob = a.Encode(header, {}, {});
  size_t offset = 0;
  ASSERT_OK_AND_ASSIGN(CheckpointHeader read, ReadCheckpointHeader(blob, &offset));
  EXPECT_EQ(read.in_dim, 5);
  torch::serialize::InputArchive archive;
  b.Decode(blob, offset, &archive);
  NamedWeights wa = a.CloneWeights(), wb = b.CloneWeights();
  ASSERT_EQ(wa.size(), 4u);
  for (size_t i = 0; i < wa.size(); ++i) {
    EXPECT_EQ(wa[i].first, wb[i].first);
    EXPECT_TRUE(torch::equal(wa[i].second, wb[i].second)) << wa[i].first;
  }
  torch::Tensor x = torch::randn({3, 5});
  EXPECT_TRUE(torch::equal(a.forward(x), b.forward(x)));
  // A dictionary of another size is refused, naming the tensor.
  SaeModel c(5, 20);
  torch::serialize::InputArchive other;
  EXPECT_THROW(c.Decode(blob, offset, &other), std::exception);
}

// Rows that are sparse combinations of 16 unit directions in 8-d, labelled by their
// strongest direction.
ActivationData SparseData(int64_t rows, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> uniform(0.5f, 2.0f);
  const int64_t d = 8, k = 16;
  std::vector<float> dirs(static_cast<size_t>(k * d));
  for (int64_t i = 0; i < k; ++i) {
    float norm = 0;
    for (int64_t j = 0; j < d; ++j) norm += std::pow(dirs[i * d + j] = normal(rng), 2.0f);
    for (int64_t j = 0; j < d; ++j) dirs[i * d + j] /= std::sqrt(norm);
  }
  ActivationData data;
  data.name = "synthetic";
  data.features = {std::vector<float>(static_cast<size_t>(rows * d)), rows, d, false};
  for (int64_t r = 0; r < rows; ++r) {
    int64_t best = 0;
    float best_a = 0;
    for (int active = 0; active < 2; ++active) {
      const int64_t i = static_cast<int64_t>(rng() % k);
      const float a = uniform(rng);
      if (a > best_a) best_a = a, best = i;
      for (int64_t j = 0; j < d; ++j) data.features.data[r * d + j] += a * dirs[i * d + j];
    }
    data.labels.push_back(best % 4);
  }
  return data;
}

json SaeJob(const std::string& source = "s7") {
  return {{"kind", "train"},
          {"seed", 5},
          {"dataset", {{"activations", "synthetic"}, {"source", source},
                       {"split", {{"validation_fraction", 0.2}, {"seed", 1}}}}},
          {"model", {{"type", "sae"}, {"expansion", 4}, {"dead_window", 500}, {"purity_top", 20}}},
          {"train", {{"epochs", 4}, {"batch_size", 64}, {"lr", 3e-3}, {"l1_coefficient", 1e-3},
                     {"threads", 1}}}};
}

JobContext ContextWith(std::shared_ptr<const std::string> blob) {
  JobContext ctx;
  ctx.checkpoint = [blob](const std::string& trial) -> std::shared_ptr<const std::string> {
    return trial == ActivationsBlobId(SweepId{7}).ToString() ? blob : nullptr;
  };
  return ctx;
}

TEST(SaeTest, TrainsOnAnActivationDatasetAndReportsItsMetrics) {
  auto blob = std::make_shared<const std::string>(EncodeActivations(SparseData(3000, 9)));
  JobContext ctx = ContextWith(blob);
  std::vector<std::map<std::string, double>> epochs;
  ctx.on_epoch = [&](int, const std::map<std::string, double>& m) { epochs.push_back(m); };
  ASSERT_OK_AND_ASSIGN(JobResult r, RunJob(SaeJob(), ctx));
  ASSERT_EQ(epochs.size(), 4u);
  for (const std::string& name : SaePerEpochMetricNames(/*labels=*/true)) {
    EXPECT_EQ(epochs.back().count(name), 1u) << name;
  }
  EXPECT_EQ(r.metrics.at("dictionary_size"), 32);
  EXPECT_GT(r.metrics.at("val_explained_variance"), 0.9);
  EXPECT_LT(epochs.back().at("val_mse"), epochs.front().at("val_mse"));
  EXPECT_NEAR(r.metrics.at("val_l0_fraction"), r.metrics.at("val_l0") / 32, 1e-12);
  EXPECT_GE(r.metrics.at("val_label_purity"), 0.25);
  EXPECT_LE(r.metrics.at("val_label_purity"), 1.0);
  EXPECT_GE(r.metrics.at("dead_features"), 0);
  ASSERT_TRUE(r.checkpoint.has_value());
  ASSERT_OK_AND_ASSIGN(CheckpointHeader h, ReadCheckpointHeader(*r.checkpoint));
  EXPECT_EQ(h.in_dim, 8);
  EXPECT_EQ(h.classes, 32);

  // The same config runs to the same numbers.
  JobContext again = ContextWith(blob);
  ASSERT_OK_AND_ASSIGN(JobResult r2, RunJob(SaeJob(), again));
  EXPECT_EQ(r2.metrics, r.metrics);
}

TEST(SaeTest, NanInTheDatasetIsAClearErrorAndNothingIsTrained) {
  ActivationData data = SparseData(100, 2);
  data.features.data[3 * 8 + 1] = std::numeric_limits<float>::quiet_NaN();
  auto blob = std::make_shared<const std::string>(EncodeActivations(data));
  JobContext ctx = ContextWith(blob);
  int epochs = 0;
  ctx.on_epoch = [&](int, const std::map<std::string, double>&) { ++epochs; };
  auto r = RunJob(SaeJob(), ctx);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("synthetic: row 3, column 1 is NaN"), std::string::npos)
      << r.status().message();
  EXPECT_EQ(epochs, 0);

  // The same from .npy files.
  testutil::TempDir dir;
  std::vector<float> x(40, 1.0f);
  x[13] = std::numeric_limits<float>::quiet_NaN();
  std::vector<int64_t> y(10, 0);
  testing::WriteNpy(dir.path() + "/x.npy", "<f4", "(10, 4)", x);
  testing::WriteNpy(dir.path() + "/y.npy", "<i8", "(10,)", y);
  json config = SaeJob();
  config["dataset"] = {{"features", dir.path() + "/x.npy"}, {"labels", dir.path() + "/y.npy"}};
  JobContext files;
  auto f = RunJob(config, files);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("row 3, column 1 is NaN"), std::string::npos)
      << f.status().message();

  // A blob the coordinator never sent.
  JobContext none;
  auto missing = RunJob(SaeJob("s8"), none);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("not received"), std::string::npos);
}

TEST(SaeTest, ActivationBlobRoundTripsAndRejectsDamage) {
  ActivationData data = SparseData(50, 4);
  const std::string blob = EncodeActivations(data);
  ASSERT_OK_AND_ASSIGN(ActivationData back, DecodeActivations(blob));
  EXPECT_EQ(back.name, "synthetic");
  EXPECT_EQ(back.features.rows, 50);
  EXPECT_EQ(back.features.cols, 8);
  EXPECT_EQ(back.features.data, data.features.data);
  EXPECT_EQ(back.labels, data.labels);
  EXPECT_FALSE(DecodeActivations(blob.substr(0, blob.size() - 4)).ok());
  EXPECT_FALSE(DecodeActivations("garbage").ok());
  EXPECT_EQ(LabelsFromMetadata({"{\"label\":3}", "{\"label\":0}"}), (std::vector<int64_t>{3, 0}));
  EXPECT_TRUE(LabelsFromMetadata({"{\"label\":3}", "{\"path\":\"a.png\"}"}).empty());
}

TEST(SaeTest, ConfigErrorsNameTheKey) {
  auto message = [](json config) {
    auto parsed = ParseJobConfig(config);
    return parsed.ok() ? std::string("ok") : parsed.status().message();
  };
  json c = SaeJob();
  c["model"]["expansion"] = 0;
  EXPECT_NE(message(c).find("model.expansion: must be >= 1"), std::string::npos) << message(c);
  c = SaeJob();
  c["model"]["l1_coefficient"] = 0.1;
  EXPECT_NE(message(c).find("give either model.l1_coefficient"), std::string::npos);
  c = SaeJob();
  c["model"]["hidden"] = 3;
  EXPECT_NE(message(c).find("model.hidden: not a key of model type sae"), std::string::npos);
  c = SaeJob();
  c["checkpoint"] = {{"every_steps", 10}};
  EXPECT_NE(message(c).find("checkpoint: step checkpoints are not supported"), std::string::npos);
  c = SaeJob();
  c["model"] = {{"type", "mlp"}};
  EXPECT_NE(message(c).find("train.l1_coefficient: only for model type sae"), std::string::npos);
  c["train"].erase("l1_coefficient");
  EXPECT_NE(message(c).find("dataset.activations: an activations dataset trains model type sae"),
            std::string::npos);
  // model.l1_coefficient alone, and the default.
  c = SaeJob();
  c["train"].erase("l1_coefficient");
  ASSERT_OK_AND_ASSIGN(JobConfig d, ParseJobConfig(c));
  EXPECT_EQ(d.model.sae.l1_coefficient, kDefaultL1Coefficient);
  c["model"]["l1_coefficient"] = 0.25;
  ASSERT_OK_AND_ASSIGN(JobConfig m, ParseJobConfig(c));
  EXPECT_EQ(m.model.sae.l1_coefficient, 0.25);
  EXPECT_EQ(m.dataset.activations, "synthetic");
  EXPECT_EQ(m.dataset.activations_source, "s7");
  // The sweep metric must be one of an SAE's.
  EXPECT_OK(CheckSweepMetric(SaeJob(), "val_explained_variance"));
  Status bad = CheckSweepMetric(SaeJob(), "val_accuracy");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("val_label_purity"), std::string::npos) << bad.message();
}

}  // namespace
}  // namespace lattice::jobs
