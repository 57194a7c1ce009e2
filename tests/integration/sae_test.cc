// Integration test of activation datasets and sparse-autoencoder sweeps on a real
// `mpirun -np 3` cluster: a small Fashion-MNIST MLP is trained; an embed sweep extracts its
// hidden layer (layer -2) for all 60,000 training images into an activation dataset (labels
// travel with the rows); a 2 x 2 SAE sweep (expansion x l1_coefficient) trains on it; the
// best SAE is checked against the acceptance bar and against a plain PyTorch reference
// (tests/integration/sae_reference.py, Debian's python3-torch) on the same data, init and
// order. Bad input: unknown and unfinished datasets are refused at submit, storing nothing.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <string>

#include "tests/integration/cluster_fixture.h"

namespace lattice {
namespace {

using nlohmann::json;

constexpr char kDir[] = "/usr/share/datasets/fashion-mnist/";
constexpr double kScale = 0.00392156862745098;

class SaeSweepTest : public testutil::ClusterFixture {};

std::string TrainSpec() {
  return std::string("name: fmnist-mlp\nkind: train\nseed: 3\ndataset:\n  format: idx\n") +
         "  images: " + kDir + "train-images-idx3-ubyte.gz\n" +
         "  labels: " + kDir + "train-labels-idx1-ubyte.gz\n" +
         "  scale: 0.00392156862745098\n  standardize: true\n  limit: 6000\n" +
         "model: {type: mlp, hidden: 64}\n"
         "train: {epochs: 3, batch_size: 64, lr: 3.0e-3, threads: 1}\n"
         "search:\n  method: grid\n  metric: {name: val_accuracy, goal: maximize}\n"
         "  parameters:\n    seed: [3]\n";
}

std::string EmbedSpec(const std::string& trial) {
  return "name: fmnist-hidden\nkind: embed\nencoder: {type: trial, trial: " + trial +
         ", layer: -2}\n" + "corpus: {format: idx, images: " + kDir +
         "train-images-idx3-ubyte.gz, labels: " + kDir + "train-labels-idx1-ubyte.gz}\n" +
         "shard_size: 10000\noutput: {dataset: fmnist-hidden}\n";
}

std::string SaeSpec(const std::string& dataset) {
  return "name: fmnist-sae\nkind: train\nseed: 0\n"
         "dataset: {activations: " + dataset + ", split: {validation_fraction: 0.2, seed: 42}}\n"
         "model: {type: sae, dead_window: 10000, purity_top: 50}\n"
         "train: {epochs: 3, batch_size: 256, lr: 1.0e-2, threads: 1}\n"
         "search:\n  method: grid\n  metric: {name: val_explained_variance, goal: maximize}\n"
         "  parameters:\n    expansion: [4, 8]\n    l1_coefficient: [5.0e-2, 1.0e-1]\n";
}

TEST_F(SaeSweepTest, HiddenLayerActivationsThenAnSaeSweepMatchingPyTorch) {
  StartCluster();
  json train = Call("POST", "/v1/sweeps", TrainSpec(), 201);
  train = WaitForSweep(train["id"], std::chrono::seconds(300));
  ASSERT_EQ(train["state"], "completed") << train.dump(2) << cluster_->Log();
  const std::string trial = train["id"].get<std::string>() + "-t0";

  // Unknown dataset: 400 at submit, nothing stored.
  json sweeps_before = Call("GET", "/v1/sweeps");
  json unknown = Call("POST", "/v1/sweeps", SaeSpec("no-such"), 400);
  EXPECT_NE(unknown.dump().find("no activation dataset named \\\"no-such\\\""), std::string::npos)
      << unknown.dump();

  json embed = Call("POST", "/v1/sweeps", EmbedSpec(trial), 201);
  ASSERT_EQ(embed["num_trials"], 6) << embed.dump(2);
  // Still being written: 409 naming the sweep (the embed sweep has only just been stored).
  json early = Call("POST", "/v1/sweeps", SaeSpec("fmnist-hidden"), 409);
  EXPECT_NE(early.dump().find("still being written by sweep " + embed["id"].get<std::string>()),
            std::string::npos)
      << early.dump();
  // The same name again: 409 too.
  Call("POST", "/v1/sweeps", EmbedSpec(trial), 409);
  EXPECT_EQ(Call("GET", "/v1/sweeps")["sweeps"].size(), sweeps_before["sweeps"].size() + 1)
      << "the refused specs stored nothing";

  embed = WaitForSweep(embed["id"], std::chrono::seconds(600));
  ASSERT_EQ(embed["state"], "completed") << embed.dump(2) << cluster_->Log();
  // Its rows are checked once the last shard's completion is committed (one loop later).
  json dataset;
  ASSERT_TRUE(testutil::WaitFor(
      [&] {
        dataset = Call("GET", "/v1/datasets/fmnist-hidden");
        return dataset.value("state", "") != "writing";
      },
      std::chrono::seconds(60)))
      << dataset.dump(2);
  EXPECT_EQ(dataset["state"], "ready") << dataset.dump(2);
  embed = Call("GET", "/v1/sweeps/" + embed["id"].get<std::string>());
  EXPECT_EQ(embed["message"], "dataset fmnist-hidden: 60000 rows x 64, labelled") << embed.dump(2);
  EXPECT_EQ(dataset["rows"], 60000);
  EXPECT_EQ(dataset["dim"], 64);
  EXPECT_EQ(dataset["labels"], true);
  EXPECT_EQ(dataset["source"]["encoder"]["trial"], trial);
  Call("GET", "/v1/datasets/nope", "", 404);
  std::string output;
  const std::string cli = testutil::LatticeBinary();
  const std::string data_dir = " --data-dir " + DataDir();
  ASSERT_EQ(testutil::RunCommand(cli + " datasets --format csv" + data_dir, &output), 0) << output;
  EXPECT_NE(output.find("fmnist-hidden,ready,60000,64,yes," + embed["id"].get<std::string>() +
                        ",trial " + trial + " layer -2"),
            std::string::npos)
      << output;

  // The SAE sweep on it.
  json sae = Call("POST", "/v1/sweeps", SaeSpec("fmnist-hidden"), 201);
  ASSERT_EQ(sae["num_trials"], 4);
  sae = WaitForSweep(sae["id"], std::chrono::seconds(1200));
  ASSERT_EQ(sae["state"], "completed") << sae.dump(2) << cluster_->Log();
  json trials = Call("GET", "/v1/sweeps/" + sae["id"].get<std::string>() + "/trials")["trials"];
  ASSERT_EQ(trials.size(), 4u);
  json best;
  for (const json& t : trials) {
    ASSERT_EQ(t["state"], "completed") << t.dump(2);
    const json& m = t["metrics"];
    for (const char* name : {"val_mse", "val_explained_variance", "val_l0", "val_l0_fraction",
                             "dead_features", "dead_fraction", "val_label_purity"}) {
      EXPECT_TRUE(m.contains(name)) << name << " missing: " << m.dump();
    }
    std::printf("[ info ] %s expansion %d l1 %g: EV %.4f L0 %.2f (%.3f of %d) dead %d purity %.3f\n",
                t["id"].get<std::string>().c_str(), t["params"]["expansion"].get<int>(),
                t["params"]["l1_coefficient"].get<double>(),
                m["val_explained_variance"].get<double>(), m["val_l0"].get<double>(),
                m["val_l0_fraction"].get<double>(), m["dictionary_size"].get<int>(),
                m["dead_features"].get<int>(), m["val_label_purity"].get<double>());
    if (best.is_null() || t["objective"].get<double>() > best["objective"].get<double>()) best = t;
  }
  ASSERT_EQ(sae["best"]["trial"], best["id"]) << sae.dump(2);
  const json& bm = best["metrics"];
  EXPECT_GE(bm["val_explained_variance"].get<double>(), 0.90) << best.dump(2);
  EXPECT_LT(bm["val_l0_fraction"].get<double>(), 0.10) << best.dump(2);
  EXPECT_GT(bm["val_label_purity"].get<double>(), 0.1) << best.dump(2);

  // The plain PyTorch reference on the same data, init and order.
  ASSERT_EQ(testutil::RunCommand(cli + " checkpoint download " + trial + " -o " +
                                     dir_.Join("mlp.pt") + data_dir, &output),
            0)
      << output;
  json input = {{"checkpoint", dir_.Join("mlp.pt")},
                {"images", std::string(kDir) + "train-images-idx3-ubyte.gz"},
                {"labels", std::string(kDir) + "train-labels-idx1-ubyte.gz"},
                {"scale", kScale}, {"seed", 0},
                {"expansion", best["params"]["expansion"]},
                {"l1_coefficient", best["params"]["l1_coefficient"]},
                {"epochs", 3}, {"batch_size", 256}, {"lr", 1e-2},
                {"validation_fraction", 0.2}, {"split_seed", 42},
                {"dead_window", 10000}, {"purity_top", 50}};
  std::ofstream(dir_.Join("ref.json")) << input.dump();
  ASSERT_EQ(testutil::RunCommand("/usr/bin/python3 " + testutil::SourceDir() +
                                     "/tests/integration/sae_reference.py " + dir_.Join("ref.json"),
                                 &output),
            0)
      << output;
  const json reference = json::parse(output.substr(output.find('[')), nullptr, false);
  ASSERT_TRUE(reference.is_array() && reference.size() == 3) << output;
  json curves = Call("GET", "/v1/trials/" + best["id"].get<std::string>() + "/metrics");
  ASSERT_TRUE(curves.is_object()) << curves.dump();
  const json& epochs = curves["epochs"];
  ASSERT_EQ(epochs.size(), 3u) << curves.dump(2);
  // Tolerances: relative 3 % on MSE, training loss and L0, 0.01 absolute on explained variance and purity,
  // dead features within 2 % of the dictionary: the same float32 ops in the same order, so
  // only the summation order of a few reductions differs.
  for (size_t e = 0; e < 3; ++e) {
    const json& ours = epochs[e]["values"];
    const json& ref = reference[e];
    auto rel = [&](const char* k) {
      return std::abs(ours[k].get<double>() - ref[k].get<double>()) /
             std::max(1e-12, std::abs(ref[k].get<double>()));
    };
    std::printf("[ info ] epoch %zu: lattice mse %.6f EV %.5f L0 %.3f dead %d purity %.4f | "
                "pytorch mse %.6f EV %.5f L0 %.3f dead %d purity %.4f\n",
                e + 1, ours["val_mse"].get<double>(), ours["val_explained_variance"].get<double>(),
                ours["val_l0"].get<double>(), ours["dead_features"].get<int>(),
                ours.value("val_label_purity", -1.0), ref["val_mse"].get<double>(),
                ref["val_explained_variance"].get<double>(), ref["val_l0"].get<double>(),
                ref["dead_features"].get<int>(), ref["val_label_purity"].get<double>());
    EXPECT_LT(rel("val_mse"), 0.03);
    EXPECT_LT(rel("train_loss"), 0.03);
    EXPECT_LT(rel("val_l0"), 0.03);
    EXPECT_NEAR(ours["val_explained_variance"].get<double>(),
                ref["val_explained_variance"].get<double>(), 0.01);
    // Label purity is measured after the last epoch only (jobs/internal/sae_trainer.cc).
    if (e + 1 < 3) {
      EXPECT_FALSE(ours.contains("val_label_purity")) << ours.dump();
    } else {
      ASSERT_TRUE(ours.contains("val_label_purity")) << ours.dump();
      EXPECT_NEAR(ours["val_label_purity"].get<double>(), ref["val_label_purity"].get<double>(),
                  0.01);
    }
    EXPECT_LE(std::abs(ours["dead_features"].get<int>() - ref["dead_features"].get<int>()),
              0.02 * ref["dictionary_size"].get<double>());
  }
}

}  // namespace
}  // namespace lattice
