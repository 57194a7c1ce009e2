// Integration tests: real `mpirun -np 3 lattice cluster` processes, a real RocksDB data
// directory, real LibTorch trainings on scikit-learn's digits, driven over the HTTP API.
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "http/client.h"
#include "tests/integration/cluster_fixture.h"

namespace lattice {
namespace {

using nlohmann::json;

using testutil::ReadFile;

class ClusterTest : public testutil::ClusterFixture {};

// The 27-point grid of the README runs to the end; every point completes exactly once.
TEST_F(ClusterTest, DigitsGridRunsEveryPointExactlyOnce) {
  StartCluster();
  std::string spec = ReadFile(testutil::SourceDir() + "/examples/digits-probe-grid.yaml");
  ASSERT_FALSE(spec.empty());
  json sweep = Call("POST", "/v1/sweeps", spec, 201);
  ASSERT_EQ(sweep["num_trials"], 27);
  std::string id = sweep["id"];

  sweep = WaitForSweep(id, std::chrono::seconds(600));
  ASSERT_EQ(sweep["state"], "completed") << sweep.dump(2) << cluster_->Log();
  EXPECT_EQ(sweep["counts"]["completed"], 27);

  json trials = Call("GET", "/v1/sweeps/" + id + "/trials")["trials"];
  ASSERT_EQ(trials.size(), 27u);
  std::set<std::string> points;
  double best = 0;
  for (const auto& t : trials) {
    EXPECT_EQ(t["state"], "completed") << t.dump();
    EXPECT_EQ(t["attempts"], 1) << t.dump();
    EXPECT_EQ(t["epochs_done"], 30) << t.dump();
    points.insert(t["params"].dump());
    best = std::max(best, t["objective"].get<double>());
  }
  EXPECT_EQ(points.size(), 27u) << "grid points must be distinct";
  EXPECT_GE(best, 0.95);
  EXPECT_DOUBLE_EQ(sweep["best"]["objective"].get<double>(), best);

  // Per-epoch metrics were recorded for every epoch of the best trial.
  json metrics = Call("GET", "/v1/trials/" + sweep["best"]["trial"].get<std::string>() + "/metrics");
  EXPECT_EQ(metrics["epochs"].size(), 30u);
}

// SIGKILL of the whole MPI job mid-sweep, then a restart on the same data directory: the
// sweep finishes, every point done exactly once, no finished trial run again.
TEST_F(ClusterTest, SurvivesSigkillMidSweep) {
  StartCluster();
  std::string spec = ReadFile(testutil::SourceDir() + "/examples/digits-probe-grid.yaml");
  json sweep = Call("POST", "/v1/sweeps", spec, 201);
  std::string id = sweep["id"];

  // Wait until some trials finished and others are running, then kill everything.
  json before;
  ASSERT_TRUE(testutil::WaitFor(
      [&] {
        before = Call("GET", "/v1/sweeps/" + id);
        return before["counts"]["completed"].get<int>() >= 4 &&
               before["counts"]["running"].get<int>() >= 1;
      },
      std::chrono::seconds(300), std::chrono::milliseconds(100)))
      << before.dump(2);
  json trials_before = Call("GET", "/v1/sweeps/" + id + "/trials")["trials"];
  cluster_->Kill();

  std::map<std::string, json> finished_before;
  for (const auto& t : trials_before) {
    if (t["state"] == "completed") finished_before[t["id"]] = t;
  }
  ASSERT_GE(finished_before.size(), 4u);

  StartCluster();
  sweep = WaitForSweep(id, std::chrono::seconds(600));
  ASSERT_EQ(sweep["state"], "completed") << sweep.dump(2) << cluster_->Log();
  json trials = Call("GET", "/v1/sweeps/" + id + "/trials")["trials"];
  ASSERT_EQ(trials.size(), 27u);
  int reattempted = 0;
  for (const auto& t : trials) {
    EXPECT_EQ(t["state"], "completed") << t.dump();
    auto it = finished_before.find(t["id"]);
    if (it != finished_before.end()) {
      // Untouched by the restart: same attempt, same finish time, same result.
      EXPECT_EQ(t["attempts"], it->second["attempts"]);
      EXPECT_EQ(t["finished_ms"], it->second["finished_ms"]);
      EXPECT_EQ(t["objective"], it->second["objective"]);
    }
    reattempted += t["attempts"].get<int>() > 1;
  }
  EXPECT_GE(reattempted, 1) << "the trials running at the kill must have been re-queued";
  EXPECT_NE(cluster_->Log().find("re-queued"), std::string::npos);
}

// Bad specs are rejected with a message naming the key, and nothing is stored.
TEST_F(ClusterTest, RejectsBadSpecsAndStoresNothing) {
  StartCluster(2);
  json err = Call("POST", "/v1/sweeps",
                  "name: bad\nkind: noop\nsearch: {method: grid, parameters: {sleep_ms: []}}\n", 400);
  EXPECT_NE(err["error"]["message"].get<std::string>().find("sleep_ms"), std::string::npos)
      << err.dump();
  err = Call("POST", "/v1/sweeps", "name: bad\nkind: noop\nbogus_key: 1\n", 400);
  EXPECT_NE(err["error"]["message"].get<std::string>().find("bogus_key"), std::string::npos);
  EXPECT_EQ(Call("GET", "/v1/sweeps")["sweeps"].size(), 0u);

  // Without the token, mutating calls are refused.
  cli::HttpClient anonymous("127.0.0.1", cluster_->port());
  auto r = anonymous.Request("POST", "/v1/sweeps", "name: x\nkind: noop\n", "application/yaml");
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 401);
}

// A trial whose loss becomes NaN fails with that reason; the rest of the sweep goes on.
TEST_F(ClusterTest, NanTrialFailsAndSweepGoesOn) {
  StartCluster();
  std::string spec = R"(
name: nan-probe
kind: train
dataset: {format: csv, path: /usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz,
          standardize: true}
model: {type: mlp, hidden: 256}
train: {epochs: 30, optimizer: sgd}
search:
  method: grid
  parameters: {lr: [1.0e+6, 1.0e-2]}
max_attempts: 3
)";
  json sweep = Call("POST", "/v1/sweeps", spec, 201);
  sweep = WaitForSweep(sweep["id"], std::chrono::seconds(120));
  ASSERT_EQ(sweep["state"], "completed") << sweep.dump(2);
  EXPECT_EQ(sweep["counts"]["failed"], 1);
  EXPECT_EQ(sweep["counts"]["completed"], 1);
  json trials = Call("GET", "/v1/sweeps/" + sweep["id"].get<std::string>() + "/trials")["trials"];
  const json& bad = trials[0];
  EXPECT_EQ(bad["state"], "failed");
  EXPECT_EQ(bad["attempts"], 1) << "a NaN loss is permanent: no retry";
  EXPECT_NE(bad["error"].get<std::string>().find("NaN"), std::string::npos) << bad.dump();
}

