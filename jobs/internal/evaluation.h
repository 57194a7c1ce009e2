// Evaluation of a train / distill job's model on a split (LibTorch; internal to
// lattice_jobs): loss, accuracy, the confusion counts, and for distillation the agreement
// with the teacher and the feature-matching loss. Sharded over a gang's members
// (jobs/internal/data_parallel.h). Errors: the gang's collectives'.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "jobs/internal/data_parallel.h"
#include "jobs/internal/feature_match.h"
#include "jobs/internal/train_model.h"

namespace lattice::jobs::internal {

struct EvalResult {
  double loss = 0;
  double accuracy = 0;
  double agreement = 0;     // share of rows where argmax equals the teacher's (distill)
  double feature_loss = 0;  // MSE(map(s), t) (distill.feature_match), unweighted
  std::vector<int64_t> confusion;  // classes x classes, [true * classes + predicted]
};

// Plain cross-entropy and accuracy on the validation split, in chunks; with
// `teacher_logits` (distill), also the argmax agreement with the teacher; with
// `feature_match`, also the feature MSE against `teacher_features`. A gang member evaluates
// its shard of the rows and the sums are added over the members (`dp`: DataParallel).
StatusOr<EvalResult> Evaluate(DataParallel& dp, TrainModel& model,
                              const torch::Tensor& x, const torch::Tensor& y, int64_t classes,
                              const torch::Tensor& teacher_logits = {},
                              const FeatureMatch* feature_match = nullptr,
                              const torch::Tensor& teacher_features = {});

// The teacher's own cross-entropy and accuracy on the validation rows (once per run).
EvalResult EvaluateLogits(const torch::Tensor& logits, const torch::Tensor& y);

}  // namespace lattice::jobs::internal
