// The relay: collectives of a task process, run by its worker rank.
//
// A task runs in a process forked from its worker rank (worker/worker.h, "Task isolation"),
// and that process must not call MPI (MPI belongs to the rank; a forked child of an MPI
// process may not use its library state). So the rank maps a RelayBuffer (shared memory,
// MAP_SHARED | MAP_ANONYMOUS, and an eventfd) before it forks, and for every collective:
//   1. the task process (RelayCommunicator) copies its data into the buffer (no copy for
//      data in its Workspace), fills the request header, bumps `posted` and signals the
//      eventfd;
//   2. the rank's loop, asleep in ppoll on its sockets and that eventfd (wake_fd), wakes,
//      and RelayServer::Poll starts the MpiCommunicator op on the buffer itself (no copy
//      on the rank's side); it keeps serving the coordinator while the op is in flight
//      (testing it every <= 200 us: MPI progresses only inside MPI calls), then bumps
//      `served` and wakes the waiting task thread (a futex on `served_word`);
//   3. the task process copies the result out.
// Nobody polls while nothing is in flight: the task thread sleeps in the futex, the rank in
// ppoll. Collectives larger than the buffer go through it in pieces (allreduce, broadcast).
// The sub-communicator is created at the gang's first request (MPI_Comm_create_group over
// the gang's world ranks, from the Assign), and kept while the attempt runs.
//
// Cost: two memcpy of the payload per collective (none for a Workspace buffer: the
// parameters and gradients of data-parallel training live there) and one wake-up each way:
// bench/gang_bench.sh measures the share.
//
// A failed gang: the waiting member is cancelled (its JobContext), returns Cancelled, and
// the rank abandons the op in flight when the next gang's first request arrives (its peers
// are gone or gave up too, so it never writes the buffer again); the sub-communicator of
// an abandoned op is not freed (MPI_Comm_free with an op in flight is erroneous).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "comm/communicator.h"
#include "common/event_fd.h"

namespace lattice::comm {

// Identifies one attempt's gang on both sides: a hash of "trial#attempt".
uint64_t GangKey(const std::string& trial, int attempt);

enum class RelayKind : int32_t {
  kAllreduce = 1,
  kBroadcast = 2,
  kAllgather = 3,
  kBarrier = 4,
  kReduceScatter = 5,
};

// The request a task process posts; lives at the start of the shared mapping.
struct RelayRequest {
  std::atomic<uint64_t> posted{0};  // sequence number of the last request posted
  std::atomic<uint64_t> served{0};  // of the last request completed (then `code`, `error`)
  std::atomic<uint32_t> served_word{0};  // futex: bumped (and woken) with every `served`
  uint64_t gang = 0;                // GangKey of the attempt
  RelayKind kind = RelayKind::kBarrier;
  int32_t reduce = 0;               // ReduceOp
  int32_t root = 0;
  int32_t code = 0;                 // StatusCode of the completed request
  uint64_t offset = 0;              // of the payload in the buffer's data
  uint64_t bytes = 0;               // payload (allgather: this member's part)
                                    // (reduce-scatter: all of it, size() blocks)
  char error[256] = {0};
};
static_assert(std::atomic<uint64_t>::is_always_lock_free, "shared-memory atomics");
static_assert(sizeof(std::atomic<uint32_t>) == 4, "a futex word");

// Shared memory between a worker rank and the task processes it forks.
class RelayBuffer {
 public:
  // `capacity`: payload bytes (a multiple of 4). Default of the worker: kDefaultCapacity.
  static StatusOr<std::unique_ptr<RelayBuffer>> Create(size_t capacity);
  // 256 MiB, 64 M floats: a sharded optimizer step keeps a model's parameters and gradients
  // in the workspace (3/4 of it: 24 M parameters). Pages are only backed once touched.
  static constexpr size_t kDefaultCapacity = size_t{256} << 20;
  ~RelayBuffer();
  RelayBuffer(const RelayBuffer&) = delete;
  RelayBuffer& operator=(const RelayBuffer&) = delete;

  RelayRequest* request() { return request_; }
  char* data() { return data_; }
  size_t capacity() const { return capacity_; }

  // Task side: tells the rank a request was posted (the eventfd).
  void WakeServer() { wake_->Signal(); }
  // Task side: sleeps until `served_word` differs from `seen` or `timeout` passed.
  void WaitServed(uint32_t seen, std::chrono::microseconds timeout);
  // Rank side: readable when the task posted; Poll() drains it. Inherited by the fork.
  int wake_fd() const { return wake_->fd(); }
  void DrainWakes() { wake_->Drain(); }
  // Rank side: `served` = seq, then wakes the task thread waiting in WaitServed.
  void MarkServed(uint64_t seq);

 private:
  RelayBuffer(void* base, size_t mapped, size_t capacity, std::unique_ptr<EventFd> wake);
  void* base_;
  size_t mapped_;
  size_t capacity_;
  RelayRequest* request_;
  char* data_;
  std::unique_ptr<EventFd> wake_;
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
  // In the workspace, or staged when size() * count floats fit the staging part.
  Status ReduceScatter(float* data, size_t count, ReduceOp op) override;
  Status Barrier() override;
  // The next page-aligned region at the relay buffer's front, while the regions take at
  // most 3/4 of it (the rest stages the other collectives' payloads); nullptr otherwise.
  float* Workspace(size_t count) override;

 private:
  // Posts the request (payload already in the buffer at `offset`) and waits for the rank.
  Status Call(RelayKind kind, size_t offset, size_t bytes, int32_t reduce, int32_t root);
  // The offset of [data, data + bytes) in the workspace, or -1 when it is not all there.
  int64_t WorkspaceOffset(const void* data, size_t bytes);
  // Where copied payloads go: the buffer behind the workspace, and its size.
  char* staging() { return buffer_->data() + reserved_; }
  size_t staging_capacity() const { return buffer_->capacity() - reserved_; }

  RelayBuffer* const buffer_;
  const uint64_t gang_;
  const int rank_;
  const int size_;
  const std::function<bool()> cancelled_;
  size_t reserved_ = 0;  // bytes of the workspace regions at the buffer's front (pages)
};

}  // namespace lattice::comm
