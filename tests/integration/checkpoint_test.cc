// Integration test of train checkpoints as embed encoders on a real `mpirun -np 3` cluster:
// a train sweep stores each trial's final weights with its completion; after a restart an
// embed sweep with encoder {type: trial} embeds Fashion-MNIST test images through the best
// trial's model, and the published index records which trial and checkpoint built it. The
// `lattice checkpoint download` / `lattice checkpoints` commands run as a user would run them,
// and Debian's python3-torch loads the downloaded file.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <string>

#include "jobs/dataset.h"
#include "store/index_catalog.h"
#include "tests/integration/cluster_fixture.h"

namespace lattice {
namespace {

using nlohmann::json;

constexpr char kDir[] = "/usr/share/datasets/fashion-mnist/";

class CheckpointEncoderTest : public testutil::ClusterFixture {};

std::string TrainSpec() {
  return std::string("name: probe\nkind: train\nseed: 3\ndataset:\n  format: idx\n") +
         "  images: " + kDir + "train-images-idx3-ubyte.gz\n" +
         "  labels: " + kDir + "train-labels-idx1-ubyte.gz\n" +
         "  scale: 0.00392156862745098\n  standardize: true\n  limit: 6000\n" +
         "model: {type: mlp, hidden: 64}\n"
         "train: {epochs: 3, batch_size: 64, threads: 1}\n"
         "search:\n  method: grid\n  metric: {name: val_accuracy, goal: maximize}\n"
         "  parameters:\n    lr: [1.0e-3, 3.0e-3]\n";
}

std::string EmbedSpec(const std::string& name, const std::string& trial, int layer) {
  return "name: " + name + "\nkind: embed\nencoder: {type: trial, trial: " + trial +
         ", layer: " + std::to_string(layer) + "}\n" +
         "corpus: {format: idx, images: " + kDir + "t10k-images-idx3-ubyte.gz, labels: " + kDir +
         "t10k-labels-idx1-ubyte.gz, limit: 2000}\n"
         "shard_size: 500\nindex: {type: flat}\n";
}

TEST_F(CheckpointEncoderTest, BestTrialEmbedsTestImagesWithLineage) {
  StartCluster();
  json train = Call("POST", "/v1/sweeps", TrainSpec(), 201);
  train = WaitForSweep(train["id"], std::chrono::seconds(300));
  ASSERT_EQ(train["state"], "completed") << train.dump(2) << cluster_->Log();
  json trials = Call("GET", "/v1/sweeps/" + train["id"].get<std::string>() + "/trials")["trials"];
  ASSERT_EQ(trials.size(), 2u);
  json best;
  for (const auto& t : trials) {
    EXPECT_GT(t["checkpoint_bytes"].get<int64_t>(), 784 * 64 * 4) << t.dump();
    if (best.is_null() || t["objective"].get<double>() > best["objective"].get<double>()) best = t;
  }
  const std::string best_id = best["id"];
  const double val_accuracy = best["metrics"]["val_accuracy"];
  ASSERT_GT(val_accuracy, 0.7);

  // The checkpoint can be downloaded as stored; a trial without one is a clear 404.
  auto download = client_->Request("GET", "/v1/trials/" + best_id + "/checkpoint");
  ASSERT_OK(download);
  ASSERT_EQ(download->status, 200);
  EXPECT_EQ(static_cast<int64_t>(download->body.size()), best["checkpoint_bytes"].get<int64_t>());
  EXPECT_EQ(download->body.rfind("{\"classes\":10,\"config\":", 0), 0u)
      << download->body.substr(0, 80);
  json missing = Call("GET", "/v1/trials/s1-t9/checkpoint", "", 404);
  EXPECT_NE(missing.dump().find("not found"), std::string::npos) << missing.dump();

  // `lattice checkpoint download` splits it: Debian's python3-torch loads the archive file
  // as is, and its parameters are the header's model.
  const std::string cli = testutil::LatticeBinary();
  const std::string data_dir = " --data-dir " + DataDir();
  const std::string pt = dir_.Join("best.pt");
  std::string output;
  ASSERT_EQ(testutil::RunCommand(cli + " checkpoint download " + best_id + " -o " + pt + data_dir,
                                 &output),
            0)
      << output;
  const std::string archive = download->body.substr(download->body.find('\n') + 1);
  EXPECT_EQ(output.rfind("wrote " + pt + " (" + std::to_string(archive.size()) + " bytes", 0), 0u)
      << output;
  EXPECT_EQ(testutil::ReadFile(pt), archive) << "the file is the stored bytes after the header";
  const json header = json::parse(testutil::ReadFile(pt + ".json"), nullptr, false);
  ASSERT_TRUE(header.is_object()) << testutil::ReadFile(pt + ".json");
  EXPECT_EQ(header["metrics"]["val_accuracy"], val_accuracy);
  // Parameters of the header's MLP: a Linear (in * out + out) per hidden width, then the
  // output Linear; batchnorm would add a scale and a shift per hidden unit.
  const json& model = header.at("config").at("model");
  const json& width_spec = model.at("hidden");
  const json widths = width_spec.is_array() ? width_spec : json::array({width_spec});
  const bool batchnorm = model.value("batchnorm", false);
  int64_t in = header["in_dim"], expected_params = 0;
  for (const json& w : widths) {
    const int64_t width = w.get<int64_t>();
    expected_params += in * width + width + (batchnorm ? 2 * width : 0);
    in = width;
  }
  expected_params += in * header["classes"].get<int64_t>() + header["classes"].get<int64_t>();
  EXPECT_EQ(expected_params, 784 * 64 + 64 + 64 * 10 + 10) << header.dump(2);
  {
    std::ofstream script(dir_.Join("load.py"));
    script << "import sys, torch\n"
              "m = torch.jit.load(sys.argv[1])\n"
              "params = dict(m.named_parameters())\n"
              "assert list(params['0.weight'].shape) == [int(sys.argv[2]), 784], "
              "params['0.weight'].shape\n"
              "# input.mean / input.std: the trial's input standardisation, not network weights\n"
              "print('params', sum(p.numel() for k, p in params.items() "
              "if not k.startswith('input.')))\n"
              "print('input', params['input.mean'].numel(), params['input.std'].numel())\n"
              "# The README's recipe: the weights load into the same nn.Sequential (strict).\n"
              "h = int(sys.argv[2])\n"
              "net = torch.nn.Sequential(torch.nn.Linear(784, h), torch.nn.ReLU(), "
              "torch.nn.Linear(h, 10))\n"
              "net.load_state_dict({k: v for k, v in m.state_dict().items() "
              "if not k.startswith('input.')})\n"
              "print('loaded', net(torch.zeros(2, 784)).shape[1])\n";
  }
  ASSERT_EQ(testutil::RunCommand("/usr/bin/python3 " + dir_.Join("load.py") + " " + pt + " " +
                                     std::to_string(widths[0].get<int64_t>()),
                                 &output),
            0)
      << output;
  EXPECT_NE(output.find("params " + std::to_string(expected_params) + "\n"), std::string::npos)
      << output;
  EXPECT_NE(output.find("input 784 784\n"), std::string::npos) << output;
  EXPECT_NE(output.find("loaded 10\n"), std::string::npos) << output;

  // `lattice checkpoints`: one final row whose BYTES is the stored size (header line and
  // archive), i.e. the trial's checkpoint_bytes and the size of the route's download.
  ASSERT_EQ(testutil::RunCommand(cli + " checkpoints " + best_id + " --format json" + data_dir,
                                 &output),
            0)
      << output;
  const json rows = json::parse(output, nullptr, false);
  ASSERT_TRUE(rows.is_array() && rows.size() == 1) << output;
  EXPECT_EQ(rows[0]["kind"], "final");
  EXPECT_EQ(rows[0]["bytes"], best["checkpoint_bytes"]);
  EXPECT_EQ(rows[0]["bytes"].get<int64_t>(), static_cast<int64_t>(download->body.size()));
  EXPECT_EQ(rows[0]["epoch"], best["epochs_done"]);
  EXPECT_EQ(rows[0]["val_accuracy"], val_accuracy);

  // No such trial: non-zero exit, the server's reason, no file.
  EXPECT_NE(testutil::RunCommand(cli + " checkpoint download s1-t9 -o " + dir_.Join("none.pt") +
                                     data_dir,
                                 &output),
            0);
  EXPECT_NE(output.find("error: cannot download the checkpoint of s1-t9: "), std::string::npos)
      << output;
  EXPECT_NE(output.find("not found"), std::string::npos) << output;
  EXPECT_FALSE(std::ifstream(dir_.Join("none.pt")).good());

  // Checkpoints are durable: a restarted cluster still embeds with them.
  cluster_->Stop();
  StartCluster();

  // Layer -1: the logits. Their argmax classifies the test images about as well as the
  // trial classified its validation split; wrong weights or input preparation would not.
  json embed = Call("POST", "/v1/sweeps", EmbedSpec("probe-logits", best_id, -1), 201);
  ASSERT_EQ(embed["num_trials"], 4);
  embed = WaitForSweep(embed["id"], std::chrono::seconds(300));
  ASSERT_EQ(embed["state"], "completed") << embed.dump(2) << cluster_->Log();
  ASSERT_OK_AND_ASSIGN(auto catalog, store::IndexCatalog::Open(DataDir() + "/indexes"));
  ASSERT_OK_AND_ASSIGN(auto logits, catalog->Current("probe-logits"));
  ASSERT_EQ(logits->dim(), 10);
  ASSERT_EQ(logits->size(), 2000);
  ASSERT_OK_AND_ASSIGN(std::vector<int64_t> labels,
                       jobs::LoadIdxLabels(std::string(kDir) + "t10k-labels-idx1-ubyte.gz"));
  int correct = 0;
  for (int64_t row = 0; row < 2000; ++row) {
    ASSERT_OK_AND_ASSIGN(std::vector<float> v, logits->Reconstruct(row));
    correct += std::max_element(v.begin(), v.end()) - v.begin() == labels[static_cast<size_t>(row)];
  }
  const double test_accuracy = correct / 2000.0;
  std::printf("[ info ] %s: val_accuracy %.4f, argmax of embedded logits on 2,000 test images %.4f\n",
              best_id.c_str(), val_accuracy, test_accuracy);
  EXPECT_GT(test_accuracy, val_accuracy - 0.05);

  // The default layer (-2): the 64-wide hidden block; lineage in the index list. The
  // encoder names the train sweep: the coordinator picks its best trial.
  json hidden = Call("POST", "/v1/sweeps", EmbedSpec("probe-hidden", "probe", -2), 201);
  EXPECT_EQ(hidden["spec"]["encoder"]["trial"], best_id) << hidden.dump(2);
  hidden = WaitForSweep(hidden["id"], std::chrono::seconds(300));
  ASSERT_EQ(hidden["state"], "completed") << hidden.dump(2) << cluster_->Log();
  json indexes = Call("GET", "/v1/indexes")["indexes"];
  json entry;
  for (const auto& i : indexes) {
    if (i["name"] == "probe-hidden") entry = i;
  }
  ASSERT_TRUE(entry.is_object()) << indexes.dump(2);
  EXPECT_EQ(entry["dim"], 64);
  const json& from = entry["built_from"]["checkpoint"];
  EXPECT_EQ(from["trial"], best_id) << entry.dump(2);
  EXPECT_EQ(from["sweep"], train["id"]);
  EXPECT_EQ(from["layer"], 1);
  EXPECT_EQ(from["params"], best["params"]);
  EXPECT_EQ(from["metrics"]["val_accuracy"], val_accuracy);
  EXPECT_EQ(from["bytes"], best["checkpoint_bytes"]);

  // Neighbours in the learned space mostly share the query's class.
  json search = Call("POST", "/v1/indexes/probe-hidden/search",
                     json{{"items", {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}}, {"k", 10}}.dump(), 200,
                     "application/json");
  int same = 0, total = 0;
  for (size_t q = 0; q < 10; ++q) {
    for (const auto& meta : search["results"][q]["metadata"]) {
      same += meta["label"] == labels[q];
      ++total;
    }
  }
  ASSERT_EQ(total, 100) << search.dump();
  EXPECT_GE(same, 70) << "of 100 neighbours share the query's label";
}

TEST_F(CheckpointEncoderTest, BadTrialReferencesAreRejectedAtSubmit) {
  StartCluster(2);
  json noop = Call("POST", "/v1/sweeps", "name: n\nkind: noop\n", 201);
  ASSERT_EQ(WaitForSweep(noop["id"], std::chrono::seconds(60))["state"], "completed");
  const std::string noop_trial = noop["id"].get<std::string>() + "-t0";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {EmbedSpec("e", "s99-t0", -2), "encoder.trial: no trial s99-t0"},
      {EmbedSpec("e", noop_trial, -2), "encoder.trial: " + noop_trial + " has no checkpoint"},
      {EmbedSpec("e", "best", -2), "encoder.trial: \"best\" is neither a trial id"},
      {EmbedSpec("e", "s99", -2), "encoder.trial: no sweep s99"},
      {EmbedSpec("e", noop["id"], -2), "has no completed trial with a checkpoint"},
  };
  for (const auto& [spec, message] : cases) {
    json err = Call("POST", "/v1/sweeps", spec, 400);
    ASSERT_TRUE(err.is_object()) << spec;
    EXPECT_NE(err["error"]["message"].get<std::string>().find(message), std::string::npos)
        << err.dump();
  }
  EXPECT_EQ(Call("GET", "/v1/sweeps")["sweeps"].size(), 1u) << "nothing stored on error";

  // A trial that ran but keeps no checkpoint: the CLI shows the coordinator's reason.
  std::string output;
  EXPECT_EQ(testutil::RunCommand(testutil::LatticeBinary() + " checkpoint download " + noop_trial +
                                     " -o " + dir_.Join("n.pt") + " --data-dir " + DataDir(),
                                 &output),
            1);
  EXPECT_NE(output.find("error: cannot download the checkpoint of " + noop_trial + ": trial " +
                        noop_trial + " (completed) has no checkpoint"),
            std::string::npos)
      << output;
  EXPECT_EQ(testutil::RunCommand(testutil::LatticeBinary() + " checkpoints " + noop_trial +
                                     " --format json --data-dir " + DataDir(),
                                 &output),
            0)
      << output;
  EXPECT_EQ(json::parse(output, nullptr, false), json::array()) << output;
}

}  // namespace
}  // namespace lattice
