// The control protocol over a connected stream socket (a socketpair between a worker rank
// and its task executor process, worker/worker.h). Frames: MessageType (int32), payload
// length (uint64), payload (control/messages.h encoding), in host byte order: both ends
// are the same binary on the same host.
//
// Neither Send nor Poll blocks: Send queues the frame and writes what the socket takes;
// Poll writes more of the queue, reads what has arrived and returns one whole message at a
// time. So two processes sending large checkpoints to each other never deadlock. Once the
// peer has closed its end (it exited or died), Poll returns Unavailable.
#pragma once

#include <deque>
#include <string>

#include "control/channel.h"

namespace lattice {

// Not thread-safe: one owner thread.
class SocketControlChannel final : public ControlChannel {
 public:
  // Takes ownership of `fd` (made non-blocking). `self` is the rank this end reports
  // (the worker's rank); the peer is always kCoordinatorRank's stand-in for Envelopes.
  SocketControlChannel(int fd, WorkerRank self, WorkerRank peer);
  ~SocketControlChannel() override;
  SocketControlChannel(const SocketControlChannel&) = delete;
  SocketControlChannel& operator=(const SocketControlChannel&) = delete;

  WorkerRank rank() const override { return self_; }
  int size() const override { return 2; }
  // `dest` is ignored: the socket has one peer.
  Status Send(WorkerRank dest, const Message& m) override;
  std::optional<StatusOr<Envelope>> Poll() override;
  // Returns as soon as the peer sent something, `fd` of AlsoWakeOn is readable, or the
  // timeout passed.
  void WaitForInput(std::chrono::microseconds timeout) override;
  // WaitForInput also returns when `fd` (not owned; -1: none) is readable: the worker rank
  // sleeps on its task process's socket and on the gang relay's eventfd (comm/relay.h).
  bool AlsoWakeOn(int fd) override {
    also_fd_ = fd;
    return true;
  }

  // Writes queued frames for up to `timeout_ms`; true when all are written.
  bool Flush(int timeout_ms);

 private:
  // Writes as much of the queue as the socket takes now; false once the peer is gone.
  bool WriteSome();

  int fd_ = -1;
  WorkerRank self_;
  WorkerRank peer_;
  std::deque<std::string> out_;  // whole frames; the front one may be partly written
  size_t out_offset_ = 0;        // bytes of out_.front() already written
  std::string in_;               // received bytes not yet returned as messages
  size_t in_offset_ = 0;         // start of the unparsed part of in_
  bool closed_ = false;
  int also_fd_ = -1;
};

}  // namespace lattice
