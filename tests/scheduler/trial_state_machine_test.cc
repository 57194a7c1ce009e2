#include "scheduler/trial_state_machine.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "tests/testutil/testutil.h"

namespace lattice::scheduler {
namespace {

constexpr int kMaxAttempts = 3;
constexpr int64_t kNow = 1700000000000;

const TrialState kAllStates[] = {TrialState::kQueued, TrialState::kRunning, TrialState::kCompleted,
                                 TrialState::kFailed, TrialState::kCancelled};
const TrialEvent kAllEvents[] = {
    TrialEvent::kAssign,     TrialEvent::kSucceed, TrialEvent::kFail,  TrialEvent::kFailPermanent,
    TrialEvent::kWorkerLost, TrialEvent::kRecover, TrialEvent::kCancel,  TrialEvent::kResume,
    TrialEvent::kPreempt};

TrialRecord Trial(TrialState state, int attempts = 1) {
  TrialRecord t;
  t.id = TrialId{SweepId{1}, 3};
  t.state = state;
  t.attempts = attempts;
  t.worker = WorkerRank{state == TrialState::kRunning ? 2 : -1};
  return t;
}

class TrialStateMachineTest : public ::testing::Test {
 protected:
  static StatusOr<TrialRecord> Apply(TrialState from, TrialEvent e, int attempts = 1,
                                     const std::string& error = "") {
    return ApplyTrialEvent(Trial(from, attempts), e, kMaxAttempts, WorkerRank{4}, kNow, error);
  }
};

// The full table: expected state after each event from each state (nullopt = illegal),
// with attempts (1) below max_attempts.
std::optional<TrialState> Expected(TrialState from, TrialEvent e) {
  using S = TrialState;
  using E = TrialEvent;
  if (from == S::kQueued) {
    if (e == E::kAssign) return S::kRunning;
    if (e == E::kCancel) return S::kCancelled;
    return std::nullopt;
  }
  if (from == S::kRunning) {
    switch (e) {
      case E::kAssign:
        return std::nullopt;
      case E::kSucceed:
        return S::kCompleted;
      case E::kFail:
        return S::kQueued;  // retry: attempts 1 < 3
      case E::kFailPermanent:
        return S::kFailed;
      case E::kWorkerLost:
      case E::kRecover:
      case E::kPreempt:
        return S::kQueued;
      case E::kCancel:
        return S::kCancelled;
      case E::kResume:
        return std::nullopt;
    }
  }
  // Terminal states change only when a user resumes the trial.
  return e == E::kResume ? std::optional<S>(S::kQueued) : std::nullopt;
}

TEST_F(TrialStateMachineTest, EveryStateEventPair) {
  for (TrialState from : kAllStates) {
    for (TrialEvent e : kAllEvents) {
      SCOPED_TRACE(std::string(TrialStateName(from)) + " + " + TrialEventName(e));
      StatusOr<TrialRecord> r = Apply(from, e);
      const std::optional<TrialState> want = Expected(from, e);
      if (want) {
        ASSERT_OK(r);
        EXPECT_EQ(r->state, *want);
        EXPECT_TRUE(IsLegalTransition(from, r->state));
      } else {
        ASSERT_FALSE(r.ok());
        EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
        EXPECT_EQ(r.status().message().rfind("trial s1-t3: illegal transition ", 0), 0u)
            << r.status().message();
      }
    }
  }
}

TEST_F(TrialStateMachineTest, IllegalMessageNamesTrialStatesAndEvent) {
  StatusOr<TrialRecord> r = Apply(TrialState::kCompleted, TrialEvent::kAssign);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "trial s1-t3: illegal transition completed→running (assign)");
  r = Apply(TrialState::kQueued, TrialEvent::kSucceed);
  EXPECT_EQ(r.status().message(), "trial s1-t3: illegal transition queued→completed (succeed)");
  r = Apply(TrialState::kCancelled, TrialEvent::kCancel);
  EXPECT_EQ(r.status().message(), "trial s1-t3: illegal transition cancelled→cancelled (cancel)");
}

TEST_F(TrialStateMachineTest, IsLegalTransitionTable) {
  using S = TrialState;
  for (S from : kAllStates) {
    for (S to : kAllStates) {
      const bool want = (from == S::kQueued && (to == S::kRunning || to == S::kCancelled)) ||
                        (from == S::kRunning && to != S::kRunning) ||
                        (IsTerminal(from) && to == S::kQueued);  // resume
      EXPECT_EQ(IsLegalTransition(from, to), want)
          << TrialStateName(from) << "→" << TrialStateName(to);
    }
  }
}

TEST_F(TrialStateMachineTest, AssignCountsAttemptAndRecordsWorker) {
  ASSERT_OK_AND_ASSIGN(TrialRecord t, Apply(TrialState::kQueued, TrialEvent::kAssign, 0));
  EXPECT_EQ(t.state, TrialState::kRunning);
  EXPECT_EQ(t.attempts, 1);
  EXPECT_EQ(t.worker.value, 4);
  EXPECT_EQ(t.started_ms, kNow);
  EXPECT_EQ(t.finished_ms, 0);
}

TEST_F(TrialStateMachineTest, SucceedFinishesAndClearsError) {
  TrialRecord t = Trial(TrialState::kRunning);
  t.error = "earlier attempt: worker lost";
  ASSERT_OK_AND_ASSIGN(TrialRecord done,
                       ApplyTrialEvent(t, TrialEvent::kSucceed, kMaxAttempts, WorkerRank{}, kNow, ""));
  EXPECT_EQ(done.state, TrialState::kCompleted);
  EXPECT_EQ(done.error, "");
  EXPECT_EQ(done.finished_ms, kNow);
  EXPECT_EQ(done.worker.value, 2);  // last rank kept
}

TEST_F(TrialStateMachineTest, RetryableFailureRequeuesUntilMaxAttempts) {
  for (int attempts = 1; attempts < kMaxAttempts; ++attempts) {
    ASSERT_OK_AND_ASSIGN(TrialRecord t,
                         Apply(TrialState::kRunning, TrialEvent::kFail, attempts, "io error"));
    EXPECT_EQ(t.state, TrialState::kQueued) << attempts;
    EXPECT_EQ(t.error, "io error");
    EXPECT_EQ(t.finished_ms, 0);
  }
  for (int attempts : {kMaxAttempts, kMaxAttempts + 2}) {
    ASSERT_OK_AND_ASSIGN(TrialRecord t,
                         Apply(TrialState::kRunning, TrialEvent::kFail, attempts, "io error"));
    EXPECT_EQ(t.state, TrialState::kFailed) << attempts;
    EXPECT_EQ(t.error, "io error");
    EXPECT_EQ(t.finished_ms, kNow);
  }
}

TEST_F(TrialStateMachineTest, MaxAttemptsBelowOneCountsAsOne) {
  ASSERT_OK_AND_ASSIGN(TrialRecord t, ApplyTrialEvent(Trial(TrialState::kRunning, 1),
                                                      TrialEvent::kFail, 0, WorkerRank{}, kNow, "x"));
  EXPECT_EQ(t.state, TrialState::kFailed);
}

TEST_F(TrialStateMachineTest, PermanentFailureFailsOnFirstAttempt) {
  ASSERT_OK_AND_ASSIGN(TrialRecord t, Apply(TrialState::kRunning, TrialEvent::kFailPermanent, 1,
                                            "train: loss is NaN at epoch 3"));
  EXPECT_EQ(t.state, TrialState::kFailed);
  EXPECT_EQ(t.error, "train: loss is NaN at epoch 3");
  EXPECT_EQ(t.finished_ms, kNow);
}

TEST_F(TrialStateMachineTest, WorkerLostAndRecoverRequeueEvenAtMaxAttempts) {
  for (TrialEvent e : {TrialEvent::kWorkerLost, TrialEvent::kRecover}) {
    ASSERT_OK_AND_ASSIGN(TrialRecord t,
                         Apply(TrialState::kRunning, e, kMaxAttempts, "worker w2 lost"));
    EXPECT_EQ(t.state, TrialState::kQueued) << TrialEventName(e);
    EXPECT_EQ(t.attempts, kMaxAttempts);
    EXPECT_EQ(t.error, "worker w2 lost");
  }
}

TEST_F(TrialStateMachineTest, PreemptRequeuesWithoutSpendingTheAttempt) {
  // The last allowed attempt is preempted: queued again, and counted as preempted.
  ASSERT_OK_AND_ASSIGN(TrialRecord t, Apply(TrialState::kRunning, TrialEvent::kPreempt,
                                            kMaxAttempts, "preempted: the cluster is stopping"));
  EXPECT_EQ(t.state, TrialState::kQueued);
  EXPECT_EQ(t.attempts, kMaxAttempts);
  EXPECT_EQ(t.preemptions, 1);
  EXPECT_EQ(t.error, "preempted: the cluster is stopping");
  EXPECT_EQ(t.finished_ms, 0);
  // Its next attempt (attempts + 1) fails: still retried, since one attempt was preempted.
  ASSERT_OK_AND_ASSIGN(t, ApplyTrialEvent(t, TrialEvent::kAssign, kMaxAttempts, WorkerRank{1},
                                          kNow, ""));
  EXPECT_EQ(t.attempts, kMaxAttempts + 1);
  ASSERT_OK_AND_ASSIGN(t, ApplyTrialEvent(t, TrialEvent::kFail, kMaxAttempts, WorkerRank{}, kNow,
                                          "io error"));
  EXPECT_EQ(t.state, TrialState::kFailed) << "attempts - preemptions = max_attempts";
  // Without the preemption the same failure would have come one attempt earlier.
  TrialRecord fresh = Trial(TrialState::kRunning, kMaxAttempts - 1);
  fresh.preemptions = 1;
  ASSERT_OK_AND_ASSIGN(fresh, ApplyTrialEvent(fresh, TrialEvent::kFail, kMaxAttempts,
                                              WorkerRank{}, kNow, "io error"));
  EXPECT_EQ(fresh.state, TrialState::kQueued);
  // Lost workers and restarts after a crash still spend the attempt number as before.
  for (TrialEvent e : {TrialEvent::kWorkerLost, TrialEvent::kRecover}) {
    ASSERT_OK_AND_ASSIGN(TrialRecord lost, Apply(TrialState::kRunning, e, 1, "x"));
    EXPECT_EQ(lost.preemptions, 0) << TrialEventName(e);
  }
}

TEST_F(TrialStateMachineTest, CancelQueuedOrRunning) {
  for (TrialState from : {TrialState::kQueued, TrialState::kRunning}) {
    ASSERT_OK_AND_ASSIGN(TrialRecord t, Apply(from, TrialEvent::kCancel, 1, "cancelled by user"));
    EXPECT_EQ(t.state, TrialState::kCancelled);
    EXPECT_EQ(t.error, "cancelled by user");
    EXPECT_EQ(t.finished_ms, kNow);
  }
}

TEST_F(TrialStateMachineTest, TerminalStatesChangeOnlyByResume) {
  for (TrialState from : {TrialState::kCompleted, TrialState::kFailed, TrialState::kCancelled}) {
    for (TrialEvent e : kAllEvents) {
      if (e == TrialEvent::kResume) continue;
      EXPECT_FALSE(Apply(from, e).ok()) << TrialStateName(from) << " " << TrialEventName(e);
    }
    ASSERT_OK_AND_ASSIGN(TrialRecord t, Apply(from, TrialEvent::kResume, 2, "x"));
    EXPECT_EQ(t.state, TrialState::kQueued);
    EXPECT_EQ(t.attempts, 2) << "the next Assign counts the new attempt";
    EXPECT_EQ(t.error, "");
    EXPECT_EQ(t.finished_ms, 0);
  }
  EXPECT_FALSE(Apply(TrialState::kRunning, TrialEvent::kResume).ok());
  EXPECT_FALSE(Apply(TrialState::kQueued, TrialEvent::kResume).ok());
}

TEST_F(TrialStateMachineTest, EventForResultClassifiesErrors) {
  EXPECT_EQ(EventForResult(StatusCode::kOk), TrialEvent::kSucceed);
  EXPECT_EQ(EventForResult(StatusCode::kInvalidArgument), TrialEvent::kFailPermanent);
  EXPECT_EQ(EventForResult(StatusCode::kFailedPrecondition), TrialEvent::kFailPermanent);
  EXPECT_EQ(EventForResult(StatusCode::kNotFound), TrialEvent::kFailPermanent);
  // The worker stopped the task (cancel, shutdown): not the trial's fault, queued again.
  EXPECT_EQ(EventForResult(StatusCode::kCancelled), TrialEvent::kWorkerLost);
  for (StatusCode c : {StatusCode::kIoError, StatusCode::kInternal, StatusCode::kUnavailable,
                       StatusCode::kAlreadyExists, StatusCode::kUnauthenticated}) {
    EXPECT_EQ(EventForResult(c), TrialEvent::kFail) << StatusCodeName(c);
  }
}

TEST_F(TrialStateMachineTest, SweepStateFromTrials) {
  using S = TrialState;
  EXPECT_EQ(SweepStateFromTrials(std::vector<S>{}), SweepState::kCompleted);
  EXPECT_EQ(SweepStateFromTrials(std::vector<S>{S::kCompleted, S::kFailed, S::kCancelled}),
            SweepState::kCompleted);
  EXPECT_EQ(SweepStateFromTrials(std::vector<S>{S::kCompleted, S::kQueued}), SweepState::kRunning);
  EXPECT_EQ(SweepStateFromTrials(std::vector<S>{S::kRunning, S::kFailed}), SweepState::kRunning);
  std::vector<TrialRecord> trials = {Trial(S::kCompleted), Trial(S::kRunning)};
  EXPECT_EQ(SweepStateFromTrials(trials), SweepState::kRunning);
  trials[1].state = S::kFailed;
  EXPECT_EQ(SweepStateFromTrials(trials), SweepState::kCompleted);
}

std::vector<TrialRecord> WithObjectives(const std::vector<std::optional<double>>& objectives) {
  std::vector<TrialRecord> trials;
  for (const std::optional<double>& o : objectives) {
    TrialRecord t = Trial(TrialState::kCompleted);
    t.objective = o;
    trials.push_back(t);
  }
  return trials;
}

TEST_F(TrialStateMachineTest, BestTrialMaximizeAndMinimize) {
  const std::vector<TrialRecord> trials = WithObjectives({0.5, 0.9, 0.1, 0.7});
  EXPECT_EQ(BestTrial(trials, true), std::optional<size_t>(1));
  EXPECT_EQ(BestTrial(trials, false), std::optional<size_t>(2));
}

TEST_F(TrialStateMachineTest, BestTrialTiesGoToLowerIndex) {
  const std::vector<TrialRecord> trials = WithObjectives({0.2, 0.9, 0.9, 0.2, 0.9});
  EXPECT_EQ(BestTrial(trials, true), std::optional<size_t>(1));
  EXPECT_EQ(BestTrial(trials, false), std::optional<size_t>(0));
}

TEST_F(TrialStateMachineTest, BestTrialSkipsUnfinishedMissingAndNonFinite) {
  std::vector<TrialRecord> trials =
      WithObjectives({0.99, std::nullopt, std::numeric_limits<double>::quiet_NaN(),
                      std::numeric_limits<double>::infinity(), 0.4, 0.3});
  trials[0].state = TrialState::kRunning;  // best value, but not completed
  EXPECT_EQ(BestTrial(trials, true), std::optional<size_t>(4));
  EXPECT_EQ(BestTrial(trials, false), std::optional<size_t>(5));
  EXPECT_EQ(BestTrial({}, true), std::nullopt);
  EXPECT_EQ(BestTrial(WithObjectives({std::nullopt}), true), std::nullopt);
}

}  // namespace
}  // namespace lattice::scheduler
