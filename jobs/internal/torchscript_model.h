// The user's TorchScript module as a TrainModel (jobs/internal/train_model.h; internal to
// lattice_jobs): model {type: torchscript, path: m.pt, input_shape: [...]}.
//
// Training: the module's own forward, run through the TorchScript interpreter with graph
// optimisation off on the calling thread (torch::jit::setGraphExecutorOptimize is
// thread-local): the graph's ops run one by one under autograd, as in eager PyTorch, so
// the numbers do not change when the profiling executor would re-plan after its warm-up
// runs, and a run resumed from a step checkpoint is bit-identical to an uninterrupted one.
// train() / eval() set the `training` flag of the module and every submodule (dropout,
// batchnorm), as nn.Module.train() does. Parameters with requires_grad false stay frozen
// (they are saved, not trained).
//
// Checkpoint archive: the module itself (torch::jit::Module::save; torch.jit.load in
// Python gives the trained module with its forward), saved in eval mode, with extra files
// in the zip:
//   "lattice.json"   {"format": "lattice-torchscript/1", "input_shape": [...]} plus, when the
//                    trial standardised its input, "input_mean" / "input_std" (float lists)
//   "lattice_state"  step checkpoints only: a torch::serialize archive of the trainer's
//                    state (optimizer moments, data order, RNG, best-epoch weights)
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/script.h>
#include <torch/torch.h>

#include "jobs/internal/train_model.h"

namespace lattice::jobs::internal {

inline constexpr char kTorchScriptInfoFile[] = "lattice.json";
inline constexpr char kTorchScriptStateFile[] = "lattice_state";

// Sets torch::jit::setGraphExecutorOptimize(false) on this thread for its scope.
class NoGraphOptimization {
 public:
  NoGraphOptimization();
  ~NoGraphOptimization();
  NoGraphOptimization(const NoGraphOptimization&) = delete;
  NoGraphOptimization& operator=(const NoGraphOptimization&) = delete;

 private:
  bool previous_;
};

class TorchScriptModel : public TrainModel {
 public:
  // See MakeTrainModel (jobs/internal/train_model.h) for the checks and their errors.
  static StatusOr<std::unique_ptr<TorchScriptModel>> Load(const ModelConfig& m, int64_t classes,
                                                          const torch::Tensor& probe,
                                                          const torch::Device& device);

  torch::Tensor forward(const torch::Tensor& x) override;
  void train() override { module_.train(true); }
  void eval() override { module_.eval(); }
  std::vector<torch::Tensor> parameters() const override;
  std::vector<torch::Tensor> buffers() const override;
  NamedWeights CloneWeights() const override;
  void LoadWeights(const NamedWeights& weights) override;
  std::unique_ptr<TrainModel> Twin() const override;
  void CopyWeightsFrom(const TrainModel& from) override;
  void to(const torch::Device& device) override { module_.to(device); }
  bool needs_two_rows() const override { return needs_two_rows_; }
  std::string Encode(const CheckpointHeader& header, const torch::Tensor& input_mean,
                     const torch::Tensor& input_std,
                     const std::function<void(torch::serialize::OutputArchive&)>& extra) override;
  void Decode(const std::string& blob, size_t offset,
              torch::serialize::InputArchive* state) override;

 private:
  TorchScriptModel(torch::jit::Module module, std::vector<int64_t> input_shape);

  // x [B, cols] -> [B, *input_shape] (a view when contiguous).
  torch::Tensor Shape(const torch::Tensor& x) const;

  torch::jit::Module module_;
  std::vector<int64_t> input_shape_;  // per row; empty: as given
  bool needs_two_rows_ = false;       // has a batchnorm buffer (running_mean)
};

// A TorchScript checkpoint (TorchScriptModel::Encode's archive) loaded for inference: the
// module (eval mode, on the CPU) and its lattice.json. Errors: InvalidArgument
// "checkpoint: ...".
struct LoadedTorchScript {
  torch::jit::Module module;
  torch::Tensor input_mean, input_std;  // undefined unless the trial standardised
  std::vector<int64_t> input_shape;
};
StatusOr<LoadedTorchScript> LoadTorchScriptCheckpoint(const std::string& blob, size_t offset);

}  // namespace lattice::jobs::internal
