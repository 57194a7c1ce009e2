#include "control/socket_channel.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>

namespace lattice {
namespace {

constexpr size_t kHeaderBytes = sizeof(int32_t) + sizeof(uint64_t);
// A frame larger than this is a corrupt stream, not a message (the largest messages are
// checkpoint pieces and embed shards' vectors).
constexpr uint64_t kMaxFrameBytes = uint64_t{1} << 32;
constexpr size_t kReadBytes = size_t{1} << 20;

}  // namespace

SocketControlChannel::SocketControlChannel(int fd, WorkerRank self, WorkerRank peer)
    : fd_(fd), self_(self), peer_(peer) {
  fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) | O_NONBLOCK);
}

SocketControlChannel::~SocketControlChannel() {
  if (fd_ >= 0) close(fd_);
}

Status SocketControlChannel::Send(WorkerRank, const Message& m) {
  if (closed_) return Status::Unavailable("the peer process closed the connection");
  std::string payload = EncodeMessage(m);
  std::string frame(kHeaderBytes, '\0');
  const int32_t type = static_cast<int32_t>(TypeOf(m));
  const uint64_t length = payload.size();
  std::memcpy(frame.data(), &type, sizeof(type));
  std::memcpy(frame.data() + sizeof(type), &length, sizeof(length));
  if (payload.size() > 4096) {  // large: no copy into the header's string
    out_.push_back(std::move(frame));
    out_.push_back(std::move(payload));
  } else {
    frame += payload;
    out_.push_back(std::move(frame));
  }
  if (!WriteSome()) return Status::Unavailable("the peer process closed the connection");
  return Status::Ok();
}

bool SocketControlChannel::WriteSome() {
  while (!out_.empty() && !closed_) {
    const std::string& front = out_.front();
    ssize_t n = ::send(fd_, front.data() + out_offset_, front.size() - out_offset_, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      closed_ = true;  // EPIPE, ECONNRESET: the peer is gone
      return false;
    }
    out_offset_ += static_cast<size_t>(n);
    if (out_offset_ == front.size()) {
      out_.pop_front();
      out_offset_ = 0;
    }
  }
  return !closed_;
}

bool SocketControlChannel::Flush(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!out_.empty()) {
    if (!WriteSome()) return false;
    if (out_.empty()) break;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLOUT, 0};
    ::poll(&p, 1, static_cast<int>(left.count()));
  }
  return true;
}

void SocketControlChannel::WaitForInput(std::chrono::microseconds timeout) {
  if (closed_ || in_.size() - in_offset_ >= kHeaderBytes) return;  // something to read now
  pollfd p[2] = {{fd_, static_cast<short>(POLLIN | (out_.empty() ? 0 : POLLOUT)), 0},
                 {also_fd_, POLLIN, 0}};
  timespec ts{static_cast<time_t>(timeout.count() / 1000000),
              static_cast<long>(timeout.count() % 1000000) * 1000};
  ::ppoll(p, also_fd_ >= 0 ? 2 : 1, &ts, nullptr);
}

std::optional<StatusOr<Envelope>> SocketControlChannel::Poll() {
  WriteSome();
  // Read what has arrived (bounded per call, so a flood cannot starve the caller's loop).
  for (size_t read_now = 0; !closed_ && read_now < 64 * kReadBytes;) {
    const size_t old = in_.size();
    in_.resize(old + kReadBytes);
    ssize_t n = ::recv(fd_, in_.data() + old, kReadBytes, 0);
    in_.resize(old + (n > 0 ? static_cast<size_t>(n) : 0));
    if (n > 0) {
      read_now += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    closed_ = true;  // 0: orderly close; < 0: reset
  }
  if (in_.size() - in_offset_ >= kHeaderBytes) {
    int32_t type = 0;
    uint64_t length = 0;
    std::memcpy(&type, in_.data() + in_offset_, sizeof(type));
    std::memcpy(&length, in_.data() + in_offset_ + sizeof(type), sizeof(length));
    if (length > kMaxFrameBytes) {
      closed_ = true;
      in_.clear();
      in_offset_ = 0;
      return StatusOr<Envelope>(Status::DataLoss("control socket: frame of " +
                                                 std::to_string(length) + " bytes"));
    }
    if (in_.size() - in_offset_ - kHeaderBytes >= length) {
      const size_t start = in_offset_ + kHeaderBytes;
      auto decoded = DecodeMessage(static_cast<MessageType>(type),
                                   in_.substr(start, static_cast<size_t>(length)));
      in_offset_ = start + static_cast<size_t>(length);
      if (in_offset_ == in_.size()) {
        in_.clear();
        in_offset_ = 0;
      } else if (in_offset_ > (size_t{16} << 20)) {
        in_.erase(0, in_offset_);
        in_offset_ = 0;
      }
      if (!decoded.ok()) return StatusOr<Envelope>(decoded.status());
      return StatusOr<Envelope>(Envelope{peer_, std::move(decoded).value()});
    }
  }
  if (closed_) {
    return StatusOr<Envelope>(Status::Unavailable("the peer process closed the connection"));
  }
  return std::nullopt;
}

}  // namespace lattice
