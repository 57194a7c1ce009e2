// Free space of the disk that holds a directory, and the "disk full" errors built from it.
//
// The coordinator keeps a reserve of free bytes on the disk of its data directory
// (`lattice cluster --min-free-bytes`): below it, changes that nobody is waiting for yet
// (a submit, a cancel, a resume, placing a trial, an optional step checkpoint, publishing an
// index) are refused with InsufficientStorage (HTTP 507) before anything is applied, while
// work already running still commits into the reserve. See ARCHITECTURE.md, "Disk full".
//
// Thread-safety: functions, safe from any thread.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace lattice {

// The default reserve: 256 MiB (room for RocksDB to flush a full memtable and for the
// results and final checkpoints of the trials that are running when the reserve is hit).
inline constexpr int64_t kDefaultMinFreeBytes = int64_t{256} << 20;

struct DiskSpace {
  int64_t free_bytes = 0;   // available to this (unprivileged) process: statvfs f_bavail
  int64_t total_bytes = 0;
};

// statvfs(path). IoError naming the path when it fails (e.g. it does not exist).
StatusOr<DiskSpace> GetDiskSpace(const std::string& path);

// "512 B", "3.0 KiB", "12.3 MiB", "1.5 GiB".
std::string FormatBytes(int64_t bytes);

// OK when the disk of `dir` has at least `min_free_bytes` + `need_bytes` free (always OK
// when both are 0, or when the free space cannot be read: a failing statvfs must not stop
// the cluster; the write that follows reports the real error). Else InsufficientStorage:
// "data directory <dir> is full: 1.2 MiB free, 256.0 MiB needed (reserve --min-free-bytes
// 256.0 MiB); free space on that disk (the cluster carries on by itself once it is back)".
Status CheckFreeSpace(const std::string& dir, int64_t min_free_bytes, int64_t need_bytes = 0);

// Whether `s` is an error that a full disk (ENOSPC) or an exhausted quota (EDQUOT) caused:
// InsufficientStorage, or an error whose message carries the system's text for them.
bool IsNoSpace(const Status& s);

// An IoError or Internal error that a full disk caused (IsNoSpace, or the disk of `dir` has
// less than 1 MiB left: not every writer says why it failed) becomes InsufficientStorage
// whose message ends with the free space of `dir`'s disk; anything else is returned as is.
Status ClassifyNoSpace(const Status& s, const std::string& dir);

}  // namespace lattice
