// The distill job kind on Fashion-MNIST (Debian's dataset-fashion-mnist): a teacher train
// trial's checkpoint distilled into a student with a fraction of its parameters.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <map>
#include <string>
#include <vector>

#include "jobs/checkpoint.h"
#include "jobs/job_config.h"
#include "jobs/train_config.h"
#include "jobs/train_job.h"
#include "tests/jobs/npy_writer.h"
#include "tests/testutil/testutil.h"

namespace lattice::jobs {
namespace {

using nlohmann::json;

json Dataset() {
  const std::string dir = testing::kFashionDir;
  return {{"format", "idx"},
          {"images", dir + "/train-images-idx3-ubyte.gz"},
          {"labels", dir + "/train-labels-idx1-ubyte.gz"},
          {"scale", 1.0 / 255},
          {"standardize", true},
          {"limit", 8000},
          {"split", {{"validation_fraction", 0.25}, {"seed", 7}}}};
}

json TeacherConfig() {
  return {{"kind", "train"},
          {"seed", 1},
          {"dataset", Dataset()},
          {"model", {{"type", "mlp"}, {"hidden", {256, 128}}}},
          {"train", {{"epochs", 6}, {"batch_size", 64}, {"lr", 1e-3}, {"threads", 1}}}};
}

json StudentConfig(double alpha, double temperature) {
  return {{"kind", "distill"},
          {"seed", 2},
          {"dataset", Dataset()},
          {"model", {{"type", "mlp"}, {"hidden", {32}}}},
          {"teacher", {{"type", "trial"}, {"trial", "s1-t0"}}},
          {"distill", {{"temperature", temperature}, {"alpha", alpha}}},
          {"train", {{"epochs", 6}, {"batch_size", 64}, {"lr", 2e-3}, {"threads", 1}}}};
}

class DistillJobTest : public ::testing::Test {
 protected:
  // The teacher is trained once for the suite.
  static void SetUpTestSuite() {
    JobContext ctx;
    auto r = RunJob(TeacherConfig(), ctx);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(r->checkpoint.has_value());
    teacher_ = new JobResult(std::move(r).value());
  }
  static void TearDownTestSuite() {
    delete teacher_;
    teacher_ = nullptr;
  }

  JobContext Context() {
    JobContext ctx;
    ctx.cache = &cache_;
    auto blob = std::make_shared<const std::string>(*teacher_->checkpoint);
    ctx.checkpoint = [blob](const std::string& trial) -> std::shared_ptr<const std::string> {
      return trial == "s1-t0" ? blob : nullptr;
    };
    return ctx;
  }

