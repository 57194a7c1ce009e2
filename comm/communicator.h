// Collectives among the members of a gang: the k workers that run one multi-worker trial
// (resources.workers_per_trial). The data plane of a gang; the control plane (coordinator
// <-> worker messages) is control/.
//
// Backends (one factory each, they differ in where memory lives and who calls MPI):
//   MpiCommunicator   (comm/mpi_communicator.h)   a sub-communicator of the gang's worker
//                     ranks (MPI_Comm_create_group); host memory; called by a worker rank.
//   RelayCommunicator (comm/relay.h)              what a task process uses: it must not call
//                     MPI (it is forked from the rank), so it hands its buffer to its rank
//                     through shared memory and the rank runs the MpiCommunicator op.
//   NcclCommunicator  (comm/nccl_communicator.h)  LATTICE_WITH_CUDA only: device memory; the
//                     task process runs NCCL itself, its unique id broadcast over another
//                     Communicator (the relay, i.e. MPI) first.
//
// Contract (tests/comm/communicator_test.cc runs it against every backend of the build):
//   - Every member calls the same collectives in the same order with the same counts,
//     roots and ops; a member that does not (or is gone) makes the others wait: callers
//     bound that with their cancellation (RelayCommunicator) or the gang's failure.
//   - Buffers are the backend's memory (host; device for NCCL), `count` elements of float.
//   - kMean is the sum divided by size(), in float.
//   - Errors: InvalidArgument for a bad root or a count the backend cannot carry, Cancelled
//     when the caller's cancellation fired while waiting, Internal / Unavailable for a
//     failure of the transport (the gang's attempt then fails as a whole).
// Thread-safety: one thread at a time per communicator.
#pragma once

#include <cstddef>
#include <string_view>

#include "common/status.h"

namespace lattice::comm {

enum class ReduceOp : int { kSum = 0, kMean = 1 };

class Communicator {
 public:
  virtual ~Communicator() = default;

  // This member's position in the gang (0 = the first member, which reports) and the
  // number of members.
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "mpi", "relay", "nccl".
  virtual std::string_view backend() const = 0;

  // In place: data[i] becomes the sum (or mean) of data[i] over every member.
  virtual Status Allreduce(float* data, size_t count, ReduceOp op) = 0;
  // `bytes` bytes of `data` on member `root` are copied to `data` on every member.
  virtual Status Broadcast(void* data, size_t bytes, int root) = 0;
  // recv[m * count + i] = send[i] of member m; recv holds size() * count floats. In place
  // when send == recv + rank() * count (this member's part already where it goes).
  virtual Status Allgather(const float* send, size_t count, float* recv) = 0;
  // In place, over size() blocks of `count` floats (data holds size() * count): afterwards
  // data[0, count) holds block rank() (data[rank() * count, (rank() + 1) * count) before)
  // summed (or averaged) over every member; the rest of data is unspecified. MPI's
  // MPI_Reduce_scatter_block with MPI_IN_PLACE. With Allgather, the two halves of an
  // allreduce, between which each member can work on its block alone (a sharded optimizer
  // step: jobs/internal/data_parallel.h).
  virtual Status ReduceScatter(float* data, size_t count, ReduceOp op) = 0;
  // Returns once every member has called it.
  virtual Status Barrier() = 0;

  // Memory of `count` floats (host memory; the backend's) in which the collectives run
  // without staging copies, for a buffer the caller reuses every step (data-parallel
  // training keeps its parameters and gradients there). Each call reserves another region
  // (they never overlap), valid while the communicator lives. nullptr when the backend has
  // no such memory or not that much more: the caller uses its own.
  virtual float* Workspace(size_t /*count*/) { return nullptr; }
};

}  // namespace lattice::comm
