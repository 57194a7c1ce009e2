#include "comm/relay.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <new>
#include <thread>

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
  return std::unique_ptr<RelayBuffer>(new RelayBuffer(base, mapped, capacity));
}

RelayBuffer::RelayBuffer(void* base, size_t mapped, size_t capacity)
    : base_(base),
      mapped_(mapped),
      capacity_(capacity),
      request_(new (base) RelayRequest()),
      data_(static_cast<char*>(base) + 4096) {}

RelayBuffer::~RelayBuffer() { munmap(base_, mapped_); }

RelayCommunicator::RelayCommunicator(RelayBuffer* buffer, uint64_t gang, int rank, int size,
                                     std::function<bool()> cancelled)
    : buffer_(buffer), gang_(gang), rank_(rank), size_(size), cancelled_(std::move(cancelled)) {}

Status RelayCommunicator::Call(RelayKind kind, size_t bytes, int32_t reduce, int32_t root) {
  RelayRequest* r = buffer_->request();
  const uint64_t seq = r->posted.load(std::memory_order_acquire) + 1;
  r->gang = gang_;
  r->kind = kind;
  r->reduce = reduce;
  r->root = root;
  r->bytes = bytes;
  r->posted.store(seq, std::memory_order_release);
  // Spin briefly (the answer is often there within microseconds), then sleep in short steps.
  for (int spins = 0; r->served.load(std::memory_order_acquire) < seq; ++spins) {
    if (spins < 200) {
      std::this_thread::yield();
      continue;
    }
    if (cancelled_ && cancelled_()) {
      return Status::Cancelled("stopped while waiting for the gang's other members");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  return Relayed(static_cast<StatusCode>(r->code), r->error);
}

Status RelayCommunicator::Allreduce(float* data, size_t count, ReduceOp op) {
  const size_t piece = buffer_->capacity() / sizeof(float);
  float* shared = reinterpret_cast<float*>(buffer_->data());
  for (size_t begin = 0; begin < count; begin += piece) {  // every member: the same pieces
    const size_t n = std::min(piece, count - begin);
    std::memcpy(shared, data + begin, n * sizeof(float));
    LATTICE_RETURN_IF_ERROR(Call(RelayKind::kAllreduce, n * sizeof(float),
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
  for (size_t begin = 0; begin < bytes; begin += buffer_->capacity()) {
    const size_t n = std::min(buffer_->capacity(), bytes - begin);
    if (rank_ == root) std::memcpy(buffer_->data(), bytes_in + begin, n);
    LATTICE_RETURN_IF_ERROR(Call(RelayKind::kBroadcast, n, 0, root));
    if (rank_ != root) std::memcpy(bytes_in + begin, buffer_->data(), n);
  }
  return Status::Ok();
}

Status RelayCommunicator::Allgather(const float* send, size_t count, float* recv) {
  const size_t total = count * static_cast<size_t>(size_) * sizeof(float);
  if (total > buffer_->capacity()) {
    return Status::InvalidArgument("allgather: " + std::to_string(total) +
                                   " bytes in all is more than the relay buffer's " +
                                   std::to_string(buffer_->capacity()));
  }
  float* shared = reinterpret_cast<float*>(buffer_->data());
  std::memcpy(shared + static_cast<size_t>(rank_) * count, send, count * sizeof(float));
  LATTICE_RETURN_IF_ERROR(Call(RelayKind::kAllgather, count * sizeof(float), 0, 0));
  std::memcpy(recv, shared, total);
  return Status::Ok();
}

Status RelayCommunicator::Barrier() { return Call(RelayKind::kBarrier, 0, 0, 0); }

}  // namespace lattice::comm
