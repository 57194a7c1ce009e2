#include "comm/mpi_communicator.h"

#include <climits>
#include <cstring>
#include <set>
#include <string>

namespace lattice::comm {
namespace {

Status MpiError(const char* what, int rc) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  return Status::Internal(std::string(what) + ": " + std::string(text, static_cast<size_t>(len)));
}

Status CheckCount(size_t count, const char* what) {
  if (count > static_cast<size_t>(INT_MAX)) {
    return Status::InvalidArgument(std::string(what) + ": " + std::to_string(count) +
                                   " elements is more than one MPI call carries (" +
                                   std::to_string(INT_MAX) + ")");
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::unique_ptr<MpiCommunicator>> MpiCommunicator::CreateGroup(
    MPI_Comm parent, const std::vector<int>& parent_ranks, int tag) {
  int me = 0, parent_size = 0;
  MPI_Comm_rank(parent, &me);
  MPI_Comm_size(parent, &parent_size);
  if (parent_ranks.empty()) return Status::InvalidArgument("gang: no members");
  std::set<int> seen;
  bool member = false;
  for (int r : parent_ranks) {
    if (r < 0 || r >= parent_size) {
      return Status::InvalidArgument("gang: rank " + std::to_string(r) + " is not in 0.." +
                                     std::to_string(parent_size - 1));
    }
    if (!seen.insert(r).second) {
      return Status::InvalidArgument("gang: rank " + std::to_string(r) + " is listed twice");
    }
    member |= r == me;
  }
  if (!member) {
    return Status::InvalidArgument("gang: rank " + std::to_string(me) + " is not a member");
  }
  if (tag < 0 || tag > 32767) return Status::InvalidArgument("gang: tag out of 0..32767");
  MPI_Group world = MPI_GROUP_NULL, group = MPI_GROUP_NULL;
  MPI_Comm_group(parent, &world);
  MPI_Group_incl(world, static_cast<int>(parent_ranks.size()), parent_ranks.data(), &group);
  MPI_Comm comm = MPI_COMM_NULL;
  const int rc = MPI_Comm_create_group(parent, group, tag, &comm);
  MPI_Group_free(&group);
  MPI_Group_free(&world);
  if (rc != MPI_SUCCESS) return MpiError("MPI_Comm_create_group", rc);
  return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(comm));
}

StatusOr<std::unique_ptr<MpiCommunicator>> MpiCommunicator::Duplicate(MPI_Comm comm) {
  MPI_Comm dup = MPI_COMM_NULL;
  if (int rc = MPI_Comm_dup(comm, &dup); rc != MPI_SUCCESS) return MpiError("MPI_Comm_dup", rc);
  return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(dup));
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm) : comm_(comm) {
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

MpiCommunicator::~MpiCommunicator() { MPI_Comm_free(&comm_); }

bool MpiCommunicator::Op::Test(Status* status) {
  if (!start_.ok()) {
    *status = start_;
    return true;
  }
  int done = 0;
  const int rc = MPI_Test(&request_, &done, MPI_STATUS_IGNORE);
  if (rc != MPI_SUCCESS) {
    *status = MpiError("MPI_Test", rc);
    return true;
  }
  if (!done) return false;
  if (mean_data_ != nullptr) {
    const float inv = 1.0f / static_cast<float>(mean_size_);
    for (size_t i = 0; i < mean_count_; ++i) mean_data_[i] *= inv;
  }
  *status = Status::Ok();
  return true;
}

MpiCommunicator::Op MpiCommunicator::Failed(Status why) {
  Op op;
  op.start_ = std::move(why);
  return op;
}

MpiCommunicator::Op MpiCommunicator::StartAllreduce(float* data, size_t count, ReduceOp reduce) {
  if (Status s = CheckCount(count, "allreduce"); !s.ok()) return Failed(s);
  Op op;
  const int rc = MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(count), MPI_FLOAT, MPI_SUM,
                                comm_, &op.request_);
  if (rc != MPI_SUCCESS) return Failed(MpiError("MPI_Iallreduce", rc));
  if (reduce == ReduceOp::kMean) {
    op.mean_data_ = data;
    op.mean_count_ = count;
    op.mean_size_ = size_;
  }
  return op;
}

MpiCommunicator::Op MpiCommunicator::StartBroadcast(void* data, size_t bytes, int root) {
  if (root < 0 || root >= size_) {
    return Failed(Status::InvalidArgument("broadcast: root " + std::to_string(root) +
                                          " is not a member (0.." + std::to_string(size_ - 1) + ")"));
  }
  if (Status s = CheckCount(bytes, "broadcast"); !s.ok()) return Failed(s);
  Op op;
  const int rc = MPI_Ibcast(data, static_cast<int>(bytes), MPI_BYTE, root, comm_, &op.request_);
  if (rc != MPI_SUCCESS) return Failed(MpiError("MPI_Ibcast", rc));
  return op;
}

MpiCommunicator::Op MpiCommunicator::StartAllgatherInPlace(float* recv, size_t count) {
  if (Status s = CheckCount(count * static_cast<size_t>(size_), "allgather"); !s.ok()) {
    return Failed(s);
  }
  Op op;
  const int rc = MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, recv, static_cast<int>(count),
                                MPI_FLOAT, comm_, &op.request_);
  if (rc != MPI_SUCCESS) return Failed(MpiError("MPI_Iallgather", rc));
  return op;
}

MpiCommunicator::Op MpiCommunicator::StartBarrier() {
  Op op;
  const int rc = MPI_Ibarrier(comm_, &op.request_);
  if (rc != MPI_SUCCESS) return Failed(MpiError("MPI_Ibarrier", rc));
  return op;
}

Status MpiCommunicator::Wait(Op op) {
  Status status;
  while (!op.Test(&status)) {
  }
  return status;
}

Status MpiCommunicator::Allreduce(float* data, size_t count, ReduceOp op) {
  return Wait(StartAllreduce(data, count, op));
}

Status MpiCommunicator::Broadcast(void* data, size_t bytes, int root) {
  return Wait(StartBroadcast(data, bytes, root));
}

Status MpiCommunicator::Allgather(const float* send, size_t count, float* recv) {
  std::memcpy(recv + static_cast<size_t>(rank_) * count, send, count * sizeof(float));
  return Wait(StartAllgatherInPlace(recv, count));
}

Status MpiCommunicator::Barrier() { return Wait(StartBarrier()); }

}  // namespace lattice::comm
