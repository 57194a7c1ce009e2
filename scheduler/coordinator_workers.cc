// Coordinator: worker messages, placement, liveness and trial transitions.
#include <cstdio>

#include "scheduler/coordinator.h"

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
    if (env.source <= 0 || env.source >= static_cast<int>(slots_.size())) continue;
    Slot& slot = slots_[env.source];
    slot.view.last_seen_ms = NowMillis();
    if (slot.view.state == "lost") {
      slot.view.state = slot.view.trial ? "busy" : "idle";
      p.batch.AppendEvent("worker_back", {{"rank", env.source}});
    }
    std::visit(
        [&](auto& m) {
          using T = std::decay_t<decltype(m)>;
          if constexpr (std::is_same_v<T, RegisterMsg>) OnRegister(env.source, m);
          if constexpr (std::is_same_v<T, ProgressMsg>) OnProgress(env.source, m, p);
          if constexpr (std::is_same_v<T, ResultMsg>) OnResult(env.source, m, p);
          if constexpr (std::is_same_v<T, HeartbeatMsg>) OnHeartbeat(env.source, m, p);
          if constexpr (std::is_same_v<T, VectorsMsg>) OnVectors(env.source, m);
          if constexpr (std::is_same_v<T, CheckpointMsg>) OnCheckpoint(env.source, m);
        },
        polled->value().message);
  }
  return handled > 0;
}

void Coordinator::OnRegister(int rank, const RegisterMsg& m) {
  Slot& slot = slots_[rank];
  slot.view.host = m.host;
  slot.view.threads = m.threads;
  slot.view.device = m.device;
  if (slot.view.state == "starting") slot.view.state = "idle";
}

void Coordinator::OnHeartbeat(int rank, const HeartbeatMsg& m, Pending& p) {
  Slot& slot = slots_[rank];
  slot.view.rss_bytes = m.rss_bytes;
  slot.view.vram_bytes = m.vram_bytes;
  // A worker running something we no longer want (e.g. after it was declared lost and
  // its trial re-queued elsewhere): tell it to stop.
  if (!m.trial) return;
  for (const auto& f : slot.inflight) {
    if (f.trial == *m.trial) return;
  }
  p.sends.emplace_back(rank, CancelMsg{*m.trial});
}

void Coordinator::OnProgress(int rank, const ProgressMsg& m, Pending& p) {
  auto it = trials_.find(m.trial);
  if (it == trials_.end() || it->second.state != TrialState::kRunning ||
      it->second.attempts != m.attempt || it->second.worker != rank) {
    return;  // stale report of an attempt we gave up on
  }
  it->second.epochs_done = m.epoch;
  p.batch.PutEpochMetrics(EpochMetrics{m.trial, m.attempt, m.epoch, m.metrics});
  p.batch.PutTrial(it->second);
  p.progress_ops += 2;
  metrics_->epochs_reported.Increment();
}

void Coordinator::OnResult(int rank, const ResultMsg& m, Pending& p) {
  if (ReleaseWorker(rank, m.trial, m.attempt) && m.code == ResultCode::kOk) {
    metrics_->trial_seconds.Observe(m.run_seconds);
    auto sweep = sweeps_.find(m.trial.sweep);
    if (sweep != sweeps_.end()) {
      ActiveSweep& s = sweep->second;
      s.mean_run_seconds = s.run_samples == 0 ? m.run_seconds
                                              : 0.8 * s.mean_run_seconds + 0.2 * m.run_seconds;
      ++s.run_samples;
    }
  }
  auto it = trials_.find(m.trial);
  if (it == trials_.end() || it->second.state != TrialState::kRunning ||
      it->second.attempts != m.attempt || it->second.worker != rank) {
    return;  // cancelled, or an attempt already given up on
  }
  TrialRecord& t = it->second;
  TrialEvent event = TrialEvent::kSucceed;
  switch (m.code) {
    case ResultCode::kOk: {
      if (t.config.value("kind", "") == "embed") {
        Status stored = StoreVectors(t, m.attempt, p);
        if (!stored.ok()) {
          event = TrialEvent::kFail;
          std::fprintf(stderr, "coordinator: %s\n", stored.ToString().c_str());
          break;
        }
      }
      if (t.config.value("kind", "") == "train") StoreCheckpoint(t, m.attempt, p);
      t.metrics = m.metrics;
      t.epochs_done = m.epochs_done;
      const std::string& metric = sweeps_.at(t.id.sweep).record.metric;
      auto value = m.metrics.find(metric);
      if (value != m.metrics.end()) t.objective = value->second;
      break;
    }
    case ResultCode::kRetryable: event = TrialEvent::kFail; break;
    case ResultCode::kPermanent: event = TrialEvent::kFailPermanent; break;
    case ResultCode::kCancelled: event = TrialEvent::kWorkerLost; break;  // worker stopped it
  }
  if (event != TrialEvent::kSucceed && event != TrialEvent::kWorkerLost) {
    std::fprintf(stderr, "coordinator: trial %s attempt %d failed on w%d: %s\n",
                 t.id.ToString().c_str(), m.attempt, rank, m.error.c_str());
  }
  if (m.code != ResultCode::kOk) {
    vector_blocks_.erase({m.trial, m.attempt});
    checkpoint_blobs_.erase({m.trial, m.attempt});
  }
  Status s = Transition(t, event, rank, m.error, p);
  if (!s.ok()) std::fprintf(stderr, "coordinator: %s\n", s.ToString().c_str());
}

