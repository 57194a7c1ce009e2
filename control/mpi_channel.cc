#include "control/mpi_channel.h"

#include <string>

namespace lattice {

MpiControlChannel::MpiControlChannel(MPI_Comm comm) : comm_(comm) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

Status MpiControlChannel::Send(WorkerRank dest, const Message& m) {
  std::string payload = EncodeMessage(m);
  int rc = MPI_Send(payload.data(), static_cast<int>(payload.size()), MPI_CHAR, dest.value,
                    static_cast<int>(TypeOf(m)), comm_);
  if (rc != MPI_SUCCESS) {
    return Status::Unavailable("MPI_Send to rank " + std::to_string(dest.value) + " failed");
  }
  return Status::Ok();
}

std::optional<StatusOr<Envelope>> MpiControlChannel::Poll() {
  int flag = 0;
  MPI_Status st;
  MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &flag, &st);
  if (!flag) return std::nullopt;
  int count = 0;
  MPI_Get_count(&st, MPI_CHAR, &count);
  std::string payload(static_cast<size_t>(count), '\0');
  MPI_Recv(payload.data(), count, MPI_CHAR, st.MPI_SOURCE, st.MPI_TAG, comm_, MPI_STATUS_IGNORE);
  auto decoded = DecodeMessage(static_cast<MessageType>(st.MPI_TAG), payload);
  if (!decoded.ok()) {
    return StatusOr<Envelope>(
        decoded.status().WithContext("from rank " + std::to_string(st.MPI_SOURCE)));
  }
  return StatusOr<Envelope>(Envelope{WorkerRank{st.MPI_SOURCE}, std::move(decoded).value()});
}

}  // namespace lattice
