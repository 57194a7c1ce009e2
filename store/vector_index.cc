// VectorIndex factory, parameter validation, persistence dispatch and shared helpers.
#include "store/vector_index.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <unordered_set>

#include "store/faiss_vector_index.h"
#include "store/hnsw_vector_index.h"
#include "store/internal/vector_index_util.h"

namespace lattice::store {
namespace {

// Which library backs type "hnsw" when build.backend is absent. Chosen by measurement
// (bench/ann_bench.cc): hnswlib compiled -march=native beats Debian's non-AVX2 FAISS.
constexpr const char* kDefaultHnswBackend = "hnswlib";
constexpr int kMaxDim = 65536;
constexpr const char* kSidecarFormat = "lattice.vector_index";
constexpr int kSidecarVersion = 1;

const std::set<std::string>& AllowedKeys(IndexType type) {
  static const std::set<std::string> kFlat = {};
  static const std::set<std::string> kIvfFlat = {"nlist", "nprobe", "train_size"};
  static const std::set<std::string> kIvfPq = {"nlist", "nprobe", "train_size", "m", "nbits"};
  static const std::set<std::string> kHnsw = {"M",         "ef_construction", "ef_search",
                                              "backend",   "max_elements",    "seed"};
  switch (type) {
    case IndexType::kIvfFlat: return kIvfFlat;
    case IndexType::kIvfPq: return kIvfPq;
    case IndexType::kHnsw: return kHnsw;
    case IndexType::kFlat: break;
  }
  return kFlat;
}

Status ValidateTypeParams(const IndexParams& p) {
  using internal::BuildInt;
  if (p.type == IndexType::kIvfFlat || p.type == IndexType::kIvfPq) {
    LATTICE_RETURN_IF_ERROR(BuildInt(p, "nlist", 100, 1, 1 << 20).status());
    LATTICE_RETURN_IF_ERROR(BuildInt(p, "nprobe", 8, 1, 1 << 20).status());
    LATTICE_RETURN_IF_ERROR(
        BuildInt(p, "train_size", 0, 1, std::numeric_limits<int64_t>::max()).status());
  }
  if (p.type == IndexType::kIvfPq) {
    const bool dim_known = p.dim > 0;
    LATTICE_ASSIGN_OR_RETURN(int64_t m, BuildInt(p, "m", 8, 1, dim_known ? p.dim : kMaxDim));
    if (dim_known && p.dim % m != 0) {
      return Status::InvalidArgument("index.params.m: must divide dim " +
                                     std::to_string(p.dim) + ", got " + std::to_string(m));
    }
    LATTICE_RETURN_IF_ERROR(BuildInt(p, "nbits", 8, 1, 16).status());
  }
  if (p.type == IndexType::kHnsw) {
    LATTICE_RETURN_IF_ERROR(BuildInt(p, "M", 16, 2, 512).status());
    LATTICE_RETURN_IF_ERROR(BuildInt(p, "ef_construction", 100, 1, 1 << 20).status());
    LATTICE_RETURN_IF_ERROR(BuildInt(p, "ef_search", 32, 1, 1 << 20).status());
    LATTICE_RETURN_IF_ERROR(BuildInt(p, "max_elements", 1024, 1, int64_t{1} << 32).status());
    LATTICE_RETURN_IF_ERROR(BuildInt(p, "seed", 100, 0, std::numeric_limits<int>::max()).status());
    if (p.build.contains("backend")) {
      const auto& b = p.build["backend"];
      if (!b.is_string() || (b != "faiss" && b != "hnswlib")) {
        return Status::InvalidArgument(
            "index.params.backend: must be \"faiss\" or \"hnswlib\", got " + b.dump());
      }
    }
  }
  return Status::Ok();
}

Status ValidateParams(const IndexParams& p) {
  if (p.dim < 1 || p.dim > kMaxDim) {
    return Status::InvalidArgument("index.dim: must be in [1, " + std::to_string(kMaxDim) +
                                   "], got " + std::to_string(p.dim));
  }
  return ValidateIndexParams(p);
}

std::string UseHnswlib(const IndexParams& p) {
  return internal::BuildString(p, "backend", kDefaultHnswBackend);
}

}  // namespace

const char* IndexTypeName(IndexType type) {
  switch (type) {
    case IndexType::kFlat: return "flat";
    case IndexType::kIvfFlat: return "ivf_flat";
    case IndexType::kIvfPq: return "ivf_pq";
    case IndexType::kHnsw: return "hnsw";
  }
  return "unknown";
}

StatusOr<IndexType> ParseIndexType(const std::string& text) {
  for (IndexType t : {IndexType::kFlat, IndexType::kIvfFlat, IndexType::kIvfPq, IndexType::kHnsw}) {
    if (text == IndexTypeName(t)) return t;
  }
  return Status::InvalidArgument("index.type: must be one of flat, ivf_flat, ivf_pq, hnsw; got \"" +
                                 text + "\"");
}

Status ValidateIndexParams(const IndexParams& p) {
  if (p.dim < 0 || p.dim > kMaxDim) {
    return Status::InvalidArgument("index.dim: must be in [1, " + std::to_string(kMaxDim) +
                                   "], got " + std::to_string(p.dim));
  }
  if (!p.build.is_object() && !p.build.is_null()) {  // null = no build params
    return Status::InvalidArgument("index.params: must be an object, got " + p.build.dump());
  }
  const auto& allowed = AllowedKeys(p.type);
  for (auto it = p.build.begin(); it != p.build.end(); ++it) {
    if (!allowed.count(it.key())) {
      std::string list;
      for (const auto& key : allowed) list += (list.empty() ? "" : ", ") + std::string(key);
      return Status::InvalidArgument("index.params." + it.key() + ": unknown key for type " +
                                     IndexTypeName(p.type) +
                                     (list.empty() ? " (it takes none)" : " (allowed: " + list + ")"));
    }
  }
  return ValidateTypeParams(p);
}

const char* MetricName(Metric metric) { return metric == Metric::kL2 ? "l2" : "ip"; }

StatusOr<Metric> ParseMetric(const std::string& text) {
  if (text == "l2") return Metric::kL2;
  if (text == "ip") return Metric::kInnerProduct;
  return Status::InvalidArgument("index.metric: must be \"l2\" or \"ip\", got \"" + text + "\"");
}

nlohmann::json ParamsToJson(const IndexParams& params) {
  return {{"type", IndexTypeName(params.type)},
          {"metric", MetricName(params.metric)},
          {"dim", params.dim},
          {"build", params.build}};
}

StatusOr<IndexParams> ParamsFromJson(const nlohmann::json& json) {
  if (!json.is_object()) return Status::InvalidArgument("index: must be an object");
  IndexParams p;
  if (!json.contains("type") || !json["type"].is_string()) {
    return Status::InvalidArgument("index.type: required string");
  }
  LATTICE_ASSIGN_OR_RETURN(p.type, ParseIndexType(json["type"].get<std::string>()));
  if (!json.contains("dim") || !json["dim"].is_number_integer()) {
    return Status::InvalidArgument("index.dim: required integer");
  }
  p.dim = json["dim"].get<int>();
  if (json.contains("metric")) {
    if (!json["metric"].is_string()) return Status::InvalidArgument("index.metric: must be a string");
    LATTICE_ASSIGN_OR_RETURN(p.metric, ParseMetric(json["metric"].get<std::string>()));
  }
  if (json.contains("build")) p.build = json["build"];
  return p;
}

StatusOr<std::unique_ptr<VectorIndex>> MakeVectorIndex(const IndexParams& params) {
  LATTICE_RETURN_IF_ERROR(ValidateParams(params));
  if (params.type == IndexType::kHnsw && UseHnswlib(params) == "hnswlib") {
    return HnswVectorIndex::Create(params);
  }
  return FaissVectorIndex::Create(params);
}

StatusOr<std::unique_ptr<VectorIndex>> LoadVectorIndex(const std::string& path) {
  const std::string sidecar = internal::SidecarPath(path);
  LATTICE_ASSIGN_OR_RETURN(std::string text, internal::ReadWholeFile(sidecar));
  nlohmann::json meta = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (meta.is_discarded() || !meta.is_object() || meta.value("format", "") != kSidecarFormat ||
      !meta.contains("params") || !meta.contains("file_bytes") ||
      !meta["file_bytes"].is_number_integer()) {
    return Status::IoError(sidecar + ": not a Lattice vector index sidecar");
  }
  if (meta.value("version", 0) > kSidecarVersion) {
    return Status::IoError(sidecar + ": format version " + meta["version"].dump() +
                           " is newer than this build understands");
  }
  auto params = ParamsFromJson(meta["params"]);
  if (!params.ok()) return params.status().WithContext(sidecar);
  if (Status s = ValidateParams(*params); !s.ok()) return s.WithContext(sidecar);
  const int64_t bytes = internal::FileBytes(path);
  if (bytes < 0) return Status::NotFound(path + ": no such index file");
  if (bytes != meta["file_bytes"].get<int64_t>()) {
    return Status::IoError(path + ": " + std::to_string(bytes) + " bytes but sidecar records " +
                           meta["file_bytes"].dump() + " (torn or mismatched save)");
  }
  const std::string backend = meta.value("backend", "");
  if (backend == "hnswlib") return HnswVectorIndex::Load(path, *params);
  if (backend == "faiss") return FaissVectorIndex::Load(path, *params);
  return Status::IoError(sidecar + ": unknown backend \"" + backend + "\"");
}

Status CheckVectors(const std::vector<float>& vectors, int dim) {
  if (dim < 1) return Status::InvalidArgument("dim: must be >= 1, got " + std::to_string(dim));
  if (vectors.empty() || vectors.size() % static_cast<size_t>(dim) != 0) {
    return Status::InvalidArgument("vectors: " + std::to_string(vectors.size()) +
                                   " floats is not a non-zero multiple of dim " +
                                   std::to_string(dim));
  }
  return internal::CheckFinite(vectors.data(), static_cast<int64_t>(vectors.size() / dim), dim,
                               "vectors");
}

namespace internal {

Status CheckFinite(const float* x, int64_t n, int dim, const char* what) {
  for (int64_t i = 0; i < n; ++i) {
    const float* row = x + i * dim;
    for (int j = 0; j < dim; ++j) {
      if (!std::isfinite(row[j])) {
        return Status::InvalidArgument(std::string(what) + " row " + std::to_string(i) + ": " +
                                       (std::isnan(row[j]) ? "NaN" : "Inf") + " at column " +
                                       std::to_string(j));
      }
    }
  }
  return Status::Ok();
}

Status ValidateAddArgs(const float* x, int64_t n, const int64_t* ids, int dim) {
  if (n < 0) return Status::InvalidArgument("add: n must be >= 0, got " + std::to_string(n));
  if (n == 0) return Status::Ok();
  if (x == nullptr || ids == nullptr) return Status::InvalidArgument("add: null vectors or ids");
  std::unordered_set<int64_t> seen;
  seen.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0) {
      return Status::InvalidArgument("add: id at row " + std::to_string(i) +
                                     " must be >= 0, got " + std::to_string(ids[i]));
    }
    if (!seen.insert(ids[i]).second) {
      return Status::InvalidArgument("add: duplicate id " + std::to_string(ids[i]) +
                                     " at row " + std::to_string(i));
    }
  }
  return CheckFinite(x, n, dim, "add: vector");
}