bool Coordinator::ReleaseWorker(int rank, const TrialId& trial, int attempt) {
  Slot& slot = slots_[rank];
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
  } else {
    slot.view.trial = slot.inflight.front().trial;
  }
  if (slot.view.state == "busy" && slot.inflight.empty()) slot.view.state = "idle";
  return found;
}

size_t Coordinator::PipelineDepth(const ActiveSweep& sweep) const {
  constexpr int kMinSamples = 3;
  bool short_trials = sweep.run_samples >= kMinSamples &&
                      sweep.mean_run_seconds * 1000.0 < options_.pipeline_below_ms;
  return short_trials ? static_cast<size_t>(std::max(1, options_.max_pipeline)) : 1;
}

int Coordinator::PickWorker(size_t depth) const {
  int best = 0;
  for (size_t r = 1; r < slots_.size(); ++r) {
    const Slot& slot = slots_[r];
    if (slot.view.state != "idle" && slot.view.state != "busy") continue;  // starting, lost
    if (slot.inflight.size() >= depth) continue;
    if (best == 0 || slot.inflight.size() < slots_[best].inflight.size()) best = static_cast<int>(r);
  }
  return best;
}

bool Coordinator::PlaceTrials(Pending& p) {
  bool placed = false;
  auto it = queue_.begin();
  while (it != queue_.end() && PickWorker(static_cast<size_t>(options_.max_pipeline)) != 0) {
    TrialId id = *it;
    ActiveSweep& sweep = sweeps_.at(id.sweep);
    int rank = PickWorker(PipelineDepth(sweep));
    if (rank == 0 ||
        (sweep.record.max_concurrent > 0 && sweep.running >= sweep.record.max_concurrent)) {
      it = queue_.lower_bound(TrialId{SweepId{id.sweep.value + 1}, 0});  // next sweep
      continue;
    }
    ++it;  // Transition erases `id` from the queue
    TrialRecord& t = trials_.at(id);
    Status s = Transition(t, TrialEvent::kAssign, rank, "", p);
    if (!s.ok()) {
      std::fprintf(stderr, "coordinator: %s\n", s.ToString().c_str());
      continue;
    }
    Slot& slot = slots_[rank];
    slot.view.state = "busy";
    slot.inflight.push_back(Inflight{id, t.attempts});
    slot.view.trial = slot.inflight.front().trial;
    SendCheckpointIfNeeded(rank, t, p);
    p.sends.emplace_back(rank, AssignMsg{id, t.attempts, t.config});
    metrics_->trials_dispatched.Increment();
    placed = true;
  }
  return placed;
}

bool Coordinator::CheckLiveness(Pending& p) {
  int64_t now = NowMillis();
  bool changed = false;
  for (size_t r = 1; r < slots_.size(); ++r) {
    Slot& slot = slots_[r];
    if (slot.view.state == "lost" || now - slot.view.last_seen_ms <= options_.worker_timeout_ms) {
      continue;
    }
    std::fprintf(stderr, "coordinator: worker w%zu silent for %lld ms: declared lost\n", r,
                 static_cast<long long>(now - slot.view.last_seen_ms));
    p.batch.AppendEvent("worker_lost", {{"rank", r}});
    for (const Inflight& f : slot.inflight) {
      auto it = trials_.find(f.trial);
      if (it != trials_.end() && it->second.state == TrialState::kRunning &&
          it->second.attempts == f.attempt) {
        Status s = Transition(it->second, TrialEvent::kWorkerLost, static_cast<int>(r),
                              "worker w" + std::to_string(r) + " lost", p);
        if (!s.ok()) std::fprintf(stderr, "coordinator: %s\n", s.ToString().c_str());
      }
    }
    slot.inflight.clear();
    slot.view.trial.reset();
    slot.view.state = "lost";
    changed = true;
  }
  return changed;
}

