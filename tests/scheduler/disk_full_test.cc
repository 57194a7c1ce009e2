// The coordinator on a real full disk: its state store lives on a small tmpfs that a ballast
// file fills. Below the space reserve, commands are refused with InsufficientStorage (HTTP
// 507) before anything is applied, nothing is placed, step checkpoints are skipped; a
// commit that fails anyway is held (nothing of it acted on, nothing of it lost) and written
// once space is back, without a restart; workers are not declared lost for the time the
// coordinator did not listen. Driven one RunOnce() at a time (FakeChannel, FakeClock).
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "index/builder.h"
#include "jobs/checkpoint.h"
#include "scheduler/coordinator.h"
#include "scheduler/sweep_spec.h"
#include "store/checkpoint_store.h"
#include "store/index_catalog.h"
#include "tests/testutil/fake_channel.h"
#include "tests/testutil/fake_clock.h"
#include "tests/testutil/testutil.h"
#include "tests/testutil/tmpfs.h"

namespace lattice {
namespace {

using testutil::FakeChannel;
using testutil::FakeClock;

constexpr int kWorkers = 2;
constexpr int kTimeoutMs = 5000;
constexpr int64_t kReserve = int64_t{4} << 20;

WorkerRank W(int r) { return WorkerRank{r}; }

std::string NoopSpec(const std::string& name, int trials) {
  std::string seeds;
  for (int i = 0; i < trials; ++i) seeds += (i ? ", " : "") + std::to_string(i);
  return "name: " + name + "\nkind: noop\nsearch: {method: grid, parameters: {seed: [" + seeds +
         "]}}\n";
}

// A step checkpoint (the coordinator reads only its header line) of about `bytes`.
std::string StepCheckpointBytes(size_t bytes) {
  jobs::CheckpointHeader h;
  h.config = {{"kind", "noop"}};
  h.in_dim = 1;
  h.classes = 2;
  h.metrics = {{"val_loss", 0.5}};
  h.resume = {{"step", 1}};
  return h.ToJson().dump() + "\n" + std::string(bytes, 'w');
}

class DiskFullCoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto mount = testutil::TmpfsMount::Mount(dir_.Join("mnt"), int64_t{32} << 20);
    if (!mount.ok()) GTEST_SKIP() << mount.status().message();
    mount_ = std::move(mount).value();
    OpenStore(StateStoreOptions{}.write_floor_bytes);
  }
  // `write_floor_bytes` 0: RocksDB's own write meets the full disk (the store reopens
  // itself afterwards); else the store refuses the write first.
  void OpenStore(int64_t write_floor_bytes) {
    store_.reset();
    StateStoreOptions options;
    options.path = mount_->Join("state");
    options.sync_writes = true;
    options.write_floor_bytes = write_floor_bytes;
    auto store = StateStore::Open(options);
    ASSERT_OK(store);
    store_ = std::move(store).value();
  }
  void TearDown() override {
    coordinator_.reset();
    store_.reset();
    mount_.reset();  // always unmounted
  }

  // A fresh coordinator (and channel) over the same store, as after a restart.
  void StartCoordinator(int64_t min_free_bytes, IndexBuilder* index_builder = nullptr) {
    coordinator_.reset();
    channel_ = std::make_unique<FakeChannel>(kWorkers + 1);
    registry_ = std::make_unique<prometheus::Registry>();
    metrics_ = std::make_unique<SchedulerMetrics>(*registry_);
    CoordinatorOptions options;
    options.worker_timeout_ms = kTimeoutMs;
    options.keepalive_ms = 1000;
    options.clock = &clock_;
    options.min_free_bytes = min_free_bytes;
    options.index_builder = index_builder;
    coordinator_ =
        std::make_unique<Coordinator>(options, store_.get(), channel_.get(), metrics_.get());
  }

