// The gang data plane's cost per gradient allreduce: a forked task process's allreduce
// through the relay (comm/relay.h), served by its rank as a worker rank serves it (asleep
// in ppoll on the relay's eventfd, testing an op in flight every 200 us), against the
// floor: the same MPI_Iallreduce called by the ranks themselves in a tight MPI_Test loop.
// Relay variants: the payload in the communicator's workspace (no copies), in the caller's
// memory (copied in and out), and the sharded optimizer step's pair (what CPU gangs do: a
// reduce-scatter of the gradients and an allgather of the parameters, both in the
// workspace). Also the CPU seconds each rank and task process spent.
//
// Usage: mpirun -np 2 build/bench/relay_bench [FLOATS=5820000] [STEPS=40]
// (5.82 M floats: the gradient of the MLP 784-2048-2048-10 of bench/gang_bench.sh)
#include <mpi.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "comm/mpi_communicator.h"
#include "comm/relay.h"
#include "comm/relay_server.h"

namespace lattice::comm {
namespace {

using Clock = std::chrono::steady_clock;

double CpuSeconds(int who) {
  rusage u{};
  getrusage(who, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

// What the child does per step.
enum class Exchange {
  kAllreduceWorkspace,  // allreduce of the gradients in the workspace
  kAllreduceCopied,     // the same, from the caller's memory (copied in and out)
  kSharded,             // a sharded optimizer step's pair: reduce-scatter of the gradients,
                        // allgather of the parameters, both in the workspace
};

// Seconds per exchange of `floats` floats, `steps` times, through a relay from a child.
double ThroughRelay(size_t floats, int steps, Exchange exchange, int rank, int size) {
  const bool workspace = exchange != Exchange::kAllreduceCopied;
  auto buffer = RelayBuffer::Create(RelayBuffer::kDefaultCapacity);
  if (!buffer.ok()) std::abort();
  std::vector<int> ranks;
  for (int r = 0; r < size; ++r) ranks.push_back(r);
  const uint64_t gang = GangKey("bench-" + std::to_string(static_cast<int>(exchange)), 1);
  RelayServer server(buffer->get(), MPI_COMM_WORLD);
  server.SetGang(gang, ranks);
  MPI_Barrier(MPI_COMM_WORLD);
  const auto start = Clock::now();
  const pid_t pid = fork();
  if (pid == 0) {
    RelayCommunicator comm(buffer->get(), gang, rank, size, nullptr);
    const size_t shard = (floats + size - 1) / size;
    std::vector<float> own;
    float* data = workspace ? comm.Workspace(shard * size) : nullptr;
    float* params = exchange == Exchange::kSharded ? comm.Workspace(shard * size) : nullptr;
    if (data == nullptr) {
      own.assign(floats, 1.0f);
      data = own.data();
    }
    for (int s = 0; s < steps; ++s) {
      Status done = exchange != Exchange::kSharded
                        ? comm.Allreduce(data, floats, ReduceOp::kSum)
                        : comm.ReduceScatter(data, shard, ReduceOp::kSum);
      if (done.ok() && exchange == Exchange::kSharded) {
        done = comm.Allgather(params + rank * shard, shard, params);
      }
      if (!done.ok()) _exit(1);
    }
    _exit(0);
  }
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {  // the worker rank's loop, in short
    if (server.Poll() == RelayServer::State::kInFlight) {
      usleep(200);
      continue;
    }
    pollfd wake{(*buffer)->wake_fd(), POLLIN, 0};
    poll(&wake, 1, 2);
  }
  server.EndGang(gang);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) std::abort();
  return std::chrono::duration<double>(Clock::now() - start).count() / steps;
}

int Main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const size_t floats = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 5820000;
  const int steps = argc > 2 ? std::atoi(argv[2]) : 40;

  double cpu0 = CpuSeconds(RUSAGE_SELF);
  auto direct = MpiCommunicator::Duplicate(MPI_COMM_WORLD);
  if (!direct.ok()) std::abort();
  std::vector<float> data(floats, 1.0f);
  MPI_Barrier(MPI_COMM_WORLD);
  auto start = Clock::now();
  for (int s = 0; s < steps; ++s) {
    if (!(*direct)->Allreduce(data.data(), floats, ReduceOp::kSum).ok()) std::abort();
  }
  const double floor = std::chrono::duration<double>(Clock::now() - start).count() / steps;
  const double floor_cpu = CpuSeconds(RUSAGE_SELF) - cpu0;

  struct Run {
    double seconds, rank_cpu, task_cpu;
  };
  auto run = [&](Exchange exchange) {
    const double cpu = CpuSeconds(RUSAGE_SELF), child = CpuSeconds(RUSAGE_CHILDREN);
    const double seconds = ThroughRelay(floats, steps, exchange, rank, size);
    return Run{seconds, CpuSeconds(RUSAGE_SELF) - cpu, CpuSeconds(RUSAGE_CHILDREN) - child};
  };
  const Run ws_run = run(Exchange::kAllreduceWorkspace);
  const Run copy_run = run(Exchange::kAllreduceCopied);
  const Run sharded = run(Exchange::kSharded);
  const double ws = ws_run.seconds, ws_rank = ws_run.rank_cpu, ws_task = ws_run.task_cpu;
  const double copy = copy_run.seconds, copy_rank = copy_run.rank_cpu;
  const double copy_task = copy_run.task_cpu;
  if (rank == 0) {
    std::printf("allreduce of %zu floats (%.1f MB), %d ranks, %d steps (rank 0's view)\n", floats,
                static_cast<double>(floats) * 4e-6, size, steps);
    std::printf("ranks' own MPI (MPI_Test spin): %7.2f ms/op  rank CPU %5.2f s\n", floor * 1e3,
                floor_cpu);
    std::printf("relay, workspace (no copies):    %7.2f ms/op  rank CPU %5.2f s  task CPU %5.2f s  "
                "%.2fx the floor\n", ws * 1e3, ws_rank, ws_task, ws / floor);
    std::printf("relay, copied in and out:        %7.2f ms/op  rank CPU %5.2f s  task CPU %5.2f s  "
                "%.2fx the floor\n", copy * 1e3, copy_rank, copy_task, copy / floor);
    std::printf("relay, reduce-scatter + allgather: %5.2f ms/op  rank CPU %5.2f s  task CPU %5.2f s  "
                "%.2fx the floor\n", sharded.seconds * 1e3, sharded.rank_cpu, sharded.task_cpu,
                sharded.seconds / floor);
  }
  direct->reset();
  MPI_Finalize();
  return 0;
}

}  // namespace
}  // namespace lattice::comm

int main(int argc, char** argv) { return lattice::comm::Main(argc, argv); }
