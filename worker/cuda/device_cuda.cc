// CUDA build (-DLATTICE_WITH_CUDA=ON): one GPU per worker, through the CUDA runtime API;
// per-task peaks from LibTorch's CUDA caching allocator (so this backend needs a CUDA
// LibTorch, as the jobs do).
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>

#include <cstdio>

#include "comm/nccl_communicator.h"
#include "worker/device.h"

namespace lattice {

std::string DeviceInfo::Describe() const {
  if (kind != "cuda") return kind;
  char buf[256];
  std::snprintf(buf, sizeof(buf), "cuda:%d %s (%.1f GiB)", index, name.c_str(),
                static_cast<double>(total_bytes) / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

std::string DeviceInfo::TorchDevice() const {
  return kind == "cuda" ? "cuda:" + std::to_string(index) : "cpu";
}

StatusOr<DeviceInfo> DiscoverDevice(int local_worker_rank) {
  int count = 0;
  cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess || count == 0) {
    std::string why = rc != cudaSuccess ? cudaGetErrorString(rc) : "no CUDA device";
    cudaGetLastError();  // clear the sticky error
    return Status::FailedPrecondition(
        "this worker was built with CUDA but sees no GPU (" + why +
        "); run it on a GPU node, or use a CPU build (-DLATTICE_WITH_CUDA=OFF)");
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

void ResetPeakDeviceMemory(const DeviceInfo& device) {
  if (device.kind != "cuda") return;
  c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device.index));
}

int64_t PeakDeviceMemory(const DeviceInfo& device) {
  if (device.kind != "cuda") return 0;
  auto stats =
      c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device.index));
  return stats.allocated_bytes[0].peak;  // [0]: the aggregate over pool kinds
}

int64_t DeviceMemoryInUse(const DeviceInfo& device) {
  if (device.kind != "cuda") return 0;
  size_t free_bytes = 0, total = 0;
  if (cudaMemGetInfo(&free_bytes, &total) != cudaSuccess) return 0;
  return static_cast<int64_t>(total - free_bytes);
}

StatusOr<std::unique_ptr<comm::Communicator>> DeviceGangCommunicator(const DeviceInfo& device,
                                                                     comm::Communicator& host) {
  if (device.kind != "cuda") return std::unique_ptr<comm::Communicator>();
  LATTICE_ASSIGN_OR_RETURN(std::unique_ptr<comm::NcclCommunicator> nccl,
                           comm::NcclCommunicator::Create(host, device.index));
  return std::unique_ptr<comm::Communicator>(std::move(nccl));
}

}  // namespace lattice
