// Strong id types. A trial id carries its sweep id.
//
// Text forms (what users see and type): sweep "s7", trial "s7-t12", worker rank "w2".
// Key forms (RocksDB keys) are zero-padded so that keys sort in numeric order.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace lattice {

struct SweepId {
  uint64_t value = 0;

  std::string ToString() const { return "s" + std::to_string(value); }
  // 12-digit zero-padded decimal, sorts numerically.
  std::string Key() const;
  // Accepts "s7" or "7".
  static std::optional<SweepId> Parse(const std::string& text);

  friend bool operator==(SweepId a, SweepId b) { return a.value == b.value; }
  friend bool operator!=(SweepId a, SweepId b) { return a.value != b.value; }
  friend bool operator<(SweepId a, SweepId b) { return a.value < b.value; }
};

struct TrialId {
  SweepId sweep;
  uint32_t index = 0;  // 0-based position in the sweep's expansion (grid point number)

  std::string ToString() const { return sweep.ToString() + "-t" + std::to_string(index); }
  // "<sweep key>/<6-digit index>", sorts by sweep then index.
  std::string Key() const;
  // Accepts "s7-t12".
  static std::optional<TrialId> Parse(const std::string& text);

  friend bool operator==(const TrialId& a, const TrialId& b) {
    return a.sweep == b.sweep && a.index == b.index;
  }
  friend bool operator!=(const TrialId& a, const TrialId& b) { return !(a == b); }
  friend bool operator<(const TrialId& a, const TrialId& b) {
    return a.sweep != b.sweep ? a.sweep < b.sweep : a.index < b.index;
  }
};

struct WorkerRank {
  int value = -1;  // MPI rank in the cluster's world communicator; 0 is the coordinator

  std::string ToString() const { return "w" + std::to_string(value); }
  friend bool operator==(WorkerRank a, WorkerRank b) { return a.value == b.value; }
  friend bool operator!=(WorkerRank a, WorkerRank b) { return a.value != b.value; }
  friend bool operator<(WorkerRank a, WorkerRank b) { return a.value < b.value; }
};

}  // namespace lattice

template <>
struct std::hash<lattice::TrialId> {
  size_t operator()(const lattice::TrialId& id) const noexcept {
    return std::hash<uint64_t>()(id.sweep.value * 1000003u + id.index);
  }
};
