// The Communicator contract (comm/communicator.h), run against every backend of the build:
//   mpi       MpiCommunicator over the whole world (a duplicate)
//   relay     RelayCommunicator in a forked child (no MPI there), its rank serving it with a
//             RelayServer: how a worker's task process runs collectives
//   nccl      NcclCommunicator (LATTICE_WITH_CUDA builds, where ctest defines
//             LATTICE_TEST_NCCL): the first min(devices, ranks) ranks, one device each, the
//             unique id broadcast over their MPI group; the checks' host buffers staged
//             through device memory. Skipped with the reason without CUDA or without a device.
// plus MpiCommunicator::CreateGroup on a subset of the ranks, in a new order.
// Runs under `mpirun -np 3` (ctest comm_contract_mpi): every rank runs every test.
#include <mpi.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "comm/mpi_communicator.h"
#include "comm/relay.h"
#include "comm/relay_server.h"
#include "tests/testutil/testutil.h"

#if LATTICE_TEST_NCCL
#include <cuda_runtime.h>

#include "comm/nccl_communicator.h"
#endif

namespace lattice::comm {
namespace {

using Check = std::function<Status(Communicator&)>;
}  // namespace

int g_run_id = 0;  // set by main: the same on every rank

namespace {

Status Expect(bool ok, const std::string& what) {
  return ok ? Status::Ok() : Status::Internal(what);
}

Status CheckAllreduce(Communicator& c, size_t count) {
  const float n = static_cast<float>(c.size());
  std::vector<float> sum(count), mean(count);
  for (size_t i = 0; i < count; ++i) {
    sum[i] = static_cast<float>((c.rank() + 1) * static_cast<int>(i % 13));
    mean[i] = sum[i];
  }
  LATTICE_RETURN_IF_ERROR(c.Allreduce(sum.data(), count, ReduceOp::kSum));
  LATTICE_RETURN_IF_ERROR(c.Allreduce(mean.data(), count, ReduceOp::kMean));
  for (size_t i = 0; i < count; ++i) {
    const float expected = static_cast<float>(i % 13) * n * (n + 1) / 2;
    if (sum[i] != expected) {
      return Status::Internal("sum[" + std::to_string(i) + "] = " + std::to_string(sum[i]) +
                              ", expected " + std::to_string(expected));
    }
    if (std::fabs(mean[i] - expected / n) > 1e-6f * std::max(1.0f, expected)) {
      return Status::Internal("mean[" + std::to_string(i) + "] = " + std::to_string(mean[i]) +
                              ", expected " + std::to_string(expected / n));
    }
  }
  return Status::Ok();
}

Status CheckBroadcast(Communicator& c, size_t bytes) {
  const int root = c.size() - 1;
  std::vector<unsigned char> data(bytes, 0);
  if (c.rank() == root) {
    for (size_t i = 0; i < bytes; ++i) data[i] = static_cast<unsigned char>((i * 7 + 3) % 251);
  }
  LATTICE_RETURN_IF_ERROR(c.Broadcast(data.data(), bytes, root));
  for (size_t i = 0; i < bytes; ++i) {
    if (data[i] != (i * 7 + 3) % 251) {
      return Status::Internal("byte " + std::to_string(i) + " differs on member " +
                              std::to_string(c.rank()));
    }
  }
  return Status::Ok();
}

Status CheckAllgather(Communicator& c) {
  const size_t count = 5;
  std::vector<float> send(count), recv(count * static_cast<size_t>(c.size()), -1);
  for (size_t i = 0; i < count; ++i) send[i] = static_cast<float>(c.rank() * 100 + static_cast<int>(i));
  LATTICE_RETURN_IF_ERROR(c.Allgather(send.data(), count, recv.data()));
  for (int m = 0; m < c.size(); ++m) {
    for (size_t i = 0; i < count; ++i) {
      LATTICE_RETURN_IF_ERROR(Expect(recv[static_cast<size_t>(m) * count + i] ==
                                         static_cast<float>(m * 100 + static_cast<int>(i)),
                                     "allgather: member " + std::to_string(m) + " element " +
                                         std::to_string(i)));
    }
  }
  return Status::Ok();
}

// `data` (size() blocks of `count`) reduce-scattered: block rank() summed (and, on a copy,
// averaged) lands at the front. Member m's value at i is (m + 1) * (i % 17), so block r's
// i-th sum is n(n+1)/2 * ((r * count + i) % 17).
Status CheckReduceScatter(Communicator& c, float* data, size_t count) {
  const size_t k = static_cast<size_t>(c.size());
  const float n = static_cast<float>(k);
  std::vector<float> mean(k * count);
  for (size_t i = 0; i < k * count; ++i) {
    data[i] = static_cast<float>((c.rank() + 1) * static_cast<int>(i % 17));
    mean[i] = data[i];
  }
  LATTICE_RETURN_IF_ERROR(c.ReduceScatter(data, count, ReduceOp::kSum));
  LATTICE_RETURN_IF_ERROR(c.ReduceScatter(mean.data(), count, ReduceOp::kMean));
  for (size_t i = 0; i < count; ++i) {
    const size_t at = static_cast<size_t>(c.rank()) * count + i;
    const float expected = static_cast<float>(at % 17) * n * (n + 1) / 2;
    if (data[i] != expected || std::fabs(mean[i] - expected / n) > 1e-6f * std::max(1.0f, expected)) {
      return Status::Internal("reduce-scatter[" + std::to_string(i) + "] of member " +
                              std::to_string(c.rank()) + " = " + std::to_string(data[i]) +
                              " (mean " + std::to_string(mean[i]) + "), expected " +
                              std::to_string(expected));
    }
  }
  return Status::Ok();
}

// In place: each member's block is already where it goes in `recv`.
Status CheckAllgatherInPlace(Communicator& c, float* recv, size_t count) {
  const size_t k = static_cast<size_t>(c.size());
  for (size_t i = 0; i < k * count; ++i) recv[i] = -1;
  float* own = recv + static_cast<size_t>(c.rank()) * count;
  for (size_t i = 0; i < count; ++i) own[i] = static_cast<float>(c.rank() * 1000 + static_cast<int>(i));
  LATTICE_RETURN_IF_ERROR(c.Allgather(own, count, recv));
  for (size_t m = 0; m < k; ++m) {
    for (size_t i = 0; i < count; ++i) {
      LATTICE_RETURN_IF_ERROR(Expect(recv[m * count + i] == static_cast<float>(m * 1000 + i),
                                     "allgather in place: member " + std::to_string(m) +
                                         " element " + std::to_string(i)));
    }
  }
  return Status::Ok();
}

// A sharded optimizer step's pattern on the caller's memory: reduce-scatter, then allgather
// in place, for a count that does not fit the relay's staging at once (the relay refuses a
// reduce-scatter it cannot stage: InvalidArgument) and one that does.
Status CheckReduceScatterThenAllgather(Communicator& c) {
  for (size_t count : {size_t{1}, size_t{1001}}) {
    std::vector<float> data(static_cast<size_t>(c.size()) * count);
    LATTICE_RETURN_IF_ERROR(CheckReduceScatter(c, data.data(), count));
    LATTICE_RETURN_IF_ERROR(CheckAllgatherInPlace(c, data.data(), count));
  }
  if (c.backend() == "relay") {
    std::vector<float> big(static_cast<size_t>(c.size()) * 20000);
    Status s = c.ReduceScatter(big.data(), 20000, ReduceOp::kSum);
    return Expect(s.code() == StatusCode::kInvalidArgument &&
                      s.message().find("Workspace") != std::string::npos,
                  "a reduce-scatter larger than the relay stages: " + s.ToString());
  }
  return Status::Ok();
}

// After a barrier every member has written its file, which it did just before.
Status CheckBarrier(Communicator& c) {
  static int round = 0;
  ++round;
  const std::string dir = ::testing::TempDir();
  auto path = [&](int m) {
    return dir + "/barrier-" + std::to_string(g_run_id) + "-" + std::to_string(round) + "-" +
           std::to_string(m);
  };
  if (FILE* f = std::fopen(path(c.rank()).c_str(), "w")) std::fclose(f);
  LATTICE_RETURN_IF_ERROR(c.Barrier());
  for (int m = 0; m < c.size(); ++m) {
    LATTICE_RETURN_IF_ERROR(Expect(access(path(m).c_str(), F_OK) == 0,
                                   "member " + std::to_string(m) + " passed no barrier yet"));
  }
  LATTICE_RETURN_IF_ERROR(c.Barrier());  // nobody removes a file another still checks
  std::remove(path(c.rank()).c_str());
  return Status::Ok();
}

Status CheckBadRoot(Communicator& c) {
  char byte = 0;
  Status s = c.Broadcast(&byte, 1, c.size());
  return Expect(s.code() == StatusCode::kInvalidArgument &&
                    s.message().find("root") != std::string::npos,
                "broadcast from a root outside the gang: " + s.ToString());
}

// Gradients kept in the backend's workspace (the relay's: no staging copies): an allreduce
// there sums in place, and the other collectives, staged behind it, leave it alone; a
// second region holds a reduce-scatter and an in-place allgather. A backend without one
// (nullptr) runs the same checks on the caller's memory.
Status CheckWorkspace(Communicator& c) {
  const size_t count = 5000;
  const size_t k = static_cast<size_t>(c.size());
  std::vector<float> own, own_second;
  float* data = c.Workspace(count);
  float* second = c.Workspace(k * 1500);  // another region: reduce-scatter, allgather
  if (c.backend() == "relay") {
    LATTICE_RETURN_IF_ERROR(Expect(data != nullptr && second != nullptr, "no relay workspace"));
    LATTICE_RETURN_IF_ERROR(Expect(second >= data + count, "workspace regions overlap"));
    LATTICE_RETURN_IF_ERROR(Expect(c.Workspace(count) == nullptr, "a workspace past 3/4"));
  }
  if (data == nullptr) {
    own.resize(count);
    data = own.data();
  }
  if (second == nullptr) {
    own_second.resize(k * 1500);
    second = own_second.data();
  }
  const float n = static_cast<float>(c.size());
  for (int round = 1; round <= 2; ++round) {
    for (size_t i = 0; i < count; ++i) data[i] = static_cast<float>(round * (c.rank() + 1));
    LATTICE_RETURN_IF_ERROR(c.Allreduce(data, count, ReduceOp::kSum));
    LATTICE_RETURN_IF_ERROR(CheckBroadcast(c, 100003));  // staged, in pieces
    LATTICE_RETURN_IF_ERROR(CheckAllreduce(c, 50001));
    LATTICE_RETURN_IF_ERROR(CheckReduceScatter(c, second, 1500));
    LATTICE_RETURN_IF_ERROR(CheckAllgatherInPlace(c, second, 1500));
    const float expected = static_cast<float>(round) * n * (n + 1) / 2;
    for (size_t i = 0; i < count; ++i) {
      if (data[i] != expected) {
        return Status::Internal("workspace[" + std::to_string(i) + "] = " +
                                std::to_string(data[i]) + " after round " +
                                std::to_string(round) + ", expected " + std::to_string(expected));
      }
    }
  }
  return Status::Ok();
}

// A relay buffer smaller than the payloads above, so that they go in pieces.
constexpr size_t kRelayCapacity = 64 << 10;

int WorldSize() {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

#if LATTICE_TEST_NCCL
int CudaDevices() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

// The checks pass host memory; NCCL takes device memory: each call is staged through a
// device buffer (what a caller with host data would do).
class DeviceStaged final : public Communicator {
 public:
  explicit DeviceStaged(std::unique_ptr<NcclCommunicator> nccl) : nccl_(std::move(nccl)) {}
  ~DeviceStaged() override { cudaFree(device_); }
  int rank() const override { return nccl_->rank(); }
  int size() const override { return nccl_->size(); }
  std::string_view backend() const override { return nccl_->backend(); }
  Status Allreduce(float* data, size_t count, ReduceOp op) override {
    LATTICE_RETURN_IF_ERROR(In(data, count * sizeof(float), count * sizeof(float)));
    LATTICE_RETURN_IF_ERROR(nccl_->Allreduce(static_cast<float*>(device_), count, op));
    return Out(data, count * sizeof(float));
  }
  Status Broadcast(void* data, size_t bytes, int root) override {
    LATTICE_RETURN_IF_ERROR(In(data, bytes, bytes));
    LATTICE_RETURN_IF_ERROR(nccl_->Broadcast(device_, bytes, root));
    return Out(data, bytes);
  }
  Status Allgather(const float* send, size_t count, float* recv) override {
    const size_t total = count * static_cast<size_t>(size()) * sizeof(float);
    LATTICE_RETURN_IF_ERROR(In(send, count * sizeof(float), total));
    float* d = static_cast<float*>(device_);
    LATTICE_RETURN_IF_ERROR(nccl_->Allgather(d, count, d + count));
    return Expect(cudaMemcpy(recv, d + count, total, cudaMemcpyDeviceToHost) == cudaSuccess,
                  "cudaMemcpy from the device");
  }
  Status ReduceScatter(float* data, size_t count, ReduceOp op) override {
    const size_t total = count * static_cast<size_t>(size()) * sizeof(float);
    LATTICE_RETURN_IF_ERROR(In(data, total, 0));
    LATTICE_RETURN_IF_ERROR(nccl_->ReduceScatter(static_cast<float*>(device_), count, op));
    return Out(data, count * sizeof(float));
  }
  Status Barrier() override { return nccl_->Barrier(); }

 private:
  // Copies `bytes` of `host` to the device buffer, which holds at least `need` more bytes.
  Status In(const void* host, size_t bytes, size_t need) {
    if (need + bytes > capacity_) {
      cudaFree(device_);
      device_ = nullptr;
      capacity_ = 0;
      LATTICE_RETURN_IF_ERROR(
          Expect(cudaMalloc(&device_, need + bytes) == cudaSuccess, "cudaMalloc"));
      capacity_ = need + bytes;
    }
    return Expect(cudaMemcpy(device_, host, bytes, cudaMemcpyHostToDevice) == cudaSuccess,
                  "cudaMemcpy to the device");
  }
  Status Out(void* host, size_t bytes) {
    return Expect(cudaMemcpy(host, device_, bytes, cudaMemcpyDeviceToHost) == cudaSuccess,
                  "cudaMemcpy from the device");
  }

  std::unique_ptr<NcclCommunicator> nccl_;
  void* device_ = nullptr;
  size_t capacity_ = 0;
};
#endif

// Members of the backend's gang: the world, or for NCCL one rank per device.
int GangSize(const std::string& backend) {
#if LATTICE_TEST_NCCL
  if (backend == "nccl") return std::min(WorldSize(), CudaDevices());
#endif
  (void)backend;
  return WorldSize();
}

Status RunOn(const std::string& backend, const Check& check) {
  if (backend == "mpi") {
    LATTICE_ASSIGN_OR_RETURN(auto comm, MpiCommunicator::Duplicate(MPI_COMM_WORLD));
    return check(*comm);
  }
#if LATTICE_TEST_NCCL
  if (backend == "nccl") {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const int members = GangSize(backend);
    if (rank >= members) return Status::Ok();  // no device of its own: not in the gang
    std::vector<int> ranks;
    for (int r = 0; r < members; ++r) ranks.push_back(r);
    LATTICE_ASSIGN_OR_RETURN(auto bootstrap, MpiCommunicator::CreateGroup(MPI_COMM_WORLD, ranks, 11));
    LATTICE_ASSIGN_OR_RETURN(auto nccl, NcclCommunicator::Create(*bootstrap, rank));
    DeviceStaged comm(std::move(nccl));
    return check(comm);
  }
#endif
  // relay: a child process (which never calls MPI) posts, this rank serves.
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  LATTICE_ASSIGN_OR_RETURN(auto buffer, RelayBuffer::Create(kRelayCapacity));
  std::vector<int> ranks;
  for (int r = 0; r < size; ++r) ranks.push_back(r);
  const uint64_t gang = GangKey("contract", 1);
  RelayServer server(buffer.get(), MPI_COMM_WORLD);
  server.SetGang(gang, ranks);
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    RelayCommunicator comm(buffer.get(), gang, rank, size, nullptr);
    Status s = check(comm);
    if (!s.ok()) std::fprintf(stderr, "relay member %d: %s\n", rank, s.ToString().c_str());
    std::fflush(nullptr);
    _exit(s.ok() ? 0 : 1);
  }
  if (pid < 0) return Status::IoError("fork failed");
  int status = 0;
  // As a worker rank: asleep until the child posts (the eventfd) unless an op is in flight.
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (server.Poll() == RelayServer::State::kInFlight) continue;
    pollfd wake{buffer->wake_fd(), POLLIN, 0};
    poll(&wake, 1, 5);  // 5 ms: also notices the child's exit
  }
  server.EndGang(gang);
  return Expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "the relay member's checks failed (its message is above)");
}

class CommunicatorTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() != "nccl") return;
#if LATTICE_TEST_NCCL
    if (!NcclCommunicator::DevicePresent()) {
      GTEST_SKIP() << "NCCL: this CUDA build sees no CUDA device here";
    }
#else
    GTEST_SKIP() << "NCCL: this build has no CUDA (configure with -DLATTICE_WITH_CUDA=ON on a "
                    "machine with a GPU)";
#endif
  }
};

TEST_P(CommunicatorTest, AllreduceSumsAndAverages) {
  ASSERT_OK(RunOn(GetParam(), [](Communicator& c) { return CheckAllreduce(c, 1007); }));
}

TEST_P(CommunicatorTest, AllreduceLargerThanTheRelayBufferGoesInPieces) {
  ASSERT_OK(RunOn(GetParam(), [](Communicator& c) { return CheckAllreduce(c, 50001); }));
}

TEST_P(CommunicatorTest, BroadcastCopiesTheRootsBytes) {
  ASSERT_OK(RunOn(GetParam(), [](Communicator& c) { return CheckBroadcast(c, 100003); }));
}

TEST_P(CommunicatorTest, WorkspaceAllreducesInPlaceAndOtherCollectivesLeaveItAlone) {
  ASSERT_OK(RunOn(GetParam(), CheckWorkspace));
}

