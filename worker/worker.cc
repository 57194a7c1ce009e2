#include "worker/worker.h"

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "comm/relay.h"
#include "common/event_fd.h"
#include "jobs/dataset.h"
#include "jobs/train_job.h"
#include "monitoring/metrics.h"
#include "worker/coordinator_watch.h"
#include "worker/device.h"
#include "worker/stop_signal_watch.h"

namespace lattice {
namespace {

using Clock = std::chrono::steady_clock;

// Runs assigned tasks one at a time, in order, on its own thread; results go to a
// thread-safe outbox.
class TaskRunner {
 public:
  TaskRunner(int num_threads, DeviceInfo device, bool report_usage, WorkerRank rank,
             comm::RelayBuffer* relay)
      : num_threads_(num_threads),
        device_(std::move(device)),
        report_usage_(report_usage),
        rank_(rank),
        relay_(relay),
        thread_([this] { Loop(); }) {}

  ~TaskRunner() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      quit_ = true;
      cancel_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  // Readable when the task thread queued a message (a Result, Progress, a checkpoint): the
  // task loop sleeps on it and its channel, and needs no short timeouts to see them.
  // Not ok() when the kernel gave no eventfd: the loop then polls.
  const EventFd& wake() const { return wake_; }

  void Enqueue(AssignMsg assign) {
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_) {  // never started: the coordinator queues it again, attempt not spent
      outbox_.push_back(Preempted(assign, "not started: the worker is stopping"));
      return;
    }
    if (!assign.gang.empty() && (current_ || !pending_.empty())) {
      // Its peers would wait for it behind another task: the coordinator never does this
      // (a gang forms on idle workers); refuse rather than stall the gang.
      outbox_.push_back(ResultMsg{assign.trial, assign.attempt, StatusCode::kInternal, {}, 0,
                                  "worker w" + std::to_string(rank_.value) +
                                      " was given a gang task while it holds another",
                                  0});
      return;
    }
    pending_.push_back(std::move(assign));
    cv_.notify_all();
  }

  // The worker is stopping (DrainMsg or a stop signal): the running task is preempted —
  // a train / distill task checkpoints where it stands first — and answered with a Result
  // marked preempted, as are the queued ones (without running) and every later Assign.
  void Drain() {
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_) return;
    draining_ = true;
    preempt_ = true;
    for (const AssignMsg& queued : pending_) {
      outbox_.push_back(Preempted(queued, "not started: the worker is stopping"));
    }
    pending_.clear();
  }

  // Stops the task if it runs now; a queued one is answered Cancelled without running.
  void Cancel(const TrialId& trial) {
    std::lock_guard<std::mutex> lock(mu_);
    if (current_ && *current_ == trial) cancel_ = true;
    for (auto it = pending_.begin(); it != pending_.end(); ++it) {
      if (it->trial != trial) continue;
      outbox_.push_back(ResultMsg{it->trial, it->attempt, StatusCode::kCancelled, {}, 0,
                                  "cancelled before it started", 0});
      pending_.erase(it);
      break;
    }
  }

  void CancelAll() {
    std::lock_guard<std::mutex> lock(mu_);
    cancel_ = true;
    pending_.clear();
  }

  // Keeps the checkpoint of `trial` for embed jobs with encoder {type: trial} and distill
  // jobs with teacher {type: trial}.
  void AddCheckpoint(const TrialId& trial, std::string bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    checkpoints_[trial.ToString()] = std::make_shared<const std::string>(std::move(bytes));
  }

  // Keeps the step checkpoint that attempt `attempt` of `trial` resumes from.
  void AddResume(const TrialId& trial, int attempt, std::string bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    resume_[{trial, attempt}] = std::make_shared<const std::string>(std::move(bytes));
  }

  std::optional<TrialId> current() {
    std::lock_guard<std::mutex> lock(mu_);
    return current_;
  }

  // Moves all pending outgoing messages into `out`.
  void Drain(std::deque<Message>& out) {
    wake_.Drain();
    std::lock_guard<std::mutex> lock(mu_);
    while (!outbox_.empty()) {
      out.push_back(std::move(outbox_.front()));
      outbox_.pop_front();
    }
  }

