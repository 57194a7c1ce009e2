#include "common/disk_space.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace lattice {

StatusOr<DiskSpace> GetDiskSpace(const std::string& path) {
  struct statvfs v {};
  if (::statvfs(path.c_str(), &v) != 0) {
    return Status::IoError("statvfs " + path + ": " + std::strerror(errno));
  }
  DiskSpace out;
  out.free_bytes = static_cast<int64_t>(v.f_bavail) * static_cast<int64_t>(v.f_frsize);
  out.total_bytes = static_cast<int64_t>(v.f_blocks) * static_cast<int64_t>(v.f_frsize);
  return out;
}

std::string FormatBytes(int64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes) / 1024.0;
  size_t unit = 0;
  while (v >= 1024.0 && unit + 1 < sizeof(kUnits) / sizeof(kUnits[0])) {
    v /= 1024.0;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f %s", v, kUnits[unit]);
  return buf;
}

Status CheckFreeSpace(const std::string& dir, int64_t min_free_bytes, int64_t need_bytes) {
  if (min_free_bytes <= 0 && need_bytes <= 0) return Status::Ok();
  auto space = GetDiskSpace(dir);
  if (!space.ok()) return Status::Ok();  // the write itself will say what is wrong
  const int64_t needed = std::max<int64_t>(min_free_bytes, 0) + std::max<int64_t>(need_bytes, 0);
  if (space->free_bytes >= needed) return Status::Ok();
  std::string why = "reserve --min-free-bytes " + FormatBytes(std::max<int64_t>(min_free_bytes, 0));
  if (need_bytes > 0) why += " + " + FormatBytes(need_bytes) + " for this write";
  return Status::InsufficientStorage(
      "data directory " + dir + " is full: " + FormatBytes(space->free_bytes) + " free, " +
      FormatBytes(needed) + " needed (" + why +
      "); free space on that disk (the cluster carries on by itself once it is back)");
}

bool IsNoSpace(const Status& s) {
  if (s.code() == StatusCode::kInsufficientStorage) return true;
  if (s.ok()) return false;
  const std::string& m = s.message();
  return m.find(std::strerror(ENOSPC)) != std::string::npos ||
         m.find(std::strerror(EDQUOT)) != std::string::npos ||
         m.find("No space left") != std::string::npos;
}

Status ClassifyNoSpace(const Status& s, const std::string& dir) {
  if (s.ok() || s.code() == StatusCode::kInsufficientStorage) return s;
  if (s.code() != StatusCode::kIoError && s.code() != StatusCode::kInternal) return s;
  auto space = GetDiskSpace(dir);
  // Not every writer says why (an ofstream only fails): an I/O error on a disk with less
  // than 1 MiB left is taken for the full disk it almost certainly is.
  const bool nearly_full = space.ok() && space->free_bytes < (int64_t{1} << 20);
  if (!IsNoSpace(s) && !nearly_full) return s;
  const std::string free_text = space.ok() ? FormatBytes(space->free_bytes) : "unknown";
  return Status::InsufficientStorage(s.message() + " (the disk of " + dir + " is full: " +
                                     free_text + " free; free space on that disk and retry)");
}

}  // namespace lattice
