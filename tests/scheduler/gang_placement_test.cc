// Gang placement (resources.workers_per_trial = k > 1), driven one RunOnce() at a time
// through the in-memory channel and a fake clock: a gang forms on k idle workers at once or
// not at all, never over-commits a worker, the oldest waiting gang is not starved by
// one-worker trials, and a member's failure or loss ends the attempt for the whole gang
// (the policy: the top of scheduler/coordinator.h).
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "jobs/checkpoint.h"
#include "scheduler/coordinator.h"
#include "scheduler/sweep_spec.h"
#include "tests/testutil/fake_channel.h"
#include "tests/testutil/fake_clock.h"
#include "tests/testutil/testutil.h"

namespace lattice {
namespace {

using testutil::FakeChannel;
using testutil::FakeClock;

constexpr int kWorkers = 4;
constexpr int kTimeoutMs = 5000;

WorkerRank W(int r) { return WorkerRank{r}; }

// A noop sweep of `trials` grid points on gangs of `k` workers.
std::string GangSpec(const std::string& name, int trials, int k, const std::string& extra = "") {
  std::string seeds;
  for (int i = 0; i < trials; ++i) seeds += (i ? ", " : "") + std::to_string(i);
  return "name: " + name + "\nkind: noop\nresources: {workers_per_trial: " + std::to_string(k) +
         "}\n" + extra + "search: {method: grid, parameters: {seed: [" + seeds + "]}}\n";
}

class GangPlacementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = StateStore::Open({dir_.Join("state"), /*sync_writes=*/false});
    ASSERT_OK(store);
    store_ = std::move(store).value();
    channel_ = std::make_unique<FakeChannel>(kWorkers + 1);
    CoordinatorOptions options;
    options.worker_timeout_ms = kTimeoutMs;
    options.clock = &clock_;
    coordinator_ = std::make_unique<Coordinator>(options, store_.get(), channel_.get(), nullptr);
    for (int r = 1; r <= kWorkers; ++r) {
      channel_->Deliver(W(r), RegisterMsg{"host" + std::to_string(r), 1, "cpu"});
    }
    Step();
  }

  void Step(int iterations = 1) {
    for (int i = 0; i < iterations; ++i) coordinator_->RunOnce();
  }

  StatusOr<SweepRecord> TrySubmit(const std::string& text) {
    auto spec = scheduler::ParseSweepSpec(text);
    if (!spec.ok()) return spec.status();
    auto future = coordinator_->SubmitAsync(std::move(spec).value());
    Step();
    return future.get();
  }

  SweepRecord Submit(const std::string& text) {
    auto sweep = TrySubmit(text);
    EXPECT_OK(sweep);
    return sweep.ok() ? *sweep : SweepRecord{};
  }

  // Assigns sent since the last call, and a check that no worker ever holds two tasks.
  std::vector<std::pair<WorkerRank, AssignMsg>> Assigns() {
    auto assigns = channel_->TakeSentOf<AssignMsg>();
    for (const auto& [rank, a] : assigns) {
      EXPECT_TRUE(holding_.emplace(rank.value, a.trial).second)
          << "worker " << rank.value << " given " << a.trial.ToString() << " while it holds "
          << holding_[rank.value].ToString();
    }
    return assigns;
  }

  std::vector<std::pair<WorkerRank, CancelMsg>> Cancels() { return channel_->TakeSentOf<CancelMsg>(); }

  void Answer(WorkerRank rank, const AssignMsg& a, StatusCode code = StatusCode::kOk) {
    ResultMsg r;
    r.trial = a.trial;
    r.attempt = a.attempt;
    r.code = code;
    r.run_seconds = 1;
    if (code == StatusCode::kOk) r.metrics = {{"loss", 0.25 + rank.value}};
    if (code != StatusCode::kOk) r.error = std::string("failed: ") + StatusCodeName(code);
    channel_->Deliver(rank, r);
    holding_.erase(rank.value);
  }

  // Every member of the gang of `trial` answers OK, member 0 last.
  void FinishGang(const std::vector<std::pair<WorkerRank, AssignMsg>>& assigns, const TrialId& trial) {
    const AssignMsg* leader = nullptr;
    for (const auto& [rank, a] : assigns) {
      if (a.trial != trial) continue;
      if (rank.value == a.gang.front()) {
        leader = &a;
      } else {
        Answer(rank, a);
      }
    }
    ASSERT_NE(leader, nullptr);
    Answer(W(leader->gang.front()), *leader);
  }

