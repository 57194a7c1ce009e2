// How a worker's loops see the stop signals its process received (WorkerOptions::
// stop_signals, counted by the signal handler of `lattice cluster`: SIGTERM, SIGINT,
// SIGUSR1). The first asks for a drain: the running task is preempted (it checkpoints and
// stops, worker/worker.h) and the worker waits for the coordinator's Shutdown, which comes
// once the coordinator has the Results; a second signal, or no Shutdown within
// drain_grace_ms + kShutdownMarginMs, stops it at once. See docs/ARCHITECTURE.md,
// "Stopping and Slurm requeue".
#pragma once

#include <chrono>
#include <string>

#include "worker/worker.h"

namespace lattice {

class StopSignalWatch {
 public:
  using Clock = std::chrono::steady_clock;
  enum Action { kNone, kDrain, kStopNow };

  // The coordinator's own drain ends within its grace period, then it sends Shutdown: a
  // worker waits that long and this much more before it leaves on its own.
  static constexpr int kShutdownMarginMs = 5000;

  explicit StopSignalWatch(const WorkerOptions& options)
      : signals_(options.stop_signals),
        wait_(options.drain_grace_ms + kShutdownMarginMs) {}

  // Call once per loop iteration: kDrain once (the first signal), then kStopNow on a second
  // signal or when the wait for Shutdown ran out; kNone otherwise.
  Action Check() {
    const int seen = signals_ == nullptr ? 0 : signals_->load();
    if (seen == 0) return kNone;
    if (seen >= 2) {
      why_ = "a second stop signal";
      return kStopNow;
    }
    if (!draining_) {
      draining_ = true;
      since_ = Clock::now();
      return kDrain;
    }
    if (Clock::now() - since_ > wait_) {
      why_ = "no Shutdown from the coordinator within " + std::to_string(wait_.count()) +
             " ms of the stop signal";
      return kStopNow;
    }
    return kNone;
  }

  const std::string& why() const { return why_; }

 private:
  const std::atomic<int>* const signals_;
  const std::chrono::milliseconds wait_;
  bool draining_ = false;
  Clock::time_point since_;
  std::string why_;
};

}  // namespace lattice
