// The control protocol over MPI point-to-point messages on one communicator: the MPI tag
// is the MessageType, the payload the encoded message (control/messages.h).
#pragma once

#include <mpi.h>

#include "control/channel.h"

namespace lattice {

// Not thread-safe: one owner thread (the one that called MPI_Init_thread).
class MpiControlChannel final : public ControlChannel {
 public:
  explicit MpiControlChannel(MPI_Comm comm);

  WorkerRank rank() const override { return WorkerRank{rank_}; }
  int size() const override { return size_; }
  Status Send(WorkerRank dest, const Message& m) override;
  std::optional<StatusOr<Envelope>> Poll() override;

 private:
  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace lattice
