// HnswVectorIndex: VectorIndex type "hnsw" on Debian's header-only hnswlib 0.6.2
// (hnswlib::HierarchicalNSW<float> with L2Space / InnerProductSpace; labels = caller ids).
// This is the default backend for "hnsw" (build param backend = "hnswlib"): on
// Fashion-MNIST-784 it is ~2x faster than Debian's FAISS IndexHNSWFlat at equal recall
// because its TU is compiled with -O3 -march=native (see store/CMakeLists.txt and
// docs/BENCHMARKS.md), while Debian's FAISS is built without AVX2.
//
// Per-request ef: hnswlib's setEf() mutates the index, so Search never calls it; it runs
// its own copy of searchKnn's descent with the ef of the request (SearchKnnWithEf in the
// .cc), which only reads the graph. hnswlib's visited-list pool is internally locked.
//
// Thread-safety: see VectorIndex. A std::shared_mutex guards the graph: Search and Save
// share it; Add owns it (and grows capacity by doubling with resizeIndex). Inside one Add
// the points are inserted with OpenMP threads (omp_get_max_threads()); insertion order,
// and so the graph, is deterministic only with one thread.
// Construct through MakeVectorIndex / LoadVectorIndex.
#pragma once

#include <memory>
#include <shared_mutex>
#include <string>

#include "store/vector_index.h"

namespace lattice::store {

class HnswVectorIndex final : public VectorIndex {
 public:
  static StatusOr<std::unique_ptr<VectorIndex>> Create(const IndexParams& params);
  static StatusOr<std::unique_ptr<VectorIndex>> Load(const std::string& path,
                                                     const IndexParams& params);
  ~HnswVectorIndex() override;

  Status Add(const float* x, int64_t n, const int64_t* ids) override;
  StatusOr<SearchResult> Search(const float* queries, int64_t nq, int k,
                                const SearchParams& params) const override;
  StatusOr<std::vector<float>> Reconstruct(int64_t id) const override;
  Status ExportVectors(std::vector<int64_t>* ids, std::vector<float>* data) const override;
  int64_t size() const override;
  const IndexParams& params() const override { return params_; }
  const char* backend() const override { return "hnswlib"; }
  Status Save(const std::string& path) const override;

 private:
  struct Impl;  // keeps hnswlib out of this header
  HnswVectorIndex(IndexParams params, std::unique_ptr<Impl> impl);
  Status Reserve(int64_t needed);
  Status Insert(const float* x, int64_t n, const int64_t* ids);

  const IndexParams params_;
  std::unique_ptr<Impl> impl_;
  int default_ef_search_ = 32;
  mutable std::shared_mutex mu_;
};

}  // namespace lattice::store
