// Helpers shared by the VectorIndex implementations (store/vector_index.cc defines them).
// Not part of the public surface.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "store/vector_index.h"

namespace lattice::store::internal {

// n >= 0, x/ids non-null when n > 0, ids >= 0 and unique within the batch, values finite.
Status ValidateAddArgs(const float* x, int64_t n, const int64_t* ids, int dim);
// nq >= 0, 1 <= k <= kMaxSearchK, nprobe/ef_search >= 0, queries finite.
Status ValidateSearchArgs(const float* queries, int64_t nq, int k, const SearchParams& params,
                          int dim);
// "<what> row R: NaN at column C" for the first non-finite value.
Status CheckFinite(const float* x, int64_t n, int dim, const char* what);

// An all-padding result (ids -1, distances +inf for L2 / -inf for IP).
SearchResult EmptyResult(int64_t nq, int k, Metric metric);

// Integer build param `key` of params.build (default when absent); range-checked,
// errors name "index.params.<key>".
StatusOr<int64_t> BuildInt(const IndexParams& params, const char* key, int64_t dflt,
                           int64_t lo, int64_t hi);
// String build param; default when absent.
std::string BuildString(const IndexParams& params, const char* key, const std::string& dflt);

// Calls write(tmp) where tmp = path + ".tmp.<pid>.<counter>", fsyncs tmp, renames it onto
// path and fsyncs the parent directory. Removes tmp on error.
Status WriteFileAtomically(const std::string& path,
                           const std::function<Status(const std::string& tmp)>& write);
Status WriteStringAtomically(const std::string& path, const std::string& contents);
StatusOr<std::string> ReadWholeFile(const std::string& path);
// -1 when the file does not exist.
int64_t FileBytes(const std::string& path);

// Sidecar written next to every saved index: path + ".params.json".
std::string SidecarPath(const std::string& path);
// Call after `path` is in place (records its byte length). Does not lock `index`.
Status WriteSidecar(const std::string& path, const char* backend, const IndexParams& params,
                    int64_t size);

}  // namespace lattice::store::internal
