// A small tmpfs mounted for a test, to fill its disk for real (no mock): the "disk full"
// tests of the state store, the coordinator and a real cluster.
//
// Mounting needs CAP_SYS_ADMIN (root, outside a restricted container): Mount() says why it
// cannot, and the tests GTEST_SKIP with that reason. The destructor always unmounts (lazily,
// so a process that still holds a file there cannot keep it mounted).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"

namespace lattice::testutil {

class TmpfsMount {
 public:
  // Mounts a tmpfs of `size_bytes` at `dir` (created if missing; mode 0700).
  // FailedPrecondition naming the reason when it cannot (e.g. not root).
  static StatusOr<std::unique_ptr<TmpfsMount>> Mount(const std::string& dir, int64_t size_bytes);
  ~TmpfsMount();
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;

  const std::string& dir() const { return dir_; }
  std::string Join(const std::string& name) const { return dir_ + "/" + name; }

  // Fills the disk with a ballast file until only `leave_bytes` are free (0: until a
  // write gets ENOSPC). Adds to the ballast when called again.
  Status Fill(int64_t leave_bytes = 0);
  // Deletes the ballast.
  void Free();
  // Bytes free now (statvfs).
  int64_t FreeBytes() const;

 private:
  explicit TmpfsMount(std::string dir) : dir_(std::move(dir)) {}
  const std::string dir_;
  int ballast_files_ = 0;
};

}  // namespace lattice::testutil
