// CUDA build (-DLATTICE_WITH_CUDA=ON): one GPU per worker, through the CUDA runtime API.
#include <cuda_runtime_api.h>

#include <cstdio>

#include "worker/device.h"

namespace lattice {

std::string DeviceInfo::Describe() const {
  if (kind != "cuda") return kind;
  char buf[256];
  std::snprintf(buf, sizeof(buf), "cuda:%d %s (%.1f GiB)", index, name.c_str(),
                static_cast<double>(total_bytes) / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

DeviceInfo DiscoverDevice(int local_worker_rank) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    cudaGetLastError();  // clear the sticky "no device" error
    return DeviceInfo{};  // no usable GPU: run on the CPU
  }
  DeviceInfo info;
  info.kind = "cuda";
  info.index = (local_worker_rank - 1 + count) % count;
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, info.index) == cudaSuccess) {
    info.name = prop.name;
    info.total_bytes = static_cast<int64_t>(prop.totalGlobalMem);
  }
  cudaSetDevice(info.index);
  return info;
}

int64_t DeviceMemoryInUse(const DeviceInfo& device) {
  if (device.kind != "cuda") return 0;
  size_t free_bytes = 0, total = 0;
  if (cudaMemGetInfo(&free_bytes, &total) != cudaSuccess) return 0;
  return static_cast<int64_t>(total - free_bytes);
}

}  // namespace lattice