 private:
  void Loop() {
    for (;;) {
      AssignMsg task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return quit_ || !pending_.empty(); });
        if (quit_) return;
        task = std::move(pending_.front());
        pending_.pop_front();
        current_ = task.trial;
        cancel_ = false;
        preempt_ = draining_.load();
      }
      ResultMsg result = Run(task);
      std::lock_guard<std::mutex> lock(mu_);
      outbox_.push_back(std::move(result));
      current_.reset();
      wake_.Signal();
    }
  }

  ResultMsg Run(const AssignMsg& task) {
    auto start = Clock::now();
    jobs::JobContext ctx;
    ctx.cache = &cache_;
    ctx.num_threads = num_threads_;
    ctx.device = device_.TorchDevice();
    ctx.cancelled = [this] {
      return cancel_.load(std::memory_order_relaxed) || preempt_.load(std::memory_order_relaxed);
    };
    ctx.preempted = [this] { return preempt_.load(std::memory_order_relaxed); };
    ctx.checkpoint = [this](const std::string& trial) -> std::shared_ptr<const std::string> {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = checkpoints_.find(trial);
      return it == checkpoints_.end() ? nullptr : it->second;
    };
    ctx.on_checkpoint = [this, &task](std::string bytes, int64_t step, int) {
      Post(SplitCheckpoint(task.trial, task.attempt, step, std::move(bytes)));
    };
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = resume_.find({task.trial, task.attempt});
      if (it != resume_.end()) {
        ctx.resume_from = it->second;
        resume_.erase(it);
      }
    }
    ctx.on_epoch = [this, &task](int epoch, const std::map<std::string, double>& metrics) {
      const int64_t processed = processed_.exchange(0, std::memory_order_relaxed);
      std::lock_guard<std::mutex> lock(mu_);
      outbox_.push_back(ProgressMsg{task.trial, task.attempt, epoch, metrics, processed});
      wake_.Signal();
    };
    if (report_usage_) {
      ctx.processed = &processed_;
      ResetPeakResidentBytes();
    }
    ResultMsg result{task.trial, task.attempt, StatusCode::kOk, {}, 0, "", 0};
    std::unique_ptr<comm::RelayCommunicator> gang;
    std::unique_ptr<comm::Communicator> device_gang;  // destroyed before `gang`
    int member = 0;
    if (!task.gang.empty()) {
      StatusOr<int> joined = JoinGang(task, ctx, &gang, &device_gang);
      if (!joined.ok()) {
        result.code = joined.status().code();
        result.error = joined.status().message();
        return result;
      }
      member = *joined;
    }
    ResetPeakDeviceMemory(device_);
    auto outcome = jobs::RunJob(task.config, ctx);
    if (outcome.ok()) {
      result.metrics = outcome->metrics;
      result.metrics.insert(outcome->timings.begin(), outcome->timings.end());
      if (device_.kind != "cpu") {
        result.metrics["peak_device_memory_bytes"] = static_cast<double>(PeakDeviceMemory(device_));
      }
      if (report_usage_) result.metrics["peak_rss_bytes"] = static_cast<double>(PeakResidentBytes());
      result.epochs_done = outcome->epochs_done;
      if (outcome->embeddings) {
        jobs::EmbeddingBlock& block = *outcome->embeddings;
        std::lock_guard<std::mutex> lock(mu_);
        outbox_.push_back(VectorsMsg{task.trial, task.attempt, block.begin, block.rows, block.dim,
                                     std::move(block.vectors), std::move(block.metadata)});
      }
      if (outcome->checkpoint && member == 0) {
        Post(SplitCheckpoint(task.trial, task.attempt, 0, std::move(*outcome->checkpoint)));
      }
    } else {
      result.code = outcome.status().code();
      result.error = outcome.status().message();
      result.preempted = result.code == StatusCode::kCancelled && preempt_.load();
    }
    result.run_seconds = std::chrono::duration<double>(Clock::now() - start).count();
    result.processed = processed_.exchange(0, std::memory_order_relaxed);
    return result;
  }

  // A multi-worker trial: this member's communicator (through the rank: comm/relay.h) in
  // ctx.gang, and on a GPU worker its device communicator (NCCL) in ctx.gang_device;
  // members other than 0 report nothing but their Result. Returns the member.
  StatusOr<int> JoinGang(const AssignMsg& task, jobs::JobContext& ctx,
                         std::unique_ptr<comm::RelayCommunicator>* gang,
                         std::unique_ptr<comm::Communicator>* device_gang) {
    if (relay_ == nullptr) {
      return Status::FailedPrecondition(
          "a multi-worker trial needs task isolation (lattice cluster --task-isolation true)");
    }
    int member = -1;
    for (size_t i = 0; i < task.gang.size(); ++i) {
      if (task.gang[i] == rank_.value) member = static_cast<int>(i);
    }
    if (member < 0) {
      return Status::InvalidArgument("worker " + rank_.ToString() + " is not in the gang of " +
                                     task.trial.ToString());
    }
    *gang = std::make_unique<comm::RelayCommunicator>(
        relay_, comm::GangKey(task.trial.ToString(), task.attempt), member,
        static_cast<int>(task.gang.size()), ctx.cancelled);
    ctx.gang = gang->get();
    // GPU workers: device tensors' collectives over NCCL (every member's device is alike).
    LATTICE_ASSIGN_OR_RETURN(*device_gang, DeviceGangCommunicator(device_, **gang));
    ctx.gang_device = device_gang->get();
    if (member > 0) {
      ctx.on_epoch = nullptr;
      ctx.on_checkpoint = nullptr;
    }
    return member;
  }

  static ResultMsg Preempted(const AssignMsg& task, const std::string& why) {
    ResultMsg r{task.trial, task.attempt, StatusCode::kCancelled, {}, 0, why, 0};
    r.preempted = true;
    return r;
  }

  // Queues the pieces of a checkpoint for the coordinator.
  void Post(std::vector<CheckpointMsg> pieces) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& piece : pieces) outbox_.push_back(std::move(piece));
    wake_.Signal();
  }

  const int num_threads_;
  const DeviceInfo device_;
  const bool report_usage_;
  const WorkerRank rank_;
  comm::RelayBuffer* const relay_;  // null: no gangs (not isolated)
  std::atomic<int64_t> processed_{0};  // rows of the running task not reported yet
  jobs::DatasetCache cache_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<AssignMsg> pending_;
  std::optional<TrialId> current_;
  std::deque<Message> outbox_;
  // Checkpoints the coordinator sent, by trial id; kept for the worker's life (the
  // coordinator sends each one once per worker).
  std::map<std::string, std::shared_ptr<const std::string>> checkpoints_;
  // Step checkpoints to resume from, by (trial, attempt); taken when that attempt starts.
  std::map<std::pair<TrialId, int>, std::shared_ptr<const std::string>> resume_;
  std::atomic<bool> cancel_{false};
  std::atomic<bool> preempt_{false};   // the running task is to checkpoint and stop
  std::atomic<bool> draining_{false};  // Drain() was called: no task starts any more
  bool quit_ = false;
  EventFd wake_;
  std::thread thread_;  // last: starts after the members above exist
};

