// An embed sweep over two embedding variants, driven one RunOnce() at a time through an
// in-memory control channel (fake workers send each shard's vectors), with a real index
// builder: each variant's index is built when its shards are done, is judged against the
// spec's relevance judgments, and its trials carry the value as their objective; after a
// coordinator restart only the variant whose build had not ended is built again.
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <atomic>
#include <cmath>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "index/builder.h"
#include "scheduler/coordinator.h"
#include "scheduler/embed_spec.h"
#include "scheduler/sweep_spec.h"
#include "store/index_catalog.h"
#include "store/vector_block_store.h"
#include "tests/testutil/fake_channel.h"
#include "tests/testutil/fake_clock.h"
#include "tests/testutil/testutil.h"

namespace lattice {
namespace {

using nlohmann::json;
using testutil::FakeChannel;
using testutil::FakeClock;

constexpr int kWorkers = 2;
constexpr int kRows = 100;  // t10k images, limit 100, shards of 50: 2 shards per variant
constexpr int kShards = 2;

int Label(int64_t row) { return static_cast<int>(row % 5); }

class CoordinatorIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(store_, StateStore::Open({dir_.Join("state"), /*sync_writes=*/false}));
    // Queries 0..9 judge every other item of their label relevant (grade 3).
    std::ofstream out(qrels_);
    for (int q = 0; q < 10; ++q) {
      for (int d = 0; d < kRows; ++d) {
        if (d != q && Label(d) == Label(q)) out << q << " 0 " << d << " 3\n";
      }
    }
  }

  // A fresh coordinator over the same store, publishing into `catalog` (as after a restart).
  void StartCoordinator(const std::string& catalog) {
    coordinator_.reset();
    builders_.push_back(std::make_unique<IndexBuilder>(
        store_.get(), dir_.Join(catalog), IndexBuilder::LineageFn{},
        /*min_free_bytes=*/0,
        [](const SweepRecord& s) { return scheduler::IndexItemIds(s.spec); }));
    channel_ = std::make_unique<FakeChannel>(kWorkers + 1);
    registry_ = std::make_unique<prometheus::Registry>();
    metrics_ = std::make_unique<SchedulerMetrics>(*registry_);
    CoordinatorOptions options;
    options.clock = &clock_;
    options.index_builder = builders_.back().get();
    coordinator_ =
        std::make_unique<Coordinator>(options, store_.get(), channel_.get(), metrics_.get());
    for (int r = 1; r <= kWorkers; ++r) {
      channel_->Deliver(WorkerRank{r}, RegisterMsg{"host" + std::to_string(r), 1, "cpu"});
    }
    coordinator_->RunOnce();
  }

  SweepRecord Submit() {
    const std::string text =
        "name: variants\nkind: embed\nencoder: {type: flatten}\n"
        "corpus: {format: idx, images: /usr/share/datasets/fashion-mnist/"
        "t10k-images-idx3-ubyte.gz, limit: 100}\nshard_size: 50\n"
        "index: {name: fm, type: flat}\n"
        "search: {method: grid, parameters: {normalize: [false, true]}}\n"
        "metric: {name: ndcg@10, qrels: " +
        qrels_ + ", relevant_at: 3}\n";
    auto spec = scheduler::ParseSweepSpec(text);
    EXPECT_OK(spec);
    auto future = coordinator_->SubmitAsync(std::move(spec).value());
    coordinator_->RunOnce();
    auto result = future.get();
    EXPECT_OK(result);
    return result.ok() ? *result : SweepRecord{};
  }

  // Variant 0's vectors put each label in its own cluster (a perfect ranking); variant 1's
  // follow the row number (neighbours mostly of other labels).
  static VectorsMsg Vectors(const AssignMsg& a, bool broken = false) {
    VectorsMsg m;
    m.trial = a.trial;
    m.attempt = a.attempt;
    m.begin = a.config["shard"]["begin"].get<int64_t>();
    m.rows = a.config["shard"]["end"].get<int64_t>() - m.begin;
    // `broken`: variant 1's second shard has another dimension (its build fails).
    m.dim = broken && a.trial.index == 3 ? 3 : 2;
    const bool clustered = a.trial.index < kShards;
    for (int64_t r = m.begin; r < m.begin + m.rows; ++r) {
      m.data.push_back(clustered ? static_cast<float>(Label(r) * 100 + r * 0.01)
                                 : static_cast<float>(r));
      for (int c = 1; c < m.dim; ++c) m.data.push_back(0);
    }
    return m;
  }

