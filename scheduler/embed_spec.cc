#include "scheduler/embed_spec.h"

#include <algorithm>
#include <optional>
#include <set>
#include <string>
#include <unordered_set>

#include "common/item_id.h"
#include "jobs/corpus_rows.h"
#include "jobs/data_roots.h"
#include "jobs/embed_config.h"
#include "jobs/item_ids.h"
#include "jobs/job_config.h"
#include "scheduler/internal/spec_document.h"
#include "scheduler/search_space.h"
#include "store/index_catalog.h"
#include "store/qrels.h"
#include "store/relevance_metrics.h"
#include "store/vector_index.h"

namespace lattice::scheduler {
namespace {

using OrderedJson = nlohmann::ordered_json;

Status CheckIndexKeys(const OrderedJson& index) {
  static const std::set<std::string> kKeys = {"name", "type", "metric", "params", "require",
                                              "eval", "keep_versions"};
  for (const auto& item : index.items()) {
    if (!kKeys.count(item.key())) {
      return Status::InvalidArgument("index." + item.key() +
                                     ": unknown key (allowed: eval, keep_versions, metric, name, "
                                     "params, require, type)");
    }
  }
  return Status::Ok();
}

Status ValidateIndex(OrderedJson* doc, const std::string& sweep_name) {
  if (!doc->contains("index")) (*doc)["index"] = OrderedJson::object();
  OrderedJson& index = (*doc)["index"];
  if (!index.is_object()) return Status::InvalidArgument("index: must be a mapping");
  LATTICE_RETURN_IF_ERROR(CheckIndexKeys(index));
  const bool defaulted = !index.contains("name");
  if (defaulted) index["name"] = sweep_name;
  if (!index["name"].is_string()) return Status::InvalidArgument("index.name: must be a string");
  // The catalog's rule, checked now rather than when the index is published (the name is
  // a directory of the catalog).
  if (Status s = store::ValidateIndexName(index["name"].get<std::string>()); !s.ok()) {
    return s.WithContext(defaulted ? "index.name (defaults to the sweep name)" : "index.name");
  }
  if (!index.contains("type")) index["type"] = "hnsw";
  if (!index["type"].is_string()) {
    return Status::InvalidArgument("index.type: must be flat, ivf_flat, ivf_pq or hnsw, got " +
                                   index["type"].dump());
  }
  LATTICE_ASSIGN_OR_RETURN(store::IndexType type,
                           store::ParseIndexType(index["type"].get<std::string>()));
  if (!index.contains("metric")) index["metric"] = "l2";
  if (!index["metric"].is_string() || !store::ParseMetric(index["metric"].get<std::string>()).ok()) {
    return Status::InvalidArgument("index.metric: must be l2 or ip, got " + index["metric"].dump());
  }
  if (!index.contains("params")) index["params"] = OrderedJson::object();
  if (!index["params"].is_object()) return Status::InvalidArgument("index.params: must be a mapping");
  // The backend's own check, before a whole corpus is embedded for an index that cannot be
  // built (a typo such as ef_serch). The dimension is not known yet (dim 0).
  LATTICE_RETURN_IF_ERROR(store::ValidateIndexParams(
      store::IndexParams{type, store::Metric::kL2, /*dim=*/0, nlohmann::json::parse(index["params"].dump())}));
  if (index.contains("require")) {
    const OrderedJson& req = index["require"];
    if (!req.is_object()) return Status::InvalidArgument("index.require: must be a mapping");
    for (const auto& item : req.items()) {
      if (item.key() != "recall@10") {
        return Status::InvalidArgument("index.require." + item.key() + ": only recall@10 is supported");
      }
      // Written so that NaN fails too.
      const bool in_range = item.value().is_number() && item.value().get<double>() > 0 &&
                            item.value().get<double>() <= 1;
      if (!in_range) {
        return Status::InvalidArgument("index.require.recall@10: must be a number in (0, 1], got " +
                                       item.value().dump());
      }
    }
  }
  if (!index.contains("eval")) index["eval"] = {{"queries", 500}, {"k", 10}};
  OrderedJson& eval = index["eval"];
  if (!eval.is_object()) return Status::InvalidArgument("index.eval: must be a mapping");
  for (const char* key : {"queries", "k"}) {
    if (!eval.contains(key)) eval[key] = std::string(key) == "k" ? 10 : 500;
    if (!eval[key].is_number_integer() || eval[key].get<int64_t>() < 1 ||
        eval[key].get<int64_t>() > 100000) {
      return Status::InvalidArgument(std::string("index.eval.") + key +
                                     ": must be an integer in [1, 100000]");
    }
  }
  if (!index.contains("keep_versions")) index["keep_versions"] = 3;
  if (!index["keep_versions"].is_number_integer() || index["keep_versions"].get<int64_t>() < 1) {
    return Status::InvalidArgument("index.keep_versions: must be an integer >= 1");
  }
  return Status::Ok();
}

// output: {dataset: <name>} (jobs/activation_dataset.h): the vectors become an activation
// dataset instead of an index. The name follows the index names' rule.
Status ValidateOutputDataset(const OrderedJson& doc) {
  if (doc.contains("index")) {
    return Status::InvalidArgument(
        "index: an embed sweep writes either an index or output.dataset, not both");
  }
  const OrderedJson& output = doc["output"];
  if (!output.is_object()) return Status::InvalidArgument("output: must be a mapping");
  for (const auto& item : output.items()) {
    if (item.key() != "dataset") {
      return Status::InvalidArgument("output." + item.key() + ": unknown key (allowed: dataset)");
    }
  }
  if (!output.contains("dataset") || !output["dataset"].is_string()) {
    return Status::InvalidArgument("output.dataset: required, the dataset's name (a string)");
  }
  return store::ValidateIndexName(output["dataset"].get<std::string>())
      .WithContext("output.dataset");
}

// ---- variants (search) and the retrieval metric ----------------------------------------

// search: {method: grid, parameters: {...}}: the embedding variants. Only what changes the
// vectors may be swept.
StatusOr<SearchSpace> ParseVariantSearch(const OrderedJson& search) {
  if (!search.is_object()) return Status::InvalidArgument("search: must be a mapping");
  for (const auto& item : search.items()) {
    if (item.key() == "metric") {
      return Status::InvalidArgument(
          "search.metric: an embed sweep ranks its variants by the top-level metric: {name: "
          "ndcg@10, qrels: FILE, relevant_at: 3}");
    }
    if (item.key() != "method" && item.key() != "parameters") {
      return Status::InvalidArgument("search." + item.key() +
                                     ": unknown key (allowed: method, parameters)");
    }
  }
  if (!search.contains("method") || search["method"] != "grid") {
    return Status::InvalidArgument(
        "search.method: an embed sweep's variants are a grid (method: grid), got " +
        (search.contains("method") ? search["method"].dump() : std::string("nothing")));
  }
  if (!search.contains("parameters")) return Status::InvalidArgument("search.parameters: required");
  const OrderedJson& parameters = search["parameters"];
  if (parameters.is_object()) {
    for (const auto& item : parameters.items()) {
      const std::string& key = item.key();
      const bool allowed = key == "pooling" || key == "normalize" || key == "encoder" ||
                           key.rfind("encoder.", 0) == 0;
      if (!allowed) {
        return Status::InvalidArgument(
            "search.parameters." + key +
            ": not an embedding parameter (allowed: pooling, normalize, encoder, encoder.<key>)");
      }
    }
  }
  return ParseSearchSpace(parameters, "grid");
}

// A point's values as an index-name suffix: "pooling-mean-normalize-true"; nullopt when a
// value is not a scalar (a whole encoder object).
std::optional<std::string> VariantLabel(const nlohmann::json& point,
                                        const std::vector<std::string>& names) {
  std::string label;
  for (const std::string& name : names) {
    const nlohmann::json& v = point.at(name);
    if (v.is_object() || v.is_array() || v.is_null()) return std::nullopt;
    label +=
        (label.empty() ? "" : "-") + name + "-" + (v.is_string() ? v.get<std::string>() : v.dump());
  }
  return label;
}

// The index names of the variants: "<index.name>-<label>", or "<index.name>-v<i>" when the
// label makes no valid name. InvalidArgument when two variants would share one.
StatusOr<std::vector<std::string>> VariantIndexNames(const std::string& base,
                                                     const std::vector<nlohmann::json>& points,
                                                     const std::vector<std::string>& names) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (size_t i = 0; i < points.size(); ++i) {
    std::optional<std::string> label = VariantLabel(points[i], names);
    std::string name = label ? base + "-" + *label : "";
    if (!label || !store::ValidateIndexName(name).ok()) name = base + "-v" + std::to_string(i);
    LATTICE_RETURN_IF_ERROR(store::ValidateIndexName(name).WithContext(
        "search: variant " + std::to_string(i) + " (" + DescribePoint(points[i], names) + ")"));
    if (!seen.insert(name).second) {
      return Status::InvalidArgument("search: variants " + DescribePoint(points[i], names) +
                                     " and another would both publish index \"" + name + "\"");
    }
    out.push_back(std::move(name));
  }
  return out;
}

// metric: {name: ndcg@10, qrels: FILE, relevant_at: 3}. The judgments are read now: every
// query id must be an item of the corpus (`ids`: its user ids; empty: row numbers < rows).
Status ValidateRetrievalMetric(OrderedJson* metric, const std::vector<nlohmann::json>& ids,
                               int64_t rows) {
  if (!metric->is_object()) {
    return Status::InvalidArgument("metric: must be a mapping {name, qrels, relevant_at}");
  }
  for (const auto& item : metric->items()) {
    if (item.key() != "name" && item.key() != "qrels" && item.key() != "relevant_at") {
      return Status::InvalidArgument("metric." + item.key() +
                                     ": unknown key (allowed: name, qrels, relevant_at)");
    }
  }
  if (!metric->contains("name") || !(*metric)["name"].is_string()) {
    return Status::InvalidArgument("metric.name: required, e.g. ndcg@10");
  }
  LATTICE_RETURN_IF_ERROR(store::RelevanceMetricCutoffs((*metric)["name"].get<std::string>())
                              .status()
                              .WithContext("metric.name"));
  if (!metric->contains("relevant_at")) (*metric)["relevant_at"] = 1;
  const OrderedJson& at = (*metric)["relevant_at"];
  if (!at.is_number_integer() || at.get<int64_t>() < 1 || at.get<int64_t>() > 1000000) {
    return Status::InvalidArgument("metric.relevant_at: must be an integer >= 1, got " + at.dump());
  }
  if (!metric->contains("qrels") || !(*metric)["qrels"].is_string()) {
    return Status::InvalidArgument(
        "metric.qrels: required, a relevance judgments file (TREC or JSON)");
  }
  const std::string path = (*metric)["qrels"].get<std::string>();
  // Like every input file a spec names: only under the data roots (its parse errors quote it).
  LATTICE_RETURN_IF_ERROR(jobs::CheckDataPath(path).WithContext("metric.qrels"));
  StatusOr<store::Qrels> qrels = store::ReadQrelsFile(path);
  if (!qrels.ok()) {
    const std::string why = qrels.status().code() == StatusCode::kNotFound
                                ? "file not found: " + path
                                : qrels.status().message();
    return Status::InvalidArgument("metric.qrels: " + why);
  }
  std::unordered_set<std::string> items;
  for (const nlohmann::json& id : ids) items.insert(ItemIdText(id));
  const int relevant_at = static_cast<int>(at.get<int64_t>());
  bool any_relevant = false;
  for (const auto& [query, judged] : qrels->judgments) {
    const std::optional<int64_t> row = ParseRowNumber(query);
    const bool is_row = ids.empty() && row && *row < rows;
    if (ids.empty() ? !is_row : items.count(query) == 0) {
      return Status::InvalidArgument(
          "metric.qrels: " + path + ": query '" + query + "' is not an item of the corpus " +
          (ids.empty() ? "(its items are row numbers 0.." + std::to_string(rows - 1) + ")"
                       : "(not among corpus.ids)") +
          "; each query is an item, searched with its own vector");
    }
    for (const auto& [item, grade] : judged) any_relevant |= grade >= relevant_at;
  }
  if (!any_relevant) {
    return Status::InvalidArgument("metric.qrels: " + path + ": no judgment has a grade >= " +
                                   std::to_string(relevant_at) + " (metric.relevant_at)");
  }
  return Status::Ok();
}

// One variant per grid point of `search` (or one, with no parameters, without it); fills
// doc["variants"] (when there is a search) and returns the points.
StatusOr<std::vector<nlohmann::json>> ExpandVariants(OrderedJson* doc, const nlohmann::json& base,
                                                     std::vector<std::string>* names) {
  if (!doc->contains("search")) return std::vector<nlohmann::json>{nlohmann::json::object()};
  LATTICE_ASSIGN_OR_RETURN(SearchSpace space, ParseVariantSearch((*doc)["search"]));
  for (const ParameterDomain& d : space.parameters) names->push_back(d.name);
  LATTICE_ASSIGN_OR_RETURN(auto searcher, MakeSearcher("grid", std::move(space), 0, 0));
  LATTICE_ASSIGN_OR_RETURN(std::vector<nlohmann::json> points, searcher->Expand());
  if (points.size() > 1000) {
    return Status::InvalidArgument("search.parameters: " + std::to_string(points.size()) +
                                   " variants (indexes) is more than the limit of 1000");
  }
  LATTICE_ASSIGN_OR_RETURN(
      std::vector<std::string> indexes,
      VariantIndexNames((*doc)["index"]["name"].get<std::string>(), points, *names));
  OrderedJson variants = OrderedJson::array();
  for (size_t i = 0; i < points.size(); ++i) {
    const nlohmann::json config = ApplyParameters(base, points[i]);
    Status valid = jobs::ValidateJobConfig(config);
    if (!valid.ok()) {
      return valid.WithContext("search: variant " + std::to_string(i) + " (" +
                               DescribePoint(points[i], *names) + ")");
    }
    OrderedJson embedding = OrderedJson::object();  // what makes this variant's vectors
    for (const char* key : {"encoder", "pooling", "normalize"}) {
      if (config.contains(key)) embedding[key] = OrderedJson(config[key]);
    }
    variants.push_back({{"variant", i},
                        {"index", indexes[i]},
                        {"params", OrderedJson(points[i])},
                        {"embedding", embedding}});
  }
  (*doc)["variants"] = std::move(variants);
  return points;
}

// shard_size: corpus rows per shard (trial); default kDefaultShardSize.
StatusOr<int64_t> ShardSize(const OrderedJson& doc) {
  if (!doc.contains("shard_size")) return kDefaultShardSize;
  const OrderedJson& s = doc["shard_size"];
  if (!s.is_number_integer() || s.get<int64_t>() < 1) {
    return Status::InvalidArgument("shard_size: must be an integer >= 1, got " + s.dump());
  }
  return s.get<int64_t>();
}

// One trial per (variant, shard), variant-major; `swept`: the points carry "variant".
void AddShardTrials(const nlohmann::json& base, const std::vector<nlohmann::json>& variants,
                    bool swept, int64_t rows, int64_t shard_size, SweepSpec* out) {
  const int64_t shards = (rows + shard_size - 1) / shard_size;
  for (size_t v = 0; v < variants.size(); ++v) {
    const nlohmann::json variant_base = ApplyParameters(base, variants[v]);
    for (int64_t i = 0; i < shards; ++i) {
      const int64_t begin = i * shard_size;
      const int64_t end = std::min(rows, begin + shard_size);
      nlohmann::json point = variants[v];
      if (swept) point["variant"] = v;
      point.update({{"shard", i}, {"begin", begin}, {"end", end}});
      out->points.push_back(std::move(point));
      nlohmann::json config = variant_base;
      config["shard"] = {{"begin", begin}, {"end", end}};
      out->trial_configs.push_back(std::move(config));
    }
  }
}

}  // namespace

