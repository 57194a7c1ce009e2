// Per-class loss weights from train.class_weights (torch-free; internal to lattice_jobs_config).
//
// ClassWeights(config, counts), counts[c] = training rows of class c (one per class):
//   - inverse_frequency: w_c = n / (k * counts[c]) over the k classes present (n = rows);
//     an absent class gets 1; then each boost {c: f} multiplies w_c by f;
//   - an explicit list: the list itself (it must have one weight per class);
//   - neither: an empty vector (no weighting).
// Errors (InvalidArgument naming the field): a boost for a class the data does not have,
// a list whose length is not the number of classes.
// Thread-safety: pure function.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "jobs/train_config.h"

namespace lattice::jobs::internal {

StatusOr<std::vector<double>> ClassWeights(const ClassWeightsConfig& config,
                                           const std::vector<int64_t>& counts);

}  // namespace lattice::jobs::internal
