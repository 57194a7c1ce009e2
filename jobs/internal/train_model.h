// The model a train / distill job trains (internal to lattice_jobs; includes LibTorch): one
// interface over the built-in classifier (a torch::nn::Sequential, jobs/internal/model.h) and
// the user's TorchScript module (jobs/internal/torchscript_model.h), so that one trainer
// (jobs/train_job.cc) gives both the same flat optimizer, schedules, clipping, step
// checkpoints with exact resume, best-epoch weights and device placement.
//
// Contract shared by the implementations:
//   - forward(x): x [B, cols] float32 prepared rows on the model's device -> logits
//     [B, classes]; in training mode after train(), in inference mode after eval().
//   - parameters(): the trainable leaf tensors (requires_grad), one dtype (float32) and
//     device, in a fixed order: the trainer makes them views of one flat buffer
//     (jobs/internal/flat_optimizer.h), so nothing here may replace their storage while
//     training (weights are copied in place).
//   - CloneWeights / LoadWeights: every parameter (trainable or not) then every buffer, by
//     name; a copy detached from autograd, and one loaded back in place.
//   - Encode: a checkpoint (jobs/checkpoint.h): the header line, then the model's archive;
//     `extra` writes a step checkpoint's further state (optimizer, RNG, data order, ...)
//     into a torch::serialize archive that Decode hands back.
//
// Thread-safety: none; the training thread owns a model. A Twin() is a separate model (own
// tensors) that a checkpoint writer thread may Encode while the original trains.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "common/status.h"
#include "jobs/checkpoint.h"
#include "jobs/internal/model.h"
#include "jobs/train_config.h"

namespace lattice::jobs::internal {

class TrainModel {
 public:
  virtual ~TrainModel() = default;

  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
  virtual void train() = 0;
  virtual void eval() = 0;
  virtual std::vector<torch::Tensor> parameters() const = 0;
  // The live buffers (BatchNorm running statistics ...), for gangs to keep them equal.
  virtual std::vector<torch::Tensor> buffers() const = 0;
  virtual NamedWeights CloneWeights() const = 0;
  // `weights`: CloneWeights of a model of the same architecture.
  virtual void LoadWeights(const NamedWeights& weights) = 0;
  // A model of the same architecture with a copy of the weights, in eval mode.
  virtual std::unique_ptr<TrainModel> Twin() const = 0;
  // Copies the weights of `from` (this model's Twin, or its origin) into this one in place.
  virtual void CopyWeightsFrom(const TrainModel& from) = 0;
  virtual void to(const torch::Device& device) = 0;
  // Whether a training batch must have at least two rows (BatchNorm in training mode).
  virtual bool needs_two_rows() const = 0;
  // The built-in network, for feature matching at a hidden layer; null for a TorchScript one.
  virtual torch::nn::Sequential* sequential() { return nullptr; }

  // Checkpoint bytes (see above); input_mean / input_std: the standardisation, when defined.
  // Throws c10::Error on LibTorch failures.
  virtual std::string Encode(
      const CheckpointHeader& header, const torch::Tensor& input_mean,
      const torch::Tensor& input_std,
      const std::function<void(torch::serialize::OutputArchive&)>& extra = {}) = 0;
  // Loads the weights of a checkpoint this architecture's Encode made (archive bytes at
  // `offset` of `blob`) into this model in place; *state receives the archive `extra` wrote.
  // Throws c10::Error / std::exception on a bad archive.
  virtual void Decode(const std::string& blob, size_t offset,
                      torch::serialize::InputArchive* state) = 0;
};

// The model of `m` for rows of `in` columns and `classes` classes, on `device`:
//   built-in: BuildModel(m, in, classes), initialised from the process-wide CPU generator
//     (seed it first), then moved to `device`;
//   torchscript: the module at m.path, loaded onto `device` and checked on `probe` (a few
//     prepared rows [k, in], on `device`): forward in eval mode must give [k, classes]
//     floats, and the module must have float32 trainable parameters.
// Errors (InvalidArgument, a permanent trial failure): "model.path: m.pt: cannot load
// TorchScript module: ...", "model.path: m.pt: forward on rows of 784 values fails: ...",
// "... gives an output of shape [4, 3], expected [4, 10] (the logits of 10 classes)",
// "... has no trainable parameters", "... parameter fc.weight is Double, expected Float".
StatusOr<std::unique_ptr<TrainModel>> MakeTrainModel(const ModelConfig& m, int64_t in,
                                                     int64_t classes, const torch::Tensor& probe,
                                                     const torch::Device& device);

}  // namespace lattice::jobs::internal