Status ValidateSearchArgs(const float* queries, int64_t nq, int k, const SearchParams& params,
                          int dim) {
  if (k <= 0 || k > kMaxSearchK) {
    return Status::InvalidArgument("search: k must be in [1, " + std::to_string(kMaxSearchK) +
                                   "], got " + std::to_string(k));
  }
  if (nq < 0) return Status::InvalidArgument("search: nq must be >= 0");
  if (params.nprobe < 0) return Status::InvalidArgument("search: nprobe must be >= 0");
  if (params.ef_search < 0) return Status::InvalidArgument("search: ef_search must be >= 0");
  if (nq > 0 && queries == nullptr) return Status::InvalidArgument("search: null queries");
  return CheckFinite(queries, nq, dim, "search: query");
}

SearchResult EmptyResult(int64_t nq, int k, Metric metric) {
  SearchResult r;
  r.nq = static_cast<int>(nq);
  r.k = k;
  const float pad = metric == Metric::kL2 ? std::numeric_limits<float>::infinity()
                                          : -std::numeric_limits<float>::infinity();
  r.ids.assign(static_cast<size_t>(nq) * k, -1);
  r.distances.assign(static_cast<size_t>(nq) * k, pad);
  return r;
}

StatusOr<int64_t> BuildInt(const IndexParams& params, const char* key, int64_t dflt, int64_t lo,
                           int64_t hi) {
  if (!params.build.is_object() || !params.build.contains(key)) return dflt;
  const auto& v = params.build[key];
  if (!v.is_number_integer()) {
    return Status::InvalidArgument(std::string("index.params.") + key +
                                   ": must be an integer, got " + v.dump());
  }
  const int64_t value = v.get<int64_t>();
  if (value < lo || value > hi) {
    return Status::InvalidArgument(std::string("index.params.") + key + ": must be in [" +
                                   std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
                                   std::to_string(value));
  }
  return value;
}

