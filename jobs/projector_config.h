// Projector jobs: `alignment: siglip` with a projector model (torch-free; library
// lattice_jobs_config). The networks are in jobs/internal/projectors.h, the objective in
// jobs/internal/siglip.h, the data in jobs/token_data.h.
//
// Schema (a train job; see jobs/train_config.h for the rest):
//   alignment: siglip
//   dataset: token sequences (3-D .npy features, or idx images with tokens: {patch: P}) and
//            targets: t.npy (N x Dt); labels optional
//   model: {type: linear|mlp2|c_abstractor|perceiver = mlp2,
//           queries: M >= 1      (c_abstractor, perceiver; default 16; linear and mlp2 keep
//                                 the T input tokens: M = T),
//           depth: >= 1          (c_abstractor: ResNet blocks before and after the pooling,
//                                 default 3; perceiver: layers, default 2),
//           width: >= 1          (hidden width of mlp2, c_abstractor and perceiver; default
//                                 Dt, the targets' width),
//           heads: >= 1 = 4      (perceiver; width must be a multiple),
//           output_dim: >= 1     (Dt; optional, must equal the targets' width)}
//     Every projector key is accepted by every projector type (a type ignores the ones it
//     has no use for), so that one sweep over model.type can compare all four with one
//     base config.
// Not with alignment (rejected, naming the key): a classifier model (mlp, torchscript),
// train.mixup, train.class_weights, train.label_smoothing, train.early_stopping.metric
// val_accuracy, dataset.classes / rows_per_class, distill. Without alignment the projector
// types are rejected ("model.type: perceiver is a projector: it needs alignment: siglip").
//
// Metrics per epoch: train_loss (the batches' SigLIP loss), val_loss (the SigLIP loss over
// every validation pair, per row), siglip_score (mean sigmoid of the matched pairs' logits on
// validation; higher is better: the primary metric), val_recall_at_{1,5}_{i2t,t2i}
// (retrieval among the validation rows, image -> text and text -> image), logit_scale
// (exp t'), logit_bias (b) and lr. Result: those, final_train_loss, final_val_loss,
// best_siglip_score, best_val_loss, best_epoch (and selected_epoch, selected_val_loss).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "jobs/train_config.h"

namespace lattice::jobs {

// Whether `type` is one of the projectors that only alignment jobs train.
bool IsProjectorOnly(ModelType type);

// Parses a projector model section (above). Errors: InvalidArgument naming the key.
StatusOr<ModelConfig> ParseProjectorModel(const nlohmann::json& m, const std::string& path);

// Parses the top-level `alignment` of a train job into c->alignment (absent: unchanged).
Status ParseAlignment(const nlohmann::json& config, JobConfig* c);

// The checks between sections of an alignment job (see "Not with alignment" above).
Status CheckAlignmentJob(const JobConfig& c);

// Per-epoch metrics of an alignment job, in order; and the result metrics a sweep can rank by.
std::vector<std::string> AlignmentEpochMetricNames();
std::vector<std::string> AlignmentResultMetricNames(const JobConfig& c);

// The projector's sizes for data of `tokens` x `dim` and targets of width `target_dim`, the
// defaults filled in. Errors: InvalidArgument "model.heads: 3 does not divide width 64".
struct ProjectorShape {
  ModelType type = ModelType::kMlp2;
  int64_t tokens = 0, dim = 0;  // input: T x Dv
  int64_t queries = 0;          // M
  int64_t target_dim = 0;       // Dt
  int64_t width = 0, depth = 0, heads = 0;
};
StatusOr<ProjectorShape> ResolveProjector(const ModelConfig& m, int64_t tokens, int64_t dim,
                                          int64_t target_dim);

}  // namespace lattice::jobs
