#include "store/faiss_vector_index.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/index_io.h>

#include <algorithm>
#include <exception>
#include <limits>
#include <mutex>
#include <type_traits>

#include "store/internal/vector_index_util.h"

namespace lattice::store {
namespace {

using idx_t = faiss::Index::idx_t;
static_assert(std::is_same_v<idx_t, int64_t>, "faiss ids must be int64_t");

faiss::MetricType ToFaiss(Metric metric) {
  return metric == Metric::kL2 ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT;
}

// Builds the untrained inner index for a validated `p` (may throw faiss exceptions).
std::unique_ptr<faiss::Index> BuildInner(const IndexParams& p) {
  using internal::BuildInt;
  const faiss::MetricType metric = ToFaiss(p.metric);
  if (p.type == IndexType::kFlat) return std::make_unique<faiss::IndexFlat>(p.dim, metric);
  if (p.type == IndexType::kHnsw) {
    auto h = std::make_unique<faiss::IndexHNSWFlat>(p.dim, *BuildInt(p, "M", 16, 2, 512), metric);
    h->hnsw.efConstruction = static_cast<int>(*BuildInt(p, "ef_construction", 100, 1, 1 << 20));
    h->hnsw.efSearch = static_cast<int>(*BuildInt(p, "ef_search", 32, 1, 1 << 20));
    return h;
  }
  const size_t nlist = static_cast<size_t>(*BuildInt(p, "nlist", 100, 1, 1 << 20));
  auto quantizer = std::make_unique<faiss::IndexFlat>(p.dim, metric);
  std::unique_ptr<faiss::IndexIVF> ivf;
  if (p.type == IndexType::kIvfFlat) {
    ivf = std::make_unique<faiss::IndexIVFFlat>(quantizer.get(), p.dim, nlist, metric);
  } else {
    const size_t m = static_cast<size_t>(*BuildInt(p, "m", 8, 1, p.dim));
    const size_t nbits = static_cast<size_t>(*BuildInt(p, "nbits", 8, 1, 16));
    ivf = std::make_unique<faiss::IndexIVFPQ>(quantizer.get(), p.dim, nlist, m, nbits, metric);
  }
  ivf->own_fields = true;
  quantizer.release();  // now owned by ivf
  return ivf;
}

// IVF indexes keep a direct map (position -> list/offset, 8 bytes per vector) so that
// Reconstruct works; files saved before it existed get one at load. Other types: no-op.
void EnsureDirectMap(faiss::Index* inner) {
  auto* ivf = dynamic_cast<faiss::IndexIVF*>(inner);
  if (ivf != nullptr && ivf->direct_map.no()) ivf->make_direct_map(true);
}

// Checks that a loaded FAISS object matches the sidecar's params.
Status CheckLoaded(const faiss::IndexIDMap2* idmap, const IndexParams& p) {
  if (idmap == nullptr || idmap->index == nullptr) {
    return Status::IoError("not an IndexIDMap2 written by FaissVectorIndex");
  }
  if (idmap->d != p.dim || idmap->metric_type != ToFaiss(p.metric)) {
    return Status::IoError("file holds dim " + std::to_string(idmap->d) +
                           " / another metric than the sidecar's params");
  }
  const faiss::Index* inner = idmap->index;
  bool ok = (p.type == IndexType::kFlat && dynamic_cast<const faiss::IndexFlat*>(inner)) ||
            (p.type == IndexType::kHnsw && dynamic_cast<const faiss::IndexHNSWFlat*>(inner)) ||
            (p.type == IndexType::kIvfFlat && dynamic_cast<const faiss::IndexIVFFlat*>(inner)) ||
            (p.type == IndexType::kIvfPq && dynamic_cast<const faiss::IndexIVFPQ*>(inner));
  if (!ok) return Status::IoError(std::string("file's index class does not match type ") + IndexTypeName(p.type));
  return Status::Ok();
}

}  // namespace

FaissVectorIndex::FaissVectorIndex(IndexParams params, std::unique_ptr<faiss::IndexIDMap2> index)
    : params_(std::move(params)), index_(std::move(index)) {}

FaissVectorIndex::~FaissVectorIndex() = default;

Status FaissVectorIndex::ReadDefaults() {
  using internal::BuildInt;
  const IndexParams& p = params_;
  LATTICE_ASSIGN_OR_RETURN(int64_t nprobe, BuildInt(p, "nprobe", 8, 1, 1 << 20));
  LATTICE_ASSIGN_OR_RETURN(int64_t ef, BuildInt(p, "ef_search", 32, 1, 1 << 20));
  LATTICE_ASSIGN_OR_RETURN(int64_t nlist, BuildInt(p, "nlist", 100, 1, 1 << 20));
  LATTICE_ASSIGN_OR_RETURN(int64_t nbits, BuildInt(p, "nbits", 8, 1, 16));
  LATTICE_ASSIGN_OR_RETURN(train_size_,
                           BuildInt(p, "train_size", 0, 1, std::numeric_limits<int64_t>::max()));
  default_nprobe_ = static_cast<int>(nprobe);
  default_ef_search_ = static_cast<int>(ef);
  min_train_ = nlist;
  if (p.type == IndexType::kIvfPq) min_train_ = std::max<int64_t>(nlist, int64_t{1} << nbits);
  return Status::Ok();
}

StatusOr<std::unique_ptr<VectorIndex>> FaissVectorIndex::Create(const IndexParams& params) {
  try {
    std::unique_ptr<faiss::Index> inner = BuildInner(params);
    EnsureDirectMap(inner.get());
    auto idmap = std::make_unique<faiss::IndexIDMap2>(inner.get());
    idmap->own_fields = true;
    inner.release();
    std::unique_ptr<FaissVectorIndex> index(new FaissVectorIndex(params, std::move(idmap)));
    LATTICE_RETURN_IF_ERROR(index->ReadDefaults());
    return std::unique_ptr<VectorIndex>(std::move(index));
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("index: faiss rejected the params: ") + e.what());
  }
}

