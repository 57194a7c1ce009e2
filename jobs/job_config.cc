#include "jobs/job_config.h"

#include <sys/stat.h>

#include <map>

#include "jobs/embed_config.h"
#include "jobs/train_config.h"

namespace lattice::jobs {

Status ValidateJobConfig(const nlohmann::json& config) {
  LATTICE_ASSIGN_OR_RETURN(JobConfig parsed, ParseJobConfig(config));
  if (parsed.kind == JobKind::kTrain || parsed.kind == JobKind::kDistill) {
    LATTICE_RETURN_IF_ERROR(CheckDatasetFilesExist(parsed.dataset, "dataset"));
  }
  if (parsed.distill && parsed.distill->teacher.type == TeacherConfig::Type::kTorchScript) {
    struct stat st;
    const std::string& path = parsed.distill->teacher.path;
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return Status::InvalidArgument("teacher.path: file not found: " + path);
    }
  } else if (parsed.kind == JobKind::kEmbed) {
    LATTICE_RETURN_IF_ERROR(CheckEmbedFilesExist(*parsed.embed));
  }
  return Status::Ok();
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
      {"temperature", "distill.temperature"},  // distill jobs
      {"alpha", "distill.alpha"},
  };
  auto it = kAliases.find(name);
  if (it == kAliases.end()) return std::nullopt;
  return it->second;
}

}  // namespace lattice::jobs
