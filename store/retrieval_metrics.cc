#include "store/retrieval_metrics.h"

#include <faiss/IndexFlat.h>
#include <faiss/utils/distances.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <unordered_set>

namespace lattice::store {
namespace {

Status CheckShapes(const IdMatrix& retrieved, const IdMatrix& truth, int k) {
  for (const IdMatrix* m : {&retrieved, &truth}) {
    if (m->rows < 0 || m->cols < 0 ||
        m->ids.size() != static_cast<size_t>(m->rows) * static_cast<size_t>(m->cols)) {
      return Status::InvalidArgument("metrics: ids.size() " + std::to_string(m->ids.size()) +
                                     " != rows * cols");
    }
  }
  if (retrieved.rows != truth.rows) {
    return Status::InvalidArgument("metrics: retrieved has " + std::to_string(retrieved.rows) +
                                   " rows, truth " + std::to_string(truth.rows));
  }
  if (k < 1 || k > retrieved.cols || k > truth.cols) {
    return Status::InvalidArgument("metrics: k must be in [1, min(" +
                                   std::to_string(retrieved.cols) + ", " +
                                   std::to_string(truth.cols) + ")], got " + std::to_string(k));
  }
  return Status::Ok();
}

// Mean over rows of per_row(retrieved top-k row, relevant set, truth row).
StatusOr<double> MeanOverRows(
    const IdMatrix& retrieved, const IdMatrix& truth, int k,
    const std::function<double(const int64_t*, const std::unordered_set<int64_t>&,
                               const int64_t*)>& per_row) {
  LATTICE_RETURN_IF_ERROR(CheckShapes(retrieved, truth, k));
  if (retrieved.rows == 0) return 0.0;
  double sum = 0;
  for (int64_t r = 0; r < retrieved.rows; ++r) {
    const int64_t* got = retrieved.ids.data() + r * retrieved.cols;
    const int64_t* want = truth.ids.data() + r * truth.cols;
    std::unordered_set<int64_t> relevant;
    for (int i = 0; i < k; ++i) {
      if (want[i] >= 0) relevant.insert(want[i]);
    }
    sum += per_row(got, relevant, want);
  }
  return sum / static_cast<double>(retrieved.rows);
}

bool IsRelevant(const std::unordered_set<int64_t>& relevant, int64_t id) {
  return id >= 0 && relevant.count(id) > 0;
}

// Reads an .fvecs/.ivecs file into `out` (4-byte elements).
template <typename T>
Status ReadVecs(const std::string& path, int64_t max_rows, int64_t* rows, int* dim,
                std::vector<T>* out) {
  static_assert(sizeof(T) == 4, "vecs elements are 4 bytes");
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) {
    if (errno == ENOENT) return Status::NotFound(path + ": no such file");
    return Status::IoError(path + ": " + std::strerror(errno));
  }
  *rows = 0;
  *dim = 0;
  int32_t d = 0;
  while ((max_rows <= 0 || *rows < max_rows) && std::fread(&d, 4, 1, f.get()) == 1) {
    if (d <= 0 || (*dim != 0 && d != *dim)) {
      return Status::IoError(path + ": row " + std::to_string(*rows) + ": dim " +
                             std::to_string(d) + (*dim ? " differs from " + std::to_string(*dim)
                                                       : std::string(" is not positive")));
    }
    *dim = d;
    const size_t at = out->size();
    out->resize(at + static_cast<size_t>(d));
    if (std::fread(out->data() + at, 4, static_cast<size_t>(d), f.get()) !=
        static_cast<size_t>(d)) {
      return Status::IoError(path + ": row " + std::to_string(*rows) + " is truncated");
    }
    ++*rows;
  }
  if (std::ferror(f.get())) return Status::IoError(path + ": read error");
  if (max_rows <= 0 && !std::feof(f.get())) {
    return Status::IoError(path + ": trailing bytes after row " + std::to_string(*rows));
  }
  if (max_rows <= 0 && std::ftell(f.get()) % 4 != 0) {
    return Status::IoError(path + ": truncated dim prefix after row " + std::to_string(*rows));
  }
  return Status::Ok();
}

}  // namespace

IdMatrix ToIdMatrix(const SearchResult& result) { return {result.nq, result.k, result.ids}; }

StatusOr<double> RecallAtK(const IdMatrix& retrieved, const IdMatrix& truth, int k) {
  return MeanOverRows(retrieved, truth, k, [k](const int64_t* got, const auto& relevant, auto) {
    std::unordered_set<int64_t> hits;  // a duplicated retrieved id counts once
    for (int i = 0; i < k; ++i) {
      if (IsRelevant(relevant, got[i])) hits.insert(got[i]);
    }
    return static_cast<double>(hits.size()) / k;
  });
}

StatusOr<double> MrrAtK(const IdMatrix& retrieved, const IdMatrix& truth, int k) {
  return MeanOverRows(retrieved, truth, k, [k](const int64_t* got, auto, const int64_t* want) {
    for (int i = 0; i < k; ++i) {
      if (want[0] >= 0 && got[i] == want[0]) return 1.0 / (i + 1);
    }
    return 0.0;
  });
}

