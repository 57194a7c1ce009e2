// The relay: collectives of a task process, run by its worker rank.
//
// A task runs in a process forked from its worker rank (worker/worker.h, "Task isolation"),
// and that process must not call MPI (MPI belongs to the rank; a forked child of an MPI
// process may not use its library state). So the rank maps a RelayBuffer (shared memory,
// MAP_SHARED | MAP_ANONYMOUS) before it forks, and for every collective:
//   1. the task process (RelayCommunicator) copies its data into the buffer, fills the
//      request header and bumps `posted`;
//   2. the rank's loop (RelayServer::Poll) sees it, starts the MpiCommunicator op on the
//      buffer itself (no copy on the rank's side), keeps serving the coordinator while it
//      is in flight, and bumps `served` when it completes;
//   3. the task process copies the result out.
// Collectives larger than the buffer go through it in pieces (allreduce, broadcast).
// The sub-communicator is created at the gang's first request (MPI_Comm_create_group over
// the gang's world ranks, from the Assign), and kept while the attempt runs.
//
// Cost: two memcpy of the payload per collective and the rank's wake-up latency (its loop
// polls every 200 us at most while a gang task runs): bench/gang_bench measures the share.
//
// A failed gang: the waiting member is cancelled (its JobContext), returns Cancelled, and
// the rank abandons the op in flight when the next gang's first request arrives (its peers
// are gone or gave up too, so it never writes the buffer again); the sub-communicator of
// an abandoned op is not freed (MPI_Comm_free with an op in flight is erroneous).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "comm/communicator.h"

namespace lattice::comm {

// Identifies one attempt's gang on both sides: a hash of "trial#attempt".
uint64_t GangKey(const std::string& trial, int attempt);

enum class RelayKind : int32_t { kAllreduce = 1, kBroadcast = 2, kAllgather = 3, kBarrier = 4 };

// The request a task process posts; lives at the start of the shared mapping.
struct RelayRequest {
  std::atomic<uint64_t> posted{0};  // sequence number of the last request posted
  std::atomic<uint64_t> served{0};  // of the last request completed (then `code`, `error`)
  uint64_t gang = 0;                // GangKey of the attempt
  RelayKind kind = RelayKind::kBarrier;
  int32_t reduce = 0;               // ReduceOp
  int32_t root = 0;
  int32_t code = 0;                 // StatusCode of the completed request
  uint64_t bytes = 0;               // payload (allgather: this member's part)
  char error[256] = {0};
};
static_assert(std::atomic<uint64_t>::is_always_lock_free, "shared-memory atomics");

// Shared memory between a worker rank and the task processes it forks.
class RelayBuffer {
 public:
  // `capacity`: payload bytes (a multiple of 4). Default of the worker: kDefaultCapacity.
  static StatusOr<std::unique_ptr<RelayBuffer>> Create(size_t capacity);
  static constexpr size_t kDefaultCapacity = size_t{64} << 20;  // 64 MiB, 16 M floats
  ~RelayBuffer();
  RelayBuffer(const RelayBuffer&) = delete;
  RelayBuffer& operator=(const RelayBuffer&) = delete;

  RelayRequest* request() { return request_; }
  char* data() { return data_; }
  size_t capacity() const { return capacity_; }

 private:
  RelayBuffer(void* base, size_t mapped, size_t capacity);
  void* base_;
  size_t mapped_;
  size_t capacity_;
  RelayRequest* request_;
  char* data_;
};

// The task process's Communicator: member `rank` of `size` of gang `gang`.
class RelayCommunicator final : public Communicator {
 public:
  // `buffer` is not owned. `cancelled` (may be empty) is polled while waiting: true makes
  // the collective return Cancelled (the gang failed, or the task was stopped).
  RelayCommunicator(RelayBuffer* buffer, uint64_t gang, int rank, int size,
                    std::function<bool()> cancelled);

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string_view backend() const override { return "relay"; }
  Status Allreduce(float* data, size_t count, ReduceOp op) override;
  Status Broadcast(void* data, size_t bytes, int root) override;
  Status Allgather(const float* send, size_t count, float* recv) override;
  Status Barrier() override;

 private:
  // Posts the request (payload already in the buffer) and waits for the rank.
  Status Call(RelayKind kind, size_t bytes, int32_t reduce, int32_t root);

  RelayBuffer* const buffer_;
  const uint64_t gang_;
  const int rank_;
  const int size_;
  const std::function<bool()> cancelled_;
};

}  // namespace lattice::comm
