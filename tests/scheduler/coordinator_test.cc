// The coordinator's scheduling logic, driven one RunOnce() at a time through an in-memory
// control channel and a fake clock: placement, pipelining, max_concurrent_trials, worker
// loss, stale attempts, failure classification, recovery and cancel. No MPI, no threads,
// no waiting on real time; the state store is a real RocksDB.
#include "scheduler/coordinator.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <atomic>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "jobs/checkpoint.h"
#include "scheduler/sweep_routes.h"
#include "scheduler/sweep_spec.h"
#include "store/checkpoint_store.h"
#include "tests/testutil/fake_channel.h"
#include "tests/testutil/fake_clock.h"
#include "tests/testutil/testutil.h"

namespace lattice {
namespace {

using testutil::FakeChannel;
using testutil::FakeClock;

constexpr int kWorkers = 3;
constexpr int kTimeoutMs = 5000;
constexpr int kDrainGraceMs = 20000;
constexpr int kQueuedInMemory = kWorkers;  // the first iteration can fill every worker

WorkerRank W(int r) { return WorkerRank{r}; }

// A noop sweep of `trials` grid points (seed 0..trials-1) plus `extra` spec lines.
std::string NoopSpec(const std::string& name, int trials, const std::string& extra = "") {
  std::string seeds;
  for (int i = 0; i < trials; ++i) seeds += (i ? ", " : "") + std::to_string(i);
  return "name: " + name + "\nkind: noop\n" + extra +
         "search: {method: grid, parameters: {seed: [" + seeds + "]}}\n";
}

class CoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = StateStore::Open({dir_.Join("state"), /*sync_writes=*/false});
    ASSERT_OK(store);
    store_ = std::move(store).value();
    StartCoordinator();
  }

  // A fresh coordinator (and channel) over the same store, as after a restart.
  void StartCoordinator(int keepalive_ms = 0) {
    coordinator_.reset();
    channel_ = std::make_unique<FakeChannel>(kWorkers + 1);
    registry_ = std::make_unique<prometheus::Registry>();
    metrics_ = std::make_unique<SchedulerMetrics>(*registry_);
    CoordinatorOptions options;
    options.worker_timeout_ms = kTimeoutMs;
    options.clock = &clock_;
    options.keepalive_ms = keepalive_ms;
    options.stop_signals = &stop_signals_;
    options.drain_grace_ms = kDrainGraceMs;
    // Small, so that every test also reads queued trials back from the store.
    options.queued_records_in_memory = kQueuedInMemory;
    coordinator_ = std::make_unique<Coordinator>(options, store_.get(), channel_.get(), metrics_.get());
  }

  // Closes the coordinator and the store, and opens both again (as after a restart).
  void ReopenStore() {
    coordinator_.reset();
    store_.reset();
    auto store = StateStore::Open({dir_.Join("state"), /*sync_writes=*/false});
    ASSERT_OK(store);
    store_ = std::move(store).value();
    StartCoordinator();
  }

  void Step(int iterations = 1) {
    for (int i = 0; i < iterations; ++i) coordinator_->RunOnce();
  }

  void RegisterWorkers(int n = kWorkers) {
    for (int r = 1; r <= n; ++r) channel_->Deliver(W(r), RegisterMsg{"host" + std::to_string(r), 1, "cpu"});
    Step();
  }

  SweepRecord Submit(const std::string& spec_text) {
    auto spec = scheduler::ParseSweepSpec(spec_text);
    EXPECT_OK(spec);
    return Submit(std::move(spec).value());
  }

  SweepRecord Submit(scheduler::SweepSpec spec) {
    auto future = coordinator_->SubmitAsync(std::move(spec));
    Step();  // commits the sweep and places what fits
    auto result = future.get();
    EXPECT_OK(result);
    return result.ok() ? *result : SweepRecord{};
  }

  std::vector<std::pair<WorkerRank, AssignMsg>> Assigns() { return channel_->TakeSentOf<AssignMsg>(); }

  // A worker sends a checkpoint the way workers do: in pieces (SplitCheckpoint).
  void DeliverCheckpoint(WorkerRank rank, const TrialId& trial, int attempt, std::string bytes,
                         int64_t step, int64_t piece_bytes = kCheckpointPieceBytes) {
    for (auto& piece : SplitCheckpoint(trial, attempt, step, std::move(bytes), piece_bytes)) {
      channel_->Deliver(rank, std::move(piece));
    }
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

  void Finish(WorkerRank rank, const AssignMsg& a, StatusCode code = StatusCode::kOk,
              double run_seconds = 1.0) {
    ResultMsg r;
    r.trial = a.trial;
    r.attempt = a.attempt;
    r.code = code;
    r.run_seconds = run_seconds;
    if (code == StatusCode::kOk) r.metrics = {{"loss", 0.5}};
    if (code != StatusCode::kOk) r.error = std::string("failed: ") + StatusCodeName(code);
    channel_->Deliver(rank, r);
  }

  TrialRecord Trial(SweepId sweep, uint32_t index) {
    auto t = store_->GetTrial(TrialId{sweep, index});
    EXPECT_OK(t);
    return t.ok() ? *t : TrialRecord{};
  }

  SweepRecord Sweep(SweepId id) {
    auto s = store_->GetSweep(id);
    EXPECT_OK(s);
    return s.ok() ? *s : SweepRecord{};
  }

  WorkerView View(int rank) {
    for (const auto& v : coordinator_->Workers()) {
      if (v.rank == W(rank)) return v;
    }
    ADD_FAILURE() << "no worker view for rank " << rank;
    return {};
  }

  testutil::TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<StateStore> store_;
  std::unique_ptr<FakeChannel> channel_;
  std::unique_ptr<prometheus::Registry> registry_;
  std::unique_ptr<SchedulerMetrics> metrics_;
  std::unique_ptr<Coordinator> coordinator_;
  std::atomic<int> stop_signals_{0};  // what the signal handler counts (SIGTERM, ...)
};

TEST_F(CoordinatorTest, NothingIsAssignedToWorkersThatHaveNotRegistered) {
  SweepRecord sweep = Submit(NoopSpec("wait", 2));
  Step(3);
  EXPECT_TRUE(Assigns().empty());
  EXPECT_EQ(View(1).state, WorkerState::kStarting);
  RegisterWorkers(1);
  auto assigns = Assigns();
  ASSERT_EQ(assigns.size(), 1u);
  EXPECT_EQ(assigns[0].first, W(1));
  EXPECT_EQ(assigns[0].second.trial, (TrialId{sweep.id, 0}));
}

TEST_F(CoordinatorTest, PlacesOneTrialPerIdleWorkerInGridOrderAndCommitsBeforeSending) {
  RegisterWorkers();
  SweepRecord sweep = Submit(NoopSpec("grid", 5));
  auto assigns = Assigns();
  ASSERT_EQ(assigns.size(), 3u);
  std::set<int> ranks;
  for (uint32_t i = 0; i < 3; ++i) {
    ranks.insert(assigns[i].first.value);
    EXPECT_EQ(assigns[i].second.trial, (TrialId{sweep.id, i}));
    EXPECT_EQ(assigns[i].second.attempt, 1);
    // What was sent is already durable: the store says running there, attempt 1.
    TrialRecord t = Trial(sweep.id, i);
    EXPECT_EQ(t.state, TrialState::kRunning);
    EXPECT_EQ(t.attempts, 1);
    EXPECT_EQ(t.worker, assigns[i].first);
  }
  EXPECT_EQ(ranks, (std::set<int>{1, 2, 3}));
  EXPECT_EQ(Trial(sweep.id, 3).state, TrialState::kQueued);

  // A result frees its worker, which gets the next trial in grid order.
  Finish(assigns[1].first, assigns[1].second);
  Step();
  auto next = Assigns();
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].first, assigns[1].first);
  EXPECT_EQ(next[0].second.trial, (TrialId{sweep.id, 3}));
  EXPECT_EQ(Trial(sweep.id, 1).state, TrialState::kCompleted);
  EXPECT_EQ(Trial(sweep.id, 1).metrics.at("loss"), 0.5);
}

