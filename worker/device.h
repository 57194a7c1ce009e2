// Device discovery for a worker: the GPU it owns (one worker per GPU) or the CPU.
//
// The CPU build (device_cpu.cc) always reports the CPU. With -DLATTICE_WITH_CUDA=ON the
// CUDA backend (worker/cuda/device_cuda.cc) is linked instead: worker k on a node uses
// GPU (k-1) mod <GPUs on the node>, and reports its name and memory. VRAM in use is sent
// with every heartbeat and exported as lattice_worker_vram_bytes_max.
#pragma once

#include <cstdint>
#include <string>

namespace lattice {

struct DeviceInfo {
  std::string kind = "cpu";  // "cpu" | "cuda"
  int index = -1;            // CUDA device ordinal, -1 for the CPU
  std::string name;          // e.g. "NVIDIA H100 80GB HBM3"
  int64_t total_bytes = 0;   // device memory, 0 for the CPU

  // "cpu" or "cuda:0 NVIDIA H100 80GB HBM3 (79.1 GiB)".
  std::string Describe() const;
};

// The device of the worker with this node-local rank (1-based among workers).
DeviceInfo DiscoverDevice(int local_worker_rank);

// Device memory in use now, bytes (0 for the CPU or when unknown).
int64_t DeviceMemoryInUse(const DeviceInfo& device);

}  // namespace lattice