  TrialRecord Trial(const TrialId& id) {
    auto t = store_->GetTrial(id);
    EXPECT_OK(t);
    return t.ok() ? *t : TrialRecord{};
  }

  WorkerView View(int rank) {
    for (const auto& v : coordinator_->Workers()) {
      if (v.rank == W(rank)) return v;
    }
    ADD_FAILURE() << "no worker view for rank " << rank;
    return {};
  }

  // The assigns of one trial, by rank.
  static std::map<int, AssignMsg> Of(const std::vector<std::pair<WorkerRank, AssignMsg>>& assigns,
                                     const TrialId& trial) {
    std::map<int, AssignMsg> out;
    for (const auto& [rank, a] : assigns) {
      if (a.trial == trial) out.emplace(rank.value, a);
    }
    return out;
  }

  testutil::TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<StateStore> store_;
  std::unique_ptr<FakeChannel> channel_;
  std::unique_ptr<Coordinator> coordinator_;
  std::map<int, TrialId> holding_;  // what each worker runs, per the Assigns and Results
};

TEST_F(GangPlacementTest, AGangIsPlacedOnKIdleWorkersAtOnceAndShownInTheWorkerViews) {
  SweepRecord sweep = Submit(GangSpec("pairs", 2, 2));
  auto assigns = Assigns();
  ASSERT_EQ(assigns.size(), 4u);
  for (uint32_t i = 0; i < 2; ++i) {
    const TrialId id{sweep.id, i};
    auto members = Of(assigns, id);
    ASSERT_EQ(members.size(), 2u) << id.ToString();
    std::vector<int> gang = members.begin()->second.gang;
    ASSERT_EQ(gang.size(), 2u);
    for (const auto& [rank, a] : members) {
      EXPECT_EQ(a.gang, gang) << "every member gets the same member list";
      EXPECT_EQ(a.attempt, 1);
      EXPECT_EQ(View(rank).trial, id);
      EXPECT_EQ(View(rank).gang, (std::vector<WorkerRank>{W(gang[0]), W(gang[1])}));
    }
    EXPECT_EQ(Trial(id).worker, W(gang[0])) << "the trial's worker is member 0";
    EXPECT_EQ(Trial(id).state, TrialState::kRunning);
  }
}

TEST_F(GangPlacementTest, MemberZeroReportsTheOutcomeAndEveryMemberIsFreedByItsOwnResult) {
  SweepRecord sweep = Submit(GangSpec("one", 1, 3));
  auto assigns = Assigns();
  ASSERT_EQ(assigns.size(), 3u);
  const TrialId id{sweep.id, 0};
  const std::vector<int> gang = assigns[0].second.gang;
  // Members other than 0 finish first: nothing changes for the trial, they become idle.
  for (const auto& [rank, a] : assigns) {
    if (rank.value != gang[0]) Answer(rank, a);
  }
  // A member's Progress is not the trial's (member 0 reports).
  channel_->Deliver(W(gang[1]), ProgressMsg{id, 1, 1, {{"loss", 9.0}}});
  Step();
  EXPECT_EQ(Trial(id).state, TrialState::kRunning);
  EXPECT_EQ(Trial(id).epochs_done, 0);
  EXPECT_EQ(View(gang[1]).state, WorkerState::kIdle);
  EXPECT_TRUE(View(gang[1]).gang.empty());
  EXPECT_EQ(View(gang[0]).state, WorkerState::kBusy);
  for (const auto& [rank, a] : assigns) {
    if (rank.value == gang[0]) Answer(rank, a);
  }
  Step();
  TrialRecord t = Trial(id);
  EXPECT_EQ(t.state, TrialState::kCompleted);
  EXPECT_EQ(t.metrics.at("loss"), 0.25 + gang[0]);
  EXPECT_TRUE(Cancels().empty()) << "a gang that succeeded is not cancelled";
}

