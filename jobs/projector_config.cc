#include "jobs/projector_config.h"

#include "jobs/internal/config_fields.h"

namespace lattice::jobs {
namespace {

using internal::Bad;
using internal::Find;
using internal::Join;

constexpr int64_t kDefaultQueries = 16;
constexpr int64_t kDefaultCAbstractorDepth = 3;
constexpr int64_t kDefaultPerceiverDepth = 2;

}  // namespace

bool IsProjectorOnly(ModelType type) {
  return type == ModelType::kMlp2 || type == ModelType::kCAbstractor ||
         type == ModelType::kPerceiver;
}

StatusOr<ModelConfig> ParseProjectorModel(const nlohmann::json& m, const std::string& path) {
  ModelConfig c;
  c.type = ModelType::kMlp2;
  if (!m.is_object()) return Bad(path, "expected an object, got " + internal::TypeName(m));
  std::string type;
  LATTICE_RETURN_IF_ERROR(internal::GetString(m, "type", path, &type));
  if (type == "linear") c.type = ModelType::kLinear;
  else if (type == "mlp2") c.type = ModelType::kMlp2;
  else if (type == "c_abstractor") c.type = ModelType::kCAbstractor;
  else if (type == "perceiver") c.type = ModelType::kPerceiver;
  else if (!type.empty()) {
    return Bad(Join(path, "type"), "an alignment job trains a projector: linear|mlp2|"
                                   "c_abstractor|perceiver, got \"" + type + "\"");
  }
  LATTICE_RETURN_IF_ERROR(internal::CheckObject(
      m, path, {"type", "queries", "depth", "width", "heads", "output_dim"}));
  LATTICE_RETURN_IF_ERROR(internal::GetInt(m, "queries", path, &c.queries, 1, 1 << 20));
  LATTICE_RETURN_IF_ERROR(internal::GetInt(m, "depth", path, &c.depth, 1, 64));
  LATTICE_RETURN_IF_ERROR(internal::GetInt(m, "width", path, &c.width, 1, 1 << 20));
  LATTICE_RETURN_IF_ERROR(internal::GetInt(m, "heads", path, &c.heads, 1, 1024));
  LATTICE_RETURN_IF_ERROR(internal::GetInt(m, "output_dim", path, &c.output_dim, 1, 1 << 20));
  return c;
}

Status ParseAlignment(const nlohmann::json& config, JobConfig* c) {
  const nlohmann::json* a = Find(config, "alignment");
  if (a == nullptr || a->is_null()) return Status::Ok();
  if (!a->is_string() || a->get<std::string>() != "siglip") {
    return Bad("alignment", "the alignment objective: siglip, got " + a->dump());
  }
  c->alignment = AlignmentType::kSiglip;
  return Status::Ok();
}

Status CheckAlignmentJob(const JobConfig& c) {
  if (!c.alignment) {
    if (IsProjectorOnly(c.model.type)) {
      return Bad("model.type", "a projector (mlp2, c_abstractor, perceiver) needs alignment: "
                               "siglip at the top level of the job");
    }
    if (!c.dataset.train.targets.empty()) {
      return Bad("dataset.targets", "target embeddings are trained against with alignment: "
                                    "siglip at the top level of the job");
    }
    return Status::Ok();
  }
  if (c.kind != JobKind::kTrain) return Bad("alignment", "only train jobs take it");
  const TrainConfig& t = c.train;
  if (t.mixup) return Bad("train.mixup", "not with alignment (it mixes class labels)");
  if (!t.class_weights.empty()) return Bad("train.class_weights", "not with alignment");
  if (t.label_smoothing > 0) return Bad("train.label_smoothing", "not with alignment");
  if (t.early_stopping && t.early_stopping->metric == EarlyStoppingMetric::kValAccuracy) {
    return Bad("train.early_stopping.metric", "val_accuracy is not a metric of an alignment "
                                              "job: use val_loss");
  }
  if (!c.dataset.classes.empty()) return Bad("dataset.classes", "not with alignment");
  if (c.dataset.train.targets.empty()) {
    return Bad("dataset.targets", "required with alignment: the paired target embeddings, a "
                                  "2-D .npy [N, Dt]");
  }
  for (const auto& [part, name] : {std::pair{&c.dataset.validation, "validation"},
                                   std::pair{&c.dataset.test, "test"}}) {
    if (*part && (*part)->targets.empty()) {
      return Bad("dataset." + std::string(name) + ".targets", "required with alignment");
    }
  }
  return Status::Ok();
}

std::vector<std::string> AlignmentEpochMetricNames() {
  return {"train_loss",          "val_loss",            "siglip_score",
          "val_recall_at_1_i2t", "val_recall_at_5_i2t", "val_recall_at_1_t2i",
          "val_recall_at_5_t2i", "logit_scale",         "logit_bias",
          "lr"};
}

std::vector<std::string> AlignmentResultMetricNames(const JobConfig& c) {
  std::vector<std::string> names = AlignmentEpochMetricNames();
  names.insert(names.end(), {"final_train_loss", "final_val_loss", "best_siglip_score",
                             "best_val_loss", "best_epoch"});
  if ((c.checkpoints && c.checkpoints->keep_best >= 1) || c.train.early_stopping) {
    names.insert(names.end(), {"selected_epoch", "selected_val_loss"});
  }
  return names;
}

StatusOr<ProjectorShape> ResolveProjector(const ModelConfig& m, int64_t tokens, int64_t dim,
                                          int64_t target_dim) {
  ProjectorShape s;
  s.type = m.type;
  s.tokens = tokens;
  s.dim = dim;
  s.target_dim = target_dim;
  if (m.output_dim > 0 && m.output_dim != target_dim) {
    return Bad("model.output_dim", std::to_string(m.output_dim) +
                                       " does not match the targets' width " +
                                       std::to_string(target_dim));
  }
  const bool pooled = m.type == ModelType::kCAbstractor || m.type == ModelType::kPerceiver;
  s.queries = pooled ? (m.queries > 0 ? m.queries : kDefaultQueries) : tokens;
  s.width = m.width > 0 ? m.width : target_dim;
  s.depth = m.depth > 0 ? m.depth
                        : (m.type == ModelType::kPerceiver ? kDefaultPerceiverDepth
                                                           : kDefaultCAbstractorDepth);
  s.heads = m.heads;
  if (m.type == ModelType::kPerceiver && s.width % s.heads != 0) {
    return Bad("model.heads", std::to_string(s.heads) + " does not divide the width " +
                                  std::to_string(s.width) + " (model.width, default the "
                                  "targets' width)");
  }
  return s;
}

}  // namespace lattice::jobs
