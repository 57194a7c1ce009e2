// The state store on a real full disk (a small tmpfs, filled with a ballast file): a commit
// that does not fit fails with InsufficientStorage and applies nothing, reads go on, writes
// work again by themselves once space is freed (no reopen), and everything acknowledged
// survives a reopen. Also the pieces that publish indexes: a publish that runs out of space
// leaves nothing behind.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <random>
#include <thread>
#include <memory>
#include <string>

#include "common/disk_space.h"
#include "store/index_catalog.h"
#include "store/state_store.h"
#include "store/vector_index.h"
#include "tests/testutil/testutil.h"
#include "tests/testutil/tmpfs.h"

namespace lattice {
namespace {

using nlohmann::json;

SweepRecord MakeSweep(uint64_t id) {
  SweepRecord s;
  s.id = SweepId{id};
  s.name = "full";
  s.kind = JobKind::kNoop;
  s.spec = json{{"name", "full"}};
  s.metric = "loss";
  s.num_trials = 2;
  s.max_attempts = 2;
  return s;
}

TrialRecord MakeTrial(uint64_t sweep, uint32_t index, TrialState state) {
  TrialRecord t;
  t.id = TrialId{SweepId{sweep}, index};
  t.params = json{{"seed", index}};
  t.config = json::object();
  t.state = state;
  t.attempts = 1;
  return t;
}

// Param: StateStoreOptions::write_floor_bytes — the default (writes refused before RocksDB
// sees the full disk) and 0 (RocksDB's own write fails; the store reopens itself).
class DiskFullStoreTest : public ::testing::TestWithParam<int64_t> {
 protected:
  void SetUp() override {
    auto mount = testutil::TmpfsMount::Mount(dir_.Join("mnt"), int64_t{24} << 20);
    if (!mount.ok()) GTEST_SKIP() << mount.status().message();
    mount_ = std::move(mount).value();
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    mount_.reset();  // always unmounted
  }
  void Reopen() {
    store_.reset();
    StateStoreOptions options;
    options.path = mount_->Join("state");
    options.sync_writes = true;
    options.write_floor_bytes = GetParam();
    auto opened = StateStore::Open(options);
    ASSERT_OK(opened);
    store_ = std::move(opened).value();
  }

  testutil::TempDir dir_;
  std::unique_ptr<testutil::TmpfsMount> mount_;
  std::unique_ptr<StateStore> store_;
};

TEST_P(DiskFullStoreTest, FailedCommitAppliesNothingAndWritesResumeOnceSpaceIsBack) {
  {
    StateWriteBatch b;
    b.PutSweep(MakeSweep(1));
    b.PutTrial(MakeTrial(1, 0, TrialState::kRunning));
    b.PutTrial(MakeTrial(1, 1, TrialState::kRunning));
    b.AppendEvent("submitted", {{"n", 0}});
    ASSERT_OK(store_->Commit(b));
  }
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    ASSERT_OK(mount_->Fill());
    StateWriteBatch b;
    b.PutTrial(MakeTrial(1, 0, round == 2 ? TrialState::kCompleted : TrialState::kRunning));
    b.PutRaw("checkpoints", "big/" + std::to_string(round), std::string(2 << 20, 'c'));
    b.AppendEvent("round", {{"n", round}});
    for (int attempt = 0; attempt < 3; ++attempt) {  // retrying while full: same answer
      Status s = store_->Commit(b);
      ASSERT_EQ(s.code(), StatusCode::kInsufficientStorage) << s.ToString();
      EXPECT_NE(s.message().find(mount_->Join("state")), std::string::npos) << s.message();
      EXPECT_NE(s.message().find("free"), std::string::npos) << s.message();
      EXPECT_FALSE(b.empty()) << "a failed batch is kept for the retry";
    }
    // Nothing of it applied; reads go on.
    ASSERT_OK_AND_ASSIGN(TrialRecord t, store_->GetTrial(TrialId{SweepId{1}, 0}));
    EXPECT_EQ(t.state, TrialState::kRunning);
    EXPECT_EQ(store_->Get("checkpoints", "big/" + std::to_string(round)).status().code(),
              StatusCode::kNotFound);
    ASSERT_OK_AND_ASSIGN(auto sweeps, store_->ListSweeps());
    EXPECT_EQ(sweeps.size(), 1u);

    mount_->Free();
    ASSERT_OK(store_->Commit(b));  // the same batch, no reopen
    EXPECT_TRUE(b.empty());
    ASSERT_OK_AND_ASSIGN(std::string big, store_->Get("checkpoints", "big/" + std::to_string(round)));
    EXPECT_EQ(big.size(), size_t{2} << 20);
    // Leave room for the next round's ballast to matter.
    StateWriteBatch drop;
    drop.DeleteRawRange("checkpoints", "big/", "big0");
    ASSERT_OK(store_->Commit(drop));
    ASSERT_OK(store_->CompactRaw("checkpoints", "big/", "big0"));
  }
  // Event sequence numbers: none was taken by a failed commit.
  ASSERT_OK_AND_ASSIGN(auto events, store_->ListEvents(0, 100));
  ASSERT_EQ(events.size(), 4u);
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i]["seq"], i + 1);

  Reopen();
  ASSERT_OK_AND_ASSIGN(TrialRecord t, store_->GetTrial(TrialId{SweepId{1}, 0}));
  EXPECT_EQ(t.state, TrialState::kCompleted);
  ASSERT_OK_AND_ASSIGN(auto after, store_->ListEvents(0, 100));
  EXPECT_EQ(after.size(), 4u);
}

