#include "store/state_store.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <fstream>
#include <set>
#include <thread>

#include "tests/testutil/testutil.h"

namespace lattice {
namespace {

using nlohmann::json;

SweepRecord MakeSweep(uint64_t id, const std::string& name) {
  SweepRecord s;
  s.id = SweepId{id};
  s.name = name;
  s.kind = JobKind::kTrain;
  s.spec = json{{"name", name}, {"search", {{"method", "grid"}}}};
  s.metric = "val_accuracy";
  s.num_trials = 3;
  s.max_attempts = 2;
  s.created_ms = 1700000000000 + static_cast<int64_t>(id);
  return s;
}

TrialRecord MakeTrial(uint64_t sweep, uint32_t index) {
  TrialRecord t;
  t.id = TrialId{SweepId{sweep}, index};
  t.params = json{{"lr", 0.001 * (index + 1)}};
  t.config = json{{"epochs", 5}};
  t.state = TrialState::kRunning;
  t.attempts = 1;
  t.worker = WorkerRank{2};
  t.objective = 0.5 + index / 100.0;
  return t;
}

EpochMetrics MakeMetrics(const TrialId& trial, int attempt, int epoch) {
  EpochMetrics m;
  m.trial = trial;
  m.attempt = attempt;
  m.epoch = epoch;
  m.values = {{"train_loss", 1.0 / epoch}, {"val_accuracy", 0.01 * epoch}};
  return m;
}

class StateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  // Closes the store (if open) and opens it again on the same directory.
  void Reopen(bool sync = false) {
    store_.reset();
    auto opened = StateStore::Open(StateStoreOptions{dir_.Join("db"), sync});
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(opened).value();
  }

  Status Commit(StateWriteBatch& b) { return store_->Commit(b); }

