// The probe recipe's pieces: stratified splits with a test part, class weights with boosts,
// mixup, classification reports, and a test part that never drives selection.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "jobs/dataset.h"
#include "jobs/internal/class_subset.h"
#include "jobs/internal/class_weights.h"
#include "jobs/internal/classification_metrics.h"
#include "jobs/internal/mixup.h"
#include "jobs/internal/stratified_split.h"
#include "jobs/job_config.h"
#include "jobs/train_job.h"
#include "tests/jobs/npy_writer.h"
#include "tests/testutil/testutil.h"

namespace lattice::jobs {
namespace {

using nlohmann::json;

// Labels with the probe's imbalance: 324 / 200 / 302 rows, interleaved.
std::vector<int64_t> ProbeLabels() {
  std::vector<int64_t> y;
  for (int i = 0; i < 324; ++i) y.push_back(0);
  for (int i = 0; i < 200; ++i) y.push_back(1);
  for (int i = 0; i < 302; ++i) y.push_back(2);
  std::mt19937_64 rng(5);
  std::shuffle(y.begin(), y.end(), rng);
  return y;
}

std::map<int64_t, int64_t> CountClasses(const std::vector<int64_t>& rows,
                                        const std::vector<int64_t>& labels) {
  std::map<int64_t, int64_t> counts;
  for (int64_t r : rows) ++counts[labels[static_cast<size_t>(r)]];
  return counts;
}

TEST(StratifiedSplitTest, TrainPerClassTakesExactlyThatManyOfEachClass) {
  const std::vector<int64_t> y = ProbeLabels();
  DatasetConfig c;
  c.stratify = true;
  c.train_per_class = 150;
  c.test_fraction = 0.2;
  ASSERT_OK_AND_ASSIGN(SplitIndices s, MakeDatasetSplit(y, c));
  using Counts = std::map<int64_t, int64_t>;
  EXPECT_EQ(CountClasses(s.train, y), (Counts{{0, 150}, {1, 150}, {2, 150}}));
  EXPECT_EQ(CountClasses(s.test, y), (Counts{{0, 65}, {1, 40}, {2, 60}}));  // round(n / 5)
  EXPECT_EQ(CountClasses(s.validation, y), (Counts{{0, 109}, {1, 10}, {2, 92}}));
  // Every row in exactly one part.
  std::set<int64_t> all(s.train.begin(), s.train.end());
  all.insert(s.validation.begin(), s.validation.end());
  all.insert(s.test.begin(), s.test.end());
  EXPECT_EQ(all.size(), y.size());
  EXPECT_EQ(s.train.size() + s.validation.size() + s.test.size(), y.size());
  // Seeded: the same seed gives the same rows, another seed others.
  ASSERT_OK_AND_ASSIGN(SplitIndices again, MakeDatasetSplit(y, c));
  EXPECT_EQ(again.train, s.train);
  c.split_seed = 7;
  ASSERT_OK_AND_ASSIGN(SplitIndices other, MakeDatasetSplit(y, c));
  EXPECT_NE(other.train, s.train);
}

TEST(StratifiedSplitTest, StratifiedFractionKeepsEachClassShare) {
  const std::vector<int64_t> y = ProbeLabels();
  DatasetConfig c;
  c.stratify = true;
  c.validation_fraction = 0.2;
  c.test_fraction = 0.1;
  ASSERT_OK_AND_ASSIGN(SplitIndices s, MakeDatasetSplit(y, c));
  using Counts = std::map<int64_t, int64_t>;
  EXPECT_EQ(CountClasses(s.validation, y), (Counts{{0, 65}, {1, 40}, {2, 60}}));
  EXPECT_EQ(CountClasses(s.test, y), (Counts{{0, 32}, {1, 20}, {2, 30}}));
  EXPECT_EQ(CountClasses(s.train, y), (Counts{{0, 227}, {1, 140}, {2, 212}}));
}

TEST(StratifiedSplitTest, PlainSplitIsUnchangedAndTooFewRowsNameTheField) {
  const std::vector<int64_t> y = ProbeLabels();
  DatasetConfig c;  // neither stratified nor with a test part: exactly MakeSplit
  ASSERT_OK_AND_ASSIGN(SplitIndices a, MakeDatasetSplit(y, c));
  ASSERT_OK_AND_ASSIGN(SplitIndices b, MakeSplit(static_cast<int64_t>(y.size()), 0.2, 42));
  EXPECT_EQ(a.train, b.train);
  EXPECT_EQ(a.validation, b.validation);
  EXPECT_TRUE(a.test.empty());
  c.stratify = true;
  c.train_per_class = 200;  // class 1 has 200 rows: none would be left to validate
  StatusOr<SplitIndices> bad = MakeDatasetSplit(y, c);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("dataset.split.train_per_class: class 1 has 200 rows"),
            std::string::npos)
      << bad.status().ToString();
}

TEST(ClassSubsetTest, KeepsTheClassesRelabelledAndTheFirstRowsOfEach) {
  DatasetPart part;
  part.labels = {0, 6, 2, 6, 9, 0, 2, 6};
  part.features.rows = 8;
  part.features.cols = 2;
  for (int r = 0; r < 8; ++r) part.features.data.insert(part.features.data.end(), {float(r), -float(r)});
  DatasetPart kept = part;
  ASSERT_OK(internal::SelectClasses({0, 6, 2}, {1, 2, 2}, "dataset", &kept));
  EXPECT_EQ(kept.labels, (std::vector<int64_t>{0, 1, 2, 1, 2}));  // rows 0, 1, 2, 3, 6
  EXPECT_EQ(kept.features.rows, 5);
  EXPECT_EQ(kept.features.data, (std::vector<float>{0, -0.f, 1, -1, 2, -2, 3, -3, 6, -6}));
  DatasetPart short_of_rows = part;
  Status s = internal::SelectClasses({0, 6, 2}, {1, 5, 1}, "dataset", &short_of_rows);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("dataset.rows_per_class[1]: class 6 has 3 rows, 5 asked"),
            std::string::npos)
      << s.ToString();
}