// Workers are listed, and /metrics is Prometheus text with our families.
TEST_F(ClusterTest, WorkersAndMetricsEndpoints) {
  StartCluster();
  json workers;
  ASSERT_TRUE(testutil::WaitFor([&] {
    workers = Call("GET", "/v1/workers")["workers"];
    return workers.size() == 2 && workers[0]["state"] == "idle" && workers[1]["state"] == "idle";
  }, std::chrono::seconds(30)));
  EXPECT_EQ(workers[0]["rank"], 1);
  json sweep = Call("POST", "/v1/sweeps", "name: noops\nkind: noop\nsearch: {method: grid, parameters: {sleep_ms: [0, 1, 2, 3]}}\n", 201);
  sweep = WaitForSweep(sweep["id"], std::chrono::seconds(60));
  EXPECT_EQ(sweep["counts"]["completed"], 4);
  auto r = client_->Request("GET", "/metrics");
  ASSERT_OK(r);
  EXPECT_NE(r->body.find("lattice_trials_finished_total{state=\"completed\"} 4"), std::string::npos)
      << r->body;
  EXPECT_NE(r->body.find("lattice_queue_depth"), std::string::npos);
}

// `lattice top --once` against a live cluster: both workers, and the trial one of them runs.
TEST_F(ClusterTest, TopOnceShowsTheWorkersAndARunningTrial) {
  StartCluster();
  ASSERT_TRUE(testutil::WaitFor([&] {
    json workers = Call("GET", "/v1/workers")["workers"];
    return workers.size() == 2 && workers[0]["state"] == "idle" && workers[1]["state"] == "idle";
  }, std::chrono::seconds(30)));
  json sweep = Call("POST", "/v1/sweeps",
                    "name: slow\nkind: noop\nsearch: {method: grid, parameters: {sleep_ms: [60000]}}\n",
                    201);
  const std::string id = sweep["id"];
  ASSERT_TRUE(testutil::WaitFor([&] {
    return Call("GET", "/v1/sweeps/" + id)["counts"]["running"] == 1;
  }, std::chrono::seconds(30)));

  std::string out;
  ASSERT_EQ(testutil::RunCommand(testutil::LatticeBinary() + " top --once --port " +
                                     std::to_string(cluster_->port()),
                                 &out),
            0)
      << out;
  EXPECT_NE(out.find("workers 2 (1 idle, 1 busy, 0 lost)"), std::string::npos) << out;
  EXPECT_NE(out.find("queue 0"), std::string::npos) << out;
  const size_t running = out.find("RUNNING TRIALS\n");
  ASSERT_NE(running, std::string::npos) << out;
  const std::string trials = out.substr(running);
  EXPECT_NE(trials.find("\n" + id + "-t0  " + id + " "), std::string::npos) << out;
  const std::string workers = out.substr(0, running);
  EXPECT_NE(workers.find("busy"), std::string::npos) << out;
  EXPECT_NE(workers.find(id + "-t0"), std::string::npos) << out;
  Call("POST", "/v1/sweeps/" + id + "/cancel");
}

}  // namespace
}  // namespace lattice

