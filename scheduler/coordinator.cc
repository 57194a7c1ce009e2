#include "scheduler/coordinator.h"

#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "scheduler/checkpoints.h"
#include "store/checkpoint_store.h"
#include "store/vector_block_store.h"

namespace lattice {

using scheduler::TrialEvent;

const char* WorkerStateName(WorkerState state) {
  switch (state) {
    case WorkerState::kStarting: return "starting";
    case WorkerState::kIdle: return "idle";
    case WorkerState::kBusy: return "busy";
    case WorkerState::kLost: return "lost";
  }
  return "unknown";
}

std::optional<WorkerState> ParseWorkerState(std::string_view text) {
  for (WorkerState s : {WorkerState::kStarting, WorkerState::kIdle, WorkerState::kBusy,
                        WorkerState::kLost}) {
    if (text == WorkerStateName(s)) return s;
  }
  return std::nullopt;
}

Coordinator::Coordinator(CoordinatorOptions options, StateStore* store, ControlChannel* channel,
                         SchedulerMetrics* metrics)
    : options_(std::move(options)),
      store_(store),
      channel_(channel),
      metrics_(metrics),
      clock_(options_.clock != nullptr ? options_.clock : SystemClock()) {
  slots_.resize(static_cast<size_t>(channel_->size()));
  if (metrics_ != nullptr) metrics_->EnsureWorkers(channel_->size());
  for (int r = 1; r < channel_->size(); ++r) {
    slots_[r].view.rank = WorkerRank{r};
    slots_[r].view.state = WorkerState::kStarting;
    slots_[r].view.last_seen_ms = Now();
  }
}

Status Coordinator::Recover() {
  LATTICE_ASSIGN_OR_RETURN(auto sweeps, store_->ListSweeps());
  LATTICE_ASSIGN_OR_RETURN(auto counts, store_->ListSweepCounts());
  std::map<SweepId, SweepCounts> stored_counts;
  for (auto& c : counts) stored_counts.emplace(c.sweep, std::move(c));
  Pending p;
  int requeued = 0;
  for (auto& sweep : sweeps) {
    if (sweep.state == SweepState::kCompleted && sweep.spec.contains("output")) {
      datasets_to_verify_.push_back(sweep.id);  // a no-op unless stopped before verifying
    }
    if (sweep.state != SweepState::kRunning) {
      // A data directory from before counts were stored: each finished sweep is counted
      // once, a few per loop iteration (CountOldSweeps), so the start does not wait.
      if (stored_counts.count(sweep.id) == 0) uncounted_.emplace_back(sweep.id, sweep.maximize);
      continue;
    }
    ActiveSweep& active = sweeps_[sweep.id];
    active.record = sweep;
    LATTICE_ASSIGN_OR_RETURN(auto trials, store_->ListTrials(sweep.id));
    // A running sweep's trials are read anyway: its counts are checked against them.
    CountTrials(active, trials);
    p.counts_changed.insert(sweep.id);
    auto stored = stored_counts.find(sweep.id);
    if (stored != stored_counts.end() && stored->second != active.counts) {
      std::fprintf(stderr, "coordinator: sweep %s: stored counts %s disagree with its trials: %s\n",
                   sweep.id.ToString().c_str(), stored->second.ToJson().dump().c_str(),
                   active.counts.ToJson().dump().c_str());
    }
    size_t queued_in_memory = 0;
    for (auto& t : trials) {
      if (IsTerminal(t.state)) continue;
      TrialId id = t.id;
      if (t.state == TrialState::kQueued) {  // the first ones in memory, the others read later
        queue_.insert(id);
        if (queued_in_memory++ < QueuedBatch()) trials_[id] = std::move(t);
      } else {  // Transition moves it from running to queued
        trials_[id] = std::move(t);
        LATTICE_RETURN_IF_ERROR(
            Transition(trials_[id], TrialEvent::kRecover, WorkerRank{}, "coordinator restarted", p));
        ++requeued;
        // Chunks of a checkpoint whose transfer the restart cut short have no manifest.
        LATTICE_ASSIGN_OR_RETURN(int64_t orphans,
                                 CheckpointStore(store_).DeleteOrphanChunks(p.batch, id));
        if (orphans > 0) {
          std::fprintf(stderr, "coordinator: trial %s: deleted %lld chunk(s) of an unfinished checkpoint\n",
                       id.ToString().c_str(), static_cast<long long>(orphans));
        }
      }
    }
    const bool finished = active.counts.unfinished() == 0;
    const bool dataset = sweep.spec.contains("output");
    if (IsIndexSweep(active.record)) {
      // Variants whose shards were all embedded before the crash but whose build had not
      // ended are built again; the sweep ends here if nothing is left to run or build.
      CountVariants(active, trials);
      StartDueIndexBuilds(active, p);
      MaybeEndIndexSweep(active, p);
    } else if (finished) {  // every trial finished before the crash
      active.record.state = SweepState::kCompleted;
      active.record.finished_ms = Now();
      if (dataset) FinishDatasetSweep(active.record, p);
      p.batch.PutSweep(active.record);
      p.batch.PutSweepCounts(active.counts);
      sweeps_.erase(sweep.id);
    }
  }
  PutChangedCounts(p);
  p.batch.AppendEvent("coordinator_started",
                      {{"active_sweeps", sweeps_.size()}, {"requeued_trials", requeued},
                       {"workers", channel_->size() - 1}});
  LATTICE_RETURN_IF_ERROR(store_->Commit(p.batch));
  for (const auto& [view, variant] : p.index_builds) options_.index_builder->Start(view, variant);
  std::fprintf(stderr, "coordinator: recovered %zu running sweep(s), %zu queued trial(s), %d re-queued\n",
               sweeps_.size(), queue_.size(), requeued);
  if (!uncounted_.empty()) {
    std::fprintf(stderr, "coordinator: counting the trials of %zu finished sweep(s) stored "
                         "without counts, in the background\n", uncounted_.size());
  }
  UpdateGauges();
  return Status::Ok();
}

void Coordinator::Run() {
  for (;;) {
    bool stopping = stop_requested_.load() || (options_.stop != nullptr && options_.stop->load());
    if (stopping) break;
    if (StopSignals() >= 2) {  // stop at once; what still runs resumes from its checkpoint
      std::fprintf(stderr, "coordinator: second stop signal: stopping now\n");
      Pending p;
      PreemptRunningTrials("preempted: the cluster was stopped at once (second stop signal)", p);
      Flush(p);
      break;
    }
    bool did_work = RunOnce();
    if (Drained()) break;
    idle_sleep_ = did_work ? std::chrono::microseconds(20)
                           : std::min(idle_sleep_ * 2, std::chrono::microseconds(1000));
    clock_->SleepFor(idle_sleep_);
  }
  Stop();
}

bool Coordinator::RunOnce() {
  space_checked_ = false;  // SpaceCheck() reads the disk again in this iteration
  if (held_) return RetryHeldCommit();
  Pending p;
  bool did_work = VerifyDatasets(p);  // before this iteration can queue more
  did_work |= StartDrainIfRequested(p);
  did_work |= PollWorkers(p);
  did_work |= RunCommands(p);
  did_work |= CheckLiveness(p);
  did_work |= CollectIndexBuilds(p);
  did_work |= drain_ ? ContinueDrain(p) : PlaceTrials(p);
  did_work |= CountOldSweeps(p);
  PutChangedCounts(p);
  Flush(p);
  if (p.release_memory) {
    // A finished sweep's trials, or the records of a large submit beyond those kept in
    // memory, and the batch are freed by now; but glibc keeps such memory in its arenas (the
    // HTTP thread's that parsed the spec too): give the free pages back, so that the RSS
    // follows the sweeps running, not all that ever ran.
    malloc_trim(0);
  }
  if (did_work) UpdateGauges();
  if (metrics_ != nullptr && Now() - rss_sampled_ms_ >= 1000) {
    rss_sampled_ms_ = Now();
    metrics_->coordinator_rss_bytes.Set(static_cast<double>(ResidentBytes()));
  }
  return did_work;
}

void Coordinator::Stop() {
  // Shutdown: workers stop; trials still running stay "running" in the store and are
  // queued again by the next Recover().
  for (int r = 1; r < channel_->size(); ++r) (void)channel_->Send(WorkerRank{r}, ShutdownMsg{});
  stop_requested_ = true;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& cmd : commands_) {
    cmd->done.set_value(Status::Unavailable("coordinator is shutting down"));
  }
  commands_.clear();
  DropHeldCommit();
}

