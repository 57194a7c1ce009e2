// Coordinator: the index builds of embed sweeps, one per embedding variant (the protocol is
// in coordinator.h above IsIndexSweep; variants: scheduler/embed_spec.h).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>

#include "scheduler/coordinator.h"
#include "scheduler/sweep_spec.h"
#include "store/vector_block_store.h"

namespace lattice {
namespace {

int VariantOf(const TrialRecord& t) {
  return t.params.is_object() ? t.params.value("variant", 0) : 0;
}

// The index a variant publishes.
std::string VariantIndex(const SweepRecord& sweep, int variant) {
  if (sweep.spec.contains("variants")) {
    return sweep.spec["variants"].at(static_cast<size_t>(variant)).value("index", "");
  }
  return sweep.spec["index"].value("name", sweep.name);
}

// "variant 1 (normalize=true)", for messages.
std::string VariantName(const SweepRecord& sweep, int variant) {
  const nlohmann::json& v = sweep.spec["variants"].at(static_cast<size_t>(variant));
  return "variant " + std::to_string(variant) + " (" +
         scheduler::DescribePoint(v.value("params", nlohmann::json::object()), {}) + ")";
}

// The spec's retrieval metric name ("ndcg@10"), or "" when it has none.
std::string RetrievalMetric(const SweepRecord& sweep) {
  if (!sweep.spec.contains("metric") || !sweep.spec["metric"].is_object()) return "";
  return sweep.spec["metric"].value("name", "");
}

// ", ndcg@10 0.8123"
std::string MetricText(const std::string& metric, std::optional<double> value) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), " %.4f", value.value_or(NAN));
  return ", " + metric + buf;
}

}  // namespace

bool Coordinator::IsIndexSweep(const SweepRecord& sweep) const {
  return sweep.kind == JobKind::kEmbed && options_.index_builder != nullptr &&
         !sweep.spec.contains("output");
}

int Coordinator::NumVariants(const SweepRecord& sweep) {
  if (!sweep.spec.contains("variants") || !sweep.spec["variants"].is_array()) return 1;
  return std::max<int>(1, static_cast<int>(sweep.spec["variants"].size()));
}

SweepRecord Coordinator::VariantView(const SweepRecord& sweep, int variant) {
  SweepRecord view = sweep;
  if (!sweep.spec.contains("variants")) return view;
  const nlohmann::json& v = sweep.spec["variants"].at(static_cast<size_t>(variant));
  view.spec["index"]["name"] = v.at("index");
  const nlohmann::json embedding = v.value("embedding", nlohmann::json::object());
  for (const auto& item : embedding.items()) view.spec[item.key()] = item.value();
  view.spec["variant"] = {{"variant", variant}, {"params", v.value("params", nlohmann::json())}};
  view.spec.erase("variants");
  return view;
}

void Coordinator::CountVariants(ActiveSweep& active, const std::vector<TrialRecord>& trials) {
  active.variants.assign(static_cast<size_t>(NumVariants(active.record)), ActiveSweep::Variant{});
  for (const TrialRecord& t : trials) {
    const int v = VariantOf(t);
    if (t.state != TrialState::kCompleted || v < 0 ||
        v >= static_cast<int>(active.variants.size())) {
      continue;
    }
    ActiveSweep::Variant& variant = active.variants[static_cast<size_t>(v)];
    ++variant.shards_done;
    if (t.metrics.contains("index_version")) {
      variant.ended = true;
      variant.index = t.metrics.value("index", "");
      variant.summary = t.metrics.value("index_summary", "");
      const std::string metric = RetrievalMetric(active.record);
      if (!metric.empty() && t.metrics.contains(metric) && t.metrics[metric].is_number()) {
        variant.value = t.metrics[metric].get<double>();
      }
    } else if (t.metrics.contains("index_error")) {
      variant.ended = true;
      variant.error = t.metrics.value("index_error", "index build failed");
    }
  }
}