StatusOr<double> MapAtK(const IdMatrix& retrieved, const IdMatrix& truth, int k) {
  return MeanOverRows(retrieved, truth, k, [k](const int64_t* got, const auto& relevant, auto) {
    std::unordered_set<int64_t> seen;
    double sum = 0;
    for (int i = 0; i < k; ++i) {
      if (IsRelevant(relevant, got[i]) && seen.insert(got[i]).second) {
        sum += static_cast<double>(seen.size()) / (i + 1);
      }
    }
    return sum / k;
  });
}

StatusOr<double> NdcgAtK(const IdMatrix& retrieved, const IdMatrix& truth, int k) {
  return MeanOverRows(retrieved, truth, k, [k](const int64_t* got, const auto& relevant, auto) {
    std::unordered_set<int64_t> seen;
    double dcg = 0, ideal = 0;
    for (int i = 0; i < k; ++i) {
      const double gain = 1.0 / std::log2(i + 2.0);
      ideal += gain;
      if (IsRelevant(relevant, got[i]) && seen.insert(got[i]).second) dcg += gain;
    }
    return dcg / ideal;
  });
}

StatusOr<FloatMatrix> ReadFvecs(const std::string& path, int64_t max_rows) {
  FloatMatrix m;
  LATTICE_RETURN_IF_ERROR(ReadVecs<float>(path, max_rows, &m.rows, &m.dim, &m.data));
  return m;
}

StatusOr<IdMatrix> ReadIvecs(const std::string& path, int64_t max_rows) {
  std::vector<int32_t> raw;
  IdMatrix m;
  LATTICE_RETURN_IF_ERROR(ReadVecs<int32_t>(path, max_rows, &m.rows, &m.cols, &raw));
  m.ids.assign(raw.begin(), raw.end());
  return m;
}

StatusOr<IdMatrix> ExactGroundTruth(const FloatMatrix& base, const FloatMatrix& queries, int k,
                                    Metric metric) {
  if (base.dim < 1 || base.dim != queries.dim) {
    return Status::InvalidArgument("ground truth: base dim " + std::to_string(base.dim) +
                                   " vs query dim " + std::to_string(queries.dim));
  }
  if (k < 1 || k > base.rows) {
    return Status::InvalidArgument("ground truth: k must be in [1, " +
                                   std::to_string(base.rows) + "], got " + std::to_string(k));
  }
  IdMatrix out{queries.rows, k, std::vector<int64_t>(static_cast<size_t>(queries.rows) * k)};
  std::vector<float> dist(out.ids.size());
  try {
    faiss::IndexFlat flat(base.dim, metric == Metric::kL2 ? faiss::METRIC_L2
                                                          : faiss::METRIC_INNER_PRODUCT);
    flat.add(base.rows, base.data.data());
    flat.search(queries.rows, queries.data.data(), k, dist.data(), out.ids.data());
  } catch (const std::exception& e) {
    return Status::Internal(std::string("ground truth: faiss: ") + e.what());
  }
  return out;
}

StatusOr<SearchResult> ExactSearch(const VectorIndex& index, const float* queries, int64_t nq,
                                   int k) {
  if (k < 1 || k > kMaxSearchK) {
    return Status::InvalidArgument("k: must be between 1 and " + std::to_string(kMaxSearchK) +
                                   ", got " + std::to_string(k));
  }
  std::vector<int64_t> ids;
  std::vector<float> data;
  LATTICE_RETURN_IF_ERROR(index.ExportVectors(&ids, &data));
  const bool l2 = index.params().metric == Metric::kL2;
  SearchResult out;
  out.nq = static_cast<int>(nq);
  out.k = k;
  out.ids.assign(static_cast<size_t>(nq) * static_cast<size_t>(k), -1);
  out.distances.assign(out.ids.size(), l2 ? std::numeric_limits<float>::infinity()
                                          : -std::numeric_limits<float>::infinity());
  if (ids.empty() || nq == 0) return out;
  // What IndexFlat{L2,IP}::search runs, straight over the exported rows (no second copy).
  const size_t d = static_cast<size_t>(index.dim());
  try {
    if (l2) {
      faiss::knn_L2sqr(queries, data.data(), d, static_cast<size_t>(nq), ids.size(),
                       static_cast<size_t>(k), out.distances.data(), out.ids.data());
    } else {
      faiss::knn_inner_product(queries, data.data(), d, static_cast<size_t>(nq), ids.size(),
                               static_cast<size_t>(k), out.distances.data(), out.ids.data());
    }
  } catch (const std::exception& e) {
    return Status::Internal(std::string("exact search: faiss: ") + e.what());
  }
  for (size_t i = 0; i < out.ids.size(); ++i) {
    int64_t& id = out.ids[i];
    if (id >= 0) {
      id = ids[static_cast<size_t>(id)];  // position -> item id
    } else {
      out.distances[i] = l2 ? std::numeric_limits<float>::infinity()
                            : -std::numeric_limits<float>::infinity();
    }
  }
  return out;
}

}  // namespace lattice::store
