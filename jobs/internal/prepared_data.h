// A train / distill job's dataset as tensors (LibTorch; internal to lattice_jobs): the
// training, validation and test parts split and standardised, the class weights, moved to
// the job's device. Errors: InvalidArgument from the split and the class weights.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "common/status.h"
#include "jobs/dataset.h"
#include "jobs/train_config.h"

namespace lattice::jobs::internal {

// Training and validation tensors, ready for the loop.
struct PreparedData {
  torch::Tensor x_train, y_train, x_val, y_val;  // [n, d] float32, [n] int64
  torch::Tensor x_test, y_test;  // the test part; undefined without one
  torch::Tensor class_weights;   // [classes] float32 loss weights; undefined without
  torch::Tensor mean, std;  // [d] standardisation fitted on x_train; undefined without
  torch::Tensor raw_train, raw_val;  // before standardisation (distill's teacher input)
  int64_t num_classes = 0;
};

// Splits (or takes the explicit validation part) and standardizes. The returned tensors
// own their memory unless they alias `data` read-only (explicit validation, no scaling).
StatusOr<PreparedData> Prepare(const LoadedDataset& data, const DatasetConfig& cfg,
                               bool keep_raw);

// Moves the tensors the loop reads to `device` (no-ops on the CPU). The standardisation
// stays on the CPU: it only goes into the checkpoint.
void MoveTo(PreparedData& p, const torch::Device& device);

// train.class_weights for the training split (undefined tensor: no weights).
StatusOr<torch::Tensor> LossWeights(const ClassWeightsConfig& config, const PreparedData& p);

}  // namespace lattice::jobs::internal