Status Coordinator::CommitPending(Pending& p) {
  if (p.batch.empty()) return Status::Ok();
  auto start = std::chrono::steady_clock::now();
  // Progress alone is committed without fsync: it acknowledges nothing, a crash loses
  // at most the epochs since the last synced commit, and the re-run attempt writes them
  // again. Every state change (assignment, result, submit, cancel) is synced.
  bool progress_only = p.batch.count() == p.progress_ops;
  Status s = store_->Commit(p.batch, /*sync=*/!progress_only);
  if (metrics_ != nullptr) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    metrics_->commit_seconds.Observe(seconds);
    if (s.ok() && p.checkpoint_bytes > 0) {
      metrics_->checkpoint_write_seconds.Observe(seconds);
      metrics_->checkpoint_bytes.Increment(static_cast<double>(p.checkpoint_bytes));
    }
  }
  return s;
}

void Coordinator::Flush(Pending& p) {
  Status s = CommitPending(p);
  if (!s.ok() && s.code() != StatusCode::kInsufficientStorage && s.code() != StatusCode::kIoError &&
      s.code() != StatusCode::kUnavailable) {
    // A batch the store refuses as such (a broken invariant) would fail every retry:
    // stop the cluster rather than run trials whose assignment could be forgotten.
    std::fprintf(stderr, "coordinator: FATAL: state store commit failed: %s\n",
                 s.ToString().c_str());
    for (auto& [cmd, result] : p.replies) cmd->done.set_value(s);
    stop_requested_ = true;
    return;
  }
  if (!s.ok()) {  // disk full, I/O error: nothing of it is acted on until it is written
    Hold(std::move(p), s);
    return;
  }
  Act(p);
}