void Coordinator::OnIndexShardFinished(ActiveSweep& active, const TrialRecord& trial, Pending& p) {
  if (active.variants.empty()) {
    active.variants.assign(static_cast<size_t>(NumVariants(active.record)), ActiveSweep::Variant{});
  }
  const int v = VariantOf(trial);
  if (trial.state != TrialState::kCompleted || v < 0 ||
      v >= static_cast<int>(active.variants.size())) {
    return;
  }
  ++active.variants[static_cast<size_t>(v)].shards_done;
  StartDueIndexBuilds(active, p);
}

void Coordinator::StartDueIndexBuilds(ActiveSweep& active, Pending& p) {
  if (active.record.state != SweepState::kRunning) return;
  const uint32_t shards = active.record.num_trials / static_cast<uint32_t>(active.variants.size());
  for (size_t v = 0; v < active.variants.size(); ++v) {
    const ActiveSweep::Variant& variant = active.variants[v];
    if (variant.shards_done == shards && !variant.building && !variant.ended) {
      StartIndexBuild(active, static_cast<int>(v), p);
    }
  }
}

void Coordinator::StartIndexBuild(ActiveSweep& active, int variant, Pending& p) {
  SweepRecord& sweep = active.record;
  active.variants.at(static_cast<size_t>(variant)).building = true;
  const std::string index = VariantIndex(sweep, variant);
  sweep.message = "building index " + index;
  p.batch.PutSweep(sweep);
  p.batch.AppendEvent("index_build_started",
                      {{"sweep", sweep.id.ToString()}, {"variant", variant}, {"index", index}});
  std::fprintf(stderr, "coordinator: sweep %s (%s): all shards of variant %d embedded; %s\n",
               sweep.id.ToString().c_str(), sweep.name.c_str(), variant, sweep.message.c_str());
  p.index_builds.emplace_back(VariantView(sweep, variant), variant);  // Act starts it
}

Status Coordinator::RecordVariantOutcome(ActiveSweep& active, int variant, Pending& p) {
  const ActiveSweep::Variant& v = active.variants.at(static_cast<size_t>(variant));
  const std::string metric = RetrievalMetric(active.record);
  // The variant's shards (trials [v * shards, (v + 1) * shards): variant-major) are
  // completed trials, not in memory: read them back.
  const uint32_t shards = active.record.num_trials / static_cast<uint32_t>(active.variants.size());
  LATTICE_ASSIGN_OR_RETURN(
      std::vector<TrialRecord> trials,
      store_->ListTrials(active.record.id, static_cast<uint32_t>(variant) * shards, shards));
  for (TrialRecord& t : trials) {
    if (t.state != TrialState::kCompleted || VariantOf(t) != variant) continue;
    if (!t.metrics.is_object()) t.metrics = nlohmann::json::object();
    t.metrics["index"] = VariantIndex(active.record, variant);
    if (!v.error.empty()) {
      t.metrics["index_error"] = v.error;
      p.batch.PutTrial(t);
      continue;
    }
    t.metrics["index_version"] = v.version;  // marks the build as ended
    t.metrics["index_summary"] = v.summary;
    if (v.value) {
      t.metrics[metric] = *v.value;
      const bool had = t.objective && std::isfinite(*t.objective);
      t.objective = *v.value;
      if (!had && std::isfinite(*v.value)) {
        active.objectives.emplace_back(t.id.index, *v.value);
        active.counts.Consider(t, active.record.maximize);
        p.counts_changed.insert(t.id.sweep);
      }
    }
    p.batch.PutTrial(t);
  }
  return Status::Ok();
}

