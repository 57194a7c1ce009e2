// Metrics, dashboards and alerts against a REAL Prometheus (Debian's `prometheus` and
// `promtool`, installed by scripts/setup.sh): a `mpirun` cluster runs a small train sweep
// (with step checkpoints), an embed job (index built and searched), and Prometheus scrapes
// it every second. Then every panel query of every dashboard under deploy/grafana/dashboards
// and every alert expression of deploy/prometheus/alerts.yml is evaluated through
// Prometheus' HTTP API: each must evaluate without error, and each panel query must return
// data. promtool checks the configs, the rules and the cluster's /metrics text.
// A second test checks that the number of series does not grow with the number of trials.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "http/client.h"
#include "tests/integration/cluster_fixture.h"

namespace lattice {
namespace {

using nlohmann::json;
using testutil::ReadFile;

constexpr char kTrainImages[] = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";
constexpr char kDigits[] = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz";

// Values Grafana would put in for its built-in variables (the test's data span ~1 minute).
const std::map<std::string, std::string> kBuiltins = {
    {"$__rate_interval", "1m"}, {"$__interval", "15s"}, {"$__range", "5m"}};

std::string UrlEncode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

// A free TCP port on the loopback interface (bound, then released).
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// A Prometheus server on a temporary config and TSDB; killed in the destructor, whatever
// happened in the test.
class PrometheusServer {
 public:
  PrometheusServer(const std::string& dir, const std::string& config)
      : port_(FreePort()), log_(dir + "/prometheus.log") {
    const std::vector<std::string> args = {
        "prometheus", "--config.file=" + config, "--storage.tsdb.path=" + dir + "/tsdb",
        "--web.listen-address=127.0.0.1:" + std::to_string(port_), "--log.level=warn"};
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);
      FILE* log = std::fopen(log_.c_str(), "a");
      if (log != nullptr) {
        dup2(fileno(log), 1);
        dup2(fileno(log), 2);
      }
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execvp("prometheus", argv.data());
      _exit(127);
    }
    client_ = std::make_unique<cli::HttpClient>("127.0.0.1", static_cast<uint16_t>(port_));
  }
  ~PrometheusServer() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 250; ++i) {  // 5 s, then SIGKILL
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  PrometheusServer(const PrometheusServer&) = delete;
  PrometheusServer& operator=(const PrometheusServer&) = delete;

  bool started() const { return pid_ > 0 && port_ > 0; }
  std::string Log() const { return ReadFile(log_); }

  bool WaitReady(std::chrono::seconds timeout) {
    return testutil::WaitFor(
        [&] {
          auto r = client_->Request("GET", "/-/ready");
          return r.ok() && r->status == 200;
        },
        timeout, std::chrono::milliseconds(200));
  }

  // GET `path` and its JSON body ({"status": "success"|"error", ...}); null on a transport
  // error.
  json Get(const std::string& path) {
    auto r = client_->Request("GET", path);
    if (!r.ok()) return json();
    return json::parse(r->body, nullptr, false);
  }
  json Query(const std::string& promql) { return Get("/api/v1/query?query=" + UrlEncode(promql)); }

  // The value of a query that yields one sample; NaN when it yields none.
  double Value(const std::string& promql) {
    json r = Query(promql);
    if (r.value("status", "") != "success" || r["data"]["result"].empty()) return std::nan("");
    return std::stod(r["data"]["result"][0]["value"][1].get<std::string>());
  }

 private:
  int port_ = 0;
  std::string log_;
  pid_t pid_ = -1;
  std::unique_ptr<cli::HttpClient> client_;
};

// One expression to check: where it comes from, and the PromQL.
struct Expr {
  std::string where;
  std::string promql;
};

