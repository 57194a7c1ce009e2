#include "jobs/train_config.h"

#include <sys/stat.h>

#include <csignal>
#include <algorithm>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "jobs/checkpoint.h"
#include "jobs/embed_config.h"
#include "jobs/internal/config_fields.h"
#include "jobs/projector_config.h"
#include "jobs/token_data.h"

namespace lattice::jobs {
namespace {

using nlohmann::json;
using internal::AsInt;
using internal::Bad;
using internal::Bound;
using internal::CheckObject;
using internal::Find;
using internal::GetBool;
using internal::GetEnum;
using internal::GetInt;
using internal::GetNumber;
using internal::GetString;
using internal::Join;
using internal::TypeName;

Status ParseFiles(const json& obj, const std::string& path, DatasetFormat format,
                  DatasetFiles* files) {
  auto [fkey, lkey] = DatasetFileKeys(format);
  LATTICE_RETURN_IF_ERROR(GetString(obj, fkey, path, &files->features));
  if (files->features.empty()) return Bad(Join(path, fkey), "required");
  if (format != DatasetFormat::kCsv) {  // token data's target embeddings (jobs/token_data.h)
    LATTICE_RETURN_IF_ERROR(GetString(obj, "targets", path, &files->targets));
  }
  if (lkey[0] != '\0') {
    LATTICE_RETURN_IF_ERROR(GetString(obj, lkey, path, &files->labels));
    if (files->labels.empty() && files->targets.empty()) return Bad(Join(path, lkey), "required");
  }
  return Status::Ok();
}

Status ParseSplit(const json& split, const std::string& path, DatasetConfig* d) {
  if (!split.is_object()) return Bad(path, "expected an object, got " + TypeName(split));
  LATTICE_RETURN_IF_ERROR(CheckObject(
      split, path, {"validation_fraction", "seed", "stratify", "train_per_class", "test_fraction"}));
  LATTICE_RETURN_IF_ERROR(GetNumber(split, "validation_fraction", path, &d->validation_fraction,
                                    Bound::kOpen, 0.0, Bound::kOpen, 1.0));
  int64_t seed = static_cast<int64_t>(d->split_seed);
  LATTICE_RETURN_IF_ERROR(GetInt(split, "seed", path, &seed, 0));
  d->split_seed = static_cast<uint64_t>(seed);
  LATTICE_RETURN_IF_ERROR(GetBool(split, "stratify", path, &d->stratify));
  if (Find(split, "train_per_class")) {
    if (Find(split, "validation_fraction")) {
      return Bad(Join(path, "train_per_class"),
                 "give either train_per_class (the rest of each class validates) or "
                 "validation_fraction");
    }
    int64_t per_class = 1;
    LATTICE_RETURN_IF_ERROR(GetInt(split, "train_per_class", path, &per_class, 1));
    d->train_per_class = per_class;
    d->stratify = true;
  }
  LATTICE_RETURN_IF_ERROR(GetNumber(split, "test_fraction", path, &d->test_fraction,
                                    Bound::kClosed, 0.0, Bound::kOpen, 1.0));
  if (!d->train_per_class && d->validation_fraction + d->test_fraction >= 1.0) {
    return Bad(Join(path, "test_fraction"),
               "validation_fraction + test_fraction must be < 1 (rows must be left to train), "
               "got " + internal::FormatNumber(d->validation_fraction) + " + " +
                   internal::FormatNumber(d->test_fraction));
  }
  return Status::Ok();
}

// An optional list of integers >= min (obj[key]).
Status ParseIntList(const json& obj, const char* key, const std::string& path, int64_t min,
                    std::vector<int64_t>* out) {
  const json* list = Find(obj, key);
  if (!list || list->is_null()) return Status::Ok();
  const std::string p = Join(path, key);
  if (!list->is_array() || list->empty()) return Bad(p, "expected a non-empty list of integers");
  for (size_t i = 0; i < list->size(); ++i) {
    const std::string ip = p + "[" + std::to_string(i) + "]";
    LATTICE_ASSIGN_OR_RETURN(int64_t v, AsInt((*list)[i], ip));
    if (v < min) return Bad(ip, "must be >= " + std::to_string(min) + ", got " + std::to_string(v));
    out->push_back(v);
  }
  return Status::Ok();
}

// train.class_weights: a name, {inverse_frequency, boost} or a list of weights.
StatusOr<ClassWeightsConfig> ParseClassWeights(const json& w, const std::string& path) {
  ClassWeightsConfig c;
  if (w.is_string()) {
    const std::string name = w.get<std::string>();
    if (name == "inverse_frequency") {
      c.inverse_frequency = true;
    } else if (name != "none") {
      return Bad(path, "must be none, inverse_frequency, {inverse_frequency: true, boost: {...}} "
                       "or a list of weights, got \"" + name + "\"");
    }
    return c;
  }
  if (w.is_array()) {
    if (w.empty()) return Bad(path, "the list of weights is empty");
    for (size_t i = 0; i < w.size(); ++i) {
      const std::string p = path + "[" + std::to_string(i) + "]";
      LATTICE_ASSIGN_OR_RETURN(double v, internal::AsNumber(w[i], p));
      if (!(v > 0)) return Bad(p, "must be > 0, got " + internal::FormatNumber(v));
      c.weights.push_back(v);
    }
    return c;
  }
  if (!w.is_object()) {
    return Bad(path, "expected a name, an object or a list, got " + TypeName(w));
  }
  LATTICE_RETURN_IF_ERROR(CheckObject(w, path, {"inverse_frequency", "boost"}));
  LATTICE_RETURN_IF_ERROR(GetBool(w, "inverse_frequency", path, &c.inverse_frequency));
  if (!c.inverse_frequency) {
    return Bad(Join(path, "inverse_frequency"),
               "must be true (for explicit weights give a list: [1.0, 1.5, 1.0])");
  }
  if (const json* boost = Find(w, "boost"); boost && !boost->is_null()) {
    const std::string bp = Join(path, "boost");
    if (!boost->is_object()) return Bad(bp, "expected {class: factor}, got " + TypeName(*boost));
    for (auto it = boost->begin(); it != boost->end(); ++it) {
      const std::string kp = Join(bp, it.key());
      int64_t cls = -1;
      size_t used = 0;
      try {
        cls = std::stoll(it.key(), &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != it.key().size() || used == 0 || cls < 0) {
        return Bad(kp, "the key must be a class index >= 0");
      }
      LATTICE_ASSIGN_OR_RETURN(double factor, internal::AsNumber(it.value(), kp));
      if (!(factor > 0)) return Bad(kp, "must be > 0, got " + internal::FormatNumber(factor));
      c.boost[cls] = factor;
    }
  }
  return c;
}

StatusOr<MixupConfig> ParseMixup(const json& m, const std::string& path) {
  MixupConfig c;
  if (!m.is_object()) return Bad(path, "expected {alpha, until}, got " + TypeName(m));
  LATTICE_RETURN_IF_ERROR(CheckObject(m, path, {"alpha", "until"}));
  if (!Find(m, "alpha")) return Bad(Join(path, "alpha"), "required");
  LATTICE_RETURN_IF_ERROR(
      GetNumber(m, "alpha", path, &c.alpha, Bound::kOpen, 0.0, Bound::kClosed, 1000.0));
  LATTICE_RETURN_IF_ERROR(
      GetNumber(m, "until", path, &c.until, Bound::kOpen, 0.0, Bound::kClosed, 1.0));
  return c;
}

StatusOr<ModelConfig> ParseModel(const json& m, const std::string& path) {
  ModelConfig c;
  if (!m.is_object()) return Bad(path, "expected an object, got " + TypeName(m));
  LATTICE_RETURN_IF_ERROR(GetEnum<ModelType>(m, "type", path,
                                             {{"linear", ModelType::kLinear},
                                              {"mlp", ModelType::kMlp},
                                              {"torchscript", ModelType::kTorchScript},
                                              {"mlp2", ModelType::kMlp2},
                                              {"c_abstractor", ModelType::kCAbstractor},
                                              {"perceiver", ModelType::kPerceiver},
                                              {"sae", ModelType::kSae}},
                                             &c.type));
  if (c.type == ModelType::kSae) {
    LATTICE_ASSIGN_OR_RETURN(c.sae, ParseSaeConfig(m, path));
    return c;
  }
  if (IsProjectorOnly(c.type)) {  // jobs/projector_config.h
    return Bad(Join(path, "type"), m.at("type").get<std::string>() +
                                       " is a projector: it needs alignment: siglip at the top "
                                       "level of the job");
  }
  if (c.type == ModelType::kTorchScript) {
    // The keys and checks of a TorchScript encoder (type, path, input_shape).
    for (auto it = m.begin(); it != m.end(); ++it) {
      if (it.key() != "type" && it.key() != "path" && it.key() != "input_shape") {
        return Bad(Join(path, it.key()),
                   "not a key of model type torchscript (its keys: type, path, input_shape)");
      }
    }
    LATTICE_ASSIGN_OR_RETURN(EncoderConfig e, ParseEncoderConfig(m, path));
    c.path = e.path;
    c.input_shape = e.input_shape;
    return c;
  }
  LATTICE_RETURN_IF_ERROR(
      CheckObject(m, path, {"type", "hidden", "batchnorm", "dropout", "activation"}));
  if (const json* h = Find(m, "hidden")) {
    std::string p = Join(path, "hidden");
    c.hidden.clear();
    if (h->is_array()) {
      for (size_t i = 0; i < h->size(); ++i) {
        std::string pi = p + "[" + std::to_string(i) + "]";
        LATTICE_ASSIGN_OR_RETURN(int64_t w, AsInt((*h)[i], pi));
        if (w < 1) return Bad(pi, "must be >= 1, got " + std::to_string(w));
        c.hidden.push_back(w);
      }
    } else {
      LATTICE_ASSIGN_OR_RETURN(int64_t w, AsInt(*h, p));
      if (w < 1) return Bad(p, "must be >= 1, got " + std::to_string(w));
      c.hidden.push_back(w);
    }
  }
  LATTICE_RETURN_IF_ERROR(GetBool(m, "batchnorm", path, &c.batchnorm));
  LATTICE_RETURN_IF_ERROR(
      GetNumber(m, "dropout", path, &c.dropout, Bound::kClosed, 0.0, Bound::kOpen, 1.0));
  LATTICE_RETURN_IF_ERROR(GetEnum<Activation>(
      m, "activation", path,
      {{"relu", Activation::kRelu}, {"gelu", Activation::kGelu}, {"tanh", Activation::kTanh}},
      &c.activation));
  return c;
}

StatusOr<EarlyStoppingConfig> ParseEarlyStopping(const json& e, const std::string& path) {
  EarlyStoppingConfig c;
  LATTICE_RETURN_IF_ERROR(CheckObject(e, path, {"patience", "metric", "min_delta"}));
  if (!Find(e, "patience")) return Bad(Join(path, "patience"), "required");
  LATTICE_RETURN_IF_ERROR(GetInt(e, "patience", path, &c.patience, 1));
  LATTICE_RETURN_IF_ERROR(GetEnum<EarlyStoppingMetric>(
      e, "metric", path,
      {{"val_loss", EarlyStoppingMetric::kValLoss},
       {"val_accuracy", EarlyStoppingMetric::kValAccuracy}},
      &c.metric));
  LATTICE_RETURN_IF_ERROR(GetNumber(e, "min_delta", path, &c.min_delta, Bound::kClosed, 0.0));
  return c;
}

// `lr` is train.lr, already parsed: min_lr may not exceed it.
StatusOr<LrScheduleConfig> ParseSchedule(const json& s, const std::string& path, double lr) {
  LrScheduleConfig c;
  // Every key of some type first, so a typo reads "unknown key" rather than "not a key of".
  LATTICE_RETURN_IF_ERROR(CheckObject(s, path,
                                      {"type", "warmup_steps", "step_size", "gamma", "patience",
                                       "factor", "min_lr"}));
  if (!Find(s, "type")) return Bad(Join(path, "type"), "required");
  LATTICE_RETURN_IF_ERROR(GetEnum<LrScheduleType>(s, "type", path,
                                                  {{"step", LrScheduleType::kStep},
                                                   {"cosine", LrScheduleType::kCosine},
                                                   {"plateau", LrScheduleType::kPlateau}},
                                                  &c.type));
  const std::string type = s["type"].get<std::string>();
  std::set<std::string> own;
  switch (c.type) {
    case LrScheduleType::kStep: own = {"step_size", "gamma"}; break;
    case LrScheduleType::kCosine: own = {"min_lr"}; break;
    case LrScheduleType::kPlateau: own = {"patience", "factor", "min_lr"}; break;
  }
  own.insert({"type", "warmup_steps"});
  // A key of another type would be silently ignored; reject it so that a config says what
  // it does (gamma: 0.5 on a cosine schedule is almost certainly a mistake).
  for (auto it = s.begin(); it != s.end(); ++it) {
    if (own.count(it.key())) continue;
    std::string keys;
    for (const std::string& k : own) keys += (keys.empty() ? "" : ", ") + k;
    return Bad(Join(path, it.key()),
               "not a key of schedule type " + type + " (its keys: " + keys + ")");
  }
  LATTICE_RETURN_IF_ERROR(GetInt(s, "warmup_steps", path, &c.warmup_steps, 0));
  if (c.type == LrScheduleType::kStep) {
    if (!Find(s, "step_size")) return Bad(Join(path, "step_size"), "required");
    LATTICE_RETURN_IF_ERROR(GetInt(s, "step_size", path, &c.step_size, 1));
    LATTICE_RETURN_IF_ERROR(
        GetNumber(s, "gamma", path, &c.gamma, Bound::kOpen, 0.0, Bound::kClosed, 1.0));
  }
  if (c.type == LrScheduleType::kPlateau) {
    LATTICE_RETURN_IF_ERROR(GetInt(s, "patience", path, &c.patience, 0));
    LATTICE_RETURN_IF_ERROR(
        GetNumber(s, "factor", path, &c.factor, Bound::kOpen, 0.0, Bound::kOpen, 1.0));
  }
  LATTICE_RETURN_IF_ERROR(GetNumber(s, "min_lr", path, &c.min_lr, Bound::kClosed, 0.0));
  if (c.min_lr > lr) {
    return Bad(Join(path, "min_lr"), "must be <= train.lr (" + internal::FormatNumber(lr) +
                                         "), got " + internal::FormatNumber(c.min_lr));
  }
  return c;
}

StatusOr<TrainConfig> ParseTrain(const json& t, const std::string& path) {
  TrainConfig c;
  LATTICE_RETURN_IF_ERROR(CheckObject(
      t, path,
      {"epochs", "batch_size", "lr", "optimizer", "weight_decay", "momentum", "label_smoothing",
       "class_weights", "early_stopping", "threads", "checkpoint", "clip_grad_norm",
       "schedule", "mixup", "l1_coefficient"}));
  if (Find(t, "l1_coefficient")) {
    double l1 = 0;
    LATTICE_RETURN_IF_ERROR(GetNumber(t, "l1_coefficient", path, &l1, Bound::kClosed, 0.0));
    c.l1_coefficient = l1;
  }
  LATTICE_RETURN_IF_ERROR(GetInt(t, "epochs", path, &c.epochs, 1));
  LATTICE_RETURN_IF_ERROR(GetInt(t, "batch_size", path, &c.batch_size, 1));
  LATTICE_RETURN_IF_ERROR(GetNumber(t, "lr", path, &c.lr, Bound::kOpen, 0.0));
  LATTICE_RETURN_IF_ERROR(GetEnum<OptimizerType>(
      t, "optimizer", path,
      {{"adamw", OptimizerType::kAdamW}, {"adam", OptimizerType::kAdam},
       {"sgd", OptimizerType::kSgd}},
      &c.optimizer));
  LATTICE_RETURN_IF_ERROR(GetNumber(t, "weight_decay", path, &c.weight_decay, Bound::kClosed, 0));
  LATTICE_RETURN_IF_ERROR(
      GetNumber(t, "momentum", path, &c.momentum, Bound::kClosed, 0.0, Bound::kOpen, 1.0));
  LATTICE_RETURN_IF_ERROR(GetNumber(t, "label_smoothing", path, &c.label_smoothing,
                                    Bound::kClosed, 0.0, Bound::kOpen, 1.0));
  if (const json* w = Find(t, "class_weights"); w && !w->is_null()) {
    LATTICE_ASSIGN_OR_RETURN(c.class_weights, ParseClassWeights(*w, Join(path, "class_weights")));
  }
  if (const json* m = Find(t, "mixup"); m && !m->is_null()) {
    LATTICE_ASSIGN_OR_RETURN(c.mixup, ParseMixup(*m, Join(path, "mixup")));
  }
  if (const json* e = Find(t, "early_stopping")) {
    LATTICE_ASSIGN_OR_RETURN(c.early_stopping, ParseEarlyStopping(*e, Join(path, "early_stopping")));
  }
  LATTICE_RETURN_IF_ERROR(GetBool(t, "checkpoint", path, &c.save_checkpoint));
  if (Find(t, "threads")) {
    int64_t threads = 1;
    LATTICE_RETURN_IF_ERROR(GetInt(t, "threads", path, &threads, 1, 1024));
    c.threads = static_cast<int>(threads);
  }
  if (Find(t, "clip_grad_norm")) {
    double clip = 1.0;
    LATTICE_RETURN_IF_ERROR(GetNumber(t, "clip_grad_norm", path, &clip, Bound::kOpen, 0.0));
    c.clip_grad_norm = clip;
  }
  if (const json* s = Find(t, "schedule")) {
    LATTICE_ASSIGN_OR_RETURN(c.schedule, ParseSchedule(*s, Join(path, "schedule"), c.lr));
  }
  return c;
}

}  // namespace

std::pair<const char*, const char*> DatasetFileKeys(DatasetFormat format) {
  switch (format) {
    case DatasetFormat::kNpy: return {"features", "labels"};
    case DatasetFormat::kIdx: return {"images", "labels"};
    case DatasetFormat::kCsv: return {"path", ""};
  }
  return {"features", "labels"};
}

std::string DatasetConfig::CacheKey() const {
  json key = {{"format", static_cast<int>(format)},
              {"train", {train.features, train.labels}},
              {"label_column", label_column},
              {"header", header},
              {"scale", scale ? json(*scale) : json(nullptr)},
              {"limit", limit ? json(*limit) : json(nullptr)},
              {"classes", classes},
              {"rows_per_class", rows_per_class}};
  if (validation) key["validation"] = {validation->features, validation->labels};
  if (test) key["test"] = {test->features, test->labels};
  if (patch > 0) key["patch"] = patch;  // token data (jobs/token_data.h)
  if (!train.targets.empty()) {
    key["targets"] = {train.targets, validation ? validation->targets : "",
                      test ? test->targets : ""};
  }
  return key.dump();
}

namespace {

// dataset: {activations: <name>, source: <embed sweep id, set by the coordinator>, split,
// limit, standardize} (jobs/activation_dataset.h).
StatusOr<DatasetConfig> ParseActivationsDataset(const json& d, const std::string& path) {
  DatasetConfig c;
  LATTICE_RETURN_IF_ERROR(
      CheckObject(d, path, {"activations", "source", "split", "limit", "standardize"}));
  LATTICE_RETURN_IF_ERROR(GetString(d, "activations", path, &c.activations));
  if (c.activations.empty()) return Bad(Join(path, "activations"), "must name a dataset");
  LATTICE_RETURN_IF_ERROR(GetString(d, "source", path, &c.activations_source));
  if (const json* split = Find(d, "split")) {
    LATTICE_RETURN_IF_ERROR(ParseSplit(*split, Join(path, "split"), &c));
    if (c.stratify || c.train_per_class || c.test_fraction > 0) {
      return Bad(Join(path, "split"),
                 "an activations dataset takes validation_fraction and seed only");
    }
  }
  LATTICE_RETURN_IF_ERROR(GetBool(d, "standardize", path, &c.standardize));
  if (Find(d, "limit")) {
    int64_t limit = 0;
    LATTICE_RETURN_IF_ERROR(GetInt(d, "limit", path, &limit, 1));
    c.limit = limit;
  }
  return c;
}

}  // namespace

StatusOr<DatasetConfig> ParseDatasetConfig(const json& d, const std::string& path) {
  DatasetConfig c;
  if (!d.is_object()) return Bad(path, "expected an object, got " + TypeName(d));
  if (Find(d, "activations")) return ParseActivationsDataset(d, path);
  c.format = Find(d, "path") ? DatasetFormat::kCsv : DatasetFormat::kNpy;
  LATTICE_RETURN_IF_ERROR(GetEnum<DatasetFormat>(
      d, "format", path,
      {{"npy", DatasetFormat::kNpy}, {"idx", DatasetFormat::kIdx}, {"csv", DatasetFormat::kCsv}},
      &c.format));
  auto [fkey, lkey] = DatasetFileKeys(c.format);
  std::set<std::string> allowed = {"format", "split", "validation", "test", "standardize",
                                   "scale", "limit", "classes", "rows_per_class", fkey};
  if (lkey[0] != '\0') allowed.insert(lkey);
  if (c.format == DatasetFormat::kCsv) allowed.insert({"label_column", "header"});
  if (c.format != DatasetFormat::kCsv) allowed.insert({"targets", "tokens"});  // token data
  LATTICE_RETURN_IF_ERROR(CheckObject(d, path, allowed));
  LATTICE_RETURN_IF_ERROR(ParseFiles(d, path, c.format, &c.train));
  if (c.format == DatasetFormat::kCsv) {
    int64_t col = c.label_column;
    LATTICE_RETURN_IF_ERROR(GetInt(d, "label_column", path, &col, -100000, 100000));
    c.label_column = static_cast<int>(col);
    LATTICE_RETURN_IF_ERROR(GetBool(d, "header", path, &c.header));
  }
  const json* split = Find(d, "split");
  const json* validation = Find(d, "validation");
  if (split && validation) return Bad(Join(path, "validation"), "give either split or validation");
  if (split) LATTICE_RETURN_IF_ERROR(ParseSplit(*split, Join(path, "split"), &c));
  if (validation) {
    std::string vp = Join(path, "validation");
    std::set<std::string> vkeys = {fkey};
    if (lkey[0] != '\0') vkeys.insert({lkey, "targets"});
    LATTICE_RETURN_IF_ERROR(CheckObject(*validation, vp, vkeys));
    c.validation.emplace();
    LATTICE_RETURN_IF_ERROR(ParseFiles(*validation, vp, c.format, &*c.validation));
  }
  if (const json* test = Find(d, "test")) {
    std::string tp = Join(path, "test");
    if (c.test_fraction > 0) {
      return Bad(tp, "give either test files or split.test_fraction");
    }
    if (!test->is_object()) return Bad(tp, "expected an object, got " + TypeName(*test));
    std::set<std::string> tkeys = {fkey};
    if (lkey[0] != '\0') tkeys.insert({lkey, "targets"});
    LATTICE_RETURN_IF_ERROR(CheckObject(*test, tp, tkeys));
    c.test.emplace();
    LATTICE_RETURN_IF_ERROR(ParseFiles(*test, tp, c.format, &*c.test));
  }
  LATTICE_RETURN_IF_ERROR(GetBool(d, "standardize", path, &c.standardize));
  if (Find(d, "scale")) {
    double scale = 1.0;
    LATTICE_RETURN_IF_ERROR(GetNumber(d, "scale", path, &scale, Bound::kNone, 0.0));
    c.scale = scale;
  }
  if (Find(d, "limit")) {
    int64_t limit = 0;
    LATTICE_RETURN_IF_ERROR(GetInt(d, "limit", path, &limit, 1));
    c.limit = limit;
  }
  LATTICE_RETURN_IF_ERROR(ParseIntList(d, "classes", path, 0, &c.classes));
  LATTICE_RETURN_IF_ERROR(ParseIntList(d, "rows_per_class", path, 1, &c.rows_per_class));
  LATTICE_RETURN_IF_ERROR(ParseTokenOptions(d, path, &c));
  if (!c.rows_per_class.empty() && c.rows_per_class.size() != c.classes.size()) {
    return Bad(Join(path, "rows_per_class"),
               "needs one count per entry of classes (" + std::to_string(c.classes.size()) +
                   "), got " + std::to_string(c.rows_per_class.size()));
  }
  for (size_t i = 0; i < c.classes.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (c.classes[i] == c.classes[j]) {
        return Bad(Join(path, "classes"), "class " + std::to_string(c.classes[i]) + " is listed twice");
      }
    }
  }
  return c;
}

Status CheckDatasetFilesExist(const DatasetConfig& dataset, const std::string& path) {
  auto check = [](const std::string& file, const std::string& p) {
    if (file.empty()) return Status::Ok();
    struct stat st;
    if (::stat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return Bad(p, "file not found: " + file);
    }
    return Status::Ok();
  };
  auto [fkey, lkey] = DatasetFileKeys(dataset.format);
  LATTICE_RETURN_IF_ERROR(check(dataset.train.features, Join(path, fkey)));
  LATTICE_RETURN_IF_ERROR(check(dataset.train.labels, Join(path, lkey)));
  LATTICE_RETURN_IF_ERROR(check(dataset.train.targets, Join(path, "targets")));
  if (dataset.validation) {
    std::string vp = Join(path, "validation");
    LATTICE_RETURN_IF_ERROR(check(dataset.validation->features, Join(vp, fkey)));
    LATTICE_RETURN_IF_ERROR(check(dataset.validation->labels, Join(vp, lkey)));
    LATTICE_RETURN_IF_ERROR(check(dataset.validation->targets, Join(vp, "targets")));
  }
  if (dataset.test) {
    std::string tp = Join(path, "test");
    LATTICE_RETURN_IF_ERROR(check(dataset.test->features, Join(tp, fkey)));
    LATTICE_RETURN_IF_ERROR(check(dataset.test->labels, Join(tp, lkey)));
    LATTICE_RETURN_IF_ERROR(check(dataset.test->targets, Join(tp, "targets")));
  }
  return Status::Ok();
}

namespace {

// Layers are range-checked later: the student's against the model section (ParseJobConfig),
// the teacher's against its checkpoint (when the job runs).
StatusOr<FeatureMatchConfig> ParseFeatureMatch(const json& f, const std::string& path) {
  FeatureMatchConfig c;
  if (!f.is_object()) return Bad(path, "expected an object, got " + TypeName(f));
  LATTICE_RETURN_IF_ERROR(CheckObject(f, path, {"teacher_layer", "student_layer", "weight"}));
  for (const char* key : {"teacher_layer", "student_layer"}) {
    if (!Find(f, key)) return Bad(Join(path, key), "required");
  }
  constexpr int64_t kAny = int64_t{1} << 40;
  LATTICE_RETURN_IF_ERROR(GetInt(f, "teacher_layer", path, &c.teacher_layer, -kAny, kAny));
  LATTICE_RETURN_IF_ERROR(GetInt(f, "student_layer", path, &c.student_layer, -kAny, kAny));
  LATTICE_RETURN_IF_ERROR(GetNumber(f, "weight", path, &c.weight, Bound::kOpen, 0.0));
  return c;
}

// distill.feature_match.student_layer against the student's hidden layers.
Status CheckStudentLayer(const JobConfig& c) {
  if (!c.distill || !c.distill->feature_match) return Status::Ok();
  const std::string path = "distill.feature_match.student_layer";
  const int64_t layer = c.distill->feature_match->student_layer;
  if (c.model.type == ModelType::kTorchScript && layer != -1 && layer != 1) {
    return Bad(path, std::to_string(layer) +
                         ": a torchscript student shows only its output (-1): its inner layers "
                         "have no names Lattice can follow");
  }
  LATTICE_ASSIGN_OR_RETURN(int64_t resolved, ResolveLayer(layer, c.model.HiddenLayers(), path));
  if (resolved == 0) {
    return Bad(path, std::to_string(layer) + " is the student's input, which has no weights");
  }
  return Status::Ok();
}

StatusOr<DistillConfig> ParseDistill(const json& config) {
  DistillConfig d;
  const json* teacher = Find(config, "teacher");
  if (!teacher) {
    return Bad("teacher", "required ({type: trial, trial: s3-t4} or {type: torchscript, path: t.pt})");
  }
  LATTICE_ASSIGN_OR_RETURN(EncoderConfig e, ParseEncoderConfig(*teacher, "teacher"));
  switch (e.type) {
    case EncoderType::kTrial:
      if (Find(*teacher, "layer")) {
        return Bad("teacher.layer", "a teacher gives its logits; no layer");
      }
      d.teacher.type = TeacherConfig::Type::kTrial;
      d.teacher.trial = e.trial;
      break;
    case EncoderType::kTorchScript:
      d.teacher.type = TeacherConfig::Type::kTorchScript;
      d.teacher.path = e.path;
      d.teacher.input_shape = e.input_shape;
      break;
    case EncoderType::kFlatten:
      return Bad("teacher.type", "must be trial or torchscript");
  }
  if (const json* s = Find(config, "distill"); s && !s->is_null()) {
    if (!s->is_object()) return Bad("distill", "expected an object, got " + TypeName(*s));
    LATTICE_RETURN_IF_ERROR(CheckObject(*s, "distill", {"temperature", "alpha", "feature_match"}));
    LATTICE_RETURN_IF_ERROR(GetNumber(*s, "temperature", "distill", &d.temperature, Bound::kOpen, 0,
                                      Bound::kClosed, 1000));
    LATTICE_RETURN_IF_ERROR(
        GetNumber(*s, "alpha", "distill", &d.alpha, Bound::kClosed, 0, Bound::kClosed, 1));
    if (const json* f = Find(*s, "feature_match"); f && !f->is_null()) {
      if (d.teacher.type != TeacherConfig::Type::kTrial) {
        return Bad("distill.feature_match",
                   "needs a teacher of type trial (a torchscript teacher gives only its output, "
                   "not its layers)");
      }
      LATTICE_ASSIGN_OR_RETURN(d.feature_match, ParseFeatureMatch(*f, "distill.feature_match"));
    }
  }
  return d;
}

// Model type sae: a train job without step checkpoints; its l1 coefficient from the model
// or the train section. An activations dataset feeds SAEs only.
Status CheckSaeJob(const json& config, JobConfig* c) {
  const bool sae = c->model.type == ModelType::kSae;
  if (!sae) {
    if (c->train.l1_coefficient) return Bad("train.l1_coefficient", "only for model type sae");
    if (!c->dataset.activations.empty()) {
      return Bad("dataset.activations", "an activations dataset trains model type sae only");
    }
    return Status::Ok();
  }
  if (c->kind != JobKind::kTrain) return Bad("model.type", "sae is a train model, not a student");
  if (c->checkpoints) {
    return Bad("checkpoint", "step checkpoints are not supported for model type sae (its final "
                             "weights are kept: train.checkpoint)");
  }
  const json& model = config.at("model");
  if (c->train.l1_coefficient) {
    if (Find(model, "l1_coefficient")) {
      return Bad("train.l1_coefficient", "give either model.l1_coefficient or this, not both");
    }
    c->model.sae.l1_coefficient = *c->train.l1_coefficient;
  }
  if (c->train.early_stopping) {
    return Bad("train.early_stopping", "not supported for model type sae");
  }
  if (c->train.mixup || !c->train.class_weights.empty() || c->train.label_smoothing > 0) {
    return Bad("train", "mixup, class_weights and label_smoothing are classification settings, "
                        "not for model type sae");
  }
  return Status::Ok();
}

// With keep_best, checkpoint.metric also picks the final weights' epoch: it must be one of
// the job's per-epoch metrics (jobs/train_job.h), or no epoch would ever be picked.
Status CheckSelectionMetric(const JobConfig& c) {
  if (!c.checkpoints || c.checkpoints->keep_best < 1) return Status::Ok();
  const std::vector<std::string> names = PerEpochMetricNames(c);
  if (std::find(names.begin(), names.end(), c.checkpoints->metric) != names.end()) {
    return Status::Ok();
  }
  return Bad("checkpoint.metric", "with keep_best, must be a per-epoch metric of the job (" +
                                      JoinNames(names) + "), got \"" + c.checkpoints->metric +
                                      "\"");
}

}  // namespace

std::string JoinNames(const std::vector<std::string>& names) {
  std::string list;
  for (const std::string& n : names) list += (list.empty() ? "" : ", ") + n;
  return list;
}

std::vector<std::string> PerEpochMetricNames(const JobConfig& c) {
  if (c.kind != JobKind::kTrain && c.kind != JobKind::kDistill) return {};
  if (c.model.type == ModelType::kSae) return SaePerEpochMetricNames(/*labels=*/true);
  if (c.alignment) return AlignmentEpochMetricNames();  // jobs/projector_config.h
  std::vector<std::string> names = {"train_loss", "train_accuracy", "val_loss",
                                    "val_accuracy", "val_f1",         "lr"};
  if (c.distill) {
    names.insert(names.end(), {"agreement", "teacher_val_loss", "teacher_val_accuracy",
                               "teacher_params", "student_params"});
    if (c.distill->feature_match) names.push_back("feature_loss");
  }
  return names;
}

std::vector<std::string> ResultMetricNames(const JobConfig& c) {
  if (c.alignment) return AlignmentResultMetricNames(c);  // jobs/projector_config.h
  std::vector<std::string> names = PerEpochMetricNames(c);
  if (names.empty() || c.model.type == ModelType::kSae) return names;
  names.insert(names.end(), {"final_train_loss", "final_val_loss", "final_val_accuracy",
                             "best_val_accuracy", "best_val_loss", "best_epoch",
                             "selected_val_accuracy", "selected_val_f1"});
  if ((c.checkpoints && c.checkpoints->keep_best >= 1) || c.train.early_stopping) {
    names.insert(names.end(), {"selected_epoch", "selected_val_loss"});
  }
  return names;
}

StatusOr<CheckpointPolicy> ParseCheckpointPolicy(const json& p) {
  CheckpointPolicy c;
  if (!p.is_object()) return Bad("checkpoint", "expected an object, got " + TypeName(p));
  LATTICE_RETURN_IF_ERROR(CheckObject(
      p, "checkpoint", {"every_steps", "every_seconds", "keep_last", "keep_best", "metric"}));
  LATTICE_RETURN_IF_ERROR(GetInt(p, "every_steps", "checkpoint", &c.every_steps, 1));
  LATTICE_RETURN_IF_ERROR(
      GetNumber(p, "every_seconds", "checkpoint", &c.every_seconds, Bound::kOpen, 0));
  if (c.every_steps == 0 && c.every_seconds == 0) {
    return Bad("checkpoint", "needs every_steps or every_seconds");
  }
  LATTICE_RETURN_IF_ERROR(GetInt(p, "keep_last", "checkpoint", &c.keep_last, 1));
  LATTICE_RETURN_IF_ERROR(GetInt(p, "keep_best", "checkpoint", &c.keep_best, 0));
  LATTICE_RETURN_IF_ERROR(GetString(p, "metric", "checkpoint", &c.metric));
  if (c.metric.empty()) c.metric = "val_loss";
  return c;
}

StatusOr<JobConfig> ParseJobConfig(const json& config) {
  JobConfig c;
  if (!config.is_object()) return Bad("config", "expected an object, got " + TypeName(config));
  std::string kind;
  LATTICE_RETURN_IF_ERROR(GetString(config, "kind", "", &kind));
  if (kind.empty()) return Bad("kind", "required");
  std::optional<JobKind> parsed = ParseJobKind(kind);
  if (!parsed) return Bad("kind", "unknown job kind \"" + kind + "\"");
  c.kind = *parsed;
  int64_t seed = 0;
  LATTICE_RETURN_IF_ERROR(GetInt(config, "seed", "", &seed, 0));
  c.seed = static_cast<uint64_t>(seed);
  if (const json* name = Find(config, "name"); name && !name->is_string()) {
    return Bad("name", "expected a string, got " + TypeName(*name));
  }
  if (c.kind == JobKind::kNoop) {
    LATTICE_RETURN_IF_ERROR(CheckObject(config, "", {"kind", "name", "seed", "sleep_ms", "crash"}));
    LATTICE_RETURN_IF_ERROR(GetInt(config, "sleep_ms", "", &c.sleep_ms, 0));
    if (const json* crash = Find(config, "crash")) {
      if (!crash->is_object()) return Bad("crash", "expected an object, got " + TypeName(*crash));
      LATTICE_RETURN_IF_ERROR(CheckObject(*crash, "crash", {"signal", "once_file"}));
      NoopCrash k;
      int signal = SIGSEGV;
      LATTICE_RETURN_IF_ERROR(GetEnum<int>(
          *crash, "signal", "crash",
          {{"SIGSEGV", SIGSEGV}, {"SIGABRT", SIGABRT}, {"SIGKILL", SIGKILL}}, &signal));
      k.signal = signal;
      LATTICE_RETURN_IF_ERROR(GetString(*crash, "once_file", "crash", &k.once_file));
      if (k.once_file.empty()) return Bad("crash.once_file", "required");
      c.crash = k;
    }
    return c;
  }
  if (c.kind == JobKind::kEmbed) {
    LATTICE_ASSIGN_OR_RETURN(EmbedConfig embed, ParseEmbedConfig(config));
    c.embed = std::make_shared<const EmbedConfig>(std::move(embed));
    return c;
  }
  if (c.kind == JobKind::kDistill) {
    LATTICE_RETURN_IF_ERROR(CheckObject(config, "",
                                        {"kind", "name", "seed", "dataset", "model", "train",
                                         "teacher", "distill", "checkpoint"}));
    LATTICE_ASSIGN_OR_RETURN(c.distill, ParseDistill(config));
  } else {
    LATTICE_RETURN_IF_ERROR(CheckObject(config, "",
                                        {"kind", "name", "seed", "dataset", "model", "train",
                                         "checkpoint", "alignment"}));
    LATTICE_RETURN_IF_ERROR(ParseAlignment(config, &c));  // jobs/projector_config.h
  }
  if (const json* p = Find(config, "checkpoint"); p && !p->is_null()) {
    LATTICE_ASSIGN_OR_RETURN(c.checkpoints, ParseCheckpointPolicy(*p));
  }
  const json* dataset = Find(config, "dataset");
  if (!dataset) return Bad("dataset", "required");
  LATTICE_ASSIGN_OR_RETURN(c.dataset, ParseDatasetConfig(*dataset, "dataset"));
  if (c.alignment) {
    LATTICE_ASSIGN_OR_RETURN(c.model, ParseProjectorModel(config.value("model", json::object()),
                                                          "model"));
  } else if (const json* m = Find(config, "model"); m && !m->is_null()) {
    LATTICE_ASSIGN_OR_RETURN(c.model, ParseModel(*m, "model"));
  }
  if (const json* t = Find(config, "train"); t && !t->is_null()) {
    LATTICE_ASSIGN_OR_RETURN(c.train, ParseTrain(*t, "train"));
  }
  LATTICE_RETURN_IF_ERROR(CheckSaeJob(config, &c));
  LATTICE_RETURN_IF_ERROR(CheckStudentLayer(c));
  LATTICE_RETURN_IF_ERROR(CheckAlignmentJob(c));
  LATTICE_RETURN_IF_ERROR(CheckSelectionMetric(c));
  return c;
}

}  // namespace lattice::jobs
