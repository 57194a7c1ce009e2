#include "scheduler/sweep_routes.h"

#include <gtest/gtest.h>

#include <prometheus/registry.h>

#include <string>

#include "tests/testutil/testutil.h"

namespace lattice {
namespace {

// What POST /v1/sweeps answers for hostile spec bodies found by the fuzz campaign (issue
// 9): a 400 with a message, never a crash or a 500. The spec is rejected before the
// coordinator or the store is used, so neither is needed here.
class SweepRoutesTest : public ::testing::Test {
 protected:
  HttpResponse Post(const std::string& body) {
    HttpRequest req;
    req.method = "POST";
    req.target = req.path = "/v1/sweeps";
    req.authorization = "Bearer t0ken";
    req.body = body;
    return router_->Dispatch(req);
  }
  void ExpectBadRequest(const std::string& body, const std::string& needle) {
    HttpResponse r = Post(body);
    EXPECT_EQ(r.status, 400) << r.body;
    nlohmann::json j = nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(j.is_object()) << r.body;
    EXPECT_EQ(j["error"]["code"], "invalid_argument") << r.body;
    EXPECT_NE(j["error"]["message"].get<std::string>().find(needle), std::string::npos)
        << r.body;
  }

  prometheus::Registry registry_;
  std::shared_ptr<Router> router_ = MakeApiRouter(nullptr, nullptr, &registry_, "t0ken");
};

TEST_F(SweepRoutesTest, HostileSpecsAreBadRequests) {
  ExpectBadRequest("&a [*a]\n", "recursive alias");
  ExpectBadRequest("name: n\nkind: noop\na: &a {b: *a}\n", "a.b: alias refers to");
  ExpectBadRequest("name: n\xff\nkind: noop\n", "invalid UTF-8 at byte 7");
  ExpectBadRequest("name: \"\xc3\"\nkind: noop\n", "invalid UTF-8");
  ExpectBadRequest("name: n\nkind: noop\nsleep_ms: " + std::string(3000, '[') +
                       std::string(3000, ']') + "\n",
                   "nesting deeper than 64 levels");
  ExpectBadRequest("{\"name\": \"n\\ud83d\\ude00\", \"kind\": \"noop\"}", "name: must match");
}


// GET routes over a real store (they read it directly; no coordinator is needed).
class SweepReadRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = StateStore::Open({dir_.Join("state"), /*sync_writes=*/false});
    ASSERT_OK(store);
    store_ = std::move(store).value();
    router_ = MakeApiRouter(nullptr, store_.get(), &registry_, "t0ken");
  }

  // Sweep `id` with `trials` trials: index i completed with objective i / 1000 when i is
  // even, else queued. Its counts are stored with it unless `with_counts` is false.
  void AddSweep(uint64_t id, uint32_t trials, bool with_counts = true) {
    StateWriteBatch b;
    SweepRecord s;
    s.id = SweepId{id};
    s.name = "sweep" + std::to_string(id);
    s.metric = "val_accuracy";
    s.num_trials = trials;
    b.PutSweep(s);
    std::vector<TrialRecord> all;
    for (uint32_t i = 0; i < trials; ++i) {
      TrialRecord t;
      t.id = TrialId{s.id, i};
      t.params = {{"i", i}};
      t.config = {{"kind", "noop"}, {"seed", i}};
      t.state = i % 2 == 0 ? TrialState::kCompleted : TrialState::kQueued;
      if (i % 2 == 0) t.objective = i / 1000.0;
      b.PutTrial(t);
      all.push_back(std::move(t));
    }
    if (with_counts) b.PutSweepCounts(SweepCounts::FromTrials(s.id, all, s.maximize));
    ASSERT_OK(store_->Commit(b));
  }

  HttpResponse Get(const std::string& target) {
    HttpRequest req;
    req.method = "GET";
    req.target = target;
    const size_t q = target.find('?');
    req.path = target.substr(0, q);
    if (q != std::string::npos) {
      std::string rest = target.substr(q + 1);
      while (!rest.empty()) {
        const size_t amp = rest.find('&');
        const std::string pair = rest.substr(0, amp);
        const size_t eq = pair.find('=');
        req.query[pair.substr(0, eq)] = eq == std::string::npos ? "" : pair.substr(eq + 1);
        rest = amp == std::string::npos ? "" : rest.substr(amp + 1);
      }
    }
    return router_->Dispatch(req);
  }

