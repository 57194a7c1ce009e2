#include "index/builder.h"

#include <chrono>
#include <cstdio>
#include <random>
#include <unordered_map>

#include "common/item_id.h"
#include "store/index_catalog.h"
#include "store/qrels.h"
#include "store/relevance_metrics.h"
#include "store/retrieval_metrics.h"
#include "store/vector_block_store.h"
#include "store/vector_index.h"

namespace lattice {
namespace {

// Recall@k and MRR@k of `index` on `queries` sampled rows of `base` vs exact search.
StatusOr<nlohmann::json> Evaluate(const store::VectorIndex& index, const store::FloatMatrix& base,
                                  int64_t queries, int k, store::Metric metric) {
  queries = std::min(queries, base.rows);
  std::mt19937_64 rng(20261125);
  store::FloatMatrix q;
  q.rows = queries;
  q.dim = base.dim;
  for (int64_t i = 0; i < queries; ++i) {
    int64_t row = static_cast<int64_t>(rng() % static_cast<uint64_t>(base.rows));
    q.data.insert(q.data.end(), base.data.begin() + row * base.dim,
                  base.data.begin() + (row + 1) * base.dim);
  }
  k = static_cast<int>(std::min<int64_t>(k, base.rows));
  LATTICE_ASSIGN_OR_RETURN(store::IdMatrix truth, store::ExactGroundTruth(base, q, k, metric));
  LATTICE_ASSIGN_OR_RETURN(store::SearchResult found,
                           index.Search(q.data.data(), q.rows, k, store::SearchParams{}));
  store::IdMatrix got = store::ToIdMatrix(found);
  LATTICE_ASSIGN_OR_RETURN(double recall, store::RecallAtK(got, truth, k));
  LATTICE_ASSIGN_OR_RETURN(double mrr, store::MrrAtK(got, truth, k));
  std::string suffix = "@" + std::to_string(k);
  return nlohmann::json{{"recall" + suffix, recall}, {"mrr" + suffix, mrr},
                        {"eval_queries", queries}, {"eval", "sampled corpus rows vs exact search"}};
}

// The spec's retrieval metric ({name, qrels, relevant_at}) of `index`: each judged query is
// an item (`user_ids`, else row numbers), searched with its stored vector, itself dropped.
StatusOr<nlohmann::json> EvaluateJudgments(const store::VectorIndex& index,
                                           const nlohmann::json& metric,
                                           const std::vector<nlohmann::json>& user_ids) {
  const std::string name = metric.at("name").get<std::string>();
  const std::string path = metric.at("qrels").get<std::string>();
  LATTICE_ASSIGN_OR_RETURN(std::vector<int> ks, store::RelevanceMetricCutoffs(name));
  const store::RelevanceOptions options{metric.value("relevant_at", 1), ks};
  const int k = ks[0];
  StatusOr<store::Qrels> qrels = store::ReadQrelsFile(path);
  if (!qrels.ok()) {  // it was read and checked at submit: say so, without quoting it
    return Status::FailedPrecondition("metric.qrels: " + path +
                                      ": can no longer be read as judgments (it was at submit)");
  }
  std::unordered_map<std::string, int64_t> row_by_text;
  std::vector<std::string> text_by_row;
  for (size_t r = 0; r < user_ids.size(); ++r) {
    text_by_row.push_back(ItemIdText(user_ids[r]));
    row_by_text.emplace(text_by_row.back(), static_cast<int64_t>(r));
  }
  std::vector<store::RankedList> lists;
  std::vector<float> vectors;
  std::vector<int64_t> rows;
  for (const auto& entry : qrels->judgments) {
    int64_t row = -1;
    if (!user_ids.empty()) {
      auto it = row_by_text.find(entry.first);
      if (it != row_by_text.end()) row = it->second;
    } else {
      row = ParseRowNumber(entry.first).value_or(-1);
    }
    auto v = row < 0 ? StatusOr<std::vector<float>>(Status::NotFound("")) : index.Reconstruct(row);
    if (!v.ok()) {
      return Status::FailedPrecondition("metric.qrels: " + path + ": query '" + entry.first +
                                        "' is not an item of the index");
    }
    vectors.insert(vectors.end(), v->begin(), v->end());
    rows.push_back(row);
    lists.push_back({entry.first, {}});
  }
  const int search_k =
      std::min<int64_t>(k + 1, std::min<int64_t>(index.size(), store::kMaxSearchK));
  LATTICE_ASSIGN_OR_RETURN(store::SearchResult found,
                           index.Search(vectors.data(), static_cast<int64_t>(rows.size()), search_k,
                                        store::SearchParams{}));
  for (size_t q = 0; q < rows.size(); ++q) {
    bool dropped = false;
    for (int j = 0; j < found.k; ++j) {
      const int64_t id = found.ids[q * static_cast<size_t>(found.k) + static_cast<size_t>(j)];
      if (id < 0 || static_cast<int>(lists[q].items.size()) == k) continue;
      if (!dropped && id == rows[q]) {  // the query item itself
        dropped = true;
        continue;
      }
      lists[q].items.push_back(user_ids.empty() ? std::to_string(id)
                                                : text_by_row[static_cast<size_t>(id)]);
    }
  }
  LATTICE_ASSIGN_OR_RETURN(store::RelevanceReport report,
                           store::EvaluateRankings(lists, *qrels, options));
  if (report.queries == 0) {
    return Status::FailedPrecondition("metric.qrels: " + path +
                                      ": no query has a judged item with "
                                      "grade >= " +
                                      std::to_string(options.relevant_at));
  }
  nlohmann::json out = {{"metric", name},
                        {"queries", static_cast<int64_t>(lists.size())},
                        {"evaluated", report.queries},
                        {"relevant_at", options.relevant_at},
                        {"qrels", path}};
  for (size_t i = 0; i < report.names.size(); ++i) {
    out[report.names[i]] = report.means[i];
    if (report.names[i] == name) out["value"] = report.means[i];
  }
  return out;
}

}  // namespace

IndexBuilder::IndexBuilder(StateStore* store, std::string catalog_root, LineageFn lineage,
                           int64_t min_free_bytes, ItemIdsFn item_ids)
    : store_(store),
      catalog_root_(std::move(catalog_root)),
      lineage_(std::move(lineage)),
      item_ids_(std::move(item_ids)),
      min_free_bytes_(min_free_bytes) {}

nlohmann::json IndexBuilder::BuiltFrom(const SweepRecord& sweep) const {
  nlohmann::json out = {{"sweep", sweep.id.ToString()},
                        {"name", sweep.name},
                        {"encoder", sweep.spec.value("encoder", nlohmann::json())}};
  // An embed sweep's other settings that change the vectors, and its variant (the view
  // the coordinator hands over: scheduler/coordinator_index.cc).
  for (const char* key : {"pooling", "normalize", "variant"}) {
    if (sweep.spec.contains(key)) out[key] = sweep.spec[key];
  }
  if (lineage_) out.update(lineage_(sweep));
  return out;
}

IndexBuilder::~IndexBuilder() {
  for (auto& t : threads_) t.join();
}

void IndexBuilder::Start(const SweepRecord& sweep, int variant) {
  std::lock_guard<std::mutex> lock(mu_);
  ++running_;
  threads_.emplace_back([this, sweep, variant] {
    IndexBuildOutcome outcome = Build(sweep, variant);
    std::lock_guard<std::mutex> lock(mu_);
    finished_.push_back(std::move(outcome));
    --running_;
  });
}

void IndexBuilder::ReclaimBlocks(SweepId sweep) {
  std::lock_guard<std::mutex> lock(mu_);
  threads_.emplace_back([this, sweep] {
    Status s = VectorBlockStore(store_).Compact(sweep);
    if (!s.ok()) {
      std::fprintf(stderr, "index builder: sweep %s: reclaiming vector blocks: %s\n",
                   sweep.ToString().c_str(), s.ToString().c_str());
    }
  });
}

std::vector<IndexBuildOutcome> IndexBuilder::TakeFinished() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<IndexBuildOutcome> out;
  out.swap(finished_);
  return out;
}