TEST_F(CoordinatorTest, MaxConcurrentTrialsCapsRunningTrialsOfTheSweep) {
  RegisterWorkers();
  SweepRecord sweep = Submit(NoopSpec("capped", 6, "max_concurrent_trials: 2\n"));
  int completed = 0;
  auto running = Assigns();
  while (completed < 6) {
    ASSERT_LE(running.size(), 2u);
    ASSERT_FALSE(running.empty()) << "nothing running after " << completed << " completed";
    // A third idle worker exists, but the cap holds it back.
    Finish(running[0].first, running[0].second);
    running.erase(running.begin());
    ++completed;
    Step();
    for (auto& a : Assigns()) running.push_back(a);
  }
  EXPECT_EQ(Sweep(sweep.id).state, SweepState::kCompleted);
}

TEST_F(CoordinatorTest, ShortTrialsArePipelinedLongOnesAreNot) {
  RegisterWorkers(1);
  SweepRecord fast = Submit(NoopSpec("fast", 30));
  std::vector<AssignMsg> inflight;
  size_t max_inflight = 0;
  int done = 0;
  for (int round = 0; round < 60 && done < 30; ++round) {
    for (auto& [rank, a] : Assigns()) {
      EXPECT_EQ(rank, W(1));
      inflight.push_back(a);
    }
    max_inflight = std::max(max_inflight, inflight.size());
    ASSERT_FALSE(inflight.empty());
    Finish(W(1), inflight.front(), StatusCode::kOk, /*run_seconds=*/0.001);
    inflight.erase(inflight.begin());
    ++done;
    Step();
  }
  EXPECT_EQ(done, 30);
  EXPECT_EQ(Sweep(fast.id).state, SweepState::kCompleted);
  // 1 ms trials: once three samples say so, the worker holds up to max_pipeline (8).
  EXPECT_EQ(max_inflight, 8u);

  SweepRecord slow = Submit(NoopSpec("slow", 6));
  for (int i = 0; i < 6; ++i) {
    auto assigns = Assigns();
    ASSERT_EQ(assigns.size(), 1u) << "a 1 s trial must never wait behind another";
    Finish(W(1), assigns[0].second, StatusCode::kOk, /*run_seconds=*/1.0);
    Step();
  }
  EXPECT_EQ(Sweep(slow.id).state, SweepState::kCompleted);
}

TEST_F(CoordinatorTest, SilentWorkerIsLostAfterTheTimeoutAndItsTrialRunsElsewhere) {
  RegisterWorkers(2);
  SweepRecord sweep = Submit(NoopSpec("lost", 2));
  auto assigns = Assigns();
  ASSERT_EQ(assigns.size(), 2u);
  auto on_w1 = assigns[0].first == W(1) ? assigns[0].second : assigns[1].second;
  auto on_w2 = assigns[0].first == W(2) ? assigns[0].second : assigns[1].second;
  Finish(W(2), on_w2);
  Step();

  // Just below the timeout nothing happens; w2 keeps talking, w1 stays silent.
  clock_.Advance(std::chrono::milliseconds(kTimeoutMs - 10));
  channel_->Deliver(W(2), HeartbeatMsg{});
  Step();
  EXPECT_EQ(View(1).state, WorkerState::kBusy);
  EXPECT_TRUE(Assigns().empty());

  clock_.Advance(std::chrono::milliseconds(20));
  Step();
  EXPECT_EQ(View(1).state, WorkerState::kLost);
  auto retry = Assigns();
  ASSERT_EQ(retry.size(), 1u);
  EXPECT_EQ(retry[0].first, W(2));
  EXPECT_EQ(retry[0].second.trial, on_w1.trial);
  EXPECT_EQ(retry[0].second.attempt, 2);
  EXPECT_EQ(metrics_->trials_retried.Value(), 1);
  TrialRecord t = Trial(sweep.id, on_w1.trial.index);
  EXPECT_EQ(t.state, TrialState::kRunning);
  EXPECT_EQ(t.worker, W(2));
  EXPECT_EQ(t.error, "worker w1 lost");
}

TEST_F(CoordinatorTest, LateMessagesOfAnAbandonedAttemptAreDropped) {
  RegisterWorkers(2);
  SweepRecord sweep = Submit(NoopSpec("late", 1));
  auto first = Assigns();
  ASSERT_EQ(first.size(), 1u);
  const WorkerRank slow = first[0].first;
  const WorkerRank other = slow == W(1) ? W(2) : W(1);
  clock_.Advance(std::chrono::milliseconds(kTimeoutMs + 1));
  channel_->Deliver(other, HeartbeatMsg{});
  Step();
  auto second = Assigns();
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].first, other);
  EXPECT_EQ(second[0].second.attempt, 2);

  // The lost worker wakes up and reports attempt 1: progress and a failed result.
  channel_->Deliver(slow, ProgressMsg{first[0].second.trial, 1, 7, {{"loss", 9.0}}});
  Finish(slow, first[0].second, StatusCode::kInvalidArgument);
  Step();
  TrialRecord t = Trial(sweep.id, 0);
  EXPECT_EQ(t.state, TrialState::kRunning) << "a stale permanent failure must not fail the trial";
  EXPECT_EQ(t.attempts, 2);
  EXPECT_EQ(t.epochs_done, 0) << "stale progress must not be recorded";
  EXPECT_EQ(View(slow.value).state, WorkerState::kIdle) << "a lost worker that speaks is back";

  // Its own report of attempt 1 succeeding is just as stale.
  Finish(slow, first[0].second, StatusCode::kOk);
  Step();
  EXPECT_EQ(Trial(sweep.id, 0).state, TrialState::kRunning);

  Finish(other, second[0].second);
  Step();
  EXPECT_EQ(Trial(sweep.id, 0).state, TrialState::kCompleted);
  EXPECT_EQ(Sweep(sweep.id).state, SweepState::kCompleted);
}