StatusOr<std::unique_ptr<VectorIndex>> FaissVectorIndex::Load(const std::string& path,
                                                              const IndexParams& params) {
  std::unique_ptr<faiss::Index> raw;
  try {
    raw.reset(faiss::read_index(path.c_str()));
  } catch (const std::exception& e) {
    return Status::IoError(path + ": faiss read_index: " + e.what());
  }
  std::unique_ptr<faiss::IndexIDMap2> idmap(dynamic_cast<faiss::IndexIDMap2*>(raw.get()));
  if (idmap) raw.release();
  if (Status s = CheckLoaded(idmap.get(), params); !s.ok()) return s.WithContext(path);
  idmap->own_fields = true;
  try {
    EnsureDirectMap(idmap->index);
  } catch (const std::exception& e) {
    return Status::IoError(path + ": faiss make_direct_map: " + e.what());
  }
  std::unique_ptr<FaissVectorIndex> index(new FaissVectorIndex(params, std::move(idmap)));
  LATTICE_RETURN_IF_ERROR(index->ReadDefaults());
  return std::unique_ptr<VectorIndex>(std::move(index));
}

// Trains an IVF index on the first min(n, train_size) vectors of its first Add.
Status FaissVectorIndex::TrainIfNeeded(const float* x, int64_t n) {
  faiss::Index* inner = index_->index;
  if (inner->is_trained) return Status::Ok();
  if (n < min_train_) {
    return Status::FailedPrecondition(
        std::string("add: ") + IndexTypeName(params_.type) + " index must be trained on at least " +
        std::to_string(min_train_) + " vectors (nlist" +
        (params_.type == IndexType::kIvfPq ? std::string(", 2^nbits") : std::string()) +
        "); the first Add brought " + std::to_string(n));
  }
  const int64_t nt = train_size_ > 0 ? std::max(min_train_, std::min(n, train_size_)) : n;
  inner->train(nt, x);
  index_->is_trained = inner->is_trained;
  return Status::Ok();
}

Status FaissVectorIndex::Add(const float* x, int64_t n, const int64_t* ids) {
  LATTICE_RETURN_IF_ERROR(internal::ValidateAddArgs(x, n, ids, params_.dim));
  if (n == 0) return Status::Ok();
  std::unique_lock<std::shared_mutex> lock(mu_);
  for (int64_t i = 0; i < n; ++i) {
    if (index_->rev_map.count(ids[i])) {
      return Status::InvalidArgument("add: id " + std::to_string(ids[i]) + " (row " +
                                     std::to_string(i) + ") is already in the index");
    }
  }
  try {
    LATTICE_RETURN_IF_ERROR(TrainIfNeeded(x, n));
    index_->add_with_ids(n, x, ids);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("add: faiss ") + IndexTypeName(params_.type) + ": " + e.what());
  }
  return Status::Ok();
}