  nlohmann::json GetJson(const std::string& target) {
    HttpResponse r = Get(target);
    EXPECT_EQ(r.status, 200) << target << ": " << r.body;
    return nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  }

  testutil::TempDir dir_;
  std::unique_ptr<StateStore> store_;
  prometheus::Registry registry_;
  std::shared_ptr<Router> router_;
};

TEST_F(SweepReadRoutesTest, ListingSweepsAndShowingOneDecodeNoTrial) {
  for (uint64_t id = 1; id <= 20; ++id) AddSweep(id, 31);
  const uint64_t decoded = store_->TrialsDecoded();
  nlohmann::json listed = GetJson("/v1/sweeps");
  ASSERT_EQ(listed["sweeps"].size(), 20u);
  for (const auto& s : listed["sweeps"]) {
    EXPECT_EQ(s["counts"]["completed"], 16) << s.dump();
    EXPECT_EQ(s["counts"]["queued"], 15) << s.dump();
    EXPECT_EQ(s["best"]["objective"], 0.03) << s.dump();
    EXPECT_EQ(s["best"]["params"]["i"], 30) << s.dump();
  }
  nlohmann::json one = GetJson("/v1/sweeps/s7");
  EXPECT_EQ(one["counts"]["completed"], 16);
  EXPECT_EQ(GetJson("/v1/sweeps/sweep7")["id"], "s7");
  EXPECT_EQ(store_->TrialsDecoded(), decoded) << "listings must read counts, not trials";
}

TEST_F(SweepReadRoutesTest, ASweepStoredWithoutCountsIsCountedFromItsTrials) {
  AddSweep(1, 5);
  AddSweep(2, 7, /*with_counts=*/false);
  AddSweep(3, 5);
  nlohmann::json listed = GetJson("/v1/sweeps");
  ASSERT_EQ(listed["sweeps"].size(), 3u);
  EXPECT_EQ(listed["sweeps"][1]["counts"]["completed"], 4);
  EXPECT_EQ(listed["sweeps"][1]["best"]["trial"], "s2-t6");
  EXPECT_EQ(listed["sweeps"][2]["counts"]["completed"], 3);
  EXPECT_EQ(GetJson("/v1/sweeps/s2")["counts"]["queued"], 3);
}

TEST_F(SweepReadRoutesTest, TrialPagesReturnEveryTrialExactlyOnce) {
  AddSweep(1, 2345);
  AddSweep(2, 3);
  // Without parameters: the first kTrialsPageLimit trials, then on by next_after.
  std::vector<int64_t> seen;
  std::string target = "/v1/sweeps/s1/trials";
  for (int pages = 0; pages < 10; ++pages) {
    nlohmann::json page = GetJson(target);
    ASSERT_TRUE(page["trials"].is_array()) << page.dump().substr(0, 200);
    EXPECT_LE(page["trials"].size(), static_cast<size_t>(kTrialsPageLimit));
    for (const auto& t : page["trials"]) seen.push_back(t["index"].get<int64_t>());
    if (page["next_after"].is_null()) break;
    EXPECT_EQ(page["next_after"], seen.back());
    target = "/v1/sweeps/s1/trials?after=" + std::to_string(page["next_after"].get<int64_t>());
  }
  ASSERT_EQ(seen.size(), 2345u);
  for (size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i], static_cast<int64_t>(i));

  // Small pages, and the last one names no next page.
  seen.clear();
  nlohmann::json page = GetJson("/v1/sweeps/s2/trials?limit=2");
  EXPECT_EQ(page["trials"].size(), 2u);
  EXPECT_EQ(page["next_after"], 1);
  page = GetJson("/v1/sweeps/s2/trials?limit=2&after=1");
  ASSERT_EQ(page["trials"].size(), 1u);
  EXPECT_EQ(page["trials"][0]["id"], "s2-t2");
  EXPECT_TRUE(page["next_after"].is_null());
  EXPECT_TRUE(GetJson("/v1/sweeps/s2/trials?after=2")["trials"].empty());

  for (const char* bad : {"limit=0", "limit=1001", "limit=x", "after=-2", "after=1x"}) {
    EXPECT_EQ(Get(std::string("/v1/sweeps/s2/trials?") + bad).status, 400) << bad;
  }
}

}  // namespace
}  // namespace lattice
