// RunWorker: the worker rank, relaying between the coordinator and its task process
// (worker/worker.h, "Task isolation").
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "comm/relay.h"
#include "comm/relay_server.h"
#include "control/socket_channel.h"
#include "worker/coordinator_watch.h"
#include "worker/stop_signal_watch.h"
#include "worker/worker.h"

namespace lattice {
namespace {

using Clock = std::chrono::steady_clock;

// How a child process ended, for people: "killed by signal 11 (Segmentation fault)".
std::string DescribeExit(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return "killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
  }
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  return "ended (status " + std::to_string(status) + ")";
}

// One task process and the socket to it.
struct TaskProcess {
  pid_t pid = -1;
  std::unique_ptr<SocketControlChannel> channel;
};

StatusOr<TaskProcess> StartTaskProcess(WorkerRank rank, const WorkerOptions& options) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return Status::IoError(std::string("socketpair: ") + std::strerror(errno));
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return Status::IoError(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    // The task process: never touches MPI; dies with the rank.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);  // the rank died before prctl took effect
    // Stop signals are the rank's business: Slurm signals every process of a step at once,
    // and the rank drains this process with a Drain message (its task checkpoints first).
    for (int sig : {SIGTERM, SIGINT, SIGUSR1}) signal(sig, SIG_IGN);
    close(fds[0]);
    int rc = 1;
    {
      SocketControlChannel channel(fds[1], rank, kCoordinatorRank);
      WorkerOptions task = options;
      task.isolate_tasks = false;
      task.coordinator_timeout_ms = 0;  // the rank watches the coordinator
      task.stop_signals = nullptr;      // and the stop signals
      rc = RunTaskLoop(channel, task);
      channel.Flush(10000);
    }
    std::fflush(nullptr);
    _exit(rc);  // no atexit handlers, no MPI_Finalize: MPI belongs to the rank
  }
  close(fds[1]);
  TaskProcess process;
  process.pid = pid;
  process.channel = std::make_unique<SocketControlChannel>(fds[0], kCoordinatorRank, rank);
  return process;
}

