#include "cli/commands.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include <CLI/CLI.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "http/server.h"
#include "tests/http/http_test_util.h"
#include "tests/testutil/testutil.h"

namespace lattice::cli {
namespace {

using nlohmann::json;

json SweepJson(const std::string& state, int completed) {
  return {{"id", "s3"},
          {"name", "digits-probe-grid"},
          {"kind", "train"},
          {"state", state},
          {"metric", "val_accuracy"},
          {"maximize", true},
          {"num_trials", 3},
          {"created_ms", 1},
          {"message", state == "failed" ? "2 trials failed" : ""},
          {"counts",
           {{"queued", 3 - completed}, {"running", 0}, {"completed", completed},
            {"failed", 0}, {"cancelled", 0}}},
          {"best", completed ? json{{"trial", "s3-t1"}, {"objective", 0.97}} : json(nullptr)}};
}

// A fake coordinator: canned JSON for the client routes; the sweep completes after
// `polls_to_finish` GETs.
class FakeCoordinator {
 public:
  explicit FakeCoordinator(std::string final_state = "completed")
      : final_state_(std::move(final_state)) {
    auto router = std::make_shared<Router>();
    router->Add("POST", "/v1/sweeps", [this](HttpRequest& req) {
      std::lock_guard<std::mutex> lock(mu_);
      submitted_body_ = req.body;
      submitted_type_ = req.content_type;
      if (req.body.find("bad") != std::string::npos) {
        return HttpResponse::Error(400, "invalid_argument", "search.parameters.lr: must be > 0");
      }
      return HttpResponse::Json(201, SweepJson("running", 0));
    }, true);
    router->Add("GET", "/v1/sweeps", [](HttpRequest&) {
      return HttpResponse::Json(200, {{"sweeps", {SweepJson("running", 1)}}});
    });
    router->Add("GET", "/v1/sweeps/{id}", [this](HttpRequest& req) {
      if (req.path_params["id"] != "s3") return HttpResponse::Error(404, "not_found", "no sweep " + req.path_params["id"]);
      const int polls = ++polls_;
      return HttpResponse::Json(200, polls >= 3 ? SweepJson(final_state_, 3) : SweepJson("running", polls - 1));
    });
    router->Add("GET", "/v1/sweeps/{id}/trials", [](HttpRequest&) {
      json trials = json::array();
      for (int i = 0; i < 3; ++i) {
        trials.push_back({{"id", "s3-t" + std::to_string(i)}, {"index", i},
                          {"params", {{"lr", 0.1 * (i + 1)}}}, {"state", "completed"},
                          {"attempts", 1}, {"worker", 1}, {"metrics", json::object()},
                          {"objective", i == 1 ? 0.97 : 0.5 + i * 0.1}, {"epochs_done", 5},
                          {"error", ""}});
      }
      return HttpResponse::Json(200, {{"trials", trials}});
    });
    router->Add("POST", "/v1/sweeps/{id}/cancel", [](HttpRequest&) {
      return HttpResponse::Json(200, SweepJson("cancelled", 1));
    }, true);
    router->Add("GET", "/v1/workers", [](HttpRequest&) {
      return HttpResponse::Json(200, {{"workers", {{{"rank", 1}, {"host", "h"}, {"state", "idle"},
                                                    {"trial", nullptr}, {"last_seen_ms", 1}}}}});
    });
    router->SetToken("tok");
    server_ = testing::StartLoopbackServer(router);
  }

  uint16_t port() const { return server_->port(); }
  std::string submitted_body() { std::lock_guard<std::mutex> l(mu_); return submitted_body_; }
  std::string submitted_type() { std::lock_guard<std::mutex> l(mu_); return submitted_type_; }

 private:
  std::string final_state_;
  std::atomic<int> polls_{0};
  std::mutex mu_;
  std::string submitted_body_, submitted_type_;
  std::unique_ptr<HttpServer> server_;
};

class CommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.data_dir = dir_.path();
    options_.timeout_ms = 5000;
    std::ofstream(dir_.Join("token")) << "tok\n";
  }
  void UseServer(const FakeCoordinator& fake) { options_.port = fake.port(); }
  std::string WriteSpec(const std::string& name, const std::string& text) {
    std::ofstream(dir_.Join(name)) << text;
    return dir_.Join(name);
  }

  testutil::TempDir dir_;
  ClientOptions options_;
  std::ostringstream out_, err_;
  CommandIo io_{out_, err_, false};
};

