// Training run of a sparse autoencoder (`model: {type: sae}`, jobs/sae_config.h; internal to
// lattice_jobs, includes LibTorch). RunJob sends train jobs of that model type here.
//
// Protocol:
//   1. Rows: an activation dataset (dataset.activations: the blob the coordinator sent,
//      jobs/activation_dataset.h; labels when its corpus had them) or files
//      (dataset.features / images / path with labels, as for any train job). Any NaN or
//      Inf row fails the trial at once (FailedPrecondition naming the row and column;
//      nothing is trained, no checkpoint). Split: a seeded shuffle (dataset.split
//      validation_fraction, seed), `limit` first; optional standardisation fitted on the
//      training rows.
//   2. torch::manual_seed(seed), then the model (jobs/internal/sae.h) with b_pre = the
//      training rows' mean; the flat optimizer and LR schedule of train.
//   3. Each epoch: the training rows in a Fisher-Yates order from std::mt19937_64(seed)
//      (as the classifier trainer), batches of train.batch_size; per batch: loss
//      (SaeLoss), backward, optional gradient clipping, optimizer step, decoder columns
//      renormalised to unit norm, the batch's features recorded for dead features.
//      Then validation metrics (EvaluateSae) and ctx.on_epoch with
//      SaePerEpochMetricNames: train_loss (mean batch loss), val_loss, val_mse,
//      val_explained_variance, val_l0, val_l0_fraction (val_l0 / dictionary size),
//      dead_features (no activation over the last model.dead_window training inputs),
//      dead_fraction, dictionary_size, lr, and val_label_purity when there are labels
//      (top model.purity_top validation items of each live feature).
//   4. Result: the last epoch's metrics; the final checkpoint (SaeModel::Encode) unless
//      train.checkpoint is false.
// Errors: as RunJob's; a NaN loss is FailedPrecondition; Cancelled when asked to stop.
// Gangs (workers_per_trial > 1) are refused: an SAE trains on one worker.
#pragma once

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "jobs/train_config.h"
#include "jobs/train_job.h"

namespace lattice::jobs::internal {

StatusOr<JobResult> RunSaeTrain(const JobConfig& cfg, const nlohmann::json& config,
                                JobContext& ctx);

}  // namespace lattice::jobs::internal