// Waits up to `timeout` for `pid` to end, then kills it. Returns its wait status.
int Reap(pid_t pid, std::chrono::milliseconds timeout) {
  int status = 0;
  const auto deadline = Clock::now() + timeout;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (Clock::now() >= deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return status;
}

// The rank's side: relays messages, restarts the task process when it dies.
class Relay {
 public:
  Relay(ControlChannel& coordinator, const WorkerOptions& options)
      : coordinator_(coordinator), options_(options) {}

  int Run() {
    // Gangs' collectives: shared memory mapped before the fork, served on sub-communicators
    // of options.gang_parent (its ranks are world ranks).
    if (options_.gang_parent != MPI_COMM_NULL) {
      auto buffer = comm::RelayBuffer::Create(comm::RelayBuffer::kDefaultCapacity);
      if (!buffer.ok()) {
        std::fprintf(stderr, "worker %d: error: %s\n", rank(), buffer.status().message().c_str());
        return 1;
      }
      relay_buffer_ = std::move(buffer).value();
      options_.relay = relay_buffer_.get();
      relay_server_ = std::make_unique<comm::RelayServer>(relay_buffer_.get(), options_.gang_parent);
    }
    if (Status started = Start(); !started.ok()) {
      std::fprintf(stderr, "worker %d: error: %s\n", rank(), started.message().c_str());
      return 1;
    }
    CoordinatorWatch watch(options_.coordinator_timeout_ms);
    StopSignalWatch signals(options_);
    auto idle_sleep = std::chrono::microseconds(20);
    bool running = true;
    while (running) {
      bool did_work = false;
      while (auto polled = coordinator_.Poll()) {
        did_work = true;
        if (!polled->ok()) {
          std::fprintf(stderr, "worker %d: %s\n", rank(), polled->status().ToString().c_str());
          continue;
        }
        watch.Heard();
        running &= FromCoordinator(std::move(polled->value().message));
      }
      for (int n = 0; n < 64; ++n) {  // bounded: the coordinator's messages get their turn
        auto polled = task_.channel->Poll();
        if (!polled) break;
        did_work = true;
        if (polled->ok()) {
          FromTask(std::move(polled->value().message));
          continue;
        }
        if (polled->status().code() != StatusCode::kUnavailable) {
          std::fprintf(stderr, "worker %d: task process: %s\n", rank(),
                       polled->status().ToString().c_str());
          continue;
        }
        // The task process is gone.
        const int status = Reap(task_.pid, std::chrono::seconds(10));
        if (!running) return 0;
        if (!registered_) {  // it failed before it could work (e.g. no usable device)
          std::fprintf(stderr, "worker %d: error: the task process %s before registering\n",
                       rank(), DescribeExit(status).c_str());
          return 1;
        }
        if (Status restarted = Restart(status); !restarted.ok()) {
          std::fprintf(stderr, "worker %d: error: %s\n", rank(), restarted.message().c_str());
          return 1;
        }
        break;
      }
      switch (signals.Check()) {
        case StopSignalWatch::kNone:
          break;
        case StopSignalWatch::kDrain:  // as if the coordinator had sent Drain
          std::fprintf(stderr, "worker %d: stop signal: draining (a second one stops at once)\n",
                       rank());
          ToTask(DrainMsg{});
          draining_ = true;
          break;
        case StopSignalWatch::kStopNow:
          std::fprintf(stderr, "worker %d: %s: stopping now\n", rank(), signals.why().c_str());
          running = false;
          break;
      }
      if (watch.Expired()) {
        std::fprintf(stderr, "worker %d: error: nothing from the coordinator for %d ms: exiting\n",
                     rank(), options_.coordinator_timeout_ms);
        Stop();
        return 1;
      }
      // A gang's collective in flight is tested every 200 us (MPI progresses it only inside
      // MPI calls); otherwise the loop sleeps: a posted collective wakes it (the relay's
      // eventfd), as does the task process's socket (a Result must not wait for the
      // back-off). The back-off (<= 5 ms) bounds only how late the coordinator's messages are
      // seen, and what an idle rank costs (~1 % of a core).
      const bool in_flight =
          relay_server_ && relay_server_->Poll() == comm::RelayServer::State::kInFlight;
      const auto most = std::chrono::microseconds(in_flight ? 200 : 5000);
      idle_sleep = did_work ? std::chrono::microseconds(20) : std::min(idle_sleep * 2, most);
      if (running) task_.channel->WaitForInput(idle_sleep);
    }
    Stop();
    return 0;
  }

 private:
  int rank() const { return coordinator_.rank().value; }

  Status Start() {
    LATTICE_ASSIGN_OR_RETURN(task_, StartTaskProcess(coordinator_.rank(), options_));
    if (relay_buffer_) task_.channel->AlsoWakeOn(relay_buffer_->wake_fd());
    return Status::Ok();
  }

  // Returns false on Shutdown.
  bool FromCoordinator(Message m) {
    if (std::holds_alternative<HeartbeatMsg>(m)) return true;  // the coordinator's keep-alive
    if (const auto* assign = std::get_if<AssignMsg>(&m)) {
      outstanding_.emplace_back(assign->trial, assign->attempt);
      if (relay_server_ && !assign->gang.empty()) {
        relay_server_->SetGang(comm::GangKey(assign->trial.ToString(), assign->attempt),
                               assign->gang);
      }
    } else if (std::holds_alternative<DrainMsg>(m)) {
      draining_ = true;
    } else if (const auto* piece = std::get_if<CheckpointMsg>(&m)) {
      // An encoder's / teacher's checkpoint is sent once per worker: keep it for a new task
      // process. (A resume checkpoint belongs to one attempt, which a crash ends anyway.)
      if (piece->step == 0 && piece->attempt == 0) kept_checkpoints_.push_back(*piece);
    }
    const bool shutdown = std::holds_alternative<ShutdownMsg>(m);
    ToTask(m);
    return !shutdown;
  }

  void FromTask(Message m) {
    if (auto* hello = std::get_if<RegisterMsg>(&m)) {
      if (registered_) return;  // a restarted task process: the coordinator knows us
      registered_ = true;
      hello->pid = getpid();  // the rank is what operators signal
    } else if (auto* beat = std::get_if<HeartbeatMsg>(&m)) {
      beat->task_restarts = restarts_;
      beat->fault = fault_;
      running_ = beat->trial;
    } else if (const auto* result = std::get_if<ResultMsg>(&m)) {
      if (relay_server_) {
        relay_server_->EndGang(comm::GangKey(result->trial.ToString(), result->attempt));
      }
      for (auto it = outstanding_.begin(); it != outstanding_.end(); ++it) {
        if (it->first == result->trial && it->second == result->attempt) {
          outstanding_.erase(it);
          break;
        }
      }
    }
    (void)coordinator_.Send(kCoordinatorRank, m);
  }

  // A failed send means the process is gone: the next Poll of its channel says so and
  // Run restarts it.
  void ToTask(const Message& m) { (void)task_.channel->Send(kCoordinatorRank, m); }

  // The task process died while working: fail what it had, start a new one.
  Status Restart(int status) {
    ++restarts_;
    // The task it was running: per its last heartbeat when that one is still outstanding
    // (the heartbeat may be older than the last Result), else the first outstanding.
    std::optional<TrialId> crashed;
    for (const auto& [trial, attempt] : outstanding_) {
      if (running_ && trial == *running_) crashed = trial;
    }
    if (!crashed && !outstanding_.empty()) crashed = outstanding_.front().first;
    fault_ = "task process " + DescribeExit(status) +
             (crashed ? " while running " + crashed->ToString() : std::string(" while idle"));
    std::fprintf(stderr, "worker %d: %s; starting a new one (restart %d)\n", rank(), fault_.c_str(),
                 restarts_);
    for (const auto& [trial, attempt] : outstanding_) {
      ResultMsg r;
      r.trial = trial;
      r.attempt = attempt;
      if (crashed && trial == *crashed) {
        r.code = StatusCode::kInternal;  // retryable: the next attempt runs (elsewhere or here)
        r.error = "the worker's " + fault_;
      } else {
        r.code = StatusCode::kCancelled;  // queued behind it: runs again, attempt not spent
        r.error = "not started: the worker's task process died";
      }
      (void)coordinator_.Send(kCoordinatorRank, r);
    }
    outstanding_.clear();
    running_.reset();
    // Tell the coordinator now, not at the next heartbeat of the new process.
    HeartbeatMsg beat;
    beat.task_restarts = restarts_;
    beat.fault = fault_;
    (void)coordinator_.Send(kCoordinatorRank, beat);
    if (relay_server_) relay_server_->Reset();  // requests of the dead process are void
    LATTICE_RETURN_IF_ERROR(Start());
    for (const auto& piece : kept_checkpoints_) ToTask(piece);
    if (draining_) ToTask(DrainMsg{});  // the new process takes no task either
    return Status::Ok();
  }

  void Stop() {
    (void)task_.channel->Send(kCoordinatorRank, ShutdownMsg{});
    task_.channel->Flush(2000);
    Reap(task_.pid, std::chrono::seconds(10));
  }

  ControlChannel& coordinator_;
  WorkerOptions options_;  // .relay set by Run() before the first fork
  std::unique_ptr<comm::RelayBuffer> relay_buffer_;
  std::unique_ptr<comm::RelayServer> relay_server_;
  TaskProcess task_;
  bool registered_ = false;
  bool draining_ = false;  // Drain sent to the task process (a stop signal or the coordinator)
  int restarts_ = 0;
  std::string fault_;
  std::optional<TrialId> running_;                    // per the task process's last heartbeat
  std::deque<std::pair<TrialId, int>> outstanding_;   // assigned, no Result yet
  std::vector<CheckpointMsg> kept_checkpoints_;       // encoder / teacher pieces, in order
};

}  // namespace

int RunWorker(ControlChannel& channel, const WorkerOptions& options) {
  if (!options.isolate_tasks) return RunTaskLoop(channel, options);
  return Relay(channel, options).Run();
}

}  // namespace lattice