TEST_P(DiskFullStoreTest, TheDiskFillingUpUnderManyWritesStopsThemUntilSpaceIsBack) {
  ASSERT_OK(mount_->Fill(int64_t{12} << 20));  // 12 MiB left for the store
  // Values of 256 KiB until one does not fit: memtable flushes and compactions run (and
  // fail) while the disk fills up.
  int acknowledged = 0;
  Status last;
  for (int i = 0; i < 200; ++i) {
    StateWriteBatch b;
    b.PutRaw("items", "k" + std::to_string(1000 + i),
             std::string(256 << 10, static_cast<char>('a' + i % 26)));
    last = store_->Commit(b);
    if (!last.ok()) break;
    ++acknowledged;
  }
  ASSERT_EQ(last.code(), StatusCode::kInsufficientStorage) << last.ToString();
  ASSERT_GT(acknowledged, 0);
  ASSERT_OK_AND_ASSIGN(std::string first, store_->Get("items", "k1000"));  // reads go on
  EXPECT_EQ(first.size(), size_t{256} << 10);

  mount_->Free();
  StateWriteBatch after;
  after.PutRaw("items", "after", "x");
  ASSERT_OK(store_->Commit(after));  // no reopen needed

  Reopen();  // everything acknowledged is there, nothing that failed
  for (int i = 0; i < acknowledged; ++i) {
    auto v = store_->Get("items", "k" + std::to_string(1000 + i));
    ASSERT_OK(v);
    EXPECT_EQ(v->size(), size_t{256} << 10);
    EXPECT_EQ((*v)[0], static_cast<char>('a' + i % 26));
  }
  EXPECT_EQ(store_->Get("items", "k" + std::to_string(1000 + acknowledged)).status().code(),
            StatusCode::kNotFound);
  EXPECT_OK(store_->Get("items", "after"));
}

