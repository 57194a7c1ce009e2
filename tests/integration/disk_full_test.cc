// Disk full on a real `mpirun` cluster whose data directory is a small tmpfs that a ballast
// file fills: changes get HTTP 507 naming the full data directory while reads and /healthz
// ("degraded") go on; once the ballast is deleted the cluster carries on by itself (no
// restart): the sweep that was running completes, every point exactly once, and a new
// submit works. Skipped (with the reason) where a tmpfs cannot be mounted (not root).
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "http/client.h"
#include "tests/integration/cluster_fixture.h"
#include "tests/testutil/tmpfs.h"

namespace lattice {
namespace {

using nlohmann::json;

class DiskFullTest : public testutil::ClusterFixture {
 protected:
  void SetUp() override {
    auto mount = testutil::TmpfsMount::Mount(DataDir(), int64_t{64} << 20);
    if (!mount.ok()) GTEST_SKIP() << mount.status().message();
    mount_ = std::move(mount).value();
  }
  void TearDown() override {
    client_.reset();
    if (cluster_) cluster_->Stop();  // its processes hold files on the mount
    cluster_.reset();
    mount_.reset();  // always unmounted
  }

  static std::string NoopGrid(const std::string& name, int points, int sleep_ms) {
    std::string seeds;
    for (int i = 0; i < points; ++i) seeds += (i ? ", " : "") + std::to_string(i);
    return "name: " + name + "\nkind: noop\nsleep_ms: " + std::to_string(sleep_ms) +
           "\nsearch: {method: grid, parameters: {seed: [" + seeds + "]}}\n";
  }

  json Counts(const std::string& id) { return Call("GET", "/v1/sweeps/" + id)["counts"]; }

  // Every trial of the sweep completed, each in exactly one attempt.
  void ExpectCompletedExactlyOnce(const std::string& id, int points) {
    json sweep = WaitForSweep(id, std::chrono::seconds(180));
    ASSERT_EQ(sweep["state"], "completed") << sweep.dump(2) << cluster_->Log();
    json trials = Call("GET", "/v1/sweeps/" + id + "/trials")["trials"];
    ASSERT_EQ(trials.size(), static_cast<size_t>(points));
    for (const auto& t : trials) {
      EXPECT_EQ(t["state"], "completed") << t.dump();
      EXPECT_EQ(t["attempts"], 1) << "ran more than once: " << t.dump();
    }
  }