TEST_F(CoordinatorTest, HeartbeatForATaskTheCoordinatorDoesNotWantGetsACancel) {
  RegisterWorkers(1);
  SweepRecord sweep = Submit(NoopSpec("hb", 1));
  auto assigns = Assigns();
  ASSERT_EQ(assigns.size(), 1u);
  channel_->Deliver(W(1), HeartbeatMsg{assigns[0].second.trial, 1000, 0, 0, ""});
  Step();
  EXPECT_TRUE(channel_->TakeSentOf<CancelMsg>().empty());
  TrialId unknown{sweep.id, 99};
  channel_->Deliver(W(1), HeartbeatMsg{unknown, 1000, 0, 0, ""});
  Step();
  auto cancels = channel_->TakeSentOf<CancelMsg>();
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0].first, W(1));
  EXPECT_EQ(cancels[0].second.trial, unknown);
}

TEST_F(CoordinatorTest, ResultCodesFollowTheStateMachinesClassification) {
  RegisterWorkers(1);
  SweepRecord sweep = Submit(NoopSpec("codes", 3, "max_attempts: 2\n"));
  // t0: permanent (bad config) -> failed at once.
  auto a = Assigns();
  ASSERT_EQ(a.size(), 1u);
  Finish(W(1), a[0].second, StatusCode::kInvalidArgument);
  Step();
  EXPECT_EQ(Trial(sweep.id, 0).state, TrialState::kFailed);
  EXPECT_EQ(Trial(sweep.id, 0).attempts, 1);
  EXPECT_EQ(Trial(sweep.id, 0).error, "failed: InvalidArgument");

  // t1: retryable (I/O) -> queued again until max_attempts, then failed.
  a = Assigns();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].second.trial, (TrialId{sweep.id, 1}));
  Finish(W(1), a[0].second, StatusCode::kIoError);
  Step();
  a = Assigns();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].second.trial, (TrialId{sweep.id, 1}));
  EXPECT_EQ(a[0].second.attempt, 2);
  Finish(W(1), a[0].second, StatusCode::kIoError);
  Step();
  EXPECT_EQ(Trial(sweep.id, 1).state, TrialState::kFailed);

  // t2: the worker stopped it (cancelled, e.g. shutdown) -> queued again.
  a = Assigns();
  ASSERT_EQ(a.size(), 1u);
  Finish(W(1), a[0].second, StatusCode::kCancelled);
  Step();
  a = Assigns();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].second.trial, (TrialId{sweep.id, 2}));
  EXPECT_EQ(a[0].second.attempt, 2);
  Finish(W(1), a[0].second);
  Step();
  EXPECT_EQ(Sweep(sweep.id).state, SweepState::kCompleted);
  EXPECT_EQ(metrics_->trials_failed.Value(), 2);
}

TEST_F(CoordinatorTest, MalformedMessagesAreDroppedAndTheLoopGoesOn) {
  RegisterWorkers(1);
  channel_->DeliverRaw(W(1), MessageType::kResult, "{not json");
  channel_->DeliverRaw(W(1), static_cast<MessageType>(77), "{}");
  SweepRecord sweep = Submit(NoopSpec("garbage", 1));
  auto a = Assigns();
  ASSERT_EQ(a.size(), 1u);
  Finish(W(1), a[0].second);
  Step();
  EXPECT_EQ(Sweep(sweep.id).state, SweepState::kCompleted);
}

TEST_F(CoordinatorTest, RecoveryRequeuesInterruptedTrialsAndNeverRerunsFinishedOnes) {
  RegisterWorkers(2);
  SweepRecord sweep = Submit(NoopSpec("restart", 4));
  auto a = Assigns();
  ASSERT_EQ(a.size(), 2u);
  Finish(a[0].first, a[0].second);  // t0 completes; t1 is running when the coordinator dies
  Step();
  auto b = Assigns();  // t2 goes to the freed worker
  ASSERT_EQ(b.size(), 1u);

  StartCoordinator();  // "crash": nothing of the old coordinator's memory survives
  ASSERT_OK(coordinator_->Recover());
  EXPECT_EQ(Trial(sweep.id, 0).state, TrialState::kCompleted);
  for (uint32_t i : {1u, 2u}) {
    TrialRecord t = Trial(sweep.id, i);
    EXPECT_EQ(t.state, TrialState::kQueued) << i;
    EXPECT_EQ(t.attempts, 1) << i;
    EXPECT_EQ(t.error, "coordinator restarted");
  }
  RegisterWorkers(2);
  std::map<uint32_t, int> attempts;
  for (int round = 0; round < 10; ++round) {
    for (auto& [rank, m] : Assigns()) {
      attempts[m.trial.index] = m.attempt;
      Finish(rank, m);
    }
    Step();
  }
  EXPECT_EQ(attempts, (std::map<uint32_t, int>{{1, 2}, {2, 2}, {3, 1}}))
      << "t0 must not run again; t1 and t2 run as attempt 2";
  EXPECT_EQ(Sweep(sweep.id).state, SweepState::kCompleted);
}

TEST_F(CoordinatorTest, CancelStopsRunningTrialsDropsQueuedOnesAndIgnoresTheirLateResults) {
  RegisterWorkers(2);
  SweepRecord sweep = Submit(NoopSpec("cancel", 5));
  auto running = Assigns();
  ASSERT_EQ(running.size(), 2u);
  auto future = coordinator_->CancelAsync(sweep.id);
  Step();
  auto cancelled = future.get();
  ASSERT_OK(cancelled);
  EXPECT_EQ(cancelled->state, SweepState::kCancelled);
  auto cancels = channel_->TakeSentOf<CancelMsg>();
  ASSERT_EQ(cancels.size(), 2u);
  std::set<int> cancelled_ranks = {cancels[0].first.value, cancels[1].first.value};
  EXPECT_EQ(cancelled_ranks, (std::set<int>{1, 2}));
  for (uint32_t i = 0; i < 5; ++i) EXPECT_EQ(Trial(sweep.id, i).state, TrialState::kCancelled) << i;
  EXPECT_EQ(Sweep(sweep.id).state, SweepState::kCancelled);

  // The workers answer with Cancelled results: nothing is re-queued or re-assigned.
  for (auto& [rank, m] : running) Finish(rank, m, StatusCode::kCancelled);
  Step(3);
  EXPECT_TRUE(Assigns().empty());
  EXPECT_EQ(View(1).state, WorkerState::kIdle);
  EXPECT_EQ(View(2).state, WorkerState::kIdle);
  EXPECT_EQ(metrics_->trials_cancelled.Value(), 5);

  // A second cancel names the state it is already in.
  auto again = coordinator_->CancelAsync(sweep.id);
  Step();
  auto second = again.get();
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("already cancelled"), std::string::npos);
}

