// Multi-worker trials (resources.workers_per_trial) on real `mpirun` clusters:
//   - a 2-worker data-parallel train trial ends with the metrics and weights of the same
//     trial on one worker (same global batch and seed), within float tolerance;
//   - on 5 ranks (4 workers), a sweep mix of k = 1, 2 and 4 completes, no worker is ever
//     given a second task (a worker refuses a gang task while it holds another: that would
//     show as a failed attempt), and the k = 4 trials are not starved by the k = 1 stream;
//   - SIGKILL of the cluster during a gang trial: after a restart it resumes from its step
//     checkpoint on a fresh gang.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include "tests/integration/cluster_fixture.h"

namespace lattice {
namespace {

using nlohmann::json;

class GangTest : public testutil::ClusterFixture {
 protected:
  json Submit(const std::string& spec) { return Call("POST", "/v1/sweeps", spec, 201); }

  json Trials(const json& sweep) {
    return Call("GET", "/v1/sweeps/" + sweep["id"].get<std::string>() + "/trials")["trials"];
  }

  // The largest absolute difference between the final weights of two trials (Debian's
  // python3-torch loads the archives); -1 when it cannot tell.
  double WeightDiff(const std::string& a, const std::string& b) {
    {
      std::ofstream script(dir_.Join("diff.py"));
      script << "import sys, torch\n"
                "a = torch.jit.load(sys.argv[1]).state_dict()\n"
                "b = torch.jit.load(sys.argv[2]).state_dict()\n"
                "assert a.keys() == b.keys(), (a.keys(), b.keys())\n"
                "assert max(a[k].abs().max().item() for k in a) > 0, 'all zero'\n"
                "print('maxdiff %.9f' % max((a[k] - b[k]).abs().max().item() for k in a))\n";
    }
    std::string out;
    const int rc = testutil::RunCommand(
        "/usr/bin/python3 " + dir_.Join("diff.py") + " " + SaveArchive(a) + " " + SaveArchive(b),
        &out);
    std::printf("[ info ] weights %s vs %s: %s", a.c_str(), b.c_str(), out.c_str());
    const size_t at = out.find("maxdiff ");
    EXPECT_TRUE(rc == 0 && at != std::string::npos) << out;
    return rc == 0 && at != std::string::npos ? std::stod(out.substr(at + 8)) : -1;
  }

