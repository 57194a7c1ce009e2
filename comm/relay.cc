#include "comm/relay.h"

#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <new>
#include <utility>

namespace lattice::comm {
namespace {

// The Status a relayed request completed with (the rank wrote its code and message).
Status Relayed(StatusCode code, std::string message) {
  message = "gang collective: " + message;
  switch (code) {
    case StatusCode::kOk: return Status::Ok();
    case StatusCode::kInvalidArgument: return Status::InvalidArgument(std::move(message));
    case StatusCode::kFailedPrecondition: return Status::FailedPrecondition(std::move(message));
    case StatusCode::kCancelled: return Status::Cancelled(std::move(message));
    case StatusCode::kUnavailable: return Status::Unavailable(std::move(message));
    default: return Status::Internal(std::move(message));
  }
}

}  // namespace

uint64_t GangKey(const std::string& trial, int attempt) {
  const std::string text = trial + "#" + std::to_string(attempt);
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h == 0 ? 1 : h;  // 0 means "no gang"
}

StatusOr<std::unique_ptr<RelayBuffer>> RelayBuffer::Create(size_t capacity) {
  if (capacity == 0 || capacity % sizeof(float) != 0) {
    return Status::InvalidArgument("relay buffer: capacity must be a positive multiple of 4");
  }
  const size_t header = 4096;  // keeps the payload page-aligned
  static_assert(sizeof(RelayRequest) <= 4096);
  const size_t mapped = header + capacity;
  void* base = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) {
    return Status::IoError(std::string("relay buffer: mmap of ") + std::to_string(mapped) +
                           " bytes: " + std::strerror(errno));
  }
  // The forked task process inherits the eventfd (no exec); the rank's drain never waits.
  auto wake = std::make_unique<EventFd>();
  if (!wake->ok()) {
    const int error = errno;
    munmap(base, mapped);
    return Status::IoError(std::string("relay buffer: eventfd: ") + std::strerror(error));
  }
  return std::unique_ptr<RelayBuffer>(new RelayBuffer(base, mapped, capacity, std::move(wake)));
}

RelayBuffer::RelayBuffer(void* base, size_t mapped, size_t capacity, std::unique_ptr<EventFd> wake)
    : base_(base),
      mapped_(mapped),
      capacity_(capacity),
      request_(new (base) RelayRequest()),
      data_(static_cast<char*>(base) + 4096),
      wake_(std::move(wake)) {}

RelayBuffer::~RelayBuffer() { munmap(base_, mapped_); }

// A shared (not FUTEX_PRIVATE) futex: the word is in memory two processes map.
void RelayBuffer::WaitServed(uint32_t seen, std::chrono::microseconds timeout) {
  const timespec ts{static_cast<time_t>(timeout.count() / 1000000),
                    static_cast<long>(timeout.count() % 1000000) * 1000};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&request_->served_word), FUTEX_WAIT, seen, &ts,
          nullptr, 0);
}

void RelayBuffer::MarkServed(uint64_t seq) {
  request_->served.store(seq, std::memory_order_release);
  request_->served_word.fetch_add(1, std::memory_order_release);
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&request_->served_word), FUTEX_WAKE, INT_MAX,
          nullptr, nullptr, 0);
}

RelayCommunicator::RelayCommunicator(RelayBuffer* buffer, uint64_t gang, int rank, int size,
                                     std::function<bool()> cancelled)
    : buffer_(buffer), gang_(gang), rank_(rank), size_(size), cancelled_(std::move(cancelled)) {}

float* RelayCommunicator::Workspace(size_t count) {
  const size_t page = 4096;
  const size_t limit = buffer_->capacity() / 4 * 3;
  if (count == 0 || count > limit / sizeof(float)) return nullptr;
  const size_t bytes = (count * sizeof(float) + page - 1) / page * page;
  if (bytes > limit - reserved_) return nullptr;
  float* region = reinterpret_cast<float*>(buffer_->data() + reserved_);
  reserved_ += bytes;
  return region;
}

int64_t RelayCommunicator::WorkspaceOffset(const void* data, size_t bytes) {
  const char* at = static_cast<const char*>(data);
  if (at < buffer_->data() || at > buffer_->data() + reserved_ ||
      bytes > static_cast<size_t>(buffer_->data() + reserved_ - at)) {
    return -1;
  }
  return at - buffer_->data();
}

