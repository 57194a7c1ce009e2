// The control protocol over MPI point-to-point messages on one communicator: the MPI tag
// is the MessageType, the payload the encoded message (control/messages.h).
//
// Sends never block: each is an MPI_Isend whose buffer the channel keeps until MPI reports
// it complete (progressed by Poll and Flush). A rank that died (the cluster runs under
// `mpirun --enable-recovery`, so one dead rank does not end the job) never receives a large
// message; a blocking send to it would hang its sender forever. MPI's ordering between one
// sender and one receiver holds for nonblocking sends too. Errors are returned, not fatal
// (MPI_ERRORS_RETURN on the communicator).
#pragma once

#include <mpi.h>

#include <chrono>
#include <list>
#include <string>

#include "control/channel.h"

namespace lattice {

// Not thread-safe: one owner thread (the one that called MPI_Init_thread).
class MpiControlChannel final : public ControlChannel {
 public:
  explicit MpiControlChannel(MPI_Comm comm);
  // Abandons the sends still in flight (their buffers leak: MPI may still read them).
  ~MpiControlChannel() override;

  WorkerRank rank() const override { return WorkerRank{rank_}; }
  int size() const override { return size_; }
  Status Send(WorkerRank dest, const Message& m) override;
  std::optional<StatusOr<Envelope>> Poll() override;

  // Waits until every send has completed or `timeout` passed; true if none is left.
  bool Flush(std::chrono::milliseconds timeout);

 private:
  struct PendingSend {
    std::string payload;
    MPI_Request request = MPI_REQUEST_NULL;
  };
  // Drops the sends MPI has completed.
  void Progress();

  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
  std::list<PendingSend> pending_;  // a list: buffers must not move while MPI reads them
};

}  // namespace lattice
