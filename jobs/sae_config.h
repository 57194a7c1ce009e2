// Config of a sparse autoencoder (`model: {type: sae}`), its metric names, and the
// activation-dataset section of a train config (torch-free; library lattice_jobs_config).
//
// Schema (keys of the model section when type is sae; every key optional):
//   model: {type: sae,
//           expansion: int >= 1 = 8        dictionary size = expansion x input width
//           l1_coefficient: >= 0           sparsity penalty (or train.l1_coefficient, not
//                                          both; default 1e-3)
//           dead_window: int >= 1 = 10000  a feature is dead when it fired on none of the
//                                          last dead_window training inputs
//           purity_top: int >= 1 = 50}     top-activating validation items per feature
//                                          for label purity
// The SAE itself and its metrics: jobs/internal/sae.h. The training run: jobs/internal/
// sae_trainer.h. An SAE has no classes: dataset labels, when present, only feed the label
// purity metric.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace lattice::jobs {

struct SaeConfig {
  int64_t expansion = 8;
  double l1_coefficient = 1e-3;
  int64_t dead_window = 10000;  // training inputs
  int64_t purity_top = 50;      // validation items per feature
};

inline constexpr double kDefaultL1Coefficient = 1e-3;

// Parses the model section of type sae (`path`: "model"); l1_coefficient stays at the
// default when absent (the caller applies train.l1_coefficient). Errors: InvalidArgument
// naming the key ("model.expansion: must be >= 1, got 0").
StatusOr<SaeConfig> ParseSaeConfig(const nlohmann::json& model, const std::string& path);

// The per-epoch metrics of an SAE run, in order: train_loss, val_loss, val_mse,
// val_explained_variance, val_l0, val_l0_fraction, dead_features, dead_fraction,
// dictionary_size, lr, and, when `labels` (the dataset has labels), val_label_purity (in
// the last epoch's metrics only: a top-k pass over every validation row's features).
// Whether an activations dataset has labels is known only at run time: the names a sweep
// may rank by include val_label_purity always (a dataset without labels never reports it).
std::vector<std::string> SaePerEpochMetricNames(bool labels);

}  // namespace lattice::jobs