StatusOr<SearchResult> FaissVectorIndex::Search(const float* queries, int64_t nq, int k,
                                                const SearchParams& params) const {
  LATTICE_RETURN_IF_ERROR(internal::ValidateSearchArgs(queries, nq, k, params, params_.dim));
  SearchResult result = internal::EmptyResult(nq, k, params_.metric);
  std::shared_lock<std::shared_mutex> lock(mu_);
  if (nq == 0 || index_->ntotal == 0) return result;
  faiss::SearchParametersIVF ivf;
  faiss::SearchParametersHNSW hnsw;
  const faiss::SearchParameters* sp = nullptr;
  if (params_.type == IndexType::kIvfFlat || params_.type == IndexType::kIvfPq) {
    ivf.nprobe = static_cast<size_t>(params.nprobe > 0 ? params.nprobe : default_nprobe_);
    sp = &ivf;
  } else if (params_.type == IndexType::kHnsw) {
    hnsw.efSearch = std::max(k, params.ef_search > 0 ? params.ef_search : default_ef_search_);
    sp = &hnsw;
  }
  try {
    if (sp == &hnsw) {
      // FAISS 1.7.3's HNSW::search sizes its candidate heap from the member efSearch and
      // only reads SearchParametersHNSW for the stopping rule, so a larger per-request ef
      // silently does nothing. Set the member too, under hnsw_mu_ (serialises FAISS-HNSW
      // searches; the hnswlib backend has no such limit).
      std::lock_guard<std::mutex> ef_lock(hnsw_mu_);
      static_cast<faiss::IndexHNSW*>(index_->index)->hnsw.efSearch = hnsw.efSearch;
      index_->index->search(nq, queries, k, result.distances.data(), result.ids.data(), sp);
    } else {
      index_->index->search(nq, queries, k, result.distances.data(), result.ids.data(), sp);
    }
  } catch (const std::exception& e) {
    return Status::Internal(std::string("search: faiss ") + IndexTypeName(params_.type) + ": " + e.what());
  }
  // Positions -> caller ids (what IndexIDMap2::search would do, but it refuses params).
  const float pad = params_.metric == Metric::kL2 ? std::numeric_limits<float>::infinity()
                                                 : -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < result.ids.size(); ++i) {
    int64_t& id = result.ids[i];
    if (id >= 0) {
      id = index_->id_map[static_cast<size_t>(id)];
    } else {
      result.distances[i] = pad;
    }
  }
  return result;
}

StatusOr<std::vector<float>> FaissVectorIndex::Reconstruct(int64_t id) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  const auto it = index_->rev_map.find(id);
  if (it == index_->rev_map.end()) {
    return Status::NotFound("item " + std::to_string(id) + " is not in the index");
  }
  std::vector<float> out(static_cast<size_t>(params_.dim));
  try {
    index_->index->reconstruct(it->second, out.data());
  } catch (const std::exception& e) {
    return Status::Internal(std::string("reconstruct: faiss ") + IndexTypeName(params_.type) + ": " + e.what());
  }
  return out;
}

Status FaissVectorIndex::ExportVectors(std::vector<int64_t>* ids, std::vector<float>* data) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  const int64_t n = index_->ntotal;
  ids->assign(index_->id_map.begin(), index_->id_map.end());
  data->resize(static_cast<size_t>(n) * static_cast<size_t>(params_.dim));
  try {
    if (n > 0) index_->index->reconstruct_n(0, n, data->data());
  } catch (const std::exception& e) {
    return Status::Internal(std::string("export: faiss ") + IndexTypeName(params_.type) + ": " +
                            e.what());
  }
  return Status::Ok();
}

int64_t FaissVectorIndex::size() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  return index_->ntotal;
}

Status FaissVectorIndex::Save(const std::string& path) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  Status s = internal::WriteFileAtomically(path, [&](const std::string& tmp) {
    try {
      faiss::write_index(index_.get(), tmp.c_str());
    } catch (const std::exception& e) {
      return Status::IoError(tmp + ": faiss write_index: " + e.what());
    }
    return Status::Ok();
  });
  LATTICE_RETURN_IF_ERROR(s);
  return internal::WriteSidecar(path, backend(), params_, index_->ntotal);
}

}  // namespace lattice::store
