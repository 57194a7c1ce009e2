// The projector zoo and the SigLIP objective (jobs/internal/projectors.h, siglip.h), token
// data (jobs/token_data.h) and alignment jobs end to end through RunJob
// (jobs/projector_config.h).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "jobs/checkpoint.h"
#include "jobs/internal/projectors.h"
#include "jobs/internal/siglip.h"
#include "jobs/job_config.h"
#include "jobs/projector_config.h"
#include "jobs/token_data.h"
#include "jobs/train_job.h"
#include "tests/jobs/npy_writer.h"
#include "tests/testutil/testutil.h"

namespace lattice::jobs {
namespace {

using nlohmann::json;

const std::vector<std::string> kTypes = {"linear", "mlp2", "c_abstractor", "perceiver"};

ModelConfig Projector(const std::string& type, const json& extra = json::object()) {
  json m = extra;
  m["type"] = type;
  auto parsed = ParseProjectorModel(m, "model");
  EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
  return parsed.ok() ? parsed.value() : ModelConfig();
}

std::unique_ptr<internal::ProjectorModel> Make(const ModelConfig& m, int64_t tokens, int64_t dim,
                                               int64_t target_dim, uint64_t seed = 1) {
  torch::manual_seed(seed);
  auto model = internal::MakeProjectorModel(m, tokens, dim, target_dim, torch::kCPU);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  return model.ok() ? std::move(model).value() : nullptr;
}

TEST(ProjectorTest, OutputShapesAndDefaults) {
  // T = 9 tokens (a 3 x 3 grid) of 6 values to Dt = 8: linear and mlp2 keep the 9 tokens,
  // c_abstractor and perceiver give the default 16 queries, or as many as asked for (a
  // square or not), and non-square token counts work too.
  struct Case {
    std::string type;
    json extra;
    int64_t tokens, queries;
  };
  const std::vector<Case> cases = {
      {"linear", {}, 9, 9},          {"mlp2", {}, 9, 9},
      {"mlp2", {{"width", 5}}, 10, 10}, {"c_abstractor", {}, 9, 16},
      {"perceiver", {}, 9, 16},      {"c_abstractor", {{"queries", 4}}, 9, 4},
      {"c_abstractor", {{"queries", 5}}, 10, 5}, {"perceiver", {{"queries", 3}, {"heads", 2}}, 10, 3},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.type + " " + c.extra.dump() + " T=" + std::to_string(c.tokens));
    auto model = Make(Projector(c.type, c.extra), c.tokens, 6, 8);
    ASSERT_NE(model, nullptr);
    EXPECT_EQ(model->shape().queries, c.queries);
    torch::Tensor out = model->forward(torch::randn({3, c.tokens * 6}));
    EXPECT_EQ(out.sizes(), (std::vector<int64_t>{3, c.queries, 8}));
  }
}

TEST(ProjectorTest, PerceiverHeadsMustDivideTheWidth) {
  auto model = internal::MakeProjectorModel(Projector("perceiver", {{"heads", 3}}), 9, 6, 8,
                                            torch::kCPU);
  ASSERT_FALSE(model.ok());
  EXPECT_NE(model.status().message().find("model.heads: 3 does not divide the width 8"),
            std::string::npos)
      << model.status().message();
}

TEST(ProjectorTest, GradientsReachEveryParameter) {
  for (const std::string& type : kTypes) {
    SCOPED_TRACE(type);
    auto model = Make(Projector(type, {{"depth", 1}, {"queries", 4}}), 16, 6, 8);
    ASSERT_NE(model, nullptr);
    torch::Tensor x = torch::randn({5, 16 * 6});
    torch::Tensor targets = torch::randn({5, 8});
    internal::SiglipBatchLoss(*model, x, targets).backward();
    std::vector<torch::Tensor> params = model->parameters();
    ASSERT_GE(params.size(), 4u);
    for (size_t i = 0; i < params.size(); ++i) {
      ASSERT_TRUE(params[i].grad().defined()) << "parameter " << i;
      EXPECT_GT(params[i].grad().abs().sum().item<double>(), 0.0) << "parameter " << i;
    }
  }
}

TEST(ProjectorTest, TemperatureAndBiasStartAsInTheSiglipPaper) {
  for (const std::string& type : kTypes) {
    SCOPED_TRACE(type);
    auto model = Make(Projector(type), 9, 6, 8);
    ASSERT_NE(model, nullptr);
    EXPECT_FLOAT_EQ(model->logit_scale().item<float>(), std::log(10.0f));
    EXPECT_FLOAT_EQ(model->logit_bias().item<float>(), -10.0f);
    EXPECT_TRUE(model->logit_scale().requires_grad());
    EXPECT_TRUE(model->logit_bias().requires_grad());
    // Both are parameters the optimizer trains (the first two) and the checkpoint holds.
    internal::NamedWeights w = model->CloneWeights();
    ASSERT_GE(w.size(), 3u);
    EXPECT_EQ(w[0].first, "logit_scale");
    EXPECT_EQ(w[1].first, "logit_bias");
    EXPECT_EQ(w[2].first.rfind("projector.", 0), 0u) << w[2].first;
  }
}

TEST(SiglipTest, LossMatchesAHandComputedValue) {
  // u = [[1, 0], [0, 1]], v = [[1, 0], [0.6, 0.8]] (unit rows), t' = log 10, b = -10:
  // cosines [[1, 0.6], [0, 0.8]] -> logits z = 10 * cos - 10 = [[0, -4], [-10, -2]].
  // loss = (1/2) * (log(1 + e^0) + log(1 + e^-4) + log(1 + e^-10) + log(1 + e^2))
  //      = (1/2) * (0.693147 + 0.018150 + 0.0000454 + 2.126928) = 1.419135.
  torch::Tensor u = torch::tensor({1.0f, 0.0f, 0.0f, 1.0f}).view({2, 2});
  torch::Tensor v = torch::tensor({1.0f, 0.0f, 0.6f, 0.8f}).view({2, 2});
  torch::Tensor z = internal::SiglipLogits(u, v, torch::full({1}, std::log(10.0)),
                                           torch::full({1}, -10.0));
  EXPECT_NEAR(z[0][0].item<double>(), 0.0, 1e-5);
  EXPECT_NEAR(z[0][1].item<double>(), -4.0, 1e-5);
  EXPECT_NEAR(z[1][0].item<double>(), -10.0, 1e-5);
  EXPECT_NEAR(z[1][1].item<double>(), -2.0, 1e-5);
  EXPECT_NEAR(internal::SiglipLoss(z).item<double>(), 1.419135, 1e-5);
}

TEST(SiglipTest, EvaluationAgreesWithTheOneShotFormulas) {
  // Seven validation rows: the block-wise metrics equal the loss, score and ranks computed
  // directly from the full logit matrix.
  auto model = Make(Projector("mlp2"), 4, 3, 5, 3);
  ASSERT_NE(model, nullptr);
  torch::Tensor x = torch::randn({7, 12});
  torch::Tensor t = torch::randn({7, 5});
  internal::AlignmentMetrics m = internal::EvaluateAlignment(*model, x, t);
  torch::NoGradGuard no_grad;
  torch::Tensor u = internal::PoolAndNormalize(model->forward(x));
  torch::Tensor v = torch::nn::functional::normalize(
      t, torch::nn::functional::NormalizeFuncOptions().dim(1));
  torch::Tensor z = internal::SiglipLogits(u, v, model->logit_scale(), model->logit_bias());
  EXPECT_NEAR(m.loss, internal::SiglipLoss(z).item<double>(), 1e-4);
  EXPECT_NEAR(m.score, torch::sigmoid(z.diagonal()).mean().item<double>(), 1e-6);
  torch::Tensor sims = torch::matmul(u, v.t());
  double r1 = 0, r1t = 0;
  for (int64_t i = 0; i < 7; ++i) {
    r1 += sims[i].argmax().item<int64_t>() == i;
    r1t += sims.t()[i].argmax().item<int64_t>() == i;
  }
  EXPECT_NEAR(m.recall1_i2t, r1 / 7, 1e-9);
  EXPECT_NEAR(m.recall1_t2i, r1t / 7, 1e-9);
  EXPECT_GE(m.recall5_i2t, m.recall1_i2t);
  EXPECT_GE(m.recall5_t2i, m.recall1_t2i);
  EXPECT_GT(m.score, 0.0);
  EXPECT_LT(m.score, 1.0);
}

TEST(ProjectorTest, CheckpointRoundTripKeepsWeightsTemperatureAndBias) {
  for (const std::string& type : kTypes) {
    SCOPED_TRACE(type);
    const ModelConfig m = Projector(type, {{"depth", 1}, {"queries", 4}});
    auto a = Make(m, 9, 6, 8, 1);
    auto b = Make(m, 9, 6, 8, 2);
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    {
      torch::NoGradGuard no_grad;
      a->logit_scale().fill_(1.5);
      a->logit_bias().fill_(-3.25);
    }
    CheckpointHeader header;
    header.config = {{"kind", "train"}};
    header.in_dim = 9 * 6;
    header.classes = 1;
    std::string blob = a->Encode(header, {}, {}, {});
    size_t offset = 0;
    ASSERT_OK_AND_ASSIGN(CheckpointHeader read, ReadCheckpointHeader(blob, &offset));
    torch::serialize::InputArchive state;
    b->Decode(blob, offset, &state);
    EXPECT_FLOAT_EQ(b->logit_scale().item<float>(), 1.5f);
    EXPECT_FLOAT_EQ(b->logit_bias().item<float>(), -3.25f);
    torch::Tensor x = torch::randn({2, 9 * 6});
    a->eval();
    b->eval();
    EXPECT_TRUE(torch::equal(a->forward(x), b->forward(x)));
  }
}

// ---- token data ------------------------------------------------------------------------

TEST(TokenDataTest, PatchTokensAreRowMajorPatchesOfRowMajorPixels) {
  FeatureMatrix images;  // one 4 x 6 image, pixel value = its index
  images.rows = 1;
  images.cols = 24;
  for (int i = 0; i < 24; ++i) images.data.push_back(static_cast<float>(i));
  ASSERT_OK_AND_ASSIGN(FeatureMatrix t, PatchTokens(images, 4, 6, 2, "dataset"));
  EXPECT_EQ(t.tokens, 6);  // 2 x 3 patches of 4 values
  EXPECT_EQ(t.cols, 24);
  // Patch (0, 1) is pixels (0..1, 2..3): 2, 3, 8, 9; patch (1, 2): rows 2..3, cols 4..5.
  EXPECT_EQ(std::vector<float>(t.data.begin() + 4, t.data.begin() + 8),
            (std::vector<float>{2, 3, 8, 9}));
  EXPECT_EQ(std::vector<float>(t.data.begin() + 20, t.data.end()),
            (std::vector<float>{16, 17, 22, 23}));
  auto bad = PatchTokens(images, 4, 6, 4, "dataset");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("dataset.tokens.patch: 4 does not divide the 4 x 6 images"),
            std::string::npos)
      << bad.status().message();
}

