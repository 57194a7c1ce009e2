#include "jobs/job_config.h"

#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <vector>

#include "jobs/data_roots.h"
#include "jobs/embed_config.h"
#include "jobs/token_data.h"
#include "jobs/train_config.h"

namespace lattice::jobs {

Status ValidateJobConfig(const nlohmann::json& config) { return ValidateJobConfig(config, nullptr); }

Status ValidateJobConfig(const nlohmann::json& config, std::set<std::string>* found_files) {
  LATTICE_ASSIGN_OR_RETURN(JobConfig parsed, ParseJobConfig(config));
  // Whether every file of `files` is known to exist; when not, `check` looks, and what it
  // found is remembered.
  auto checked = [found_files](std::vector<std::string> files, const auto& check) -> Status {
    files.erase(std::remove(files.begin(), files.end(), std::string()), files.end());
    if (found_files != nullptr &&
        std::all_of(files.begin(), files.end(),
                    [&](const std::string& f) { return found_files->count(f) > 0; })) {
      return Status::Ok();
    }
    LATTICE_RETURN_IF_ERROR(check());
    if (found_files != nullptr) found_files->insert(files.begin(), files.end());
    return Status::Ok();
  };
  if (parsed.kind == JobKind::kTrain || parsed.kind == JobKind::kDistill) {
    const DatasetConfig& d = parsed.dataset;
    std::vector<std::string> files = {d.train.features, d.train.labels, d.train.targets};
    if (d.validation) {
      files.push_back(d.validation->features);
      files.push_back(d.validation->labels);
      files.push_back(d.validation->targets);
    }
    if (d.test) {
      files.push_back(d.test->features);
      files.push_back(d.test->labels);
      files.push_back(d.test->targets);
    }
    LATTICE_RETURN_IF_ERROR(
        checked(files, [&] { return CheckDatasetFilesExist(parsed.dataset, "dataset"); }));
    if (parsed.alignment) {  // token shapes and target width, from the headers
      LATTICE_RETURN_IF_ERROR(CheckAlignmentData(parsed).status());
    }
  }
  // A TorchScript file (a model or a teacher): it exists, under the data roots.
  auto check_module = [&](const std::string& path, const std::string& key) {
    return checked({path}, [&] {
      struct stat st;
      if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
        return Status::InvalidArgument(key + ": file not found: " + path);
      }
      return CheckDataPath(path).WithContext(key);
    });
  };
  if (parsed.model.type == ModelType::kTorchScript) {
    LATTICE_RETURN_IF_ERROR(check_module(parsed.model.path, "model.path"));
  }
  if (parsed.distill && parsed.distill->teacher.type == TeacherConfig::Type::kTorchScript) {
    LATTICE_RETURN_IF_ERROR(check_module(parsed.distill->teacher.path, "teacher.path"));
  } else if (parsed.kind == JobKind::kEmbed) {
    LATTICE_RETURN_IF_ERROR(CheckEmbedFilesExist(*parsed.embed));
  }
  return Status::Ok();
}

Status CheckSweepMetric(const nlohmann::json& config, const std::string& metric) {
  LATTICE_ASSIGN_OR_RETURN(JobConfig parsed, ParseJobConfig(config));
  const std::vector<std::string> names = ResultMetricNames(parsed);
  if (names.empty() || std::find(names.begin(), names.end(), metric) != names.end()) {
    return Status::Ok();
  }
  const std::string kind = JobKindName(parsed.kind);
  if (metric.rfind("test_", 0) == 0) {
    return Status::InvalidArgument(
        "search.metric.name: \"" + metric + "\": test metrics never select a trial (that would " +
        "leak the test part into the choice); use a validation metric (one of: " +
        JoinNames(names) + ")");
  }
  return Status::InvalidArgument("search.metric.name: \"" + metric + "\" is not a metric of a " +
                                 kind + " job (one of: " + JoinNames(names) + ")");
}

std::optional<std::string> ResolveParameterPath(const std::string& name) {
  if (name.find('.') != std::string::npos) return name;
  static const std::map<std::string, std::string> kAliases = {
      {"lr", "train.lr"},
      {"weight_decay", "train.weight_decay"},
      {"batch_size", "train.batch_size"},
      {"epochs", "train.epochs"},
      {"momentum", "train.momentum"},
      {"label_smoothing", "train.label_smoothing"},
      {"optimizer", "train.optimizer"},
      {"dropout", "model.dropout"},
      {"hidden", "model.hidden"},
      {"batchnorm", "model.batchnorm"},
      {"model", "model.type"},
      {"seed", "seed"},
      {"sleep_ms", "sleep_ms"},  // noop jobs (dispatch benchmarks)
      {"pooling", "pooling"},    // embed jobs
      {"normalize", "normalize"},
      {"encoder", "encoder"},
      {"temperature", "distill.temperature"},  // distill jobs
      {"alpha", "distill.alpha"},
      {"expansion", "model.expansion"},  // sparse autoencoders
      {"l1_coefficient", "train.l1_coefficient"},
  };
  auto it = kAliases.find(name);
  if (it == kAliases.end()) return std::nullopt;
  return it->second;
}

bool IsPathField(const std::string& config_path) {
  static const std::set<std::string> kPaths = {
      "dataset.features",            "dataset.labels",      "dataset.images",
      "dataset.path",                "dataset.validation.features",
      "dataset.validation.labels",   "dataset.validation.images",
      "dataset.validation.path",     "dataset.test.features",
      "dataset.test.labels",         "dataset.test.images", "dataset.test.path",
      "model.path",                  "teacher.path",        "encoder.path",
      "corpus.images",               "corpus.features",     "corpus.labels",
      "corpus.dir",                  "corpus.ids",          "crash.once_file",
      "metric.qrels"};
  return kPaths.count(config_path) > 0;
}

}  // namespace lattice::jobs
