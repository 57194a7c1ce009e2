// The projector study on a real `mpirun -np 3` cluster (jobs/projector_config.h): a Lattice
// train trial on Fashion-MNIST (an MLP 784 -> 32 -> 10) gives the target embeddings (its
// hidden layer, computed by Debian's python3-torch from the downloaded checkpoint); one grid
// over model.type trains the four projectors on 4 x 4 patch tokens of other Fashion-MNIST
// images with the SigLIP objective; Lattice's siglip_score ranking must equal that of a
// plain PyTorch reference (tests/integration/projector_reference.py) on the same data,
// seed, epochs and hyperparameters. Bad input is refused at submit with nothing stored.
//
// Ranking rule: the reference trains every projector with 3 seeds. Two projectors are
// clearly separated when the ranges [min, max] of their reference scores do not overlap
// and their means differ by at least 0.02; Lattice must order every clearly separated pair
// as the reference does (pairs within noise are printed, not asserted), and at least 3 of
// the 6 pairs must be clearly separated, so that the check cannot pass vacuously.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "tests/integration/cluster_fixture.h"

namespace lattice {
namespace {

using nlohmann::json;

constexpr char kFashion[] = "/usr/share/datasets/fashion-mnist/";
constexpr char kTrain[] = "--epochs 10 --lr 0.01 --batch 32";  // the reference's flags

class ProjectorTest : public testutil::ClusterFixture {};

std::string TargetTrialSpec() {
  return std::string("name: fmnist-hidden\nkind: train\nseed: 1\ndataset:\n  format: idx\n") +
         "  images: " + kFashion + "train-images-idx3-ubyte.gz\n" +
         "  labels: " + kFashion + "train-labels-idx1-ubyte.gz\n" +
         "  scale: 0.00392156862745098\n  limit: 6000\n" +
         "model: {type: mlp, hidden: 32}\n"
         "train: {epochs: 3, batch_size: 64, lr: 3.0e-3, threads: 1}\n"
         "search: {method: grid, metric: {name: val_accuracy, goal: maximize}, "
         "parameters: {seed: [1]}}\n";
}

// The grid over the four projectors: the same data, seed, epochs and hyperparameters as
// the reference's flags (kTrain).
std::string GridSpec(const std::string& name, const std::string& data, const std::string& extra = "") {
  return "name: " + name + "\nkind: train\nseed: 0\nalignment: siglip\ndataset:\n  format: idx\n" +
         "  images: " + data + "/train.idx3\n  targets: " + data + "/train_targets.npy\n" +
         "  tokens: {patch: 4}\n  scale: 0.00392156862745098\n" +
         "  validation: {images: " + data + "/val.idx3, targets: " + data + "/val_targets.npy}\n" +
         extra + "train: {epochs: 10, batch_size: 32, lr: 0.01, threads: 1}\n" +
         "search:\n  method: grid\n  metric: {name: siglip_score, goal: maximize}\n" +
         "  parameters:\n    model.type: [linear, mlp2, c_abstractor, perceiver]\n";
}

TEST_F(ProjectorTest, GridRanksTheFourProjectorsAsPlainPyTorchDoes) {
  if (!std::filesystem::exists(std::string(kFashion) + "train-images-idx3-ubyte.gz")) {
    GTEST_SKIP() << "Fashion-MNIST is not installed (dataset-fashion-mnist)";
  }
  StartCluster();
  // 1. The targets: a trained Fashion-MNIST trial's hidden layer.
  json trial_sweep = Call("POST", "/v1/sweeps", TargetTrialSpec(), 201);
  json done = WaitForSweep(trial_sweep["id"], std::chrono::seconds(600));
  ASSERT_EQ(done["state"], "completed") << done.dump(2) << cluster_->Log();
  const std::string trial = trial_sweep["id"].get<std::string>() + "-t0";
  const std::string pt = dir_.Join("trial.pt"), data = dir_.Join("projector-data");
  const std::string script = testutil::SourceDir() + "/tests/integration/projector_reference.py";
  std::string out;
  ASSERT_EQ(testutil::RunCommand(testutil::LatticeBinary() + " checkpoint download " + trial +
                                     " -o " + pt + " --data-dir " + DataDir(),
                                 &out),
            0)
      << out;
  ASSERT_EQ(testutil::RunCommand("/usr/bin/python3 " + script + " data " + pt + " " + data, &out),
            0)
      << out;

  // 2. Bad input, refused at submit: nothing is stored.
  const size_t sweeps = Call("GET", "/v1/sweeps")["sweeps"].size();
  json err = Call("POST", "/v1/sweeps",
                  GridSpec("bad-width", data, "model: {output_dim: 4096}\n"), 400);
  EXPECT_NE(err.dump().find("model.output_dim: 4096 does not match the targets' width 32"),
            std::string::npos)
      << err.dump();
  std::string flat = GridSpec("bad-flat", data);
  flat.replace(flat.find("  tokens: {patch: 4}\n"), 21, "");
  err = Call("POST", "/v1/sweeps", flat, 400);
  EXPECT_NE(err.dump().find("dataset.tokens: a projector (model.type linear) needs token "
                            "sequences"),
            std::string::npos)
      << err.dump();
  std::string patch5 = GridSpec("bad-patch", data);
  patch5.replace(patch5.find("patch: 4"), 8, "patch: 5");
  err = Call("POST", "/v1/sweeps", patch5, 400);
  EXPECT_NE(err.dump().find("dataset.tokens.patch: 5 does not divide the 28 x 28 images"),
            std::string::npos)
      << err.dump();
  std::string bad_metric = GridSpec("bad-metric", data);
  bad_metric.replace(bad_metric.find("name: siglip_score"), 18, "name: val_accuracy");
  err = Call("POST", "/v1/sweeps", bad_metric, 400);
  EXPECT_NE(err.dump().find("one of: train_loss, val_loss, siglip_score"), std::string::npos)
      << err.dump();
  EXPECT_EQ(Call("GET", "/v1/sweeps")["sweeps"].size(), sweeps);

  // 3. The grid on the cluster, and the reference beside it.
  json grid = Call("POST", "/v1/sweeps", GridSpec("projector-grid", data), 201);
  ASSERT_EQ(testutil::RunCommand("/usr/bin/python3 " + script + " train " + data + " " + kTrain +
                                     " --seeds 0,1,2",
                                 &out),
            0)
      << out;
  const json reference = json::parse(out.substr(out.find('{')), nullptr, false);
  ASSERT_TRUE(reference.is_object()) << out;
  done = WaitForSweep(grid["id"], std::chrono::seconds(900));
  ASSERT_EQ(done["state"], "completed") << done.dump(2) << cluster_->Log();
  json trials = Call("GET", "/v1/sweeps/" + grid["id"].get<std::string>() + "/trials")["trials"];
  ASSERT_EQ(trials.size(), 4u);
  std::map<std::string, double> lattice;
  for (const json& t : trials) {
    ASSERT_EQ(t["state"], "completed") << t.dump();
    const double score = t["metrics"]["siglip_score"];
    EXPECT_GT(score, 0.0);
    EXPECT_LT(score, 1.0);
    for (const char* m : {"val_recall_at_1_i2t", "val_recall_at_5_t2i", "logit_scale",
                          "logit_bias"}) {
      EXPECT_TRUE(t["metrics"].contains(m)) << m << " " << t.dump();
    }
    lattice[t["params"]["model.type"].get<std::string>()] = score;
  }
  ASSERT_EQ(lattice.size(), 4u);
  struct Ref {
    double mean = 0, lo = 1, hi = 0;
  };
  std::map<std::string, Ref> ref;
  for (const auto& [type, scores] : reference.items()) {
    Ref r;
    for (const json& s : scores) {
      const double v = s.get<double>();
      r.mean += v / static_cast<double>(scores.size());
      r.lo = std::min(r.lo, v);
      r.hi = std::max(r.hi, v);
    }
    ref[type] = r;
    std::printf("[ info ] %-12s lattice siglip_score %.4f   reference %.4f (seeds %.4f .. %.4f)\n",
                type.c_str(), lattice.at(type), r.mean, r.lo, r.hi);
  }
  int separated = 0;
  for (const auto& [a, ra] : ref) {
    for (const auto& [b, rb] : ref) {
      if (a >= b) continue;
      const bool clear = (ra.lo > rb.hi || rb.lo > ra.hi) && std::abs(ra.mean - rb.mean) >= 0.02;
      if (!clear) {
        std::printf("[ info ] %s vs %s: within the reference's noise, not asserted\n", a.c_str(),
                    b.c_str());
        continue;
      }
      ++separated;
      EXPECT_EQ(ra.mean > rb.mean, lattice.at(a) > lattice.at(b))
          << a << " vs " << b << ": the reference ranks " << (ra.mean > rb.mean ? a : b)
          << " higher, Lattice the other";
    }
  }
  EXPECT_GE(separated, 3) << "too few clearly separated pairs for a meaningful ranking check";
}

}  // namespace
}  // namespace lattice