  std::unique_ptr<testutil::TmpfsMount> mount_;
};

TEST_F(DiskFullTest, BelowTheReserveChangesGet507ReadsGoOnAndTheSweepFinishesOnceSpaceIsBack) {
  StartCluster(3, {"--min-free-bytes", std::to_string(8 << 20)});
  json sweep = Call("POST", "/v1/sweeps", NoopGrid("before", 8, 1500), 201);
  const std::string id = sweep["id"];
  ASSERT_TRUE(testutil::WaitFor([&] { return Counts(id)["running"].get<int>() >= 1; },
                                std::chrono::seconds(60), std::chrono::milliseconds(100)));

  ASSERT_OK(mount_->Fill(int64_t{2} << 20));  // 2 MiB left: below the 8 MiB reserve
  auto refused = client_->Request("POST", "/v1/sweeps", NoopGrid("refused", 2, 0), "application/yaml");
  ASSERT_OK(refused);
  EXPECT_EQ(refused->status, 507) << refused->body;
  json error = json::parse(refused->body, nullptr, false);
  ASSERT_TRUE(error.is_object()) << refused->body;
  EXPECT_EQ(error["error"]["code"], "insufficient_storage");
  const std::string message = error["error"]["message"];
  EXPECT_NE(message.find("is full"), std::string::npos) << message;
  EXPECT_NE(message.find(DataDir()), std::string::npos) << message;
  EXPECT_NE(message.find("free"), std::string::npos) << message;
  auto cancel = client_->Request("POST", "/v1/sweeps/" + id + "/cancel");
  ASSERT_OK(cancel);
  EXPECT_EQ(cancel->status, 507) << cancel->body;

  // Reads go on; /healthz says why it is degraded.
  json health = Call("GET", "/healthz");
  EXPECT_EQ(health["status"], "degraded") << health.dump();
  EXPECT_NE(health.value("reason", "").find("is full"), std::string::npos) << health.dump();
  EXPECT_EQ(Call("GET", "/v1/sweeps")["sweeps"].size(), 1u) << "the refused submit left nothing";
  Call("GET", "/v1/workers");
  // The running trials finish (their results commit into the reserve); nothing new starts.
  ASSERT_TRUE(testutil::WaitFor([&] { return Counts(id)["running"].get<int>() == 0; },
                                std::chrono::seconds(60), std::chrono::milliseconds(200)))
      << Counts(id).dump();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  json counts = Counts(id);
  EXPECT_EQ(counts["running"], 0) << "no trial starts below the reserve: " << counts.dump();
  EXPECT_GT(counts["queued"].get<int>(), 0) << counts.dump();

  mount_->Free();  // no restart: the cluster carries on by itself
  ExpectCompletedExactlyOnce(id, 8);
  EXPECT_EQ(Call("GET", "/healthz")["status"], "ok");
  json after = Call("POST", "/v1/sweeps", NoopGrid("after", 2, 0), 201);
  ExpectCompletedExactlyOnce(after["id"], 2);
  EXPECT_EQ(Call("GET", "/v1/sweeps")["sweeps"].size(), 2u);
}

// Without a reserve the commit itself hits the full disk (here: the result of a running
// trial): it is held, changes get 507, reads go on, the coordinator keeps the workers
// alive and declares none lost however long it waits, and nothing is lost.
TEST_F(DiskFullTest, ACommitThatHitsTheFullDiskIsHeldUntilSpaceIsBack) {
  constexpr int kWorkerTimeoutMs = 3000;
  StartCluster(3, {"--min-free-bytes", "0", "--worker-timeout-ms", std::to_string(kWorkerTimeoutMs)});
  json sweep = Call("POST", "/v1/sweeps", NoopGrid("running", 6, 1000), 201);
  const std::string id = sweep["id"];
  ASSERT_TRUE(testutil::WaitFor([&] { return Counts(id)["running"].get<int>() >= 1; },
                                std::chrono::seconds(60), std::chrono::milliseconds(100)));

  ASSERT_OK(mount_->Fill());  // not one page left
  json health;
  ASSERT_TRUE(testutil::WaitFor(
      [&] {
        health = Call("GET", "/healthz");
        return health["storage"].value("commit_held", false);
      },
      std::chrono::seconds(30), std::chrono::milliseconds(200)))
      << health.dump() << cluster_->Log();
  EXPECT_EQ(health["status"], "degraded");
  auto refused = client_->Request("POST", "/v1/sweeps", NoopGrid("refused", 1, 0), "application/yaml");
  ASSERT_OK(refused);
  EXPECT_EQ(refused->status, 507) << refused->body;
  EXPECT_NE(refused->body.find("insufficient_storage"), std::string::npos) << refused->body;
  json counts = Counts(id);  // reads go on (they see what is durable)
  EXPECT_EQ(counts["completed"].get<int>() + counts["running"].get<int>() +
                counts["queued"].get<int>(),
            6)
      << counts.dump();

  // Held for more than twice the worker timeout: keep-alives keep the workers up, and none
  // is declared lost for the time the coordinator did not listen.
  std::this_thread::sleep_for(std::chrono::milliseconds(2 * kWorkerTimeoutMs + 1000));
  EXPECT_TRUE(Call("GET", "/healthz")["storage"].value("commit_held", false));
  mount_->Free();
  ExpectCompletedExactlyOnce(id, 6);
  const json workers = Call("GET", "/v1/workers");  // outlives the loop
  for (const auto& w : workers["workers"]) {
    EXPECT_NE(w["state"], "lost") << w.dump();
    EXPECT_TRUE(w["lost_reason"].is_null()) << w.dump();
  }
  EXPECT_EQ(Call("GET", "/healthz")["status"], "ok");
  json after = Call("POST", "/v1/sweeps", NoopGrid("after", 2, 0), 201);
  ExpectCompletedExactlyOnce(after["id"], 2);
  EXPECT_EQ(Call("GET", "/v1/sweeps")["sweeps"].size(), 2u) << "the refused submit left nothing";
}

}  // namespace
}  // namespace lattice
