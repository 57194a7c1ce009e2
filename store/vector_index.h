// VectorIndex: the backend boundary of the vector store. One interface, one factory
// (MakeVectorIndex / LoadVectorIndex); implementations are named for their backend
// (FaissVectorIndex, HnswVectorIndex) and are never constructed directly by callers.
//
// Data layout: vectors are row-major float32, `n` rows of `dim()` floats. Item ids are
// the caller's int64 ids (not positions); they must be >= 0 and unique within an index
// (-1 is the padding id in results).
//
// Distances in SearchResult:
//   Metric::kL2           squared Euclidean distance, ascending (smaller = closer).
//   Metric::kInnerProduct inner product <q, x>, descending (larger = closer).
// Every backend reports the same convention (hnswlib's "1 - ip" is converted).
//
// Thread-safety: Search() is const and may run concurrently with other Search() calls
// and with Add() on the same index (implementations take a reader/writer lock; Add is
// exclusive). Per-request knobs (nprobe, ef_search) travel in SearchParams and never
// mutate the index. Note that FAISS uses OpenMP inside one call for batched queries;
// callers serving many concurrent single queries should cap OpenMP threads.
//
// Errors (never exceptions; every FAISS / hnswlib exception is caught and returned):
//   InvalidArgument    bad params at construction (message names the key, e.g.
//                      "index.params.nlist: must be >= 1, got 0"), k <= 0 or k > kMaxSearchK,
//                      NaN/Inf in a vector (names the row), negative or duplicate ids.
//   FailedPrecondition IVF index asked to train on too few vectors.
//   IoError            Save/Load failures; NotFound when the file does not exist.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace lattice::store {

enum class Metric { kL2, kInnerProduct };

// "l2" / "ip".
const char* MetricName(Metric metric);
StatusOr<Metric> ParseMetric(const std::string& text);

// Largest k a single Search accepts.
inline constexpr int kMaxSearchK = 10000;

// What to build. `build` keys (all optional; defaults in brackets):
//   flat      —
//   ivf_flat  nlist [100], train_size [all vectors of the first Add]
//   ivf_pq    nlist [100], m [8] (must divide dim), nbits [8] (1..16), train_size
//   hnsw      M [16], ef_construction [100], ef_search [32] (default at query time),
//             backend ["hnswlib" | "faiss"; default "hnswlib", see hnsw_vector_index.h],
//             max_elements [grows automatically; hnswlib only], seed [100; hnswlib only]
//   ivf_*     nprobe [8] (default at query time)
// Unknown keys are rejected so that typos do not silently fall back to defaults.
enum class IndexType { kFlat, kIvfFlat, kIvfPq, kHnsw };

// "flat", "ivf_flat", "ivf_pq", "hnsw".
const char* IndexTypeName(IndexType type);
StatusOr<IndexType> ParseIndexType(const std::string& text);  // errors name index.type

struct IndexParams {
  IndexType type = IndexType::kFlat;
  Metric metric = Metric::kL2;
  int dim = 0;
  nlohmann::json build = nlohmann::json::object();  // null is treated as {}
};

nlohmann::json ParamsToJson(const IndexParams& params);
// Parses {"type":..,"metric":"l2"|"ip","dim":..,"build":{..}}; does not validate ranges.
StatusOr<IndexParams> ParamsFromJson(const nlohmann::json& json);

// Checks `params.build` for `params.type` (known keys, types, ranges) exactly as
// MakeVectorIndex does; errors name the key ("index.params.ef_serch: unknown key for type
// hnsw"). `params.dim` 0 means "not known yet" (a sweep spec at submit time, before
// anything was embedded): the checks that need the dimension are skipped.
Status ValidateIndexParams(const IndexParams& params);

// Per-request search knobs; 0 = the index's default (build param nprobe / ef_search).
struct SearchParams {
  int nprobe = 0;     // IVF: lists visited. Ignored by other types.
  int ef_search = 0;  // HNSW: candidate list size (raised to k if smaller). Ignored otherwise.
  // Brute force over the stored vectors instead (ExactSearch below); nprobe and ef_search
  // are then ignored. VectorIndex::Search itself ignores it: callers dispatch to
  // ExactSearch (store/retrieval_metrics.h).
  bool exact = false;
};

// nq rows of k results, row-major. Rows with fewer than k hits are padded with id -1
// and distance +inf (L2) / -inf (IP).
struct SearchResult {
  int nq = 0;
  int k = 0;
  std::vector<int64_t> ids;        // nq * k
  std::vector<float> distances;    // nq * k
};

class VectorIndex {
 public:
  virtual ~VectorIndex() = default;

  // Adds n vectors (n * dim() floats) with caller ids ids[0..n). An untrained IVF index
  // trains on (the first train_size of) these vectors first: needs at least nlist of them
  // (and 2^nbits for ivf_pq), else FailedPrecondition and nothing is added.
  // All-or-nothing: on error the index is unchanged.
  virtual Status Add(const float* x, int64_t n, const int64_t* ids) = 0;

  // k nearest neighbours of each of the nq queries (nq * dim() floats).
  virtual StatusOr<SearchResult> Search(const float* queries, int64_t nq, int k,
                                        const SearchParams& params) const = 0;

  // The stored vector of item `id` (dim() floats). NotFound for an id not in the index.
  // Exact for flat, ivf_flat and hnsw; for ivf_pq it is the PQ decoding (centroid +
  // quantized residual), an approximation of what was added. Same locking as Search.
  virtual StatusOr<std::vector<float>> Reconstruct(int64_t id) const = 0;

  // Every stored vector with its id, in the backend's storage order: ids->size() rows,
  // data->size() = rows * dim(). Exact for flat, ivf_flat and hnsw; for ivf_pq the PQ
  // decodings (as Reconstruct). Same locking as Search; O(size() * dim) memory.
  virtual Status ExportVectors(std::vector<int64_t>* ids, std::vector<float>* data) const = 0;

  // Number of vectors stored.
  virtual int64_t size() const = 0;
  int dim() const { return params().dim; }
  virtual const IndexParams& params() const = 0;
  // "faiss" or "hnswlib".
  virtual const char* backend() const = 0;

  // Writes the index to `path` and a sidecar `path + ".params.json"` (IndexParams, backend,
  // size, byte length of `path`). Each file is written to a temporary name, fsynced and
  // renamed, binary first; a torn pair is detected by LoadVectorIndex through the
  // recorded byte length. Safe to call concurrently with Search (takes the read lock).
  virtual Status Save(const std::string& path) const = 0;
};

// Validates `params` and builds an empty index. InvalidArgument names the key.
StatusOr<std::unique_ptr<VectorIndex>> MakeVectorIndex(const IndexParams& params);

// Loads what Save wrote; restores type, metric, backend and build params.
StatusOr<std::unique_ptr<VectorIndex>> LoadVectorIndex(const std::string& path);

// For callers that receive vectors as bytes: OK iff vectors.size() is a non-zero
// multiple of dim and every value is finite. Messages name the row ("row 3: NaN at 17").
Status CheckVectors(const std::vector<float>& vectors, int dim);

}  // namespace lattice::store
