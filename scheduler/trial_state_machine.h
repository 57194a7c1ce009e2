// The trial state machine: which state changes a trial may make, and what each event
// does to its record. Pure functions: the coordinator applies an event, persists the
// returned record (WAL synced), and only then acts on it.
//
//   event           from      to                                   record changes
//   kAssign         queued    running                              attempts+1, worker, started_ms
//   kSucceed        running   completed                            finished_ms, error cleared
//   kFail           running   queued   if attempts <  max_attempts error
//                             failed   if attempts >= max_attempts error, finished_ms
//   kFailPermanent  running   failed                               error, finished_ms
//   kWorkerLost     running   queued                               error
//   kRecover        running   queued   (coordinator restarted)     error
//   kPreempt        running   queued   (the cluster drained it)    error, preemptions+1
//   kCancel         queued,   cancelled                            finished_ms, error (reason)
//                   running
//   kResume         completed, queued                              error, finished_ms cleared
//                   failed,                                        (`lattice resume`: a new
//                   cancelled                                      attempt from a checkpoint)
//
// Anything else is illegal and returns FailedPrecondition
//   "trial s1-t3: illegal transition completed→running (assign)".
// Terminal states (completed, failed, cancelled) change only by kResume, which a user asks for. kWorkerLost and kRecover
// re-queue without looking at attempts (the attempt was not the trial's fault), so the
// attempts counter may exceed max_attempts after lost workers. kPreempt (a stopping cluster
// interrupted the attempt: SIGTERM, Slurm requeue) also counts it in `preemptions`, and kFail
// gives up only when attempts - preemptions reaches max_attempts: a preempted attempt is
// not spent. `worker` keeps the last
// rank after a trial leaves running; it only means "running there" while state is running.
// Metrics and objective are not touched: the coordinator sets them from the result.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "store/records.h"

namespace lattice::scheduler {

enum class TrialEvent {
  kAssign, kSucceed, kFail, kFailPermanent, kWorkerLost, kRecover, kCancel, kResume, kPreempt
};

// "assign", "succeed", "fail", "fail_permanent", "worker_lost", "recover", "cancel", "resume",
// "preempt".
const char* TrialEventName(TrialEvent e);

// The one failure classification: the event for a task whose attempt ended with `code`
// (the worker reports the job's status code; the coordinator applies this event).
//   kOk -> kSucceed;
//   InvalidArgument, FailedPrecondition, NotFound (bad config, NaN loss, a missing file or
//   checkpoint: fails again anywhere) -> kFailPermanent;
//   Cancelled (the worker stopped it: cancel or shutdown) -> kWorkerLost (queued again);
//   anything else (I/O, internal, unavailable) -> kFail (retried up to max_attempts).
TrialEvent EventForResult(StatusCode code);

// Whether a trial may move from `from` to `to` by some event (same-state is not a move).
bool IsLegalTransition(TrialState from, TrialState to);

// Applies `e` to `t` (see the table). `max_attempts` < 1 counts as 1. `worker` is used by
// kAssign only; `now_ms` is unix epoch milliseconds; `error` is the failure or cancel
// reason (kept unless empty for kCancel). Illegal -> FailedPrecondition naming the trial.
StatusOr<TrialRecord> ApplyTrialEvent(TrialRecord t, TrialEvent e, int max_attempts, WorkerRank worker,
                                      int64_t now_ms, const std::string& error);

// kCompleted when every trial is terminal (also when there are none), else kRunning.
// A sweep that was cancelled or failed stays so: the caller keeps its own terminal state.
SweepState SweepStateFromTrials(const std::vector<TrialState>& states);
SweepState SweepStateFromTrials(const std::vector<TrialRecord>& trials);

// Index of the best completed trial with a finite objective (max if `maximize`, else min);
// ties go to the lower index. nullopt when there is none.
std::optional<size_t> BestTrial(const std::vector<TrialRecord>& trials, bool maximize);

}  // namespace lattice::scheduler
