#include "scheduler/embed_spec.h"

#include <set>
#include <string>

#include "jobs/corpus_rows.h"
#include "jobs/embed_config.h"
#include "jobs/item_ids.h"
#include "jobs/job_config.h"
#include "scheduler/internal/spec_document.h"
#include "store/index_catalog.h"
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

}  // namespace

Status ExpandEmbedSweep(OrderedJson* doc, const nlohmann::json& base, SweepSpec* out) {
  if (doc->contains("search")) {
    return Status::InvalidArgument("search: not supported for kind embed (one job, many shards)");
  }
  int64_t shard_size = kDefaultShardSize;
  if (doc->contains("shard_size")) {
    const OrderedJson& s = (*doc)["shard_size"];
    if (!s.is_number_integer() || s.get<int64_t>() < 1) {
      return Status::InvalidArgument("shard_size: must be an integer >= 1, got " + s.dump());
    }
    shard_size = s.get<int64_t>();
  }
  if (doc->contains("output")) {
    LATTICE_RETURN_IF_ERROR(ValidateOutputDataset(*doc));
  } else {
    LATTICE_RETURN_IF_ERROR(ValidateIndex(doc, out->name));
  }
  LATTICE_RETURN_IF_ERROR(jobs::ValidateJobConfig(base));
  LATTICE_ASSIGN_OR_RETURN(jobs::EmbedConfig embed, jobs::ParseEmbedConfig(base));
  LATTICE_ASSIGN_OR_RETURN(int64_t rows, jobs::CountCorpusRows(embed.corpus));
  if (rows == 0) return Status::InvalidArgument("corpus: has no rows");
  // The user's ids (corpus.ids), read now so that a wrong count or a repeated id is a 400.
  LATTICE_RETURN_IF_ERROR(jobs::LoadCorpusItemIds(embed.corpus).status());
  int64_t shards = (rows + shard_size - 1) / shard_size;
  if (shards > 100000) {
    return Status::InvalidArgument("shard_size: " + std::to_string(shards) +
                                   " shards is too many (at most 100000); raise shard_size");
  }
  const int64_t per_shard = internal::CountSpecValues(base) + 3;  // + shard {begin, end}
  if (shards * per_shard > kMaxSweepValues) {
    return Status::InvalidArgument(
        "shard_size: " + std::to_string(shards) + " shards of " + std::to_string(per_shard) +
        " config values each is more than the limit of " + std::to_string(kMaxSweepValues) +
        " values; raise shard_size or shorten the config");
  }
  out->method = "shards";
  out->metric = "items_per_s";
  out->maximize = true;
  out->parameter_names = {"shard", "begin", "end"};
  for (int64_t i = 0; i < shards; ++i) {
    int64_t begin = i * shard_size;
    int64_t end = std::min(rows, begin + shard_size);
    out->points.push_back({{"shard", i}, {"begin", begin}, {"end", end}});
    nlohmann::json config = base;
    config["shard"] = {{"begin", begin}, {"end", end}};
    out->trial_configs.push_back(std::move(config));
  }
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
