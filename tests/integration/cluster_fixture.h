// Fixture of the integration suites: a real `mpirun` cluster on a temporary data
// directory, and a keep-alive API client holding its token.
#pragma once

#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "http/client.h"
#include "tests/testutil/cluster.h"
#include "tests/testutil/testutil.h"

namespace lattice::testutil {

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class ClusterFixture : public ::testing::Test {
 protected:
  using json = nlohmann::json;

  // Starts (or restarts, on the same data directory) a cluster of `ranks` ranks.
  void StartCluster(int ranks = 3, std::vector<std::string> extra_args = {}) {
    ClusterOptions opts;
    opts.data_dir = DataDir();
    opts.ranks = ranks;
    opts.extra_args = std::move(extra_args);
    cluster_ = std::make_unique<TestCluster>(opts);
    ASSERT_OK(cluster_->Start());
    client_ = std::make_unique<cli::HttpClient>("127.0.0.1", cluster_->port(), cluster_->token());
  }

  std::string DataDir() const { return dir_.Join("data"); }

  // Sends a request and returns the parsed body; a transport error or another status
  // than `expect_status` fails the test (non-fatally) and yields null.
  json Call(const std::string& method, const std::string& target, const std::string& body = "",
            int expect_status = 200, const std::string& content_type = "application/yaml") {
    auto r = client_->Request(method, target, body, content_type);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return json();
    EXPECT_EQ(r->status, expect_status) << method << " " << target << ": " << r->body;
    return json::parse(r->body, nullptr, false);
  }

  // Polls the sweep until it leaves "running" or `timeout` passes; returns its last view.
  json WaitForSweep(const std::string& id, std::chrono::seconds timeout) {
    json sweep;
    WaitFor(
        [&] {
          sweep = Call("GET", "/v1/sweeps/" + id);
          return sweep.is_object() && sweep.value("state", "") != "running";
        },
        timeout, std::chrono::milliseconds(250));
    return sweep;
  }

  // Runs the lattice CLI against the cluster; returns its stdout (the test fails,
  // non-fatally, on a non-zero exit, printing stderr).
  std::string Lattice(const std::string& args) {
    const std::string out = dir_.Join("cli.out");
    std::string err;
    const int rc = RunCommand(LatticeBinary() + " " + args + " --port " +
                                  std::to_string(cluster_->port()) + " > " + out,
                              &err);
    EXPECT_EQ(rc, 0) << args << ": " << err;
    return ReadFile(out);
  }

  // Lattice(args), parsed: the test fails (non-fatally) when it is not JSON.
  json LatticeJson(const std::string& args) {
    const std::string text = Lattice(args);
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(j.is_discarded()) << args << " printed invalid JSON:\n" << text;
    return j;
  }

  TempDir dir_;
  std::unique_ptr<TestCluster> cluster_;
  std::unique_ptr<cli::HttpClient> client_;
};

}  // namespace lattice::testutil
