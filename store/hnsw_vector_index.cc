// hnswlib backend. Compiled with -O3 -march=native (store/CMakeLists.txt) so that
// hnswlib's SSE/AVX/AVX-512 distance kernels are enabled; keep FAISS-free.
#include "store/hnsw_vector_index.h"

#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <exception>
#include <limits>
#include <mutex>
#include <string>

#include "store/internal/vector_index_util.h"

namespace lattice::store {

using Graph = hnswlib::HierarchicalNSW<float>;
using hnswlib::tableint;

struct HnswVectorIndex::Impl {
  std::unique_ptr<hnswlib::SpaceInterface<float>> space;  // must outlive graph
  std::unique_ptr<Graph> graph;
};

namespace {

std::unique_ptr<hnswlib::SpaceInterface<float>> MakeSpace(const IndexParams& p) {
  if (p.metric == Metric::kL2) return std::make_unique<hnswlib::L2Space>(p.dim);
  return std::make_unique<hnswlib::InnerProductSpace>(p.dim);
}

// hnswlib's searchKnn with the ef of this request instead of the shared, mutable ef_.
// Reads the graph only; callers hold the index's shared lock.
auto SearchKnnWithEf(const Graph& g, const float* q, size_t k, size_t ef) {
  tableint cur = g.enterpoint_node_;
  float cur_dist = g.fstdistfunc_(q, g.getDataByInternalId(cur), g.dist_func_param_);
  for (int level = g.maxlevel_; level > 0; --level) {
    bool changed = true;
    while (changed) {
      changed = false;
      const unsigned int* data = g.get_linklist(cur, level);
      const int size = g.getListCount(const_cast<unsigned int*>(data));
      const tableint* links = reinterpret_cast<const tableint*>(data + 1);
      for (int i = 0; i < size; ++i) {
        const float d = g.fstdistfunc_(q, g.getDataByInternalId(links[i]), g.dist_func_param_);
        if (d < cur_dist) {
          cur_dist = d;
          cur = links[i];
          changed = true;
        }
      }
    }
  }
  const size_t width = std::max(ef, k);
  return g.num_deleted_ ? g.searchBaseLayerST<true, false>(cur, q, width)
                        : g.searchBaseLayerST<false, false>(cur, q, width);
}

// Expected byte length of Graph::saveIndex's output (it reports no write errors itself).
int64_t ExpectedSaveBytes(const Graph& g) {
  int64_t bytes = 96 + static_cast<int64_t>(g.cur_element_count * g.size_data_per_element_);
  for (size_t i = 0; i < g.cur_element_count; ++i) {
    bytes += 4;
    if (g.element_levels_[i] > 0) bytes += g.size_links_per_element_ * g.element_levels_[i];
  }
  return bytes;
}

}  // namespace

HnswVectorIndex::HnswVectorIndex(IndexParams params, std::unique_ptr<Impl> impl)
    : params_(std::move(params)), impl_(std::move(impl)) {}

HnswVectorIndex::~HnswVectorIndex() = default;

StatusOr<std::unique_ptr<VectorIndex>> HnswVectorIndex::Create(const IndexParams& params) {
  using internal::BuildInt;
  LATTICE_ASSIGN_OR_RETURN(int64_t m, BuildInt(params, "M", 16, 2, 512));
  LATTICE_ASSIGN_OR_RETURN(int64_t efc, BuildInt(params, "ef_construction", 100, 1, 1 << 20));
  LATTICE_ASSIGN_OR_RETURN(int64_t ef, BuildInt(params, "ef_search", 32, 1, 1 << 20));
  LATTICE_ASSIGN_OR_RETURN(int64_t cap, BuildInt(params, "max_elements", 1024, 1, int64_t{1} << 32));
  LATTICE_ASSIGN_OR_RETURN(int64_t seed,
                           BuildInt(params, "seed", 100, 0, std::numeric_limits<int>::max()));
  auto impl = std::make_unique<Impl>();
  try {
    impl->space = MakeSpace(params);
    impl->graph = std::make_unique<Graph>(impl->space.get(), static_cast<size_t>(cap),
                                          static_cast<size_t>(m), static_cast<size_t>(efc),
                                          static_cast<size_t>(seed));
  } catch (const std::exception& e) {
    return Status::Internal(std::string("hnswlib: cannot create index: ") + e.what());
  }
  std::unique_ptr<HnswVectorIndex> index(new HnswVectorIndex(params, std::move(impl)));
  index->default_ef_search_ = static_cast<int>(ef);
  return std::unique_ptr<VectorIndex>(std::move(index));
}

StatusOr<std::unique_ptr<VectorIndex>> HnswVectorIndex::Load(const std::string& path,
                                                             const IndexParams& params) {
  auto impl = std::make_unique<Impl>();
  impl->space = MakeSpace(params);
  if (internal::FileBytes(path) < 96) return Status::IoError(path + ": too short for hnswlib");
  try {
    // This constructor leaves nothing to free if it throws (hnswlib's destructor would).
    impl->graph = std::make_unique<Graph>(impl->space.get(), path);
  } catch (const std::exception& e) {
    return Status::IoError(path + ": hnswlib loadIndex: " + e.what());
  }
  const Graph& g = *impl->graph;
  if (g.label_offset_ - g.offsetData_ != static_cast<size_t>(params.dim) * sizeof(float)) {
    return Status::IoError(path + ": vector size in file does not match dim " +
                           std::to_string(params.dim));
  }
  auto ef = internal::BuildInt(params, "ef_search", 32, 1, 1 << 20);
  if (!ef.ok()) return ef.status().WithContext(path);
  std::unique_ptr<HnswVectorIndex> index(new HnswVectorIndex(params, std::move(impl)));
  index->default_ef_search_ = static_cast<int>(*ef);
  return std::unique_ptr<VectorIndex>(std::move(index));
}

// Grows capacity (doubling) so that `needed` elements fit. Caller holds the unique lock.
Status HnswVectorIndex::Reserve(int64_t needed) {
  Graph& g = *impl_->graph;
  if (static_cast<size_t>(needed) <= g.max_elements_) return Status::Ok();
  const size_t target = std::max(static_cast<size_t>(needed), 2 * g.max_elements_);
  try {
    g.resizeIndex(target);
  } catch (const std::exception& e) {
    return Status::Internal("add: hnswlib resize to " + std::to_string(target) + ": " + e.what());
  }
  return Status::Ok();
}

// Inserts rows in parallel (hnswlib's addPoint is safe for concurrent inserts).
Status HnswVectorIndex::Insert(const float* x, int64_t n, const int64_t* ids) {
  Graph& g = *impl_->graph;
  const int dim = params_.dim;
  std::string error;
#pragma omp parallel for schedule(dynamic, 32) if (n >= 256)
  for (int64_t i = 0; i < n; ++i) {
    try {
      g.addPoint(x + i * dim, static_cast<hnswlib::labeltype>(ids[i]));
    } catch (const std::exception& e) {
#pragma omp critical(lattice_hnsw_add_error)
      if (error.empty()) error = "row " + std::to_string(i) + ": " + e.what();
    }
  }
  if (!error.empty()) return Status::Internal("add: hnswlib: " + error);
  return Status::Ok();
}

Status HnswVectorIndex::Add(const float* x, int64_t n, const int64_t* ids) {
  LATTICE_RETURN_IF_ERROR(internal::ValidateAddArgs(x, n, ids, params_.dim));
  if (n == 0) return Status::Ok();
  std::unique_lock<std::shared_mutex> lock(mu_);
  Graph& g = *impl_->graph;
  for (int64_t i = 0; i < n; ++i) {
    if (g.label_lookup_.count(static_cast<hnswlib::labeltype>(ids[i]))) {
      return Status::InvalidArgument("add: id " + std::to_string(ids[i]) + " (row " +
                                     std::to_string(i) + ") is already in the index");
    }
  }
  LATTICE_RETURN_IF_ERROR(Reserve(static_cast<int64_t>(g.cur_element_count) + n));
  return Insert(x, n, ids);
}

StatusOr<SearchResult> HnswVectorIndex::Search(const float* queries, int64_t nq, int k,
                                               const SearchParams& params) const {
  LATTICE_RETURN_IF_ERROR(internal::ValidateSearchArgs(queries, nq, k, params, params_.dim));
  SearchResult result = internal::EmptyResult(nq, k, params_.metric);
  std::shared_lock<std::shared_mutex> lock(mu_);
  const Graph& g = *impl_->graph;
  if (nq == 0 || g.cur_element_count == 0) return result;
  const size_t ef = static_cast<size_t>(params.ef_search > 0 ? params.ef_search
                                                             : default_ef_search_);
  const bool ip = params_.metric == Metric::kInnerProduct;
  try {
    for (int64_t qi = 0; qi < nq; ++qi) {
      auto top = SearchKnnWithEf(g, queries + qi * params_.dim, static_cast<size_t>(k), ef);
      while (top.size() > static_cast<size_t>(k)) top.pop();
      // Max-heap on distance: pop from the farthest, fill from the back.
      for (size_t slot = top.size(); slot-- > 0; top.pop()) {
        const size_t at = static_cast<size_t>(qi) * k + slot;
        result.ids[at] = static_cast<int64_t>(g.getExternalLabel(top.top().second));
        result.distances[at] = ip ? 1.0f - top.top().first : top.top().first;
      }
    }
  } catch (const std::exception& e) {
    return Status::Internal(std::string("search: hnswlib: ") + e.what());
  }
  return result;
}

StatusOr<std::vector<float>> HnswVectorIndex::Reconstruct(int64_t id) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  const Graph& g = *impl_->graph;
  const auto it = id < 0 ? g.label_lookup_.end()
                         : g.label_lookup_.find(static_cast<hnswlib::labeltype>(id));
  if (it == g.label_lookup_.end() || g.isMarkedDeleted(it->second)) {
    return Status::NotFound("item " + std::to_string(id) + " is not in the index");
  }
  const float* data = reinterpret_cast<const float*>(g.getDataByInternalId(it->second));
  return std::vector<float>(data, data + params_.dim);
}