namespace lattice {
namespace {

// A real Prometheus server scrapes the coordinator's /metrics and sees the trials finish.
TEST_F(ClusterTest, PrometheusScrapesMetrics) {
  std::string out;
  if (testutil::RunCommand("command -v prometheus", &out) != 0) {
    GTEST_SKIP() << "prometheus is not installed (scripts/setup.sh installs it)";
  }
  // The shipped alert rules are valid.
  ASSERT_EQ(testutil::RunCommand(
                "promtool check rules " + testutil::SourceDir() + "/deploy/prometheus/alerts.yml", &out),
            0)
      << out;
  StartCluster();
  json sweep = Call("POST", "/v1/sweeps",
                    "name: scraped\nkind: noop\nsearch: {method: grid, parameters: {seed: [1, 2, 3]}}\n", 201);
  ASSERT_EQ(WaitForSweep(sweep["id"], std::chrono::seconds(60))["state"], "completed");

  int prom_port = 19090 + static_cast<int>(getpid() % 500);
  std::string config = dir_.Join("prometheus.yml");
  {
    std::ofstream cfg(config);
    cfg << "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: lattice\n"
        << "    static_configs: [{targets: ['127.0.0.1:" << cluster_->port() << "']}]\n";
  }
  std::string cmd = "prometheus --config.file=" + config + " --storage.tsdb.path=" +
                    dir_.Join("tsdb") + " --web.listen-address=127.0.0.1:" +
                    std::to_string(prom_port) + " > " + dir_.Join("prometheus.log") +
                    " 2>&1 & echo $!";
  ASSERT_EQ(testutil::RunCommand(cmd, &out), 0);
  int prom_pid = std::stoi(out);
  cli::HttpClient prom("127.0.0.1", static_cast<uint16_t>(prom_port));
  double value = -1;
  bool seen = testutil::WaitFor(
      [&] {
        auto r = prom.Request("GET",
                              "/api/v1/query?query=lattice_trials_finished_total%7Bstate%3D%22completed%22%7D");
        if (!r.ok() || r->status != 200) return false;
        json body = json::parse(r->body, nullptr, false);
        if (!body.is_object() || body["data"]["result"].empty()) return false;
        value = std::stod(body["data"]["result"][0]["value"][1].get<std::string>());
        return value >= 3;
      },
      std::chrono::seconds(60), std::chrono::milliseconds(500));
  kill(prom_pid, SIGTERM);
  EXPECT_TRUE(seen) << "Prometheus never reported the 3 completed trials (last value " << value
                    << ")";
  EXPECT_EQ(value, 3);
}

}  // namespace
}  // namespace lattice