TEST(ClassWeightsTest, InverseFrequencyWithABoost) {
  ClassWeightsConfig c;
  c.inverse_frequency = true;
  const std::vector<int64_t> counts = {300, 100, 200};  // n = 600, k = 3
  ASSERT_OK_AND_ASSIGN(std::vector<double> plain, internal::ClassWeights(c, counts));
  EXPECT_EQ(plain, (std::vector<double>{600.0 / 900, 600.0 / 300, 600.0 / 600}));
  c.boost = {{1, 1.5}};
  ASSERT_OK_AND_ASSIGN(std::vector<double> boosted, internal::ClassWeights(c, counts));
  EXPECT_EQ(boosted, (std::vector<double>{600.0 / 900, 600.0 / 300 * 1.5, 600.0 / 600}));
  c.boost = {{3, 2.0}};
  StatusOr<std::vector<double>> bad = internal::ClassWeights(c, counts);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("train.class_weights.boost.3"), std::string::npos);
}

TEST(ClassWeightsTest, ExplicitListAndNone) {
  ClassWeightsConfig c;
  ASSERT_OK_AND_ASSIGN(std::vector<double> none, internal::ClassWeights(c, {5, 5}));
  EXPECT_TRUE(none.empty());
  c.weights = {1.0, 2.5};
  ASSERT_OK_AND_ASSIGN(std::vector<double> w, internal::ClassWeights(c, {5, 5}));
  EXPECT_EQ(w, c.weights);
  StatusOr<std::vector<double>> bad = internal::ClassWeights(c, {5, 5, 5});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("has 2 weights, the data has 3 classes"),
            std::string::npos);
}

