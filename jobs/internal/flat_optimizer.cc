#include "jobs/internal/flat_optimizer.h"

#include <cmath>

#include "common/status.h"

namespace lattice::jobs::internal {

FlatParameters::FlatParameters(const std::vector<torch::Tensor>& params,
                               const FlatMemory& memory) {
  LATTICE_CHECK(!params.empty() && memory.multiple >= 1);
  const torch::Tensor& first = params.front();
  LATTICE_CHECK(first.is_floating_point());
  const auto options = torch::TensorOptions().dtype(first.dtype()).device(first.device());
  int64_t total = 0;
  for (const torch::Tensor& p : params) {
    LATTICE_CHECK(p.requires_grad() && p.is_leaf());
    LATTICE_CHECK(p.dtype() == first.dtype() && p.device() == first.device());
    total += p.numel();
  }
  const int64_t padded = (total + memory.multiple - 1) / memory.multiple * memory.multiple;
  const bool can_borrow = memory.allocate && first.device().is_cpu() &&
                          first.scalar_type() == torch::kFloat;
  auto buffer = [&](float* borrowed) {
    return borrowed != nullptr ? torch::from_blob(borrowed, {padded}, options).zero_()
                               : torch::zeros({padded}, options);
  };
  float* grad_memory = can_borrow ? memory.allocate(padded) : nullptr;
  float* param_memory = grad_memory != nullptr ? memory.allocate(padded) : nullptr;
  borrowed_ = param_memory != nullptr;
  padded_grads_ = buffer(grad_memory);
  padded_params_ = buffer(param_memory);
  grads_ = padded_grads_.narrow(0, 0, total);
  params_ = padded_params_.narrow(0, 0, total);
  torch::NoGradGuard no_grad;
  int64_t offset = 0;
  for (const torch::Tensor& p : params) {
    const int64_t n = p.numel();
    torch::Tensor value = params_.narrow(0, offset, n).view(p.sizes());
    value.copy_(p.detach());
    torch::Tensor param = p;  // shares the TensorImpl: set_data re-homes the module's tensor
    param.set_data(value);
    param.mutable_grad() = grads_.narrow(0, offset, n).view(p.sizes());
    offset += n;
  }
}

double FlatParameters::ClipGradNorm(double max_norm) {
  LATTICE_CHECK(max_norm > 0);
  torch::NoGradGuard no_grad;
  const double norm = grads_.norm().item<double>();
  ScaleToMaxNorm(grads_, norm, max_norm);
  return norm;
}

void FlatParameters::ScaleToMaxNorm(const torch::Tensor& grads, double norm, double max_norm) {
  LATTICE_CHECK(max_norm > 0);
  torch::NoGradGuard no_grad;
  const double coef = max_norm / (norm + 1e-6);
  // A NaN norm leaves the gradients as they are and an Inf one zeroes the finite ones; either
  // way the next step's loss is non-finite and the trainer stops the run.
  if (coef < 1) grads.mul_(coef);
}

FlatOptimizerOptions FlatOptimizerOptions::FromTrainConfig(const TrainConfig& t) {
  FlatOptimizerOptions o;
  o.type = t.optimizer;
  o.lr = t.lr;
  o.weight_decay = t.weight_decay;
  o.momentum = t.momentum;
  return o;
}

void FlatOptimizer::State::Save(torch::serialize::OutputArchive& archive) const {
  archive.write("optimizer.step", torch::tensor({step}, torch::kLong));
  archive.write("optimizer.exp_avg", exp_avg);
  if (exp_avg_sq.defined()) archive.write("optimizer.exp_avg_sq", exp_avg_sq);
}

FlatOptimizer::State FlatOptimizer::CopyState() const {
  const int64_t n = flat_.numel();
  return {step_, exp_avg_.narrow(0, 0, n).clone(),
          exp_avg_sq_.defined() ? exp_avg_sq_.narrow(0, 0, n).clone() : torch::Tensor()};
}

std::vector<torch::Tensor> FlatOptimizer::StateBuffers() const {
  std::vector<torch::Tensor> buffers = {exp_avg_};
  if (exp_avg_sq_.defined()) buffers.push_back(exp_avg_sq_);
  return buffers;
}

Status FlatOptimizer::Load(torch::serialize::InputArchive& archive) {
  torch::Tensor step, exp_avg, exp_avg_sq;
  archive.read("optimizer.step", step);
  archive.read("optimizer.exp_avg", exp_avg);
  const int64_t n = flat_.numel();
  if (exp_avg.numel() != n) {
    return Status::FailedPrecondition("optimizer state has " + std::to_string(exp_avg.numel()) +
                                      " values, the model " + std::to_string(n));
  }
  if (exp_avg_sq_.defined()) {
    archive.read("optimizer.exp_avg_sq", exp_avg_sq);
    exp_avg_sq_.narrow(0, 0, n).copy_(exp_avg_sq);
  }
  exp_avg_.narrow(0, 0, n).copy_(exp_avg);
  step_ = step.item<int64_t>();
  return Status::Ok();
}

FlatOptimizer::FlatOptimizer(FlatParameters& flat, FlatOptimizerOptions options)
    : flat_(flat), options_(options) {
  exp_avg_ = torch::zeros_like(flat_.padded_params());
  if (options_.type != OptimizerType::kSgd) exp_avg_sq_ = torch::zeros_like(flat_.padded_params());
  scratch_ = torch::empty_like(flat_.padded_params());
  p_ = flat_.padded_params();
  g_ = flat_.padded_grads();
  m_ = exp_avg_;
  v_ = exp_avg_sq_;
  s_ = scratch_;
}

void FlatOptimizer::Shard(int64_t begin, int64_t count, torch::Tensor grad) {
  LATTICE_CHECK(begin >= 0 && count >= 0 && begin + count <= p_.numel());
  LATTICE_CHECK(grad.numel() == count);
  p_ = flat_.padded_params().narrow(0, begin, count);
  g_ = std::move(grad);
  m_ = exp_avg_.narrow(0, begin, count);
  if (exp_avg_sq_.defined()) v_ = exp_avg_sq_.narrow(0, begin, count);
  s_ = scratch_.narrow(0, 0, count);
}

void FlatOptimizer::set_lr(double lr) {
  LATTICE_CHECK(lr >= 0 && std::isfinite(lr));
  options_.lr = lr;
}

void FlatOptimizer::Step() {
  torch::NoGradGuard no_grad;
  ++step_;
  switch (options_.type) {
    case OptimizerType::kAdamW: return StepAdam(/*decoupled=*/true);
    case OptimizerType::kAdam: return StepAdam(/*decoupled=*/false);
    case OptimizerType::kSgd: return StepSgd();
  }
}

// p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps), written as
// p -= (lr * sqrt(bc2) / bc1) * m / (sqrt(v) + eps * sqrt(bc2)) to save one op.
void FlatOptimizer::StepAdam(bool decoupled) {
  const double lr = options_.lr, wd = options_.weight_decay;
  const double b1 = options_.beta1, b2 = options_.beta2;
  if (decoupled && wd != 0) p_.mul_(1 - lr * wd);
  torch::Tensor g = g_;
  if (!decoupled && wd != 0) g = torch::add_out(s_, g, p_, wd);  // L2: g + wd * p
  m_.mul_(b1).add_(g, 1 - b1);
  v_.mul_(b2).addcmul_(g, g, 1 - b2);
  const double bc1 = 1 - std::pow(b1, static_cast<double>(step_));
  const double sqrt_bc2 = std::sqrt(1 - std::pow(b2, static_cast<double>(step_)));
  torch::Tensor denom = torch::sqrt_out(s_, v_);  // g no longer needed
  denom.add_(options_.eps * sqrt_bc2);
  p_.addcdiv_(m_, denom, -lr * sqrt_bc2 / bc1);
}

void FlatOptimizer::StepSgd() {
  torch::Tensor d = g_;
  if (options_.weight_decay != 0) d = torch::add_out(s_, d, p_, options_.weight_decay);
  if (options_.momentum != 0) {
    if (step_ == 1) {
      m_.copy_(d);
    } else {
      m_.mul_(options_.momentum).add_(d);
    }
    d = m_;
  }
  p_.add_(d, -options_.lr);
}

}  // namespace lattice::jobs::internal
