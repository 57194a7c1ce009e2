#include "comm/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <string>

namespace lattice::comm {
namespace {

Status CudaError(const char* what, cudaError_t rc) {
  return Status::Internal(std::string(what) + ": " + cudaGetErrorString(rc));
}

Status NcclError(const char* what, ncclResult_t rc) {
  return Status::Internal(std::string(what) + ": " + ncclGetErrorString(rc));
}

}  // namespace

struct NcclCommunicator::Impl {
  int device = 0;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  float* scratch = nullptr;  // one float on the device, for Barrier

  Status Finish(const char* what, ncclResult_t rc) {
    if (rc != ncclSuccess) return NcclError(what, rc);
    if (cudaError_t e = cudaStreamSynchronize(stream); e != cudaSuccess) {
      return CudaError("cudaStreamSynchronize", e);
    }
    return Status::Ok();
  }
};

bool NcclCommunicator::DevicePresent() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Create(Communicator& bootstrap,
                                                                     int device) {
  auto impl = std::make_unique<Impl>();
  impl->device = device;
  if (cudaError_t e = cudaSetDevice(device); e != cudaSuccess) return CudaError("cudaSetDevice", e);
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (bootstrap.rank() == 0) {
    if (ncclResult_t rc = ncclGetUniqueId(&id); rc != ncclSuccess) {
      return NcclError("ncclGetUniqueId", rc);
    }
  }
  LATTICE_RETURN_IF_ERROR(bootstrap.Broadcast(&id, sizeof(id), 0));
  if (ncclResult_t rc = ncclCommInitRank(&impl->comm, bootstrap.size(), id, bootstrap.rank());
      rc != ncclSuccess) {
    return NcclError("ncclCommInitRank", rc);
  }
  if (cudaError_t e = cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking);
      e != cudaSuccess) {
    return CudaError("cudaStreamCreate", e);
  }
  if (cudaError_t e = cudaMalloc(&impl->scratch, sizeof(float)); e != cudaSuccess) {
    return CudaError("cudaMalloc", e);
  }
  const int rank = bootstrap.rank(), size = bootstrap.size();
  return std::unique_ptr<NcclCommunicator>(new NcclCommunicator(std::move(impl), rank, size));
}

NcclCommunicator::NcclCommunicator(std::unique_ptr<Impl> impl, int rank, int size)
    : impl_(std::move(impl)), rank_(rank), size_(size) {}

NcclCommunicator::~NcclCommunicator() {
  if (impl_->scratch != nullptr) cudaFree(impl_->scratch);
  if (impl_->stream != nullptr) cudaStreamDestroy(impl_->stream);
  if (impl_->comm != nullptr) ncclCommDestroy(impl_->comm);
}

Status NcclCommunicator::Allreduce(float* data, size_t count, ReduceOp op) {
  cudaDeviceSynchronize();  // the caller's kernels that produced `data`
  const ncclRedOp_t red = op == ReduceOp::kMean ? ncclAvg : ncclSum;
  return impl_->Finish("ncclAllReduce", ncclAllReduce(data, data, count, ncclFloat, red,
                                                      impl_->comm, impl_->stream));
}

Status NcclCommunicator::Broadcast(void* data, size_t bytes, int root) {
  if (root < 0 || root >= size_) {
    return Status::InvalidArgument("broadcast: root " + std::to_string(root) +
                                   " is not a member (0.." + std::to_string(size_ - 1) + ")");
  }
  cudaDeviceSynchronize();
  return impl_->Finish("ncclBroadcast", ncclBroadcast(data, data, bytes, ncclUint8, root,
                                                      impl_->comm, impl_->stream));
}

Status NcclCommunicator::Allgather(const float* send, size_t count, float* recv) {
  cudaDeviceSynchronize();
  return impl_->Finish("ncclAllGather", ncclAllGather(send, recv, count, ncclFloat, impl_->comm,
                                                      impl_->stream));
}

Status NcclCommunicator::ReduceScatter(float* data, size_t count, ReduceOp op) {
  cudaDeviceSynchronize();
  const ncclRedOp_t red = op == ReduceOp::kMean ? ncclAvg : ncclSum;
  float* own = data + static_cast<size_t>(rank_) * count;  // no overlap with the front
  LATTICE_RETURN_IF_ERROR(impl_->Finish(
      "ncclReduceScatter",
      ncclReduceScatter(data, own, count, ncclFloat, red, impl_->comm, impl_->stream)));
  if (rank_ == 0 || count == 0) return Status::Ok();
  if (cudaError_t e = cudaMemcpyAsync(data, own, count * sizeof(float), cudaMemcpyDeviceToDevice,
                                      impl_->stream);
      e != cudaSuccess) {
    return CudaError("cudaMemcpyAsync", e);
  }
  if (cudaError_t e = cudaStreamSynchronize(impl_->stream); e != cudaSuccess) {
    return CudaError("cudaStreamSynchronize", e);
  }
  return Status::Ok();
}

Status NcclCommunicator::Barrier() {
  return impl_->Finish("ncclAllReduce", ncclAllReduce(impl_->scratch, impl_->scratch, 1, ncclFloat,
                                                      ncclSum, impl_->comm, impl_->stream));
}

}  // namespace lattice::comm
