// How long the coordinator has been silent, as a worker's loops see it (worker/worker.h):
// time this process itself stood still (SIGSTOP, a stalled node) does not count, since the
// coordinator's keep-alives are then waiting to be read.
#pragma once

#include <chrono>

namespace lattice {

class CoordinatorWatch {
 public:
  using Clock = std::chrono::steady_clock;

  // `timeout_ms` 0: never expires.
  explicit CoordinatorWatch(int timeout_ms) : timeout_(timeout_ms) {}

  // A message from the coordinator arrived.
  void Heard() { last_heard_ = Clock::now(); }

  // Call once per loop iteration: true when the coordinator has been silent for longer
  // than the timeout while this process was running.
  bool Expired() {
    const auto now = Clock::now();
    if (now - last_iteration_ > kStall) last_heard_ += now - last_iteration_;
    last_iteration_ = now;
    return timeout_.count() > 0 && now - last_heard_ > timeout_;
  }

 private:
  // A gap between iterations longer than this is this process standing still.
  static constexpr std::chrono::milliseconds kStall{500};

  const std::chrono::milliseconds timeout_;
  Clock::time_point last_heard_ = Clock::now();
  Clock::time_point last_iteration_ = last_heard_;
};

}  // namespace lattice
