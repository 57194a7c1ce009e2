// Coordinator: embed sweeps — shard vectors (their index builds: coordinator_index.cc) and
// checkpoints.
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
  const auto key = std::make_tuple(m.trial, m.attempt, m.step);
  if (skipped_checkpoints_.count(key)) return;  // the rest of one skipped for lack of space
  auto it = checkpoint_writers_.find(key);
  // A step checkpoint is a resume point, not a result: below the space reserve it is
  // skipped (the attempt runs on) so that the reserve stays for results and final
  // checkpoints. A final checkpoint is part of the result and is always taken.
  if (m.step != CheckpointStore::kFinal) {
    if (Status space = SpaceCheck(); !space.ok()) {
      if (it != checkpoint_writers_.end()) {
        it->second.Abandon(p.batch);
        checkpoint_writers_.erase(it);
      }
      skipped_checkpoints_.insert(key);
      std::fprintf(stderr, "coordinator: trial %s attempt %d: step %lld checkpoint skipped: %s\n",
                   m.trial.ToString().c_str(), m.attempt, static_cast<long long>(m.step),
                   space.message().c_str());
      p.batch.AppendEvent("checkpoint_skipped", {{"trial", m.trial.ToString()},
                                                 {"step", m.step},
                                                 {"reason", space.message()}});
      return;
    }
  }
  if (it == checkpoint_writers_.end()) {
    it = checkpoint_writers_.emplace(key, CheckpointStore::Writer(m.trial, m.step, m.total)).first;
  }
  CheckpointStore::Writer& writer = it->second;
  // Each piece is stored as it arrives (one chunk): the coordinator never holds a whole
  // checkpoint.
  const int64_t piece_bytes = static_cast<int64_t>(m.bytes.size());
  if (Status added = writer.Add(p.batch, m.offset, std::move(m.bytes)); !added.ok()) {
    std::fprintf(stderr, "coordinator: %s: checkpoint dropped\n", added.ToString().c_str());
    writer.Abandon(p.batch);
    checkpoint_writers_.erase(it);
    return;
  }
  p.checkpoint_bytes += piece_bytes;
  // A final checkpoint becomes visible with the trial's completion (StoreCheckpoint).
  if (!writer.complete() || m.step == CheckpointStore::kFinal) return;
  StoreStepCheckpoint(trials_.at(m.trial), writer, p);
  checkpoint_writers_.erase(it);
}

void Coordinator::StoreCheckpoint(TrialRecord& t, int attempt, Pending& p) {
  auto it = checkpoint_writers_.find(std::make_tuple(t.id, attempt, CheckpointStore::kFinal));
  if (it == checkpoint_writers_.end()) return;  // train.checkpoint: false
  if (it->second.complete()) {
    t.checkpoint_bytes = it->second.total();
    it->second.Finish(p.batch);
  } else {  // cannot happen over an ordered channel: every piece precedes the Result
    std::fprintf(stderr, "coordinator: trial %s: final checkpoint incomplete at its result\n",
                 t.id.ToString().c_str());
    it->second.Abandon(p.batch);
  }
  checkpoint_writers_.erase(it);
}

void Coordinator::AbandonCheckpointTransfers(const TrialId& trial, Pending& p) {
  for (auto it = skipped_checkpoints_.begin(); it != skipped_checkpoints_.end();) {
    it = std::get<0>(*it) == trial ? skipped_checkpoints_.erase(it) : std::next(it);
  }
  for (auto it = checkpoint_writers_.begin(); it != checkpoint_writers_.end();) {
    if (std::get<0>(it->first) == trial) {
      it->second.Abandon(p.batch);
      it = checkpoint_writers_.erase(it);
    } else {
      ++it;
    }
  }
}

namespace {

// The trial's checkpoint policy (validated at submit; the defaults when it has none).
jobs::CheckpointPolicy PolicyOf(const nlohmann::json& config) {
  if (!config.contains("checkpoint")) return {};
  auto parsed = jobs::ParseCheckpointPolicy(config["checkpoint"]);
  return parsed.ok() ? *parsed : jobs::CheckpointPolicy{};
}

}  // namespace

// What retention and listings need of a step checkpoint, from its header line: the value of
// the policy's `metric` (NaN when it has none yet), its epoch and metrics.
Coordinator::StepCheckpoint Coordinator::DescribeStep(int64_t step, const std::string& header_line,
                                                      const std::string& metric) {
  StepCheckpoint c{step, std::nan(""), nlohmann::json::object()};
  auto header = jobs::ParseCheckpointHeaderLine(header_line);
  if (!header.ok()) return c;
  const nlohmann::json& value = header->metrics.contains(metric) ? header->metrics[metric]
                                                                 : nlohmann::json();
  if (value.is_number()) c.metric = value.get<double>();
  c.summary = {{"epochs", header->epochs}, {"metrics", header->metrics}};
  return c;
}