TEST_F(CommandsTest, SubmitPostsTheRawSpec) {
  FakeCoordinator fake;
  UseServer(fake);
  SubmitArgs args;
  args.spec_path = WriteSpec("grid.yaml", "name: digits-probe-grid\n");
  EXPECT_EQ(RunSubmit(options_, args, io_), 0) << err_.str();
  EXPECT_EQ(out_.str(), "submitted sweep s3 (digits-probe-grid): 3 trials\n");
  EXPECT_EQ(fake.submitted_body(), "name: digits-probe-grid\n");
  EXPECT_EQ(fake.submitted_type(), "application/yaml");

  args.spec_path = WriteSpec("grid.json", "{\"name\": \"x\"}");
  EXPECT_EQ(RunSubmit(options_, args, io_), 0) << err_.str();
  EXPECT_EQ(fake.submitted_type(), "application/json");
}

TEST_F(CommandsTest, SubmitSendsTheSpecWithPathsResolvedAgainstItsDirectory) {
  FakeCoordinator fake;
  UseServer(fake);
  SubmitArgs args;
  std::filesystem::create_directories(dir_.Join("specs"));
  args.spec_path = WriteSpec("specs/grid.yaml", "name: g\n");
  std::string seen_text, seen_dir;
  args.resolve_paths = [&](const std::string& text, const std::string& dir) {
    seen_text = text;
    seen_dir = dir;
    return StatusOr<std::string>(std::string("{\"name\": \"resolved\"}"));
  };
  EXPECT_EQ(RunSubmit(options_, args, io_), 0) << err_.str();
  EXPECT_EQ(seen_text, "name: g\n");
  EXPECT_EQ(seen_dir, std::filesystem::path(dir_.Join("specs")).lexically_normal().string());
  EXPECT_EQ(fake.submitted_body(), "{\"name\": \"resolved\"}");
  EXPECT_EQ(fake.submitted_type(), "application/json");

  // A spec the resolver cannot read goes as written: the coordinator names the error.
  args.resolve_paths = [](const std::string&, const std::string&) {
    return StatusOr<std::string>(Status::InvalidArgument("spec: line 1, column 1: bad"));
  };
  EXPECT_EQ(RunSubmit(options_, args, io_), 0) << err_.str();
  EXPECT_EQ(fake.submitted_body(), "name: g\n");
  EXPECT_EQ(fake.submitted_type(), "application/yaml");
}

TEST_F(CommandsTest, SubmitHelpSaysPathsResolveAgainstTheSpecDirectory) {
  CLI::App app;
  int exit_code = 0;
  RegisterClientCommands(app, &exit_code);
  const std::string help = app.get_subcommand("submit")->help();
  EXPECT_NE(help.find("absolute against the directory of the spec file"), std::string::npos)
      << help;
}

TEST_F(CommandsTest, RejectedSpecExitsTwoWithTheServerMessage) {
  FakeCoordinator fake;
  UseServer(fake);
  SubmitArgs args;
  args.spec_path = WriteSpec("bad.yaml", "bad: spec\n");
  EXPECT_EQ(RunSubmit(options_, args, io_), 2);
  EXPECT_EQ(err_.str(), "error: search.parameters.lr: must be > 0\n");
}

TEST_F(CommandsTest, MissingTokenIsAClearError) {
  FakeCoordinator fake;
  UseServer(fake);
  options_.data_dir = dir_.Join("nowhere");
  SubmitArgs args;
  args.spec_path = WriteSpec("grid.yaml", "name: x\n");
  EXPECT_EQ(RunSubmit(options_, args, io_), 1);
  EXPECT_NE(err_.str().find("error: cannot read the API token at " + dir_.Join("nowhere/token")),
            std::string::npos)
      << err_.str();
  EXPECT_EQ(RunCancel(options_, "s3", io_), 1);
}

TEST_F(CommandsTest, SubmitWaitFollowsProgressAndPrintsTopTrials) {
  FakeCoordinator fake;
  UseServer(fake);
  SubmitArgs args;
  args.spec_path = WriteSpec("grid.yaml", "name: x\n");
  args.wait = true;
  args.poll_interval_s = 0.01;
  EXPECT_EQ(RunSubmit(options_, args, io_), 0) << err_.str();
  EXPECT_NE(err_.str().find("s3 digits-probe-grid: 0/3 done, 0 running, 0 failed\n"),
            std::string::npos)
      << err_.str();
  EXPECT_NE(err_.str().find("3/3 done, 0 running, 0 failed, best val_accuracy 0.97 (s3-t1)"),
            std::string::npos)
      << err_.str();
  EXPECT_NE(err_.str().find("sweep s3 completed\n"), std::string::npos) << err_.str();
  const std::string out = out_.str();
  const size_t t1 = out.find("s3-t1"), t2 = out.find("s3-t2"), t0 = out.find("s3-t0");
  ASSERT_NE(t0, std::string::npos) << out;
  EXPECT_LT(t1, t2);
  EXPECT_LT(t2, t0);
}