void Coordinator::Act(Pending& p) {
  for (auto& [rank, msg] : p.sends) {
    Status s = channel_->Send(rank, msg);
    if (!s.ok()) std::fprintf(stderr, "coordinator: %s\n", s.ToString().c_str());
  }
  for (auto& [cmd, result] : p.replies) cmd->done.set_value(std::move(result));
  for (const auto& [view, variant] : p.index_builds) options_.index_builder->Start(view, variant);
  if (options_.index_builder != nullptr) {  // else RocksDB reclaims them in its own time
    for (SweepId sweep : p.reclaim_blocks) options_.index_builder->ReclaimBlocks(sweep);
  }
}

// ---- Commands from other threads --------------------------------------------------

std::future<StatusOr<SweepRecord>> Coordinator::Enqueue(std::shared_ptr<Command> cmd) {
  auto future = cmd->done.get_future();
  std::lock_guard<std::mutex> lock(mu_);
  if (stop_requested_) {
    cmd->done.set_value(Status::Unavailable("coordinator is shutting down"));
  } else {
    commands_.push_back(std::move(cmd));
  }
  return future;
}

std::future<StatusOr<SweepRecord>> Coordinator::SubmitAsync(scheduler::SweepSpec spec) {
  auto cmd = std::make_shared<Command>();
  cmd->submit = std::move(spec);
  return Enqueue(std::move(cmd));
}

std::future<StatusOr<SweepRecord>> Coordinator::CancelAsync(SweepId id) {
  auto cmd = std::make_shared<Command>();
  cmd->cancel = id;
  return Enqueue(std::move(cmd));
}

StatusOr<SweepRecord> Coordinator::Submit(scheduler::SweepSpec spec) {
  return SubmitAsync(std::move(spec)).get();
}

StatusOr<SweepRecord> Coordinator::Cancel(SweepId id) { return CancelAsync(id).get(); }

std::future<StatusOr<SweepRecord>> Coordinator::ResumeAsync(ResumeRequest request) {
  auto cmd = std::make_shared<Command>();
  cmd->resume = std::move(request);
  return Enqueue(std::move(cmd));
}

StatusOr<SweepRecord> Coordinator::Resume(ResumeRequest request) {
  return ResumeAsync(std::move(request)).get();
}

std::vector<WorkerView> Coordinator::Workers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return worker_views_;
}

void Coordinator::RequestStop() { stop_requested_ = true; }

bool Coordinator::RunCommands(Pending& p) {
  std::deque<std::shared_ptr<Command>> cmds;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cmds.swap(commands_);
  }
  // Below the space reserve every command is refused before anything is applied.
  Status space = cmds.empty() ? Status::Ok() : SpaceCheck();
  for (auto& cmd : cmds) {
    if (!space.ok()) {
      cmd->done.set_value(space);
      continue;
    }
    StatusOr<SweepRecord> result = cmd->submit   ? DoSubmit(*cmd->submit, p)
                                   : cmd->resume ? DoResume(*cmd->resume, p)
                                                 : DoCancel(*cmd->cancel, p);
    p.replies.emplace_back(cmd, std::move(result));
  }
  return !cmds.empty();
}

