// The frozen teacher of a distill job: its logits for the training and validation rows,
// computed once per run (eval mode, no autograd, in chunks) and then read by every epoch.
// Internal to lattice_jobs (includes LibTorch).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <torch/torch.h>

#include "common/status.h"
#include "jobs/train_config.h"

namespace lattice::jobs::internal {

struct TeacherLogits {
  torch::Tensor train;  // [n_train, classes] float32, on the job's device
  torch::Tensor val;    // [n_val, classes]
  int64_t params = 0;   // the teacher's parameter count
  // With a feature layer: the teacher's output there, [n_train, width] / [n_val, width];
  // undefined without.
  torch::Tensor features_train, features_val;
};

// Runs `teacher` over the rows as loaded (multiplied by `rows_scale`, the job's
// dataset.scale; not standardised): a trial checkpoint applies its own input preparation
// (its scale relative to rows_scale, its standardisation); a TorchScript module gets the rows
// reshaped to [B, *input_shape]. `checkpoint` returns the bytes of a trial's checkpoint
// (JobContext::checkpoint). Errors name the teacher and what does not fit ("teacher s1-t3:
// the model takes 784 features per row, the dataset has 64 columns"; "... gives 10
// classes, the dataset has 3"): FailedPrecondition / InvalidArgument.
// `feature_layer` (a trial teacher only; distill.feature_match.teacher_layer, counted as in
// jobs::ResolveLayer) also gives the teacher's output at that layer; out of range for the
// teacher's network: InvalidArgument "distill.feature_match.teacher_layer: 5 is out of
// range for a model with 2 hidden layers (-4 .. 3)".
StatusOr<TeacherLogits> ComputeTeacherLogits(
    const TeacherConfig& teacher, const torch::Tensor& raw_train, const torch::Tensor& raw_val,
    int64_t classes, std::optional<double> rows_scale, const torch::Device& device,
    const std::function<std::shared_ptr<const std::string>(const std::string&)>& checkpoint,
    std::optional<int64_t> feature_layer = std::nullopt);

}  // namespace lattice::jobs::internal
