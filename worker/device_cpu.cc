// CPU-only build: every worker runs on the CPU.
#include "worker/device.h"

namespace lattice {

std::string DeviceInfo::Describe() const { return kind; }

std::string DeviceInfo::TorchDevice() const { return "cpu"; }

StatusOr<DeviceInfo> DiscoverDevice(int /*local_worker_rank*/) { return DeviceInfo{}; }

int64_t DeviceMemoryInUse(const DeviceInfo& /*device*/) { return 0; }

void ResetPeakDeviceMemory(const DeviceInfo& /*device*/) {}

int64_t PeakDeviceMemory(const DeviceInfo& /*device*/) { return 0; }

StatusOr<std::unique_ptr<comm::Communicator>> DeviceGangCommunicator(
    const DeviceInfo& /*device*/, comm::Communicator& /*host*/) {
  return std::unique_ptr<comm::Communicator>();
}

}  // namespace lattice
