// model {type: torchscript}: the user's TorchScript module trained by train and distill jobs
// (jobs/internal/torchscript_model.h). Fixtures and the plain PyTorch reference come from
// tests/jobs/fixtures/make_torchscript_model.py run by Debian's python3-torch.
#include <gtest/gtest.h>
#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "jobs/checkpoint.h"
#include "jobs/data_roots.h"
#include "jobs/internal/model.h"
#include "jobs/job_config.h"
#include "jobs/train_job.h"
#include "tests/jobs/npy_writer.h"
#include "tests/testutil/testutil.h"

namespace lattice::jobs {
namespace {

using nlohmann::json;

constexpr const char* kPython = "/usr/bin/python3";
constexpr int64_t kTrainRows = 256;  // make_torchscript_model.py's x_train

struct Fixtures {
  std::unique_ptr<testutil::TempDir> dir;
  std::string skip_reason;
};

std::string Script() {
  return testutil::SourceDir() + "/tests/jobs/fixtures/make_torchscript_model.py";
}

const Fixtures& GetFixtures() {
  static const Fixtures fixtures = [] {
    Fixtures f;
    if (std::system((std::string(kPython) + " -c 'import torch, numpy' 2>/dev/null").c_str()) !=
        0) {
      f.skip_reason = std::string(kPython) + " with torch and numpy is not available";
      return f;
    }
    f.dir = std::make_unique<testutil::TempDir>();
    const std::string cmd = std::string(kPython) + " " + Script() + " make " + f.dir->path();
    if (std::system(cmd.c_str()) != 0) f.skip_reason = "fixture script failed: " + cmd;
    return f;
  }();
  return fixtures;
}

#define REQUIRE_FIXTURES()                                                             \
  do {                                                                                 \
    if (!GetFixtures().skip_reason.empty()) GTEST_SKIP() << GetFixtures().skip_reason; \
  } while (0)

std::string Fixture(const std::string& name) { return GetFixtures().dir->Join(name); }

// Runs `command` and returns its standard output (empty when it fails).
std::string Capture(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  return ::pclose(p) == 0 ? out : std::string();
}

json Config(const std::string& module, const std::string& optimizer = "adamw", double lr = 0.01,
            int epochs = 4, int batch = 32, double wd = 0.01) {
  return {{"kind", "train"},
          {"seed", 3},
          {"dataset",
           {{"features", Fixture("x_train.npy")},
            {"labels", Fixture("y_train.npy")},
            {"validation", {{"features", Fixture("x_val.npy")}, {"labels", Fixture("y_val.npy")}}}}},
          {"model", {{"type", "torchscript"}, {"path", Fixture(module)}}},
          {"train",
           {{"epochs", epochs},
            {"batch_size", batch},
            {"lr", lr},
            {"optimizer", optimizer},
            {"weight_decay", wd},
            {"threads", 1}}}};
}

// The training rows' order of each epoch as jobs/train_job.cc draws it: one
// std::mt19937_64(seed), a Fisher-Yates shuffle of the previous epoch's order per epoch.
std::vector<int64_t> Permutations(uint64_t seed, int epochs, int64_t n) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> order(static_cast<size_t>(n)), out;
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  for (int e = 0; e < epochs; ++e) {
    for (int64_t i = n - 1; i > 0; --i) {
      std::swap(order[static_cast<size_t>(i)],
                order[rng() % static_cast<uint64_t>(i + 1)]);
    }
    out.insert(out.end(), order.begin(), order.end());
  }
  return out;
}

struct Curves {
  std::vector<double> train_loss, val_loss;
};

Curves RunLattice(const json& config, JobResult* result = nullptr) {
  Curves c;
  JobContext ctx;
  ctx.on_epoch = [&](int, const std::map<std::string, double>& m) {
    c.train_loss.push_back(m.at("train_loss"));
    c.val_loss.push_back(m.at("val_loss"));
  };
  auto r = RunJob(config, ctx);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (r.ok() && result != nullptr) *result = std::move(r).value();
  return c;
}

// The acceptance check of issue 11: the same module file (same initial weights), the same
// row order, optimizer and hyperparameters in plain PyTorch give the same per-epoch losses.
// Both sides run the same aten kernels on one thread in float32 (graph optimisation off on
// both), so the only difference is the optimizer's arithmetic:
//   - AdamW, tolerance 1e-6 relative: Lattice's fused update (jobs/internal/flat_optimizer.h)
//     orders it differently from torch.optim.AdamW (p -= (lr*sqrt(bc2)/bc1) * m / (sqrt(v) +
//     eps*sqrt(bc2)) vs p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)): ~1 ulp (6e-8) per
//     parameter per step; measured 3e-8 after 32 steps, so 1e-6 is a 30x margin, while any
//     real mismatch (order, lr, decay, train/eval mode, loss) moves the losses by > 1e-3.
//   - SGD with momentum, tolerance 1e-7 relative: the same operations as torch.optim.SGD
//     (measured: identical); the margin covers a vectorised body vs scalar tail rounding
//     differently (FMA) where the flat buffer's element offsets differ from per-tensor ones.
void ExpectMatchesReference(const std::string& optimizer, double lr, double tolerance) {
  constexpr int kEpochs = 4;
  constexpr int kBatch = 32;
  constexpr double kWd = 0.01;
  const json config = Config("mlp.pt", optimizer, lr, kEpochs, kBatch, kWd);
  const std::vector<int64_t> perms = Permutations(3, kEpochs, kTrainRows);
  testing::WriteNpy(Fixture("perms.npy"), "<i8",
                    "(" + std::to_string(kEpochs) + ", " + std::to_string(kTrainRows) + ")", perms);
  const Curves lattice = RunLattice(config);
  const std::string out = Capture(std::string(kPython) + " " + Script() + " reference " +
                                  GetFixtures().dir->path() + " " + optimizer + " " +
                                  std::to_string(lr) + " " + std::to_string(kEpochs) + " " +
                                  std::to_string(kBatch) + " " + std::to_string(kWd));
  ASSERT_FALSE(out.empty()) << "the reference script failed";
  const json ref = json::parse(out);
  ASSERT_EQ(lattice.train_loss.size(), static_cast<size_t>(kEpochs));
  double worst = 0;
  for (int e = 0; e < kEpochs; ++e) {
    const double t = ref["train_loss"][e].get<double>(), v = ref["val_loss"][e].get<double>();
    EXPECT_NEAR(lattice.train_loss[e], t, tolerance * std::abs(t)) << optimizer << " epoch " << e + 1;
    EXPECT_NEAR(lattice.val_loss[e], v, tolerance * std::abs(v)) << optimizer << " epoch " << e + 1;
    worst = std::max({worst, std::abs(lattice.train_loss[e] - t) / std::abs(t),
                      std::abs(lattice.val_loss[e] - v) / std::abs(v)});
  }
  std::printf("[ info ] %s: %d epochs, losses %.6f -> %.6f, max relative difference to PyTorch %.3g\n",
              optimizer.c_str(), kEpochs, lattice.train_loss.front(), lattice.train_loss.back(),
              worst);
  // It learned: a mismatch cannot hide behind a model that does nothing.
  EXPECT_LT(lattice.val_loss.back(), 0.8 * lattice.val_loss.front());
}

TEST(TorchScriptModelTest, AdamWLossesEqualPyTorchs) {
  REQUIRE_FIXTURES();
  ExpectMatchesReference("adamw", 0.01, 1e-6);
}

TEST(TorchScriptModelTest, SgdLossesEqualPyTorchs) {
  REQUIRE_FIXTURES();
  ExpectMatchesReference("sgd", 0.05, 1e-7);
}

// The parameters (and batchnorm buffers) of a checkpoint's module, in order.
std::vector<torch::Tensor> Weights(const std::string& blob) {
  std::istringstream in(blob.substr(blob.find('\n') + 1));
  torch::jit::Module m = torch::jit::load(in);
  std::vector<torch::Tensor> out;
  for (const auto& p : m.parameters()) out.push_back(p);
  for (const auto& b : m.buffers()) out.push_back(b);
  return out;
}

// Dropout and batchnorm, a cosine schedule, clipping: a run resumed from each step
// checkpoint ends with the same per-epoch metrics and bit-identical final weights.
TEST(TorchScriptModelTest, ResumeFromAStepCheckpointIsBitIdentical) {
  REQUIRE_FIXTURES();
  json config = Config("mlp_bn.pt", "adamw", 0.01, 3, 24);
  config["train"]["schedule"] = {{"type", "cosine"}, {"warmup_steps", 3}};
  config["train"]["clip_grad_norm"] = 1.0;
  config["checkpoint"] = {{"every_steps", 7}};
  std::vector<std::pair<int64_t, std::string>> checkpoints;
  std::vector<std::map<std::string, double>> epochs;
  JobContext ctx;
  ctx.on_checkpoint = [&](std::string bytes, int64_t step, int) {
    checkpoints.emplace_back(step, std::move(bytes));
  };
  ctx.on_epoch = [&](int, const std::map<std::string, double>& m) { epochs.push_back(m); };
  ASSERT_OK_AND_ASSIGN(JobResult full, RunJob(config, ctx));
  ASSERT_GE(checkpoints.size(), 4u);
  ASSERT_TRUE(full.checkpoint.has_value());
  // 256 rows in batches of 24: the last batch has 16 rows; 11 steps per epoch.
  EXPECT_EQ(checkpoints.front().first, 7);
  const std::vector<torch::Tensor> expected = Weights(*full.checkpoint);
  ASSERT_FALSE(expected.empty());
  for (size_t k : {size_t{0}, size_t{2}, checkpoints.size() - 1}) {
    const auto& [step, blob] = checkpoints[k];
    // A step checkpoint is the module itself (Python loads it) plus the trainer's state.
    ASSERT_EQ(Weights(blob).size(), expected.size());
    JobContext resumed_ctx;
    resumed_ctx.resume_from = std::make_shared<const std::string>(blob);
    std::vector<std::map<std::string, double>> resumed_epochs;
    resumed_ctx.on_epoch = [&](int, const std::map<std::string, double>& m) {
      resumed_epochs.push_back(m);
    };
    ASSERT_OK_AND_ASSIGN(JobResult resumed, RunJob(config, resumed_ctx));
    EXPECT_EQ(resumed.metrics, full.metrics) << "from step " << step;
    ASSERT_FALSE(resumed_epochs.empty());
    EXPECT_EQ(resumed_epochs.back(), epochs.back()) << "from step " << step;
    const std::vector<torch::Tensor> got = Weights(*resumed.checkpoint);
    ASSERT_EQ(got.size(), expected.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_TRUE(torch::equal(got[i], expected[i])) << "tensor " << i << " from step " << step;
    }
  }
  // Another module's step checkpoint does not restore into this run.
  JobContext wrong;
  std::vector<std::string> mlp_steps;
  json mlp_config = Config("mlp.pt", "adamw", 0.01, 1);
  mlp_config["checkpoint"] = {{"every_steps", 3}};
  wrong.on_checkpoint = [&](std::string bytes, int64_t, int) { mlp_steps.push_back(bytes); };
  ASSERT_OK(RunJob(mlp_config, wrong));
  ASSERT_FALSE(mlp_steps.empty());
  JobContext mismatched;
  mismatched.resume_from = std::make_shared<const std::string>(mlp_steps.front());
  auto bad = RunJob(config, mismatched);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kFailedPrecondition) << bad.status().ToString();
}

