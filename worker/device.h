// Device discovery for a worker: the GPU it owns (one worker per GPU) or the CPU.
//
// The CPU build (device_cpu.cc) always reports the CPU. With -DLATTICE_WITH_CUDA=ON the
// CUDA backend (worker/cuda/device_cuda.cc, built against a CUDA LibTorch) is linked
// instead: worker k on a node uses GPU (k-1) mod <GPUs on the node>, and reports its name
// and memory; a CUDA build that sees no GPU is an error (the worker says so and exits).
// VRAM in use is sent with every heartbeat and exported as lattice_worker_vram_bytes{rank},
// the device's total with the registration (lattice_worker_vram_total_bytes{rank}); the
// caching allocator's peak per task goes into the trial's results.
// The two backends are the only place that differs between the builds (no #if elsewhere).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "comm/communicator.h"
#include "common/status.h"

namespace lattice {

struct DeviceInfo {
  std::string kind = "cpu";  // "cpu" | "cuda"
  int index = -1;            // CUDA device ordinal, -1 for the CPU
  std::string name;          // e.g. "NVIDIA H100 80GB HBM3"
  int64_t total_bytes = 0;   // device memory, 0 for the CPU

  // "cpu" or "cuda:0 NVIDIA H100 80GB HBM3 (79.1 GiB)".
  std::string Describe() const;
  // The torch device string jobs run on: "cpu" or "cuda:0".
  std::string TorchDevice() const;
};

// The device of the worker with this node-local rank (1-based among workers).
// CUDA build without a usable GPU: FailedPrecondition saying so.
StatusOr<DeviceInfo> DiscoverDevice(int local_worker_rank);

// The allocator's peak of device memory allocated since the last reset, bytes (0 on the
// CPU). The worker resets it before each task and reports the peak with the task's result.
void ResetPeakDeviceMemory(const DeviceInfo& device);
int64_t PeakDeviceMemory(const DeviceInfo& device);

// Device memory in use now, bytes (0 for the CPU or when unknown).
int64_t DeviceMemoryInUse(const DeviceInfo& device);

// A gang member's communicator for device memory (comm/communicator.h): on a CUDA worker
// NCCL on its GPU, the unique id broadcast over `host` (the gang's relay, i.e. MPI), which
// every member calls at the same point; null on the CPU (host memory needs none).
StatusOr<std::unique_ptr<comm::Communicator>> DeviceGangCommunicator(const DeviceInfo& device,
                                                                     comm::Communicator& host);

}  // namespace lattice
