// The coordinator process of `lattice cluster` (MPI rank 0): state store, recovery,
// HTTP API and the scheduling loop, wired together.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "common/disk_space.h"
#include "control/channel.h"

namespace lattice {

struct ClusterOptions {
  // Data directory: RocksDB state under <dir>/state, the API token in <dir>/token, the
  // API address in <dir>/coordinator.json; files 0600, directories 0700.
  // Default: ./lattice-data.
  std::string data_dir = "./lattice-data";
  // HTTP API address. Default: 127.0.0.1 (loopback only).
  std::string http_address = "127.0.0.1";
  // HTTP API port; 0 picks a free one (written to coordinator.json). Default: 7070.
  uint16_t http_port = 7070;
  // HTTP server threads. Default: 2.
  int http_threads = 2;
  // Most HTTP connections open at once (HttpServerOptions::max_connections). Default: 1024.
  int http_max_connections = 1024;
  // Host names accepted in the Host header besides the bound address, loopback,
  // "localhost" and the machine's host name (DNS-rebinding protection); "*" accepts any.
  // Default: empty.
  std::vector<std::string> allowed_hosts;
  // Directories that dataset and corpus files of specs must lie in (after resolving
  // symlinks); the data directory is never readable as data. Default: empty = the
  // working directory the cluster was started in.
  std::vector<std::string> data_roots;
  // Milliseconds of silence before a worker is declared lost. Default: 60000.
  int worker_timeout_ms = 60000;
  // Intra-op threads per worker task (LibTorch/OpenMP). Default: 1.
  int worker_threads = 1;
  // Workers run tasks in a child process they restart when it dies (worker/worker.h).
  // Default: true.
  bool isolate_tasks = true;
  // Metric updates on the hot paths: the coordinator's metrics (the families stay, at their
  // initial values) and the workers' usage reports (WorkerOptions::report_usage). false
  // only to measure their cost (bench/metrics_bench.sh). Default: true.
  bool metrics = true;
  // Free bytes to keep on the data directory's disk: below it changes get HTTP 507 and no
  // trial starts (CoordinatorOptions::min_free_bytes). Default: 256 MiB.
  int64_t min_free_bytes = kDefaultMinFreeBytes;
  // After a stop signal (SIGTERM, SIGINT, SIGUSR1), how long the coordinator waits for the
  // running trials to checkpoint and report before it stops anyway, milliseconds (workers
  // wait 5 s more for its Shutdown). Keep it below Slurm's KillWait (30 s by default).
  // Default: 20000.
  int drain_grace_ms = 20000;
};

// Runs rank 0 until a drain ends (the first of `stop_signals`, counted by the signal
// handler) or at once on a second signal. Returns the process exit code (0 after a stop).
int RunCoordinatorProcess(const ClusterOptions& options, ControlChannel& channel,
                          const std::atomic<int>* stop_signals);

// Reads <data_dir>/token, creating it (random, mode 0600) when absent.
StatusOr<std::string> LoadOrCreateToken(const std::string& data_dir);

}  // namespace lattice