// Token data on disk: N rows of T x D tokens whose targets are a fixed random map of the
// rows' mean token, so that a projector can learn the pairing.
struct TokenFiles {
  testutil::TempDir dir;
  std::string features, targets;
};

void WriteTokenFiles(TokenFiles* f, int64_t n, int64_t t, int64_t d, int64_t dt,
                     float nan_at = -1) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(n * t * d)), y(static_cast<size_t>(n * dt));
  std::vector<float> map(static_cast<size_t>(d * t * dt));
  for (float& v : x) v = normal(rng);
  for (float& v : map) v = normal(rng);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t j = 0; j < dt; ++j) {
      float s = 0;
      for (int64_t k = 0; k < t * d; ++k) s += x[r * t * d + k] * map[k * dt + j];
      y[r * dt + j] = s;
    }
  }
  if (nan_at >= 0) y[static_cast<size_t>(nan_at) * dt] = std::nanf("");
  f->features = f->dir.Join("tokens.npy");
  f->targets = f->dir.Join("targets.npy");
  testing::WriteNpy(f->features, "<f4",
                    "(" + std::to_string(n) + ", " + std::to_string(t) + ", " + std::to_string(d) + ")",
                    x);
  testing::WriteNpy(f->targets, "<f4", "(" + std::to_string(n) + ", " + std::to_string(dt) + ")",
                    y);
}