TEST_F(CommandsTest, SubmitWaitExitsOneWhenTheSweepFails) {
  FakeCoordinator fake("failed");
  UseServer(fake);
  SubmitArgs args;
  args.spec_path = WriteSpec("grid.yaml", "name: x\n");
  args.wait = true;
  args.poll_interval_s = 0.01;
  io_.err_is_tty = true;
  EXPECT_EQ(RunSubmit(options_, args, io_), 1);
  EXPECT_NE(err_.str().find("\r[" ), std::string::npos) << err_.str();
  EXPECT_NE(err_.str().find("sweep s3 failed: 2 trials failed\n"), std::string::npos)
      << err_.str();
}

TEST_F(CommandsTest, StatusTrialsCancelWorkers) {
  FakeCoordinator fake;
  UseServer(fake);
  EXPECT_EQ(RunStatus(options_, "", io_), 0);
  EXPECT_EQ(out_.str().rfind("ID  NAME", 0), 0u) << out_.str();
  out_.str("");
  EXPECT_EQ(RunStatus(options_, "s3", io_), 0);
  EXPECT_NE(out_.str().find("name:      digits-probe-grid"), std::string::npos) << out_.str();
  EXPECT_EQ(RunStatus(options_, "s9", io_), 1);
  EXPECT_EQ(err_.str(), "error: no sweep s9\n");

  out_.str("");
  TrialsArgs trials;
  trials.sweep = "s3";
  trials.format = "csv";
  trials.top = 1;
  EXPECT_EQ(RunTrials(options_, trials, io_), 0);
  EXPECT_EQ(out_.str(), "TRIAL,STATE,ATTEMPTS,lr,val_accuracy,EPOCHS,WORKER,ERROR\n"
                        "s3-t1,completed,1,0.2,0.97,5,1,\n");

  out_.str("");
  EXPECT_EQ(RunCancel(options_, "s3", io_), 0);
  EXPECT_EQ(out_.str(), "sweep s3: cancelled\n");

  out_.str("");
  EXPECT_EQ(RunWorkers(options_, io_), 0);
  EXPECT_EQ(out_.str().rfind("RANK  HOST  STATE  TRIAL  GANG  LAST-SEEN", 0), 0u) << out_.str();
  EXPECT_NE(out_.str().find("\n1     h     idle   -"), std::string::npos) << out_.str();
}

// --format json prints the API's arrays / objects (parsed back here); csv the table's cells.
TEST_F(CommandsTest, StatusAndWorkersInJsonAndCsv) {
  FakeCoordinator fake;
  UseServer(fake);
  EXPECT_EQ(RunStatus(options_, "", io_, "json"), 0) << err_.str();
  const json sweeps = json::parse(out_.str());
  ASSERT_TRUE(sweeps.is_array()) << out_.str();
  EXPECT_EQ(sweeps[0]["id"], "s3");
  out_.str("");
  EXPECT_EQ(RunStatus(options_, "s3", io_, "json"), 0);
  EXPECT_EQ(json::parse(out_.str())["name"], "digits-probe-grid");
  out_.str("");
  EXPECT_EQ(RunStatus(options_, "", io_, "csv"), 0);
  EXPECT_EQ(out_.str().rfind("ID,NAME,KIND,STATE,TRIALS,RUNNING,FAILED,BEST,AGE\ns3,", 0), 0u)
      << out_.str();
  out_.str("");
  EXPECT_EQ(RunWorkers(options_, io_, "json"), 0);
  const json workers = json::parse(out_.str());
  ASSERT_TRUE(workers.is_array()) << out_.str();
  EXPECT_EQ(workers[0]["rank"], 1);
  out_.str("");
  EXPECT_EQ(RunWorkers(options_, io_, "csv"), 0);
  EXPECT_EQ(out_.str().rfind("RANK,HOST,STATE,TRIAL,GANG,LAST-SEEN,RESTARTS,NOTE\n1,h,idle,-,-,", 0), 0u)
      << out_.str();
  EXPECT_EQ(RunWorkers(options_, io_, "yaml"), 1);
  EXPECT_NE(err_.str().find("--format must be table, csv or json"), std::string::npos);
}

