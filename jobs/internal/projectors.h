// The projector zoo (internal to lattice_jobs; includes LibTorch): networks that map a
// sequence of T vision tokens of Dv values to M tokens of Dt values (a language model's
// width), trained by an alignment job (jobs/projector_config.h) with the SigLIP objective
// (jobs/internal/siglip.h). Shapes: input [B, T, Dv] -> output [B, M, Dt].
//   linear        Linear(Dv, Dt) per token; M = T.
//   mlp2          Linear(Dv, W) -> GELU -> Linear(W, Dt) per token; M = T (LLaVA-1.5).
//   c_abstractor  + learned position embedding [T, Dv], Linear(Dv, W) per token, `depth`
//                 ResNet blocks on the token grid, adaptive average pooling to the M query
//                 tokens, `depth` ResNet blocks, readout Linear(W, Dt) -> SiLU ->
//                 Linear(Dt, Dt) (Honeybee). Grid: sqrt(T) x sqrt(T) when T is a square,
//                 else 1 x T; pooled to sqrt(M) x sqrt(M) when M is a square, else 1 x M.
//                 ResNet block (pre-activation): x + Conv3x3(SiLU(GN(Conv3x3(SiLU(GN(x)))))),
//                 GN = GroupNorm with one group (a LayerNorm over the block's channels and
//                 grid).
//   perceiver     Linear(Dv, W) per token; M learned latents [M, W]; `depth` layers of
//                 latents += Attn(q = LN(latents), kv = [LN(x); LN(latents)]) (`heads`
//                 heads, no biases) and latents += FF(latents) (LN -> Linear(W, 4W) -> GELU
//                 -> Linear(4W, W), no biases); LN, then Linear(W, Dt) (Flamingo's Perceiver
//                 Resampler, whose media tokens carry no positions of their own).
// Every network also holds the SigLIP parameters t' (logit_scale, initialised to log 10)
// and b (logit_bias, -10), trained with it and saved in its checkpoint.
#pragma once

#include <memory>

#include <torch/torch.h>

#include "jobs/internal/train_model.h"
#include "jobs/projector_config.h"

namespace lattice::jobs::internal {

// One of the four projectors (above).
class ProjectorBodyImpl : public torch::nn::Module {
 public:
  // tokens [B, T, Dv] -> [B, M, Dt].
  virtual torch::Tensor forward(const torch::Tensor& tokens) = 0;
};

// The body of `shape.type`, initialised from the process-wide CPU generator.
std::shared_ptr<ProjectorBodyImpl> MakeProjectorBody(const ProjectorShape& shape);

// A projector as a TrainModel: forward takes prepared rows [B, T * Dv] (FeatureMatrix rows of
// token data) and returns [B, M, Dt]. Parameters: logit_scale and logit_bias (1-element
// tensors), then the body's ("projector.*"). No buffers; no batchnorm.
class ProjectorModel : public TrainModel {
 public:
  // Built on the CPU from the process-wide generator (seed it first), then moved to `device`.
  ProjectorModel(const ProjectorShape& shape, const torch::Device& device);

  const ProjectorShape& shape() const { return shape_; }
  const torch::Tensor& logit_scale() const { return logit_scale_; }  // t' (exp(t') multiplies)
  const torch::Tensor& logit_bias() const { return logit_bias_; }    // b

  torch::Tensor forward(const torch::Tensor& x) override;
  void train() override { net_->train(); }
  void eval() override { net_->eval(); }
  std::vector<torch::Tensor> parameters() const override { return net_->parameters(); }
  std::vector<torch::Tensor> buffers() const override { return net_->buffers(); }
  NamedWeights CloneWeights() const override;
  void LoadWeights(const NamedWeights& weights) override;
  std::unique_ptr<TrainModel> Twin() const override;
  void CopyWeightsFrom(const TrainModel& from) override;
  void to(const torch::Device& device) override { net_->to(device); }
  bool needs_two_rows() const override { return false; }
  std::string Encode(const CheckpointHeader& header, const torch::Tensor& input_mean,
                     const torch::Tensor& input_std,
                     const std::function<void(torch::serialize::OutputArchive&)>& extra) override;
  void Decode(const std::string& blob, size_t offset,
              torch::serialize::InputArchive* state) override;

 private:
  ProjectorShape shape_;
  std::shared_ptr<torch::nn::Module> net_;  // logit_scale, logit_bias, "projector" (the body)
  torch::Tensor logit_scale_, logit_bias_;
};

// The projector of `m` for token data of `tokens` x `dim` values and targets of width
// `target_dim`, on `device`. Errors: InvalidArgument from ResolveProjector.
StatusOr<std::unique_ptr<ProjectorModel>> MakeProjectorModel(const ModelConfig& m, int64_t tokens,
                                                             int64_t dim, int64_t target_dim,
                                                             const torch::Device& device);

}  // namespace lattice::jobs::internal
