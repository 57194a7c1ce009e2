// Stopping a real `mpirun -np 3` cluster mid-sweep the way Slurm does before a requeue, a
// preemption or the time limit: a stop signal drains it — the running train trials write a
// step checkpoint of where they stand and are queued again without spending an attempt —
// and every process exits 0 within the grace period. A cluster started again on the same
// data directory completes the sweep: every grid point exactly once, the interrupted trials
// resumed from their checkpoints (not from epoch 1). Two ways to signal: SIGTERM to the
// coordinator alone (it drains the workers with Drain messages), and SIGUSR1 to mpirun,
// which forwards it to every rank at once, as Slurm signals every task of a step.
#include <signal.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/integration/cluster_fixture.h"

namespace lattice {
namespace {

using nlohmann::json;

constexpr char kDir[] = "/usr/share/datasets/fashion-mnist/";
constexpr int kGraceMs = 15000;
const std::set<double> kGrid = {1.0e-3, 2.0e-3, 3.0e-3, 4.0e-3};

// Four trials long enough to be caught mid-run on the two workers (125 steps per epoch); a
// step checkpoint every 50 steps. max_attempts 1: a preempted attempt must not count.
std::string TrainSpec() {
  return std::string("name: drain\nkind: train\nseed: 5\nmax_attempts: 1\ndataset:\n") +
         "  format: idx\n  images: " + kDir + "train-images-idx3-ubyte.gz\n" +
         "  labels: " + kDir + "train-labels-idx1-ubyte.gz\n" +
         "  scale: 0.00392156862745098\n  standardize: true\n  limit: 10000\n" +
         "model: {type: mlp, hidden: [256, 256]}\n"
         "train: {epochs: 6, batch_size: 64, threads: 1}\n"
         "checkpoint: {every_steps: 50, keep_last: 2}\n"
         "search:\n  method: grid\n  metric: {name: val_accuracy, goal: maximize}\n"
         "  parameters:\n    lr: [1.0e-3, 2.0e-3, 3.0e-3, 4.0e-3]\n";
}

class DrainTest : public testutil::ClusterFixture {
 protected:
  void StartDrainingCluster() { StartCluster(3, {"--drain-grace-ms", std::to_string(kGraceMs)}); }

  // Submits the sweep, waits until a trial has run at least 2 epochs, signals the cluster
  // with `stop`, checks the drain and the clean exit, restarts it and checks the sweep.
  void DrainAndResume(const std::function<void()>& stop) {
    StartDrainingCluster();
    json sweep = Call("POST", "/v1/sweeps", TrainSpec(), 201);
    const std::string id = sweep["id"];
    std::string caught;  // a trial with >= 2 epochs done when the signal goes out
    ASSERT_TRUE(testutil::WaitFor(
        [&] {
          json trials = Call("GET", "/v1/sweeps/" + id + "/trials")["trials"];
          for (const auto& t : trials) {
            if (t["state"] == "running" && t["epochs_done"].get<int>() >= 2) caught = t["id"];
          }
          return !caught.empty();
        },
        std::chrono::seconds(240), std::chrono::milliseconds(100)))
        << cluster_->Log();
    const auto signalled = std::chrono::steady_clock::now();
    stop();
    const std::optional<int> rc = cluster_->WaitForExit(kGraceMs + 15000);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - signalled).count();
    ASSERT_TRUE(rc.has_value()) << "still running " << seconds << " s after the signal\n"
                                << cluster_->Log();
    std::printf("[ info ] drained and exited in %.1f s (grace %d ms)\n", seconds, kGraceMs);
    EXPECT_EQ(*rc, 0) << cluster_->Log();
    const std::string stopped_log = cluster_->Log();
    // (With every rank signalled, a worker's preempted Result may beat the coordinator's own
    // signal: then fewer than 2 are still running when its drain starts.)
    EXPECT_NE(stopped_log.find("coordinator: stopping: draining "), std::string::npos)
        << stopped_log;
    EXPECT_NE(stopped_log.find("coordinator: drained in "), std::string::npos) << stopped_log;
    EXPECT_NE(stopped_log.find("trial " + caught + " attempt 1 preempted on "), std::string::npos)
        << stopped_log;
    EXPECT_EQ(stopped_log.find("drain grace period"), std::string::npos)
        << "every running trial reported within the grace period\n" << stopped_log;

