// The SigLIP alignment objective and its validation metrics (internal to lattice_jobs;
// includes LibTorch). Zhai et al., "Sigmoid Loss for Language Image Pre-Training", 2023.
//
// For a batch of B pairs: u_i = normalize(mean over the M tokens of the projector's output
// i), v_j = normalize(target j) (L2), logits z_ij = exp(t') * <u_i, v_j> + b, and
//   loss = -(1 / B) * sum_i sum_j log sigmoid(l_ij * z_ij),   l_ij = 1 if i == j else -1.
// t' and b are the projector's parameters (jobs/internal/projectors.h), initialised to
// log 10 and -10 as in the paper.
#pragma once

#include <torch/torch.h>

#include "jobs/internal/projectors.h"

namespace lattice::jobs::internal {

// Projector output [B, M, Dt] -> u [B, Dt]: mean over the tokens, L2-normalised.
torch::Tensor PoolAndNormalize(const torch::Tensor& output);

// z [B_u, B_v] for normalised u [B_u, Dt], v [B_v, Dt]; t', b: 1-element tensors.
torch::Tensor SiglipLogits(const torch::Tensor& u, const torch::Tensor& v,
                           const torch::Tensor& logit_scale, const torch::Tensor& logit_bias);

// The loss above for a square batch of logits [B, B] (pair i on the diagonal).
torch::Tensor SiglipLoss(const torch::Tensor& logits);

// The training loss of one batch: rows x [B, T * Dv], targets [B, Dt].
torch::Tensor SiglipBatchLoss(ProjectorModel& model, const torch::Tensor& x,
                              const torch::Tensor& targets);

// Validation metrics (jobs/projector_config.h) over all N rows, computed in blocks:
//   loss     the SigLIP loss over all N x N pairs, divided by N (the batch loss with the
//            whole validation set as one batch)
//   score    siglip_score: mean over i of sigmoid(z_ii)
//   recall   share of rows whose match ranks in the top k among all N candidates, by
//            cosine similarity (fewer than k candidates score strictly higher: ties count
//            for the pair), image -> text (row i among the targets) and text -> image.
struct AlignmentMetrics {
  double loss = 0, score = 0;
  double recall1_i2t = 0, recall5_i2t = 0, recall1_t2i = 0, recall5_t2i = 0;
};
AlignmentMetrics EvaluateAlignment(ProjectorModel& model, const torch::Tensor& x,
                                   const torch::Tensor& targets);

}  // namespace lattice::jobs::internal
