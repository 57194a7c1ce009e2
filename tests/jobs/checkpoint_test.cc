// Checkpoints of train trials and the embed encoder {type: trial} that loads them.
#include "jobs/checkpoint.h"

#include <gtest/gtest.h>

#include <cmath>

#include "jobs/embed_job.h"
#include "jobs/job_config.h"
#include "jobs/train_job.h"
#include "tests/jobs/npy_writer.h"
#include "tests/testutil/testutil.h"

namespace lattice::jobs {
namespace {

using nlohmann::json;
using testing::kDigitsCsv;

// Digits split in two .npy parts (rows [0, 1400) train, the rest validation), so the
// validation rows can be embedded as a corpus and scored against the trial's own metrics.
class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(DatasetConfig csv,
                         ParseDatasetConfig({{"format", "csv"}, {"path", kDigitsCsv}}));
    ASSERT_OK_AND_ASSIGN(LoadedDataset all, LoadDataset(csv));
    const FeatureMatrix& f = all.train.features;
    cols_ = f.cols;
    const int64_t split = 1400;
    auto write = [&](const std::string& name, int64_t begin, int64_t end) {
      std::vector<float> x(f.data.begin() + begin * cols_, f.data.begin() + end * cols_);
      std::vector<int64_t> y(all.train.labels.begin() + begin, all.train.labels.begin() + end);
      const std::string n = std::to_string(end - begin);
      testing::WriteNpy(dir_.Join(name + "_x.npy"), "<f4", "(" + n + ", " + std::to_string(cols_) + ")", x);
      testing::WriteNpy(dir_.Join(name + "_y.npy"), "<i8", "(" + n + ",)", y);
      return y;
    };
    write("train", 0, split);
    val_labels_ = write("val", split, f.rows);
  }

  // Standardised, scaled, 2 hidden layers with batchnorm and dropout: every part of the
  // input preparation and every kind of block must survive the round trip.
  json TrainConfig(bool checkpoint = true) const {
    return {{"kind", "train"},
            {"seed", 7},
            {"dataset",
             {{"features", dir_.Join("train_x.npy")}, {"labels", dir_.Join("train_y.npy")},
              {"validation",
               {{"features", dir_.Join("val_x.npy")}, {"labels", dir_.Join("val_y.npy")}}},
              {"standardize", true}, {"scale", 0.0625}}},
            {"model", {{"type", "mlp"}, {"hidden", {48, 24}}, {"batchnorm", true}, {"dropout", 0.3}}},
            {"train", {{"epochs", 4}, {"batch_size", 32}, {"threads", 1}, {"checkpoint", checkpoint}}}};
  }

  json EmbedConfig(const std::string& corpus, int64_t layer) const {
    return {{"kind", "embed"},
            {"encoder", {{"type", "trial"}, {"trial", "s1-t0"}, {"layer", layer}}},
            {"corpus", {{"format", "npy"}, {"features", dir_.Join(corpus + "_x.npy")}}},
            {"batch_size", 100}};
  }

  StatusOr<JobResult> Embed(const std::string& corpus, int64_t layer,
                            std::shared_ptr<const std::string> blob) {
    JobContext ctx;
    ctx.cache = &cache_;
    ctx.encoders = &encoders_;
    ctx.checkpoint = [blob](const std::string& trial) {
      return trial == "s1-t0" ? blob : nullptr;
    };
    return RunJob(EmbedConfig(corpus, layer), ctx);
  }

  StatusOr<JobResult> Train(bool checkpoint = true) {
    JobContext ctx;
    ctx.cache = &cache_;
    return RunJob(TrainConfig(checkpoint), ctx);
  }

  testutil::TempDir dir_;
  DatasetCache cache_;
  EncoderCache encoders_;
  int64_t cols_ = 0;
  std::vector<int64_t> val_labels_;
};