std::string BuildString(const IndexParams& params, const char* key, const std::string& dflt) {
  if (!params.build.is_object() || !params.build.contains(key) || !params.build[key].is_string()) {
    return dflt;
  }
  return params.build[key].get<std::string>();
}

namespace {
Status FsyncPath(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) return Status::IoError(path + ": open for fsync: " + std::strerror(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Status::IoError(path + ": fsync: " + std::strerror(err));
  return Status::Ok();
}

std::string ParentDir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}
}  // namespace

Status WriteFileAtomically(const std::string& path,
                           const std::function<Status(const std::string& tmp)>& write) {
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." +
                          std::to_string(counter.fetch_add(1));
  Status s = write(tmp);
  if (s.ok()) s = FsyncPath(tmp, /*directory=*/false);
  if (s.ok() && std::rename(tmp.c_str(), path.c_str()) != 0) {
    s = Status::IoError(path + ": rename from " + tmp + ": " + std::strerror(errno));
  }
  if (!s.ok()) {
    std::remove(tmp.c_str());
    return s;
  }
  return FsyncPath(ParentDir(path), /*directory=*/true);
}

Status WriteStringAtomically(const std::string& path, const std::string& contents) {
  return WriteFileAtomically(path, [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << contents;
    out.flush();
    if (!out) return Status::IoError(tmp + ": write failed");
    return Status::Ok();
  });
}

StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (FileBytes(path) < 0) return Status::NotFound(path + ": no such file");
    return Status::IoError(path + ": cannot open: " + std::strerror(errno));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::IoError(path + ": read failed");
  return ss.str();
}

int64_t FileBytes(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int64_t>(st.st_size);
}

std::string SidecarPath(const std::string& path) { return path + ".params.json"; }

Status WriteSidecar(const std::string& path, const char* backend, const IndexParams& params,
                    int64_t size) {
  nlohmann::json meta = {{"format", kSidecarFormat},
                         {"version", kSidecarVersion},
                         {"backend", backend},
                         {"params", ParamsToJson(params)},
                         {"size", size},
                         {"file_bytes", FileBytes(path)}};
  return WriteStringAtomically(SidecarPath(path), meta.dump(2) + "\n");
}

}  // namespace internal
}  // namespace lattice::store