TEST_P(CommunicatorTest, AllgatherOrdersByMember) {
  ASSERT_OK(RunOn(GetParam(), CheckAllgather));
}

TEST_P(CommunicatorTest, ReduceScatterLeavesEachMemberItsBlockThenAllgatherInPlace) {
  ASSERT_OK(RunOn(GetParam(), CheckReduceScatterThenAllgather));
}

TEST_P(CommunicatorTest, BarrierWaitsForEveryMember) {
  ASSERT_OK(RunOn(GetParam(), CheckBarrier));
}

TEST_P(CommunicatorTest, BroadcastFromARootOutsideTheGangIsInvalid) {
  ASSERT_OK(RunOn(GetParam(), CheckBadRoot));
}

TEST_P(CommunicatorTest, SizesAndRanksMatchTheWorld) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const int size = GangSize(GetParam());  // members are world ranks 0..size-1
  ASSERT_OK(RunOn(GetParam(), [&](Communicator& c) {
    return Expect(c.rank() == rank && c.size() == size,
                  "rank/size " + std::to_string(c.rank()) + "/" + std::to_string(c.size()));
  }));
}

INSTANTIATE_TEST_SUITE_P(Backends, CommunicatorTest, ::testing::Values("mpi", "relay", "nccl"),
                         [](const auto& info) { return info.param; });

