// ExportTorchScript: a trial's final checkpoint (built-in model or the user's TorchScript
// module) as a TorchScript module that Debian's python3-torch runs with torch.jit.load(p)(x),
// reproducing the trial's test accuracy.
#include "jobs/torchscript_export.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "jobs/train_job.h"
#include "tests/jobs/npy_writer.h"
#include "tests/testutil/testutil.h"

namespace lattice::jobs {
namespace {

using nlohmann::json;
using testing::kFashionDir;

// Loads the module, feeds it the raw Fashion-MNIST test images (uint8, [N, 28, 28]: the
// module scales, standardises and flattens) and prints the accuracy on the first `limit`.
constexpr char kCheckPy[] = R"(
import gzip, sys
import numpy as np
import torch
torch.set_num_threads(1)
path, images, labels, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with gzip.open(images) as f:
    x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:limit]
with gzip.open(labels) as f:
    y = np.frombuffer(f.read(), np.uint8, offset=8)[:limit]
m = torch.jit.load(path)
with torch.no_grad():
    logits = m(torch.from_numpy(x.copy()))
assert tuple(logits.shape) == (limit, m.classes), logits.shape
print("%.10f" % (logits.argmax(1).numpy() == y).mean())
)";

json Config() {
  const std::string d = kFashionDir;
  return {{"kind", "train"},
          {"seed", 3},
          {"dataset",
           {{"format", "idx"},
            {"images", d + "/train-images-idx3-ubyte.gz"},
            {"labels", d + "/train-labels-idx1-ubyte.gz"},
            {"test",
             {{"images", d + "/t10k-images-idx3-ubyte.gz"},
              {"labels", d + "/t10k-labels-idx1-ubyte.gz"}}},
            {"limit", 3000},
            {"scale", 1.0 / 255},
            {"standardize", true}}},
          {"model", {{"hidden", {64, 32}}, {"batchnorm", true}, {"dropout", 0.2}, {"activation", "gelu"}}},
          {"train",
           {{"epochs", 4}, {"lr", 2e-3}, {"threads", 1}, {"early_stopping", {{"patience", 10}}}}}};
}

// Trains `config`, exports its final checkpoint, runs kCheckPy on the module in Debian's
// python3-torch over the first 3000 raw test images, and compares with the trial's
// test_accuracy.
void ExpectPythonReproducesTestAccuracy(const json& config) {
  ASSERT_EQ(std::system("/usr/bin/python3 -c 'import torch, numpy' 2>/dev/null"), 0)
      << "Debian's python3-torch and python3-numpy are needed (scripts/setup.sh installs them)";
  JobContext ctx;
  ASSERT_OK_AND_ASSIGN(JobResult r, RunJob(config, ctx));
  ASSERT_TRUE(r.checkpoint.has_value());
  ASSERT_OK_AND_ASSIGN(std::string module, ExportTorchScript(*r.checkpoint));
  testutil::TempDir dir;
  std::ofstream(dir.Join("model.pt"), std::ios::binary) << module;
  std::ofstream(dir.Join("check.py")) << kCheckPy;
  const std::string d = kFashionDir;
  const std::string cmd = "OMP_NUM_THREADS=1 /usr/bin/python3 " + dir.Join("check.py") + " " +
                          dir.Join("model.pt") + " " + d + "/t10k-images-idx3-ubyte.gz " + d +
                          "/t10k-labels-idx1-ubyte.gz 3000";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char line[128] = {0};
  const bool read = std::fgets(line, sizeof(line), p) != nullptr;
  ASSERT_EQ(::pclose(p), 0) << cmd;
  ASSERT_TRUE(read);
  const double python_accuracy = std::stod(line);
  const double trial_accuracy = r.metrics.at("test_accuracy");
  std::printf("test accuracy: trial %.6f, exported model in python %.6f\n", trial_accuracy,
              python_accuracy);
  EXPECT_GT(trial_accuracy, 0.6);
  // The same predictions up to float rounding: at most one of the 3000 rows may differ.
  EXPECT_NEAR(python_accuracy, trial_accuracy, 1.0 / 3000 + 1e-9);
}

TEST(ExportTest, PythonRunsTheExportedModelAndGetsTheTrialsTestAccuracy) {
  ExpectPythonReproducesTestAccuracy(Config());
}

// model {type: torchscript}: the checkpoint is the user's trained module; the export puts
// the input preparation (scale, standardisation, reshape to input_shape) in front of it.
TEST(ExportTest, TorchScriptModelTrialExportsWithItsInputPreparation) {
  ASSERT_EQ(std::system("/usr/bin/python3 -c 'import torch, numpy' 2>/dev/null"), 0)
      << "Debian's python3-torch and python3-numpy are needed (scripts/setup.sh installs them)";
  testutil::TempDir models;
  const std::string make = "/usr/bin/python3 " + testutil::SourceDir() +
                           "/tests/jobs/fixtures/make_torchscript_model.py make " + models.path();
  ASSERT_EQ(std::system(make.c_str()), 0) << make;
  json config = Config();
  // student.pt: [B, 1, 28, 28] -> flatten -> Linear(784, 32) -> ReLU -> Linear(32, 10); it
  // refuses any other rank, so a missing reshape fails the Python side.
  config["model"] = {{"type", "torchscript"},
                     {"path", models.Join("student.pt")},
                     {"input_shape", {1, 28, 28}}};
  ExpectPythonReproducesTestAccuracy(config);
}

TEST(ExportTest, NotACheckpointIsAClearError) {
  StatusOr<std::string> r = ExportTorchScript("not a checkpoint");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("checkpoint"), std::string::npos) << r.status().ToString();
}

}  // namespace
}  // namespace lattice::jobs