std::vector<Coordinator::StepCheckpoint>& Coordinator::StepCheckpoints(const TrialRecord& t) {
  auto it = step_checkpoints_.find(t.id);
  if (it != step_checkpoints_.end()) return it->second;
  std::vector<StepCheckpoint>& list = step_checkpoints_[t.id];
  auto steps = CheckpointStore(store_).ListSteps(t.id);  // once per trial and process
  if (!steps.ok()) {
    std::fprintf(stderr, "coordinator: checkpoints of %s: %s\n", t.id.ToString().c_str(),
                 steps.status().ToString().c_str());
    return list;
  }
  const std::string metric = PolicyOf(t.config).metric;
  for (const auto& info : *steps) list.push_back(DescribeStep(info.step, info.header, metric));
  return list;
}

void Coordinator::StoreStepCheckpoint(const TrialRecord& t, const CheckpointStore::Writer& writer,
                                      Pending& p) {
  const jobs::CheckpointPolicy policy = PolicyOf(t.config);
  const int64_t keep_last = policy.keep_last;
  const int64_t keep_best = policy.keep_best;
  const bool lower_is_better = policy.LowerIsBetter();
  std::vector<StepCheckpoint>& list = StepCheckpoints(t);
  // One written before at the same step (an earlier attempt's) is replaced.
  list.erase(std::remove_if(list.begin(), list.end(),
                            [&](const StepCheckpoint& c) { return c.step == writer.step(); }),
             list.end());
  list.push_back(DescribeStep(writer.step(), writer.header(), policy.metric));
  writer.Finish(p.batch);
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
      // Manifest and chunks at once, and a record of it for listings.
      CheckpointStore::Prune(p.batch, t.id, list[i].step, list[i].summary);
    }
  }
  list = std::move(kept);
  p.batch.AppendEvent("checkpoint", {{"trial", t.id.ToString()}, {"step", writer.step()}});
}

void Coordinator::SendResumeIfAny(const std::vector<WorkerRank>& ranks, const TrialRecord& t,
                                  Pending& p) {
  const std::vector<StepCheckpoint>& list = StepCheckpoints(t);
  if (list.empty()) return;
  int64_t step = list.back().step;
  if (auto chosen = resume_from_step_.find(t.id); chosen != resume_from_step_.end()) {
    step = chosen->second;  // `lattice resume --from-step`
    resume_from_step_.erase(chosen);
  }
  // The chosen checkpoint, or when it cannot be read (a chunk missing or corrupt) the one
  // before it, and so on: an unreadable checkpoint costs the steps since the previous one.
  for (auto c = list.rbegin(); c != list.rend(); ++c) {
    if (c->step > step) continue;
    auto blob = CheckpointStore(store_).Read(t.id, c->step);
    if (!blob.ok()) {
      std::fprintf(stderr, "coordinator: trial %s: %s; trying the checkpoint before it\n",
                   t.id.ToString().c_str(), blob.status().ToString().c_str());
      p.batch.AppendEvent("checkpoint_unreadable", {{"trial", t.id.ToString()},
                                                    {"step", c->step},
                                                    {"error", blob.status().message()}});
      continue;
    }
    std::fprintf(stderr, "coordinator: trial %s attempt %d resumes from its checkpoint at step %lld\n",
                 t.id.ToString().c_str(), t.attempts, static_cast<long long>(c->step));
    p.batch.AppendEvent("trial_resumed",
                        {{"trial", t.id.ToString()}, {"attempt", t.attempts}, {"step", c->step}});
    for (auto& piece : SplitCheckpoint(t.id, t.attempts, c->step, std::move(blob).value())) {
      for (WorkerRank rank : ranks) p.sends.emplace_back(rank, piece);  // every gang member
    }
    return;
  }
  // Nothing readable: the attempt starts from scratch; nothing is lost but time.
  std::fprintf(stderr, "coordinator: trial %s: no readable step checkpoint: starting over\n",
               t.id.ToString().c_str());
}

void Coordinator::SendCheckpointIfNeeded(WorkerRank rank, const TrialRecord& t, Pending& p) {
  const char* key = t.config.contains("teacher") ? "teacher" : "encoder";
  const nlohmann::json* encoder = t.config.contains(key) ? &t.config[key] : nullptr;
  if (encoder == nullptr || !encoder->is_object() || encoder->value("type", "") != "trial") return;
  auto source = TrialId::Parse(encoder->value("trial", ""));
  if (!source || slot(rank).checkpoints_sent.count(*source)) return;
  auto blob = CheckpointStore(store_).Read(*source, CheckpointStore::kFinal);
  if (!blob.ok()) {  // the worker fails the shard: "no checkpoint of trial ..."
    std::fprintf(stderr, "coordinator: checkpoint of %s for %s: %s\n",
                 source->ToString().c_str(), t.id.ToString().c_str(),
                 blob.status().ToString().c_str());
    return;
  }
  slot(rank).checkpoints_sent.insert(*source);
  for (auto& piece : SplitCheckpoint(*source, 0, CheckpointStore::kFinal, std::move(blob).value())) {
    p.sends.emplace_back(rank, std::move(piece));
  }
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
                          VectorBlock{m.begin, m.rows, m.dim, std::move(m.data), std::move(m.metadata)},
                          t.params.value("variant", 0));
  }
  vector_blocks_.erase(it);
  return s;
}

}  // namespace lattice