  // The final checkpoint of `trial`'s archive (after the header line), written to a file.
  std::string SaveArchive(const std::string& trial) {
    auto r = client_->Request("GET", "/v1/trials/" + trial + "/checkpoint");
    EXPECT_TRUE(r.ok() && r->status == 200) << trial;
    const std::string path = dir_.Join(trial + ".pt");
    std::ofstream out(path, std::ios::binary);
    if (r.ok()) out << r->body.substr(r->body.find('\n') + 1);
    return path;
  }
};

std::string TrainSpec(const std::string& name, int k, const std::string& extra = "",
                      int epochs = 2, int limit = 4000) {
  const std::string dir = "/usr/share/datasets/fashion-mnist/";
  return "name: " + name + "\nkind: train\nseed: 5\n" +
         "dataset: {format: idx, images: " + dir + "train-images-idx3-ubyte.gz, labels: " + dir +
         "train-labels-idx1-ubyte.gz, scale: 0.00392156862745098, standardize: true, limit: " +
         std::to_string(limit) + "}\n" +
         "model: {type: mlp, hidden: 64}\n"
         "train: {epochs: " + std::to_string(epochs) + ", batch_size: 64, lr: 0.003, threads: 1}\n" +
         extra + "resources: {workers_per_trial: " + std::to_string(k) + "}\n" +
         "search: {method: grid, parameters: {seed: [5]}}\n";
}

// Tolerances: the gang sums two half-batch gradients where one worker computes the whole
// batch's at once, so the float results differ in the last bits, and the differences may
// grow with every step. After 2 epochs (100 steps) of AdamW: weights within 1e-4 absolute
// (measured: 9.6e-7), val_loss and train_loss within 1e-4 relative (measured: equal to 7
// digits), val_accuracy within 2 of the 800 validation rows.
TEST_F(GangTest, TwoWorkerGangTrainsLikeOneWorker) {
  StartCluster(3);
  json one = WaitForSweep(Submit(TrainSpec("one", 1))["id"], std::chrono::seconds(300));
  ASSERT_EQ(one["state"], "completed") << one.dump(2) << cluster_->Log();
  json two = WaitForSweep(Submit(TrainSpec("two", 2))["id"], std::chrono::seconds(300));
  ASSERT_EQ(two["state"], "completed") << two.dump(2) << cluster_->Log();
  const json a = Trials(one)[0], b = Trials(two)[0];
  ASSERT_EQ(b["attempts"], 1);
  for (const char* metric : {"val_loss", "train_loss"}) {
    const double x = a["metrics"][metric], y = b["metrics"][metric];
    std::printf("[ info ] %s: one worker %.7f, gang of 2 %.7f\n", metric, x, y);
    EXPECT_NEAR(x, y, 1e-4 * std::fabs(x)) << metric;
  }
  EXPECT_NEAR(a["metrics"]["val_accuracy"].get<double>(),
              b["metrics"]["val_accuracy"].get<double>(), 2.0 / 800 + 1e-9);
  EXPECT_EQ(a["epochs_done"], b["epochs_done"]);
  // The gang stepped its optimizer sharded (a CPU gang: reduce-scatter, allgather).
  EXPECT_EQ(b["metrics"]["gang_optimizer_shards"], 2) << b.dump();
  EXPECT_GT(b["metrics"]["train_samples_per_second"].get<double>(), 0) << b.dump();

  const double maxdiff = WeightDiff(a["id"], b["id"]);
  EXPECT_GE(maxdiff, 0);
  EXPECT_LE(maxdiff, 1e-4);
}

std::string NoopSpec(const std::string& name, int trials, int k) {
  std::string seeds;
  for (int i = 0; i < trials; ++i) seeds += (i ? ", " : "") + std::to_string(i);
  return "name: " + name + "\nkind: noop\nsleep_ms: 150\nresources: {workers_per_trial: " +
         std::to_string(k) + "}\nsearch: {method: grid, parameters: {seed: [" + seeds + "]}}\n";
}

TEST_F(GangTest, MixedGangSizesOnFiveRanksCompleteWithoutStarvingTheLargest) {
  StartCluster(5);
  json too_big = Call("POST", "/v1/sweeps", NoopSpec("huge", 1, 5), 400);
  EXPECT_NE(too_big.dump().find("resources.workers_per_trial"), std::string::npos)
      << too_big.dump();
  // A long stream of one-worker trials first, then gangs of 2 and of 4.
  json singles = Submit(NoopSpec("singles", 48, 1));
  json pairs = Submit(NoopSpec("pairs", 4, 2));
  json quads = Submit(NoopSpec("quads", 3, 4));
  for (json* sweep : {&singles, &pairs, &quads}) {
    *sweep = WaitForSweep((*sweep)["id"], std::chrono::seconds(300));
    ASSERT_EQ((*sweep)["state"], "completed") << sweep->dump(2) << cluster_->Log();
    for (const json& t : Trials(*sweep)) {
      // Every attempt ran: a worker given a gang task while holding another refuses it,
      // which would be a second attempt here.
      EXPECT_EQ(t["attempts"], 1) << t.dump();
      EXPECT_EQ(t["state"], "completed") << t.dump();
    }
  }
  // Not starved: the gangs of 4 were done while one-worker trials were still waiting.
  EXPECT_LT(quads["finished_ms"].get<int64_t>(), singles["finished_ms"].get<int64_t>())
      << quads.dump() << singles.dump();
  std::printf("[ info ] quads done %lld ms before the singles\n",
              static_cast<long long>(singles["finished_ms"].get<int64_t>() -
                                     quads["finished_ms"].get<int64_t>()));
}

TEST_F(GangTest, KilledGangTrialResumesFromItsCheckpointOnAFreshGang) {
  StartCluster(3);
  json sweep = Submit(TrainSpec("resumed", 2, "checkpoint: {every_steps: 20, keep_last: 2}\n",
                                /*epochs=*/8, /*limit=*/6000));
  const std::string trial = sweep["id"].get<std::string>() + "-t0";
  json listed;
  ASSERT_TRUE(testutil::WaitFor(
      [&] {
        listed = Call("GET", "/v1/trials/" + trial + "/checkpoints")["checkpoints"];
        return listed.is_array() && !listed.empty();
      },
      std::chrono::seconds(180), std::chrono::milliseconds(10)))
      << listed.dump() << cluster_->Log();
  // Both workers ran it as one gang.
  json workers = Call("GET", "/v1/workers")["workers"];
  for (const json& w : workers) {
    if (w["trial"] == trial) {
      EXPECT_EQ(w["gang"], json::array({1, 2})) << workers.dump();
    }
  }
  cluster_->Kill();

  StartCluster(3);
  json done = WaitForSweep(sweep["id"], std::chrono::seconds(600));
  ASSERT_EQ(done["state"], "completed") << done.dump(2) << cluster_->Log();
  const std::string log = cluster_->Log();
  const std::string resumed = "trial " + trial + " attempt 2 resumes from its checkpoint at step ";
  ASSERT_NE(log.find(resumed), std::string::npos) << log;
  json t = Call("GET", "/v1/trials/" + trial);
  EXPECT_EQ(t["attempts"], 2);
  EXPECT_EQ(t["epochs_done"], 8) << t.dump();
  EXPECT_GT(t["metrics"]["val_accuracy"].get<double>(), 0.75) << t.dump();
  EXPECT_EQ(t["metrics"]["gang_optimizer_shards"], 2) << t.dump();  // checkpoints gathered

  // The same gang trial never interrupted ends with the same weights and validation
  // metrics (every member restored the same step checkpoint: optimizer, data order, RNGs).
  json again = WaitForSweep(
      Submit(TrainSpec("uninterrupted", 2, "checkpoint: {every_steps: 20, keep_last: 2}\n", 8,
                       6000))["id"],
      std::chrono::seconds(600));
  ASSERT_EQ(again["state"], "completed") << again.dump(2);
  const json u = Trials(again)[0];
  EXPECT_EQ(u["metrics"]["val_loss"], t["metrics"]["val_loss"]);
  EXPECT_EQ(u["metrics"]["val_accuracy"], t["metrics"]["val_accuracy"]);
  EXPECT_EQ(WeightDiff(u["id"], trial), 0.0);
}

}  // namespace
}  // namespace lattice