// keep_best: the final checkpoint holds the selected epoch's weights; the module evaluates on
// the validation rows to exactly that epoch's val_loss (CheckpointModel, the teacher / encoder
// path), and Debian's python3-torch loads the downloaded archive as a module in eval mode.
TEST(TorchScriptModelTest, BestEpochCheckpointLoadsInPython) {
  REQUIRE_FIXTURES();
  json config = Config("mlp.pt", "adamw", 0.2, 5);  // a high lr: the loss is not monotone
  config["dataset"]["standardize"] = true;
  config["checkpoint"] = {{"every_steps", 1000}, {"keep_best", 1}, {"metric", "val_loss"}};
  JobResult r;
  const Curves curves = RunLattice(config, &r);
  ASSERT_TRUE(r.checkpoint.has_value());
  const double selected = r.metrics.at("selected_val_loss");
  EXPECT_DOUBLE_EQ(selected, *std::min_element(curves.val_loss.begin(), curves.val_loss.end()));
  ASSERT_OK_AND_ASSIGN(internal::CheckpointModel model,
                       internal::CheckpointModel::Decode(*r.checkpoint));
  EXPECT_EQ(model.hidden_layers(), 0);
  ASSERT_OK_AND_ASSIGN(LoadedDataset val, LoadDataset(*ParseDatasetConfig(
                                              {{"features", Fixture("x_val.npy")},
                                               {"labels", Fixture("y_val.npy")}})));
  torch::Tensor x = torch::from_blob(val.train.features.data.data(),
                                     {val.train.features.rows, val.train.features.cols});
  torch::Tensor y = torch::tensor(val.train.labels);
  torch::Tensor logits;
  {
    torch::InferenceMode inference;
    logits = model.Forward(x, 1);
  }
  EXPECT_NEAR(torch::nn::functional::cross_entropy(logits, y).item<double>(), selected, 1e-6);
  // The archive, as `lattice checkpoint download` writes it, in Python.
  const std::string path = GetFixtures().dir->Join("best.pt");
  std::ofstream(path, std::ios::binary) << r.checkpoint->substr(r.checkpoint->find('\n') + 1);
  const std::string prepared = GetFixtures().dir->Join("x_val_prepared.npy");
  torch::Tensor h = model.Forward(x, 0).contiguous();
  testing::WriteNpy(prepared, "<f4", "(64, 12)", h.data_ptr<float>(), h.numel() * sizeof(float));
  const std::string out =
      Capture(std::string(kPython) + " " + Script() + " check " + path + " " + prepared + " 4");
  ASSERT_FALSE(out.empty()) << "python3-torch could not load the checkpoint";
  const json py = json::parse(out);
  EXPECT_EQ(py["training"], false);
  ASSERT_TRUE(py["info"].is_object());
  EXPECT_EQ(py["info"]["input_mean"].size(), 12u) << "the standardisation travels with it";
  const torch::Tensor argmax = logits.argmax(1);
  ASSERT_EQ(py["argmax"].size(), 64u);
  for (int64_t i = 0; i < 64; ++i) EXPECT_EQ(py["argmax"][i].get<int64_t>(), argmax[i].item<int64_t>());
}