TEST_F(CoordinatorTest, KeepAlivesGoToLiveWorkersAndTaskRestartsShowInTheView) {
  StartCoordinator(/*keepalive_ms=*/1000);
  channel_->Deliver(W(1), RegisterMsg{"host1", 1, "cpu", 4242});
  Step();  // worker 2 never registers: it gets no keep-alive
  channel_->TakeSent();
  clock_.Advance(std::chrono::milliseconds(1000));
  Step();
  auto beats = channel_->TakeSentOf<HeartbeatMsg>();
  ASSERT_EQ(beats.size(), 1u);
  EXPECT_EQ(beats[0].first, W(1));
  Step();
  EXPECT_TRUE(channel_->TakeSentOf<HeartbeatMsg>().empty()) << "one per interval";

  HeartbeatMsg beat;
  beat.task_restarts = 1;
  beat.fault = "task process killed by signal 11 (Segmentation fault) while running s1-t0";
  channel_->Deliver(W(1), beat);
  Step();
  EXPECT_EQ(View(1).pid, 4242);
  EXPECT_EQ(View(1).task_restarts, 1);
  EXPECT_EQ(View(1).fault, beat.fault);
  ASSERT_OK_AND_ASSIGN(auto events, store_->ListEvents(0, 100));
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back()["type"], "worker_task_process_restarted");

  // Lost: the view says why, and the keep-alives go on (a stopped worker may wake up).
  clock_.Advance(std::chrono::milliseconds(kTimeoutMs + 1));
  Step();
  EXPECT_EQ(View(1).state, WorkerState::kLost);
  EXPECT_EQ(View(1).lost_reason.rfind("no message for ", 0), 0u) << View(1).lost_reason;
  EXPECT_EQ(channel_->TakeSentOf<HeartbeatMsg>().size(), 1u);
}

// A step checkpoint with val_loss `loss` (the coordinator reads only the header).
std::string StepCheckpoint(double loss) {
  jobs::CheckpointHeader h;
  h.config = {{"kind", "noop"}};
  h.in_dim = 1;
  h.classes = 2;
  h.metrics = {{"val_loss", loss}};
  h.resume = {{"step", 1}};
  return h.ToJson().dump() + "\n" + "archive bytes";
}

TEST_F(CoordinatorTest, StepCheckpointsAreStoredPrunedAndResumedFrom) {
  RegisterWorkers(2);
  // The policy as a train or distill trial's config carries it (noop jobs take none).
  ASSERT_OK_AND_ASSIGN(scheduler::SweepSpec spec, scheduler::ParseSweepSpec(NoopSpec("ckpt", 1)));
  spec.trial_configs[0]["checkpoint"] = {{"every_steps", 10}, {"keep_last", 2}, {"keep_best", 1}};
  SweepRecord sweep = Submit(std::move(spec));
  auto a = Assigns();
  ASSERT_EQ(a.size(), 1u);
  const WorkerRank first = a[0].first;
  const TrialId trial = a[0].second.trial;
  // 20 checkpoints; the best val_loss (0.05) is at step 70.
  for (int64_t i = 1; i <= 20; ++i) {
    double loss = i == 7 ? 0.05 : 1.0 + 0.01 * static_cast<double>(i);
    DeliverCheckpoint(first, trial, 1, StepCheckpoint(loss), i * 10);
    Step();
  }
  EXPECT_EQ(StoredSteps(trial), (std::vector<int64_t>{70, 190, 200})) << "keep_last 2 + keep_best 1";
  ASSERT_OK_AND_ASSIGN(auto manifests, store_->ScanKeys("checkpoints", trial.Key() + "/step/"));
  ASSERT_OK_AND_ASSIGN(auto chunks, store_->ScanKeys("checkpoints", trial.Key() + "/chunk/"));
  EXPECT_EQ(manifests.size() + chunks.size(), 6u)
      << "3 manifests and their 3 chunks: no orphaned checkpoint key";
  ASSERT_OK_AND_ASSIGN(auto pruned, CheckpointStore(store_.get()).ListPruned(trial));
  ASSERT_EQ(pruned.size(), 17u) << "the listing remembers what retention deleted";
  EXPECT_EQ(pruned[0].first, 10);
  EXPECT_EQ(pruned[0].second["metrics"]["val_loss"], 1.01);

  // A stale attempt's checkpoint is dropped.
  DeliverCheckpoint(first, trial, 7, StepCheckpoint(0.01), 999);
  Step();
  EXPECT_EQ(StoredSteps(trial).back(), 200);

  // The worker goes silent: attempt 2 runs elsewhere and resumes from step 200.
  const WorkerRank other = first == W(1) ? W(2) : W(1);
  clock_.Advance(std::chrono::milliseconds(kTimeoutMs + 1));
  channel_->Deliver(other, HeartbeatMsg{});
  Step();
  auto sent = channel_->TakeSent();
  ASSERT_EQ(sent.size(), 2u);
  auto* resume = std::get_if<CheckpointMsg>(&sent[0].second);
  ASSERT_NE(resume, nullptr) << "the resume checkpoint goes before the Assign";
  EXPECT_EQ(sent[0].first, other);
  EXPECT_EQ(resume->step, 200);
  EXPECT_EQ(resume->attempt, 2);
  EXPECT_EQ(resume->bytes, StepCheckpoint(1.20));
  auto* assign = std::get_if<AssignMsg>(&sent[1].second);
  ASSERT_NE(assign, nullptr);
  EXPECT_EQ(assign->attempt, 2);

  // After a restart the stored checkpoints are found again.
  StartCoordinator();
  ASSERT_OK(coordinator_->Recover());
  RegisterWorkers(1);
  sent = channel_->TakeSent();
  ASSERT_GE(sent.size(), 2u);
  resume = std::get_if<CheckpointMsg>(&sent[0].second);
  ASSERT_NE(resume, nullptr);
  EXPECT_EQ(resume->step, 200);
  EXPECT_EQ(resume->attempt, 3);
  EXPECT_EQ(Sweep(sweep.id).state, SweepState::kRunning);
}

// --- Draining on a stop signal (Slurm requeue / preemption / time limit) ----------------

// What a draining worker answers for a task it stopped.
ResultMsg Preempted(const AssignMsg& a, const std::string& why = "preempted in epoch 2") {
  ResultMsg r{a.trial, a.attempt, StatusCode::kCancelled, {}, 1, why, 2.0};
  r.preempted = true;
  return r;
}

