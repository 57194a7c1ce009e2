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

// kMean: the sum divided by the member count, in float.
void Divide(float* data, size_t count, int size) {
  const float inv = 1.0f / static_cast<float>(size);
  for (size_t i = 0; i < count; ++i) data[i] *= inv;
}

// Point-to-point collectives' tags on the gang's own communicator (messages of one kind
// between two members match in order; collectives do not use tags).
constexpr int kAllgatherTag = 1;
constexpr int kReduceScatterTag = 2;

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
  const int rc = MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &done,
                             MPI_STATUSES_IGNORE);
  if (rc != MPI_SUCCESS) {
    *status = MpiError("MPI_Testall", rc);
    return true;
  }
  if (!done) return false;
  if (finish_) finish_();
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
  op.requests_.resize(1);
  const int rc = MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(count), MPI_FLOAT, MPI_SUM,
                                comm_, op.requests_.data());
  if (rc != MPI_SUCCESS) return Failed(MpiError("MPI_Iallreduce", rc));
  if (reduce == ReduceOp::kMean) {
    op.finish_ = [data, count, size = size_] { Divide(data, count, size); };
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
  op.requests_.resize(1);
  const int rc =
      MPI_Ibcast(data, static_cast<int>(bytes), MPI_BYTE, root, comm_, op.requests_.data());
  if (rc != MPI_SUCCESS) return Failed(MpiError("MPI_Ibcast", rc));
  return op;
}

MpiCommunicator::Op MpiCommunicator::StartAllgatherInPlace(float* recv, size_t count) {
  if (Status s = CheckCount(count * static_cast<size_t>(size_), "allgather"); !s.ok()) {
    return Failed(s);
  }
  Op op;
  const float* own = recv + static_cast<size_t>(rank_) * count;
  for (int j = 0; j < size_; ++j) {
    if (j == rank_) continue;
    MPI_Request in = MPI_REQUEST_NULL, out = MPI_REQUEST_NULL;
    int rc = MPI_Irecv(recv + static_cast<size_t>(j) * count, static_cast<int>(count), MPI_FLOAT,
                       j, kAllgatherTag, comm_, &in);
    if (rc == MPI_SUCCESS) {
      rc = MPI_Isend(own, static_cast<int>(count), MPI_FLOAT, j, kAllgatherTag, comm_, &out);
    }
    if (rc != MPI_SUCCESS) return Failed(MpiError("allgather: MPI_Isend/MPI_Irecv", rc));
    op.requests_.push_back(in);
    op.requests_.push_back(out);
  }
  return op;
}

MpiCommunicator::Op MpiCommunicator::StartReduceScatter(float* data, size_t count,
                                                        ReduceOp reduce) {
  if (Status s = CheckCount(count * static_cast<size_t>(size_), "reduce-scatter"); !s.ok()) {
    return Failed(s);
  }
  const size_t k = static_cast<size_t>(size_), m = static_cast<size_t>(rank_);
  if (scratch_.size() < (k - 1) * count) scratch_.resize((k - 1) * count);
  // Member j's contribution to this member's block: the own block, or a scratch slot.
  float* own = data + m * count;
  auto part = [this, own, m, count](size_t j) -> const float* {
    return j == m ? own : scratch_.data() + (j < m ? j : j - 1) * count;
  };
  Op op;
  for (size_t j = 0; j < k; ++j) {
    if (j == m) continue;
    MPI_Request in = MPI_REQUEST_NULL, out = MPI_REQUEST_NULL;
    int rc = MPI_Irecv(const_cast<float*>(part(j)), static_cast<int>(count), MPI_FLOAT,
                       static_cast<int>(j), kReduceScatterTag, comm_, &in);
    if (rc == MPI_SUCCESS) {
      rc = MPI_Isend(data + j * count, static_cast<int>(count), MPI_FLOAT, static_cast<int>(j),
                     kReduceScatterTag, comm_, &out);
    }
    if (rc != MPI_SUCCESS) return Failed(MpiError("reduce-scatter: MPI_Isend/MPI_Irecv", rc));
    op.requests_.push_back(in);
    op.requests_.push_back(out);
  }
  // Once every block is sent and received: data[0, count) = the parts summed in member
  // order (the front is block 0, sent by then; for member 0 it is the own block itself).
  op.finish_ = [data, count, k, part, reduce] {
    float* out = data;
    if (k == 1) return;
    const float* a = part(0);
    const float* b = part(1);
    for (size_t i = 0; i < count; ++i) out[i] = a[i] + b[i];
    for (size_t j = 2; j < k; ++j) {
      const float* v = part(j);
      for (size_t i = 0; i < count; ++i) out[i] += v[i];
    }
    if (reduce == ReduceOp::kMean) Divide(out, count, static_cast<int>(k));
  };
  return op;
}

MpiCommunicator::Op MpiCommunicator::StartBarrier() {
  Op op;
  op.requests_.resize(1);
  const int rc = MPI_Ibarrier(comm_, op.requests_.data());
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
  float* own = recv + static_cast<size_t>(rank_) * count;
  if (send != own) std::memcpy(own, send, count * sizeof(float));
  return Wait(StartAllgatherInPlace(recv, count));
}

Status MpiCommunicator::ReduceScatter(float* data, size_t count, ReduceOp op) {
  return Wait(StartReduceScatter(data, count, op));
}

Status MpiCommunicator::Barrier() { return Wait(StartBarrier()); }

}  // namespace lattice::comm