// Each variant's encoder that is a trial's checkpoint, resolved to one trial id (as the
// spec's encoder is in DoSubmit) in the variant and in its shards' configs.
Status Coordinator::ResolveVariantEncoders(scheduler::SweepSpec& spec) {
  nlohmann::json& variants = spec.spec["variants"];
  for (size_t v = 0; v < variants.size(); ++v) {
    nlohmann::json& embedding = variants[v]["embedding"];
    if (!embedding.contains("encoder") || !embedding["encoder"].is_object() ||
        embedding["encoder"].value("type", "") != "trial") {
      continue;
    }
    auto encoder = ResolveTrialEncoder(*store_, embedding["encoder"], "encoder");
    if (!encoder.ok()) return encoder.status().WithContext("search: variant " + std::to_string(v));
    embedding["encoder"]["trial"] = encoder->trial.ToString();
  }
  for (size_t i = 0; i < spec.trial_configs.size(); ++i) {
    const size_t v = static_cast<size_t>(spec.points[i].value("variant", 0));
    const nlohmann::json& encoder = variants.at(v)["embedding"].value("encoder", nlohmann::json());
    if (encoder.is_object() && encoder.contains("trial")) {
      spec.trial_configs[i]["encoder"]["trial"] = encoder["trial"];
    }
  }
  return Status::Ok();
}

StatusOr<SweepRecord> Coordinator::DoSubmit(scheduler::SweepSpec& spec, Pending& p) {
  const size_t workers = slots_.size() - 1;
  if (static_cast<size_t>(spec.workers_per_trial) > workers) {
    return Status::InvalidArgument(
        "resources.workers_per_trial: " + std::to_string(spec.workers_per_trial) +
        " workers per trial, but the cluster has " + std::to_string(workers) + " worker" +
        (workers == 1 ? "" : "s"));
  }
  // A trial's checkpoint as an embed encoder or a distill teacher: checked against the store
  // now; a sweep id ("s3") or name becomes its best trial's id in every trial's config.
  const char* source = spec.kind == JobKind::kEmbed     ? "encoder"
                       : spec.kind == JobKind::kDistill ? "teacher"
                                                        : nullptr;
  if (spec.kind == JobKind::kEmbed && spec.spec.contains("variants")) {
    LATTICE_RETURN_IF_ERROR(ResolveVariantEncoders(spec));
  } else if (source != nullptr && spec.spec.contains(source) &&
             spec.spec[source].value("type", "") == "trial") {
    nlohmann::json reference = spec.spec[source];
    if (spec.kind == JobKind::kDistill) reference["layer"] = -1;  // the teacher's logits
    LATTICE_ASSIGN_OR_RETURN(TrialEncoder encoder, ResolveTrialEncoder(*store_, reference, source));
    const std::string trial = encoder.trial.ToString();
    spec.spec[source]["trial"] = trial;
    for (nlohmann::json& config : spec.trial_configs) config[source]["trial"] = trial;
  }
  LATTICE_RETURN_IF_ERROR(ResolveActivationDatasets(spec));
  LATTICE_ASSIGN_OR_RETURN(SweepId id, store_->AllocateSweepId());
  SweepRecord sweep;
  sweep.id = id;
  sweep.name = spec.name;
  sweep.kind = spec.kind;
  sweep.spec = spec.spec;
  sweep.metric = spec.metric;
  sweep.maximize = spec.maximize;
  sweep.num_trials = static_cast<uint32_t>(spec.points.size());
  sweep.max_concurrent = spec.max_concurrent;
  sweep.max_attempts = spec.max_attempts;
  sweep.created_ms = Now();
  p.batch.PutSweep(sweep);
  RecordDatasetSweep(sweep, p);
  ActiveSweep& active = sweeps_[id];
  active.record = sweep;
  active.counts.sweep = id;
  for (uint32_t i = 0; i < sweep.num_trials; ++i) {
    TrialRecord t;
    t.id = TrialId{id, i};
    t.params = std::move(spec.points[i]);
    t.config = std::move(spec.trial_configs[i]);
    p.batch.PutTrial(t);
    active.counts.Move(std::nullopt, t.state);
    queue_.insert(t.id);
    if (i < QueuedBatch()) trials_[t.id] = std::move(t);  // the others are read when due
  }
  p.counts_changed.insert(id);
  if (sweep.num_trials > QueuedBatch()) p.release_memory = true;  // the others were dropped
  p.batch.AppendEvent("sweep_submitted",
                      {{"sweep", id.ToString()}, {"name", sweep.name}, {"trials", sweep.num_trials}});
  return sweep;
}