bool Coordinator::MaybeEndIndexSweep(ActiveSweep& active, Pending& p) {
  if (active.counts.unfinished() > 0) return false;
  for (const ActiveSweep::Variant& v : active.variants) {
    if (v.building) return false;
  }
  SweepRecord& sweep = active.record;
  const std::string metric = RetrievalMetric(sweep);
  const bool swept = sweep.spec.contains("variants");
  if (active.variants.empty()) {
    active.variants.assign(static_cast<size_t>(NumVariants(sweep)), ActiveSweep::Variant{});
  }
  if (sweep.state == SweepState::kRunning) {
    std::string failure;
    int best = -1;
    int built = 0;
    for (size_t i = 0; i < active.variants.size() && failure.empty(); ++i) {
      const ActiveSweep::Variant& v = active.variants[i];
      const std::string index = VariantIndex(sweep, static_cast<int>(i));
      const std::string named = swept ? VariantName(sweep, static_cast<int>(i)) + ": " : "";
      if (!v.ended) {
        failure = swept ? named + "a shard failed: index " + index + " was not built"
                        : "a shard failed: no index was built";
      } else if (!v.error.empty()) {
        failure = named + v.error;
      } else {
        ++built;
        const auto& b = active.variants[static_cast<size_t>(std::max(best, 0))];
        if (best < 0 || (v.value && (!b.value || *v.value > *b.value))) best = static_cast<int>(i);
      }
    }
    if (!failure.empty()) {
      sweep.state = SweepState::kFailed;
      sweep.message = failure;
      if (swept && built > 0)
        sweep.message += " (" + std::to_string(built) + " index(es) published)";
    } else {
      sweep.state = SweepState::kCompleted;
      const ActiveSweep::Variant& b = active.variants[static_cast<size_t>(best)];
      if (!swept && metric.empty()) {
        sweep.message = b.summary;
      } else if (!swept) {
        sweep.message = b.summary + MetricText(metric, b.value);
      } else if (metric.empty()) {
        sweep.message = std::to_string(active.variants.size()) + " indexes published";
      } else {
        sweep.message = "best variant: index " + VariantIndex(sweep, best) +
                        MetricText(metric, b.value) + " (of " +
                        std::to_string(active.variants.size()) + " indexes)";
      }
    }
  }
  sweep.finished_ms = Now();
  p.batch.PutSweep(sweep);
  p.batch.PutSweepCounts(active.counts);  // erased below: PutChangedCounts no longer sees it
  // Every variant's index holds its vectors now (or the sweep failed): the blocks go.
  VectorBlockStore::Delete(p.batch, sweep.id);
  p.reclaim_blocks.push_back(sweep.id);
  p.batch.AppendEvent("sweep_finished", {{"sweep", sweep.id.ToString()},
                                         {"state", SweepStateName(sweep.state)},
                                         {"message", sweep.message}});
  std::fprintf(stderr, "coordinator: sweep %s (%s) %s: %s\n", sweep.id.ToString().c_str(),
               sweep.name.c_str(), SweepStateName(sweep.state), sweep.message.c_str());
  sweeps_.erase(sweep.id);
  p.release_memory = true;
  return true;
}

bool Coordinator::RestartHeldIndexBuilds(Pending& p) {
  bool restarted = false;
  // Builds held for lack of space start again once there is space.
  for (auto held = held_index_builds_.begin(); held != held_index_builds_.end();) {
    const auto [id, variant] = held->first;
    auto it = sweeps_.find(id);
    if (it == sweeps_.end()) {
      held = held_index_builds_.erase(held);
      continue;
    }
    ActiveSweep& active = it->second;
    if (active.record.state != SweepState::kRunning) {  // cancelled meanwhile
      held = held_index_builds_.erase(held);
      active.variants.at(static_cast<size_t>(variant)).building = false;
      MaybeEndIndexSweep(active, p);
      restarted = true;
      continue;
    }
    if (Now() < held->second || !SpaceCheck().ok()) {
      ++held;
      continue;
    }
    held = held_index_builds_.erase(held);
    StartIndexBuild(active, variant, p);
    restarted = true;
  }
  return restarted;
}

