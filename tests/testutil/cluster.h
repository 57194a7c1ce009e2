// A real Lattice cluster for integration tests: `mpirun -np N lattice cluster` in its own
// process group, on a given data directory, with the API on a free port.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace lattice::testutil {

struct ClusterOptions {
  std::string data_dir;          // required
  int ranks = 3;                 // 1 coordinator + (ranks-1) workers
  int worker_threads = 1;
  std::vector<std::string> extra_args;
  std::string log_path;          // stdout+stderr of mpirun; default <data_dir>.log
};

class TestCluster {
 public:
  explicit TestCluster(ClusterOptions options);
  ~TestCluster();  // SIGTERM, then SIGKILL of the whole group if it lingers
  TestCluster(const TestCluster&) = delete;
  TestCluster& operator=(const TestCluster&) = delete;

  // Starts mpirun and waits until <data_dir>/coordinator.json names a port that answers
  // /healthz, or `timeout_ms` passes.
  Status Start(int timeout_ms = 60000);
  // Graceful stop (SIGTERM to the group) and wait.
  void Stop();
  // SIGKILL to every process of the cluster at once (no clean-up), and wait.
  void Kill();
  // Waits up to `timeout_ms` for mpirun to exit by itself (e.g. after a stop signal to its
  // ranks): its exit code, or nullopt if it still runs (then nothing is killed).
  std::optional<int> WaitForExit(int timeout_ms);

  // mpirun's pid (the process group of the cluster); -1 when not running.
  pid_t pid() const { return pid_; }

  int port() const { return port_; }
  std::string token() const;
  const std::string& log_path() const { return options_.log_path; }
  std::string Log() const;

 private:
  void SignalAndWait(int sig, int timeout_ms);

  ClusterOptions options_;
  pid_t pid_ = -1;
  int port_ = 0;
};

// Path of the built `lattice` binary.
std::string LatticeBinary();

// Runs a shell command, returns its exit code and fills `output` with stdout+stderr.
int RunCommand(const std::string& command, std::string* output);

}  // namespace lattice::testutil
