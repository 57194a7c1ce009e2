// Coordinator: worker messages, placement, liveness and trial transitions.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "scheduler/coordinator.h"
#include "store/vector_block_store.h"

namespace lattice {

using scheduler::TrialEvent;

namespace {
// Largest number of worker messages handled in one loop iteration (bounds the latency
// of the other steps under a flood of progress reports).
constexpr int kMaxMessagesPerIteration = 512;
}  // namespace

bool Coordinator::PollWorkers(Pending& p) {
  int handled = 0;
  while (handled < kMaxMessagesPerIteration) {
    auto polled = channel_->Poll();
    if (!polled) break;
    ++handled;
    if (!polled->ok()) {
      std::fprintf(stderr, "coordinator: dropped message: %s\n",
                   polled->status().ToString().c_str());
      continue;
    }
    Envelope& env = polled->value();
    if (env.source.value <= 0 || env.source.value >= static_cast<int>(slots_.size())) continue;
    Slot& s = slot(env.source);
    s.view.last_seen_ms = Now();
    if (s.view.state == WorkerState::kLost) {
      s.view.state = s.view.trial ? WorkerState::kBusy : WorkerState::kIdle;
      p.batch.AppendEvent("worker_back", {{"rank", env.source.value}});
    }
    std::visit(
        [&](auto& m) {
          using T = std::decay_t<decltype(m)>;
          if constexpr (std::is_same_v<T, RegisterMsg>) OnRegister(env.source, m);
          if constexpr (std::is_same_v<T, ProgressMsg>) OnProgress(env.source, m, p);
          if constexpr (std::is_same_v<T, ResultMsg>) OnResult(env.source, m, p);
          if constexpr (std::is_same_v<T, HeartbeatMsg>) OnHeartbeat(env.source, m, p);
          if constexpr (std::is_same_v<T, VectorsMsg>) OnVectors(env.source, m);
          if constexpr (std::is_same_v<T, CheckpointMsg>) OnCheckpoint(env.source, m, p);
        },
        polled->value().message);
  }
  return handled > 0;
}

void Coordinator::OnRegister(WorkerRank rank, const RegisterMsg& m) {
  Slot& s = slot(rank);
  s.view.host = m.host;
  s.view.threads = m.threads;
  s.view.device = m.device;
  s.view.pid = m.pid;
  s.view.vram_total_bytes = m.vram_total_bytes;
  s.registered = true;
  if (SchedulerMetrics::Worker* w = metrics_ != nullptr ? metrics_->worker(rank) : nullptr) {
    w->vram_total_bytes->Set(static_cast<double>(m.vram_total_bytes));
  }
  if (s.view.state == WorkerState::kStarting) s.view.state = WorkerState::kIdle;
}

void Coordinator::OnHeartbeat(WorkerRank rank, const HeartbeatMsg& m, Pending& p) {
  Slot& s = slot(rank);
  s.view.rss_bytes = m.rss_bytes;
  s.view.vram_bytes = m.vram_bytes;
  if (SchedulerMetrics::Worker* w = metrics_ != nullptr ? metrics_->worker(rank) : nullptr) {
    w->rss_bytes->Set(static_cast<double>(m.rss_bytes));
    w->vram_bytes->Set(static_cast<double>(m.vram_bytes));
  }
  if (m.task_restarts > s.view.task_restarts) {
    p.batch.AppendEvent("worker_task_process_restarted",
                        {{"rank", rank.value}, {"restarts", m.task_restarts}, {"fault", m.fault}});
  }
  s.view.task_restarts = m.task_restarts;
  s.view.fault = m.fault;
  // A worker running something we no longer want (e.g. after it was declared lost and
  // its trial re-queued elsewhere): tell it to stop.
  if (!m.trial) return;
  for (const auto& f : s.inflight) {
    if (f.trial == *m.trial) return;
  }
  p.sends.emplace_back(rank, CancelMsg{*m.trial});
}

bool Coordinator::IsCurrentAttempt(WorkerRank rank, const TrialId& trial, int attempt) const {
  auto it = trials_.find(trial);
  return it != trials_.end() && it->second.state == TrialState::kRunning &&
         it->second.attempts == attempt && it->second.worker == rank;
}

void Coordinator::OnProgress(WorkerRank rank, const ProgressMsg& m, Pending& p) {
  CountProcessed(rank, m.trial, m.processed);  // the work was done, even if stale
  if (!IsCurrentAttempt(rank, m.trial, m.attempt)) return;  // stale
  auto it = trials_.find(m.trial);
  it->second.epochs_done = m.epoch;
  p.batch.PutEpochMetrics(EpochMetrics{m.trial, m.attempt, m.epoch, m.metrics});
  p.batch.PutTrial(it->second);
  p.progress_ops += 2;
  if (metrics_ != nullptr) metrics_->epochs_reported.Increment();
}

void Coordinator::CountProcessed(WorkerRank rank, const TrialId& trial, int64_t rows) {
  if (metrics_ == nullptr || rows <= 0) return;
  SchedulerMetrics::Worker* w = metrics_->worker(rank);
  auto sweep = sweeps_.find(trial.sweep);
  if (w == nullptr || sweep == sweeps_.end()) return;  // a sweep that ended: not counted
  switch (sweep->second.record.kind) {
    case JobKind::kTrain: w->train_samples->Increment(static_cast<double>(rows)); break;
    case JobKind::kDistill: w->distill_samples->Increment(static_cast<double>(rows)); break;
    case JobKind::kEmbed: w->embed_items->Increment(static_cast<double>(rows)); break;
    case JobKind::kNoop: break;
  }
}

void Coordinator::OnResult(WorkerRank rank, const ResultMsg& m, Pending& p) {
  CountProcessed(rank, m.trial, m.processed);
  const bool held = Holds(rank, m.trial, m.attempt);
  if (ReleaseWorker(rank, m.trial, m.attempt) && m.code == StatusCode::kOk) {
    if (metrics_ != nullptr) metrics_->trial_seconds.Observe(m.run_seconds);
    auto sweep = sweeps_.find(m.trial.sweep);
    if (sweep != sweeps_.end()) {
      ActiveSweep& s = sweep->second;
      s.mean_run_seconds = s.run_samples == 0 ? m.run_seconds
                                              : 0.8 * s.mean_run_seconds + 0.2 * m.run_seconds;
      ++s.run_samples;
    }
  }
  // A worker that preempts a task while the coordinator is not draining got a stop signal
  // of its own: it takes no new task (it would preempt it at once).
  if (m.preempted && !drain_) slot(rank).draining = true;
  if (!IsCurrentAttempt(rank, m.trial, m.attempt)) {  // cancelled, given up on, or a member
    if (held) OnGangMemberResult(rank, m, p);
    return;
  }
  TrialRecord& t = trials_.at(m.trial);
  const SweepRecord& sweep = sweeps_.at(t.id.sweep).record;
  TrialEvent event = scheduler::EventForResult(m.code);
  if (m.preempted && m.code == StatusCode::kCancelled) {
    event = TrialEvent::kPreempt;  // queued again; the attempt is not spent
    std::fprintf(stderr, "coordinator: trial %s attempt %d preempted on %s: %s\n",
                 t.id.ToString().c_str(), m.attempt, rank.ToString().c_str(), m.error.c_str());
  }
  if (event == TrialEvent::kSucceed) {
    Status stored = sweep.kind == JobKind::kEmbed ? StoreVectors(t, m.attempt, p) : Status::Ok();
    if (stored.ok()) {
      if (sweep.kind == JobKind::kTrain || sweep.kind == JobKind::kDistill) {
        StoreCheckpoint(t, m.attempt, p);
      }
      t.metrics = m.metrics;
      t.epochs_done = m.epochs_done;
      auto value = m.metrics.find(sweep.metric);
      if (value != m.metrics.end()) t.objective = value->second;
      if (metrics_ != nullptr) {
        auto peak = m.metrics.find("peak_device_memory_bytes");
        if (peak != m.metrics.end()) metrics_->trial_peak_device_memory_bytes.Set(peak->second);
        auto rss = m.metrics.find("peak_rss_bytes");
        if (rss != m.metrics.end()) metrics_->trial_peak_rss_bytes.Set(rss->second);
      }
    } else {
      event = scheduler::EventForResult(stored.code());
      std::fprintf(stderr, "coordinator: %s\n", stored.ToString().c_str());
    }
  }
  if (event != TrialEvent::kSucceed && event != TrialEvent::kWorkerLost &&
      event != TrialEvent::kPreempt) {
    std::fprintf(stderr, "coordinator: trial %s attempt %d failed on %s: %s\n",
                 t.id.ToString().c_str(), m.attempt, rank.ToString().c_str(), m.error.c_str());
  }
  if (m.code != StatusCode::kOk) {
    vector_blocks_.erase({m.trial, m.attempt});
  }
  Status s = Transition(t, event, rank, m.error, p);
  if (!s.ok()) std::fprintf(stderr, "coordinator: %s\n", s.ToString().c_str());
}

void Coordinator::OnGangMemberResult(WorkerRank rank, const ResultMsg& m, Pending& p) {
  auto it = trials_.find(m.trial);
  if (it == trials_.end() || it->second.state != TrialState::kRunning ||
      it->second.attempts != m.attempt || WorkersPerTrial(sweeps_.at(m.trial.sweep).record) <= 1) {
    return;  // the attempt already ended (this member was cancelled), or not a gang
  }
  if (m.code == StatusCode::kOk) return;  // member 0 reports the trial's outcome
  TrialEvent event = scheduler::EventForResult(m.code);
  if (m.code == StatusCode::kCancelled) {
    // Draining: member 0 preempts too and reports, after its step checkpoint.
    if (!m.preempted || drain_) return;
    event = TrialEvent::kPreempt;  // a stop signal to this member only: the gang is broken
  }
  std::fprintf(stderr, "coordinator: trial %s attempt %d: gang member %s ended it: %s\n",
               m.trial.ToString().c_str(), m.attempt, rank.ToString().c_str(), m.error.c_str());
  Status s = Transition(it->second, event, rank, "gang member " + rank.ToString() + ": " + m.error, p);
  if (!s.ok()) std::fprintf(stderr, "coordinator: %s\n", s.ToString().c_str());
}

bool Coordinator::Holds(WorkerRank rank, const TrialId& trial, int attempt) const {
  if (rank.value <= 0 || rank.value >= static_cast<int>(slots_.size())) return false;
  for (const Inflight& f : slot(rank).inflight) {
    if (f.trial == trial && f.attempt == attempt) return true;
  }
  return false;
}

void Coordinator::CancelGangMembers(const TrialId& trial, int attempt, WorkerRank except,
                                    Pending& p) {
  for (size_t r = 1; r < slots_.size(); ++r) {
    const WorkerRank rank = slots_[r].view.rank;
    if (rank != except && slots_[r].view.state != WorkerState::kLost && Holds(rank, trial, attempt)) {
      p.sends.emplace_back(rank, CancelMsg{trial});
    }
  }
}

int Coordinator::WorkersPerTrial(const SweepRecord& sweep) {
  const nlohmann::json& spec = sweep.spec;
  if (!spec.is_object() || !spec.contains("resources")) return 1;
  const nlohmann::json& res = spec["resources"];
  if (!res.is_object() || !res.contains("workers_per_trial") ||
      !res["workers_per_trial"].is_number_integer()) {
    return 1;
  }
  return std::max(1, res["workers_per_trial"].get<int>());
}

std::vector<WorkerRank> Coordinator::PickGang(size_t k) const {
  std::vector<WorkerRank> gang;
  for (size_t r = 1; r < slots_.size() && gang.size() < k; ++r) {
    const Slot& s = slots_[r];
    if (s.view.state == WorkerState::kIdle && s.inflight.empty() && !s.draining) {
      gang.push_back(s.view.rank);
    }
  }
  return gang;
}

size_t Coordinator::LiveWorkers() const {
  size_t live = 0;
  for (size_t r = 1; r < slots_.size(); ++r) {
    const Slot& s = slots_[r];
    live += (s.view.state == WorkerState::kIdle || s.view.state == WorkerState::kBusy) && !s.draining;
  }
  return live;
}

bool Coordinator::ReleaseWorker(WorkerRank rank, const TrialId& trial, int attempt) {
  Slot& slot = this->slot(rank);
  bool found = false;
  for (auto it = slot.inflight.begin(); it != slot.inflight.end(); ++it) {
    if (it->trial == trial && it->attempt == attempt) {
      slot.inflight.erase(it);
      found = true;
      ++slot.view.trials_done;
      break;
    }
  }
  if (slot.inflight.empty()) {
    slot.view.trial.reset();
    slot.view.gang.clear();
  } else {
    slot.view.trial = slot.inflight.front().trial;
  }
  if (slot.view.state == WorkerState::kBusy && slot.inflight.empty()) {
    slot.view.state = WorkerState::kIdle;
  }
  return found;
}

size_t Coordinator::PipelineDepth(const ActiveSweep& sweep) const {
  constexpr int kMinSamples = 3;
  bool short_trials = sweep.run_samples >= kMinSamples &&
                      sweep.mean_run_seconds * 1000.0 < options_.pipeline_below_ms;
  return short_trials ? static_cast<size_t>(std::max(1, options_.max_pipeline)) : 1;
}

std::optional<WorkerRank> Coordinator::PickWorker(size_t depth) const {
  std::optional<WorkerRank> best;
  for (size_t r = 1; r < slots_.size(); ++r) {
    const Slot& s = slots_[r];
    bool usable = (s.view.state == WorkerState::kIdle || s.view.state == WorkerState::kBusy) &&
                  !s.draining;
    if (!usable || s.inflight.size() >= depth) continue;  // starting, lost, draining, or full
    if (!best || s.inflight.size() < slot(*best).inflight.size()) best = s.view.rank;
  }
  return best;
}

bool Coordinator::PlaceTrials(Pending& p) {
  bool reserved = false;  // a gang waits for workers: no one-worker trial starts
  bool placed = PlacePass(/*gangs=*/true, &reserved, p);
  if (!reserved) placed |= PlacePass(/*gangs=*/false, &reserved, p);
  return placed;
}

bool Coordinator::PlacePass(bool gangs, bool* reserved, Pending& p) {
  bool placed = false;
  auto it = queue_.begin();
  auto next_sweep = [&](const TrialId& id) {
    return queue_.lower_bound(TrialId{SweepId{id.sweep.value + 1}, 0});
  };
  while (it != queue_.end() && PickWorker(static_cast<size_t>(options_.max_pipeline))) {
    // Below the space reserve nothing new starts: what runs may still need it.
    if (!SpaceCheck().ok()) break;
    TrialId id = *it;
    ActiveSweep& sweep = sweeps_.at(id.sweep);
    const size_t k = static_cast<size_t>(WorkersPerTrial(sweep.record));
    if ((k > 1) != gangs) {
      it = next_sweep(id);
      continue;
    }
    if (sweep.record.max_concurrent > 0 &&
        sweep.counts.count(TrialState::kRunning) >=
            static_cast<uint32_t>(sweep.record.max_concurrent)) {
      it = next_sweep(id);
      continue;
    }
    std::vector<WorkerRank> members;
    if (k > 1) {
      members = PickGang(k);
      if (members.size() < k) {
        // The oldest waiting gang: nothing else takes a worker (top of coordinator.h),
        // unless it cannot form at all now.
        if (LiveWorkers() >= k) {
          *reserved = true;
          break;
        }
        it = next_sweep(id);
        continue;
      }
    } else if (std::optional<WorkerRank> rank = PickWorker(PipelineDepth(sweep))) {
      members.push_back(*rank);
    } else {
      it = next_sweep(id);
      continue;
    }
    auto record = trials_.find(id);
    if (record == trials_.end()) {  // only in the store: read it and the next ones
      Status loaded = LoadQueued(id, QueuedBatch());
      if (!loaded.ok()) std::fprintf(stderr, "coordinator: %s\n", loaded.ToString().c_str());
      record = trials_.find(id);
    }
    if (record == trials_.end()) {  // not stored yet (submitted in this iteration)
      it = next_sweep(id);
      continue;
    }
    ++it;  // Transition erases `id` from the queue
    TrialRecord& t = record->second;
    Status s = Transition(t, TrialEvent::kAssign, members.front(), "", p);
    if (!s.ok()) {
      std::fprintf(stderr, "coordinator: %s\n", s.ToString().c_str());
      continue;
    }
    AssignMsg assign{id, t.attempts, t.config, {}};
    if (k > 1) {
      for (WorkerRank r : members) assign.gang.push_back(r.value);
    }
    for (WorkerRank r : members) {
      Slot& slot = this->slot(r);
      slot.view.state = WorkerState::kBusy;
      slot.inflight.push_back(Inflight{id, t.attempts});
      slot.view.trial = slot.inflight.front().trial;
      if (k > 1) slot.view.gang = members;
      SendCheckpointIfNeeded(r, t, p);
      SendDatasetIfNeeded(r, t, p);
    }
    SendResumeIfAny(members, t, p);  // every member restores the same state
    for (WorkerRank r : members) p.sends.emplace_back(r, assign);
    if (metrics_ != nullptr) metrics_->trials_dispatched.Increment();
    placed = true;
  }
  return placed;
}

Status Coordinator::LoadQueued(const TrialId& first, size_t limit) {
  const SweepId sweep = first.sweep;
  auto queued = queue_.lower_bound(first);
  auto missing = [&] {  // a queued trial of the sweep, from `first` on, not in memory
    for (; queued != queue_.end() && queued->sweep == sweep; ++queued) {
      if (trials_.count(*queued) == 0) return true;
    }
    return false;
  };
  if (!missing()) return Status::Ok();
  LATTICE_ASSIGN_OR_RETURN(
      std::vector<TrialRecord> stored,
      store_->ListTrials(sweep, queued->index, limit > 0 ? limit : static_cast<size_t>(-1)));
  for (TrialRecord& t : stored) {
    // Only those still queued in memory too: this iteration may have changed others.
    if (t.state == TrialState::kQueued && queue_.count(t.id) && trials_.count(t.id) == 0) {
      TrialId id = t.id;
      trials_.emplace(id, std::move(t));
    }
  }
  return Status::Ok();
}

bool Coordinator::CheckLiveness(Pending& p) {
  int64_t now = Now();
  bool changed = false;
  for (size_t r = 1; r < slots_.size(); ++r) {
    Slot& slot = slots_[r];
    if (slot.view.state == WorkerState::kLost ||
        now - slot.view.last_seen_ms <= options_.worker_timeout_ms) {
      continue;
    }
    const WorkerRank rank = slot.view.rank;
    std::fprintf(stderr, "coordinator: worker %s silent for %lld ms: declared lost\n",
                 rank.ToString().c_str(), static_cast<long long>(now - slot.view.last_seen_ms));
    slot.view.lost_reason = "no message for " + std::to_string((now - slot.view.last_seen_ms) / 1000) +
                            " s (timeout " + std::to_string(options_.worker_timeout_ms / 1000) + " s)";
    p.batch.AppendEvent("worker_lost", {{"rank", rank.value}, {"reason", slot.view.lost_reason}});
    for (const Inflight& f : slot.inflight) {
      auto it = trials_.find(f.trial);
      if (it != trials_.end() && it->second.state == TrialState::kRunning &&
          it->second.attempts == f.attempt) {
        Status s = Transition(it->second, TrialEvent::kWorkerLost, rank,
                              "worker " + rank.ToString() + " lost", p);
        if (!s.ok()) std::fprintf(stderr, "coordinator: %s\n", s.ToString().c_str());
      }
    }
    slot.inflight.clear();
    slot.view.trial.reset();
    slot.view.gang.clear();
    slot.view.state = WorkerState::kLost;
    changed = true;
  }
  SendKeepAlives(p.sends);
  return changed;
}

void Coordinator::SendKeepAlives(std::vector<std::pair<WorkerRank, Message>>& sends) {
  const int64_t now = Now();
  if (options_.keepalive_ms <= 0 || now - keepalive_sent_ms_ < options_.keepalive_ms) return;
  keepalive_sent_ms_ = now;
  // Lost ones too: one that was only stopped (SIGSTOP, a stalled node) must not give up
  // on waking; to a dead rank the small message is simply never read.
  for (size_t r = 1; r < slots_.size(); ++r) {
    if (slots_[r].registered) sends.emplace_back(slots_[r].view.rank, HeartbeatMsg{});
  }
}

Status Coordinator::Transition(TrialRecord& trial, TrialEvent event, WorkerRank worker,
                               const std::string& error, Pending& p) {
  ActiveSweep& sweep = sweeps_.at(trial.id.sweep);
  TrialState before = trial.state;
  LATTICE_ASSIGN_OR_RETURN(
      trial, scheduler::ApplyTrialEvent(trial, event, sweep.record.max_attempts, worker,
                                        Now(), error));
  if (before == TrialState::kQueued) queue_.erase(trial.id);
  if (before == TrialState::kRunning) {
    AbandonCheckpointTransfers(trial.id, p);  // the attempt ended
    // A gang's other members stop too (on success they are finishing by themselves).
    if (event != TrialEvent::kSucceed && WorkersPerTrial(sweep.record) > 1) {
      CancelGangMembers(trial.id, trial.attempts, worker, p);
    }
  }
  if (trial.state == TrialState::kQueued) queue_.insert(trial.id);
  if (metrics_ != nullptr && before == TrialState::kRunning && trial.state == TrialState::kQueued) {
    metrics_->trials_retried.Increment();
  }
  p.batch.PutTrial(trial);
  CountTransition(sweep, trial, before, p);
  if (IsTerminal(trial.state)) {
    TrialRecord done = trial;  // `trial` lives in trials_, erased below
    trials_.erase(done.id);
    FinishTrial(done, p);
  }
  return Status::Ok();
}

void Coordinator::FinishTrial(const TrialRecord& trial, Pending& p) {
  step_checkpoints_.erase(trial.id);  // stored ones stay (retention already applied)
  if (metrics_ != nullptr) {
    switch (trial.state) {
      case TrialState::kCompleted: metrics_->trials_completed.Increment(); break;
      case TrialState::kFailed: metrics_->trials_failed.Increment(); break;
      default: metrics_->trials_cancelled.Increment(); break;
    }
  }
  if (trial.state == TrialState::kFailed) {
    p.batch.AppendEvent("trial_failed", {{"trial", trial.id.ToString()}, {"error", trial.error}});
  }
  auto it = sweeps_.find(trial.id.sweep);
  if (it == sweeps_.end()) return;
  ActiveSweep& active = it->second;
  if (IsIndexSweep(active.record)) {  // its indexes, one per variant (coordinator_index.cc)
    OnIndexShardFinished(active, trial, p);
    MaybeEndIndexSweep(active, p);
    return;
  }
  if (active.counts.unfinished() > 0) return;
  SweepRecord& sweep = active.record;
  const uint32_t completed = active.counts.count(TrialState::kCompleted);
  if (sweep.state == SweepState::kRunning) {
    bool all_ok = completed == sweep.num_trials;
    // Completed unless every trial failed (an embed sweep needs every shard).
    sweep.state = completed > 0 ? SweepState::kCompleted : SweepState::kFailed;
    if (completed == 0) sweep.message = "every trial failed";
    if (sweep.kind == JobKind::kEmbed && !all_ok) {
      sweep.state = SweepState::kFailed;
      sweep.message = "a shard failed: no index was built";
    }
  }
  // Failed or cancelled: no index will use its blocks (a ready dataset keeps them).
  if (sweep.kind == JobKind::kEmbed && !FinishDatasetSweep(sweep, p)) {
    VectorBlockStore::Delete(p.batch, sweep.id);
    p.reclaim_blocks.push_back(sweep.id);
  }
  sweep.finished_ms = Now();
  p.batch.PutSweep(sweep);
  p.batch.PutSweepCounts(active.counts);  // erased below: PutChangedCounts no longer sees it
  p.batch.AppendEvent("sweep_finished", {{"sweep", sweep.id.ToString()},
                                         {"state", SweepStateName(sweep.state)}});
  std::fprintf(stderr, "coordinator: sweep %s (%s) %s\n", sweep.id.ToString().c_str(),
               sweep.name.c_str(), SweepStateName(sweep.state));
  sweeps_.erase(it);
  p.release_memory = true;
}

void Coordinator::CountTrials(ActiveSweep& sweep, const std::vector<TrialRecord>& trials) {
  sweep.counts = SweepCounts::FromTrials(sweep.record.id, trials, sweep.record.maximize);
  sweep.objectives.clear();
  for (const TrialRecord& t : trials) {
    if (t.state == TrialState::kCompleted && t.objective && std::isfinite(*t.objective)) {
      sweep.objectives.emplace_back(t.id.index, *t.objective);
    }
  }
}

void Coordinator::CountTransition(ActiveSweep& sweep, const TrialRecord& trial, TrialState before,
                                  Pending& p) {
  SweepCounts& counts = sweep.counts;
  counts.Move(before, trial.state);
  p.counts_changed.insert(trial.id.sweep);
  const bool maximize = sweep.record.maximize;
  if (before == TrialState::kCompleted) {  // resumed: no longer among the completed
    auto& objectives = sweep.objectives;
    objectives.erase(std::remove_if(objectives.begin(), objectives.end(),
                                    [&](const auto& o) { return o.first == trial.id.index; }),
                     objectives.end());
    if (counts.best == trial.id) {  // the best among the others, by the same rule
      counts.best.reset();
      counts.best_params = nullptr;
      TrialRecord candidate;
      candidate.state = TrialState::kCompleted;
      for (const auto& [index, objective] : objectives) {
        candidate.id = TrialId{trial.id.sweep, index};
        candidate.objective = objective;
        counts.Consider(candidate, maximize);
      }
      if (counts.best) {  // params never change: the stored record has them
        auto stored = store_->GetTrial(*counts.best);
        if (stored.ok()) counts.best_params = stored->params;
      }
    }
  }
  if (trial.state == TrialState::kCompleted && trial.objective &&
      std::isfinite(*trial.objective)) {
    sweep.objectives.emplace_back(trial.id.index, *trial.objective);
    counts.Consider(trial, maximize);
  }
}

bool Coordinator::CountOldSweeps(Pending& p) {
  if (uncounted_.empty()) return false;
  // Whole sweeps, for about this long per iteration (placement and results go on between).
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(20);
  do {
    const auto [id, maximize] = uncounted_.front();
    uncounted_.pop_front();
    if (sweeps_.count(id)) continue;  // resumed meanwhile, and counted then
    auto trials = store_->ListTrials(id);
    if (!trials.ok()) {
      std::fprintf(stderr, "coordinator: counting sweep %s: %s\n", id.ToString().c_str(),
                   trials.status().ToString().c_str());
      continue;
    }
    p.batch.PutSweepCounts(SweepCounts::FromTrials(id, *trials, maximize));
  } while (!uncounted_.empty() && std::chrono::steady_clock::now() < until);
  if (uncounted_.empty()) std::fprintf(stderr, "coordinator: every stored sweep is counted\n");
  return true;
}

void Coordinator::PutChangedCounts(Pending& p) {
  for (SweepId id : p.counts_changed) {
    auto it = sweeps_.find(id);
    if (it != sweeps_.end()) p.batch.PutSweepCounts(it->second.counts);
  }
  p.counts_changed.clear();
}

void Coordinator::UpdateGauges() {
  int idle = 0, busy = 0, lost = 0, starting = 0;
  size_t running = 0;
  std::vector<WorkerView> views;
  for (size_t r = 1; r < slots_.size(); ++r) {
    const auto& v = slots_[r].view;
    running += slots_[r].inflight.size();
    idle += v.state == WorkerState::kIdle;
    busy += v.state == WorkerState::kBusy;
    lost += v.state == WorkerState::kLost;
    starting += v.state == WorkerState::kStarting;
    if (SchedulerMetrics::Worker* w = metrics_ != nullptr ? metrics_->worker(v.rank) : nullptr) {
      w->up->Set(v.state == WorkerState::kIdle || v.state == WorkerState::kBusy ? 1 : 0);
    }
    views.push_back(v);
  }
  if (metrics_ != nullptr) {
    int64_t max_rss = 0, max_vram = 0;
    for (const auto& v : views) {
      max_rss = std::max(max_rss, v.rss_bytes);
      max_vram = std::max(max_vram, v.vram_bytes);
    }
    metrics_->worker_vram_bytes_max.Set(static_cast<double>(max_vram));
    metrics_->workers_idle.Set(idle);
    metrics_->workers_busy.Set(busy);
    metrics_->workers_lost.Set(lost);
    metrics_->workers_starting.Set(starting);
    metrics_->queue_depth.Set(static_cast<double>(queue_.size()));
    metrics_->trials_running.Set(static_cast<double>(running));
    metrics_->sweeps_active.Set(static_cast<double>(sweeps_.size()));
    metrics_->worker_rss_bytes_max.Set(static_cast<double>(max_rss));
  }
  std::lock_guard<std::mutex> lock(mu_);
  worker_views_ = std::move(views);
}

}  // namespace lattice
