// Clock: where time comes from for code whose behaviour depends on it (the coordinator's
// liveness timeouts, record timestamps, idle back-off). Production uses SystemClock();
// tests inject a fake (tests/testutil/fake_clock.h) and move time by hand.
#pragma once

#include <chrono>
#include <cstdint>

namespace lattice {

class Clock {
 public:
  virtual ~Clock() = default;
  // Unix epoch milliseconds.
  virtual int64_t NowMillis() const = 0;
  // Blocks the calling thread for `d` (a fake clock may only advance its time).
  virtual void SleepFor(std::chrono::microseconds d) = 0;
};

// The wall clock and std::this_thread::sleep_for. Thread-safe; lives forever.
Clock* SystemClock();

}  // namespace lattice