  testutil::TempDir dir_;
  std::unique_ptr<StateStore> store_;
};

TEST_F(StateStoreTest, SweepRoundTrip) {
  StateWriteBatch b;
  b.PutSweep(MakeSweep(4, "grid"));
  ASSERT_OK(Commit(b));
  ASSERT_OK_AND_ASSIGN(SweepRecord got, store_->GetSweep(SweepId{4}));
  EXPECT_EQ(got.ToJson(), MakeSweep(4, "grid").ToJson());
}

TEST_F(StateStoreTest, TrialAndMetricsRoundTrip) {
  StateWriteBatch b;
  b.PutTrial(MakeTrial(1, 3));
  b.PutEpochMetrics(MakeMetrics(TrialId{SweepId{1}, 3}, 0, 1));
  ASSERT_OK(Commit(b));
  ASSERT_OK_AND_ASSIGN(TrialRecord got, store_->GetTrial(TrialId{SweepId{1}, 3}));
  EXPECT_EQ(got.ToJson(), MakeTrial(1, 3).ToJson());
  ASSERT_OK_AND_ASSIGN(auto metrics, store_->GetEpochMetrics(TrialId{SweepId{1}, 3}));
  ASSERT_EQ(metrics.size(), 1u);
  EXPECT_EQ(metrics[0].ToJson(), MakeMetrics(TrialId{SweepId{1}, 3}, 0, 1).ToJson());
}

TEST_F(StateStoreTest, MissingKeysAreNotFound) {
  EXPECT_EQ(store_->GetSweep(SweepId{99}).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->GetTrial(TrialId{SweepId{1}, 1}).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->Get("items", "nope").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->Get("checkpoints", "nope").status().code(), StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(auto metrics, store_->GetEpochMetrics(TrialId{SweepId{1}, 1}));
  EXPECT_TRUE(metrics.empty());
  ASSERT_OK_AND_ASSIGN(auto sweeps, store_->ListSweeps());
  EXPECT_TRUE(sweeps.empty());
}

TEST_F(StateStoreTest, CommitMakesTheWholeBatchVisibleTogether) {
  StateWriteBatch b;
  b.PutSweep(MakeSweep(1, "a"));
  for (uint32_t i = 0; i < 3; ++i) b.PutTrial(MakeTrial(1, i));
  b.PutEpochMetrics(MakeMetrics(TrialId{SweepId{1}, 0}, 0, 1));
  b.AppendEvent("sweep_submitted", json{{"sweep", "s1"}});
  EXPECT_EQ(b.count(), 6u);
  // Nothing is visible before Commit.
  EXPECT_EQ(store_->GetSweep(SweepId{1}).status().code(), StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(auto before, store_->ListTrials(SweepId{1}));
  EXPECT_TRUE(before.empty());

  ASSERT_OK(Commit(b));
  EXPECT_TRUE(b.empty());  // a committed batch is cleared
  ASSERT_OK(store_->GetSweep(SweepId{1}));
  ASSERT_OK_AND_ASSIGN(auto trials, store_->ListTrials(SweepId{1}));
  EXPECT_EQ(trials.size(), 3u);
  ASSERT_OK_AND_ASSIGN(auto events, store_->ListEvents(0, 10));
  EXPECT_EQ(events.size(), 1u);
}

TEST_F(StateStoreTest, InvalidChangeRejectsTheWholeBatch) {
  StateWriteBatch b;
  b.PutSweep(MakeSweep(1, "a"));
  b.PutTrial(MakeTrial(1, 0));
  b.AppendEvent("x", json::object());
  b.PutEpochMetrics(MakeMetrics(TrialId{SweepId{1}, 0}, 0, -1));  // negative epoch
  Status s = Commit(b);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_EQ(store_->GetSweep(SweepId{1}).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->GetTrial(TrialId{SweepId{1}, 0}).status().code(), StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(auto events, store_->ListEvents(0, 10));
  EXPECT_TRUE(events.empty());

  StateWriteBatch big_index;
  big_index.PutTrial(MakeTrial(1, 1000000));  // would not sort: key pads the index to 6
  EXPECT_EQ(Commit(big_index).code(), StatusCode::kInvalidArgument);
}

TEST_F(StateStoreTest, EmptyAndDroppedBatchesWriteNothing) {
  StateWriteBatch empty;
  ASSERT_OK(Commit(empty));
  {
    StateWriteBatch dropped;
    dropped.PutSweep(MakeSweep(5, "never"));
  }
  EXPECT_EQ(store_->GetSweep(SweepId{5}).status().code(), StatusCode::kNotFound);
}

TEST_F(StateStoreTest, ReopenKeepsEverything) {
  ASSERT_OK_AND_ASSIGN(SweepId first, store_->AllocateSweepId());
  StateWriteBatch b;
  b.PutSweep(MakeSweep(first.value, "kept"));
  b.PutTrial(MakeTrial(first.value, 0));
  b.PutEpochMetrics(MakeMetrics(TrialId{first, 0}, 0, 1));
  b.AppendEvent("sweep_submitted", json{{"sweep", first.ToString()}});
  b.AppendEvent("trial_started", json{{"trial", "s1-t0"}});
  ASSERT_OK(Commit(b));
  ASSERT_OK(store_->Put("checkpoints", "s1-t0/1/0", std::string(100000, 'c')));

  Reopen(/*sync=*/true);
  ASSERT_OK_AND_ASSIGN(SweepRecord sweep, store_->GetSweep(first));
  EXPECT_EQ(sweep.name, "kept");
  ASSERT_OK(store_->GetTrial(TrialId{first, 0}));
  ASSERT_OK_AND_ASSIGN(auto metrics, store_->GetEpochMetrics(TrialId{first, 0}));
  EXPECT_EQ(metrics.size(), 1u);
  ASSERT_OK_AND_ASSIGN(std::string ckpt, store_->Get("checkpoints", "s1-t0/1/0"));
  EXPECT_EQ(ckpt, std::string(100000, 'c'));
  ASSERT_OK_AND_ASSIGN(SweepId second, store_->AllocateSweepId());
  EXPECT_EQ(second.value, first.value + 1);

  // Event sequence numbers continue after the last stored one.
  StateWriteBatch more;
  more.AppendEvent("sweep_submitted", json{{"sweep", second.ToString()}});
  ASSERT_OK(Commit(more));
  ASSERT_OK_AND_ASSIGN(auto events, store_->ListEvents(0, 100));
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0]["seq"], 1);
  EXPECT_EQ(events[1]["seq"], 2);
  EXPECT_EQ(events[2]["seq"], 3);
  EXPECT_EQ(events[2]["type"], "sweep_submitted");
}

TEST_F(StateStoreTest, AllocateSweepIdNeverRepeatsAcrossReopen) {
  std::set<uint64_t> seen;
  uint64_t last = 0;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 5; ++i) {
      ASSERT_OK_AND_ASSIGN(SweepId id, store_->AllocateSweepId());
      EXPECT_GT(id.value, last);
      EXPECT_TRUE(seen.insert(id.value).second) << "repeated " << id.ToString();
      last = id.value;
    }
    Reopen(/*sync=*/round % 2 == 0);
  }
  EXPECT_EQ(seen.size(), 15u);
  EXPECT_EQ(*seen.begin(), 1u);
}