json AlignmentConfig(const TokenFiles& f, const std::string& type, int epochs = 3) {
  return {{"kind", "train"},
          {"seed", 3},
          {"alignment", "siglip"},
          {"dataset",
           {{"features", f.features}, {"targets", f.targets},
            {"split", {{"validation_fraction", 0.25}, {"seed", 1}}}}},
          {"model", {{"type", type}, {"queries", 4}, {"depth", 1}, {"width", 16}, {"heads", 2}}},
          {"train", {{"epochs", epochs}, {"batch_size", 16}, {"lr", 3e-3}, {"threads", 1}}}};
}

TEST(TokenDataTest, Loads3DFeaturesWithTargetsAndNoLabels) {
  TokenFiles f;
  WriteTokenFiles(&f, 24, 4, 3, 5);
  ASSERT_OK_AND_ASSIGN(JobConfig c, ParseJobConfig(AlignmentConfig(f, "mlp2")));
  ASSERT_OK_AND_ASSIGN(LoadedDataset d, LoadDataset(c.dataset));
  EXPECT_EQ(d.train.features.rows, 24);
  EXPECT_EQ(d.train.features.cols, 12);
  EXPECT_EQ(d.train.features.tokens, 4);
  EXPECT_EQ(d.train.targets.rows, 24);
  EXPECT_EQ(d.train.targets.cols, 5);
  EXPECT_EQ(d.train.labels, std::vector<int64_t>(24, 0));
  ASSERT_OK(ValidateJobConfig(AlignmentConfig(f, "mlp2")));
}

