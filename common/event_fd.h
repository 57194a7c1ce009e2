// EventFd: a wake-up between threads or forked processes (Linux eventfd, non-blocking,
// close-on-exec). One side Signal()s; the other sleeps in poll/ppoll on fd() and Drain()s it
// when it wakes. A fork inherits it (the relay's task process signals its rank this way).
#pragma once

namespace lattice {

class EventFd {
 public:
  EventFd();  // ok() is false when the kernel refused one (then Signal and Drain do nothing)
  ~EventFd();
  EventFd(const EventFd&) = delete;
  EventFd& operator=(const EventFd&) = delete;

  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  // Makes fd() readable until the next Drain.
  void Signal();
  // Consumes every Signal so far; returns at once when there was none.
  void Drain();

 private:
  int fd_;
};

}  // namespace lattice