TEST_F(CommandsTest, WatchFollowsASweepAndExitsWithItsOutcome) {
  FakeCoordinator fake("failed");
  UseServer(fake);
  EXPECT_EQ(RunWatch(options_, "s3", io_), 1);
  EXPECT_NE(err_.str().find("sweep s3 failed: 2 trials failed\n"), std::string::npos)
      << err_.str();
  FakeCoordinator done;
  UseServer(done);
  err_.str("");
  EXPECT_EQ(RunWatch(options_, "s3", io_), 0) << err_.str();
  EXPECT_NE(err_.str().find("sweep s3 completed\n"), std::string::npos) << err_.str();
  EXPECT_EQ(RunWatch(options_, "s9", io_), 1);
}

TEST(UnknownSubcommandTest, NamesTheWordAndTheCommands) {
  CLI::App app{"lattice"};
  app.require_subcommand(1);
  int exit_code = 0;
  RegisterClientCommands(app, &exit_code);
  CLI::App* index = app.add_subcommand("index", "indexes");
  index->require_subcommand(1);
  index->add_subcommand("list", "list");
  auto error = [&app](std::vector<const char*> args) {
    args.insert(args.begin(), "lattice");
    return UnknownSubcommandError(app, static_cast<int>(args.size()), args.data());
  };
  const std::string top = error({"sumbit", "x.yaml"});
  EXPECT_EQ(top.rfind("unknown command 'sumbit' (commands: submit, status, trials", 0), 0u) << top;
  EXPECT_EQ(error({"index", "lst"}), "unknown command 'index lst' (index commands: list)");
  EXPECT_EQ(error({"index", "list", "--port", "1"}), "");
  EXPECT_EQ(error({"trials", "s3"}), "");  // a positional argument
  EXPECT_EQ(error({"--help"}), "");
  EXPECT_EQ(error({}), "");
}

TEST_F(CommandsTest, TrialsReadsEveryPage) {
  // A coordinator that pages 2 trials at a time (GET /v1/sweeps/{id}/trials?after=).
  auto router = std::make_shared<Router>();
  router->Add("GET", "/v1/sweeps/{id}", [](HttpRequest&) {
    return HttpResponse::Json(200, SweepJson("completed", 3));
  });
  std::atomic<int> pages{0};
  router->Add("GET", "/v1/sweeps/{id}/trials", [&pages](HttpRequest& req) {
    ++pages;
    const int first = req.query.count("after") ? std::stoi(req.query["after"]) + 1 : 0;
    json trials = json::array();
    for (int i = first; i < std::min(first + 2, 5); ++i) {
      trials.push_back({{"id", "s3-t" + std::to_string(i)}, {"index", i}, {"state", "completed"},
                        {"objective", 0.1 * i}});
    }
    return HttpResponse::Json(200, {{"trials", trials},
                                    {"next_after", first + 2 < 5 ? json(first + 1) : json(nullptr)}});
  });
  auto server = testing::StartLoopbackServer(router);
  options_.port = server->port();
  TrialsArgs trials;
  trials.sweep = "s3";
  trials.format = "csv";
  EXPECT_EQ(RunTrials(options_, trials, io_), 0) << err_.str();
  EXPECT_EQ(pages.load(), 3);
  const std::string out = out_.str();
  for (int i = 0; i < 5; ++i) {
    const std::string id = "s3-t" + std::to_string(i) + ",";
    EXPECT_NE(out.find(id), std::string::npos) << id << " in " << out;
    EXPECT_EQ(out.find(id), out.rfind(id)) << id << " twice in " << out;
  }
  EXPECT_LT(out.find("s3-t4"), out.find("s3-t0")) << "sorted best first over all pages";
}

TEST_F(CommandsTest, UnreachableCoordinatorExitsOne) {
  options_.port = 1;  // nothing listens on a privileged port in the test environment
  EXPECT_EQ(RunWorkers(options_, io_), 1);
  EXPECT_EQ(err_.str(),
            "error: cannot reach the coordinator at 127.0.0.1:1: is `lattice cluster` running?\n");
}

TEST_F(CommandsTest, RegistersSubcommandsWithCommonOptions) {
  FakeCoordinator fake;
  CLI::App app{"lattice"};
  int exit_code = -1;
  RegisterClientCommands(app, &exit_code);
  for (const char* name : {"submit", "status", "trials", "cancel", "workers"}) {
    EXPECT_NO_THROW(app.get_subcommand(name)) << name;
  }
  const std::string port = std::to_string(fake.port());
  app.parse("trials s3 --top 2 --format csv --port " + port, /*program_name_included=*/false);
  EXPECT_EQ(exit_code, 0);
}

}  // namespace
}  // namespace lattice::cli