TEST(TokenDataTest, NanInTargetsIsAnErrorNamingTheRow) {
  TokenFiles f;
  WriteTokenFiles(&f, 24, 4, 3, 5, /*nan_at=*/7);
  JobContext ctx;
  auto r = RunJob(AlignmentConfig(f, "linear"), ctx);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("dataset.targets: " + f.targets + ": row 7 holds NaN"),
            std::string::npos)
      << r.status().message();
}

TEST(TokenDataTest, TwoDimensionalFeaturesToAProjectorAreRefusedAtSubmit) {
  TokenFiles f;
  WriteTokenFiles(&f, 24, 4, 3, 5);
  std::vector<float> flat(24 * 12, 0.5f);
  const std::string flat_path = f.dir.Join("flat.npy");
  testing::WriteNpy(flat_path, "<f4", "(24, 12)", flat);
  json config = AlignmentConfig(f, "perceiver");
  config["dataset"]["features"] = flat_path;
  Status s = ValidateJobConfig(config);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("dataset.features: " + flat_path +
                             " is 2-D [24, 12]: a projector (model.type perceiver) needs token "
                             "sequences"),
            std::string::npos)
      << s.message();
  // At run time too (a trial that got past submit), before any training.
  JobContext ctx;
  auto r = RunJob(config, ctx);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("a projector needs token sequences"), std::string::npos)
      << r.status().message();
}

TEST(TokenDataTest, TargetWidthMismatchIsRefusedAtSubmit) {
  TokenFiles f;
  WriteTokenFiles(&f, 24, 4, 3, 5);
  json config = AlignmentConfig(f, "mlp2");
  config["model"]["output_dim"] = 4096;
  Status s = ValidateJobConfig(config);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("model.output_dim: 4096 does not match the targets' width 5"),
            std::string::npos)
      << s.message();
  config["model"]["output_dim"] = 5;
  ASSERT_OK(ValidateJobConfig(config));
  // Targets with another row count than the features.
  std::vector<float> few(10 * 5, 0.f);
  testing::WriteNpy(f.targets, "<f4", "(10, 5)", few);
  s = ValidateJobConfig(config);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("dataset.targets: " + f.targets + " has 10 rows but"),
            std::string::npos)
      << s.message();
}

// A tiny idx3 file: n images of h x w bytes.
std::string WriteIdx(const testutil::TempDir& dir, int n, int h, int w) {
  std::string b = {0, 0, 8, 3};
  for (int v : {n, h, w}) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<char>((v >> s) & 0xff));
  }
  for (int i = 0; i < n * h * w; ++i) b.push_back(static_cast<char>(i % 251));
  const std::string path = dir.Join("images-idx3-ubyte");
  std::ofstream(path, std::ios::binary) << b;
  return path;
}

