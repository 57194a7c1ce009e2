#include "comm/relay_server.h"

#include <cstdio>
#include <cstring>
#include <string>

namespace lattice::comm {

RelayServer::RelayServer(RelayBuffer* buffer, MPI_Comm world) : buffer_(buffer), world_(world) {}

void RelayServer::SetGang(uint64_t key, std::vector<int> world_ranks) {
  if (key == gang_) return;
  EndGang(gang_);
  gang_ = key;
  ranks_ = std::move(world_ranks);
}

void RelayServer::EndGang(uint64_t key) {
  if (key == 0 || key != gang_) return;
  gang_ = 0;
  ranks_.clear();
  if (op_) {  // abandoned (comm/relay.h): its communicator cannot be freed
    std::fprintf(stderr, "relay: a collective of a failed gang is abandoned\n");
    op_.reset();
    (void)comm_.release();
  }
  comm_.reset();
}

void RelayServer::Reset() {
  EndGang(gang_);
  RelayRequest* r = buffer_->request();
  r->posted.store(0, std::memory_order_release);
  r->served.store(0, std::memory_order_release);
  last_seq_ = 0;
}

void RelayServer::Complete(uint64_t seq, const Status& status) {
  RelayRequest* r = buffer_->request();
  r->code = static_cast<int32_t>(status.code());
  std::snprintf(r->error, sizeof(r->error), "%s", status.message().c_str());
  buffer_->MarkServed(seq);
}

Status RelayServer::Start(const RelayRequest& r) {
  if (r.gang == 0 || r.gang != gang_) {
    return Status::FailedPrecondition("the worker has no gang for this attempt");
  }
  if (r.offset > buffer_->capacity() || r.bytes > buffer_->capacity() - r.offset) {
    return Status::InvalidArgument("relay request outside the buffer");
  }
  if (!comm_) {
    const int tag = static_cast<int>(gang_ % 32768);
    LATTICE_ASSIGN_OR_RETURN(comm_, MpiCommunicator::CreateGroup(world_, ranks_, tag));
  }
  char* data = buffer_->data() + r.offset;
  switch (r.kind) {
    case RelayKind::kAllreduce:
      op_ = comm_->StartAllreduce(reinterpret_cast<float*>(data), r.bytes / sizeof(float),
                                  static_cast<ReduceOp>(r.reduce));
      break;
    case RelayKind::kBroadcast:
      op_ = comm_->StartBroadcast(data, r.bytes, r.root);
      break;
    case RelayKind::kAllgather:
      if (r.bytes * static_cast<size_t>(comm_->size()) > buffer_->capacity() - r.offset) {
        return Status::InvalidArgument("relay allgather too large");
      }
      op_ = comm_->StartAllgatherInPlace(reinterpret_cast<float*>(data), r.bytes / sizeof(float));
      break;
    case RelayKind::kReduceScatter: {
      const size_t unit = sizeof(float) * static_cast<size_t>(comm_->size());
      if (r.bytes % unit != 0) {
        return Status::InvalidArgument("relay reduce-scatter: " + std::to_string(r.bytes) +
                                       " bytes are not " + std::to_string(comm_->size()) +
                                       " equal blocks of floats");
      }
      op_ = comm_->StartReduceScatter(reinterpret_cast<float*>(data), r.bytes / unit,
                                      static_cast<ReduceOp>(r.reduce));
      break;
    }
    case RelayKind::kBarrier:
      op_ = comm_->StartBarrier();
      break;
    default:
      return Status::InvalidArgument("relay: unknown collective " +
                                     std::to_string(static_cast<int>(r.kind)));
  }
  return Status::Ok();
}

RelayServer::State RelayServer::Poll() {
  buffer_->DrainWakes();
  RelayRequest* r = buffer_->request();
  if (op_) {
    Status status;
    if (op_->Test(&status)) {
      op_.reset();
      Complete(op_seq_, status);
    }
  }
  const uint64_t posted = r->posted.load(std::memory_order_acquire);
  if (!op_ && posted > last_seq_) {
    last_seq_ = posted;
    Status started = Start(*r);
    if (!started.ok()) {
      Complete(posted, started);
    } else {
      op_seq_ = posted;
      Status status;
      if (op_->Test(&status)) {  // small ones often complete at once
        op_.reset();
        Complete(posted, status);
      }
    }
  }
  if (op_) return State::kInFlight;
  return gang_ != 0 ? State::kGang : State::kIdle;
}

}  // namespace lattice::comm
