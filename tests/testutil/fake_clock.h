// FakeClock: a Clock whose time moves only when the test says so (Advance), or by the
// amount a SleepFor asks for. Header-only; not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>

#include "common/clock.h"

namespace lattice::testutil {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_ms = 1'790'000'000'000) : now_ms_(start_ms) {}

  int64_t NowMillis() const override { return now_ms_; }
  void SleepFor(std::chrono::microseconds d) override {
    now_us_rest_ += d.count();
    now_ms_ += now_us_rest_ / 1000;
    now_us_rest_ %= 1000;
  }

  void Advance(std::chrono::milliseconds d) { now_ms_ += d.count(); }

 private:
  int64_t now_ms_;
  int64_t now_us_rest_ = 0;
};

}  // namespace lattice::testutil