TEST(TokenDataTest, IdxPatchTokensAndPatchSizeChecks) {
  TokenFiles f;
  WriteTokenFiles(&f, 20, 4, 3, 5);  // its targets: 20 rows
  const std::string images = WriteIdx(f.dir, 20, 8, 8);
  json config = {{"kind", "train"},
                 {"alignment", "siglip"},
                 {"dataset",
                  {{"format", "idx"}, {"images", images}, {"targets", f.targets},
                   {"tokens", {{"patch", 4}}}, {"scale", 1.0 / 255}}},
                 {"model", {{"type", "c_abstractor"}, {"queries", 1}, {"depth", 1}}},
                 {"train", {{"epochs", 1}, {"batch_size", 8}, {"threads", 1}}}};
  ASSERT_OK(ValidateJobConfig(config));
  ASSERT_OK_AND_ASSIGN(JobConfig c, ParseJobConfig(config));
  ASSERT_OK_AND_ASSIGN(LoadedDataset d, LoadDataset(c.dataset));
  EXPECT_EQ(d.train.features.tokens, 4);  // 2 x 2 patches of 16 values
  EXPECT_EQ(d.train.features.cols, 64);
  JobContext ctx;
  auto r = RunJob(config, ctx);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  config["dataset"]["tokens"]["patch"] = 3;
  Status s = ValidateJobConfig(config);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("dataset.tokens.patch: 3 does not divide the 8 x 8 images"),
            std::string::npos)
      << s.message();
  config["dataset"].erase("tokens");
  s = ValidateJobConfig(config);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("dataset.tokens:"), std::string::npos) << s.message();
}

// ---- configs ---------------------------------------------------------------------------

TEST(AlignmentConfigTest, ProjectorKeysAreValidForEveryProjectorType) {
  // One base config for a sweep over model.type: every projector key is accepted by all four.
  TokenFiles f;
  WriteTokenFiles(&f, 24, 4, 3, 8);
  for (const std::string& type : kTypes) {
    json config = AlignmentConfig(f, type);
    config["model"]["output_dim"] = 8;
    EXPECT_TRUE(ValidateJobConfig(config).ok()) << type << ": " << ValidateJobConfig(config).ToString();
  }
}

TEST(AlignmentConfigTest, ClearErrorsForWhatDoesNotFit) {
  TokenFiles f;
  WriteTokenFiles(&f, 24, 4, 3, 8);
  auto message = [](const json& config) {
    auto r = ParseJobConfig(config);
    return r.ok() ? std::string("OK") : r.status().message();
  };
  json c = AlignmentConfig(f, "perceiver");
  c.erase("alignment");
  EXPECT_NE(message(c).find("model.type: perceiver is a projector: it needs alignment: siglip"),
            std::string::npos)
      << message(c);
  c = AlignmentConfig(f, "mlp");
  EXPECT_NE(message(c).find("model.type: an alignment job trains a projector"), std::string::npos)
      << message(c);
  c = AlignmentConfig(f, "mlp2");
  c["model"]["hidden"] = 3;
  EXPECT_NE(message(c).find("model.hidden"), std::string::npos) << message(c);
  c = AlignmentConfig(f, "mlp2");
  c["alignment"] = "clip";
  EXPECT_NE(message(c).find("alignment: the alignment objective: siglip"), std::string::npos)
      << message(c);
  c = AlignmentConfig(f, "mlp2");
  c["train"]["mixup"] = {{"alpha", 0.2}};
  EXPECT_NE(message(c).find("train.mixup: not with alignment"), std::string::npos) << message(c);
  c = AlignmentConfig(f, "mlp2");
  c["dataset"].erase("targets");
  EXPECT_NE(message(c).find("dataset.labels: required"), std::string::npos) << message(c);
  c["dataset"]["labels"] = f.targets;
  EXPECT_NE(message(c).find("dataset.targets: required with alignment"), std::string::npos)
      << message(c);
}

