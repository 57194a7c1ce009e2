#include "control/mpi_channel.h"

#include <limits>
#include <string>
#include <thread>

namespace lattice {

MpiControlChannel::MpiControlChannel(MPI_Comm comm) : comm_(comm) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
}

MpiControlChannel::~MpiControlChannel() {
  // A send to a dead rank never completes; freeing its buffer under MPI would be worse than
  // leaking it at exit.
  if (!pending_.empty()) new std::list<PendingSend>(std::move(pending_));  // nodes keep their place
}

Status MpiControlChannel::Send(WorkerRank dest, const Message& m) {
  Progress();
  PendingSend& p = pending_.emplace_back();
  p.payload = EncodeMessage(m);
  if (p.payload.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    pending_.pop_back();
    return Status::InvalidArgument("message of " + std::to_string(p.payload.size()) +
                                   " bytes is too large for one MPI message");
  }
  int rc = MPI_Isend(p.payload.data(), static_cast<int>(p.payload.size()), MPI_CHAR, dest.value,
                     static_cast<int>(TypeOf(m)), comm_, &p.request);
  if (rc != MPI_SUCCESS) {
    pending_.pop_back();
    return Status::Unavailable("MPI_Isend to rank " + std::to_string(dest.value) + " failed");
  }
  return Status::Ok();
}

void MpiControlChannel::Progress() {
  for (auto it = pending_.begin(); it != pending_.end();) {
    int done = 0;
    if (MPI_Test(&it->request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS || done) {
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
}

bool MpiControlChannel::Flush(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    Progress();
    if (pending_.empty()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

std::optional<StatusOr<Envelope>> MpiControlChannel::Poll() {
  Progress();
  int flag = 0;
  MPI_Status st;
  if (MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &flag, &st) != MPI_SUCCESS || !flag) {
    return std::nullopt;
  }
  int count = 0;
  MPI_Get_count(&st, MPI_CHAR, &count);
  std::string payload(static_cast<size_t>(count), '\0');
  if (MPI_Recv(payload.data(), count, MPI_CHAR, st.MPI_SOURCE, st.MPI_TAG, comm_,
               MPI_STATUS_IGNORE) != MPI_SUCCESS) {
    return StatusOr<Envelope>(
        Status::Unavailable("MPI_Recv from rank " + std::to_string(st.MPI_SOURCE) + " failed"));
  }
  auto decoded = DecodeMessage(static_cast<MessageType>(st.MPI_TAG), payload);
  if (!decoded.ok()) {
    return StatusOr<Envelope>(
        decoded.status().WithContext("from rank " + std::to_string(st.MPI_SOURCE)));
  }
  return StatusOr<Envelope>(Envelope{WorkerRank{st.MPI_SOURCE}, std::move(decoded).value()});
}

}  // namespace lattice