void ExpectFails(const json& config, StatusCode code, const std::vector<std::string>& parts) {
  JobContext ctx;
  auto r = RunJob(config, ctx);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), code) << r.status().ToString();
  for (const std::string& p : parts) {
    EXPECT_NE(r.status().message().find(p), std::string::npos)
        << "expected \"" << p << "\" in: " << r.status().message();
  }
}

TEST(TorchScriptModelTest, BadModulesAreClearPermanentErrors) {
  REQUIRE_FIXTURES();
  // At submit (no LibTorch): the file must exist; MLP keys do not go with a module.
  json missing = Config("nope.pt");
  Status s = ValidateJobConfig(missing);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("model.path: file not found: " + Fixture("nope.pt")),
            std::string::npos)
      << s.message();
  json hidden = Config("mlp.pt");
  hidden["model"]["hidden"] = 8;
  s = ValidateJobConfig(hidden);
  EXPECT_NE(s.message().find("model.hidden: not a key of model type torchscript"),
            std::string::npos)
      << s.message();
  json no_path = Config("mlp.pt");
  no_path["model"].erase("path");
  EXPECT_NE(ValidateJobConfig(no_path).message().find("model.path: required"), std::string::npos);
  EXPECT_OK(ValidateJobConfig(Config("mlp.pt")));
  // When the job runs: InvalidArgument / FailedPrecondition (no retry), no checkpoint.
  testing::WriteText(Fixture("text.pt"), "not a module");
  ExpectFails(Config("text.pt"), StatusCode::kInvalidArgument,
              {"model.path: " + Fixture("text.pt"), "cannot load TorchScript module"});
  ExpectFails(Config("wrong_out.pt"), StatusCode::kInvalidArgument,
              {"model.path: " + Fixture("wrong_out.pt"), "forward on an input of shape [2, 12]",
               "[2, 3]", "expected floats [2, 4] (the logits of 4 classes)"});
  ExpectFails(Config("wrong_in.pt"), StatusCode::kInvalidArgument,
              {"model.path: " + Fixture("wrong_in.pt"), "forward on an input of shape [2, 12] fails"});
  ExpectFails(Config("no_params.pt"), StatusCode::kInvalidArgument,
              {"model.path: " + Fixture("no_params.pt"), "no trainable parameters"});
  ExpectFails(Config("frozen.pt"), StatusCode::kInvalidArgument, {"no trainable parameters"});
  ExpectFails(Config("nan.pt"), StatusCode::kFailedPrecondition,
              {"epoch 1: training loss is NaN"});
  json shape = Config("mlp.pt");
  shape["model"]["input_shape"] = {5, 5};
  ExpectFails(shape, StatusCode::kInvalidArgument,
              {"model.input_shape: [5, 5] is 25 values per row, the dataset has 12 columns"});
}