TEST_F(GangPlacementTest, NoHalfFormedGangsAndAWaitingGangHoldsTheIdleWorkers) {
  // Two gangs of 3 on 4 workers: one forms, the other waits whole; the 4th worker stays
  // idle for it, even for a one-worker sweep submitted meanwhile.
  SweepRecord gangs = Submit(GangSpec("triples", 2, 3));
  auto first = Assigns();
  ASSERT_EQ(first.size(), 3u);
  SweepRecord singles = Submit(GangSpec("singles", 3, 1));
  Step(3);
  EXPECT_TRUE(Assigns().empty());
  int idle = 0;
  for (int r = 1; r <= kWorkers; ++r) idle += View(r).state == WorkerState::kIdle;
  EXPECT_EQ(idle, 1);
  EXPECT_EQ(Trial(TrialId{gangs.id, 1}).state, TrialState::kQueued);
  EXPECT_EQ(Trial(TrialId{singles.id, 0}).state, TrialState::kQueued);

  FinishGang(first, TrialId{gangs.id, 0});
  Step();
  auto second = Assigns();
  ASSERT_EQ(Of(second, TrialId{gangs.id, 1}).size(), 3u) << "the waiting gang forms first";
  ASSERT_EQ(second.size(), 4u) << "and the one worker left takes a single";
  EXPECT_EQ(Of(second, TrialId{singles.id, 0}).size(), 1u);
}

// The k=4 gang arrives after a long one-worker sweep that keeps every worker busy. The
// singles are older (ahead in placement order), yet as workers free up they wait for the
// gang, which starts once all four are free; the singles go on afterwards.
TEST_F(GangPlacementTest, AGangIsNotStarvedByAStreamOfOneWorkerTrials) {
  SweepRecord singles = Submit(GangSpec("stream", 40, 1));
  auto running = Assigns();
  ASSERT_EQ(running.size(), 4u);
  SweepRecord gang = Submit(GangSpec("quad", 1, 4));
  const TrialId quad{gang.id, 0};
  Step();
  EXPECT_TRUE(Assigns().empty());
  std::vector<std::pair<WorkerRank, AssignMsg>> gang_assigns;
  int singles_started = 0;
  for (size_t i = 0; i < running.size(); ++i) {  // one worker frees up at a time
    Answer(running[i].first, running[i].second);
    Step();
    for (auto& [rank, a] : Assigns()) {
      if (a.trial == quad) {
        gang_assigns.emplace_back(rank, a);
      } else {
        ++singles_started;
      }
    }
  }
  EXPECT_EQ(singles_started, 0) << "a single took a worker the waiting gang needed";
  ASSERT_EQ(gang_assigns.size(), 4u) << "the gang started once the four workers were free";
  EXPECT_EQ(Trial(quad).state, TrialState::kRunning);
  FinishGang(gang_assigns, quad);
  Step();
  EXPECT_EQ(Trial(quad).state, TrialState::kCompleted);
  EXPECT_EQ(Assigns().size(), 4u) << "the singles go on";
  EXPECT_EQ(Trial(TrialId{singles.id, 4}).state, TrialState::kRunning);
}

TEST_F(GangPlacementTest, AFailedMemberFailsTheAttemptForTheWholeGang) {
  SweepRecord sweep = Submit(GangSpec("fragile", 1, 2, "max_attempts: 2\n"));
  auto assigns = Assigns();
  ASSERT_EQ(assigns.size(), 2u);
  const TrialId id{sweep.id, 0};
  const std::vector<int> gang = assigns[0].second.gang;
  const AssignMsg& member1 = Of(assigns, id).at(gang[1]);
  const AssignMsg& member0 = Of(assigns, id).at(gang[0]);
  Answer(W(gang[1]), member1, StatusCode::kInternal);  // retryable
  Step();
  // Member 0 is told to stop; the retry waits until it has answered (no worker holds two).
  auto cancels = Cancels();
  ASSERT_EQ(cancels.size(), 1u);
  EXPECT_EQ(cancels[0].first, W(gang[0]));
  EXPECT_EQ(cancels[0].second.trial, id);
  TrialRecord t = Trial(id);
  EXPECT_NE(t.error.find("gang member w" + std::to_string(gang[1])), std::string::npos) << t.error;
  auto retry = Assigns();
  ASSERT_EQ(retry.size(), 2u) << "two other workers are idle: the retry runs there";
  for (const auto& [rank, a] : retry) {
    EXPECT_NE(rank.value, gang[0]) << "member 0 still holds the failed attempt";
    EXPECT_EQ(a.attempt, 2);
  }
  // Member 0's late answer to the cancelled attempt changes nothing.
  Answer(W(gang[0]), member0, StatusCode::kCancelled);
  Step();
  EXPECT_EQ(Trial(id).attempts, 2);
  EXPECT_EQ(Trial(id).state, TrialState::kRunning);
  EXPECT_EQ(View(gang[0]).state, WorkerState::kIdle);
}