TEST_F(StateStoreTest, AllocateSweepIdStaysAboveStoredSweeps) {
  StateWriteBatch b;
  b.PutSweep(MakeSweep(41, "written without allocating"));
  ASSERT_OK(Commit(b));
  Reopen();
  ASSERT_OK_AND_ASSIGN(SweepId id, store_->AllocateSweepId());
  EXPECT_EQ(id.value, 42u);
}

TEST_F(StateStoreTest, ListsAreInNumericOrder) {
  StateWriteBatch b;
  for (uint64_t s : {10, 2, 1}) b.PutSweep(MakeSweep(s, "s"));
  for (uint32_t i : {10, 9, 100, 2}) b.PutTrial(MakeTrial(1, i));
  b.PutTrial(MakeTrial(2, 0));
  b.PutTrial(MakeTrial(10, 1));
  ASSERT_OK(Commit(b));

  ASSERT_OK_AND_ASSIGN(auto sweeps, store_->ListSweeps());
  ASSERT_EQ(sweeps.size(), 3u);
  EXPECT_EQ(sweeps[0].id.value, 1u);
  EXPECT_EQ(sweeps[1].id.value, 2u);
  EXPECT_EQ(sweeps[2].id.value, 10u);

  ASSERT_OK_AND_ASSIGN(auto trials, store_->ListTrials(SweepId{1}));
  std::vector<uint32_t> indexes;
  for (const auto& t : trials) indexes.push_back(t.id.index);
  EXPECT_EQ(indexes, (std::vector<uint32_t>{2, 9, 10, 100}));

  ASSERT_OK_AND_ASSIGN(auto all, store_->ListAllTrials());
  std::vector<std::string> ids;
  for (const auto& t : all) ids.push_back(t.id.ToString());
  EXPECT_EQ(ids,
            (std::vector<std::string>{"s1-t2", "s1-t9", "s1-t10", "s1-t100", "s2-t0", "s10-t1"}));
}

TEST_F(StateStoreTest, EpochMetricsAreOrderedAndIsolatedPerTrial) {
  const TrialId t1{SweepId{1}, 1};
  const TrialId t10{SweepId{1}, 10};
  const TrialId s11t1{SweepId{11}, 1};
  StateWriteBatch b;
  for (int epoch : {10, 2, 9, 1}) b.PutEpochMetrics(MakeMetrics(t1, 1, epoch));
  b.PutEpochMetrics(MakeMetrics(t1, 0, 12));
  b.PutEpochMetrics(MakeMetrics(t10, 0, 1));
  b.PutEpochMetrics(MakeMetrics(s11t1, 0, 1));
  ASSERT_OK(Commit(b));

  ASSERT_OK_AND_ASSIGN(auto m, store_->GetEpochMetrics(t1));
  std::vector<std::pair<int, int>> order;
  for (const auto& e : m) {
    EXPECT_EQ(e.trial, t1);
    order.emplace_back(e.attempt, e.epoch);
  }
  EXPECT_EQ(order, (std::vector<std::pair<int, int>>{{0, 12}, {1, 1}, {1, 2}, {1, 9}, {1, 10}}));
  ASSERT_OK_AND_ASSIGN(auto m10, store_->GetEpochMetrics(t10));
  ASSERT_EQ(m10.size(), 1u);
  EXPECT_EQ(m10[0].trial, t10);
  ASSERT_OK_AND_ASSIGN(auto m11, store_->GetEpochMetrics(s11t1));
  ASSERT_EQ(m11.size(), 1u);
  EXPECT_EQ(m11[0].trial, s11t1);
}