// A checkpointing sweep: 5 trials on 3 workers. The first signal drains: no new placement,
// Drain to every worker, the running trials' last checkpoints stored and the trials queued
// again without spending an attempt; the coordinator is drained when none runs. A restart
// resumes them from those checkpoints, and every grid point completes exactly once.
TEST_F(CoordinatorTest, FirstStopSignalDrainsRunningTrialsWhichResumeAfterARestart) {
  RegisterWorkers();
  ASSERT_OK_AND_ASSIGN(scheduler::SweepSpec spec, scheduler::ParseSweepSpec(NoopSpec("drain", 5)));
  for (auto& config : spec.trial_configs) config["checkpoint"] = {{"every_steps", 10}};
  SweepRecord sweep = Submit(std::move(spec));
  std::map<WorkerRank, AssignMsg> running;
  for (auto& [rank, a] : Assigns()) running[rank] = a;
  ASSERT_EQ(running.size(), 3u);
  DeliverCheckpoint(W(1), running[W(1)].trial, 1, StepCheckpoint(1.0), 10);  // a regular one
  Step();

  stop_signals_ = 1;  // SIGTERM
  Step();
  auto drains = channel_->TakeSentOf<DrainMsg>();
  ASSERT_EQ(drains.size(), 3u) << "every registered worker is told to drain";
  EXPECT_FALSE(coordinator_->Drained());
  // Worker 1 checkpoints where it stopped (step 17, off the every_steps grid), then answers;
  // worker 2's trial happened to finish; worker 3 still works.
  DeliverCheckpoint(W(1), running[W(1)].trial, 1, StepCheckpoint(0.9), 17);
  channel_->Deliver(W(1), Preempted(running[W(1)]));
  Finish(W(2), running[W(2)]);
  Step();
  EXPECT_TRUE(Assigns().empty()) << "a draining coordinator places nothing";
  EXPECT_FALSE(coordinator_->Drained());
  TrialRecord t1 = Trial(sweep.id, running[W(1)].trial.index);
  EXPECT_EQ(t1.state, TrialState::kQueued);
  EXPECT_EQ(t1.attempts, 1);
  EXPECT_EQ(t1.preemptions, 1);
  EXPECT_EQ(StoredSteps(t1.id), (std::vector<int64_t>{10, 17}));
  EXPECT_EQ(Trial(sweep.id, running[W(2)].trial.index).state, TrialState::kCompleted);
  channel_->Deliver(W(3), Preempted(running[W(3)], "noop cancelled"));
  Step();
  EXPECT_TRUE(coordinator_->Drained());
  EXPECT_EQ(Trial(sweep.id, running[W(3)].trial.index).state, TrialState::kQueued);
  EXPECT_TRUE(Assigns().empty());
  coordinator_->Stop();
  EXPECT_EQ(channel_->TakeSentOf<ShutdownMsg>().size(), static_cast<size_t>(kWorkers));
  EXPECT_EQ(Sweep(sweep.id).state, SweepState::kRunning);

  // The requeued job starts again on the same data directory.
  stop_signals_ = 0;
  StartCoordinator();
  ASSERT_OK(coordinator_->Recover());
  RegisterWorkers();
  std::map<TrialId, int> runs;  // grid point -> times it was assigned
  for (int round = 0; round < 3; ++round) {
    for (auto& [rank, m] : channel_->TakeSent()) {
      if (const auto* c = std::get_if<CheckpointMsg>(&m)) {
        EXPECT_EQ(c->trial, t1.id) << "only the checkpointed trial resumes";
        EXPECT_EQ(c->step, 17) << "from the checkpoint written when it was drained";
        EXPECT_EQ(c->attempt, 2);
        continue;
      }
      const auto* a = std::get_if<AssignMsg>(&m);
      if (a == nullptr) continue;
      EXPECT_NE(a->trial, running[W(2)].trial) << "a completed trial never runs again";
      ++runs[a->trial];
      channel_->Deliver(rank, ResultMsg{a->trial, a->attempt, StatusCode::kOk, {{"loss", 0.1}},
                                        1, "", 1.0});
    }
    Step();
  }
  EXPECT_EQ(runs.size(), 4u) << "the 2 drained trials and the 2 that never started";
  for (const auto& [trial, n] : runs) EXPECT_EQ(n, 1) << trial.ToString();
  for (uint32_t i = 0; i < 5; ++i) {
    TrialRecord t = Trial(sweep.id, i);
    EXPECT_EQ(t.state, TrialState::kCompleted) << t.id.ToString();
    EXPECT_EQ(t.attempts - t.preemptions, 1) << t.id.ToString() << ": one attempt spent";
  }
  EXPECT_EQ(Sweep(sweep.id).state, SweepState::kCompleted);
}

TEST_F(CoordinatorTest, DrainGraceRunningOutCommitsTheUnreportedTrialsAsPreempted) {
  RegisterWorkers(2);
  SweepRecord sweep = Submit(NoopSpec("slow", 3));
  auto assigns = Assigns();
  ASSERT_EQ(assigns.size(), 2u);
  coordinator_->RequestDrain();  // what the first signal does
  Step();
  EXPECT_EQ(channel_->TakeSentOf<DrainMsg>().size(), 2u);
  // The workers stay alive (heartbeats about their tasks) but never answer.
  auto wait = [&](int ms) {
    for (int left = ms; left > 0; left -= 1000) {
      clock_.Advance(std::chrono::milliseconds(std::min(left, 1000)));
      for (const auto& [rank, a] : assigns) {
        HeartbeatMsg beat;
        beat.trial = a.trial;
        channel_->Deliver(rank, beat);
      }
      Step();
    }
  };
  wait(kDrainGraceMs - 1);
  EXPECT_FALSE(coordinator_->Drained());
  wait(2);
  EXPECT_TRUE(coordinator_->Drained());
  for (const auto& [rank, a] : assigns) {
    TrialRecord t = Trial(sweep.id, a.trial.index);
    EXPECT_EQ(t.state, TrialState::kQueued) << t.id.ToString();
    EXPECT_EQ(t.preemptions, 1);
    EXPECT_EQ(t.error, "preempted: no result within the drain grace period");
  }
  // A Result that comes after is of an attempt given up on: dropped.
  Finish(assigns[0].first, assigns[0].second);
  Step();
  EXPECT_EQ(Trial(sweep.id, assigns[0].second.trial.index).state, TrialState::kQueued);
}

TEST_F(CoordinatorTest, SecondStopSignalStopsAtOnceWithRunningTrialsQueuedAgain) {
  RegisterWorkers(2);
  SweepRecord sweep = Submit(NoopSpec("stop", 2));
  ASSERT_EQ(Assigns().size(), 2u);
  stop_signals_ = 2;  // two SIGTERMs (or USR1, then Slurm's SIGTERM) before the loop ran
  coordinator_->Run();  // returns at once
  EXPECT_EQ(channel_->TakeSentOf<ShutdownMsg>().size(), static_cast<size_t>(kWorkers));
  for (uint32_t i = 0; i < 2; ++i) {
    TrialRecord t = Trial(sweep.id, i);
    EXPECT_EQ(t.state, TrialState::kQueued);
    EXPECT_EQ(t.preemptions, 1);
  }
  stop_signals_ = 0;
  StartCoordinator();  // after a restart both run again, attempt 2
  ASSERT_OK(coordinator_->Recover());
  RegisterWorkers(2);
  auto again = Assigns();
  ASSERT_EQ(again.size(), 2u);
  for (const auto& [rank, a] : again) EXPECT_EQ(a.attempt, 2);
}