TEST(AlignmentConfigTest, SweepMetricsAreTheAlignmentOnes) {
  TokenFiles f;
  WriteTokenFiles(&f, 24, 4, 3, 8);
  const json config = AlignmentConfig(f, "c_abstractor");
  for (const char* metric : {"siglip_score", "val_loss", "val_recall_at_1_i2t",
                             "val_recall_at_5_t2i", "best_siglip_score"}) {
    EXPECT_TRUE(CheckSweepMetric(config, metric).ok()) << metric;
  }
  Status s = CheckSweepMetric(config, "val_accuracy");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("\"val_accuracy\" is not a metric of a train job (one of: "
                             "train_loss, val_loss, siglip_score"),
            std::string::npos)
      << s.message();
}

// ---- alignment jobs --------------------------------------------------------------------

TEST(AlignmentJobTest, EveryProjectorTrainsAndReportsTheAlignmentMetrics) {
  TokenFiles f;
  WriteTokenFiles(&f, 96, 9, 4, 8);
  for (const std::string& type : kTypes) {
    SCOPED_TRACE(type);
    std::vector<std::map<std::string, double>> epochs;
    JobContext ctx;
    ctx.on_epoch = [&](int, const std::map<std::string, double>& m) { epochs.push_back(m); };
    auto r = RunJob(AlignmentConfig(f, type, 4), ctx);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(epochs.size(), 4u);
    for (const std::string& name : AlignmentEpochMetricNames()) {
      EXPECT_EQ(epochs.back().count(name), 1u) << name;
    }
    for (const std::string& name : AlignmentResultMetricNames(ParseJobConfig(AlignmentConfig(f, type)).value())) {
      EXPECT_EQ(r->metrics.count(name), 1u) << name;
    }
    EXPECT_EQ(r->metrics.count("val_accuracy"), 0u);
    const double score = r->metrics.at("siglip_score");
    EXPECT_GT(score, 0.0);
    EXPECT_LT(score, 1.0);
    EXPECT_LT(epochs.back().at("train_loss"), epochs.front().at("train_loss"));
    EXPECT_GE(r->metrics.at("val_recall_at_5_i2t"), r->metrics.at("val_recall_at_1_i2t"));
    // t' and b were trained, and the final checkpoint holds them.
    EXPECT_NE(r->metrics.at("logit_bias"), -10.0);
    ASSERT_TRUE(r->checkpoint.has_value());
    size_t offset = 0;
    ASSERT_OK_AND_ASSIGN(CheckpointHeader h, ReadCheckpointHeader(*r->checkpoint, &offset));
    torch::serialize::InputArchive archive;
    archive.load_from(r->checkpoint->data() + offset, r->checkpoint->size() - offset);
    torch::Tensor bias;
    archive.read("logit_bias", bias);
    EXPECT_NEAR(bias.item<double>(), r->metrics.at("logit_bias"), 1e-6);
  }
}

TEST(AlignmentJobTest, ResumedRunIsBitIdenticalToTheUninterruptedOne) {
  TokenFiles f;
  WriteTokenFiles(&f, 64, 9, 4, 8);
  json config = AlignmentConfig(f, "perceiver", 3);  // 48 training rows: 3 batches per epoch
  config["checkpoint"] = {{"every_steps", 4}, {"keep_best", 1}, {"metric", "siglip_score"}};
  std::vector<std::string> saved;
  JobContext ctx;
  ctx.on_checkpoint = [&](std::string bytes, int64_t, int) { saved.push_back(std::move(bytes)); };
  auto whole = RunJob(config, ctx);
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  ASSERT_EQ(saved.size(), 2u);  // steps 4 and 8 of 9
  EXPECT_EQ(whole->metrics.count("selected_epoch"), 1u);
  JobContext again;
  again.resume_from = std::make_shared<const std::string>(saved[0]);
  auto resumed = RunJob(config, again);
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  EXPECT_EQ(resumed->metrics, whole->metrics);
  ASSERT_TRUE(resumed->checkpoint.has_value());
  EXPECT_TRUE(*resumed->checkpoint == *whole->checkpoint) << "the final weights differ";
}

}  // namespace
}  // namespace lattice::jobs