// Every panel query of a dashboard (rows' nested panels too), Grafana variables replaced:
// a template variable by its "All" value (allValue) or its current value, built-ins by
// kBuiltins.
std::vector<Expr> PanelQueries(const std::string& path) {
  json dash = json::parse(ReadFile(path));
  std::map<std::string, std::string> vars;
  for (const json& v : dash["templating"]["list"]) {
    std::string value = v.value("allValue", "");
    if (value.empty() && v.contains("current") && v["current"].contains("value") &&
        v["current"]["value"].is_string()) {
      value = v["current"]["value"].get<std::string>();
    }
    vars["$" + v["name"].get<std::string>()] = value;
    vars["${" + v["name"].get<std::string>() + "}"] = value;
  }
  for (const auto& [k, v] : kBuiltins) vars[k] = v;
  std::vector<Expr> out;
  std::vector<json> panels(dash["panels"].begin(), dash["panels"].end());
  for (size_t i = 0; i < panels.size(); ++i) {
    const json p = panels[i];
    if (p.contains("panels")) panels.insert(panels.end(), p["panels"].begin(), p["panels"].end());
    if (!p.contains("targets")) continue;
    for (const json& t : p["targets"]) {
      std::string e = t.value("expr", "");
      if (e.empty()) continue;
      // Longest names first, so that $rank never eats part of $ranks (and ${x} before $x).
      std::vector<std::pair<std::string, std::string>> by_length(vars.begin(), vars.end());
      std::sort(by_length.begin(), by_length.end(),
                [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
      for (const auto& [name, value] : by_length) {
        for (size_t at = e.find(name); at != std::string::npos; at = e.find(name, at + value.size())) {
          e.replace(at, name.size(), value);
        }
      }
      out.push_back({std::filesystem::path(path).filename().string() + " / " +
                         p.value("title", "?") + " / " + t.value("refId", "?"),
                     e});
    }
  }
  return out;
}

std::vector<std::string> Dashboards() {
  std::vector<std::string> out;
  for (const auto& e :
       std::filesystem::directory_iterator(testutil::SourceDir() + "/deploy/grafana/dashboards")) {
    if (e.path().extension() == ".json") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<Expr> AlertExpressions(const std::string& path) {
  std::vector<Expr> out;
  YAML::Node doc = YAML::LoadFile(path);
  for (const auto& group : doc["groups"]) {
    for (const auto& rule : group["rules"]) {
      const std::string name = rule["alert"] ? rule["alert"].as<std::string>()
                                             : rule["record"].as<std::string>();
      out.push_back({"alerts.yml / " + name, rule["expr"].as<std::string>()});
    }
  }
  return out;
}

// The series of a /metrics text: "name{labels}" of every sample line.
std::set<std::string> Series(const std::string& text) {
  std::set<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    out.insert(line.substr(0, line.rfind(' ')));
  }
  return out;
}

class MetricsTest : public testutil::ClusterFixture {
 protected:
  std::string Metrics() {
    auto r = client_->Request("GET", "/metrics");
    EXPECT_TRUE(r.ok() && r->status == 200);
    return r.ok() ? r->body : "";
  }

  // Runs `spec` to the end; expects it to complete.
  json RunSweep(const std::string& spec, std::chrono::seconds timeout) {
    json sweep = Call("POST", "/v1/sweeps", spec, 201);
    if (!sweep.contains("id")) return sweep;
    sweep = WaitForSweep(sweep["id"], timeout);
    EXPECT_EQ(sweep["state"], "completed") << sweep.dump(2) << cluster_->Log();
    return sweep;
  }
};

// Needs the prometheus binaries and the Fashion-MNIST package (scripts/setup.sh).
bool HaveTools(std::string* why) {
  std::string out;
  for (const char* tool : {"prometheus", "promtool"}) {
    if (testutil::RunCommand(std::string("command -v ") + tool, &out) != 0) {
      *why = std::string(tool) + " is not installed (scripts/setup.sh installs it)";
      return false;
    }
  }
  if (!std::filesystem::exists(kTrainImages) || !std::filesystem::exists(kDigits)) {
    *why = "the Fashion-MNIST / digits data sets are missing (scripts/setup.sh)";
    return false;
  }
  return true;
}

TEST_F(MetricsTest, DashboardsAndAlertsEvaluateOnRealPrometheus) {
  std::string why;
  if (!HaveTools(&why)) GTEST_SKIP() << why;
  const std::string alerts = testutil::SourceDir() + "/deploy/prometheus/alerts.yml";
  std::string out;
  ASSERT_EQ(testutil::RunCommand("promtool check rules " + alerts, &out), 0) << out;
  ASSERT_EQ(testutil::RunCommand("promtool check config " + testutil::SourceDir() +
                                     "/deploy/prometheus/prometheus.yml",
                                 &out),
            0)
      << out;

  StartCluster();
  const std::string config = dir_.Join("prometheus.yml");
  {
    std::ofstream cfg(config);
    cfg << "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        << "rule_files: ['" << alerts << "']\n"
        << "scrape_configs:\n"
        << "  - job_name: lattice-coordinator\n"
        << "    static_configs: [{targets: ['127.0.0.1:" << cluster_->port() << "']}]\n";
  }
  ASSERT_EQ(testutil::RunCommand("promtool check config " + config, &out), 0) << out;
  PrometheusServer prom(dir_.path(), config);
  ASSERT_TRUE(prom.started());
  ASSERT_TRUE(prom.WaitReady(std::chrono::seconds(60))) << prom.Log();

  // A small train sweep with step checkpoints: samples, epochs, checkpoint bytes.
  constexpr int kTrials = 2, kEpochs = 3;
  json train = RunSweep(std::string(R"(
name: metrics-train
kind: train
dataset: {format: csv, path: )") + kDigits + R"(, standardize: true}
model: {type: mlp, hidden: [32]}
train: {epochs: 3, batch_size: 64}
checkpoint: {every_steps: 10, keep_last: 1}
search: {method: grid, parameters: {lr: [1.0e-3, 3.0e-3]}}
)",
                        std::chrono::seconds(180));
  ASSERT_EQ(train["counts"]["completed"], kTrials) << train.dump(2);
  // Every trial's results carry its peak resident memory.
  json trials = Call("GET", "/v1/sweeps/" + train["id"].get<std::string>() + "/trials")["trials"];
  ASSERT_EQ(trials.size(), static_cast<size_t>(kTrials)) << trials.dump(2);
  for (const json& t : trials) {
    const double peak = t["metrics"].value("peak_rss_bytes", 0.0);
    EXPECT_GT(peak, 1e6) << t.dump(2);
    EXPECT_LT(peak, 64e9) << t.dump(2);
  }

  // An embed job: 4,000 rows in 4 shards, a flat index, then searches.
  constexpr int kRows = 4000;
  json embed = RunSweep(std::string(R"(
name: metrics-embed
kind: embed
encoder: {type: flatten}
corpus: {format: idx, images: )") + kTrainImages + R"(, limit: 4000}
batch_size: 500
shard_size: 1000
index: {name: metrics-idx, type: flat, metric: l2, params: {}}
)",
                        std::chrono::seconds(180));
  ASSERT_EQ(embed["counts"]["completed"], 4) << embed.dump(2);
  for (int i = 0; i < 20; ++i) {
    json hits = Call("POST", "/v1/indexes/metrics-idx/search",
                     json{{"items", {i}}, {"k", 5}}.dump(), 200, "application/json");
    ASSERT_TRUE(hits.contains("results")) << hits.dump();
  }

  // Prometheus has seen all of it (a few scrapes after the last change).
  const std::string metrics_now = Metrics();
  ASSERT_TRUE(testutil::WaitFor(
      [&] {
        return prom.Value("sum(lattice_items_total)") == kRows &&
               prom.Value("sum(lattice_index_queries_total)") >= 20 &&
               prom.Value("sum(lattice_index_build_seconds_count)") == 1;
      },
      std::chrono::seconds(60), std::chrono::milliseconds(500)))
      << "Prometheus did not see the embed job; /metrics:\n" << metrics_now << prom.Log();
  std::this_thread::sleep_for(std::chrono::seconds(3));  // a few more scrapes

  // Throughput counters: per epoch the same number of training rows, on every trial.
  const double samples = prom.Value(R"(sum(lattice_samples_total{kind="train"}))");
  ASSERT_GT(samples, 0);
  const double per_epoch = samples / (kTrials * kEpochs);
  EXPECT_EQ(per_epoch, std::floor(per_epoch)) << samples;
  EXPECT_GT(per_epoch, 1000);  // digits: 1,797 rows, 20 % held out for validation
  EXPECT_LT(per_epoch, 1797);
  EXPECT_EQ(prom.Value(R"(sum(lattice_samples_total{kind="distill"}))"), 0);
  EXPECT_GT(prom.Value("sum(lattice_checkpoint_written_bytes_total)"), 0);
  EXPECT_GT(prom.Value("sum(lattice_checkpoint_write_seconds_count)"), 0);
  EXPECT_GT(prom.Value("max(lattice_trial_peak_rss_bytes)"), 0);
  // Per-worker memory: RSS from the heartbeats; VRAM present and 0 on these CPU workers.
  for (const char* rank : {"1", "2"}) {
    const std::string r = std::string("{rank=\"") + rank + "\"}";
    EXPECT_GT(prom.Value("lattice_worker_rss_bytes" + r), 1e6) << rank;
    EXPECT_EQ(prom.Value("lattice_worker_vram_bytes" + r), 0) << rank;
    EXPECT_EQ(prom.Value("lattice_worker_vram_total_bytes" + r), 0) << rank;
    EXPECT_EQ(prom.Value("lattice_worker_up" + r), 1) << rank;
  }
  // The rank variable of the dashboards has values.
  json ranks = prom.Get("/api/v1/label/rank/values?match[]=lattice_worker_up");
  EXPECT_EQ(ranks["data"], json::array({"1", "2"})) << ranks.dump();

  // Every panel query of every dashboard evaluates and has data.
  const std::vector<std::string> dashboards = Dashboards();
  ASSERT_GE(dashboards.size(), 5u);
  size_t checked = 0;
  for (const std::string& path : dashboards) {
    const std::vector<Expr> queries = PanelQueries(path);
    EXPECT_FALSE(queries.empty()) << path;
    for (const Expr& q : queries) {
      ++checked;
      EXPECT_EQ(q.promql.find('$'), std::string::npos) << q.where << ": unreplaced variable in " << q.promql;
      json r = prom.Query(q.promql);
      ASSERT_TRUE(r.is_object()) << q.where;
      EXPECT_EQ(r.value("status", ""), "success") << q.where << ": " << q.promql << "\n" << r.dump();
      EXPECT_FALSE(r["data"]["result"].empty()) << q.where << ": no data for " << q.promql;
    }
  }
  std::printf("[ info ] %zu panel queries of %zu dashboards evaluated\n", checked, dashboards.size());

  // Every alert expression evaluates (an alert that does not fire returns nothing).
  for (const Expr& a : AlertExpressions(alerts)) {
    json r = prom.Query(a.promql);
    ASSERT_TRUE(r.is_object()) << a.where;
    EXPECT_EQ(r.value("status", ""), "success") << a.where << ": " << a.promql << "\n" << r.dump();
  }
  // And Prometheus' own rule evaluation (every second here) reports no error.
  json rules;
  ASSERT_TRUE(testutil::WaitFor(
      [&] {
        rules = prom.Get("/api/v1/rules");
        if (rules.value("status", "") != "success") return false;
        for (const json& g : rules["data"]["groups"]) {
          for (const json& r : g["rules"]) {
            if (r.value("health", "") != "ok") return false;
          }
        }
        return !rules["data"]["groups"].empty();
      },
      std::chrono::seconds(20), std::chrono::milliseconds(500)))
      << rules.dump(2);

  // promtool lints the exposition text.
  const std::string scraped = dir_.Join("metrics.txt");
  {
    std::ofstream f(scraped);
    f << Metrics();
  }
  EXPECT_EQ(testutil::RunCommand("promtool check metrics < " + scraped, &out), 0) << out;
}

// The number of series depends on the cluster, not on how many trials ran.
TEST_F(MetricsTest, SeriesAreBoundedByTheClusterNotTheTrials) {
  StartCluster();
  auto noops = [&](int n) {
    return "name: noops-" + std::to_string(n) + "\nkind: noop\nsearch: {method: random, max_trials: " +
           std::to_string(n) + ", parameters: {sleep_ms: [0]}}\n";
  };
  json first = RunSweep(noops(3), std::chrono::seconds(60));
  ASSERT_EQ(first["counts"]["completed"], 3);
  const std::set<std::string> after_few = Series(Metrics());
  json many = RunSweep(noops(1000), std::chrono::seconds(120));
  ASSERT_EQ(many["counts"]["completed"], 1000);
  const std::string text = Metrics();
  const std::set<std::string> after_many = Series(text);
  EXPECT_EQ(after_many.size(), after_few.size());
  EXPECT_EQ(after_many, after_few);
  EXPECT_NE(text.find("lattice_trials_finished_total{state=\"completed\"} 1003"), std::string::npos)
      << text;
  std::printf("[ info ] %zu series after 3 and after 1,003 trials\n", after_many.size());
}

}  // namespace
}  // namespace lattice
