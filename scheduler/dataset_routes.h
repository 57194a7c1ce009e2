// Read routes of the activation datasets (store/activation_dataset_store.h):
//   GET /v1/datasets          {"datasets": [record, ...]} by name
//   GET /v1/datasets/{name}   one record (404 naming it when unknown)
// A record: {name, sweep, state: writing|ready|failed, rows, dim, labels, source: {encoder,
// corpus}, created_ms, finished_ms, message}.
#pragma once

#include "http/server.h"
#include "store/state_store.h"

namespace lattice {

// `store` must outlive the router.
void AddDatasetRoutes(Router& r, StateStore* store);

}  // namespace lattice