void Coordinator::OnIndexBuildOutcome(const IndexBuildOutcome& o, Pending& p) {
  auto it = sweeps_.find(o.sweep);
  if (it == sweeps_.end()) return;
  ActiveSweep& active = it->second;
  SweepRecord& sweep = active.record;
  if (o.variant < 0 || o.variant >= static_cast<int>(active.variants.size())) return;
  ActiveSweep::Variant& variant = active.variants[static_cast<size_t>(o.variant)];
  const std::string index = VariantIndex(sweep, o.variant);
  if (o.status.code() == StatusCode::kInsufficientStorage && sweep.state == SweepState::kRunning) {
    // Not the index's fault: the sweep stays running, its vector blocks stay, and the
    // build runs again once the data directory has space (tried every 5 s).
    sweep.message = "index build waiting for disk space: " + o.status.message();
    p.batch.PutSweep(sweep);
    p.batch.AppendEvent(
        "index_build_held",
        {{"sweep", sweep.id.ToString()}, {"index", index}, {"error", o.status.message()}});
    std::fprintf(stderr, "coordinator: sweep %s (%s): %s\n", sweep.id.ToString().c_str(),
                 sweep.name.c_str(), sweep.message.c_str());
    held_index_builds_[{sweep.id, o.variant}] = Now() + 5000;
    return;
  }
  const nlohmann::json& build_seconds = o.meta.is_object() && o.meta.contains("build_seconds")
                                            ? o.meta["build_seconds"]
                                            : nlohmann::json();
  if (metrics_ != nullptr && build_seconds.is_number()) {
    metrics_->index_build_seconds.Observe(build_seconds.get<double>());
  }
  variant.building = false;
  variant.ended = true;
  variant.index = index;
  if (o.status.ok()) {
    char msg[200];
    std::snprintf(msg, sizeof(msg), "index %s v%lld: %lld vectors, recall@10 %.4f", index.c_str(),
                  static_cast<long long>(o.version),
                  static_cast<long long>(o.meta.value("vectors", 0)),
                  o.meta.value("recall@10", 0.0));
    variant.summary = msg;
    variant.version = o.version;
    const nlohmann::json retrieval = o.meta.value("retrieval", nlohmann::json());
    if (retrieval.is_object() && retrieval.contains("value") && retrieval["value"].is_number()) {
      variant.value = retrieval["value"].get<double>();
    }
  } else {
    variant.error = o.status.message();
  }
  if (Status s = RecordVariantOutcome(active, o.variant, p); !s.ok()) {
    std::fprintf(stderr, "coordinator: sweep %s: recording the build of %s: %s\n",
                 sweep.id.ToString().c_str(), index.c_str(), s.ToString().c_str());
  }
  p.batch.AppendEvent(o.status.ok() ? "index_published" : "index_failed",
                      {{"sweep", sweep.id.ToString()},
                       {"variant", o.variant},
                       {"index", index},
                       {"version", o.version},
                       {"meta", o.meta},
                       {"error", o.status.ok() ? "" : o.status.message()}});
  std::fprintf(stderr, "coordinator: sweep %s (%s) variant %d: %s\n", sweep.id.ToString().c_str(),
               sweep.name.c_str(), o.variant,
               o.status.ok() ? variant.summary.c_str() : variant.error.c_str());
  if (sweep.state == SweepState::kRunning) {
    sweep.message = o.status.ok() ? variant.summary : variant.error;  // "index X: ..."
    p.batch.PutSweep(sweep);
  }
  MaybeEndIndexSweep(active, p);
}

bool Coordinator::CollectIndexBuilds(Pending& p) {
  if (options_.index_builder == nullptr) return false;
  const bool restarted = RestartHeldIndexBuilds(p);
  auto outcomes = options_.index_builder->TakeFinished();
  for (const IndexBuildOutcome& o : outcomes) OnIndexBuildOutcome(o, p);
  return restarted || !outcomes.empty();
}

}  // namespace lattice
