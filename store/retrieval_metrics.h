// Retrieval quality metrics for ANN results against exact ground truth, .fvecs/.ivecs
// readers, and exact ground truth via faiss::IndexFlat. Torch-free.
//
// Conventions: an IdMatrix is `rows` rows of `cols` ids, row-major. "retrieved" rows are
// ranked best first (as VectorIndex::Search returns them); "truth" rows are the exact
// nearest neighbours, nearest first. Id -1 (padding) is never relevant.
// For each query q and cutoff k (k <= retrieved.cols and k <= truth.cols):
//   relevant(q)   = the first k ids of truth row q (so |relevant| = k)
//   recall@k      = |retrieved top-k ∩ relevant| / k
//   MRR@k         = 1 / rank of truth[q][0] (the true nearest neighbour) within retrieved
//                   top-k, 0 if absent (rank is 1-based)
//   AP@k          = (1/k) Σ_{i<=k, retrieved_i relevant} precision@i
//   NDCG@k        = Σ_{i<=k} rel_i / log2(i+1)  /  Σ_{i<=k} 1 / log2(i+1)   (binary rel)
// Each function returns the mean over rows. Errors: InvalidArgument on shape mismatch
// (rows differ, k < 1, k > cols, ids.size() != rows*cols).
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "store/vector_index.h"

namespace lattice::store {

struct IdMatrix {
  int64_t rows = 0;
  int cols = 0;
  std::vector<int64_t> ids;  // rows * cols
};

struct FloatMatrix {
  int64_t rows = 0;
  int dim = 0;
  std::vector<float> data;  // rows * dim
};

IdMatrix ToIdMatrix(const SearchResult& result);

StatusOr<double> RecallAtK(const IdMatrix& retrieved, const IdMatrix& truth, int k);
StatusOr<double> MrrAtK(const IdMatrix& retrieved, const IdMatrix& truth, int k);
StatusOr<double> MapAtK(const IdMatrix& retrieved, const IdMatrix& truth, int k);
StatusOr<double> NdcgAtK(const IdMatrix& retrieved, const IdMatrix& truth, int k);

// .fvecs / .ivecs: per row an int32 dim (little-endian) then dim float32 / int32.
// Every row must have the same dim. NotFound if missing; IoError naming the row on
// truncation or an inconsistent dim. max_rows > 0 stops after that many rows.
StatusOr<FloatMatrix> ReadFvecs(const std::string& path, int64_t max_rows = 0);
StatusOr<IdMatrix> ReadIvecs(const std::string& path, int64_t max_rows = 0);

// Exact top-k of each query (faiss::IndexFlat, brute force; uses OpenMP/BLAS threads).
// Ids are row numbers of `base`. InvalidArgument on dim mismatch, k < 1, k > base.rows.
StatusOr<IdMatrix> ExactGroundTruth(const FloatMatrix& base, const FloatMatrix& queries, int k,
                                    Metric metric);

// The exact k nearest stored vectors of each query, by brute force (what faiss::IndexFlat
// searches with, run over ExportVectors; same metric and distance conventions as Search;
// ties in distance are broken by storage order). The oracle for approximate search: recall of `index` against
// it is ANN recall. For ivf_pq the stored vectors are the PQ decodings, so this measures
// the IVF probing loss but not the quantisation loss. Costs one copy of the vectors
// (O(size() * dim) memory) and O(nq * size() * dim) time per call. InvalidArgument for k outside [1, kMaxSearchK].
StatusOr<SearchResult> ExactSearch(const VectorIndex& index, const float* queries, int64_t nq,
                                   int k);

}  // namespace lattice::store
