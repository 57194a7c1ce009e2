// The body of POST /v1/indexes/{name}/search, parsed in one pass straight into a
// contiguous float buffer: no JSON DOM is built for the vectors. A hand-written scanner
// (std::from_chars) reads the usual shape; anything it does not take (an error, escapes in
// keys, ...) is parsed again by nlohmann's SAX parser, which names the fault. Both yield
// the same floats (each number read as a double, then rounded to float32).
//
//   {"vectors": [[f, ...], ...]}  or  {"items": [id, ...]}      exactly one of the two;
//                                                               an item id is an integer or
//                                                               a string (the user's ids of
//                                                               the index, see routes.h)
//   "k": 10                                                     optional, 1..max_k
//   "params": {"ef_search": 64, "nprobe": 8, "exact": true}     optional, 1..max_ef_search,
//                                                               1..max_nprobe, a boolean
//                                                               (exact: brute force)
//   and queries x max(k, ef_search) <= max_query_work
//
// Every rule is checked while parsing and the first violation is returned as
// InvalidArgument with a message that names the place:
//   "malformed JSON: ..."                       syntax error (nlohmann's message, with byte)
//   "unknown key 'kk' (expected vectors, items, k, params)", "params.foo: unknown key ..."
//   "vectors[3]: expected 784 values, got 783"  row of the wrong dimension
//   "vectors[3][5]: expected a number, got string"   (also null, bool, arrays, objects)
//   "vectors[3][5]: not a finite float32"       overflow such as 1e999 or 1e39
//   "too many queries: more than 10000 in one request (max_batch)"
//   "k: must be between 1 and 1000, got 0", "items[2]: expected an item id (an integer
//   or a string), got null"
//   "params.ef_search: must be between 1 and 1024, got 4096 (max_ef_search)"
//   "too much work in one request: 10000 queries x ef_search 1024 = 10240000 exceeds
//    1000000 (max_query_work); split the batch"
//   "give either vectors or items, not both" / "... one of vectors or items is required"
// Thread-safety: a pure function.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "store/vector_index.h"

namespace lattice {

// Per-request work caps (issue 9: one request must not hold a CPU for minutes). A
// request over any of them is InvalidArgument naming the limit, e.g.
// "params.ef_search: must be between 1 and 1024, got 1048576 (max_ef_search)".
struct SearchRequestLimits {
  int dim = 0;                // every vector must have this many values
  int max_k = 1000;           // largest k accepted
  int64_t max_batch = 10000;  // most queries (vectors or items) in one request
  int max_ef_search = 1024;   // largest params.ef_search (HNSW candidate list)
  int max_nprobe = 1024;      // largest params.nprobe (IVF lists visited)
  // Most queries x max(k, ef_search) in one request. Default 1,000,000: 10,000 queries at
  // k 100, or 976 queries at ef_search 1024.
  int64_t max_query_work = 1000000;
};

struct SearchRequest {
  std::vector<float> vectors;  // nq * dim row-major, when the body had "vectors"
  std::vector<int64_t> items;  // when the body had "items", all of them integers
  // When the body's "items" hold a string: every item as text (common/item_id.h; integers
  // in decimal), and `items` is empty.
  std::vector<std::string> item_names;
  int64_t nq = 0;              // number of queries (rows of vectors, or items)
  int k = 10;
  store::SearchParams params;
  bool by_items() const { return !items.empty() || !item_names.empty(); }
};

StatusOr<SearchRequest> ParseSearchRequest(std::string_view body,
                                           const SearchRequestLimits& limits);

// The binary form (Content-Type: application/octet-stream): `body` is nq rows of dim
// raw little-endian float32 values, row-major, as numpy's
// queries.astype("<f4").tobytes() writes them; `query` holds the decoded query-string
// parameters, each optional: k (1..max_k, default 10; as for JSON, the default too must
// be within max_k), ef_search (1..max_ef_search), nprobe (1..max_nprobe) and exact;
// max_query_work applies as for JSON.
// Errors (InvalidArgument):
//   "body: 3000 bytes is not a multiple of 3136 (rows of dim 784 float32 values)"
//   "vectors: must hold at least one query" (empty body), the max_batch message above,
//   "vectors[3][5]: not a finite float32" (NaN or infinity),
//   "k: expected an integer, got 'ten'", "k: must be between 1 and 1000, got 0",
//   "ef_search: must be between 1 and 1024, got 0 (max_ef_search)",
//   "unknown query parameter 'kk' (expected k, ef_search, nprobe, exact)";
//   exact=true|false|1|0 asks for brute force ("exact: expected true or false, got 'y'").
StatusOr<SearchRequest> ParseBinarySearchRequest(
    std::string_view body, const std::map<std::string, std::string>& query,
    const SearchRequestLimits& limits);

}  // namespace lattice
