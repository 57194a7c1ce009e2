// The worker rank's side of the relay (comm/relay.h): runs the collectives its task process
// posts, on a sub-communicator of the gang's ranks. Thread: the one that owns MPI.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "comm/mpi_communicator.h"
#include "comm/relay.h"

namespace lattice::comm {

class RelayServer {
 public:
  // `buffer` (not owned) is the one the task process was forked with; members' ranks are
  // ranks of `world`.
  RelayServer(RelayBuffer* buffer, MPI_Comm world);

  // The attempt the task process runs next is gang `key` of `world_ranks` (member 0 first).
  void SetGang(uint64_t key, std::vector<int> world_ranks);
  // The attempt ended: its sub-communicator is freed (unless an op is still in flight).
  void EndGang(uint64_t key);
  // A new task process: requests of the old one are forgotten.
  void Reset();
  // Starts a posted request, tests the one in flight. The caller sleeps in ppoll on the
  // buffer's wake_fd() (and its other inputs) between calls, and comes back within ~200 us
  // while an op is in flight (MPI progresses it only inside MPI calls).
  enum class State { kIdle, kGang, kInFlight };
  State Poll();

 private:
  void Complete(uint64_t seq, const Status& status);
  Status Start(const RelayRequest& request);

  RelayBuffer* const buffer_;
  MPI_Comm world_;
  uint64_t gang_ = 0;
  std::vector<int> ranks_;
  std::unique_ptr<MpiCommunicator> comm_;
  std::optional<MpiCommunicator::Op> op_;  // in flight
  uint64_t op_seq_ = 0;
  uint64_t last_seq_ = 0;                  // last request started
};

}  // namespace lattice::comm
