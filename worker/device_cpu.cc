// CPU-only build: every worker runs on the CPU.
#include "worker/device.h"

namespace lattice {

std::string DeviceInfo::Describe() const { return kind; }

DeviceInfo DiscoverDevice(int /*local_worker_rank*/) { return DeviceInfo{}; }

int64_t DeviceMemoryInUse(const DeviceInfo& /*device*/) { return 0; }

}  // namespace lattice