  static JobResult* teacher_;
  DatasetCache cache_;
};

JobResult* DistillJobTest::teacher_ = nullptr;

TEST_F(DistillJobTest, StudentWithAQuarterOfTheParametersReachesTheTeachersAccuracy) {
  std::vector<std::map<std::string, double>> epochs;
  JobContext ctx = Context();
  ctx.on_epoch = [&](int, const std::map<std::string, double>& m) { epochs.push_back(m); };
  ASSERT_OK_AND_ASSIGN(JobResult r, RunJob(StudentConfig(0.5, 4.0), ctx));
  const auto& m = r.metrics;
  const double teacher_accuracy = teacher_->metrics.at("val_accuracy");
  std::printf("[ info ] teacher %.4f (%g params), student %.4f (%g params), agreement %.4f\n",
              teacher_accuracy, m.at("teacher_params"), m.at("val_accuracy"),
              m.at("student_params"), m.at("agreement"));
  // Same dataset config and split: the teacher's accuracy on the student's validation rows
  // is exactly the teacher trial's own.
  EXPECT_DOUBLE_EQ(m.at("teacher_val_accuracy"), teacher_accuracy);
  EXPECT_NEAR(m.at("teacher_val_loss"), teacher_->metrics.at("val_loss"), 1e-5);
  EXPECT_LE(4 * m.at("student_params"), m.at("teacher_params"));
  EXPECT_GE(m.at("val_accuracy"), 0.95 * teacher_accuracy);
  EXPECT_GT(m.at("agreement"), 0.8);
  EXPECT_LE(m.at("agreement"), 1.0);
  ASSERT_EQ(epochs.size(), 6u);
  for (const auto& e : epochs) {
    for (const char* key : {"train_loss", "val_loss", "val_accuracy", "agreement",
                            "teacher_val_accuracy"}) {
      EXPECT_TRUE(e.count(key)) << key;
    }
  }
  // The student's checkpoint loads like a train trial's (embed encoder, download).
  ASSERT_TRUE(r.checkpoint.has_value());
}

// alpha = 1 leaves only the hard-label term: the run is bit-identical to a train job.
TEST_F(DistillJobTest, AlphaOneIsExactlyPlainTraining) {
  json distill = StudentConfig(1.0, 4.0);
  json train = distill;
  train["kind"] = "train";
  train.erase("teacher");
  train.erase("distill");
  JobContext ctx = Context();
  ASSERT_OK_AND_ASSIGN(JobResult d, RunJob(distill, ctx));
  ASSERT_OK_AND_ASSIGN(JobResult t, RunJob(train, ctx));
  for (const char* key : {"train_loss", "val_loss", "val_accuracy"}) {
    EXPECT_EQ(d.metrics.at(key), t.metrics.at(key)) << key;
  }
  // ... and a soft term changes it.
  ASSERT_OK_AND_ASSIGN(JobResult soft, RunJob(StudentConfig(0.0, 2.0), ctx));
  EXPECT_NE(soft.metrics.at("train_loss"), t.metrics.at("train_loss"));
}

TEST_F(DistillJobTest, TeacherProblemsAreClearErrors) {
  JobContext none;  // no checkpoint given to this "worker"
  auto missing = RunJob(StudentConfig(0.5, 4.0), none);
  EXPECT_EQ(missing.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(missing.status().message().find("no checkpoint of trial s1-t0"), std::string::npos);

  json narrow = StudentConfig(0.5, 4.0);
  narrow["dataset"] = {{"format", "csv"}, {"path", testing::kDigitsCsv}};  // 64 columns
  JobContext ctx = Context();
  auto shape = RunJob(narrow, ctx);
  EXPECT_EQ(shape.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(shape.status().message().find("takes 784 features per row, the dataset has 64"),
            std::string::npos)
      << shape.status().ToString();
}

// distill.feature_match: the student's last hidden layer pulled towards the teacher's.
json FeatureMatchConfig(int64_t student_width, double weight, int epochs) {
  json c = StudentConfig(0.5, 4.0);
  c["model"]["hidden"] = {student_width};
  c["train"]["epochs"] = epochs;
  c["distill"]["feature_match"] = {{"teacher_layer", -2}, {"student_layer", 1}, {"weight", weight}};
  return c;
}

struct FeatureRun {
  JobResult result;
  std::vector<std::map<std::string, double>> epochs;
  std::vector<std::string> checkpoints;  // step checkpoints, in order
};

FeatureRun RunFeatureMatch(const json& config, JobContext ctx,
                           std::shared_ptr<const std::string> resume_from = nullptr) {
  FeatureRun run;
  ctx.on_epoch = [&](int, const std::map<std::string, double>& m) { run.epochs.push_back(m); };
  ctx.on_checkpoint = [&](std::string bytes, int64_t, int) {
    run.checkpoints.push_back(std::move(bytes));
  };
  ctx.resume_from = std::move(resume_from);
  auto r = RunJob(config, ctx);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (r.ok()) run.result = std::move(r).value();
  return run;
}

// Equal widths (128, the teacher's last hidden layer): no map, the student's own features
// are pulled towards the teacher's, far closer than by the logits alone.
TEST_F(DistillJobTest, FeatureMatchingPullsTheStudentsFeaturesTowardsTheTeachers) {
  FeatureRun matched = RunFeatureMatch(FeatureMatchConfig(128, 1.0, 3), Context());
  FeatureRun faint = RunFeatureMatch(FeatureMatchConfig(128, 1e-6, 3), Context());
  ASSERT_EQ(matched.epochs.size(), 3u);
  ASSERT_EQ(faint.epochs.size(), 3u);
  const double with = matched.epochs.back().at("feature_loss");
  const double without = faint.epochs.back().at("feature_loss");
  std::printf("[ info ] feature MSE: weight 1 %.4f, weight 1e-6 %.4f; val_accuracy %.4f / %.4f\n",
              with, without, matched.result.metrics.at("val_accuracy"),
              faint.result.metrics.at("val_accuracy"));
  EXPECT_LT(with, 0.5 * without);
  EXPECT_LT(matched.epochs.back().at("feature_loss"), matched.epochs.front().at("feature_loss"));
  EXPECT_GT(matched.result.metrics.at("val_accuracy"), 0.7);
  EXPECT_EQ(matched.result.metrics.at("student_params"), 784 * 128 + 128 + 128 * 10 + 10);
}

// Different widths (student 32 -> teacher 128): a learned map, trained with the student and
// kept out of its final checkpoint, which still loads as the plain student.
TEST_F(DistillJobTest, FeatureMatchingAcrossWidthsLearnsAMapLeftOutOfTheCheckpoint) {
  json c = FeatureMatchConfig(32, 1.0, 3);
  c["checkpoint"] = {{"every_steps", 100}};
  FeatureRun run = RunFeatureMatch(c, Context());
  ASSERT_EQ(run.epochs.size(), 3u);
  EXPECT_LT(run.epochs.back().at("feature_loss"), run.epochs.front().at("feature_loss"));
  EXPECT_EQ(run.result.metrics.at("student_params"), 784 * 32 + 32 + 32 * 10 + 10);
  ASSERT_FALSE(run.checkpoints.empty());
  EXPECT_NE(run.checkpoints.back().find("feature_map"), std::string::npos)
      << "a step checkpoint carries the map";
  ASSERT_TRUE(run.result.checkpoint.has_value());
  EXPECT_EQ(run.result.checkpoint->find("feature_map"), std::string::npos)
      << "the final checkpoint is the plain student";
  // It loads as a teacher (jobs/internal/model.h's CheckpointModel): the student's own
  // parameters and its own validation accuracy.
  json probe = StudentConfig(1.0, 4.0);
  probe["train"]["epochs"] = 1;
  probe["model"]["hidden"] = {8};
  JobContext ctx = Context();
  auto blob = std::make_shared<const std::string>(*run.result.checkpoint);
  ctx.checkpoint = [blob](const std::string&) { return blob; };
  ASSERT_OK_AND_ASSIGN(JobResult p, RunJob(probe, ctx));
  EXPECT_EQ(p.metrics.at("teacher_params"), run.result.metrics.at("student_params"));
  EXPECT_DOUBLE_EQ(p.metrics.at("teacher_val_accuracy"), run.result.metrics.at("val_accuracy"));
  // ... and in Python as jobs/checkpoint.h documents: the student's parameters only.
  if (std::system("/usr/bin/python3 -c 'import torch' 2>/dev/null") != 0) {
    GTEST_SKIP() << "python3 with torch is not available";
  }
  testutil::TempDir dir;
  {
    std::ofstream pt(dir.Join("student.pt"), std::ios::binary);
    const std::string& b = *run.result.checkpoint;
    pt << b.substr(b.find('\n') + 1);
  }
  const std::string check =
      "import sys, torch\n"
      "m = torch.jit.load(sys.argv[1])\n"
      "names = sorted(n for n, _ in m.named_parameters())\n"
      "sys.exit(0 if names == ['0.bias', '0.weight', '2.bias', '2.weight', 'input.mean', "
      "'input.std'] else print(names) or 1)\n";
  {
    std::ofstream py(dir.Join("check.py"));
    py << check;
  }
  EXPECT_EQ(
      std::system(
          ("/usr/bin/python3 " + dir.Join("check.py") + " " + dir.Join("student.pt")).c_str()),
      0);
}

// The map and its optimizer moments travel in step checkpoints: a resumed run ends with the
// same bytes as the uninterrupted one.
TEST_F(DistillJobTest, FeatureMatchingResumesBitIdentically) {
  json c = FeatureMatchConfig(32, 1.0, 3);
  c["model"]["dropout"] = 0.1;
  c["checkpoint"] = {{"every_steps", 70}};
  FeatureRun whole = RunFeatureMatch(c, Context());
  ASSERT_GE(whole.checkpoints.size(), 3u);
  for (size_t i : {size_t{0}, whole.checkpoints.size() - 1}) {
    SCOPED_TRACE("resumed from step checkpoint " + std::to_string(i));
    FeatureRun resumed =
        RunFeatureMatch(c, Context(), std::make_shared<const std::string>(whole.checkpoints[i]));
    EXPECT_EQ(resumed.result.metrics, whole.result.metrics);
    ASSERT_TRUE(resumed.result.checkpoint.has_value());
    EXPECT_TRUE(*resumed.result.checkpoint == *whole.result.checkpoint)
        << "the final weights differ";
    ASSERT_FALSE(resumed.epochs.empty());
    EXPECT_EQ(resumed.epochs.back(), whole.epochs.back());
  }
}

TEST_F(DistillJobTest, TeacherLayerOutOfRangeNamesTheKey) {
  json c = FeatureMatchConfig(32, 1.0, 1);
  c["distill"]["feature_match"]["teacher_layer"] = 4;  // the teacher has 2 hidden layers
  JobContext ctx = Context();
  auto r = RunJob(c, ctx);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("distill.feature_match.teacher_layer: 4 is out of range "
                                      "for a model with 2 hidden layers (-4 .. 3)"),
            std::string::npos)
      << r.status().ToString();
}

// A TorchScript teacher (scripted by Debian's python3-torch): fed the rows as loaded, its
// output taken as logits; a teacher with the wrong number of classes is a clear error.
TEST(DistillTorchScriptTest, TorchScriptTeacherRunsAndItsClassesAreChecked) {
  testutil::TempDir dir;
  const std::string script = dir.Join("make.py");
  {
    std::ofstream py(script);
    py << "import sys, torch\n"
          "torch.manual_seed(0)\n"
          "for classes in (10, 3):\n"
          "    m = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),\n"
          "                            torch.nn.Linear(32, classes))\n"
          "    torch.jit.script(m).save(sys.argv[1] + '/teacher%d.pt' % classes)\n";
  }
  if (std::system(("/usr/bin/python3 " + script + " " + dir.path()).c_str()) != 0) {
    GTEST_SKIP() << "python3 with torch is not available";
  }
  json config = {{"kind", "distill"},
                 {"seed", 1},
                 {"dataset", {{"format", "csv"}, {"path", testing::kDigitsCsv}}},
                 {"model", {{"type", "mlp"}, {"hidden", {16}}}},
                 {"teacher", {{"type", "torchscript"}, {"path", dir.Join("teacher10.pt")}}},
                 {"train", {{"epochs", 2}, {"threads", 1}}}};
  JobContext ctx;
  ASSERT_OK_AND_ASSIGN(JobResult r, RunJob(config, ctx));
  EXPECT_EQ(r.metrics.at("teacher_params"), 64 * 32 + 32 + 32 * 10 + 10);
  EXPECT_EQ(r.metrics.at("student_params"), 64 * 16 + 16 + 16 * 10 + 10);
  EXPECT_GE(r.metrics.at("agreement"), 0.0);
  config["teacher"]["path"] = dir.Join("teacher3.pt");
  auto wrong = RunJob(config, ctx);
  EXPECT_EQ(wrong.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(wrong.status().message().find("gives 3 classes, the dataset has 10"), std::string::npos)
      << wrong.status().ToString();
}

TEST(DistillConfigTest, BadDistillConfigsNameTheKey) {
  auto expect = [](json c, const std::string& needle) {
    Status s = ValidateJobConfig(c);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.dump();
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.ToString();
  };
  json ok = StudentConfig(0.5, 4.0);
  EXPECT_OK(ValidateJobConfig(ok));
  json c = ok;
  c.erase("teacher");
  expect(c, "teacher: required");
  c = ok;
  c["teacher"] = {{"type", "flatten"}};
  expect(c, "teacher.type");
  c = ok;
  c["teacher"]["layer"] = -2;
  expect(c, "teacher.layer");
  c = ok;
  c["teacher"] = {{"type", "torchscript"}, {"path", "/nonexistent/teacher.pt"}};
  expect(c, "teacher.path: file not found");
  c = ok;
  c["distill"]["alpha"] = 1.5;
  expect(c, "distill.alpha");
  c = ok;
  c["distill"]["temperature"] = 0;
  expect(c, "distill.temperature");
  c = ok;
  c["distill"]["beta"] = 1;
  expect(c, "distill.beta: unknown key");
  EXPECT_EQ(ResolveParameterPath("temperature"), "distill.temperature");
  EXPECT_EQ(ResolveParameterPath("alpha"), "distill.alpha");
}

TEST(DistillConfigTest, BadFeatureMatchConfigsNameTheKey) {
  auto expect = [](json c, const std::string& needle) {
    Status s = ValidateJobConfig(c);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.dump();
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.ToString();
  };
  json ok = FeatureMatchConfig(32, 1.0, 1);
  EXPECT_OK(ValidateJobConfig(ok));
  json c = ok;
  c["teacher"] = {{"type", "torchscript"}, {"path", "/nonexistent/teacher.pt"}};
  expect(c, "distill.feature_match: needs a teacher of type trial");
  for (const char* key : {"teacher_layer", "student_layer"}) {
    c = ok;
    c["distill"]["feature_match"].erase(key);
    expect(c, std::string("distill.feature_match.") + key + ": required");
  }
  c = ok;
  c["distill"]["feature_match"]["student_layer"] = 3;  // hidden: [32]
  expect(c,
         "distill.feature_match.student_layer: 3 is out of range for a model with 1 hidden "
         "layer (-3 .. 2)");
  c["distill"]["feature_match"]["student_layer"] = -3;
  expect(c, "distill.feature_match.student_layer: -3 is the student's input");
  c = ok;
  c["distill"]["feature_match"]["weight"] = 0;
  expect(c, "distill.feature_match.weight: must be > 0");
  c = ok;
  c["distill"]["feature_match"]["wieght"] = 1;
  expect(c, "distill.feature_match.wieght: unknown key");
  c = ok;
  c["distill"]["feature_match"] = 1;
  expect(c, "distill.feature_match: expected an object");
  // feature_loss can pick the final weights only when there is one.
  c = ok;
  c["checkpoint"] = {{"every_steps", 10}, {"keep_best", 1}, {"metric", "feature_loss"}};
  EXPECT_OK(ValidateJobConfig(c));
  c["distill"].erase("feature_match");
  expect(c, "checkpoint.metric: with keep_best, must be a per-epoch metric");
}

}  // namespace
}  // namespace lattice::jobs