TEST_F(CoordinatorTest, RunReturnsOnceTheDrainEnds) {
  RegisterWorkers(1);
  SweepRecord sweep = Submit(NoopSpec("run", 2));
  auto assigns = Assigns();
  ASSERT_EQ(assigns.size(), 1u);
  channel_->Deliver(W(1), Preempted(assigns[0].second));  // the worker was signalled too
  stop_signals_ = 1;
  coordinator_->Run();
  EXPECT_TRUE(coordinator_->Drained());
  EXPECT_EQ(Trial(sweep.id, 0).state, TrialState::kQueued);
  EXPECT_EQ(Trial(sweep.id, 1).state, TrialState::kQueued) << "never placed while draining";
  EXPECT_TRUE(Assigns().empty());
}

// A worker that preempts its task while the coordinator is not draining got a stop signal of
// its own: its trial runs elsewhere and it gets no new task.
TEST_F(CoordinatorTest, AWorkerDrainingOnItsOwnGetsNoNewTask) {
  RegisterWorkers(2);
  SweepRecord sweep = Submit(NoopSpec("one", 3));
  std::map<WorkerRank, AssignMsg> running;
  for (auto& [rank, a] : Assigns()) running[rank] = a;
  ASSERT_EQ(running.size(), 2u);
  channel_->Deliver(W(1), Preempted(running[W(1)]));
  Step(3);
  EXPECT_TRUE(Assigns().empty()) << "worker 1 is stopping; worker 2 is busy";
  EXPECT_EQ(Trial(sweep.id, running[W(1)].trial.index).state, TrialState::kQueued);
  Finish(W(2), running[W(2)]);
  Step();
  auto next = Assigns();
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].first, W(2));
  EXPECT_EQ(next[0].second.trial, running[W(1)].trial) << "the preempted trial first (grid order)";
  EXPECT_EQ(next[0].second.attempt, 2);
}

// What a worker gets: the pieces of checkpoints put together, and the messages that are not
// checkpoint pieces.
struct Received {
  std::vector<CheckpointMsg> checkpoints;
  std::vector<Message> others;
};
Received Reassemble(std::vector<std::pair<WorkerRank, Message>> sent) {
  Received out;
  CheckpointAssembler assembler;
  for (auto& [rank, m] : sent) {
    auto* piece = std::get_if<CheckpointMsg>(&m);
    if (piece == nullptr) {
      out.others.push_back(std::move(m));
      continue;
    }
    auto whole = assembler.Add(std::move(*piece));
    EXPECT_OK(whole.status());
    if (whole.ok() && *whole) out.checkpoints.push_back(std::move(**whole));
  }
  return out;
}

TEST_F(CoordinatorTest, LargeCheckpointsTravelInPiecesAndAnUnreadableOneFallsBackToTheOneBefore) {
  RegisterWorkers(2);
  ASSERT_OK_AND_ASSIGN(scheduler::SweepSpec spec, scheduler::ParseSweepSpec(NoopSpec("big", 1)));
  spec.trial_configs[0]["checkpoint"] = {{"every_steps", 10}, {"keep_last", 3}};
  SweepRecord sweep = Submit(std::move(spec));
  auto a = Assigns();
  ASSERT_EQ(a.size(), 1u);
  const WorkerRank first = a[0].first;
  const WorkerRank other = first == W(1) ? W(2) : W(1);
  const TrialId trial = a[0].second.trial;

  // Step 10: small. Step 20: 70 MB, i.e. 5 pieces of at most 16 MiB.
  DeliverCheckpoint(first, trial, 1, StepCheckpoint(1.0), 10);
  std::string big = StepCheckpoint(0.9);
  std::mt19937_64 rng(20);
  while (big.size() < (size_t{70} << 20)) big.push_back(static_cast<char>(rng()));
  auto pieces = SplitCheckpoint(trial, 1, 20, big);
  ASSERT_EQ(pieces.size(), 5u);
  for (auto& piece : pieces) {
    EXPECT_LE(static_cast<int64_t>(piece.bytes.size()), kCheckpointPieceBytes);
    channel_->Deliver(first, std::move(piece));
    Step();
  }
  EXPECT_EQ(StoredSteps(trial), (std::vector<int64_t>{10, 20}));
  ASSERT_OK_AND_ASSIGN(CheckpointInfo info, CheckpointStore(store_.get()).Info(trial, 20));
  EXPECT_EQ(info.chunks, 5);
  EXPECT_EQ(info.bytes, static_cast<int64_t>(big.size()));
  ASSERT_OK_AND_ASSIGN(auto values, store_->Scan("checkpoints", ""));
  for (const auto& [key, value] : values) {
    EXPECT_LE(static_cast<int64_t>(value.size()), kCheckpointPieceBytes) << key;
  }

  // Attempt 2 gets it back in pieces, and they make the same bytes.
  clock_.Advance(std::chrono::milliseconds(kTimeoutMs + 1));
  channel_->Deliver(other, HeartbeatMsg{});
  Step();
  auto sent = channel_->TakeSent();
  EXPECT_EQ(sent.size(), 6u) << "5 pieces, then the Assign";
  Received got = Reassemble(std::move(sent));
  ASSERT_EQ(got.checkpoints.size(), 1u);
  EXPECT_EQ(got.checkpoints[0].step, 20);
  EXPECT_EQ(got.checkpoints[0].attempt, 2);
  EXPECT_TRUE(got.checkpoints[0].bytes == big);
  ASSERT_EQ(got.others.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<AssignMsg>(got.others[0]));

  // A chunk of step 20 goes missing: attempt 3 resumes from step 10, and the events say why.
  ASSERT_OK_AND_ASSIGN(auto chunks, store_->ScanKeys("checkpoints", trial.Key() + "/chunk/000000000020/"));
  ASSERT_EQ(chunks.size(), 5u);
  ASSERT_OK(store_->Delete("checkpoints", chunks[2]));
  clock_.Advance(std::chrono::milliseconds(kTimeoutMs + 1));
  channel_->Deliver(first, HeartbeatMsg{});
  Step();
  got = Reassemble(channel_->TakeSent());
  ASSERT_EQ(got.checkpoints.size(), 1u);
  EXPECT_EQ(got.checkpoints[0].step, 10);
  EXPECT_EQ(got.checkpoints[0].attempt, 3);
  EXPECT_EQ(got.checkpoints[0].bytes, StepCheckpoint(1.0));
  ASSERT_OK_AND_ASSIGN(auto events, store_->ListEvents(0, 1000));
  bool reported = false;
  for (const auto& e : events) {
    if (e["type"] == "checkpoint_unreadable") {
      reported = true;
      EXPECT_EQ(e["step"], 20);
      EXPECT_EQ(e["error"], "checkpoint of " + trial.ToString() + " at step 20: chunk 3 of 5 is missing");
    }
  }
  EXPECT_TRUE(reported);
  EXPECT_EQ(Sweep(sweep.id).state, SweepState::kRunning);
}