TEST_F(GangPlacementTest, ALostMemberFailsTheAttemptAndFreesTheOthers) {
  SweepRecord sweep = Submit(GangSpec("lossy", 1, 4));
  auto assigns = Assigns();
  ASSERT_EQ(assigns.size(), 4u);
  const TrialId id{sweep.id, 0};
  const std::vector<int> gang = assigns[0].second.gang;
  // Every member but the last keeps talking; the last goes silent.
  clock_.Advance(std::chrono::milliseconds(kTimeoutMs + 10));
  HeartbeatMsg beat;
  beat.trial = id;
  for (int i = 0; i < 3; ++i) channel_->Deliver(W(gang[static_cast<size_t>(i)]), beat);
  Step();
  EXPECT_EQ(View(gang[3]).state, WorkerState::kLost);
  EXPECT_EQ(Trial(id).state, TrialState::kQueued);
  auto cancels = Cancels();
  std::set<int> cancelled;
  for (const auto& [rank, c] : cancels) cancelled.insert(rank.value);
  EXPECT_EQ(cancelled, (std::set<int>{gang[0], gang[1], gang[2]}));
  // They answer; the gang cannot form again (3 live workers): nothing is held for it.
  for (int i = 0; i < 3; ++i) {
    Answer(W(gang[static_cast<size_t>(i)]), Of(assigns, id).at(gang[static_cast<size_t>(i)]),
           StatusCode::kCancelled);
  }
  holding_.erase(gang[3]);
  Step();
  EXPECT_TRUE(Assigns().empty());
  SweepRecord singles = Submit(GangSpec("meanwhile", 3, 1));
  EXPECT_EQ(Assigns().size(), 3u) << "a gang that cannot form holds no worker";
  EXPECT_EQ(Trial(TrialId{singles.id, 2}).state, TrialState::kRunning);
}

TEST_F(GangPlacementTest, AGangLargerThanTheClusterIsRefusedNamingTheKey) {
  auto refused = TrySubmit(GangSpec("huge", 1, kWorkers + 1));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("resources.workers_per_trial: 5 workers per trial, "
                                            "but the cluster has 4 workers"),
            std::string::npos)
      << refused.status().ToString();
  EXPECT_TRUE(Assigns().empty());
  auto sweeps = store_->ListSweeps();
  ASSERT_OK(sweeps);
  EXPECT_TRUE(sweeps->empty()) << "nothing is stored for a refused spec";
}

TEST_F(GangPlacementTest, EveryMemberGetsTheStepCheckpointToResumeFrom) {
  // The policy as a train trial's config carries it (noop jobs take none).
  ASSERT_OK_AND_ASSIGN(scheduler::SweepSpec spec,
                       scheduler::ParseSweepSpec(GangSpec("resumable", 1, 2, "max_attempts: 3\n")));
  spec.trial_configs[0]["checkpoint"] = {{"every_steps", 10}, {"keep_last", 2}};
  auto submitted = coordinator_->SubmitAsync(std::move(spec));
  Step();
  ASSERT_OK_AND_ASSIGN(SweepRecord sweep, submitted.get());
  auto assigns = Assigns();
  ASSERT_EQ(assigns.size(), 2u);
  const TrialId id{sweep.id, 0};
  const std::vector<int> gang = assigns[0].second.gang;
  jobs::CheckpointHeader header;
  header.config = {{"kind", "noop"}};
  header.in_dim = 1;
  header.classes = 2;
  header.resume = {{"step", 40}};
  const std::string blob = header.ToJson().dump() + "\n" + "archive bytes";
  for (auto& piece : SplitCheckpoint(id, 1, 40, blob)) {
    channel_->Deliver(W(gang[0]), piece);
  }
  Step();  // stored
  Answer(W(gang[0]), Of(assigns, id).at(gang[0]), StatusCode::kInternal);
  Answer(W(gang[1]), Of(assigns, id).at(gang[1]), StatusCode::kCancelled);
  Step();
  auto retry = Assigns();
  ASSERT_EQ(retry.size(), 2u);
  std::map<int, int> pieces;  // per rank: resume pieces of step 40, attempt 2
  for (auto& [rank, piece] : channel_->TakeSentOf<CheckpointMsg>()) {
    if (piece.trial == id && piece.step == 40 && piece.attempt == 2) {
      ++pieces[rank.value];
      EXPECT_EQ(piece.bytes, blob);
    }
  }
  for (const auto& [rank, a] : retry) EXPECT_EQ(pieces[rank.value], 1) << "rank " << rank.value;
}

}  // namespace
}  // namespace lattice