Status HnswVectorIndex::ExportVectors(std::vector<int64_t>* ids, std::vector<float>* data) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  const Graph& g = *impl_->graph;
  ids->clear();
  data->clear();
  ids->reserve(g.cur_element_count);
  data->reserve(g.cur_element_count * static_cast<size_t>(params_.dim));
  for (hnswlib::tableint internal = 0; internal < g.cur_element_count; ++internal) {
    if (g.isMarkedDeleted(internal)) continue;
    ids->push_back(static_cast<int64_t>(g.getExternalLabel(internal)));
    const float* v = reinterpret_cast<const float*>(g.getDataByInternalId(internal));
    data->insert(data->end(), v, v + params_.dim);
  }
  return Status::Ok();
}

int64_t HnswVectorIndex::size() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  return static_cast<int64_t>(impl_->graph->cur_element_count);
}

Status HnswVectorIndex::Save(const std::string& path) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  Graph& g = *impl_->graph;  // saveIndex is not const but only reads
  Status s = internal::WriteFileAtomically(path, [&](const std::string& tmp) {
    try {
      g.saveIndex(tmp);
    } catch (const std::exception& e) {
      return Status::IoError(tmp + ": hnswlib saveIndex: " + e.what());
    }
    const int64_t want = ExpectedSaveBytes(g);
    const int64_t got = internal::FileBytes(tmp);
    if (got != want) {
      return Status::IoError(tmp + ": hnswlib wrote " + std::to_string(got) + " of " +
                             std::to_string(want) + " bytes (disk full?)");
    }
    return Status::Ok();
  });
  LATTICE_RETURN_IF_ERROR(s);
  return internal::WriteSidecar(path, backend(), params_,
                                static_cast<int64_t>(g.cur_element_count));
}

}  // namespace lattice::store