TEST_F(StateStoreTest, ListEventsAfterSequence) {
  StateWriteBatch b;
  for (int i = 0; i < 3; ++i) b.AppendEvent("tick", json{{"i", i}});
  ASSERT_OK(Commit(b));
  b.AppendEvent("tock", json{{"i", 3}});
  b.AppendEvent("tock", json{{"i", 4}, {"type", "spoofed"}, {"seq", 999}});
  ASSERT_OK(Commit(b));

  ASSERT_OK_AND_ASSIGN(auto all, store_->ListEvents(0, 100));
  ASSERT_EQ(all.size(), 5u);
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i]["seq"], i + 1);
    EXPECT_EQ(all[i]["i"], i);
    EXPECT_TRUE(all[i]["ts_ms"].is_number_integer());
  }
  EXPECT_EQ(all[0]["type"], "tick");
  EXPECT_EQ(all[4]["type"], "tock");  // reserved keys win over fields

  ASSERT_OK_AND_ASSIGN(auto page, store_->ListEvents(2, 2));
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[0]["seq"], 3);
  EXPECT_EQ(page[1]["seq"], 4);
  ASSERT_OK_AND_ASSIGN(auto tail, store_->ListEvents(5, 10));
  EXPECT_TRUE(tail.empty());
  ASSERT_OK_AND_ASSIGN(auto none, store_->ListEvents(0, 0));
  EXPECT_TRUE(none.empty());
}

TEST_F(StateStoreTest, ConcurrentCommitsGetGaplessEventSequence) {
  constexpr int kThreads = 4;
  constexpr int kCommits = 50;
  std::vector<std::thread> threads;
  std::vector<Status> errors(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCommits; ++i) {
        StateWriteBatch b;
        b.AppendEvent("e", json{{"thread", t}, {"i", i}});
        Status s = store_->Commit(b);
        if (!s.ok()) errors[t] = s;
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& s : errors) ASSERT_OK(s);
  ASSERT_OK_AND_ASSIGN(auto events, store_->ListEvents(0, 1000));
  ASSERT_EQ(events.size(), static_cast<size_t>(kThreads * kCommits));
  std::vector<int> next(kThreads, 0);
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i]["seq"], i + 1);
    int t = events[i]["thread"];
    EXPECT_EQ(events[i]["i"], next[t]++);  // each thread's events in its commit order
  }
}

TEST_F(StateStoreTest, RawPutGetScanDelete) {
  ASSERT_OK(store_->Put("items", "a/1", "one"));
  ASSERT_OK(store_->Put("items", "a/2", "two"));
  ASSERT_OK(store_->Put("items", "ab/1", "other prefix"));
  ASSERT_OK(store_->Put("items", "b/1", "three"));
  const std::string chunk(1 << 20, 'x');  // large enough to go to a blob file
  ASSERT_OK(store_->Put("checkpoints", "s1-t0/000010/0000", chunk));

  ASSERT_OK_AND_ASSIGN(std::string v, store_->Get("items", "a/2"));
  EXPECT_EQ(v, "two");
  ASSERT_OK_AND_ASSIGN(std::string big, store_->Get("checkpoints", "s1-t0/000010/0000"));
  EXPECT_EQ(big, chunk);
  ASSERT_OK_AND_ASSIGN(auto scan, store_->Scan("items", "a/"));
  ASSERT_EQ(scan.size(), 2u);
  EXPECT_EQ(scan[0], std::make_pair(std::string("a/1"), std::string("one")));
  EXPECT_EQ(scan[1], std::make_pair(std::string("a/2"), std::string("two")));
  ASSERT_OK_AND_ASSIGN(auto everything, store_->Scan("items", ""));
  EXPECT_EQ(everything.size(), 4u);

  ASSERT_OK(store_->Delete("items", "a/1"));
  EXPECT_EQ(store_->Get("items", "a/1").status().code(), StatusCode::kNotFound);
  ASSERT_OK(store_->Delete("checkpoints", "s1-t0/000010/0000"));
  EXPECT_EQ(store_->Get("checkpoints", "s1-t0/000010/0000").status().code(), StatusCode::kNotFound);
  ASSERT_OK(store_->Delete("items", "never-existed"));
}

