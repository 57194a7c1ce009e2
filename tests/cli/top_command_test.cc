#include "cli/top_command.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sstream>
#include <string>

#include "http/server.h"
#include "tests/http/http_test_util.h"

namespace lattice::cli {
namespace {

using nlohmann::json;

constexpr int64_t kNow = 1700000100000;

TopSample Sample() {
  TopSample s;
  s.endpoint = "127.0.0.1:7070";
  s.now_ms = kNow;
  s.workers = {{"workers",
                {{{"rank", 1}, {"host", "node-a"}, {"state", "busy"}, {"trial", "s3-t4"},
                  {"rss_bytes", 512.0 * 1024 * 1024}, {"vram_bytes", 3.5 * 1024 * 1024 * 1024},
                  {"task_restarts", 2}, {"trials_done", 17}, {"last_seen_ms", kNow - 3000}},
                 {{"rank", 2}, {"host", "node-b"}, {"state", "idle"}, {"trial", nullptr},
                  {"rss_bytes", 0}, {"vram_bytes", 0}, {"task_restarts", 0}, {"trials_done", 9},
                  {"last_seen_ms", kNow - 1000}},
                 {{"rank", 3}, {"host", "node-c"}, {"state", "lost"}, {"trial", nullptr},
                  {"last_seen_ms", kNow - 120000}}}}};
  s.metrics = {{"lattice_queue_depth", 25},
               {"lattice_trials_running", 1},
               {"lattice_process_resident_memory_bytes", 181.0 * 1024 * 1024}};
  TopTrial t;
  t.trial = {{"id", "s3-t4"}, {"sweep", "s3"}, {"attempts", 2}, {"epochs_done", 3},
             {"started_ms", kNow - 95000}, {"config", {{"train", {{"epochs", 10}}}}}};
  t.worker = "w1";
  t.metric = "val_accuracy";
  t.last_epoch = {{"epoch", 3}, {"values", {{"train_loss", 0.31}, {"val_accuracy", 0.98061}}}};
  s.trials.push_back(t);
  s.throughput = 1.5;
  return s;
}

bool Has(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

// The line of `text` that starts with `prefix` ("" when none).
std::string LineStarting(const std::string& text, const std::string& prefix) {
  size_t at = 0;
  while (at < text.size()) {
    const size_t end = text.find('\n', at);
    const std::string line = text.substr(at, end == std::string::npos ? std::string::npos : end - at);
    if (line.rfind(prefix, 0) == 0) return line;
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return "";
}

TEST(TopFrameTest, HeaderHasClusterTotals) {
  const std::string frame = FormatTopFrame(Sample());
  EXPECT_EQ(frame.rfind("lattice top  127.0.0.1:7070", 0), 0u) << frame;
  const std::string totals = LineStarting(frame, "workers ");
  EXPECT_TRUE(Has(totals, "workers 3 (1 idle, 1 busy, 1 lost)")) << totals;
  EXPECT_TRUE(Has(totals, "queue 25")) << totals;
  EXPECT_TRUE(Has(totals, "running 1")) << totals;
  EXPECT_TRUE(Has(totals, "throughput 1.5 trials/s")) << totals;
  EXPECT_TRUE(Has(totals, "coordinator RSS 181 MiB")) << totals;
  EXPECT_FALSE(Has(frame, "error:"));
}

TEST(TopFrameTest, WorkersTableShowsStateTrialMemoryAndRestarts) {
  const std::string frame = FormatTopFrame(Sample());
  ASSERT_TRUE(Has(frame, "\nWORKERS\n")) << frame;
  const std::string header = LineStarting(frame, "RANK");
  for (const char* column : {"HOST", "STATE", "TRIAL", "RSS", "VRAM", "RESTARTS", "DONE", "LAST-SEEN"}) {
    EXPECT_TRUE(Has(header, column)) << column << " in " << header;
  }
  const std::string w1 = LineStarting(frame, "1 ");
  for (const char* cell : {"node-a", "busy", "s3-t4", "512 MiB", "3.5 GiB", "17", "3s ago"}) {
    EXPECT_TRUE(Has(w1, cell)) << cell << " in " << w1;
  }
  const std::string w3 = LineStarting(frame, "3 ");
  EXPECT_TRUE(Has(w3, "lost")) << w3;
  EXPECT_TRUE(Has(w3, "2m ago")) << w3;
}

TEST(TopFrameTest, RunningTrialsShowProgressLastMetricAndElapsed) {
  const std::string frame = FormatTopFrame(Sample());
  ASSERT_TRUE(Has(frame, "\nRUNNING TRIALS\n")) << frame;
  const std::string row = LineStarting(frame, "s3-t4");
  for (const char* cell : {"s3 ", "w1", "3/10", "val_accuracy=0.9806", "1m"}) {
    EXPECT_TRUE(Has(row, cell)) << cell << " in " << row;
  }

  // No sweep metric in the epoch: its first value; no epochs yet: "-".
  TopSample s = Sample();
  s.trials[0].metric = "bleu";
  EXPECT_TRUE(Has(LineStarting(FormatTopFrame(s), "s3-t4"), "train_loss=0.31"));
  s.trials[0].last_epoch = nullptr;
  s.trials[0].trial["config"] = json::object();
  s.trials[0].trial["epochs_done"] = 0;
  const std::string bare = LineStarting(FormatTopFrame(s), "s3-t4");
  EXPECT_FALSE(Has(bare, "=")) << bare;
  EXPECT_FALSE(Has(bare, "/10")) << bare;
}

TEST(TopFrameTest, EmptyClusterAndErrorsAndMissingFields) {
  TopSample s;
  s.endpoint = "h:1";
  s.error = "GET /metrics: HTTP 500";
  const std::string frame = FormatTopFrame(s);
  EXPECT_TRUE(Has(frame, "workers 0 (0 idle, 0 busy, 0 lost)")) << frame;
  EXPECT_TRUE(Has(frame, "queue -")) << frame;
  EXPECT_TRUE(Has(frame, "throughput -")) << frame;
  EXPECT_TRUE(Has(frame, "error: GET /metrics: HTTP 500")) << frame;
  EXPECT_TRUE(Has(frame, "RUNNING TRIALS\n(none)\n")) << frame;
}

TEST(TopFrameTest, PrometheusTextIsSummedPerMetricName) {
  const auto m = ParsePrometheusText(
      "# HELP lattice_trials_finished_total Trials finished\n"
      "# TYPE lattice_trials_finished_total counter\n"
      "lattice_trials_finished_total{state=\"completed\"} 180\n"
      "lattice_trials_finished_total{state=\"failed\"} 2\n"
      "lattice_queue_depth 25\n"
      "lattice_workers{state=\"idle\"} 1.5e1\n"
      "garbage\n"
      "broken{state=\"x\" 3\n");
  EXPECT_EQ(m.at("lattice_trials_finished_total"), 182);
  EXPECT_EQ(m.at("lattice_queue_depth"), 25);
  EXPECT_EQ(m.at("lattice_workers"), 15);
  EXPECT_EQ(m.count("garbage"), 0u);
  EXPECT_EQ(m.count("broken"), 0u);
}

TEST(TopFrameTest, BytesAreHumanSized) {
  EXPECT_EQ(FormatBytes(0), "-");
  EXPECT_EQ(FormatBytes(900), "900 B");
  EXPECT_EQ(FormatBytes(2048), "2.0 KiB");
  EXPECT_EQ(FormatBytes(181.0 * 1024 * 1024), "181 MiB");
  EXPECT_EQ(FormatBytes(1.25 * 1024 * 1024 * 1024), "1.2 GiB");
}

TEST(TopCommandTest, OnceReadsTheApiAndPrintsOneFrame) {
  auto router = std::make_shared<Router>();
  router->Add("GET", "/v1/workers", [](HttpRequest&) {
    return HttpResponse::Json(200, {{"workers", {{{"rank", 1}, {"host", "h1"}, {"state", "busy"},
                                                  {"trial", "s3-t4"}, {"last_seen_ms", 1}}}}});
  });
  router->Add("GET", "/metrics", [](HttpRequest&) {
    return HttpResponse::Text(200, "lattice_queue_depth 7\nlattice_trials_running 1\n");
  });
  router->Add("GET", "/v1/trials/{id}", [](HttpRequest&) {
    return HttpResponse::Json(200, {{"id", "s3-t4"}, {"sweep", "s3"}, {"attempts", 1},
                                    {"epochs_done", 2}, {"started_ms", 1}});
  });
  router->Add("GET", "/v1/trials/{id}/metrics", [](HttpRequest&) {
    return HttpResponse::Json(
        200, {{"epochs", {{{"epoch", 2}, {"values", {{"val_accuracy", 0.5}}}}}}});
  });
  router->Add("GET", "/v1/sweeps/{id}", [](HttpRequest&) {
    return HttpResponse::Json(200, {{"id", "s3"}, {"metric", "val_accuracy"}});
  });
  auto server = testing::StartLoopbackServer(router);
  ClientOptions options;
  options.port = server->port();
  TopArgs args;
  args.once = true;
  std::ostringstream out, err;
  CommandIo io{out, err, false};
  EXPECT_EQ(RunTop(options, args, io), 0) << err.str();
  const std::string frame = out.str();
  EXPECT_TRUE(Has(frame, "queue 7")) << frame;
  EXPECT_TRUE(Has(LineStarting(frame, "1 "), "h1")) << frame;
  EXPECT_TRUE(Has(LineStarting(frame, "s3-t4"), "val_accuracy=0.5")) << frame;
  EXPECT_FALSE(Has(frame, "\033[")) << "no screen clearing with --once";

  options.port = 1;  // nothing listens there
  EXPECT_EQ(RunTop(options, args, io), 1);
  EXPECT_TRUE(Has(err.str(), "cannot reach the coordinator")) << err.str();
}

}  // namespace
}  // namespace lattice::cli
