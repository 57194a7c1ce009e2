// Worker faults on a real `mpirun --enable-recovery` cluster: a worker rank SIGKILLed
// mid-sweep, a task that segfaults its task process, a worker SIGSTOPped past the timeout.
// In each case the coordinator and the other worker carry on, and every grid point
// completes exactly once.
#include <signal.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/integration/cluster_fixture.h"

namespace lattice {
namespace {

using nlohmann::json;

constexpr int kTimeoutMs = 5000;  // heartbeats every 1 s: room for a loaded machine

class FaultTest : public testutil::ClusterFixture {
 protected:
  void StartFastCluster() {
    StartCluster(3, {"--worker-timeout-ms", std::to_string(kTimeoutMs)});
  }

  static std::string NoopGrid(const std::string& name, int points, int sleep_ms,
                              const std::string& extra = "") {
    std::string seeds;
    for (int i = 0; i < points; ++i) seeds += (i ? ", " : "") + std::to_string(i);
    return "name: " + name + "\nkind: noop\nsleep_ms: " + std::to_string(sleep_ms) + "\n" + extra +
           "max_attempts: 3\nsearch: {method: grid, parameters: {seed: [" + seeds + "]}}\n";
  }

  json Worker(int rank) {
    const json workers = Call("GET", "/v1/workers");  // outlives the loop
    for (const auto& w : workers["workers"]) {
      if (w["rank"] == rank) return w;
    }
    ADD_FAILURE() << "no worker " << rank;
    return json();
  }

  // Waits until worker `rank` runs a trial (and `also` holds); returns its view, null on
  // timeout (the caller's checks then fail).
  json WaitUntilBusy(int rank, const std::function<bool()>& also = [] { return true; }) {
    json w;
    const bool busy = testutil::WaitFor(
        [&] {
          w = Worker(rank);
          return w["state"] == "busy" && also();
        },
        std::chrono::seconds(60), std::chrono::milliseconds(20));
    EXPECT_TRUE(busy) << "worker " << rank << " never busy: " << w.dump();
    return busy ? w : json();
  }

  // Every trial completed, once: `points` trials, none left in another state.
  void ExpectEachPointCompletedOnce(const std::string& sweep, int points) {
    json s = WaitForSweep(sweep, std::chrono::seconds(300));
    ASSERT_EQ(s["state"], "completed") << s.dump(2) << cluster_->Log();
    EXPECT_EQ(s["counts"]["completed"], points) << s.dump(2);
    json trials = Call("GET", "/v1/sweeps/" + sweep + "/trials")["trials"];
    ASSERT_EQ(trials.size(), static_cast<size_t>(points));
    for (const auto& t : trials) EXPECT_EQ(t["state"], "completed") << t.dump();
  }
};

TEST_F(FaultTest, SigkillOfOneWorkerRankCostsOnlyItsAttempt) {
  StartFastCluster();
  json sweep = Call("POST", "/v1/sweeps", NoopGrid("killed-rank", 16, 400), 201);
  const std::string id = sweep["id"];
  json w2 = WaitUntilBusy(2, [&] {
    return Call("GET", "/v1/sweeps/" + id)["counts"]["completed"] >= 2;
  });
  ASSERT_TRUE(w2.is_object());
  const int pid = w2["pid"];
  ASSERT_GT(pid, 0);
  ASSERT_EQ(kill(pid, SIGKILL), 0);

  ExpectEachPointCompletedOnce(id, 16);
  EXPECT_EQ(Worker(2)["state"], "lost");
  EXPECT_NE(Worker(2)["lost_reason"].get<std::string>().find("no message for"), std::string::npos);
  EXPECT_NE(Worker(1)["state"], "lost");
  // The coordinator and worker 1 keep working after the loss.
  json after = Call("POST", "/v1/sweeps", NoopGrid("after-the-loss", 3, 10), 201);
  ExpectEachPointCompletedOnce(after["id"], 3);
}

TEST_F(FaultTest, SegfaultingTaskFailsOnlyThatAttempt) {
  StartFastCluster();
  const std::string marker = dir_.Join("crashed-once");
  json sweep = Call("POST", "/v1/sweeps",
                    NoopGrid("segfault", 4, 50,
                             "crash: {signal: SIGSEGV, once_file: " + marker + "}\n"),
                    201);
  const std::string id = sweep["id"];
  ExpectEachPointCompletedOnce(id, 4);
  int retried = 0;
  const json trials = Call("GET", "/v1/sweeps/" + id + "/trials");
  for (const auto& t : trials["trials"]) {
    retried += t["attempts"].get<int>() == 2;
    EXPECT_LE(t["attempts"].get<int>(), 2) << t.dump();
  }
  EXPECT_EQ(retried, 1) << "exactly one task crashed its process";
  int restarts = 0;
  std::string fault;
  for (int rank : {1, 2}) {
    json w = Worker(rank);
    EXPECT_NE(w["state"], "lost") << w.dump();
    restarts += w["task_restarts"].get<int>();
    if (w["fault"].is_string()) fault = w["fault"];
  }
  EXPECT_EQ(restarts, 1);
  EXPECT_NE(fault.find("killed by signal 11"), std::string::npos) << fault;
  std::string out;
  ASSERT_EQ(testutil::RunCommand(testutil::LatticeBinary() + " workers --data-dir " + DataDir(), &out), 0)
      << out;
  EXPECT_NE(out.find("killed by signal 11"), std::string::npos) << out;
}

TEST_F(FaultTest, SigstoppedWorkerIsLostAndItsLateResultIgnored) {
  StartFastCluster();
  json sweep = Call("POST", "/v1/sweeps", NoopGrid("stopped", 6, 1500), 201);
  const std::string id = sweep["id"];
  json w2 = WaitUntilBusy(2);
  ASSERT_TRUE(w2.is_object());
  const int pid = w2["pid"];
  const std::string stopped_trial = w2["trial"];
  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  ASSERT_TRUE(testutil::WaitFor([&] { return Worker(2)["state"] == "lost"; },
                                std::chrono::seconds(30), std::chrono::milliseconds(100)));
  // Its trial runs again on worker 1 meanwhile; then the stopped one wakes up and reports
  // the attempt it finished, which must not count.
  ASSERT_EQ(kill(pid, SIGCONT), 0);
  ExpectEachPointCompletedOnce(id, 6);
  json t = Call("GET", "/v1/trials/" + stopped_trial);
  EXPECT_EQ(t["attempts"], 2) << t.dump() << cluster_->Log();
  json metrics = Call("GET", "/v1/sweeps/" + id);
  EXPECT_EQ(metrics["counts"]["completed"], 6);
  // Back from the dead, worker 2 takes work again.
  ASSERT_TRUE(testutil::WaitFor([&] { return Worker(2)["state"] != "lost"; },
                                std::chrono::seconds(30), std::chrono::milliseconds(100)))
      << cluster_->Log();
}

}  // namespace
}  // namespace lattice