TEST_F(CoordinatorTest, ResumeRunsAFinishedTrialAgainFromAChosenStepCheckpoint) {
  RegisterWorkers(1);
  ASSERT_OK_AND_ASSIGN(scheduler::SweepSpec spec, scheduler::ParseSweepSpec(NoopSpec("again", 1)));
  spec.trial_configs[0]["checkpoint"] = {{"every_steps", 10}, {"keep_last", 2}};
  SweepRecord sweep = Submit(std::move(spec));
  auto a = Assigns();
  ASSERT_EQ(a.size(), 1u);
  const TrialId trial = a[0].second.trial;
  for (int64_t step : {10, 20, 30, 40, 50}) {
    DeliverCheckpoint(W(1), trial, 1, StepCheckpoint(1.0), step);
  }
  Finish(W(1), a[0].second);
  Step();
  ASSERT_EQ(Sweep(sweep.id).state, SweepState::kCompleted);
  channel_->TakeSent();

  auto resume = [&](std::optional<int64_t> from, std::optional<int64_t> epochs) {
    auto future = coordinator_->ResumeAsync({trial, from, epochs});
    Step();
    return future.get();
  };
  auto pruned = resume(10, std::nullopt);
  EXPECT_EQ(pruned.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(pruned.status().message().find("no checkpoint at step 10 (pruned or never written); "
                                           "stored steps: 40, 50"),
            std::string::npos)
      << pruned.status().ToString();
  EXPECT_EQ(resume(40, 5).status().code(), StatusCode::kInvalidArgument) << "noop: no epochs";
  EXPECT_TRUE(channel_->TakeSent().empty());

  auto resumed = resume(40, std::nullopt);
  ASSERT_OK(resumed);
  EXPECT_EQ(resumed->state, SweepState::kRunning);
  auto sent = channel_->TakeSent();
  ASSERT_EQ(sent.size(), 2u);
  auto* from = std::get_if<CheckpointMsg>(&sent[0].second);
  ASSERT_NE(from, nullptr);
  EXPECT_EQ(from->step, 40);
  EXPECT_EQ(from->attempt, 2);
  auto* assign = std::get_if<AssignMsg>(&sent[1].second);
  ASSERT_NE(assign, nullptr);
  EXPECT_EQ(assign->attempt, 2);
  EXPECT_EQ(Trial(sweep.id, 0).state, TrialState::kRunning);

  auto busy = resume(std::nullopt, std::nullopt);
  EXPECT_EQ(busy.status().code(), StatusCode::kFailedPrecondition) << "it is running now";

  Finish(W(1), *assign);
  Step();
  EXPECT_EQ(Trial(sweep.id, 0).state, TrialState::kCompleted);
  EXPECT_EQ(Sweep(sweep.id).state, SweepState::kCompleted);
}

// The stored counts of `sweep` are what counting its stored trials gives.
void ExpectCountsMatchTrials(const StateStore& store, const SweepRecord& sweep,
                             const std::string& when) {
  ASSERT_OK_AND_ASSIGN(SweepCounts stored, store.GetSweepCounts(sweep.id));
  ASSERT_OK_AND_ASSIGN(auto trials, store.ListTrials(sweep.id));
  EXPECT_EQ(stored.ToJson(), SweepCounts::FromTrials(sweep.id, trials, sweep.maximize).ToJson())
      << when;
}

// A result with val_accuracy (the noop sweeps' metric) = `objective`.
ResultMsg Succeeded(const AssignMsg& a, double objective) {
  ResultMsg r;
  r.trial = a.trial;
  r.attempt = a.attempt;
  r.code = StatusCode::kOk;
  r.run_seconds = 1;
  r.metrics = {{"val_accuracy", objective}};
  return r;
}

TEST_F(CoordinatorTest, SweepCountsFollowEveryTrialChangeThroughARestartAndCancel) {
  RegisterWorkers(2);
  SweepRecord sweep = Submit(NoopSpec("counts", 6, "max_attempts: 2\n"));
  ExpectCountsMatchTrials(*store_, sweep, "after submit");
  ASSERT_OK_AND_ASSIGN(SweepCounts counts, store_->GetSweepCounts(sweep.id));
  EXPECT_EQ(counts.count(TrialState::kRunning), 2u);
  EXPECT_EQ(counts.count(TrialState::kQueued), 4u);

  auto a = Assigns();  // t0, t1
  ASSERT_EQ(a.size(), 2u);
  channel_->Deliver(a[0].first, Succeeded(a[0].second, 0.7));  // t0 completes
  Finish(a[1].first, a[1].second, StatusCode::kIoError);        // t1 is retried
  Step();
  ExpectCountsMatchTrials(*store_, sweep, "after a completion and a retry");
  ASSERT_OK_AND_ASSIGN(counts, store_->GetSweepCounts(sweep.id));
  EXPECT_EQ(counts.best, (TrialId{sweep.id, 0}));

  a = Assigns();  // t1 attempt 2, t2
  ASSERT_EQ(a.size(), 2u);
  for (const auto& [rank, m] : a) {
    if (m.trial.index == 1) {
      Finish(rank, m, StatusCode::kIoError);  // attempt 2 of 2: failed
    } else {
      channel_->Deliver(rank, Succeeded(m, 0.9));  // the new best
    }
  }
  Step();
  ExpectCountsMatchTrials(*store_, sweep, "after a failure");
  ASSERT_OK_AND_ASSIGN(counts, store_->GetSweepCounts(sweep.id));
  EXPECT_EQ(counts.count(TrialState::kFailed), 1u);
  EXPECT_EQ(counts.best, (TrialId{sweep.id, 2}));
  EXPECT_EQ(counts.best_objective, 0.9);

  // Two trials are running when the coordinator dies; the new one counts them queued.
  ASSERT_EQ(Assigns().size(), 2u);
  ReopenStore();
  ASSERT_OK(coordinator_->Recover());
  ExpectCountsMatchTrials(*store_, sweep, "after a restart");
  ASSERT_OK_AND_ASSIGN(counts, store_->GetSweepCounts(sweep.id));
  EXPECT_EQ(counts.count(TrialState::kRunning), 0u);
  EXPECT_EQ(counts.count(TrialState::kQueued), 3u);

  RegisterWorkers(1);
  ASSERT_EQ(Assigns().size(), 1u);
  auto cancelled = coordinator_->CancelAsync(sweep.id);
  Step();
  ASSERT_OK(cancelled.get());
  ExpectCountsMatchTrials(*store_, sweep, "after cancel");
  ASSERT_OK_AND_ASSIGN(counts, store_->GetSweepCounts(sweep.id));
  EXPECT_EQ(counts.count(TrialState::kCancelled), 3u);
  EXPECT_EQ(counts.count(TrialState::kCompleted), 2u);
  EXPECT_EQ(coordinator_->TrialsInMemory(), 0u) << "a finished sweep keeps no trial in memory";

  // Listing every sweep reads the stored counts: no trial is decoded.
  prometheus::Registry registry;
  auto router = MakeApiRouter(coordinator_.get(), store_.get(), &registry, "tok");
  const uint64_t decoded = store_->TrialsDecoded();
  HttpRequest req;
  req.method = "GET";
  req.target = req.path = "/v1/sweeps";
  HttpResponse listed = router->Dispatch(req);
  ASSERT_EQ(listed.status, 200) << listed.body;
  EXPECT_EQ(store_->TrialsDecoded(), decoded);
  nlohmann::json body = nlohmann::json::parse(listed.body);
  ASSERT_EQ(body["sweeps"].size(), 1u);
  EXPECT_EQ(body["sweeps"][0]["counts"]["cancelled"], 3);
  EXPECT_EQ(body["sweeps"][0]["best"]["trial"], (TrialId{sweep.id, 2}).ToString());
}

TEST_F(CoordinatorTest, OnlyRunningAndTheNextQueuedTrialsAreInMemory) {
  RegisterWorkers(1);
  SweepRecord sweep = Submit(NoopSpec("window", 12));
  // The first kQueuedInMemory (one of them running now); the other 9 only in the store.
  EXPECT_EQ(coordinator_->TrialsInMemory(), static_cast<size_t>(kQueuedInMemory));
  std::vector<uint32_t> order;
  for (int round = 0; round < 20; ++round) {
    for (auto& [rank, m] : Assigns()) {
      order.push_back(m.trial.index);
      EXPECT_EQ(m.config, Trial(sweep.id, m.trial.index).config) << "read back whole";
      EXPECT_LE(coordinator_->TrialsInMemory(), 1u + kQueuedInMemory);
      Finish(rank, m);
    }
    Step();
  }
  std::vector<uint32_t> want(12);
  for (uint32_t i = 0; i < 12; ++i) want[i] = i;
  EXPECT_EQ(order, want) << "grid order, each once";
  EXPECT_EQ(Sweep(sweep.id).state, SweepState::kCompleted);
  EXPECT_EQ(coordinator_->TrialsInMemory(), 0u) << "a finished sweep keeps no trial in memory";
  ExpectCountsMatchTrials(*store_, sweep, "at the end");
}

TEST_F(CoordinatorTest, CancelAndRestartReachQueuedTrialsThatAreOnlyInTheStore) {
  RegisterWorkers(1);
  SweepRecord sweep = Submit(NoopSpec("thin", 10));
  ASSERT_EQ(Assigns().size(), 1u);
  StartCoordinator();  // a restart keeps the first queued ones in memory too
  ASSERT_OK(coordinator_->Recover());
  EXPECT_EQ(coordinator_->TrialsInMemory(), 1u + kQueuedInMemory) << "+ the re-queued t0";
  auto cancelled = coordinator_->CancelAsync(sweep.id);
  Step();
  ASSERT_OK(cancelled.get());
  for (uint32_t i = 0; i < 10; ++i) {
    TrialRecord t = Trial(sweep.id, i);
    EXPECT_EQ(t.state, TrialState::kCancelled) << i;
    EXPECT_EQ(t.config.value("seed", -1), static_cast<int>(i)) << "record kept whole";
  }
  ExpectCountsMatchTrials(*store_, sweep, "after cancel");
  EXPECT_EQ(coordinator_->TrialsInMemory(), 0u);
}

TEST_F(CoordinatorTest, ResumingTheBestTrialMakesTheNextBestTheBestUntilItEnds) {
  RegisterWorkers(1);
  ASSERT_OK_AND_ASSIGN(scheduler::SweepSpec spec, scheduler::ParseSweepSpec(NoopSpec("best", 3)));
  spec.trial_configs[1]["checkpoint"] = {{"every_steps", 10}};
  SweepRecord sweep = Submit(std::move(spec));
  for (double objective : {0.8, 0.95, 0.8}) {  // t0 and t2 tie: t0 is the next best
    auto a = Assigns();
    ASSERT_EQ(a.size(), 1u);
    if (a[0].second.trial.index == 1) DeliverCheckpoint(W(1), a[0].second.trial, 1, StepCheckpoint(1), 10);
    channel_->Deliver(W(1), Succeeded(a[0].second, objective));
    Step();
  }
  ASSERT_EQ(Sweep(sweep.id).state, SweepState::kCompleted);
  ASSERT_OK_AND_ASSIGN(SweepCounts counts, store_->GetSweepCounts(sweep.id));
  EXPECT_EQ(counts.best, (TrialId{sweep.id, 1}));

  auto resumed = coordinator_->ResumeAsync({TrialId{sweep.id, 1}, std::nullopt, std::nullopt});
  Step();
  ASSERT_OK(resumed.get());
  ExpectCountsMatchTrials(*store_, sweep, "after resuming the best");
  ASSERT_OK_AND_ASSIGN(counts, store_->GetSweepCounts(sweep.id));
  EXPECT_EQ(counts.best, (TrialId{sweep.id, 0}));
  EXPECT_EQ(counts.best_params, Trial(sweep.id, 0).params);

  auto a = Assigns();
  ASSERT_EQ(a.size(), 1u);
  channel_->Deliver(W(1), Succeeded(a[0].second, 0.5));  // worse this time
  Step();
  ExpectCountsMatchTrials(*store_, sweep, "after the resumed trial ended");
  EXPECT_EQ(Sweep(sweep.id).state, SweepState::kCompleted);
}

TEST_F(CoordinatorTest, RecoverCountsTheSweepsOfADataDirectoryWrittenWithoutCounts) {
  // As an older version left it: sweeps and trials, no counts.
  StateWriteBatch b;
  SweepRecord old;
  old.id = SweepId{7};
  old.name = "old";
  old.state = SweepState::kCompleted;
  old.num_trials = 3;
  b.PutSweep(old);
  for (uint32_t i = 0; i < 3; ++i) {
    TrialRecord t;
    t.id = TrialId{old.id, i};
    t.state = i == 2 ? TrialState::kFailed : TrialState::kCompleted;
    if (i < 2) t.objective = 0.5 + i;
    b.PutTrial(t);
  }
  ASSERT_OK(store_->Commit(b));
  EXPECT_EQ(store_->GetSweepCounts(old.id).status().code(), StatusCode::kNotFound);
  StartCoordinator();
  ASSERT_OK(coordinator_->Recover());  // does not wait for the counting
  Step();                              // counts them
  ExpectCountsMatchTrials(*store_, old, "after Recover");
  ASSERT_OK_AND_ASSIGN(SweepCounts counts, store_->GetSweepCounts(old.id));
  EXPECT_EQ(counts.count(TrialState::kCompleted), 2u);
  EXPECT_EQ(counts.best, (TrialId{old.id, 1}));
}

TEST_F(CoordinatorTest, StopSendsShutdownToEveryWorkerAndRefusesNewCommands) {
  RegisterWorkers();
  coordinator_->Stop();
  auto shutdowns = channel_->TakeSentOf<ShutdownMsg>();
  EXPECT_EQ(shutdowns.size(), static_cast<size_t>(kWorkers));
  auto spec = scheduler::ParseSweepSpec(NoopSpec("late", 1));
  ASSERT_OK(spec);
  auto refused = coordinator_->SubmitAsync(std::move(spec).value()).get();
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace lattice