Status Coordinator::Transition(TrialRecord& trial, TrialEvent event, int worker,
                               const std::string& error, Pending& p) {
  ActiveSweep& sweep = sweeps_.at(trial.id.sweep);
  TrialState before = trial.state;
  LATTICE_ASSIGN_OR_RETURN(
      trial, scheduler::ApplyTrialEvent(trial, event, sweep.record.max_attempts, worker,
                                        NowMillis(), error));
  if (before == TrialState::kQueued) queue_.erase(trial.id);
  if (before == TrialState::kRunning) --sweep.running;
  if (trial.state == TrialState::kQueued) queue_.insert(trial.id);
  if (trial.state == TrialState::kRunning) ++sweep.running;
  if (before == TrialState::kRunning && trial.state == TrialState::kQueued) {
    metrics_->trials_retried.Increment();
  }
  p.batch.PutTrial(trial);
  if (IsTerminal(trial.state)) {
    TrialRecord done = trial;  // `trial` lives in trials_, erased below
    trials_.erase(done.id);
    FinishTrial(done, p);
  }
  return Status::Ok();
}

void Coordinator::FinishTrial(const TrialRecord& trial, Pending& p) {
  switch (trial.state) {
    case TrialState::kCompleted: metrics_->trials_completed.Increment(); break;
    case TrialState::kFailed: metrics_->trials_failed.Increment(); break;
    default: metrics_->trials_cancelled.Increment(); break;
  }
  if (trial.state == TrialState::kFailed) {
    p.batch.AppendEvent("trial_failed", {{"trial", trial.id.ToString()}, {"error", trial.error}});
  }
  auto it = sweeps_.find(trial.id.sweep);
  if (it == sweeps_.end()) return;
  ActiveSweep& active = it->second;
  if (trial.state == TrialState::kCompleted) ++active.completed;
  if (--active.unfinished > 0) return;
  SweepRecord& sweep = active.record;
  if (sweep.state == SweepState::kRunning) {
    bool all_ok = active.completed == sweep.num_trials;
    if (sweep.kind == "embed" && all_ok && options_.index_builder != nullptr) {
      StartIndexBuild(sweep, p);
      return;  // the sweep ends when its index is built (CollectIndexBuilds)
    }
    // Completed unless every trial failed (an embed sweep needs every shard).
    sweep.state = active.completed > 0 ? SweepState::kCompleted : SweepState::kFailed;
    if (active.completed == 0) sweep.message = "every trial failed";
    if (sweep.kind == "embed" && !all_ok) {
      sweep.state = SweepState::kFailed;
      sweep.message = "a shard failed: no index was built";
    }
  }
  sweep.finished_ms = NowMillis();
  p.batch.PutSweep(sweep);
  p.batch.AppendEvent("sweep_finished", {{"sweep", sweep.id.ToString()},
                                         {"state", SweepStateName(sweep.state)}});
  std::fprintf(stderr, "coordinator: sweep %s (%s) %s\n", sweep.id.ToString().c_str(),
               sweep.name.c_str(), SweepStateName(sweep.state));
  sweeps_.erase(it);
}

void Coordinator::UpdateGauges() {
  int idle = 0, busy = 0, lost = 0;
  size_t running = 0;
  std::vector<WorkerView> views;
  for (size_t r = 1; r < slots_.size(); ++r) {
    const auto& v = slots_[r].view;
    running += slots_[r].inflight.size();
    idle += v.state == "idle";
    busy += v.state == "busy";
    lost += v.state == "lost";
    views.push_back(v);
  }
  int64_t max_rss = 0, max_vram = 0;
  for (const auto& v : views) {
    max_rss = std::max(max_rss, v.rss_bytes);
    max_vram = std::max(max_vram, v.vram_bytes);
  }
  metrics_->worker_vram_bytes_max.Set(static_cast<double>(max_vram));
  metrics_->workers_idle.Set(idle);
  metrics_->workers_busy.Set(busy);
  metrics_->workers_lost.Set(lost);
  metrics_->queue_depth.Set(static_cast<double>(queue_.size()));
  metrics_->trials_running.Set(static_cast<double>(running));
  metrics_->worker_rss_bytes_max.Set(static_cast<double>(max_rss));
  std::lock_guard<std::mutex> lock(mu_);
  worker_views_ = std::move(views);
}

}  // namespace lattice