Status RelayCommunicator::Call(RelayKind kind, size_t offset, size_t bytes, int32_t reduce,
                               int32_t root) {
  RelayRequest* r = buffer_->request();
  const uint64_t seq = r->posted.load(std::memory_order_acquire) + 1;
  r->gang = gang_;
  r->kind = kind;
  r->reduce = reduce;
  r->root = root;
  r->offset = offset;
  r->bytes = bytes;
  // Read before posting: a MarkServed after this read changes the word, so the futex
  // never sleeps through it.
  uint32_t word = r->served_word.load(std::memory_order_acquire);
  r->posted.store(seq, std::memory_order_release);
  buffer_->WakeServer();
  while (r->served.load(std::memory_order_acquire) < seq) {
    if (cancelled_ && cancelled_()) {
      return Status::Cancelled("stopped while waiting for the gang's other members");
    }
    buffer_->WaitServed(word, std::chrono::milliseconds(20));  // 20 ms: checks cancellation
    word = r->served_word.load(std::memory_order_acquire);
  }
  return Relayed(static_cast<StatusCode>(r->code), r->error);
}

Status RelayCommunicator::Allreduce(float* data, size_t count, ReduceOp op) {
  if (const int64_t at = WorkspaceOffset(data, count * sizeof(float)); at >= 0) {
    return Call(RelayKind::kAllreduce, static_cast<size_t>(at), count * sizeof(float),
                static_cast<int32_t>(op), 0);
  }
  const size_t piece = staging_capacity() / sizeof(float);
  float* shared = reinterpret_cast<float*>(staging());
  for (size_t begin = 0; begin < count; begin += piece) {  // every member: the same pieces
    const size_t n = std::min(piece, count - begin);
    std::memcpy(shared, data + begin, n * sizeof(float));
    LATTICE_RETURN_IF_ERROR(Call(RelayKind::kAllreduce, reserved_, n * sizeof(float),
                                 static_cast<int32_t>(op), 0));
    std::memcpy(data + begin, shared, n * sizeof(float));
  }
  return Status::Ok();
}

Status RelayCommunicator::Broadcast(void* data, size_t bytes, int root) {
  if (root < 0 || root >= size_) {
    return Status::InvalidArgument("broadcast: root " + std::to_string(root) +
                                   " is not a member (0.." + std::to_string(size_ - 1) + ")");
  }
  char* bytes_in = static_cast<char*>(data);
  for (size_t begin = 0; begin < bytes; begin += staging_capacity()) {
    const size_t n = std::min(staging_capacity(), bytes - begin);
    if (rank_ == root) std::memcpy(staging(), bytes_in + begin, n);
    LATTICE_RETURN_IF_ERROR(Call(RelayKind::kBroadcast, reserved_, n, 0, root));
    if (rank_ != root) std::memcpy(bytes_in + begin, staging(), n);
  }
  return Status::Ok();
}

Status RelayCommunicator::Allgather(const float* send, size_t count, float* recv) {
  const size_t total = count * static_cast<size_t>(size_) * sizeof(float);
  float* own = recv + static_cast<size_t>(rank_) * count;
  if (const int64_t at = WorkspaceOffset(recv, total); at >= 0) {
    if (send != own) std::memmove(own, send, count * sizeof(float));
    return Call(RelayKind::kAllgather, static_cast<size_t>(at), count * sizeof(float), 0, 0);
  }
  if (total > staging_capacity()) {
    return Status::InvalidArgument("allgather: " + std::to_string(total) +
                                   " bytes in all is more than the relay buffer's " +
                                   std::to_string(staging_capacity()));
  }
  float* shared = reinterpret_cast<float*>(staging());
  std::memcpy(shared + static_cast<size_t>(rank_) * count, send, count * sizeof(float));
  LATTICE_RETURN_IF_ERROR(Call(RelayKind::kAllgather, reserved_, count * sizeof(float), 0, 0));
  std::memcpy(recv, shared, total);
  return Status::Ok();
}

Status RelayCommunicator::ReduceScatter(float* data, size_t count, ReduceOp op) {
  const size_t total = count * static_cast<size_t>(size_) * sizeof(float);
  if (const int64_t at = WorkspaceOffset(data, total); at >= 0) {
    return Call(RelayKind::kReduceScatter, static_cast<size_t>(at), total,
                static_cast<int32_t>(op), 0);
  }
  if (total > staging_capacity()) {
    return Status::InvalidArgument("reduce-scatter: " + std::to_string(total) +
                                   " bytes is more than the relay buffer stages (" +
                                   std::to_string(staging_capacity()) + "); use its Workspace");
  }
  std::memcpy(staging(), data, total);
  LATTICE_RETURN_IF_ERROR(
      Call(RelayKind::kReduceScatter, reserved_, total, static_cast<int32_t>(op), 0));
  std::memcpy(data, staging(), count * sizeof(float));
  return Status::Ok();
}

Status RelayCommunicator::Barrier() { return Call(RelayKind::kBarrier, reserved_, 0, 0, 0); }

}  // namespace lattice::comm