  void Step(int iterations = 1) {
    for (int i = 0; i < iterations; ++i) coordinator_->RunOnce();
  }
  void RegisterWorkers() {
    for (int r = 1; r <= kWorkers; ++r) channel_->Deliver(W(r), RegisterMsg{"h", 1, "cpu"});
    Step();
  }
  scheduler::SweepSpec Spec(const std::string& name, int trials) {
    auto spec = scheduler::ParseSweepSpec(NoopSpec(name, trials));
    EXPECT_OK(spec);
    return std::move(spec).value();
  }
  StatusOr<SweepRecord> TrySubmit(const std::string& name, int trials) {
    auto future = coordinator_->SubmitAsync(Spec(name, trials));
    Step();
    return future.get();
  }
  SweepRecord Submit(const std::string& name, int trials) {
    auto result = TrySubmit(name, trials);
    EXPECT_OK(result);
    return result.ok() ? *result : SweepRecord{};
  }
  std::vector<std::pair<WorkerRank, AssignMsg>> Assigns() {
    return channel_->TakeSentOf<AssignMsg>();
  }
  void Finish(WorkerRank rank, const AssignMsg& a) {
    ResultMsg r;
    r.trial = a.trial;
    r.attempt = a.attempt;
    r.code = StatusCode::kOk;
    r.run_seconds = 1.0;
    r.metrics = {{"loss", 0.25}};
    channel_->Deliver(rank, r);
  }
  void DeliverStepCheckpoint(WorkerRank rank, const AssignMsg& a, int64_t step, size_t bytes) {
    for (auto& piece : SplitCheckpoint(a.trial, a.attempt, step, StepCheckpointBytes(bytes),
                                       /*piece_bytes=*/256 << 10)) {
      channel_->Deliver(rank, std::move(piece));
    }
  }
  TrialRecord Trial(const TrialId& id) {
    auto t = store_->GetTrial(id);
    EXPECT_OK(t);
    return t.ok() ? *t : TrialRecord{};
  }
  SweepRecord Sweep(SweepId id) {
    auto s = store_->GetSweep(id);
    EXPECT_OK(s);
    return s.ok() ? *s : SweepRecord{};
  }
  std::vector<int64_t> StoredSteps(const TrialId& trial) {
    auto infos = CheckpointStore(store_.get()).ListSteps(trial);
    EXPECT_OK(infos);
    std::vector<int64_t> steps;
    if (infos.ok()) {
      for (const auto& info : *infos) steps.push_back(info.step);
    }
    return steps;
  }
  WorkerState StateOf(int rank) {
    for (const auto& v : coordinator_->Workers()) {
      if (v.rank == W(rank)) return v.state;
    }
    return WorkerState::kStarting;
  }
  void ExpectFullError(const Status& s) {
    EXPECT_EQ(s.code(), StatusCode::kInsufficientStorage) << s.ToString();
    EXPECT_NE(s.message().find(mount_->Join("state")), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("free"), std::string::npos) << s.message();
  }

  testutil::TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<testutil::TmpfsMount> mount_;
  std::unique_ptr<StateStore> store_;
  std::unique_ptr<FakeChannel> channel_;
  std::unique_ptr<prometheus::Registry> registry_;
  std::unique_ptr<SchedulerMetrics> metrics_;
  std::unique_ptr<Coordinator> coordinator_;
};

TEST_F(DiskFullCoordinatorTest, BelowTheReserveChangesGet507NothingIsPlacedAndItCarriesOnOnceFreed) {
  StartCoordinator(kReserve);
  RegisterWorkers();
  SweepRecord done = Submit("done", 2);
  for (auto& [rank, a] : Assigns()) Finish(rank, a);
  Step();
  ASSERT_EQ(Sweep(done.id).state, SweepState::kCompleted);
  SweepRecord busy = Submit("busy", 4);  // t0, t1 run; t2, t3 queued
  auto running = Assigns();
  ASSERT_EQ(running.size(), 2u);

  ASSERT_OK(mount_->Fill(2 << 20));  // 2 MiB left: below the 4 MiB reserve (above the store's 1 MiB floor)
  // Every change is refused with the reason, nothing applied.
  auto submitted = TrySubmit("refused", 3);
  ExpectFullError(submitted.status());
  EXPECT_NE(submitted.status().message().find("is full"), std::string::npos);
  auto cancel = coordinator_->CancelAsync(busy.id);
  Step();
  ExpectFullError(cancel.get().status());
  auto resume = coordinator_->ResumeAsync({TrialId{done.id, 0}, std::nullopt, std::nullopt});
  Step();
  ExpectFullError(resume.get().status());
  StorageHealth health = coordinator_->Storage();
  EXPECT_TRUE(health.degraded);
  EXPECT_FALSE(health.commit_held);
  EXPECT_LT(health.free_bytes, kReserve);
  EXPECT_NE(health.reason.find("is full"), std::string::npos) << health.reason;
  ASSERT_OK_AND_ASSIGN(auto sweeps, store_->ListSweeps());
  EXPECT_EQ(sweeps.size(), 2u) << "the refused submit left no sweep behind";
  EXPECT_EQ(Sweep(busy.id).state, SweepState::kRunning) << "the refused cancel changed nothing";

  // A running trial's result still commits (into the reserve), but nothing new is placed.
  Finish(running[0].first, running[0].second);
  Step(3);
  EXPECT_EQ(Trial(running[0].second.trial).state, TrialState::kCompleted);
  EXPECT_TRUE(Assigns().empty()) << "no trial starts below the reserve";
  EXPECT_EQ(Trial(TrialId{busy.id, 2}).state, TrialState::kQueued);

  // Space is back: placement resumes and changes are taken, without a restart.
  mount_->Free();
  Step();
  auto placed = Assigns();
  ASSERT_EQ(placed.size(), 1u);
  EXPECT_EQ(placed[0].second.trial, (TrialId{busy.id, 2}));
  EXPECT_FALSE(coordinator_->Storage().degraded);
  SweepRecord later = Submit("later", 1);
  EXPECT_EQ(Sweep(later.id).state, SweepState::kRunning);

  // After a restart the sweep completed earlier is never run again.
  StartCoordinator(kReserve);
  ASSERT_OK(coordinator_->Recover());
  RegisterWorkers();
  std::map<TrialId, int> attempts;
  for (int round = 0; round < 10; ++round) {
    for (auto& [rank, a] : Assigns()) {
      attempts[a.trial] = a.attempt;
      Finish(rank, a);
    }
    Step();
  }
  for (const auto& [trial, attempt] : attempts) {
    EXPECT_NE(trial.sweep, done.id) << trial.ToString() << " of the completed sweep ran again";
  }
  EXPECT_EQ(attempts.count(running[0].second.trial), 0u) << "its completion was durable";
  EXPECT_EQ(Sweep(done.id).state, SweepState::kCompleted);
  EXPECT_EQ(Sweep(busy.id).state, SweepState::kCompleted);
  EXPECT_EQ(Sweep(later.id).state, SweepState::kCompleted);
  ASSERT_OK_AND_ASSIGN(auto all, store_->ListSweeps());
  EXPECT_EQ(all.size(), 3u);
}

