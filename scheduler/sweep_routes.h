// The coordinator's HTTP API (see ARCHITECTURE.md, "HTTP API").
//
//   GET  /healthz                       liveness: {"status": "ok"|"degraded", "storage": {...}}
//                                       ("degraded" + "reason": the data directory is below
//                                       --min-free-bytes or a commit is held; always 200)
//   POST /v1/sweeps                     body: spec text (YAML or JSON)  -> 201 sweep
//   GET  /v1/sweeps[/{id}]              {id} is "s7", "7" or a sweep name (latest)
//   GET  /v1/sweeps/{id}/trials         ?after=I&limit=N: one page of trials by index
//                                       (default and most 1000); "next_after": the next
//                                       page's `after`, null on the last page
//   POST /v1/sweeps/{id}/cancel
//   POST /v1/trials/{id}/resume         {"from_step": N, "epochs": M} (both optional)
//   GET  /v1/trials/{id}[/metrics]
//   GET  /v1/trials/{id}/checkpoints    its step checkpoints (after retention) and final one
//   GET  /v1/trials/{id}/checkpoint     the stored final checkpoint (application/octet-stream);
//                                       ?step=N: that step checkpoint. Needs the token.
//   GET  /v1/workers
//   GET  /v1/indexes[/{name}], POST /v1/indexes/{name}/search   see index/routes.h
//   GET  /metrics                       Prometheus text format
// Mutating routes and the checkpoint download need "Authorization: Bearer <token>". Errors are
// {"error": {"code": ..., "message": ...}} with the matching status code; while the data
// directory is full, mutating routes get 507 "insufficient_storage" naming it, the free
// space and what is needed (nothing is applied), and GET routes keep working.
//
// Threading: handlers run on the HTTP server's threads; reads go to the StateStore
// directly (thread-safe), mutations go through the Coordinator's command queue.
#pragma once

#include <memory>
#include <string>

#include <prometheus/registry.h>

#include "scheduler/coordinator.h"
#include "http/server.h"
#include "store/index_catalog.h"
#include "store/state_store.h"

namespace lattice {

// All pointers must outlive the returned router. `catalog` may be null (no index routes).
std::shared_ptr<Router> MakeApiRouter(Coordinator* coordinator, StateStore* store,
                                      prometheus::Registry* registry, const std::string& token,
                                      store::IndexCatalog* catalog = nullptr);

// Most trials one GET /v1/sweeps/{id}/trials page holds, and its default size.
inline constexpr int64_t kTrialsPageLimit = 1000;

// The API's JSON view of a sweep: the record plus trial counts by state ("counts") and the
// best trial so far ({"trial": "s3-t4", "objective": 0.98, "params": {...}} or null).
nlohmann::json SweepSummaryJson(const SweepRecord& sweep, const SweepCounts& counts);

}  // namespace lattice
