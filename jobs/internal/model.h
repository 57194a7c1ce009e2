// The built-in classifier (linear / MLP) and its checkpoints (internal to lattice_jobs;
// includes LibTorch). The checkpoint format is described in jobs/checkpoint.h.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "common/status.h"
#include "jobs/checkpoint.h"
#include "jobs/train_config.h"

namespace torch::jit {
struct Module;
}  // namespace torch::jit

namespace lattice::jobs::internal {

// Linear -> [BatchNorm1d] -> activation -> [Dropout] per hidden width, then Linear to `out`.
torch::nn::Sequential BuildModel(const ModelConfig& m, int64_t in, int64_t out);

// For each layer l = 0 .. H + 1 (as in jobs::ResolveLayer) of BuildModel(m, ...), the number
// of the Sequential's first modules that produce it: 0 for the input, then the end of each
// hidden block (Linear, batchnorm, activation, dropout), then all of them (the logits).
std::vector<size_t> LayerEnds(const ModelConfig& m);

// The width of layer l (0 .. H + 1) of BuildModel(m, in, out).
int64_t LayerWidth(const ModelConfig& m, int64_t layer, int64_t in, int64_t out);

// Saves the state of the process-wide CPU generator and puts it back when destroyed, so that
// building a module in its scope (which draws initial weights) does not change the draws
// that follow (dropout masks, further modules).
class KeepCpuGeneratorState {
 public:
  KeepCpuGeneratorState();
  ~KeepCpuGeneratorState();
  KeepCpuGeneratorState(const KeepCpuGeneratorState&) = delete;
  KeepCpuGeneratorState& operator=(const KeepCpuGeneratorState&) = delete;

  const torch::Tensor& state() const { return state_; }  // as it was on construction

 private:
  torch::Tensor state_;
};

// Copies the parameters and buffers of `from` into `to` in place (same architecture), so
// that `to`'s tensors keep their storage (e.g. views of a flat parameter buffer).
void CopyWeights(torch::nn::Module& from, torch::nn::Module& to);

// A copy of a model's parameters and then its buffers, by name ("0.weight",
// "1.running_mean"), detached from autograd.
using NamedWeights = std::vector<std::pair<std::string, torch::Tensor>>;
NamedWeights CloneWeights(const torch::nn::Module& model);

// Copies `weights` (CloneWeights of a model of the same architecture) into `to` in place.
void LoadWeights(const NamedWeights& weights, torch::nn::Module& to);

// Serialises `model`'s parameters and buffers (and the standardisation tensors, when
// defined) behind `header`. Throws c10::Error on LibTorch failures.
// `extra`, when given, adds more entries to the archive (a step checkpoint's state).
std::string EncodeCheckpoint(
    torch::nn::Module& model, const CheckpointHeader& header, const torch::Tensor& input_mean,
    const torch::Tensor& input_std,
    const std::function<void(torch::serialize::OutputArchive&)>& extra = {});

// A checkpoint loaded for inference (eval mode).
class CheckpointModel {
 public:
  // Rebuilds the network from the header's config and loads the archive; a TorchScript
  // trial's archive is its module (jobs/internal/torchscript_model.h), with two layers: 0
  // (the prepared input) and 1 (its output).
  // Errors: InvalidArgument for a bad header, config or archive ("checkpoint: ...").
  static StatusOr<CheckpointModel> Decode(const std::string& blob);

  const CheckpointHeader& header() const { return header_; }
  int64_t hidden_layers() const { return static_cast<int64_t>(layer_ends_.size()) - 2; }

  // The output of `layer` (0 .. hidden_layers() + 1, see jobs::ResolveLayer) for raw input
  // rows `x` [B, in_dim]: scale and standardisation as in training, then the blocks.
  // `input_scale`: the rows were already multiplied by this (a distill job's own
  // dataset.scale); only what the trial's scale still lacks is applied.
  torch::Tensor Forward(const torch::Tensor& x, int64_t layer,
                        std::optional<double> input_scale = std::nullopt);

  // Number of trainable parameters of the network.
  int64_t parameter_count() const;

  // Moves the network and the input preparation to `device` (no-op when already there).
  void To(const torch::Device& device);

 private:
  CheckpointHeader header_;
  torch::nn::Sequential model_{nullptr};
  std::shared_ptr<torch::jit::Module> script_;  // a TorchScript trial's module instead
  std::vector<int64_t> input_shape_;            // script_'s per-row input shape; empty: [cols]
  std::optional<double> scale_;
  torch::Tensor mean_, std_;        // undefined unless the trial standardised
  std::vector<size_t> layer_ends_;  // layer l = the first layer_ends_[l] modules
  torch::Device device_ = torch::kCPU;
};

}  // namespace lattice::jobs::internal