  // Runs the shards of `which` variants (others are left queued or are not placed) as
  // fake workers: vectors, then the result.
  void RunShards(const std::set<int>& which, bool broken = false) {
    for (int round = 0; round < 20; ++round) {
      for (auto& [rank, a] : channel_->TakeSentOf<AssignMsg>()) {
        if (!which.count(static_cast<int>(a.trial.index) / kShards)) {
          parked_.emplace_back(rank, a);
          continue;
        }
        channel_->Deliver(rank, Vectors(a, broken));
        ResultMsg r;
        r.trial = a.trial;
        r.attempt = a.attempt;
        r.code = StatusCode::kOk;
        r.run_seconds = 0.01;
        r.metrics = {{"items_per_s", 1000.0}};
        channel_->Deliver(rank, r);
      }
      coordinator_->RunOnce();
    }
  }

  // Steps the loop until `done` holds (index builds run on their own threads).
  void StepUntil(const std::function<bool()>& done) {
    EXPECT_TRUE(testutil::WaitFor(
        [&] {
          coordinator_->RunOnce();
          return done();
        },
        std::chrono::seconds(60), std::chrono::milliseconds(10)));
  }

  std::set<std::string> Indexes(const std::string& catalog) {
    auto opened = store::IndexCatalog::Open(dir_.Join(catalog), {});
    EXPECT_OK(opened);
    std::set<std::string> names;
    if (!opened.ok()) return names;
    auto list = (*opened)->List();
    EXPECT_OK(list);
    for (const auto& e : *list) names.insert(e.name);
    return names;
  }

  bool VariantEnded(SweepId sweep, uint32_t trial) {
    auto t = store_->GetTrial(TrialId{sweep, trial});
    return t.ok() && t->metrics.contains("index_version");
  }

  testutil::TempDir dir_;
  const std::string qrels_ = dir_.Join("labels.qrels");
  FakeClock clock_;
  std::unique_ptr<StateStore> store_;
  std::vector<std::unique_ptr<IndexBuilder>> builders_;  // outlive their build threads
  std::unique_ptr<FakeChannel> channel_;
  std::unique_ptr<prometheus::Registry> registry_;
  std::unique_ptr<SchedulerMetrics> metrics_;
  std::unique_ptr<Coordinator> coordinator_;
  std::vector<std::pair<WorkerRank, AssignMsg>> parked_;
};

TEST_F(CoordinatorIndexTest, EachVariantGetsItsIndexAndTheBestVariantIsTheBestTrial) {
  StartCoordinator("indexes");
  const SweepRecord sweep = Submit();
  EXPECT_EQ(sweep.num_trials, 4u);
  EXPECT_EQ(sweep.metric, "ndcg@10");
  RunShards({0, 1});
  StepUntil([&] {
    auto s = store_->GetSweep(sweep.id);
    return s.ok() && s->state != SweepState::kRunning;
  });
  ASSERT_OK_AND_ASSIGN(SweepRecord done, store_->GetSweep(sweep.id));
  EXPECT_EQ(done.state, SweepState::kCompleted) << done.message;
  EXPECT_EQ(done.message, "best variant: index fm-normalize-false, ndcg@10 1.0000 (of 2 indexes)");
  EXPECT_EQ(Indexes("indexes"), (std::set<std::string>{"fm-normalize-false", "fm-normalize-true"}));
  double values[2] = {0, 0};
  for (uint32_t i = 0; i < 4; ++i) {
    ASSERT_OK_AND_ASSIGN(TrialRecord t, store_->GetTrial(TrialId{sweep.id, i}));
    const int variant = static_cast<int>(i) / kShards;
    EXPECT_EQ(t.params["variant"], variant);
    EXPECT_EQ(t.metrics["index"], variant == 0 ? "fm-normalize-false" : "fm-normalize-true");
    EXPECT_EQ(t.metrics["index_version"], 1);
    ASSERT_TRUE(t.objective.has_value()) << i;
    EXPECT_EQ(*t.objective, t.metrics["ndcg@10"].get<double>());
    values[variant] = *t.objective;
  }
  EXPECT_DOUBLE_EQ(values[0], 1.0);
  EXPECT_LT(values[1], 0.9);
  ASSERT_OK_AND_ASSIGN(SweepCounts counts, store_->GetSweepCounts(sweep.id));
  ASSERT_TRUE(counts.best.has_value());
  EXPECT_EQ(*counts.best, (TrialId{sweep.id, 0}));  // the best variant's first shard
  EXPECT_DOUBLE_EQ(counts.best_objective, 1.0);
  EXPECT_EQ(counts.best_params["normalize"], false);
  // The published version records the variant it came from and its judged quality.
  auto catalog = store::IndexCatalog::Open(dir_.Join("indexes"), {});
  ASSERT_OK(catalog);
  auto list = (*catalog)->List();
  ASSERT_OK(list);
  for (const auto& e : *list) {
    EXPECT_EQ(e.meta["built_from"]["normalize"], e.name == "fm-normalize-true") << e.meta.dump();
    EXPECT_EQ(e.meta["retrieval"]["metric"], "ndcg@10");
    EXPECT_EQ(e.meta["retrieval"]["evaluated"], 10);
  }
}

