// FaissVectorIndex: VectorIndex on FAISS 1.7.3 (Debian libfaiss-dev).
//
//   flat      IndexFlat{L2,IP}
//   ivf_flat  IndexIVFFlat over an IndexFlat quantizer (trained on the first Add)
//   ivf_pq    IndexIVFPQ  over an IndexFlat quantizer (trained on the first Add)
//   hnsw      IndexHNSWFlat (build param backend = "faiss")
// Every inner index sits inside an IndexIDMap2 that maps positions to caller ids
// (and rejects duplicates through its reverse map). Search calls the inner index with a
// per-request faiss::SearchParametersIVF / SearchParametersHNSW (IndexIDMap2 in 1.7.3
// refuses SearchParameters) and maps positions to ids itself, so concurrent searches
// with different nprobe / efSearch never touch shared state.
//
// Thread-safety: see VectorIndex. A std::shared_mutex guards the FAISS object: Search and
// Save share it, Add owns it. Exception, type hnsw: FAISS 1.7.3 ignores a per-request
// efSearch above the index's member efSearch, so Search sets the member under a mutex and
// FAISS-HNSW searches of one index run one at a time (prefer backend "hnswlib").
// Construct through MakeVectorIndex / LoadVectorIndex (params already validated).
#pragma once

#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>

#include "store/vector_index.h"

namespace faiss {
struct Index;
template <typename IndexT>
struct IndexIDMap2Template;
using IndexIDMap2 = IndexIDMap2Template<Index>;  // as in <faiss/IndexIDMap.h>
}  // namespace faiss

namespace lattice::store {

class FaissVectorIndex final : public VectorIndex {
 public:
  // `params` must have passed MakeVectorIndex's validation.
  static StatusOr<std::unique_ptr<VectorIndex>> Create(const IndexParams& params);
  // Reads a file written by Save; `params` comes from the sidecar and is checked
  // against what the file holds (dim, metric, index class).
  static StatusOr<std::unique_ptr<VectorIndex>> Load(const std::string& path,
                                                     const IndexParams& params);
  ~FaissVectorIndex() override;

  Status Add(const float* x, int64_t n, const int64_t* ids) override;
  StatusOr<SearchResult> Search(const float* queries, int64_t nq, int k,
                                const SearchParams& params) const override;
  StatusOr<std::vector<float>> Reconstruct(int64_t id) const override;
  Status ExportVectors(std::vector<int64_t>* ids, std::vector<float>* data) const override;
  int64_t size() const override;
  const IndexParams& params() const override { return params_; }
  const char* backend() const override { return "faiss"; }
  Status Save(const std::string& path) const override;

 private:
  FaissVectorIndex(IndexParams params, std::unique_ptr<faiss::IndexIDMap2> index);
  Status ReadDefaults();
  Status TrainIfNeeded(const float* x, int64_t n);

  const IndexParams params_;
  std::unique_ptr<faiss::IndexIDMap2> index_;  // owns the inner index (own_fields)
  int default_nprobe_ = 8;
  int default_ef_search_ = 32;
  int64_t min_train_ = 1;
  int64_t train_size_ = 0;  // 0 = all vectors of the first Add
  mutable std::shared_mutex mu_;
  mutable std::mutex hnsw_mu_;  // type hnsw only: FAISS 1.7.3 needs the member efSearch set
};

}  // namespace lattice::store