std::string HostName() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

}  // namespace

int RunTaskLoop(ControlChannel& channel, const WorkerOptions& options) {
  StatusOr<DeviceInfo> discovered = DiscoverDevice(channel.rank().value);
  Status usable = discovered.ok() ? jobs::CheckJobDevice(discovered->TorchDevice())
                                  : discovered.status();
  if (!usable.ok()) {
    // Exiting takes the MPI job down, which is what a misconfigured GPU allocation wants:
    // the operator sees why at once instead of trials failing one by one.
    std::fprintf(stderr, "worker %d: error: %s\n", channel.rank().value, usable.message().c_str());
    return 1;
  }
  const DeviceInfo device = *discovered;
  RegisterMsg hello{HostName(), options.num_threads, device.Describe(), getpid(),
                    device.total_bytes};
  if (!channel.Send(kCoordinatorRank, hello).ok()) return 1;
  TaskRunner runner(options.num_threads, device, options.report_usage, channel.rank(),
                    options.relay);
  // Woken by its channel and by the runner's messages: long sleeps when idle cost nothing
  // in latency. A channel that cannot wait on them (MPI) is polled every <= 2 ms.
  const auto longest_sleep = std::chrono::microseconds(
      runner.wake().ok() && channel.AlsoWakeOn(runner.wake().fd()) ? 20000 : 2000);
  CheckpointAssembler checkpoints;  // pieces of checkpoints the coordinator sends
  auto next_heartbeat = Clock::now();
  auto idle_sleep = std::chrono::microseconds(20);
  bool running = true;
  std::deque<Message> outgoing;
  CoordinatorWatch watch(options.coordinator_timeout_ms);
  StopSignalWatch signals(options);
  while (running) {
    bool did_work = false;
    while (auto polled = channel.Poll()) {
      did_work = true;
      if (!polled->ok()) {
        std::fprintf(stderr, "worker %d: %s\n", channel.rank().value, polled->status().ToString().c_str());
        if (polled->status().code() == StatusCode::kUnavailable) {
          runner.CancelAll();
          return 1;  // whoever sends us tasks is gone
        }
        continue;
      }
      watch.Heard();
      Message& m = polled->value().message;
      if (auto* assign = std::get_if<AssignMsg>(&m)) {
        runner.Enqueue(std::move(*assign));
      } else if (auto* piece = std::get_if<CheckpointMsg>(&m)) {
        auto whole = checkpoints.Add(std::move(*piece));
        if (!whole.ok()) {
          std::fprintf(stderr, "worker %d: %s\n", channel.rank().value,
                       whole.status().ToString().c_str());
        } else if (*whole && (*whole)->step > 0) {
          runner.AddResume((*whole)->trial, (*whole)->attempt, std::move((*whole)->bytes));
        } else if (*whole) {
          runner.AddCheckpoint((*whole)->trial, std::move((*whole)->bytes));
        }
      } else if (auto* cancel = std::get_if<CancelMsg>(&m)) {
        runner.Cancel(cancel->trial);
      } else if (std::holds_alternative<DrainMsg>(m)) {
        runner.Drain();
      } else if (std::holds_alternative<ShutdownMsg>(m)) {
        running = false;
      }
    }
    runner.Drain(outgoing);
    if (Clock::now() >= next_heartbeat) {
      HeartbeatMsg beat;
      beat.trial = runner.current();
      beat.rss_bytes = ResidentBytes();
      beat.vram_bytes = DeviceMemoryInUse(device);
      outgoing.push_back(std::move(beat));
      next_heartbeat = Clock::now() + std::chrono::milliseconds(options.heartbeat_interval_ms);
    }
    while (!outgoing.empty()) {
      did_work = true;
      if (!channel.Send(kCoordinatorRank, outgoing.front()).ok()) return 1;
      outgoing.pop_front();
    }
    switch (signals.Check()) {
      case StopSignalWatch::kNone:
        break;
      case StopSignalWatch::kDrain:
        runner.Drain();
        break;
      case StopSignalWatch::kStopNow:
        std::fprintf(stderr, "worker %d: %s: stopping now\n", channel.rank().value,
                     signals.why().c_str());
        runner.CancelAll();
        return 0;
    }
    if (watch.Expired()) {
      std::fprintf(stderr, "worker %d: error: nothing from the coordinator for %d ms: exiting\n",
                   channel.rank().value, options.coordinator_timeout_ms);
      runner.CancelAll();
      return 1;
    }
    // Adaptive back-off: stay responsive right after work, sleep longer when idle, so
    // that polling never competes with the training threads for the cores.
    idle_sleep = did_work ? std::chrono::microseconds(20) : std::min(idle_sleep * 2, longest_sleep);
    channel.WaitForInput(idle_sleep);
  }
  runner.CancelAll();
  return 0;
}

}  // namespace lattice
