// Shared test utilities: status assertions, temporary directories, seeded RNG, polling.
#pragma once

#include <chrono>
#include <functional>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "common/status.h"

#define ASSERT_OK(expr)                                          \
  do {                                                           \
    const ::lattice::Status lattice_s_ = ::lattice::testutil::ToStatus(expr); \
    ASSERT_TRUE(lattice_s_.ok()) << #expr << ": " << lattice_s_.ToString(); \
  } while (0)
#define EXPECT_OK(expr)                                          \
  do {                                                           \
    const ::lattice::Status lattice_s_ = ::lattice::testutil::ToStatus(expr); \
    EXPECT_TRUE(lattice_s_.ok()) << #expr << ": " << lattice_s_.ToString(); \
  } while (0)
// ASSERT_OK_AND_ASSIGN(auto x, MakeX());
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL(LATTICE_CONCAT(lattice_t_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL(tmp, lhs, expr)                       \
  auto tmp = (expr);                                                    \
  ASSERT_TRUE(tmp.ok()) << #expr << ": " << tmp.status().ToString();    \
  lhs = std::move(tmp).value()

namespace lattice::testutil {

inline Status ToStatus(const Status& s) { return s; }
template <typename T>
Status ToStatus(const StatusOr<T>& s) { return s.status(); }

// A fresh directory under $TMPDIR (or /tmp), removed on destruction unless
// LATTICE_KEEP_TEST_DIRS is set.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Join(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A seeded generator that prints its seed (LATTICE_TEST_SEED overrides it).
std::mt19937_64 SeededRng(const std::string& test_name);

// Polls `condition` every `interval` until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
             std::chrono::milliseconds interval = std::chrono::milliseconds(20));

// Root of the source tree (for fixture files).
std::string SourceDir();

}  // namespace lattice::testutil