TEST_F(CheckpointTest, LogitsReproduceTheTrialsValidationMetrics) {
  ASSERT_OK_AND_ASSIGN(JobResult trained, Train());
  ASSERT_TRUE(trained.checkpoint.has_value());
  ASSERT_OK_AND_ASSIGN(CheckpointHeader header, ReadCheckpointHeader(*trained.checkpoint));
  EXPECT_EQ(header.in_dim, cols_);
  EXPECT_EQ(header.classes, 10);
  EXPECT_EQ(header.epochs, 4);
  EXPECT_EQ(header.config, TrainConfig());
  EXPECT_EQ(header.metrics.at("val_accuracy").get<double>(), trained.metrics["val_accuracy"]);

  auto blob = std::make_shared<const std::string>(*trained.checkpoint);
  ASSERT_OK_AND_ASSIGN(JobResult logits, Embed("val", -1, blob));
  ASSERT_TRUE(logits.embeddings.has_value());
  const EmbeddingBlock& b = *logits.embeddings;
  ASSERT_EQ(b.dim, 10);
  ASSERT_EQ(b.rows, static_cast<int64_t>(val_labels_.size()));
  int64_t correct = 0;
  double loss = 0;
  for (int64_t r = 0; r < b.rows; ++r) {
    const float* row = b.vectors.data() + r * b.dim;
    const int64_t arg = std::max_element(row, row + b.dim) - row;
    correct += arg == val_labels_[static_cast<size_t>(r)];
    double mx = *std::max_element(row, row + b.dim), sum = 0;
    for (int c = 0; c < b.dim; ++c) sum += std::exp(row[c] - mx);
    loss += mx + std::log(sum) - row[val_labels_[static_cast<size_t>(r)]];
  }
  EXPECT_DOUBLE_EQ(static_cast<double>(correct) / static_cast<double>(b.rows),
                   trained.metrics["val_accuracy"]);
  EXPECT_NEAR(loss / static_cast<double>(b.rows), trained.metrics["val_loss"], 1e-4);
  EXPECT_GT(trained.metrics["val_accuracy"], 0.8);
}

TEST_F(CheckpointTest, LayersHaveTheBlockWidthsAndLayerZeroIsTheStandardisedInput) {
  ASSERT_OK_AND_ASSIGN(JobResult trained, Train());
  auto blob = std::make_shared<const std::string>(*trained.checkpoint);
  for (auto [layer, dim] : std::vector<std::pair<int64_t, int>>{
           {-2, 24}, {2, 24}, {1, 48}, {-3, 48}, {3, 10}, {0, static_cast<int>(cols_)}}) {
    ASSERT_OK_AND_ASSIGN(JobResult r, Embed("train", layer, blob));
    EXPECT_EQ(r.embeddings->dim, dim) << "layer " << layer;
  }
  // Layer 0 of the training rows: standardised with the training split's own mean and std.
  ASSERT_OK_AND_ASSIGN(JobResult input, Embed("train", -4, blob));
  const EmbeddingBlock& b = *input.embeddings;
  int non_constant = 0;
  for (int c = 0; c < b.dim; ++c) {
    double sum = 0, sq = 0;
    for (int64_t r = 0; r < b.rows; ++r) {
      const double v = b.vectors[static_cast<size_t>(r * b.dim + c)];
      sum += v;
      sq += v * v;
    }
    const double mean = sum / static_cast<double>(b.rows);
    EXPECT_NEAR(mean, 0.0, 1e-4) << "column " << c;
    const double var = sq / static_cast<double>(b.rows) - mean * mean;
    if (var > 1e-8) {
      EXPECT_NEAR(var, 1.0, 1e-3) << "column " << c;
      ++non_constant;
    }
  }
  EXPECT_GT(non_constant, 50);
}

