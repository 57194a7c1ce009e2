// Coordinator: draining on a stop request (scheduler/coordinator.h, "Draining";
// docs/ARCHITECTURE.md, "Stopping and Slurm requeue").
#include <cstdio>

#include "scheduler/coordinator.h"

namespace lattice {

using scheduler::TrialEvent;

void Coordinator::RequestDrain() { drain_requested_ = true; }

int Coordinator::StopSignals() const {
  return options_.stop_signals == nullptr ? 0 : options_.stop_signals->load();
}

bool Coordinator::StartDrainIfRequested(Pending& p) {
  if (drain_ || (!drain_requested_.load() && StopSignals() < 1)) return false;
  drain_ = Drain{Now(), false};
  size_t running = 0;
  for (size_t r = 1; r < slots_.size(); ++r) {
    running += slots_[r].inflight.size();
    // Every worker that can hold a task: a late Assign racing the Drain is answered
    // preempted without running.
    if (slots_[r].registered) p.sends.emplace_back(slots_[r].view.rank, DrainMsg{});
  }
  p.batch.AppendEvent("drain_started", {{"running_trials", running},
                                        {"queued_trials", queue_.size()},
                                        {"grace_ms", options_.drain_grace_ms}});
  std::fprintf(stderr,
               "coordinator: stopping: draining %zu running trial(s) (each checkpoints and is "
               "queued again), %zu stay queued; grace %d ms, a second signal stops at once\n",
               running, queue_.size(), options_.drain_grace_ms);
  return true;
}

bool Coordinator::ContinueDrain(Pending& p) {
  if (drain_->finished) return false;
  // In flight: assigned trials whose Result has not come (a cancelled one's included).
  size_t waiting = 0;
  for (size_t r = 1; r < slots_.size(); ++r) waiting += slots_[r].inflight.size();
  const int64_t waited = Now() - drain_->started_ms;
  if (waiting > 0 && waited < options_.drain_grace_ms) return false;
  if (waiting > 0) {
    std::fprintf(stderr,
                 "coordinator: drain grace period (%d ms) over with %zu trial(s) unreported: "
                 "queued again, they resume from their latest stored checkpoint\n",
                 options_.drain_grace_ms, waiting);
    PreemptRunningTrials("preempted: no result within the drain grace period", p);
  }
  drain_->finished = true;
  p.batch.AppendEvent("drain_finished", {{"waited_ms", waited}, {"unreported_trials", waiting}});
  std::fprintf(stderr, "coordinator: drained in %lld ms\n", static_cast<long long>(waited));
  return true;
}

void Coordinator::PreemptRunningTrials(const std::string& why, Pending& p) {
  int preempted = 0;
  for (size_t r = 1; r < slots_.size(); ++r) {
    Slot& slot = slots_[r];
    for (const Inflight& f : slot.inflight) {
      auto it = trials_.find(f.trial);
      if (it == trials_.end() || it->second.state != TrialState::kRunning ||
          it->second.attempts != f.attempt) {
        continue;  // cancelled meanwhile
      }
      Status s = Transition(it->second, TrialEvent::kPreempt, slot.view.rank, why, p);
      if (s.ok()) {
        ++preempted;
      } else {
        std::fprintf(stderr, "coordinator: %s\n", s.ToString().c_str());
      }
    }
    slot.inflight.clear();
    slot.view.trial.reset();
    slot.view.gang.clear();
    if (slot.view.state == WorkerState::kBusy) slot.view.state = WorkerState::kIdle;
  }
  if (preempted > 0) {
    p.batch.AppendEvent("trials_preempted", {{"trials", preempted}, {"reason", why}});
  }
}

}  // namespace lattice
