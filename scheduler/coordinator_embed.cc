// Coordinator: embed sweeps — shard vectors and the index build that ends the sweep.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "scheduler/coordinator.h"
#include "jobs/checkpoint.h"
#include "jobs/train_config.h"
#include "store/checkpoint_store.h"
#include "store/vector_block_store.h"

namespace lattice {

void Coordinator::OnVectors(WorkerRank rank, VectorsMsg& m) {
  if (!IsCurrentAttempt(rank, m.trial, m.attempt)) return;  // stale
  auto key = std::make_pair(m.trial, m.attempt);
  vector_blocks_[key] = std::move(m);
}

void Coordinator::OnCheckpoint(WorkerRank rank, CheckpointMsg& m, Pending& p) {
  if (!IsCurrentAttempt(rank, m.trial, m.attempt)) return;  // stale
  if (m.step > 0) {
    StoreStepCheckpoint(trials_.at(m.trial), m, p);
    return;
  }
  checkpoint_blobs_[{m.trial, m.attempt}] = std::move(m.bytes);
}

void Coordinator::StoreCheckpoint(TrialRecord& t, int attempt, Pending& p) {
  auto it = checkpoint_blobs_.find({t.id, attempt});
  if (it == checkpoint_blobs_.end()) return;  // train.checkpoint: false
  t.checkpoint_bytes = static_cast<int64_t>(it->second.size());
  CheckpointStore::PutFinal(p.batch, t.id, std::move(it->second));
  checkpoint_blobs_.erase(it);
}

namespace {

// The trial's checkpoint policy (validated at submit; the defaults when it has none).
jobs::CheckpointPolicy PolicyOf(const nlohmann::json& config) {
  if (!config.contains("checkpoint")) return {};
  auto parsed = jobs::ParseCheckpointPolicy(config["checkpoint"]);
  return parsed.ok() ? *parsed : jobs::CheckpointPolicy{};
}

// The value of `metric` a checkpoint's header records; NaN when it has none (yet).
double MetricOf(const std::string& checkpoint, const std::string& metric) {
  auto header = jobs::ReadCheckpointHeader(checkpoint);
  return header.ok() ? header->metrics.value(metric, std::nan("")) : std::nan("");
}

}  // namespace

std::vector<Coordinator::StepCheckpoint>& Coordinator::StepCheckpoints(const TrialRecord& t) {
  auto it = step_checkpoints_.find(t.id);
  if (it != step_checkpoints_.end()) return it->second;
  std::vector<StepCheckpoint>& list = step_checkpoints_[t.id];
  auto steps = CheckpointStore(store_).ReadSteps(t.id);  // once per trial and process
  if (!steps.ok()) {
    std::fprintf(stderr, "coordinator: checkpoints of %s: %s\n", t.id.ToString().c_str(),
                 steps.status().ToString().c_str());
    return list;
  }
  const std::string metric = PolicyOf(t.config).metric;
  for (const auto& [step, bytes] : *steps) list.push_back({step, MetricOf(bytes, metric)});
  return list;
}

void Coordinator::StoreStepCheckpoint(const TrialRecord& t, CheckpointMsg& m, Pending& p) {
  const jobs::CheckpointPolicy policy = PolicyOf(t.config);
  const int64_t keep_last = policy.keep_last;
  const int64_t keep_best = policy.keep_best;
  const bool lower_is_better = policy.LowerIsBetter();
  std::vector<StepCheckpoint>& list = StepCheckpoints(t);
  list.push_back({m.step, MetricOf(m.bytes, policy.metric)});
  CheckpointStore::PutStep(p.batch, t.id, m.step, std::move(m.bytes));
  // Retention: the newest keep_last, plus the keep_best best that have a metric value.
  std::vector<size_t> by_metric;
  for (size_t i = 0; i < list.size(); ++i) {
    if (!std::isnan(list[i].metric)) by_metric.push_back(i);
  }
  std::stable_sort(by_metric.begin(), by_metric.end(), [&](size_t a, size_t b) {
    return lower_is_better ? list[a].metric < list[b].metric : list[a].metric > list[b].metric;
  });
  std::vector<bool> keep(list.size(), false);
  for (size_t i = list.size() - std::min<size_t>(list.size(), static_cast<size_t>(keep_last));
       i < list.size(); ++i) {
    keep[i] = true;
  }
  for (size_t i = 0; i < by_metric.size() && i < static_cast<size_t>(keep_best); ++i) {
    keep[by_metric[i]] = true;
  }
  std::vector<StepCheckpoint> kept;
  for (size_t i = 0; i < list.size(); ++i) {
    if (keep[i]) {
      kept.push_back(list[i]);
    } else {
      CheckpointStore::DeleteStep(p.batch, t.id, list[i].step);
    }
  }
  list = std::move(kept);
  p.batch.AppendEvent("checkpoint", {{"trial", t.id.ToString()}, {"step", m.step}});
}

void Coordinator::SendResumeIfAny(WorkerRank rank, const TrialRecord& t, Pending& p) {
  const std::vector<StepCheckpoint>& list = StepCheckpoints(t);
  if (list.empty()) return;
  int64_t step = list.back().step;
  if (auto chosen = resume_from_step_.find(t.id); chosen != resume_from_step_.end()) {
    step = chosen->second;  // `lattice resume --from-step`
    resume_from_step_.erase(chosen);
  }
  auto blob = CheckpointStore(store_).GetStep(t.id, step);
  if (!blob.ok()) {  // the attempt starts from scratch; nothing is lost but time
    std::fprintf(stderr, "coordinator: trial %s: step checkpoint %lld unreadable (%s): starting over\n",
                 t.id.ToString().c_str(), static_cast<long long>(step),
                 blob.status().ToString().c_str());
    return;
  }
  std::fprintf(stderr, "coordinator: trial %s attempt %d resumes from its checkpoint at step %lld\n",
               t.id.ToString().c_str(), t.attempts, static_cast<long long>(step));
  p.batch.AppendEvent("trial_resumed",
                      {{"trial", t.id.ToString()}, {"attempt", t.attempts}, {"step", step}});
  p.sends.emplace_back(rank, CheckpointMsg{t.id, t.attempts, std::move(blob).value(), step});
}

void Coordinator::SendCheckpointIfNeeded(WorkerRank rank, const TrialRecord& t, Pending& p) {
  const char* key = t.config.contains("teacher") ? "teacher" : "encoder";
  const nlohmann::json* encoder = t.config.contains(key) ? &t.config[key] : nullptr;
  if (encoder == nullptr || !encoder->is_object() || encoder->value("type", "") != "trial") return;
  auto source = TrialId::Parse(encoder->value("trial", ""));
  if (!source || slot(rank).checkpoints_sent.count(*source)) return;
  auto blob = CheckpointStore(store_).GetFinal(*source);
  if (!blob.ok()) {  // the worker fails the shard: "no checkpoint of trial ..."
    std::fprintf(stderr, "coordinator: checkpoint of %s for %s: %s\n",
                 source->ToString().c_str(), t.id.ToString().c_str(),
                 blob.status().ToString().c_str());
    return;
  }
  slot(rank).checkpoints_sent.insert(*source);
  p.sends.emplace_back(rank, CheckpointMsg{*source, 0, std::move(blob).value()});
}

Status Coordinator::StoreVectors(const TrialRecord& t, int attempt, Pending& p) {
  auto it = vector_blocks_.find({t.id, attempt});
  if (it == vector_blocks_.end()) {
    return Status::Internal("shard " + t.id.ToString() + " finished without sending its vectors");
  }
  VectorsMsg& m = it->second;
  int64_t begin = t.config.at("shard").at("begin").get<int64_t>();
  int64_t end = t.config.at("shard").at("end").get<int64_t>();
  Status s = Status::Ok();
  if (m.begin != begin || m.rows != end - begin) {
    s = Status::Internal("shard " + t.id.ToString() + ": got rows " + std::to_string(m.begin) +
                         "+" + std::to_string(m.rows) + ", expected " + std::to_string(begin) +
                         ".." + std::to_string(end));
  } else {
    VectorBlockStore::Put(p.batch, t.id.sweep,
                          VectorBlock{m.begin, m.rows, m.dim, std::move(m.data), std::move(m.metadata)});
  }
  vector_blocks_.erase(it);
  return s;
}

void Coordinator::StartIndexBuild(SweepRecord& sweep, Pending& p) {
  sweep.message = "building index " + sweep.spec["index"].value("name", sweep.name);
  p.batch.PutSweep(sweep);
  p.batch.AppendEvent("index_build_started", {{"sweep", sweep.id.ToString()}});
  std::fprintf(stderr, "coordinator: sweep %s (%s): all shards embedded; %s\n",
               sweep.id.ToString().c_str(), sweep.name.c_str(), sweep.message.c_str());
  p.index_builds.push_back(sweep);  // Flush starts it after the commit
}

bool Coordinator::CollectIndexBuilds(Pending& p) {
  if (options_.index_builder == nullptr) return false;
  auto outcomes = options_.index_builder->TakeFinished();
  for (auto& o : outcomes) {
    auto it = sweeps_.find(o.sweep);
    if (it == sweeps_.end()) continue;
    SweepRecord& sweep = it->second.record;
    std::string index = sweep.spec["index"].value("name", sweep.name);
    if (o.status.ok()) {
      sweep.state = SweepState::kCompleted;
      char msg[200];
      std::snprintf(msg, sizeof(msg), "index %s v%lld: %lld vectors, recall@10 %.4f",
                    index.c_str(), static_cast<long long>(o.version),
                    static_cast<long long>(o.meta.value("vectors", 0)),
                    o.meta.value("recall@10", 0.0));
      sweep.message = msg;
    } else {
      sweep.state = SweepState::kFailed;
      sweep.message = o.status.message();
    }
    sweep.finished_ms = Now();
    p.batch.PutSweep(sweep);
    // The sweep is over: the published index holds its vectors (a failed build cannot be
    // retried), so its blocks leave the state store in the same batch.
    VectorBlockStore::Delete(p.batch, sweep.id);
    p.reclaim_blocks.push_back(sweep.id);
    p.batch.AppendEvent(o.status.ok() ? "index_published" : "index_failed",
                        {{"sweep", sweep.id.ToString()}, {"index", index},
                         {"version", o.version}, {"meta", o.meta},
                         {"error", o.status.ok() ? "" : o.status.message()}});
    std::fprintf(stderr, "coordinator: sweep %s (%s) %s: %s\n", sweep.id.ToString().c_str(),
                 sweep.name.c_str(), SweepStateName(sweep.state), sweep.message.c_str());
    sweeps_.erase(it);
  }
  return !outcomes.empty();
}

}  // namespace lattice
