#include "tests/testutil/cluster.h"
#include "tests/testutil/testutil.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

namespace lattice::testutil {

std::string LatticeBinary() { return std::string(LATTICE_BINARY_DIR) + "/lattice"; }

int RunCommand(const std::string& command, std::string* output) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  std::array<char, 4096> buf;
  std::string out;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  int status = pclose(pipe);
  if (output != nullptr) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TestCluster::TestCluster(ClusterOptions options) : options_(std::move(options)) {
  if (options_.log_path.empty()) options_.log_path = options_.data_dir + ".log";
}

TestCluster::~TestCluster() {
  if (pid_ > 0) Stop();
}

Status TestCluster::Start(int timeout_ms) {
  std::string info_path = options_.data_dir + "/coordinator.json";
  std::remove(info_path.c_str());
  // --enable-recovery: a worker rank that dies does not end the job (worker/worker.h).
  std::vector<std::string> args = {"mpirun", "--allow-run-as-root", "--oversubscribe",
                                   "--enable-recovery", "--bind-to", "none", "-np",
                                   std::to_string(options_.ranks),
                                   LatticeBinary(), "cluster", "--data-dir", options_.data_dir,
                                   "--port", "0", "--worker-threads",
                                   std::to_string(options_.worker_threads)};
  // Datasets of tests sit next to the data directory (one temp dir) or in the source tree
  // (fixtures); the data directory itself is denied anyway.
  const std::string parent = options_.data_dir.substr(0, options_.data_dir.find_last_of('/'));
  std::string roots = parent + "," + SourceDir();
  // (and the system data sets the integration tests and examples read).
  for (const std::string& dir :
       {std::string("/usr/share/datasets"),
        std::string("/usr/lib/python3/dist-packages/sklearn/datasets/data")}) {
    if (std::filesystem::is_directory(dir)) roots += "," + dir;
  }
  args.insert(args.end(), {"--data-roots", roots});
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  pid_ = fork();
  if (pid_ < 0) return Status::Internal("fork failed");
  if (pid_ == 0) {
    setpgid(0, 0);  // own process group: Kill() reaches mpirun and every rank at once
    FILE* log = std::fopen(options_.log_path.c_str(), "a");
    if (log != nullptr) {
      dup2(fileno(log), 1);
      dup2(fileno(log), 2);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execvp("mpirun", argv.data());
    _exit(127);
  }
  setpgid(pid_, pid_);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(info_path);
    if (in) {
      try {
        nlohmann::json info = nlohmann::json::parse(in);
        port_ = info.at("port").get<int>();
        return Status::Ok();
      } catch (const std::exception&) {
        // written atomically, so only a race with a stale file; retry
      }
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return Status::Unavailable("cluster exited during start-up; log:\n" + Log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Status::Unavailable("cluster did not start within " + std::to_string(timeout_ms) +
                             " ms; log:\n" + Log());
}

void TestCluster::SignalAndWait(int sig, int timeout_ms) {
  if (pid_ <= 0) return;
  kill(-pid_, sig);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (pid_ > 0) {
    kill(-pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  // Ranks are in the same group; make sure none outlives mpirun.
  // "[l]attice" matches "lattice" but not the command line of the shell running pgrep.
  std::string pattern = "[l]attice cluster --data-dir " + options_.data_dir + " ";
  for (int i = 0; i < 100; ++i) {
    std::string out;
    if (RunCommand("pgrep -f -- '" + pattern + "'", &out) != 0) break;
    RunCommand("pkill -9 -f -- '" + pattern + "'", nullptr);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

std::optional<int> TestCluster::WaitForExit(int timeout_ms) {
  if (pid_ <= 0) return std::nullopt;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return std::nullopt;
}

void TestCluster::Stop() { SignalAndWait(SIGTERM, 20000); }
void TestCluster::Kill() { SignalAndWait(SIGKILL, 5000); }

std::string TestCluster::token() const {
  std::ifstream in(options_.data_dir + "/token");
  std::string token;
  std::getline(in, token);
  return token;
}

std::string TestCluster::Log() const {
  std::ifstream in(options_.log_path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace lattice::testutil