TEST(ClassificationReportTest, PrecisionRecallF1AndConfusion) {
  // true\pred: class 0: 8 right, 2 as 1; class 1: 1 as 0, 4 right; class 2: 3 as 1, 2 right.
  internal::ClassificationReport r = internal::MakeReport({8, 2, 0, 1, 4, 0, 0, 3, 2}, 3);
  EXPECT_DOUBLE_EQ(r.precision[0], 8.0 / 9);
  EXPECT_DOUBLE_EQ(r.recall[0], 8.0 / 10);
  EXPECT_DOUBLE_EQ(r.precision[1], 4.0 / 9);
  EXPECT_DOUBLE_EQ(r.recall[1], 4.0 / 5);
  EXPECT_DOUBLE_EQ(r.precision[2], 1.0);
  EXPECT_DOUBLE_EQ(r.recall[2], 2.0 / 5);
  const double f1_0 = 2 * (8.0 / 9) * 0.8 / (8.0 / 9 + 0.8);
  const double f1_1 = 2 * (4.0 / 9) * 0.8 / (4.0 / 9 + 0.8);
  const double f1_2 = 2 * 1.0 * 0.4 / 1.4;
  EXPECT_DOUBLE_EQ(r.macro_f1, (f1_0 + f1_1 + f1_2) / 3);
  EXPECT_DOUBLE_EQ(r.accuracy, 14.0 / 20);
  std::map<std::string, double> m;
  internal::AddReport(r, "test", &m);
  EXPECT_EQ(m.at("test_confusion_2_1"), 3);
  EXPECT_EQ(m.at("test_support_0"), 10);
  EXPECT_DOUBLE_EQ(m.at("test_f1_2"), f1_2);
  EXPECT_DOUBLE_EQ(m.at("test_f1"), r.macro_f1);
  // A class never predicted has precision 0, not NaN.
  internal::ClassificationReport none = internal::MakeReport({3, 0, 2, 0}, 2);
  EXPECT_EQ(none.precision[1], 0.0);
  EXPECT_EQ(none.f1[1], 0.0);
}

TEST(MixupTest, MixesEachRowWithAnotherAndDrawsFromTheRng) {
  torch::manual_seed(0);
  torch::Tensor x = torch::randn({16, 4});
  torch::Tensor y = torch::arange(16, torch::kLong);
  std::mt19937_64 rng(3);
  internal::MixedBatch m = internal::Mixup(x, y, 0.3, rng);
  ASSERT_GT(m.lambda, 0.0);
  ASSERT_LT(m.lambda, 1.0);
  // Row i is lambda * x[i] + (1 - lambda) * x[j], j = y_other[i] (labels are row numbers).
  torch::Tensor expect = x * m.lambda + x.index_select(0, m.y_other) * (1 - m.lambda);
  EXPECT_TRUE(torch::allclose(m.x, expect));
  EXPECT_FALSE(torch::allclose(m.x, x));
  EXPECT_FALSE(torch::equal(m.y_other, y));  // a permutation other than the identity
  EXPECT_EQ(std::get<0>(m.y_other.sort()).equal(y), true);
  std::mt19937_64 same(3);
  EXPECT_EQ(internal::Mixup(x, y, 0.3, same).lambda, m.lambda);
}

TEST(MixupTest, UntilCountsTheFirstShareOfEpochs) {
  MixupConfig c;
  c.until = 0.7;
  std::vector<int> active;
  for (int e = 1; e <= 10; ++e) {
    if (internal::MixupActive(c, e, 10)) active.push_back(e);
  }
  EXPECT_EQ(active, (std::vector<int>{1, 2, 3, 4, 5, 6, 7}));
}

// Three Gaussian blobs in 8 dimensions with the probe's imbalance, as .npy files.
class RecipeJobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::vector<int64_t> y = ProbeLabels();
    std::mt19937_64 rng(11);
    std::normal_distribution<float> noise(0.f, 1.0f);
    std::vector<float> x;
    for (int64_t label : y) {
      for (int d = 0; d < 8; ++d) x.push_back((d == label ? 1.5f : 0.f) + noise(rng));
    }
    const std::string n = std::to_string(y.size());
    testing::WriteNpy(dir_.Join("x.npy"), "<f4", "(" + n + ", 8)", x);
    testing::WriteNpy(dir_.Join("y.npy"), "<i8", "(" + n + ",)", y);
  }

  json Config() const {
    return {{"kind", "train"},
            {"seed", 42},
            {"dataset",
             {{"features", dir_.Join("x.npy")}, {"labels", dir_.Join("y.npy")},
              {"standardize", true},
              {"split", {{"train_per_class", 150}, {"test_fraction", 0.2}, {"seed", 42}}}}},
            {"model", {{"hidden", 32}, {"batchnorm", true}, {"dropout", 0.1}}},
            {"train",
             {{"epochs", 6}, {"batch_size", 32}, {"lr", 3e-3}, {"label_smoothing", 0.1},
              {"threads", 1}, {"early_stopping", {{"patience", 50}}}}}};
  }

  std::vector<std::map<std::string, double>> Run(const json& c, JobResult* result) {
    std::vector<std::map<std::string, double>> epochs;
    JobContext ctx;
    ctx.on_epoch = [&](int, const std::map<std::string, double>& m) { epochs.push_back(m); };
    StatusOr<JobResult> r = RunJob(c, ctx);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (r.ok()) *result = *r;
    return epochs;
  }

  testutil::TempDir dir_;
};