TEST_F(StateStoreTest, RawAccessRejectsUnknownAndProtectedColumnFamilies) {
  EXPECT_EQ(store_->Put("nope", "k", "v").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Get("nope", "k").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Scan("nope", "").status().code(), StatusCode::kInvalidArgument);
  // Typed column families keep invariants (event sequence, id counter): no raw writes.
  EXPECT_EQ(store_->Put("events", "0000000000000001", "{}").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Put("meta", "next_sweep_id", "1").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Delete("trials", "x").code(), StatusCode::kInvalidArgument);
  // Reading them raw is fine.
  ASSERT_OK_AND_ASSIGN(auto rows, store_->Scan("trials", ""));
  EXPECT_TRUE(rows.empty());
}

TEST(StateStoreOpenTest, UnwritablePathIsAnErrorNotACrash) {
  testutil::TempDir dir;
  const std::string file = dir.Join("plain-file");
  std::ofstream(file) << "not a directory";
  auto under_file = StateStore::Open(StateStoreOptions{file + "/db", true});
  ASSERT_FALSE(under_file.ok());
  EXPECT_NE(under_file.status().message().find(file), std::string::npos)
      << under_file.status().ToString();
  auto is_file = StateStore::Open(StateStoreOptions{file, true});
  ASSERT_FALSE(is_file.ok());
  EXPECT_NE(is_file.status().message().find("state store"), std::string::npos)
      << is_file.status().ToString();
  EXPECT_EQ(StateStore::Open(StateStoreOptions{"", true}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(StateStoreOpenTest, SecondOpenOfSameDirectoryFailsCleanly) {
  testutil::TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto first, StateStore::Open(StateStoreOptions{dir.Join("db"), false}));
  auto second = StateStore::Open(StateStoreOptions{dir.Join("db"), false});
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("open"), std::string::npos)
      << second.status().ToString();
}

TEST(StateStoreOpenTest, CorruptRecordIsAnErrorAndExtraColumnFamiliesAreKept) {
  testutil::TempDir dir;
  const std::string path = dir.Join("db");
  { ASSERT_OK_AND_ASSIGN(auto store, StateStore::Open(StateStoreOptions{path, false})); }
  {  // Damage a trial and add a column family a newer version might have created.
    rocksdb::Options options;
    std::vector<std::string> names;
    ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(options, path, &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const auto& n : names) descriptors.emplace_back(n, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(options, path, descriptors, &handles, &db).ok());
    rocksdb::ColumnFamilyHandle* extra = nullptr;
    ASSERT_TRUE(db->CreateColumnFamily(rocksdb::ColumnFamilyOptions(), "future", &extra).ok());
    handles.push_back(extra);
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == "trials") {
        ASSERT_TRUE(db->Put({}, handles[i], TrialId{SweepId{1}, 0}.Key(), "{not json").ok());
      }
    }
    for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    delete db;
  }
  ASSERT_OK_AND_ASSIGN(auto store, StateStore::Open(StateStoreOptions{path, false}));
  auto trial = store->GetTrial(TrialId{SweepId{1}, 0});
  ASSERT_FALSE(trial.ok());
  EXPECT_EQ(trial.status().code(), StatusCode::kInternal);
  EXPECT_NE(trial.status().message().find("corrupt"), std::string::npos);
  EXPECT_EQ(store->ListAllTrials().status().code(), StatusCode::kInternal);
}

}  // namespace
}  // namespace lattice

namespace lattice {
namespace {

// An unsynced commit is visible at once and survives a clean reopen.
TEST(StateStoreSyncTest, UnsyncedCommitIsVisibleAndKept) {
  testutil::TempDir dir;
  TrialRecord t;
  t.id = TrialId{SweepId{1}, 2};
  t.epochs_done = 7;
  {
    ASSERT_OK_AND_ASSIGN(auto store, StateStore::Open({dir.Join("db"), true}));
    StateWriteBatch batch;
    batch.PutTrial(t);
    ASSERT_OK(store->Commit(batch, /*sync=*/false));
    EXPECT_TRUE(batch.empty());
    ASSERT_OK_AND_ASSIGN(TrialRecord got, store->GetTrial(t.id));
    EXPECT_EQ(got.epochs_done, 7);
  }
  ASSERT_OK_AND_ASSIGN(auto reopened, StateStore::Open({dir.Join("db"), true}));
  ASSERT_OK_AND_ASSIGN(TrialRecord got, reopened->GetTrial(t.id));
  EXPECT_EQ(got.epochs_done, 7);
}

}  // namespace
}  // namespace lattice

