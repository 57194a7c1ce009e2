// Mixup (Zhang et al., 2018) for train jobs (LibTorch; internal to lattice_jobs).
//
// With train.mixup {alpha, until}, each training batch of the epochs e (from 1) with
// e - 1 < until * train.epochs is replaced by lambda * x + (1 - lambda) * x[perm] and
// the loss by lambda * CE(logits, y) + (1 - lambda) * CE(logits, y[perm]) (class weights
// and label smoothing apply to both terms), lambda ~ Beta(alpha, alpha) drawn once per
// batch and perm a uniform permutation of the batch's rows. Both are drawn from the
// trainer's std::mt19937_64 (part of step checkpoints), so a resumed run mixes the same.
// Thread-safety: none (the generator is the caller's).
#pragma once

#include <cstdint>
#include <random>

#include <torch/torch.h>

#include "jobs/train_config.h"

namespace lattice::jobs::internal {

// Whether epoch `epoch` (from 1) of a run of `epochs` mixes.
bool MixupActive(const MixupConfig& config, int epoch, int64_t epochs);

struct MixedBatch {
  torch::Tensor x;        // lambda * x + (1 - lambda) * x[perm]
  torch::Tensor y_other;  // y[perm]
  double lambda = 1.0;
};

// Mixes one batch (x: [B, d], y: [B], on any device).
MixedBatch Mixup(const torch::Tensor& x, const torch::Tensor& y, double alpha,
                 std::mt19937_64& rng);

// lambda * CE(logits, y) + (1 - lambda) * CE(logits, y_other) with `options`.
torch::Tensor MixupLoss(const torch::Tensor& logits, const torch::Tensor& y,
                        const MixedBatch& batch,
                        const torch::nn::functional::CrossEntropyFuncOptions& options);

}  // namespace lattice::jobs::internal