TEST_F(RecipeJobTest, MixupChangesTrainingOnlyDuringItsEpochs) {
  json plain = Config();
  json mix = Config();
  mix["train"]["mixup"] = {{"alpha", 0.3}, {"until", 1.0}};
  json half = Config();
  half["train"]["mixup"] = {{"alpha", 0.3}, {"until", 0.5}};
  JobResult r;
  auto p = Run(plain, &r);
  auto m = Run(mix, &r);
  auto h = Run(half, &r);
  ASSERT_EQ(p.size(), 6u);
  ASSERT_EQ(m.size(), 6u);
  ASSERT_EQ(h.size(), 6u);
  EXPECT_NE(m[0].at("train_loss"), p[0].at("train_loss"));  // mixed batches from epoch 1
  // until 0.5 of 6 epochs: epochs 1-3 mix exactly as with until 1, epoch 4 no longer does.
  for (size_t e = 0; e < 3; ++e) EXPECT_EQ(h[e].at("train_loss"), m[e].at("train_loss")) << e;
  EXPECT_NE(h[3].at("train_loss"), m[3].at("train_loss"));
}

TEST_F(RecipeJobTest, ClassWeightBoostChangesTheLoss) {
  json base = Config();
  base["train"]["class_weights"] = {{"inverse_frequency", true}};
  json boosted = Config();
  boosted["train"]["class_weights"] = {{"inverse_frequency", true}, {"boost", {{"1", 1.5}}}};
  JobResult r;
  auto a = Run(base, &r);
  auto b = Run(boosted, &r);
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty());
  EXPECT_NE(a[0].at("train_loss"), b[0].at("train_loss"));
}

TEST_F(RecipeJobTest, PerEpochAndReportMetrics) {
  JobResult r;
  auto epochs = Run(Config(), &r);
  ASSERT_EQ(epochs.size(), 6u);
  for (const auto& m : epochs) {
    for (const char* key : {"train_accuracy", "val_f1", "lr"}) EXPECT_EQ(m.count(key), 1u) << key;
    EXPECT_GE(m.at("train_accuracy"), 0.0);
    EXPECT_LE(m.at("train_accuracy"), 1.0);
  }
  const int selected = static_cast<int>(r.metrics.at("selected_epoch"));
  EXPECT_EQ(r.metrics.at("selected_val_f1"), epochs[selected - 1].at("val_f1"));
  EXPECT_EQ(r.metrics.at("selected_val_accuracy"), epochs[selected - 1].at("val_accuracy"));
  // The test part: 65 + 40 + 60 rows, each counted once in the confusion matrix.
  double rows = 0, right = 0;
  for (int t = 0; t < 3; ++t) {
    for (int p = 0; p < 3; ++p) {
      const double n =
          r.metrics.at("test_confusion_" + std::to_string(t) + "_" + std::to_string(p));
      rows += n;
      if (t == p) right += n;
    }
  }
  EXPECT_EQ(rows, 165);
  EXPECT_EQ(r.metrics.at("test_support_1"), 40);
  EXPECT_DOUBLE_EQ(r.metrics.at("test_accuracy"), right / rows);
  EXPECT_GT(r.metrics.at("test_accuracy"), 0.5);  // the blobs are learnable (chance: 1/3)
  EXPECT_EQ(r.metrics.count("test_loss"), 1u);
}