StatusOr<SweepRecord> Coordinator::DoCancel(SweepId id, Pending& p) {
  auto it = sweeps_.find(id);
  if (it == sweeps_.end()) {
    LATTICE_ASSIGN_OR_RETURN(SweepRecord stored, store_->GetSweep(id));
    return Status::FailedPrecondition("sweep " + id.ToString() + " is already " +
                                      SweepStateName(stored.state));
  }
  LATTICE_RETURN_IF_ERROR(LoadQueued(TrialId{id, 0}, /*limit=*/0));  // every queued one
  it->second.record.state = SweepState::kCancelled;
  it->second.record.message = "cancelled by user";
  SweepRecord result = it->second.record;
  std::vector<TrialId> live;
  for (auto t = trials_.lower_bound(TrialId{id, 0});
       t != trials_.end() && t->first.sweep == id; ++t) {
    live.push_back(t->first);
  }
  for (const TrialId& tid : live) {
    TrialRecord& t = trials_.at(tid);
    if (t.state == TrialState::kRunning) p.sends.emplace_back(t.worker, CancelMsg{tid});
    LATTICE_RETURN_IF_ERROR(Transition(t, TrialEvent::kCancel, WorkerRank{}, "sweep cancelled", p));
  }
  if (sweeps_.count(id)) p.batch.PutSweep(sweeps_.at(id).record);
  result.finished_ms = Now();
  return result;
}

StatusOr<SweepRecord> Coordinator::DoResume(const ResumeRequest& request, Pending& p) {
  const TrialId id = request.trial;
  const std::string name = id.ToString();
  if (trials_.count(id) || queue_.count(id)) {
    return Status::FailedPrecondition(
        "trial " + name + " is " +
        TrialStateName(trials_.count(id) ? trials_.at(id).state : TrialState::kQueued) +
        ": only a finished trial can be resumed");
  }
  LATTICE_ASSIGN_OR_RETURN(TrialRecord trial, store_->GetTrial(id));
  LATTICE_ASSIGN_OR_RETURN(std::vector<CheckpointInfo> stored, CheckpointStore(store_).ListSteps(id));
  std::vector<int64_t> steps;
  for (const auto& info : stored) steps.push_back(info.step);
  if (steps.empty()) {
    return Status::FailedPrecondition("trial " + name + " has no step checkpoint to resume from "
                                      "(its spec needs checkpoint: {every_steps: N})");
  }
  const int64_t step = request.from_step.value_or(steps.back());
  if (std::find(steps.begin(), steps.end(), step) == steps.end()) {
    std::string stored;
    for (int64_t s : steps) stored += (stored.empty() ? "" : ", ") + std::to_string(s);
    return Status::FailedPrecondition("trial " + name + ": no checkpoint at step " +
                                      std::to_string(step) + " (pruned or never written); " +
                                      "stored steps: " + stored);
  }
  if (request.epochs) {
    if (*request.epochs < 1) return Status::InvalidArgument("epochs: must be >= 1");
    if (!trial.config.contains("train")) {
      return Status::InvalidArgument("epochs: trial " + name + " is no train or distill trial");
    }
    trial.config["train"]["epochs"] = *request.epochs;
  }
  // The sweep runs again until this trial ends (counted from the stored trials).
  auto active = sweeps_.find(id.sweep);
  if (active == sweeps_.end()) {
    LATTICE_ASSIGN_OR_RETURN(SweepRecord sweep, store_->GetSweep(id.sweep));
    LATTICE_ASSIGN_OR_RETURN(std::vector<TrialRecord> all, store_->ListTrials(id.sweep));
    ActiveSweep& a = sweeps_[id.sweep];
    sweep.state = SweepState::kRunning;
    sweep.message = "trial " + name + " resumed";
    sweep.finished_ms = 0;
    a.record = sweep;
    CountTrials(a, all);
    active = sweeps_.find(id.sweep);
    p.batch.PutSweep(sweep);
  }
  trials_[id] = std::move(trial);
  LATTICE_RETURN_IF_ERROR(Transition(trials_[id], TrialEvent::kResume, WorkerRank{},
                                     "resumed from step " + std::to_string(step), p));
  resume_from_step_[id] = step;
  step_checkpoints_.erase(id);  // reloaded from the store at the next Assign
  p.batch.AppendEvent("trial_resume_requested", {{"trial", name}, {"step", step}});
  return active->second.record;
}

}  // namespace lattice