TEST_F(DiskFullCoordinatorTest, ACommitThatFailsMidRunIsHeldAndWrittenOnceSpaceIsBack) {
  OpenStore(/*write_floor_bytes=*/0);
  StartCoordinator(/*min_free_bytes=*/0);  // no reserve: the commit itself hits the full disk
  RegisterWorkers();
  SweepRecord sweep = Submit("held", 2);
  auto running = Assigns();
  ASSERT_EQ(running.size(), 2u);
  const auto [w0, a0] = running[0];
  const auto [w1, a1] = running[1];
  channel_->TakeSent();

  ASSERT_OK(mount_->Fill());  // not one page left
  // A worker's step checkpoint and result arrive: their commit cannot be written.
  DeliverStepCheckpoint(w0, a0, 10, 2 << 20);
  Finish(w0, a0);
  Step();
  StorageHealth health = coordinator_->Storage();
  ASSERT_TRUE(health.commit_held) << "the commit should have failed on the full disk";
  EXPECT_TRUE(health.degraded);
  EXPECT_GT(health.held_bytes, 2 << 20);
  EXPECT_EQ(Trial(a0.trial).state, TrialState::kRunning) << "nothing of it is durable yet";
  EXPECT_TRUE(channel_->TakeSentOf<AssignMsg>().empty()) << "nothing of it is acted on";

  // Held: changes are refused with the reason; worker messages wait; nobody is declared
  // lost however long it takes; keep-alives go on.
  auto refused = TrySubmit("refused", 1);
  ExpectFullError(refused.status());
  channel_->Deliver(w1, HeartbeatMsg{});
  for (int i = 0; i < 6; ++i) {
    clock_.Advance(std::chrono::milliseconds(kTimeoutMs / 2));
    Step();
  }
  EXPECT_GT(channel_->pending(), 0u) << "worker messages wait in the channel";
  EXPECT_FALSE(channel_->TakeSentOf<HeartbeatMsg>().empty()) << "keep-alives go on";
  EXPECT_TRUE(coordinator_->Storage().commit_held);
  EXPECT_EQ(Trial(a0.trial).state, TrialState::kRunning);

  mount_->Free();
  clock_.Advance(std::chrono::milliseconds(2000));
  Step();  // the held commit goes through
  EXPECT_FALSE(coordinator_->Storage().degraded);
  EXPECT_EQ(Trial(a0.trial).state, TrialState::kCompleted) << "the result was not lost";
  EXPECT_EQ(StoredSteps(a0.trial), (std::vector<int64_t>{10})) << "nor its checkpoint";
  Step(3);  // the waiting heartbeat is read
  EXPECT_NE(StateOf(w0.value), WorkerState::kLost);
  EXPECT_NE(StateOf(w1.value), WorkerState::kLost)
      << "silence while the coordinator did not listen proves nothing";

  Finish(w1, a1);
  Step();
  EXPECT_EQ(Sweep(sweep.id).state, SweepState::kCompleted);
  auto again = TrySubmit("again", 1);
  EXPECT_OK(again);

  // After a restart nothing acknowledged runs again.
  StartCoordinator(0);
  ASSERT_OK(coordinator_->Recover());
  RegisterWorkers();
  for (auto& [rank, a] : Assigns()) {
    EXPECT_NE(a.trial.sweep, sweep.id) << a.trial.ToString() << " ran again";
  }
  EXPECT_EQ(Sweep(sweep.id).state, SweepState::kCompleted);
}