TEST_F(CheckpointTest, Errors) {
  ASSERT_OK_AND_ASSIGN(JobResult trained, Train());
  auto blob = std::make_shared<const std::string>(*trained.checkpoint);
  auto out_of_range = Embed("val", 4, blob);
  ASSERT_FALSE(out_of_range.ok());
  EXPECT_EQ(out_of_range.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(out_of_range.status().message(),
            "encoder.layer: 4 is out of range for a model with 2 hidden layers (-4 .. 3)");
  EXPECT_FALSE(Embed("val", -5, blob).ok());

  auto missing = Embed("val", -1, nullptr);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(missing.status().message().find("no checkpoint of trial s1-t0"), std::string::npos);

  auto corrupt = Embed("val", -1, std::make_shared<const std::string>(
                                      blob->substr(0, blob->find('\n') + 1) + "garbage"));
  ASSERT_FALSE(corrupt.ok());
  EXPECT_EQ(corrupt.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(corrupt.status().message().find("cannot load the weights"), std::string::npos)
      << corrupt.status().message();

  auto no_header = Embed("val", -1, std::make_shared<const std::string>("not a checkpoint"));
  ASSERT_FALSE(no_header.ok());
  EXPECT_NE(no_header.status().message().find("checkpoint: no header line"), std::string::npos);

  // A corpus with other columns than the model's input.
  std::vector<float> narrow(30 * 5, 1.0f);
  testing::WriteNpy(dir_.Join("narrow_x.npy"), "<f4", "(30, 5)", narrow);
  auto wrong_cols = Embed("narrow", -1, blob);
  ASSERT_FALSE(wrong_cols.ok());
  EXPECT_NE(wrong_cols.status().message().find("the model takes 64 features per row, the "
                                               "corpus has 5 columns"),
            std::string::npos)
      << wrong_cols.status().message();
}

TEST_F(CheckpointTest, DecodedOncePerBlobAndCache) {
  ASSERT_OK_AND_ASSIGN(JobResult trained, Train());
  auto blob = std::make_shared<const std::string>(*trained.checkpoint);
  ASSERT_OK_AND_ASSIGN(JobResult first, Embed("val", -1, blob));
  ASSERT_OK_AND_ASSIGN(JobResult again, Embed("val", -2, blob));  // other layer, same model
  EXPECT_EQ(encoders_.loads(), 1);
  auto copy = std::make_shared<const std::string>(*blob);  // another blob: decoded again
  ASSERT_OK_AND_ASSIGN(JobResult third, Embed("val", -1, copy));
  EXPECT_EQ(encoders_.loads(), 2);
  EXPECT_EQ(third.embeddings->vectors, first.embeddings->vectors);
  EXPECT_FALSE(Embed("val", -1, std::make_shared<const std::string>("bad")).ok());
  EXPECT_FALSE(Embed("val", -1, std::make_shared<const std::string>("bad")).ok());
  EXPECT_EQ(encoders_.loads(), 4) << "a failed decode is not cached";
}

TEST_F(CheckpointTest, CheckpointCanBeTurnedOff) {
  ASSERT_OK_AND_ASSIGN(JobResult trained, Train(false));
  EXPECT_FALSE(trained.checkpoint.has_value());
}

TEST(CheckpointConfig, EncoderTrialParsing) {
  json base = {{"kind", "embed"}, {"corpus", {{"features", "x.npy"}}}};
  base["encoder"] = {{"type", "trial"}, {"trial", "s3-t4"}};
  ASSERT_OK_AND_ASSIGN(JobConfig ok, ParseJobConfig(base));
  EXPECT_EQ(ok.embed->encoder.type, EncoderType::kTrial);
  EXPECT_EQ(ok.embed->encoder.trial, "s3-t4");
  EXPECT_EQ(ok.embed->encoder.layer, -2);
  base["encoder"] = {{"type", "trial"}, {"trial", "s3"}};  // a sweep: resolved at submit
  EXPECT_TRUE(ParseJobConfig(base).ok());
  base["encoder"] = {{"type", "trial"}, {"trial", ""}};
  EXPECT_FALSE(ParseJobConfig(base).ok());
  base["encoder"] = {{"type", "trial"}};
  EXPECT_FALSE(ParseJobConfig(base).ok());
  base["encoder"] = {{"type", "trial"}, {"trial", "s3-t4"}, {"path", "x.pt"}};
  EXPECT_FALSE(ParseJobConfig(base).ok());
  base["encoder"] = {{"type", "trial"}, {"trial", "s3-t4"}, {"layer", "last"}};
  EXPECT_FALSE(ParseJobConfig(base).ok());
}

TEST(CheckpointHeaderTest, RejectsMalformedHeaders) {
  EXPECT_FALSE(ReadCheckpointHeader("").ok());
  EXPECT_FALSE(ReadCheckpointHeader("{}\n").ok());
  EXPECT_FALSE(ReadCheckpointHeader("{\"format\": \"lattice-checkpoint/1\"}\n").ok());
  EXPECT_FALSE(ReadCheckpointHeader(
                   "{\"format\":\"lattice-checkpoint/1\",\"config\":{},\"in_dim\":0,\"classes\":2}\n")
                   .ok());
  size_t offset = 0;
  ASSERT_OK_AND_ASSIGN(
      CheckpointHeader h,
      ReadCheckpointHeader(
          "{\"format\":\"lattice-checkpoint/1\",\"config\":{},\"in_dim\":3,\"classes\":2}\nAB",
          &offset));
  EXPECT_EQ(h.in_dim, 3);
  EXPECT_EQ(offset, 69u);
}

TEST(ResolveLayerTest, CountsFromBothEnds) {
  ASSERT_OK_AND_ASSIGN(int64_t logits, ResolveLayer(-1, 2, "layer"));
  EXPECT_EQ(logits, 3);
  ASSERT_OK_AND_ASSIGN(int64_t input, ResolveLayer(-4, 2, "layer"));
  EXPECT_EQ(input, 0);
  ASSERT_OK_AND_ASSIGN(int64_t linear_input, ResolveLayer(-2, 0, "layer"));
  EXPECT_EQ(linear_input, 0);
  EXPECT_EQ(ResolveLayer(2, 0, "encoder.layer").status().message(),
            "encoder.layer: 2 is out of range for a model with 0 hidden layers (-2 .. 1)");
}

}  // namespace
}  // namespace lattice::jobs
