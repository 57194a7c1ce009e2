#include "scheduler/sweep_spec.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include "jobs/job_config.h"
#include "scheduler/embed_spec.h"
#include "scheduler/internal/spec_document.h"
#include "scheduler/search_space.h"

namespace lattice::scheduler {
namespace {

using OrderedJson = nlohmann::ordered_json;

// Keys a trial's job config is made of; everything else at the top level is scheduler-only.
// (sleep_ms and crash are the noop kind's settings.)
const char* const kJobKeys[] = {"kind",      "seed",    "dataset", "model",   "train",
                                "sleep_ms",  "crash",   "encoder", "corpus",  "pooling",
                                "normalize", "batch_size", "teacher", "distill", "checkpoint",
                                "alignment"};
const char* const kSchedulerKeys[] = {"name",      "search",     "max_concurrent_trials",
                                      "max_attempts", "resources", "shard_size",
                                      "index",     "repeats", "output", "metric"};
const char* const kSearchKeys[] = {"method", "metric", "parameters", "seed", "max_trials"};

std::string Join(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

// The document: a mapping (scheduler/internal/spec_document.h enforces the limits).
StatusOr<OrderedJson> ParseDocument(const std::string& text) {
  LATTICE_ASSIGN_OR_RETURN(OrderedJson doc, internal::ParseSpecDocument(text));
  if (!doc.is_object()) {
    return Status::InvalidArgument("spec: must be a mapping with name, kind, ... (got " +
                                   std::string(doc.type_name()) + ")");
  }
  return doc;
}

// ---- field helpers --------------------------------------------------------------------

// Optional integer obj[key] in [min, max]; `path` names it in errors.
StatusOr<std::optional<int64_t>> OptionalInt(const OrderedJson& obj, const std::string& key,
                                             const std::string& path, int64_t min,
                                             int64_t max = INT_MAX) {
  if (!obj.contains(key)) return std::optional<int64_t>();
  const OrderedJson& v = obj[key];
  if (!v.is_number_integer()) {
    return Status::InvalidArgument(path + ": must be an integer, got " + v.dump());
  }
  const int64_t x = v.get<int64_t>();
  if (x < min || x > max) {
    return Status::InvalidArgument(path + ": must be in [" + std::to_string(min) + ", " +
                                   std::to_string(max) + "], got " + std::to_string(x));
  }
  return std::optional<int64_t>(x);
}

Status CheckKeys(const OrderedJson& obj, const std::string& path,
                 const std::vector<std::string>& allowed) {
  for (const auto& item : obj.items()) {
    if (std::find(allowed.begin(), allowed.end(), item.key()) == allowed.end()) {
      std::string list;
      for (const std::string& a : allowed) list += (list.empty() ? "" : ", ") + a;
      return Status::InvalidArgument(Join(path, item.key()) + ": unknown key (allowed: " + list +
                                     ")");
    }
  }
  return Status::Ok();
}

Status ParseIdentity(const OrderedJson& doc, SweepSpec* out) {
  static const std::regex kName(R"([A-Za-z0-9_.-]{1,64})");
  if (!doc.contains("name")) return Status::InvalidArgument("name: required");
  if (!doc["name"].is_string() || !std::regex_match(doc["name"].get<std::string>(), kName)) {
    return Status::InvalidArgument("name: must match [A-Za-z0-9_.-]{1,64}, got " +
                                   doc["name"].dump());
  }
  out->name = doc["name"].get<std::string>();
  if (!doc.contains("kind")) return Status::InvalidArgument("kind: required");
  std::optional<JobKind> kind =
      doc["kind"].is_string() ? ParseJobKind(doc["kind"].get<std::string>()) : std::nullopt;
  if (!kind) {
    return Status::InvalidArgument("kind: unknown job kind " + doc["kind"].dump() +
                                   " (train, embed or noop)");
  }
  out->kind = *kind;
  LATTICE_ASSIGN_OR_RETURN(auto seed, OptionalInt(doc, "seed", "seed", INT64_MIN, INT64_MAX));
  (void)seed;
  for (const char* section : {"dataset", "model", "train"}) {
    if (doc.contains(section) && !doc[section].is_object()) {
      return Status::InvalidArgument(std::string(section) + ": must be a mapping, got " +
                                     doc[section].dump());
    }
  }
  return Status::Ok();
}

Status ParseLimits(OrderedJson* doc, SweepSpec* out) {
  LATTICE_ASSIGN_OR_RETURN(auto concurrent,
                           OptionalInt(*doc, "max_concurrent_trials", "max_concurrent_trials", 1));
  out->max_concurrent = static_cast<int>(concurrent.value_or(0));
  LATTICE_ASSIGN_OR_RETURN(auto attempts, OptionalInt(*doc, "max_attempts", "max_attempts", 1));
  out->max_attempts = static_cast<int>(attempts.value_or(kDefaultMaxAttempts));
  (*doc)["max_attempts"] = out->max_attempts;
  if (!doc->contains("resources")) return Status::Ok();
  const OrderedJson& res = (*doc)["resources"];
  if (!res.is_object()) return Status::InvalidArgument("resources: must be a mapping");
  LATTICE_RETURN_IF_ERROR(CheckKeys(res, "resources", {"workers_per_trial"}));
  LATTICE_ASSIGN_OR_RETURN(auto workers,
                           OptionalInt(res, "workers_per_trial", "resources.workers_per_trial", 1));
  out->workers_per_trial = static_cast<int>(workers.value_or(1));
  if (out->workers_per_trial > kMaxWorkersPerTrial) {
    return Status::InvalidArgument("resources.workers_per_trial: at most " +
                                   std::to_string(kMaxWorkersPerTrial) + ", got " +
                                   std::to_string(out->workers_per_trial));
  }
  if (out->workers_per_trial > 1 && out->kind == JobKind::kEmbed) {
    return Status::InvalidArgument(
        "resources.workers_per_trial: an embed sweep's shards each run on one worker (the "
        "shards are spread over the workers already); got " +
        std::to_string(out->workers_per_trial));
  }
  const bool sae = doc->contains("model") && (*doc)["model"].is_object() &&
                   (*doc)["model"].value("type", "") == "sae";
  if (out->workers_per_trial > 1 && sae) {
    return Status::InvalidArgument(
        "resources.workers_per_trial: a sparse autoencoder (model type sae) trains on one "
        "worker; got " + std::to_string(out->workers_per_trial));
  }
  (*doc)["resources"]["workers_per_trial"] = out->workers_per_trial;
  return Status::Ok();
}

Status ParseMetric(OrderedJson* search, SweepSpec* out) {
  out->metric = kDefaultMetric;
  out->maximize = true;
  if (search->contains("metric")) {
    const OrderedJson& m = (*search)["metric"];
    if (!m.is_object()) {
      return Status::InvalidArgument("search.metric: must be a mapping {name, goal}, got " +
                                     m.dump());
    }
    LATTICE_RETURN_IF_ERROR(CheckKeys(m, "search.metric", {"name", "goal"}));
    if (m.contains("name")) {
      if (!m["name"].is_string() || m["name"].get<std::string>().empty()) {
        return Status::InvalidArgument("search.metric.name: must be a non-empty string");
      }
      out->metric = m["name"].get<std::string>();
    }
    if (m.contains("goal")) {
      if (m["goal"] != "maximize" && m["goal"] != "minimize") {
        return Status::InvalidArgument("search.metric.goal: must be maximize or minimize, got " +
                                       m["goal"].dump());
      }
      out->maximize = m["goal"] == "maximize";
    }
  }
  (*search)["metric"] = {{"name", out->metric}, {"goal", out->maximize ? "maximize" : "minimize"}};
  return Status::Ok();
}

// The job keys of the spec: what every trial's job config starts from.
nlohmann::json JobConfigBase(const OrderedJson& doc) {
  nlohmann::json base = nlohmann::json::object();
  for (const char* key : kJobKeys) {
    if (doc.contains(key)) base[key] = nlohmann::json(doc[key]);
  }
  return base;
}

// Rejects a sweep whose trial configs would hold more than kMaxSweepValues values in all,
// before any point is expanded. `base_values`: the values of the job config base.
Status CheckSweepSize(const SearchSpace& space, uint64_t trials, int64_t base_values) {
  if (trials > kMaxTrialsPerSweep) return Status::Ok();  // the searcher names this limit
  int64_t per_trial = base_values;
  for (const ParameterDomain& d : space.parameters) {
    int64_t most = 1;
    for (const nlohmann::json& v : d.values) most = std::max(most, internal::CountSpecValues(v));
    per_trial += most;
  }
  const int64_t total = static_cast<int64_t>(trials) * per_trial;  // <= 10^5 * ~10^5
  if (total > kMaxSweepValues) {
    return Status::InvalidArgument(
        "search: " + std::to_string(trials) + " trials of up to " + std::to_string(per_trial) +
        " config values each is " + std::to_string(total) + " values, more than the limit of " +
        std::to_string(kMaxSweepValues) + "; use fewer trials or a smaller config");
  }
  return Status::Ok();
}

// Validates `search` (filling defaults into it) and expands its points; `*space_out` is
// the validated search space. `base_values`: values in the job config base.
Status ParseSearch(OrderedJson* search, int64_t base_values, SweepSpec* out,
                   SearchSpace* space_out) {
  if (!search->is_object()) return Status::InvalidArgument("search: must be a mapping");
  LATTICE_RETURN_IF_ERROR(CheckKeys(
      *search, "search", std::vector<std::string>(std::begin(kSearchKeys), std::end(kSearchKeys))));
  if (!search->contains("method")) return Status::InvalidArgument("search.method: required");
  const OrderedJson& method = (*search)["method"];
  if (method != "grid" && method != "random") {
    return Status::InvalidArgument("search.method: must be grid or random, got " + method.dump());
  }
  out->method = method.get<std::string>();
  const bool random = out->method == "random";
  LATTICE_RETURN_IF_ERROR(ParseMetric(search, out));
  if (!random && search->contains("seed")) {
    return Status::InvalidArgument("search.seed: only used by method random");
  }
  if (!random && search->contains("max_trials")) {
    return Status::InvalidArgument(
        "search.max_trials: not allowed for method grid (a grid runs every point)");
  }
  if (random && !search->contains("max_trials")) {
    return Status::InvalidArgument("search.max_trials: required for method random");
  }
  LATTICE_ASSIGN_OR_RETURN(auto seed, OptionalInt(*search, "seed", "search.seed", 0, INT64_MAX));
  LATTICE_ASSIGN_OR_RETURN(auto max_trials,
                           OptionalInt(*search, "max_trials", "search.max_trials", 1,
                                       static_cast<int64_t>(kMaxTrialsPerSweep)));
  if (random) (*search)["seed"] = seed.value_or(0);
  if (!search->contains("parameters"))
    return Status::InvalidArgument("search.parameters: required");
  LATTICE_ASSIGN_OR_RETURN(SearchSpace space,
                           ParseSearchSpace((*search)["parameters"], out->method));
  for (const ParameterDomain& d : space.parameters) out->parameter_names.push_back(d.name);
  *space_out = space;
  LATTICE_RETURN_IF_ERROR(CheckSweepSize(
      space, random ? static_cast<uint64_t>(max_trials.value_or(0)) : GridSize(space),
      base_values));
  LATTICE_ASSIGN_OR_RETURN(
      auto searcher, MakeSearcher(out->method, std::move(space),
                                  static_cast<uint64_t>(seed.value_or(0)), max_trials.value_or(0)));
  LATTICE_ASSIGN_OR_RETURN(out->points, searcher->Expand());
  return Status::Ok();
}

// repeats: N runs every point N times, with seeds seed, seed + 1, ... (the spec's seed,
// default 0), as consecutive trials; the seed becomes a parameter of each point.
Status ExpandRepeats(const OrderedJson& doc, SweepSpec* out) {
  LATTICE_ASSIGN_OR_RETURN(auto repeats, OptionalInt(doc, "repeats", "repeats", 1, 1000));
  if (!repeats || *repeats == 1) return Status::Ok();
  if (std::find(out->parameter_names.begin(), out->parameter_names.end(), "seed") !=
      out->parameter_names.end()) {
    return Status::InvalidArgument(
        "repeats: seed is a searched parameter; give either repeats or seed values");
  }
  if (out->points.size() * static_cast<uint64_t>(*repeats) > kMaxTrialsPerSweep) {
    return Status::InvalidArgument("repeats: " + std::to_string(out->points.size()) +
                                   " points x " + std::to_string(*repeats) + " repeats is more " +
                                   "than the limit of " + std::to_string(kMaxTrialsPerSweep) +
                                   " trials");
  }
  const int64_t seed = doc.contains("seed") ? doc["seed"].get<int64_t>() : 0;
  std::vector<nlohmann::json> points;
  points.reserve(out->points.size() * static_cast<size_t>(*repeats));
  for (const nlohmann::json& point : out->points) {
    for (int64_t r = 0; r < *repeats; ++r) {
      nlohmann::json p = point;
      p["seed"] = seed + r;
      points.push_back(std::move(p));
    }
  }
  out->points = std::move(points);
  out->parameter_names.push_back("seed");
  return Status::Ok();
}

// Builds and validates each trial's job config from the points.
Status BuildTrialConfigs(const OrderedJson& doc, SweepSpec* out) {
  nlohmann::json base = JobConfigBase(doc);
  out->trial_configs.reserve(out->points.size());
  std::set<std::string> found_files;  // each dataset file is looked up once per sweep
  for (size_t i = 0; i < out->points.size(); ++i) {
    nlohmann::json config = ApplyParameters(base, out->points[i]);
    Status s = jobs::ValidateJobConfig(config, &found_files);
    if (!s.ok()) {
      std::string context = "trial " + std::to_string(i);
      if (!out->parameter_names.empty()) {
        context += " (" + DescribePoint(out->points[i], out->parameter_names) + ")";
      }
      return s.WithContext(context);
    }
    out->trial_configs.push_back(std::move(config));
  }
  return Status::Ok();
}

// Random search: the trials drawn are a sample, so each value a draw could give is checked
// too: every choice and both bounds of every range, each put into trial 0's point in place
// of that parameter's value (every combination can be drawn) and validated like a trial.
Status CheckDrawableValues(const OrderedJson& doc, const SearchSpace& space, const SweepSpec& out) {
  if (out.points.empty()) return Status::Ok();
  const nlohmann::json base = JobConfigBase(doc);
  for (const ParameterDomain& d : space.parameters) {
    std::vector<nlohmann::json> values = d.values;
    if (d.kind == ParameterDomain::Kind::kRange) {
      values = d.is_int ? std::vector<nlohmann::json>{static_cast<int64_t>(d.min),
                                                      static_cast<int64_t>(d.max)}
                        : std::vector<nlohmann::json>{d.min, d.max};
    }
    for (const nlohmann::json& value : values) {
      nlohmann::json point = out.points[0];
      point[d.name] = value;
      Status s = jobs::ValidateJobConfig(ApplyParameters(base, point));
      if (!s.ok()) {
        return s.WithContext("search.parameters." + d.name + ": value " + value.dump() +
                             " can be drawn, but a trial with it is invalid");
      }
    }
  }
  return Status::Ok();
}

// Makes the path-valued fields in `value` (found at config path `path`) absolute.
void ResolvePathsIn(OrderedJson* value, const std::string& path, const std::string& base_dir) {
  if (value->is_object()) {
    for (auto& item : value->items()) ResolvePathsIn(&item.value(), Join(path, item.key()), base_dir);
    return;
  }
  if (!value->is_string() || !jobs::IsPathField(path)) return;
  const std::string file = value->get<std::string>();
  if (file.empty() || file[0] == '/') return;
  *value = (std::filesystem::path(base_dir) / file).lexically_normal().string();
}

}  // namespace

StatusOr<std::string> ResolveSpecPaths(const std::string& text, const std::string& base_dir) {
  LATTICE_ASSIGN_OR_RETURN(OrderedJson doc, ParseDocument(text));
  for (const char* key : kJobKeys) {
    if (doc.contains(key)) ResolvePathsIn(&doc[key], key, base_dir);
  }
  if (doc.contains("metric")) ResolvePathsIn(&doc["metric"], "metric", base_dir);  // qrels
  if (doc.contains("search") && doc["search"].is_object() &&
      doc["search"].contains("parameters") && doc["search"]["parameters"].is_object()) {
    for (auto& param : doc["search"]["parameters"].items()) {
      const std::string path = jobs::ResolveParameterPath(param.key()).value_or(param.key());
      // Grid values are a list; a random choice is a list too (ranges hold numbers only).
      if (!param.value().is_array()) continue;
      for (OrderedJson& v : param.value()) ResolvePathsIn(&v, path, base_dir);
    }
  }
  return doc.dump();
}

StatusOr<SweepSpec> ParseSweepSpec(const std::string& text) {
  LATTICE_ASSIGN_OR_RETURN(OrderedJson doc, ParseDocument(text));
  std::vector<std::string> allowed(std::begin(kJobKeys), std::end(kJobKeys));
  allowed.insert(allowed.end(), std::begin(kSchedulerKeys), std::end(kSchedulerKeys));
  LATTICE_RETURN_IF_ERROR(CheckKeys(doc, "", allowed));
  SweepSpec out;
  LATTICE_RETURN_IF_ERROR(ParseIdentity(doc, &out));
  LATTICE_RETURN_IF_ERROR(ParseLimits(&doc, &out));
  if (out.kind == JobKind::kEmbed) {
    LATTICE_RETURN_IF_ERROR(ExpandEmbedSweep(&doc, JobConfigBase(doc), &out));
    out.spec = nlohmann::json(doc);
    return out;
  }
  for (const char* key : {"shard_size", "index", "output", "metric"}) {
    if (doc.contains(key)) {
      return Status::InvalidArgument(std::string(key) + ": only used by kind embed");
    }
  }
  SearchSpace space;
  if (doc.contains("search")) {
    LATTICE_RETURN_IF_ERROR(
        ParseSearch(&doc["search"], internal::CountSpecValues(JobConfigBase(doc)), &out, &space));
  } else if (out.kind == JobKind::kNoop || out.kind == JobKind::kDistill) {  // one trial
    out.metric = kDefaultMetric;
    out.points.push_back(nlohmann::json::object());
  } else {
    return Status::InvalidArgument(std::string("search: required for kind ") + JobKindName(out.kind));
  }
  if (doc.contains("repeats") && !doc.contains("search")) {
    return Status::InvalidArgument("repeats: needs a search (it repeats each of its points)");
  }
  LATTICE_RETURN_IF_ERROR(ExpandRepeats(doc, &out));
  LATTICE_RETURN_IF_ERROR(BuildTrialConfigs(doc, &out));
  if (!out.trial_configs.empty()) {
    LATTICE_RETURN_IF_ERROR(jobs::CheckSweepMetric(out.trial_configs[0], out.metric));
  }
  if (out.method == "random") LATTICE_RETURN_IF_ERROR(CheckDrawableValues(doc, space, out));
  out.spec = nlohmann::json(doc);
  return out;
}

StatusOr<SweepSpec> LoadSweepSpecFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return Status::NotFound("spec file " + path + ": not found");
  }
  if (std::filesystem::is_directory(path, ec)) {
    return Status::InvalidArgument("spec file " + path + ": is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in.good() && !in.eof()) return Status::IoError("spec file " + path + ": cannot read");
  StatusOr<SweepSpec> spec = ParseSweepSpec(text.str());
  if (!spec.ok()) return spec.status().WithContext(path);
  return spec;
}

nlohmann::json ApplyParameters(const nlohmann::json& base, const nlohmann::json& params) {
  nlohmann::json out = base.is_object() ? base : nlohmann::json::object();
  if (!params.is_object()) return out;
  for (const auto& item : params.items()) {
    const std::string path = jobs::ResolveParameterPath(item.key()).value_or(item.key());
    nlohmann::json* node = &out;
    size_t start = 0;
    while (true) {
      const size_t dot = path.find('.', start);
      const std::string part = path.substr(start, dot == std::string::npos ? dot : dot - start);
      if (!node->is_object()) *node = nlohmann::json::object();
      node = &(*node)[part];
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    *node = item.value();
  }
  return out;
}

std::string DescribePoint(const nlohmann::json& params, const std::vector<std::string>& order) {
  std::vector<std::string> names = order;
  if (params.is_object()) {
    for (const auto& item : params.items()) {
      if (std::find(names.begin(), names.end(), item.key()) == names.end()) {
        names.push_back(item.key());
      }
    }
  }
  std::string out;
  for (const std::string& name : names) {
    if (!params.is_object() || !params.contains(name)) continue;
    const nlohmann::json& v = params[name];
    out +=
        (out.empty() ? "" : ", ") + name + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
  }
  return out;
}

}  // namespace lattice::scheduler