TEST_F(DiskFullCoordinatorTest, BelowTheReserveStepCheckpointsAreSkippedAndTheTrialRunsOn) {
  StartCoordinator(kReserve);
  RegisterWorkers();
  SweepRecord sweep = Submit("ckpt", 1);
  auto running = Assigns();
  ASSERT_EQ(running.size(), 1u);
  const auto [rank, a] = running[0];
  ASSERT_OK(mount_->Fill(2 << 20));
  DeliverStepCheckpoint(rank, a, 10, 600 << 10);
  Step();
  EXPECT_TRUE(StoredSteps(a.trial).empty()) << "skipped below the reserve";
  EXPECT_EQ(Trial(a.trial).state, TrialState::kRunning) << "the attempt runs on";
  ASSERT_OK_AND_ASSIGN(auto events, store_->ListEvents(0, 1000));
  bool skipped = false;
  for (const auto& e : events) skipped |= e.value("type", "") == "checkpoint_skipped";
  EXPECT_TRUE(skipped) << "the skip is recorded with its reason";

  mount_->Free();
  DeliverStepCheckpoint(rank, a, 20, 600 << 10);
  Finish(rank, a);
  Step();
  EXPECT_EQ(StoredSteps(a.trial), (std::vector<int64_t>{20}));
  EXPECT_EQ(Trial(a.trial).state, TrialState::kCompleted);
  EXPECT_EQ(Sweep(sweep.id).state, SweepState::kCompleted);
}

// An embed sweep whose index cannot be published for lack of space stays running with the
// reason, keeps its vectors, and publishes once space is back (no restart, no re-embed).
TEST_F(DiskFullCoordinatorTest, AnIndexBuildWithoutSpaceWaitsAndPublishesOnceSpaceIsBack) {
  IndexBuilder builder(store_.get(), mount_->Join("indexes"), {}, kReserve);
  StartCoordinator(kReserve, &builder);
  RegisterWorkers();
  scheduler::SweepSpec spec;
  spec.name = "emb";
  spec.kind = JobKind::kEmbed;
  spec.metric = "loss";
  spec.spec = {{"name", "emb"},
               {"index", {{"name", "emb"}, {"type", "flat"}, {"metric", "l2"},
                          {"params", nlohmann::json::object()},
                          {"eval", {{"queries", 20}, {"k", 10}}}}}};
  spec.points = {nlohmann::json::object()};
  spec.trial_configs = {{{"kind", "embed"}, {"shard", {{"begin", 0}, {"end", 20000}}}}};
  auto future = coordinator_->SubmitAsync(std::move(spec));
  Step();
  ASSERT_OK_AND_ASSIGN(SweepRecord sweep, future.get());
  auto running = Assigns();
  ASSERT_EQ(running.size(), 1u);
  const auto [rank, a] = running[0];
  VectorsMsg vectors;
  vectors.trial = a.trial;
  vectors.attempt = a.attempt;
  vectors.begin = 0;
  vectors.rows = 20000;
  vectors.dim = 32;  // 2.4 MiB: the build wants the reserve plus about 4.7 MiB
  vectors.data.resize(static_cast<size_t>(vectors.rows * vectors.dim));
  for (size_t i = 0; i < vectors.data.size(); ++i) vectors.data[i] = static_cast<float>(i % 911);
  // 8 MiB left: the shard (2.4 MiB) still fits above the reserve, the index does not.
  ASSERT_OK(mount_->Fill(int64_t{8} << 20));
  channel_->Deliver(rank, vectors);
  Finish(rank, a);
  Step();  // the shard is stored; the build starts
  ASSERT_EQ(Trial(a.trial).state, TrialState::kCompleted);
  auto collect = [&] {
    ASSERT_TRUE(testutil::WaitFor([&] { return !builder.Busy(); }, std::chrono::seconds(60),
                                  std::chrono::milliseconds(10)));
    Step();
  };
  collect();
  SweepRecord held = Sweep(sweep.id);
  EXPECT_EQ(held.state, SweepState::kRunning) << held.message;
  EXPECT_NE(held.message.find("waiting for disk space"), std::string::npos) << held.message;
  ASSERT_OK_AND_ASSIGN(auto catalog, store::IndexCatalog::Open(mount_->Join("indexes")));
  EXPECT_EQ(catalog->Current("emb").status().code(), StatusCode::kNotFound);

  mount_->Free();
  clock_.Advance(std::chrono::milliseconds(5000));
  Step();  // started again
  collect();
  SweepRecord done = Sweep(sweep.id);
  EXPECT_EQ(done.state, SweepState::kCompleted) << done.message;
  EXPECT_OK(catalog->Current("emb"));
  EXPECT_EQ(Trial(a.trial).attempts, 1) << "the shard was not embedded again";
}

}  // namespace
}  // namespace lattice
