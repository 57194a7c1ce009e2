#include "scheduler/trial_state_machine.h"

#include <algorithm>
#include <cmath>

namespace lattice::scheduler {
namespace {

// The state an event moves a running/queued trial to (kFail: the retry case is decided
// separately); used for the message of an illegal transition.
TrialState NominalTarget(TrialEvent e) {
  switch (e) {
    case TrialEvent::kAssign:
      return TrialState::kRunning;
    case TrialEvent::kSucceed:
      return TrialState::kCompleted;
    case TrialEvent::kFail:
    case TrialEvent::kFailPermanent:
      return TrialState::kFailed;
    case TrialEvent::kWorkerLost:
    case TrialEvent::kRecover:
    case TrialEvent::kResume:
    case TrialEvent::kPreempt:
      return TrialState::kQueued;
    case TrialEvent::kCancel:
      return TrialState::kCancelled;
  }
  return TrialState::kFailed;
}

Status Illegal(const TrialRecord& t, TrialEvent e) {
  return Status::FailedPrecondition(
      "trial " + t.id.ToString() + ": illegal transition " + TrialStateName(t.state) + "→" +
      TrialStateName(NominalTarget(e)) + " (" + TrialEventName(e) + ")");
}

}  // namespace

const char* TrialEventName(TrialEvent e) {
  switch (e) {
    case TrialEvent::kAssign:
      return "assign";
    case TrialEvent::kSucceed:
      return "succeed";
    case TrialEvent::kFail:
      return "fail";
    case TrialEvent::kFailPermanent:
      return "fail_permanent";
    case TrialEvent::kWorkerLost:
      return "worker_lost";
    case TrialEvent::kRecover:
      return "recover";
    case TrialEvent::kCancel:
      return "cancel";
    case TrialEvent::kResume:
      return "resume";
    case TrialEvent::kPreempt:
      return "preempt";
  }
  return "unknown";
}

TrialEvent EventForResult(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return TrialEvent::kSucceed;
    case StatusCode::kFailedPrecondition:
    case StatusCode::kInvalidArgument:
    case StatusCode::kNotFound:
      return TrialEvent::kFailPermanent;
    case StatusCode::kCancelled:
      return TrialEvent::kWorkerLost;
    default:
      return TrialEvent::kFail;
  }
}

bool IsLegalTransition(TrialState from, TrialState to) {
  switch (from) {
    case TrialState::kQueued:
      return to == TrialState::kRunning || to == TrialState::kCancelled;
    case TrialState::kRunning:
      return to == TrialState::kCompleted || to == TrialState::kFailed ||
             to == TrialState::kQueued || to == TrialState::kCancelled;
    default:
      return to == TrialState::kQueued;  // terminal: only a resume (kResume) moves it
  }
}

StatusOr<TrialRecord> ApplyTrialEvent(TrialRecord t, TrialEvent e, int max_attempts, WorkerRank worker,
                                      int64_t now_ms, const std::string& error) {
  max_attempts = std::max(max_attempts, 1);
  const bool queued = t.state == TrialState::kQueued;
  const bool running = t.state == TrialState::kRunning;
  switch (e) {
    case TrialEvent::kAssign:
      if (!queued) return Illegal(t, e);
      t.state = TrialState::kRunning;
      t.attempts += 1;
      t.worker = worker;
      t.started_ms = now_ms;
      return t;
    case TrialEvent::kSucceed:
      if (!running) return Illegal(t, e);
      t.state = TrialState::kCompleted;
      t.error.clear();
      t.finished_ms = now_ms;
      return t;
    case TrialEvent::kFail:
    case TrialEvent::kFailPermanent: {
      if (!running) return Illegal(t, e);
      const bool give_up =
          e == TrialEvent::kFailPermanent || t.attempts - t.preemptions >= max_attempts;
      t.state = give_up ? TrialState::kFailed : TrialState::kQueued;
      t.error = error;
      if (give_up) t.finished_ms = now_ms;
      return t;
    }
    case TrialEvent::kWorkerLost:
    case TrialEvent::kRecover:
    case TrialEvent::kPreempt:
      if (!running) return Illegal(t, e);
      t.state = TrialState::kQueued;
      t.error = error;
      if (e == TrialEvent::kPreempt) t.preemptions += 1;
      return t;
    case TrialEvent::kResume:
      if (!IsTerminal(t.state)) return Illegal(t, e);
      t.state = TrialState::kQueued;
      t.error.clear();
      t.finished_ms = 0;
      return t;
    case TrialEvent::kCancel:
      if (!queued && !running) return Illegal(t, e);
      t.state = TrialState::kCancelled;
      if (!error.empty()) t.error = error;
      t.finished_ms = now_ms;
      return t;
  }
  return Status::Internal("trial " + t.id.ToString() + ": unknown event");
}

SweepState SweepStateFromTrials(const std::vector<TrialState>& states) {
  const bool all_terminal = std::all_of(states.begin(), states.end(), IsTerminal);
  return all_terminal ? SweepState::kCompleted : SweepState::kRunning;
}

SweepState SweepStateFromTrials(const std::vector<TrialRecord>& trials) {
  std::vector<TrialState> states;
  states.reserve(trials.size());
  for (const TrialRecord& t : trials) states.push_back(t.state);
  return SweepStateFromTrials(states);
}

std::optional<size_t> BestTrial(const std::vector<TrialRecord>& trials, bool maximize) {
  std::optional<size_t> best;
  for (size_t i = 0; i < trials.size(); ++i) {
    const TrialRecord& t = trials[i];
    if (t.state != TrialState::kCompleted || !t.objective || !std::isfinite(*t.objective)) {
      continue;
    }
    if (!best) {
      best = i;
      continue;
    }
    const double b = *trials[*best].objective;
    if (maximize ? *t.objective > b : *t.objective < b) best = i;  // strict: ties keep lower
  }
  return best;
}

}  // namespace lattice::scheduler
