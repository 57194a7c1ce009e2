// The sparse autoencoder (`model: {type: sae}`) and its metrics (internal to lattice_jobs;
// includes LibTorch).
//
// Model, for inputs x [B, d] and a dictionary of m = expansion * d features:
//   f     = ReLU((x - b_pre) W_enc^T + b_enc)        features  [B, m]   W_enc [m, d]
//   x_hat = f W_dec^T + b_pre                        output    [B, d]   W_dec [d, m]
// b_pre is the pre-encoder bias: subtracted before the encoder, added back after the
// decoder. Column i of W_dec is feature i's direction; RenormaliseDecoder() scales every
// column to unit L2 norm (the trainer calls it after each optimizer step).
// Initialisation (from the process-wide CPU generator, then moved to the device):
//   W_dec = randn(d, m), columns scaled to unit norm; W_enc = W_dec^T (a copy);
//   b_enc = 0; b_pre = `b_pre_init` (the training rows' mean), or 0 when undefined.
// Loss (SaeLoss): mean over the batch and dimensions of (x_hat - x)^2, plus
//   l1_coefficient * mean over the batch of sum_i f_i * ||W_dec[:, i]||_2.
// Parameters, in order (the flat optimizer's layout): b_pre, W_enc, b_enc, W_dec.
// Checkpoint archive keys: "b_pre", "W_enc", "b_enc", "W_dec" (and "input.mean" /
// "input.std" when the run standardised its input).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "jobs/internal/train_model.h"

namespace lattice::jobs::internal {

class SaeModel : public TrainModel {
 public:
  SaeModel(int64_t in, int64_t features, const torch::Tensor& b_pre_init = {});

  // The reconstruction x_hat [B, d].
  torch::Tensor forward(const torch::Tensor& x) override;
  // The reconstruction, and the features f [B, m] in *features.
  torch::Tensor Forward(const torch::Tensor& x, torch::Tensor* features);
  // Scales every decoder column to unit L2 norm, in place, without autograd.
  void RenormaliseDecoder();
  // ||W_dec[:, i]||_2 for every feature [m] (differentiable).
  torch::Tensor DecoderNorms() const;

  int64_t in() const { return in_; }
  int64_t features() const { return features_; }

  void train() override {}
  void eval() override {}
  std::vector<torch::Tensor> parameters() const override;
  std::vector<torch::Tensor> buffers() const override { return {}; }
  NamedWeights CloneWeights() const override;
  void LoadWeights(const NamedWeights& weights) override;
  std::unique_ptr<TrainModel> Twin() const override;
  void CopyWeightsFrom(const TrainModel& from) override;
  void to(const torch::Device& device) override;
  bool needs_two_rows() const override { return false; }
  std::string Encode(const CheckpointHeader& header, const torch::Tensor& input_mean,
                     const torch::Tensor& input_std,
                     const std::function<void(torch::serialize::OutputArchive&)>& extra = {})
      override;
  void Decode(const std::string& blob, size_t offset,
              torch::serialize::InputArchive* state) override;

 private:
  SaeModel(int64_t in, int64_t features, bool);  // uninitialised tensors of the right shape
  const int64_t in_, features_;
  torch::Tensor b_pre_, w_enc_, b_enc_, w_dec_;
};

// The SAE loss of a batch: mse + l1_coefficient * sparsity, and its parts (see above).
struct SaeLossParts {
  torch::Tensor loss;  // scalar, differentiable
  double mse = 0;
  double sparsity = 0;  // mean over the batch of sum_i f_i * ||W_dec[:, i]||
};
SaeLossParts SaeLoss(const torch::Tensor& x, const torch::Tensor& x_hat,
                     const torch::Tensor& features, const torch::Tensor& decoder_norms,
                     double l1_coefficient);

// Which features fired recently, over a stream of training inputs.
class DeadFeatureTracker {
 public:
  DeadFeatureTracker(int64_t features, int64_t window);
  // Records a batch's features [B, m] (> 0: fired); the batch counts as B inputs.
  void Record(const torch::Tensor& features);
  // Features that fired on none of the last `window` inputs (of all inputs so far, when
  // fewer were seen).
  int64_t Dead() const;
  int64_t seen() const { return seen_; }

 private:
  const int64_t window_;
  int64_t seen_ = 0;
  torch::Tensor last_fired_;  // [m] int64: inputs seen when it last fired; -1: never
};

// Validation metrics of an SAE on rows x [n, d] (eval in chunks, no autograd):
struct SaeEval {
  double loss = 0;                // mse + l1 * sparsity
  double mse = 0;                 // mean over rows and dimensions of (x_hat - x)^2
  double explained_variance = 0;  // 1 - sum (x - x_hat)^2 / sum (x - mean(x))^2
  double l0 = 0;                  // mean number of features > 0 per row
  double label_purity = -1;       // mean over live features (fired on any row) of the share
                                  // of the majority label among the feature's top `top`
                                  // activating rows (those with activation > 0); -1: no labels
  int64_t live_features = 0;      // features that fired on at least one validation row
};
// `labels`: [n] int64 or undefined (no purity).
SaeEval EvaluateSae(SaeModel& model, const torch::Tensor& x, const torch::Tensor& labels,
                    double l1_coefficient, int64_t top);

// The label purity of features [n, m] (see SaeEval), from the features themselves; for
// tests and EvaluateSae. Returns -1 when no feature fired; *live receives the live count.
double LabelPurity(const torch::Tensor& features, const torch::Tensor& labels, int64_t top,
                   int64_t* live = nullptr);

}  // namespace lattice::jobs::internal
