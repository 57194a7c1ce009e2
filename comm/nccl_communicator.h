// NcclCommunicator: a gang's Communicator over NCCL, for task processes on GPU workers
// (LATTICE_WITH_CUDA builds only; comm/CMakeLists.txt).
//
// Create() is collective over `bootstrap`, a Communicator of the same gang that needs no
// GPU (the relay, i.e. MPI through the worker ranks): member 0 makes the NCCL unique id,
// bootstrap broadcasts it, every member joins with ncclCommInitRank on its device. The task
// process then runs NCCL itself; its rank is not involved any more.
//
// Buffers are device memory of `device`. Each call enqueues on the communicator's own
// stream and waits for it (the caller's tensors are ready: LibTorch's current stream is
// synchronised first). kMean is ncclAvg.
// Thread-safety: one thread at a time.
#pragma once

#include <memory>

#include "comm/communicator.h"

namespace lattice::comm {

class NcclCommunicator final : public Communicator {
 public:
  static StatusOr<std::unique_ptr<NcclCommunicator>> Create(Communicator& bootstrap, int device);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string_view backend() const override { return "nccl"; }
  Status Allreduce(float* data, size_t count, ReduceOp op) override;
  Status Broadcast(void* data, size_t bytes, int root) override;
  Status Allgather(const float* send, size_t count, float* recv) override;
  // ncclReduceScatter in NCCL's in-place form (into this member's block), then a device
  // copy of the block to the front.
  Status ReduceScatter(float* data, size_t count, ReduceOp op) override;
  Status Barrier() override;

  // Whether this process sees a CUDA device (the contract suite skips NCCL otherwise).
  static bool DevicePresent();

 private:
  struct Impl;
  NcclCommunicator(std::unique_ptr<Impl> impl, int rank, int size);
  std::unique_ptr<Impl> impl_;
  int rank_;
  int size_;
};

}  // namespace lattice::comm