Status ExpandEmbedSweep(OrderedJson* doc, const nlohmann::json& base, SweepSpec* out) {
  LATTICE_ASSIGN_OR_RETURN(const int64_t shard_size, ShardSize(*doc));
  if (doc->contains("output")) {
    for (const char* key : {"search", "metric"}) {
      if (doc->contains(key)) {
        return Status::InvalidArgument(std::string(key) +
                                       ": an embed sweep with output.dataset writes one dataset; " +
                                       "variants and their metric are for index sweeps");
      }
    }
    LATTICE_RETURN_IF_ERROR(ValidateOutputDataset(*doc));
  } else {
    LATTICE_RETURN_IF_ERROR(ValidateIndex(doc, out->name));
  }
  LATTICE_RETURN_IF_ERROR(jobs::ValidateJobConfig(base));
  LATTICE_ASSIGN_OR_RETURN(jobs::EmbedConfig embed, jobs::ParseEmbedConfig(base));
  LATTICE_ASSIGN_OR_RETURN(int64_t rows, jobs::CountCorpusRows(embed.corpus));
  if (rows == 0) return Status::InvalidArgument("corpus: has no rows");
  // The user's ids (corpus.ids), read now so that a wrong count or a repeated id is a 400.
  LATTICE_ASSIGN_OR_RETURN(std::vector<nlohmann::json> ids, jobs::LoadCorpusItemIds(embed.corpus));
  std::vector<std::string> names;  // the swept parameters, in spec order
  LATTICE_ASSIGN_OR_RETURN(std::vector<nlohmann::json> variants, ExpandVariants(doc, base, &names));
  const bool swept = doc->contains("search");
  int64_t shards = (rows + shard_size - 1) / shard_size;
  const int64_t trials = shards * static_cast<int64_t>(variants.size());
  if (trials > 100000) {
    return Status::InvalidArgument(
        "shard_size: " + std::to_string(shards) + " shards x " + std::to_string(variants.size()) +
        " variants is too many trials (at most 100000); raise shard_size");
  }
  int64_t per_shard = internal::CountSpecValues(base) + 3;  // + shard {begin, end}
  for (const nlohmann::json& v : variants) {
    per_shard = std::max(per_shard, internal::CountSpecValues(ApplyParameters(base, v)) + 4);
  }
  if (trials * per_shard > kMaxSweepValues) {
    return Status::InvalidArgument(
        "shard_size: " + std::to_string(trials) + " shards of " + std::to_string(per_shard) +
        " config values each is more than the limit of " + std::to_string(kMaxSweepValues) +
        " values; raise shard_size or shorten the config");
  }
  out->method = "shards";
  out->metric = "items_per_s";
  out->maximize = true;
  if (doc->contains("metric")) {
    LATTICE_RETURN_IF_ERROR(ValidateRetrievalMetric(&(*doc)["metric"], ids, rows));
    out->metric = (*doc)["metric"]["name"].get<std::string>();
  }
  out->parameter_names = names;
  if (swept) out->parameter_names.push_back("variant");
  for (const char* name : {"shard", "begin", "end"}) out->parameter_names.push_back(name);
  AddShardTrials(base, variants, swept, rows, shard_size, out);
  return Status::Ok();
}

StatusOr<std::vector<nlohmann::json>> IndexItemIds(const nlohmann::json& spec) {
  if (!spec.is_object() || !spec.contains("corpus")) return std::vector<nlohmann::json>();
  nlohmann::json config = {{"kind", "embed"}, {"corpus", spec["corpus"]}};
  config["encoder"] = spec.value("encoder", nlohmann::json{{"type", "flatten"}});
  LATTICE_ASSIGN_OR_RETURN(jobs::EmbedConfig embed, jobs::ParseEmbedConfig(config));
  return jobs::LoadCorpusItemIds(embed.corpus);
}

}  // namespace lattice::scheduler
