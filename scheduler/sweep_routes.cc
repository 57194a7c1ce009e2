#include "scheduler/sweep_routes.h"

#include <cerrno>
#include <cstdlib>
#include <limits>

#include "index/routes.h"
#include "jobs/checkpoint.h"
#include "monitoring/metrics.h"
#include "scheduler/dataset_routes.h"
#include "scheduler/checkpoints.h"
#include "scheduler/report_page.h"
#include "scheduler/sweep_spec.h"
#include "store/checkpoint_store.h"

namespace lattice {
namespace {

using nlohmann::json;

// Resolves "s7", "7" or a sweep name (the most recent sweep of that name).
StatusOr<SweepRecord> FindSweep(StateStore* store, const std::string& text) {
  if (auto id = SweepId::Parse(text)) return store->GetSweep(*id);
  LATTICE_ASSIGN_OR_RETURN(auto sweeps, store->ListSweeps());
  for (auto it = sweeps.rbegin(); it != sweeps.rend(); ++it) {
    if (it->name == text) return *it;
  }
  return Status::NotFound("no sweep with id or name '" + text + "'");
}

// The sweep's stored counts; for a sweep stored without them (a data directory from before
// they existed, until Recover counts it) they are counted from its trials.
StatusOr<SweepCounts> CountsOf(StateStore* store, const SweepRecord& sweep) {
  auto counts = store->GetSweepCounts(sweep.id);
  if (counts.status().code() != StatusCode::kNotFound) return counts;
  LATTICE_ASSIGN_OR_RETURN(auto trials, store->ListTrials(sweep.id));
  return SweepCounts::FromTrials(sweep.id, trials, sweep.maximize);
}

HttpResponse SweepResponse(StateStore* store, const SweepRecord& sweep, int status = 200) {
  auto counts = CountsOf(store, sweep);
  if (!counts.ok()) return HttpResponse::FromStatus(counts.status());
  return HttpResponse::Json(status, SweepSummaryJson(sweep, *counts));
}

// Query parameter `name` as an integer in [lo, hi]; `fallback` when absent.
StatusOr<int64_t> IntQuery(const HttpRequest& req, const std::string& name, int64_t lo, int64_t hi,
                           int64_t fallback) {
  auto q = req.query.find(name);
  if (q == req.query.end()) return fallback;
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(q->second.c_str(), &end, 10);
  if (q->second.empty() || *end != '\0' || errno != 0 || v < lo || v > hi) {
    return Status::InvalidArgument(name + ": must be an integer in [" + std::to_string(lo) +
                                   ", " + std::to_string(hi) + "], got '" + q->second + "'");
  }
  return static_cast<int64_t>(v);
}

json WorkerJson(const WorkerView& w) {
  json gang = nullptr;  // the ranks running its trial together, member 0 first
  if (!w.gang.empty()) {
    gang = json::array();
    for (WorkerRank r : w.gang) gang.push_back(r.value);
  }
  return {{"rank", w.rank.value},
          {"host", w.host},
          {"state", WorkerStateName(w.state)},
          {"trial", w.trial ? json(w.trial->ToString()) : json(nullptr)},
          {"gang", gang},
          {"threads", w.threads},
          {"device", w.device},
          {"rss_bytes", w.rss_bytes},
          {"vram_bytes", w.vram_bytes},
          {"vram_total_bytes", w.vram_total_bytes},
          {"last_seen_ms", w.last_seen_ms},
          {"trials_done", w.trials_done},
          {"pid", w.pid},
          {"task_restarts", w.task_restarts},
          {"fault", w.fault.empty() ? json(nullptr) : json(w.fault)},
          {"lost_reason", w.lost_reason.empty() ? json(nullptr) : json(w.lost_reason)}};
}

void AddSweepRoutes(Router& r, Coordinator* coordinator, StateStore* store) {
  r.Add("POST", "/v1/sweeps", [coordinator, store](HttpRequest& req) {
    auto spec = scheduler::ParseSweepSpec(req.body);
    if (!spec.ok()) return HttpResponse::FromStatus(spec.status());
    auto sweep = coordinator->Submit(std::move(spec).value());
    if (!sweep.ok()) return HttpResponse::FromStatus(sweep.status());
    return SweepResponse(store, *sweep, 201);
  }, /*mutating=*/true);
  // Reads each sweep's stored counts, never its trials.
  r.Add("GET", "/v1/sweeps", [store](HttpRequest&) {
    auto sweeps = store->ListSweeps();
    if (!sweeps.ok()) return HttpResponse::FromStatus(sweeps.status());
    auto counts = store->ListSweepCounts();  // ascending sweep id, like `sweeps`
    if (!counts.ok()) return HttpResponse::FromStatus(counts.status());
    json out = json::array();
    auto c = counts->begin();
    for (const auto& s : *sweeps) {
      while (c != counts->end() && c->sweep < s.id) ++c;
      if (c != counts->end() && c->sweep == s.id) {
        out.push_back(SweepSummaryJson(s, *c));
        continue;
      }
      auto counted = CountsOf(store, s);
      if (!counted.ok()) return HttpResponse::FromStatus(counted.status());
      out.push_back(SweepSummaryJson(s, *counted));
    }
    return HttpResponse::Json(200, {{"sweeps", out}});
  });
  r.Add("GET", "/v1/sweeps/{id}", [store](HttpRequest& req) {
    auto sweep = FindSweep(store, req.path_params["id"]);
    if (!sweep.ok()) return HttpResponse::FromStatus(sweep.status());
    return SweepResponse(store, *sweep);
  });
  // One page of trials by index: ?after=I (the last index of the previous page) and
  // ?limit=N (default and most: kTrialsPageLimit); "next_after" is the `after` of the next
  // page, null on the last one.
  r.Add("GET", "/v1/sweeps/{id}/trials", [store](HttpRequest& req) {
    auto sweep = FindSweep(store, req.path_params["id"]);
    if (!sweep.ok()) return HttpResponse::FromStatus(sweep.status());
    auto limit = IntQuery(req, "limit", 1, kTrialsPageLimit, kTrialsPageLimit);
    if (!limit.ok()) return HttpResponse::FromStatus(limit.status());
    auto after = IntQuery(req, "after", -1, std::numeric_limits<uint32_t>::max() - 1, -1);
    if (!after.ok()) return HttpResponse::FromStatus(after.status());
    // One more than asked: whether another page follows.
    auto trials = store->ListTrials(sweep->id, static_cast<uint32_t>(*after + 1),
                                    static_cast<size_t>(*limit) + 1);
    if (!trials.ok()) return HttpResponse::FromStatus(trials.status());
    const bool more = trials->size() > static_cast<size_t>(*limit);
    if (more) trials->pop_back();
    json out = json::array();
    for (const auto& t : *trials) out.push_back(t.ToJson());
    json next = more ? json(trials->back().id.index) : json(nullptr);
    return HttpResponse::Json(200, {{"sweep", sweep->ToJson()}, {"trials", std::move(out)},
                                    {"next_after", std::move(next)}});
  });
  // Body (optional): {"from_step": N, "epochs": M}; see Coordinator::Resume.
  r.Add("POST", "/v1/trials/{id}/resume", [coordinator, store](HttpRequest& req) {
    auto id = TrialId::Parse(req.path_params["id"]);
    if (!id) {
      return HttpResponse::FromStatus(Status::InvalidArgument(
          "bad trial id '" + req.path_params["id"] + "' (expected e.g. s3-t12)"));
    }
    json body = req.body.empty() ? json::object()
                                 : json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (!body.is_object()) {
      return HttpResponse::FromStatus(
          Status::InvalidArgument("resume: body must be a JSON object {from_step, epochs}"));
    }
    Coordinator::ResumeRequest request{*id, std::nullopt, std::nullopt};
    for (const char* key : {"from_step", "epochs"}) {
      if (!body.contains(key) || body[key].is_null()) continue;
      if (!body[key].is_number_integer() || body[key].get<int64_t>() < 1) {
        return HttpResponse::FromStatus(
            Status::InvalidArgument(std::string(key) + ": must be an integer >= 1"));
      }
      (std::string(key) == "from_step" ? request.from_step : request.epochs) =
          body[key].get<int64_t>();
    }
    auto resumed = coordinator->Resume(request);
    if (!resumed.ok()) return HttpResponse::FromStatus(resumed.status());
    return SweepResponse(store, *resumed);
  }, /*mutating=*/true);
  r.Add("POST", "/v1/sweeps/{id}/cancel", [coordinator, store](HttpRequest& req) {
    auto sweep = FindSweep(store, req.path_params["id"]);
    if (!sweep.ok()) return HttpResponse::FromStatus(sweep.status());
    auto cancelled = coordinator->Cancel(sweep->id);
    if (!cancelled.ok()) return HttpResponse::FromStatus(cancelled.status());
    return SweepResponse(store, *cancelled);
  }, /*mutating=*/true);
}

void AddTrialRoutes(Router& r, StateStore* store) {
  auto parse = [](const std::string& text) -> StatusOr<TrialId> {
    auto id = TrialId::Parse(text);
    if (!id) return Status::InvalidArgument("bad trial id '" + text + "' (expected e.g. s3-t12)");
    return *id;
  };
  r.Add("GET", "/v1/trials/{id}", [store, parse](HttpRequest& req) {
    auto id = parse(req.path_params["id"]);
    if (!id.ok()) return HttpResponse::FromStatus(id.status());
    auto trial = store->GetTrial(*id);
    if (!trial.ok()) return HttpResponse::FromStatus(trial.status());
    return HttpResponse::Json(200, trial->ToJson());
  });
  // The trial's stored checkpoints: its step checkpoints (after retention) and its final one.
  r.Add("GET", "/v1/trials/{id}/checkpoints", [store, parse](HttpRequest& req) {
    auto id = parse(req.path_params["id"]);
    if (!id.ok()) return HttpResponse::FromStatus(id.status());
    auto trial = store->GetTrial(*id);
    if (!trial.ok()) return HttpResponse::FromStatus(trial.status());
    CheckpointStore checkpoints(store);
    auto steps = checkpoints.ListSteps(*id);  // manifests only
    if (!steps.ok()) return HttpResponse::FromStatus(steps.status());
    json out = json::array();
    auto pruned = checkpoints.ListPruned(*id);
    if (!pruned.ok()) return HttpResponse::FromStatus(pruned.status());
    auto describe = [&](const std::string& kind, const CheckpointInfo& info) {
      json row = {{"kind", kind}, {"state", "kept"}, {"step", info.step}, {"bytes", info.bytes},
                  {"chunks", info.chunks}};
      if (auto header = jobs::ParseCheckpointHeaderLine(info.header); header.ok()) {
        row["epochs"] = header->epochs;
        row["metrics"] = header->metrics;
      }
      return row;
    };
    // Step checkpoints by step, kept and pruned (those only with what the listing showed).
    auto gone = pruned->begin();
    auto add_pruned_before = [&](int64_t step) {
      for (; gone != pruned->end() && gone->first < step; ++gone) {
        json row = {{"kind", "step"}, {"state", "pruned"}, {"step", gone->first}};
        if (gone->second.is_object()) row.update(gone->second);
        out.push_back(std::move(row));
      }
    };
    for (const auto& info : *steps) {
      add_pruned_before(info.step);
      out.push_back(describe("step", info));
    }
    add_pruned_before(std::numeric_limits<int64_t>::max());
    if (auto info = checkpoints.Info(*id, CheckpointStore::kFinal); info.ok()) {
      out.push_back(describe("final", *info));
    }
    return HttpResponse::Json(200, {{"trial", id->ToString()}, {"checkpoints", out}});
  });
  // The stored checkpoint of a completed train trial (format: jobs/checkpoint.h).
  r.Add("GET", "/v1/trials/{id}/checkpoint", [store, parse](HttpRequest& req) {
    auto id = parse(req.path_params["id"]);
    if (!id.ok()) return HttpResponse::FromStatus(id.status());
    auto trial = store->GetTrial(*id);
    if (!trial.ok()) return HttpResponse::FromStatus(trial.status());
    // ?step=N: that step checkpoint (see /checkpoints) instead of the final one.
    int64_t step = 0;
    if (auto q = req.query.find("step"); q != req.query.end()) {
      char* end = nullptr;
      step = std::strtoll(q->second.c_str(), &end, 10);
      if (q->second.empty() || *end != '\0' || step < 1) {
        return HttpResponse::FromStatus(
            Status::InvalidArgument("step: must be an integer >= 1, got '" + q->second + "'"));
      }
    }
    CheckpointStore checkpoints(store);
    auto blob = checkpoints.Read(*id, step > 0 ? step : CheckpointStore::kFinal);
    if (!blob.ok()) {
      if (blob.status().code() != StatusCode::kNotFound) return HttpResponse::FromStatus(blob.status());
      return HttpResponse::FromStatus(Status::NotFound(
          step > 0 ? "trial " + id->ToString() + " has no checkpoint at step " +
                         std::to_string(step) + " (pruned or never written; see its /checkpoints)"
                   : "trial " + id->ToString() + " (" + TrialStateName(trial->state) +
                         ") has no checkpoint: only completed train and distill trials keep one"));
    }
    HttpResponse out = HttpResponse::Text(200, std::move(blob).value(), "application/octet-stream");
    out.headers.emplace_back("Content-Disposition",
                             "attachment; filename=\"" + id->ToString() + ".ckpt\"");
    return out;
  }, RouteOptions{/*authenticated=*/true, /*offload=*/false});
  r.Add("GET", "/v1/trials/{id}/metrics", [store, parse](HttpRequest& req) {
    auto id = parse(req.path_params["id"]);
    if (!id.ok()) return HttpResponse::FromStatus(id.status());
    auto trial = store->GetTrial(*id);
    if (!trial.ok()) return HttpResponse::FromStatus(trial.status());
    auto epochs = store->GetEpochMetrics(*id);
    if (!epochs.ok()) return HttpResponse::FromStatus(epochs.status());
    json out = json::array();
    for (const auto& e : *epochs) out.push_back(e.ToJson());
    return HttpResponse::Json(200, {{"trial", id->ToString()}, {"epochs", out}});
  });
}

}  // namespace

json SweepSummaryJson(const SweepRecord& sweep, const SweepCounts& counts) {
  json j = sweep.ToJson();
  json c = counts.ToJson();
  j["best"] = std::move(c["best"]);
  c.erase("best");
  c.erase("sweep");
  j["counts"] = std::move(c);
  return j;
}

std::shared_ptr<Router> MakeApiRouter(Coordinator* coordinator, StateStore* store,
                                      prometheus::Registry* registry, const std::string& token,
                                      store::IndexCatalog* catalog) {
  auto r = std::make_shared<Router>();
  r->SetToken(token);
  // 200 either way (the process is alive and serves reads); "degraded" while the data
  // directory is below its space reserve or a commit is held (changes get 507 meanwhile).
  r->Add("GET", "/healthz", [coordinator](HttpRequest&) {
    if (coordinator == nullptr) return HttpResponse::Json(200, {{"status", "ok"}});
    const StorageHealth h = coordinator->Storage();
    json storage = {{"path", h.data_dir},
                    {"free_bytes", h.free_bytes},
                    {"min_free_bytes", h.min_free_bytes},
                    {"commit_held", h.commit_held}};
    if (h.commit_held) {
      storage["held_bytes"] = h.held_bytes;
      storage["held_since_ms"] = h.held_since_ms;
    }
    json out = {{"status", h.degraded ? "degraded" : "ok"}, {"storage", storage}};
    if (h.degraded) out["reason"] = h.reason;
    return HttpResponse::Json(200, out);
  });
  AddSweepRoutes(*r, coordinator, store);
  AddTrialRoutes(*r, store);
  AddDatasetRoutes(*r, store);
  // The report page (scheduler/report_page.h); its script reads the routes above.
  r->Add("GET", "/sweeps/{id}", [](HttpRequest&) {
    return HttpResponse::Text(200, scheduler::SweepReportHtml(), "text/html; charset=utf-8");
  });
  r->Add("GET", "/v1/workers", [coordinator](HttpRequest&) {
    json out = json::array();
    for (const auto& w : coordinator->Workers()) out.push_back(WorkerJson(w));
    return HttpResponse::Json(200, {{"workers", out}});
  });
  if (catalog != nullptr) {
    IndexApiOptions index_options;
    index_options.registry = registry;
    AddIndexRoutes(*r, catalog, index_options);
  }
  r->Add("GET", "/metrics", [registry](HttpRequest&) {
    return HttpResponse::Text(200, RenderMetrics(*registry), "text/plain; version=0.0.4");
  });
  return r;
}

}  // namespace lattice