// A gang of the world's ranks from 1 on, in reverse order (the coordinator, rank 0, takes no
// part, as in a cluster): member 0 is the highest rank.
TEST(MpiCommunicatorGroupTest, SubsetInAnyOrder) {
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size < 3) GTEST_SKIP() << "needs 3 ranks";
  std::vector<int> members;
  for (int r = size - 1; r >= 1; --r) members.push_back(r);
  if (rank == 0) {
    auto outside = MpiCommunicator::CreateGroup(MPI_COMM_WORLD, members, 7);
    EXPECT_EQ(outside.status().code(), StatusCode::kInvalidArgument);
    return;
  }
  auto comm = MpiCommunicator::CreateGroup(MPI_COMM_WORLD, members, 7);
  ASSERT_OK(comm.status());
  EXPECT_EQ((*comm)->size(), size - 1);
  EXPECT_EQ((*comm)->rank(), size - 1 - rank);
  ASSERT_OK(CheckAllreduce(**comm, 333));
  ASSERT_OK(CheckBroadcast(**comm, 77));
}

TEST(MpiCommunicatorGroupTest, BadMemberListsAreInvalid) {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  auto dup = MpiCommunicator::CreateGroup(MPI_COMM_WORLD, {0, 0}, 1);
  EXPECT_EQ(dup.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(dup.status().message().find("twice"), std::string::npos) << dup.status().ToString();
  auto out = MpiCommunicator::CreateGroup(MPI_COMM_WORLD, {size}, 1);
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(MpiCommunicator::CreateGroup(MPI_COMM_WORLD, {}, 1).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lattice::comm

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  // A name every rank (and its forked members) shares: rank 0's pid.
  int pid = static_cast<int>(getpid());
  MPI_Bcast(&pid, 1, MPI_INT, 0, MPI_COMM_WORLD);
  lattice::comm::g_run_id = pid;
  const int rc = RUN_ALL_TESTS();
  int worst = 0;  // every rank's failures fail the run
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return worst;
}
