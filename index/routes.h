// The index query service: read-only HTTP routes over an IndexCatalog, served by the
// coordinator (MakeApiRouter) and by the standalone `lattice serve-index` (index_server.h).
//
//   GET  /v1/indexes          {"indexes": [entry, ...], "server": server} sorted by name
//   GET  /v1/indexes/{name}   entry + {"versions": [1, 2, ...], "server": server}
//        entry = the version's meta.json (vectors, dim, type, metric, backend, params,
//        recall@10, mrr@10, built_from, created_ms, ...) + {"name", "version",
//        "index_bytes" (the index file's size on disk)}
//        server = {"rss_bytes", "peak_rss_bytes"}: the serving process's resident memory
//        now and its high-water mark (the whole process: coordinator or serve-index)
//   POST /v1/indexes/{name}/search
//        body (see index/search_request.h):
//          {"vectors": [[...], ...]} | {"items": [id, ...]}, "k": 10,
//          "params": {"ef_search": 64, "nprobe": 8}   or {"exact": true}: brute force
//          over the stored vectors (store::ExactSearch; O(vectors x dim) per query: the
//          oracle for ANN recall; also ?exact=true on the binary form)
//        -> {"results": [{"ids": [...], "distances": [...]}, ...], "took_ms": 0.21}
//        Hits of an index published with item metadata (embed corpora: image paths,
//        labels) also carry "metadata": [{...} or null per hit].
//        one result per query, in request order, best first; at most k hits (fewer when
//        the index holds fewer vectors). Distances follow VectorIndex (squared L2
//        ascending, or inner product descending). "items" searches with each item's
//        stored vector (VectorIndex::Reconstruct; approximate for ivf_pq) and drops the
//        item itself from its own results. took_ms: server time from request to reply.
//   POST /v1/indexes/{name}/search?k=10&ef_search=32&nprobe=8
//        with Content-Type: application/octet-stream — the binary fast path: the body is
//        the query vectors as raw little-endian float32, row after row (numpy:
//        queries.astype("<f4").tobytes()), nq = body bytes / (4 * dim); k, ef_search and
//        nprobe come from the query string, each optional (k defaults to 10). A body
//        whose length is not a multiple of 4 * dim is 400 ("body: 3000 bytes is not a
//        multiple of 3136 (rows of dim 784 float32 values)"), as is an unknown query
//        parameter, NaN / infinity, or an empty body. The reply is the JSON above. No
//        "items" form. With any other Content-Type the body is JSON; the query string is
//        then ignored.
//
// Search is a read: no token is needed. It is registered with RouteOptions::offload, so
// it runs on the HTTP server's bounded work pool (503 + Retry-After when that is full)
// and never holds the io threads that serve /healthz and the control routes. Work per
// request is capped (400 naming the limit): queries <= max_batch, k <= max_k,
// ef_search <= max_ef_search, nprobe <= max_nprobe, queries x max(k, ef_search) <=
// max_query_work (see index/search_request.h).
// Errors, always {"error": {"code", "message"}}: 400 invalid_argument for any malformed
// body (the message names the key / row / column), 404 not_found for an unknown index or
// item id ("items[1]: item 99 is not in index \"fmnist\""), 500 for a catalog that
// cannot be read. No request crashes the process.
//
// Threading: handlers run concurrently on the HTTP server's threads (search: its work pool); IndexCatalog and
// VectorIndex::Search are thread-safe, and each request holds its own shared_ptr to the
// index, so a new version published meanwhile does not disturb it.
#pragma once

#include <cstdint>

#include <prometheus/registry.h>

#include "http/server.h"
#include "store/index_catalog.h"

namespace lattice {

struct IndexApiOptions {
  // Largest k a search accepts (at most store::kMaxSearchK). Default: 1000.
  int max_k = 1000;
  // Most queries (vectors or items) in one search request. Default: 10000.
  int64_t max_batch = 10000;
  // Largest params.ef_search / params.nprobe. Default: 1024 each.
  int max_ef_search = 1024;
  int max_nprobe = 1024;
  // Most queries x max(k, ef_search) in one request. Default: 1000000.
  int64_t max_query_work = 1000000;
  // Where lattice_index_search_seconds (histogram, one observation per search request
  // that reached the index) and lattice_index_queries_total (counter, queries answered)
  // are registered; no labels. Null: no metrics. Must outlive the router. Register the
  // routes once per registry. Default: nullptr.
  prometheus::Registry* registry = nullptr;
};

// Adds the three routes above to `router`. `catalog` must outlive the router.
void AddIndexRoutes(Router& router, store::IndexCatalog* catalog, const IndexApiOptions& options);

}  // namespace lattice