TEST_F(CoordinatorIndexTest, AVariantWhoseBuildFailsFailsTheSweepNamingItAndOthersStay) {
  StartCoordinator("indexes");
  const SweepRecord sweep = Submit();
  RunShards({0, 1}, /*broken=*/true);
  StepUntil([&] {
    auto s = store_->GetSweep(sweep.id);
    return s.ok() && s->state != SweepState::kRunning;
  });
  ASSERT_OK_AND_ASSIGN(SweepRecord done, store_->GetSweep(sweep.id));
  EXPECT_EQ(done.state, SweepState::kFailed);
  EXPECT_EQ(done.message.rfind("variant 1 (normalize=true): index fm-normalize-true: vector "
                               "blocks: dimension changed from 2 to 3",
                               0),
            0u)
      << done.message;
  EXPECT_NE(done.message.find("(1 index(es) published)"), std::string::npos) << done.message;
  EXPECT_EQ(Indexes("indexes"), (std::set<std::string>{"fm-normalize-false"}));
  ASSERT_OK_AND_ASSIGN(TrialRecord failed, store_->GetTrial(TrialId{sweep.id, 2}));
  EXPECT_TRUE(failed.metrics.contains("index_error")) << failed.metrics.dump();
  EXPECT_FALSE(failed.objective.has_value());
  // The vector blocks of every variant went with the sweep.
  EXPECT_EQ(VectorBlockStore(store_.get()).ReadAll(sweep.id, 0).status().code(),
            StatusCode::kFailedPrecondition);
}

TEST_F(CoordinatorIndexTest, AfterARestartOnlyTheVariantWhoseBuildHadNotEndedIsBuiltAgain) {
  StartCoordinator("before");
  const SweepRecord sweep = Submit();
  RunShards({0});
  StepUntil([&] { return VariantEnded(sweep.id, 0); });  // variant 0 built and recorded
  // Variant 1's shards finish; its build starts, and the coordinator "crashes" before it
  // collects the outcome.
  for (auto& [rank, a] : parked_) channel_->Deliver(rank, Vectors(a));
  for (auto& [rank, a] : parked_) {
    ResultMsg r;
    r.trial = a.trial;
    r.attempt = a.attempt;
    r.code = StatusCode::kOk;
    r.metrics = {{"items_per_s", 1000.0}};
    channel_->Deliver(rank, r);
  }
  parked_.clear();
  coordinator_->RunOnce();  // one iteration: the results committed, the build started
  ASSERT_OK_AND_ASSIGN(TrialRecord shard, store_->GetTrial(TrialId{sweep.id, 3}));
  ASSERT_EQ(shard.state, TrialState::kCompleted);
  ASSERT_FALSE(VariantEnded(sweep.id, 2));

  StartCoordinator("after");
  ASSERT_OK(coordinator_->Recover());
  StepUntil([&] {
    auto s = store_->GetSweep(sweep.id);
    return s.ok() && s->state != SweepState::kRunning;
  });
  ASSERT_OK_AND_ASSIGN(SweepRecord done, store_->GetSweep(sweep.id));
  EXPECT_EQ(done.state, SweepState::kCompleted) << done.message;
  EXPECT_EQ(Indexes("after"), (std::set<std::string>{"fm-normalize-true"}))
      << "variant 0's build had ended (its trials say so): not built again";
  ASSERT_OK_AND_ASSIGN(SweepCounts counts, store_->GetSweepCounts(sweep.id));
  ASSERT_TRUE(counts.best.has_value());
  EXPECT_EQ(*counts.best, (TrialId{sweep.id, 0}));
  EXPECT_TRUE(VariantEnded(sweep.id, 2));
  EXPECT_TRUE(VariantEnded(sweep.id, 3));
}

}  // namespace
}  // namespace lattice
