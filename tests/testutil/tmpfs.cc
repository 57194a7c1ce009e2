#include "tests/testutil/tmpfs.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

namespace lattice::testutil {

StatusOr<std::unique_ptr<TmpfsMount>> TmpfsMount::Mount(const std::string& dir,
                                                        int64_t size_bytes) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::FailedPrecondition("create " + dir + ": " + ec.message());
  const std::string options = "size=" + std::to_string(size_bytes) + ",mode=0700";
  if (::mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
    return Status::FailedPrecondition("cannot mount a tmpfs at " + dir + " (" +
                                      std::strerror(errno) +
                                      "; needs root / CAP_SYS_ADMIN) to fill a real disk");
  }
  return std::unique_ptr<TmpfsMount>(new TmpfsMount(dir));
}

TmpfsMount::~TmpfsMount() {
  if (::umount2(dir_.c_str(), MNT_DETACH) != 0) {
    std::fprintf(stderr, "umount %s: %s\n", dir_.c_str(), std::strerror(errno));
  }
}

int64_t TmpfsMount::FreeBytes() const {
  struct statvfs v {};
  if (::statvfs(dir_.c_str(), &v) != 0) return -1;
  return static_cast<int64_t>(v.f_bavail) * static_cast<int64_t>(v.f_frsize);
}

Status TmpfsMount::Fill(int64_t leave_bytes) {
  const std::string path = Join("ballast." + std::to_string(ballast_files_++));
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return Status::IoError(path + ": " + std::strerror(errno));
  const int64_t target = FreeBytes() - leave_bytes;
  if (target > 0 && ::posix_fallocate(fd, 0, target) != 0) {
    // Less than that: write what fits below.
  }
  if (leave_bytes == 0) {  // the last pages: append until the disk says no
    ::lseek(fd, 0, SEEK_END);
    std::string block(4096, 'b');
    while (::write(fd, block.data(), block.size()) > 0) {
    }
    while (::write(fd, block.data(), 1) == 1) {
    }
  }
  ::close(fd);
  return Status::Ok();
}

void TmpfsMount::Free() {
  for (int i = 0; i < ballast_files_; ++i) ::unlink(Join("ballast." + std::to_string(i)).c_str());
  ballast_files_ = 0;
}

}  // namespace lattice::testutil
