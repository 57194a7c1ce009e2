// Model checkpoints of train trials: the bytes a finished train trial leaves behind and an
// embed job loads as its encoder (torch-free; library lattice_jobs_config).
//
// A checkpoint is one string:
//   <header: one line of compact JSON> '\n' <a LibTorch archive (torch::serialize)>
// Header:
//   {"format": "lattice-checkpoint/1",
//    "config": {...},          the trial's whole job config (kind train): the model section
//                              rebuilds the network, dataset.scale and .standardize say how
//                              raw input rows were prepared
//    "in_dim": 784, "classes": 10, "epochs": 12,
//    "metrics": {"val_accuracy": 0.86, ...}}   the trial's result metrics
// The archive holds the network's parameters and buffers under Sequential's names ("0.weight",
// "1.running_mean", ...) and, when the trial standardised its input, "input.mean" and
// "input.std" (fitted on the trial's training split). Python reads the archive with
// torch.jit.load(io.BytesIO(blob[blob.index(b"\n") + 1:])), or torch.jit.load(path) on the
// file `lattice checkpoint download` writes (checked with Debian's python3-torch 1.13:
// named_parameters() gives "0.weight", "0.bias", ..., and "input.mean"/"input.std", which
// the archive stores as parameters; buffers are in named_buffers()). The weights are those
// of the last epoch run, or, with checkpoint.keep_best >= 1 or train.early_stopping, those of
// the best epoch by that metric (jobs/train_job.h, "Final weights"); the header's metrics then
// are that epoch's (val_loss, val_accuracy, ...) and metrics.selected_epoch names it.
// A trial with model {type: torchscript} stores its trained module instead (the same zip
// format: torch.jit.load gives the module with its forward, in eval mode), with the
// standardisation and, in step checkpoints, the trainer's state as extra files of the zip
// (jobs/internal/torchscript_model.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace lattice::jobs {

inline constexpr char kCheckpointFormat[] = "lattice-checkpoint/1";

struct CheckpointHeader {
  nlohmann::json config;  // the trial's job config
  int64_t in_dim = 0;
  int64_t classes = 0;
  int epochs = 0;
  nlohmann::json metrics = nlohmann::json::object();
  // Step checkpoints only: where the run stood and the state it needs to continue exactly
  // ({"step", "epoch", "batch", "rng", "schedule", "progress", ...}; see jobs/train_job.h,
  // "Step checkpoints"). Null in a final checkpoint.
  nlohmann::json resume;

  nlohmann::json ToJson() const;
};

// Parses and checks the header line of `blob` (format, required fields, in_dim/classes >= 1).
// *archive_offset (optional) receives the offset of the archive bytes.
// Error: InvalidArgument "checkpoint: ...".
StatusOr<CheckpointHeader> ReadCheckpointHeader(const std::string& blob,
                                                size_t* archive_offset = nullptr);
// The same for the header line alone (without its '\n'), e.g. CheckpointInfo::header.
StatusOr<CheckpointHeader> ParseCheckpointHeaderLine(std::string_view line);

// Layers of the built-in model that an embed job can take as output, counted as in the
// encoder's "layer": 0 = the prepared input, 1..H = after hidden block i (Linear, batchnorm,
// activation; dropout is off when embedding), H + 1 = the logits; -1 = the logits,
// -2 = the last hidden block (the input of a linear model), down to -(H + 2) = the input.
// Returns the non-negative layer, or InvalidArgument naming `path` when out of range
// ("encoder.layer: 5 is out of range for a model with 1 hidden layer (-3 .. 2)").
StatusOr<int64_t> ResolveLayer(int64_t layer, int64_t hidden_layers, const std::string& path);

}  // namespace lattice::jobs