// Random batches while the disk fills and empties again, with a reader thread going all
// the time: no crash, reads never fail, and after a reopen exactly the acknowledged
// writes are there.
TEST_P(DiskFullStoreTest, RandomFillAndFreeNeverLosesAnAcknowledgedWrite) {
  std::mt19937_64 rng = testutil::SeededRng("RandomFillAndFree");
  std::atomic<bool> stop{false};
  std::atomic<int> read_errors{0};
  std::thread reader([&] {
    while (!stop.load()) {
      auto events = store_->ListEvents(0, 10);
      if (!events.ok() && events.status().code() != StatusCode::kUnavailable) ++read_errors;
      auto v = store_->Get("items", "v0");
      if (!v.ok() && v.status().code() != StatusCode::kNotFound &&
          v.status().code() != StatusCode::kUnavailable) {
        ++read_errors;
      }
    }
  });
  std::map<std::string, size_t> acknowledged;  // key -> value size
  int failed = 0;
  int next_key = 0;
  for (int round = 0; round < 6; ++round) {
    if (round % 2 == 0) {
      ASSERT_OK(mount_->Fill(static_cast<int64_t>(rng() % (3 << 20))));
    } else {
      mount_->Free();
    }
    for (int i = 0; i < 25; ++i) {
      StateWriteBatch b;
      const std::string key = "v" + std::to_string(next_key++);
      const size_t size = static_cast<size_t>(rng() % (512 << 10)) + 1;
      b.PutRaw("items", key, std::string(size, static_cast<char>('a' + size % 26)));
      b.AppendEvent("w", {{"key", key}});
      Status s = store_->Commit(b, /*sync=*/rng() % 2 == 0);
      if (s.ok()) {
        acknowledged[key] = size;
      } else {
        ASSERT_TRUE(s.code() == StatusCode::kInsufficientStorage || s.code() == StatusCode::kIoError)
            << s.ToString();
        ++failed;
      }
    }
  }
  stop = true;
  reader.join();
  EXPECT_EQ(read_errors.load(), 0);
  mount_->Free();
  Reopen();
  for (const auto& [key, size] : acknowledged) {
    auto v = store_->Get("items", key);
    ASSERT_TRUE(v.ok()) << key << ": " << v.status().ToString();
    EXPECT_EQ(v->size(), size) << key;
  }
  ASSERT_OK_AND_ASSIGN(auto events, store_->ListEvents(0, 100000));
  EXPECT_EQ(events.size(), acknowledged.size()) << "an event for each acknowledged commit, no more";
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i]["seq"], i + 1);
}

TEST_P(DiskFullStoreTest, APublishThatRunsOutOfSpaceLeavesNothingBehind) {
  ASSERT_OK_AND_ASSIGN(auto catalog, store::IndexCatalog::Open(mount_->Join("indexes")));
  store::IndexParams params;
  params.type = store::IndexType::kFlat;
  params.dim = 64;
  ASSERT_OK_AND_ASSIGN(auto index, store::MakeVectorIndex(params));
  std::vector<float> data(static_cast<size_t>(20000 * 64), 0.5f);  // ~5 MiB
  std::vector<int64_t> ids(20000);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>(i);
  ASSERT_OK(index->Add(data.data(), 20000, ids.data()));
  ASSERT_OK(mount_->Fill(1 << 20));  // 1 MiB left
  auto published = catalog->Publish("full", *index, json::object());
  ASSERT_FALSE(published.ok());
  Status classified = ClassifyNoSpace(published.status(), mount_->dir());
  EXPECT_EQ(classified.code(), StatusCode::kInsufficientStorage) << published.status().ToString();
  // No half-written version, no temp directory: the space it took is free again.
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(mount_->Join("indexes/full"))) {
    left.push_back(e.path().filename().string());
  }
  EXPECT_TRUE(left.empty()) << left.size() << " entries left, e.g. " << (left.empty() ? "" : left[0]);
  EXPECT_EQ(catalog->Current("full").status().code(), StatusCode::kNotFound);
  mount_->Free();
  ASSERT_OK_AND_ASSIGN(int64_t version, catalog->Publish("full", *index, json::object()));
  EXPECT_EQ(version, 1);
}

INSTANTIATE_TEST_SUITE_P(WriteFloor, DiskFullStoreTest,
                         ::testing::Values(StateStoreOptions{}.write_floor_bytes, int64_t{0}),
                         [](const ::testing::TestParamInfo<int64_t>& info) {
                           return info.param == 0 ? std::string("RocksDbFails")
                                                  : std::string("RefusedBeforeRocksDb");
                         });

}  // namespace
}  // namespace lattice
