// MpiCommunicator: the Communicator of a gang over a sub-communicator of its worker ranks.
//
// Created with MPI_Comm_create_group, which only the gang's members call (the coordinator
// and the other workers take no part, so gangs form while the rest of the cluster works).
// Every collective exists blocking (the Communicator interface) and nonblocking (Start*,
// MPI-3 MPI_I* collectives): a worker rank relays collectives for its task process
// (comm/relay.h) and must keep serving the coordinator while one is in flight, so it
// starts them and tests them from its loop.
//
// Threading: the thread that owns MPI (MPI_THREAD_FUNNELED) only.
// Errors come back as Status (the communicator uses MPI_ERRORS_RETURN).
#pragma once

#include <mpi.h>

#include <functional>
#include <memory>
#include <vector>

#include "comm/communicator.h"

namespace lattice::comm {

class MpiCommunicator final : public Communicator {
 public:
  // Members are `parent_ranks` of `parent` (in that order: member 0 first); this process
  // must be one of them. `tag` tells apart group creations that may run at the same time
  // (0..32767). Blocks until every member called it. InvalidArgument for an empty list, a
  // duplicate or out-of-range rank, or a caller outside the list.
  static StatusOr<std::unique_ptr<MpiCommunicator>> CreateGroup(MPI_Comm parent,
                                                                const std::vector<int>& parent_ranks,
                                                                int tag);
  // The whole of `comm` (duplicated; the duplicate is owned).
  static StatusOr<std::unique_ptr<MpiCommunicator>> Duplicate(MPI_Comm comm);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  // A collective in flight. Test() until it returns true; the buffer must stay valid and
  // untouched until then. Work left once the messages are in (a kMean's division, a
  // reduce-scatter's sums) runs inside the Test() that completes it.
  class Op {
   public:
    // true once complete (then `status` says how it went).
    bool Test(Status* status);

   private:
    friend class MpiCommunicator;
    std::vector<MPI_Request> requests_;
    std::function<void()> finish_;
    Status start_;  // a failed start: Test() reports it at once
  };

  Op StartAllreduce(float* data, size_t count, ReduceOp op);
  Op StartBroadcast(void* data, size_t bytes, int root);
  // In place: recv holds size() * count floats, this member's own at rank() * count.
  // Point to point: this member's part goes to every other member, straight into its place
  // there (one copy each way with Open MPI's shared-memory single copy).
  Op StartAllgatherInPlace(float* recv, size_t count);
  // Communicator::ReduceScatter's contract: this member's block lands at data's front.
  // Point to point: block j goes to member j, the k - 1 blocks from the others arrive in a
  // scratch buffer the communicator keeps, and the completing Test() adds them in member
  // order. (Open MPI's MPI_Ireduce_scatter_block reduces to one member and scatters: twice
  // the bytes, and all the additions on one rank.)
  Op StartReduceScatter(float* data, size_t count, ReduceOp op);
  Op StartBarrier();

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string_view backend() const override { return "mpi"; }
  Status Allreduce(float* data, size_t count, ReduceOp op) override;
  Status Broadcast(void* data, size_t bytes, int root) override;
  Status Allgather(const float* send, size_t count, float* recv) override;
  Status ReduceScatter(float* data, size_t count, ReduceOp op) override;
  Status Barrier() override;

 private:
  explicit MpiCommunicator(MPI_Comm comm);
  static Status Wait(Op op);
  Op Failed(Status why);

  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
  std::vector<float> scratch_;  // reduce-scatter: the other members' blocks of this one
};

}  // namespace lattice::comm