TEST_F(RecipeJobTest, TestFilesNeverTouchTrainingOrSelection) {
  // The same split, but the test part given as files: once with the true labels, once with
  // labels that are all wrong. Everything but the test metrics must be bit-identical.
  const std::vector<int64_t> y = ProbeLabels();
  std::vector<float> tx(16 * 8, 0.5f);
  std::vector<int64_t> right(16), wrong(16);
  for (int i = 0; i < 16; ++i) {
    tx[static_cast<size_t>(i * 8 + i % 3)] = 3.f;
    right[static_cast<size_t>(i)] = i % 3;
    wrong[static_cast<size_t>(i)] = (i + 1) % 3;
  }
  testing::WriteNpy(dir_.Join("tx.npy"), "<f4", "(16, 8)", tx);
  testing::WriteNpy(dir_.Join("ty.npy"), "<i8", "(16,)", right);
  testing::WriteNpy(dir_.Join("wy.npy"), "<i8", "(16,)", wrong);
  json a = Config();
  a["dataset"]["split"].erase("test_fraction");
  a["dataset"]["test"] = {{"features", dir_.Join("tx.npy")}, {"labels", dir_.Join("ty.npy")}};
  json b = a;
  b["dataset"]["test"]["labels"] = dir_.Join("wy.npy");
  JobResult ra, rb;
  auto ea = Run(a, &ra);
  auto eb = Run(b, &rb);
  EXPECT_EQ(ea, eb);
  EXPECT_EQ(ra.metrics.at("selected_epoch"), rb.metrics.at("selected_epoch"));
  EXPECT_EQ(ra.metrics.at("selected_val_f1"), rb.metrics.at("selected_val_f1"));
  EXPECT_NE(ra.metrics.at("test_accuracy"), rb.metrics.at("test_accuracy"));
}

TEST(RecipeConfigTest, BadFieldsAreNamed) {
  auto expect_bad = [](json train, json split, const std::string& part) {
    json c = {{"kind", "train"},
              {"dataset", {{"features", "f.npy"}, {"labels", "l.npy"}, {"split", split}}},
              {"train", train}};
    StatusOr<JobConfig> r = ParseJobConfig(c);
    ASSERT_FALSE(r.ok()) << part;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(part), std::string::npos) << r.status().ToString();
  };
  const json ok_split = json::object();
  expect_bad({{"mixup", {{"until", 0.7}}}}, ok_split, "train.mixup.alpha: required");
  expect_bad({{"mixup", {{"alpha", 0.3}, {"until", 1.5}}}}, ok_split, "train.mixup.until");
  expect_bad({{"class_weights", {{"inverse_frequency", true}, {"boost", {{"one", 1.5}}}}}},
             ok_split, "train.class_weights.boost.one");
  expect_bad({{"class_weights", {1.0, -2.0}}}, ok_split, "train.class_weights[1]: must be > 0");
  expect_bad({{"class_weights", "balanced"}}, ok_split, "train.class_weights");
  expect_bad(json::object(), {{"train_per_class", 150}, {"validation_fraction", 0.2}},
             "dataset.split.train_per_class: give either");
  expect_bad(json::object(), {{"validation_fraction", 0.5}, {"test_fraction", 0.5}},
             "dataset.split.test_fraction");
  json good = {{"kind", "train"},
               {"dataset",
                {{"features", "f.npy"}, {"labels", "l.npy"},
                 {"split", {{"train_per_class", 150}, {"test_fraction", 0.2}}}}},
               {"train",
                {{"mixup", {{"alpha", 0.3}, {"until", 0.7}}},
                 {"class_weights", {{"inverse_frequency", true}, {"boost", {{"1", 1.5}}}}}}}};
  ASSERT_OK_AND_ASSIGN(JobConfig p, ParseJobConfig(good));
  EXPECT_EQ(p.dataset.train_per_class, 150);
  EXPECT_TRUE(p.dataset.stratify);
  EXPECT_EQ(p.dataset.test_fraction, 0.2);
  ASSERT_TRUE(p.train.mixup.has_value());
  EXPECT_EQ(p.train.mixup->until, 0.7);
  EXPECT_EQ(p.train.class_weights.boost, (std::map<int64_t, double>{{1, 1.5}}));
}

}  // namespace
}  // namespace lattice::jobs