namespace lattice {
namespace {

TEST_F(StateStoreTest, SweepCountsRoundTripBesideTheSweeps) {
  StateWriteBatch b;
  for (uint64_t id : {3, 1, 2}) {
    b.PutSweep(MakeSweep(id, "s"));
    SweepCounts c;
    c.sweep = SweepId{id};
    c.Move(std::nullopt, TrialState::kQueued);
    TrialRecord done = MakeTrial(id, 1);
    done.state = TrialState::kCompleted;
    c.Move(std::nullopt, done.state);
    c.Consider(done, /*maximize=*/true);
    b.PutSweepCounts(c);
  }
  ASSERT_OK(Commit(b));
  ASSERT_OK_AND_ASSIGN(SweepCounts two, store_->GetSweepCounts(SweepId{2}));
  EXPECT_EQ(two.count(TrialState::kQueued), 1u);
  EXPECT_EQ(two.best, (TrialId{SweepId{2}, 1}));
  EXPECT_EQ(two.best_params, MakeTrial(2, 1).params);
  ASSERT_OK_AND_ASSIGN(auto all, store_->ListSweepCounts());
  ASSERT_EQ(all.size(), 3u);
  for (uint64_t i = 0; i < 3; ++i) EXPECT_EQ(all[i].sweep, SweepId{i + 1});
  EXPECT_EQ(store_->GetSweepCounts(SweepId{9}).status().code(), StatusCode::kNotFound);
  // The sweep id counter is not confused by the new column family.
  Reopen();
  ASSERT_OK_AND_ASSIGN(SweepId next, store_->AllocateSweepId());
  EXPECT_EQ(next, SweepId{4});
}

TEST_F(StateStoreTest, TrialPagesReturnEveryTrialOnceAndOnlyTrialReadsDecodeTrials) {
  StateWriteBatch b;
  for (uint32_t i = 0; i < 23; ++i) b.PutTrial(MakeTrial(5, i));
  for (uint32_t i = 0; i < 4; ++i) b.PutTrial(MakeTrial(6, i));  // the next sweep's
  b.PutSweep(MakeSweep(5, "paged"));
  ASSERT_OK(Commit(b));
  EXPECT_EQ(store_->TrialsDecoded(), 0u);
  ASSERT_OK(store_->ListSweeps());
  ASSERT_OK(store_->ListSweepCounts());
  EXPECT_EQ(store_->TrialsDecoded(), 0u) << "sweep listings decode no trial";

  std::vector<uint32_t> seen;
  uint32_t first = 0;
  for (int pages = 0; pages < 10; ++pages) {
    ASSERT_OK_AND_ASSIGN(auto page, store_->ListTrials(SweepId{5}, first, 5));
    for (const auto& t : page) seen.push_back(t.id.index);
    if (page.size() < 5) break;
    first = page.back().id.index + 1;
  }
  std::vector<uint32_t> want(23);
  for (uint32_t i = 0; i < 23; ++i) want[i] = i;
  EXPECT_EQ(seen, want);
  EXPECT_EQ(store_->TrialsDecoded(), 23u);
  ASSERT_OK_AND_ASSIGN(auto none, store_->ListTrials(SweepId{5}, 1000000, 5));
  EXPECT_TRUE(none.empty());
  ASSERT_OK_AND_ASSIGN(auto zero, store_->ListTrials(SweepId{5}, 0, 0));
  EXPECT_TRUE(zero.empty());
  ASSERT_OK(store_->GetTrial(TrialId{SweepId{6}, 0}));
  EXPECT_EQ(store_->TrialsDecoded(), 24u);
}

}  // namespace
}  // namespace lattice