// The module file is a data file: outside --data-roots it is refused at submit and at run
// (the dataset itself being allowed).
TEST(TorchScriptModelTest, ModuleOutsideTheDataRootsIsRefused) {
  REQUIRE_FIXTURES();
  testutil::TempDir other;
  std::filesystem::copy_file(Fixture("mlp.pt"), other.Join("mlp.pt"));
  json config = Config("mlp.pt");
  config["model"]["path"] = other.Join("mlp.pt");
  ASSERT_OK(SetDataRoots({GetFixtures().dir->path()}, {}));
  const Status s = ValidateJobConfig(config);
  JobContext ctx;
  auto r = RunJob(config, ctx);
  ASSERT_OK(SetDataRoots({"/"}, {}));
  const std::string expected =
      "model.path: " + other.Join("mlp.pt") + ": outside the allowed data roots";
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(expected), std::string::npos) << s.message();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find(expected), std::string::npos) << r.status().message();
  JobContext allowed;
  EXPECT_OK(RunJob(Config("mlp.pt", "adamw", 0.01, 1), allowed));
}

// distill with a TorchScript student (taking [B, 1, 28, 28]) of under a quarter of the
// teacher's parameters, on Fashion-MNIST; and feature matching on its output.
TEST(TorchScriptModelTest, DistillsIntoATorchScriptStudent) {
  REQUIRE_FIXTURES();
  const std::string dir = testing::kFashionDir;
  const json dataset = {{"format", "idx"},
                        {"images", dir + "/train-images-idx3-ubyte.gz"},
                        {"labels", dir + "/train-labels-idx1-ubyte.gz"},
                        {"scale", 1.0 / 255},
                        {"standardize", true},
                        {"limit", 6000},
                        {"split", {{"validation_fraction", 0.25}, {"seed", 7}}}};
  const json teacher_config = {
      {"kind", "train"},
      {"seed", 1},
      {"dataset", dataset},
      {"model", {{"type", "mlp"}, {"hidden", {256, 128}}}},
      {"train", {{"epochs", 5}, {"batch_size", 64}, {"lr", 1e-3}, {"threads", 1}}}};
  JobContext teacher_ctx;
  ASSERT_OK_AND_ASSIGN(JobResult teacher, RunJob(teacher_config, teacher_ctx));
  ASSERT_TRUE(teacher.checkpoint.has_value());
  auto blob = std::make_shared<const std::string>(*teacher.checkpoint);
  json student = {{"kind", "distill"},
                  {"seed", 2},
                  {"dataset", dataset},
                  {"model",
                   {{"type", "torchscript"},
                    {"path", Fixture("student.pt")},
                    {"input_shape", {1, 28, 28}}}},
                  {"teacher", {{"type", "trial"}, {"trial", "s1-t0"}}},
                  {"distill", {{"temperature", 4.0}, {"alpha", 0.5}}},
                  {"train", {{"epochs", 5}, {"batch_size", 64}, {"lr", 2e-3}, {"threads", 1}}}};
  ASSERT_OK(ValidateJobConfig(student));
  JobContext ctx;
  ctx.checkpoint = [blob](const std::string& trial) -> std::shared_ptr<const std::string> {
    return trial == "s1-t0" ? blob : nullptr;
  };
  ASSERT_OK_AND_ASSIGN(JobResult r, RunJob(student, ctx));
  const auto& m = r.metrics;
  const double teacher_accuracy = teacher.metrics.at("val_accuracy");
  std::printf("[ info ] teacher %.4f (%g params) -> TorchScript student %.4f (%g params)\n",
              teacher_accuracy, m.at("teacher_params"), m.at("val_accuracy"),
              m.at("student_params"));
  EXPECT_EQ(m.at("student_params"), 784 * 32 + 32 + 32 * 10 + 10);
  EXPECT_LE(4 * m.at("student_params"), m.at("teacher_params"));
  EXPECT_GE(m.at("val_accuracy"), 0.95 * teacher_accuracy);
  EXPECT_GT(m.at("agreement"), 0.8);
  ASSERT_TRUE(r.checkpoint.has_value());

  // Feature matching reaches only the module's output (-1); an inner layer is refused.
  json matched = student;
  matched["train"]["epochs"] = 1;
  matched["distill"]["feature_match"] = {{"teacher_layer", -2}, {"student_layer", -1}};
  ASSERT_OK_AND_ASSIGN(JobResult fm, RunJob(matched, ctx));
  EXPECT_TRUE(fm.metrics.count("feature_loss"));
  matched["distill"]["feature_match"]["student_layer"] = -2;
  const Status inner = ValidateJobConfig(matched);
  EXPECT_NE(inner.message().find("distill.feature_match.student_layer: -2: a torchscript student "
                                 "shows only its output (-1)"),
            std::string::npos)
      << inner.message();
}

}  // namespace
}  // namespace lattice::jobs