    // The requeued job: the same data directory.
    StartDrainingCluster();
    json done = WaitForSweep(id, std::chrono::seconds(600));
    ASSERT_EQ(done["state"], "completed") << done.dump(2) << cluster_->Log();
    json trials = Call("GET", "/v1/sweeps/" + id + "/trials")["trials"];
    ASSERT_EQ(trials.size(), kGrid.size());
    std::set<double> seen;
    int preempted = 0;
    for (const auto& t : trials) {
      EXPECT_EQ(t["state"], "completed") << t.dump();
      seen.insert(t["params"]["lr"].get<double>());
      EXPECT_EQ(t["attempts"].get<int>() - t["preemptions"].get<int>(), 1)
          << "one attempt spent: " << t.dump();
      preempted += t["preemptions"].get<int>();
    }
    EXPECT_EQ(seen, kGrid) << "every grid point exactly once";
    EXPECT_EQ(preempted, 2) << "the two trials running at the signal";

    // The caught trial resumed from the checkpoint it wrote when drained: attempt 2 reports
    // no epoch before the third.
    const std::string log = cluster_->Log();
    const std::string resumed = "trial " + caught + " attempt 2 resumes from its checkpoint at step ";
    const size_t at = log.find(resumed);
    ASSERT_NE(at, std::string::npos) << log;
    const int64_t step = std::stoll(log.substr(at + resumed.size()));
    EXPECT_GE(step, 2 * 125) << "at least the 2 epochs it had done";
    json epochs = Call("GET", "/v1/trials/" + caught + "/metrics")["epochs"];
    int first_resumed_epoch = 0, last_epoch = 0;
    for (const auto& e : epochs) {
      if (e["attempt"] == 2 && first_resumed_epoch == 0) first_resumed_epoch = e["epoch"];
      if (e["attempt"] == 2) last_epoch = e["epoch"];
    }
    std::printf("[ info ] %s: drained at step %lld, attempt 2 ran epochs %d..%d\n",
                caught.c_str(), static_cast<long long>(step), first_resumed_epoch, last_epoch);
    EXPECT_GE(first_resumed_epoch, 3) << epochs.dump();
    EXPECT_EQ(last_epoch, 6) << epochs.dump();
  }

  int CoordinatorPid() {
    std::ifstream in(DataDir() + "/coordinator.json");
    json info = json::parse(in, nullptr, false);
    return info.is_object() ? info.value("pid", 0) : 0;
  }
};

// `kill -TERM <coordinator>` (its pid is in coordinator.json): it drains the workers itself.
TEST_F(DrainTest, SigtermToTheCoordinatorDrainsAndARestartResumesFromTheCheckpoints) {
  DrainAndResume([&] {
    const int pid = CoordinatorPid();
    ASSERT_GT(pid, 0);
    ASSERT_EQ(kill(pid, SIGTERM), 0);
  });
}

// SIGUSR1 to mpirun reaches every rank at once, as Slurm's SIGTERM (requeue, scancel, time
// limit) or `--signal=USR1@<secs>` reaches every task of a step.
TEST_F(DrainTest, SignalToEveryRankAtOnceDrainsAndARestartResumesFromTheCheckpoints) {
  DrainAndResume([&] {
    ASSERT_GT(cluster_->pid(), 0);
    ASSERT_EQ(kill(cluster_->pid(), SIGUSR1), 0);
  });
}

}  // namespace
}  // namespace lattice
