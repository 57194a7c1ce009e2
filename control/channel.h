// The transport of the control protocol (control/messages.h) between the coordinator and
// the workers. The production implementation is MpiControlChannel (control/mpi_channel.h);
// tests drive the coordinator through an in-memory fake (tests/testutil/fake_channel.h).
//
// Ranks: the coordinator is kCoordinatorRank (0), workers are 1..size()-1.
// Ordering: messages from one sender to one receiver arrive in the order sent (the
// coordinator relies on it: a Vectors / Checkpoint message precedes its Result).
//
// Threading: a channel is owned by exactly one thread (over MPI: the thread that owns MPI
// in its process, MPI_THREAD_FUNNELED). Other threads hand it work through queues.
#pragma once

#include <chrono>
#include <optional>
#include <thread>

#include "common/ids.h"
#include "common/status.h"
#include "control/messages.h"

namespace lattice {

inline constexpr WorkerRank kCoordinatorRank{0};

class ControlChannel {
 public:
  virtual ~ControlChannel() = default;

  // This process's rank and the number of ranks (coordinator + workers).
  virtual WorkerRank rank() const = 0;
  virtual int size() const = 0;

  // Sends `m` to `dest`. Unavailable when the transport fails.
  virtual Status Send(WorkerRank dest, const Message& m) = 0;

  // The next pending message from any rank, or nullopt if none is waiting. A message that
  // fails to decode is returned as an error (and consumed).
  virtual std::optional<StatusOr<Envelope>> Poll() = 0;

  // Waits up to `timeout` for input, returning early when the transport can tell that a
  // message arrived (a socket); by default it just sleeps.
  virtual void WaitForInput(std::chrono::microseconds timeout) {
    std::this_thread::sleep_for(timeout);
  }
  // Makes WaitForInput also return when `fd` (not owned; -1: none) is readable; false when
  // the transport cannot wait on descriptors (then WaitForInput just sleeps).
  virtual bool AlsoWakeOn(int /*fd*/) { return false; }
};

}  // namespace lattice
