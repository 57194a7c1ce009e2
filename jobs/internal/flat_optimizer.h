// Flat parameter/gradient buffers and a fused optimizer over them (LibTorch; internal to
// lattice_jobs).
//
// Why: on a small model (the digits probe: 6 parameter tensors, ~20k floats) a training
// step costs LibTorch per-op dispatch, not arithmetic. torch::optim::AdamW runs ~10 ops per
// parameter tensor and zero_grad two more; over one flat buffer the same update is 8 ops
// and zero_grad is one.
//
// How:
//   1. FlatParameters copies every parameter into one contiguous float buffer and makes
//      each parameter a view of it (Tensor::set_data); each parameter's .grad becomes a
//      view of a second, zeroed buffer. Autograd accumulates into a defined .grad in place
//      (`grad += new_grad`), so after backward() the flat gradient buffer holds every
//      parameter's gradient.
//   2. FlatOptimizer applies AdamW / Adam / SGD elementwise to the flat buffers, with the
//      math of torch::optim::{AdamW, Adam, SGD} (LibTorch 1.13): AdamW decays decoupled
//      (p *= 1 - lr * wd), Adam and SGD add wd * p to the gradient; Adam(W) use bias
//      correction, betas 0.9 / 0.999, eps 1e-8 (added after the bias-corrected sqrt);
//      SGD's momentum buffer starts as a copy of the first gradient (no dampening, no
//      Nesterov). Weight decay applies to every parameter, as with the torch optimizers
//      built over model->parameters().
//
// Contract: every parameter receives a gradient in every step (true for the models of
// jobs/train_job.cc); a torch optimizer would skip a parameter without one, this one
// treats it as a zero gradient. Nothing may reset a parameter's .grad (no
// zero_grad(set_to_none), no `p.grad() = ...`) or its data (no set_data) while the
// FlatParameters lives, or the views detach from the flat buffers.
//
// Thread-safety: none; use from one thread. Errors: a broken precondition (mixed dtypes or
// devices, a parameter that does not require grad, no parameters) is LATTICE_CHECK.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "common/status.h"
#include "jobs/train_config.h"

namespace lattice::jobs::internal {

// Where a FlatParameters keeps its two buffers (jobs/internal/data_parallel.h: a gang's).
struct FlatMemory {
  // Each buffer holds a multiple of this many floats: the parameters, then zeros (a gang
  // of k pads to k equal shards). Default: 1, no padding.
  int64_t multiple = 1;
  // Float parameters on the CPU only: memory for `numel` floats that outlives the
  // FlatParameters (a gang's communicator workspace: comm::Communicator::Workspace), called
  // for the gradients, then for the parameters; nullptr: the buffer allocates its own.
  std::function<float*(int64_t numel)> allocate;
};

class FlatParameters {
 public:
  // `params`: leaf tensors that require grad, all of one floating dtype and device. Their
  // values are copied into the flat buffer; the tensors keep their identity (modules
  // still hold them) but now alias it, and their .grad is a zeroed view of grads().
  explicit FlatParameters(const std::vector<torch::Tensor>& params, const FlatMemory& memory = {});

  const torch::Tensor& params() const { return params_; }  // [numel], all parameters
  const torch::Tensor& grads() const { return grads_; }    // [numel], all gradients
  int64_t numel() const { return params_.numel(); }
  // The whole buffers: params() / grads(), then the padding (zeros).
  const torch::Tensor& padded_params() const { return padded_params_; }
  const torch::Tensor& padded_grads() const { return padded_grads_; }
  // Whether both buffers are FlatMemory::allocate's memory.
  bool borrowed() const { return borrowed_; }

  // Zeroes every gradient (and the padding) with one op.
  void ZeroGrad() { padded_grads_.zero_(); }

  // Scales the gradients so that their global L2 norm (over all parameters) is at most
  // max_norm, as torch::nn::utils::clip_grad_norm_: coef = max_norm / (norm + 1e-6),
  // applied only when coef < 1. The flat buffer makes this one norm and one scale instead
  // of one of each per parameter. Returns the norm before clipping (a device sync: .item).
  // max_norm must be > 0.
  double ClipGradNorm(double max_norm);
  // ClipGradNorm's scaling of `grads` (part or all of a gradient whose global L2 norm is
  // `norm`), for a caller that computed the norm itself (a gang's sharded gradients).
  static void ScaleToMaxNorm(const torch::Tensor& grads, double norm, double max_norm);

 private:
  torch::Tensor padded_params_, padded_grads_, params_, grads_;
  bool borrowed_ = false;
};

struct FlatOptimizerOptions {
  OptimizerType type = OptimizerType::kAdamW;
  double lr = 1e-3;            // learning rate. Default: 1e-3
  double weight_decay = 0.0;   // AdamW: decoupled decay; Adam, SGD: L2 term. Default: 0
  double momentum = 0.9;       // SGD only; 0 disables the momentum buffer. Default: 0.9
  double beta1 = 0.9;          // Adam(W) first-moment decay. Default: 0.9
  double beta2 = 0.999;        // Adam(W) second-moment decay. Default: 0.999
  double eps = 1e-8;           // Adam(W) denominator term. Default: 1e-8

  static FlatOptimizerOptions FromTrainConfig(const TrainConfig& t);
};

// One optimizer state over a FlatParameters (not owned; must outlive this object).
class FlatOptimizer {
 public:
  FlatOptimizer(FlatParameters& flat, FlatOptimizerOptions options);

  // Applies one update from flat.grads() to flat.params() (after Shard: to its part).
  // Does not zero the gradients.
  void Step();
  // A sharded step (jobs/internal/data_parallel.h): from now on Step() updates only
  // flat.padded_params()[begin, begin + count) and that part of the state, from `grad`
  // (count floats: this member's block of the gradients, reduced over the gang).
  void Shard(int64_t begin, int64_t count, torch::Tensor grad);
  // The moment buffers, padded like flat.padded_params(): a sharded step keeps only its
  // part current, so a checkpoint gathers the others' parts into them first.
  std::vector<torch::Tensor> StateBuffers() const;
  void ZeroGrad() { flat_.ZeroGrad(); }
  int64_t steps() const { return step_; }

  // The optimizer's state for a step checkpoint: the step count and the moment buffers
  // (archive keys "optimizer.*"). CopyState takes a copy that a checkpoint writer thread
  // saves while training goes on. Load checks that the buffers fit this optimizer.
  struct State {
    int64_t step = 0;
    torch::Tensor exp_avg, exp_avg_sq;  // exp_avg_sq undefined for SGD
    void Save(torch::serialize::OutputArchive& archive) const;
  };
  State CopyState() const;
  Status Load(torch::serialize::InputArchive& archive);

  // The learning rate of the following Step()s; a schedule sets it before every step. As
  // with a torch optimizer's param-group lr, AdamW's decoupled decay (p *= 1 - lr * wd)
  // follows it too. Must be finite and >= 0.
  void set_lr(double lr);
  double lr() const { return options_.lr; }

 private:
  void StepAdam(bool decoupled);
  void StepSgd();

  FlatParameters& flat_;
  FlatOptimizerOptions options_;
  int64_t step_ = 0;
  torch::Tensor exp_avg_, exp_avg_sq_, scratch_;  // Adam(W) moments; SGD: momentum buffer
                                                  // in exp_avg_; scratch for temporaries
  // What Step() updates: the whole padded buffers, or a shard of them (Shard).
  torch::Tensor p_, g_, m_, v_, s_;
};

}  // namespace lattice::jobs::internal