bool IndexBuilder::Busy() const {
  std::lock_guard<std::mutex> lock(mu_);
  return running_ > 0;
}

IndexBuildOutcome IndexBuilder::Build(const SweepRecord& sweep, int variant) {
  IndexBuildOutcome out{sweep.id, Status::Ok(), nlohmann::json::object(), 0, variant};
  const nlohmann::json& spec = sweep.spec.at("index");
  std::string name = spec.at("name").get<std::string>();
  auto fail = [&](const Status& s) {
    out.status = s.WithContext("index " + name);
    return out;
  };
  auto start = std::chrono::steady_clock::now();
  VectorBlockStore blocks(store_);
  auto base = blocks.ReadAll(sweep.id, variant);
  if (!base.ok()) return fail(base.status());
  auto params = store::ParamsFromJson({{"type", spec.at("type")}, {"metric", spec.at("metric")},
                                       {"dim", base->dim}, {"build", spec.at("params")}});
  if (!params.ok()) return fail(params.status());
  auto index = store::MakeVectorIndex(*params);
  if (!index.ok()) return fail(index.status());
  std::vector<int64_t> ids(static_cast<size_t>(base->rows));
  for (int64_t i = 0; i < base->rows; ++i) ids[static_cast<size_t>(i)] = i;
  Status added = (*index)->Add(base->data.data(), base->rows, ids.data());
  if (!added.ok()) return fail(added);
  double build_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto eval = Evaluate(**index, *base, spec["eval"]["queries"].get<int64_t>(),
                       spec["eval"]["k"].get<int>(), params->metric);
  if (!eval.ok()) return fail(eval.status());
  out.meta = *eval;
  out.meta.update({{"vectors", base->rows}, {"dim", base->dim}, {"type", store::IndexTypeName(params->type)},
                   {"metric", spec.at("metric")}, {"backend", (*index)->backend()},
                   {"params", spec.at("params")}, {"build_seconds", build_s},
                   {"built_from", BuiltFrom(sweep)}, {"created_ms", NowMillis()}});
  if (spec.contains("require") && spec["require"].contains("recall@10") && out.meta.contains("recall@10")) {
    double need = spec["require"]["recall@10"].get<double>();
    double got = out.meta["recall@10"].get<double>();
    if (got < need) {
      char msg[160];
      std::snprintf(msg, sizeof(msg), "recall@10 %.4f is below the required %.4f; version not made current",
                    got, need);
      return fail(Status::FailedPrecondition(msg));
    }
  }
  std::vector<nlohmann::json> user_ids;
  if (item_ids_) {
    auto loaded = item_ids_(sweep);
    if (!loaded.ok()) return fail(loaded.status());
    user_ids = std::move(loaded).value();
  }
  if (sweep.spec.contains("metric")) {
    auto retrieval = EvaluateJudgments(**index, sweep.spec["metric"], user_ids);
    if (!retrieval.ok()) return fail(retrieval.status());
    out.meta["retrieval"] = *retrieval;
  }
  store::IndexCatalogOptions copts;
  copts.keep_versions = spec.value("keep_versions", 3);
  auto catalog = store::IndexCatalog::Open(catalog_root_, copts);
  if (!catalog.ok()) return fail(ClassifyNoSpace(catalog.status(), catalog_root_));
  auto items = blocks.ReadMetadata(sweep.id, variant);
  if (!items.ok()) return fail(items.status());
  // Room for the index files (about the vectors, plus graph links and item metadata) on
  // top of the reserve (none when it is 0); a publish that fails anyway for lack of space
  // removes what it wrote (IndexCatalog::Publish) and is reported as such.
  if (min_free_bytes_ > 0) {
    const int64_t index_bytes = base->rows * (base->dim * 4 + 64) + (int64_t{1} << 20);
    if (Status space = CheckFreeSpace(catalog_root_, min_free_bytes_, index_bytes);
        !space.ok()) {
      return fail(space);
    }
  }
  auto version = (*catalog)->Publish(name, **index, out.meta, &*items,
                                     user_ids.empty() ? nullptr : &user_ids);
  if (!version.ok()) return fail(ClassifyNoSpace(version.status(), catalog_root_));
  out.version = *version;
  return out;
}

}  // namespace lattice
