#include "jobs/internal/flat_optimizer.h"

#include <cmath>

#include "common/status.h"

namespace lattice::jobs::internal {

FlatParameters::FlatParameters(const std::vector<torch::Tensor>& params,
                               const std::function<float*(int64_t numel)>& grad_memory) {
  LATTICE_CHECK(!params.empty());
  const torch::Tensor& first = params.front();
  LATTICE_CHECK(first.is_floating_point());
  const auto options = torch::TensorOptions().dtype(first.dtype()).device(first.device());
  int64_t total = 0;
  for (const torch::Tensor& p : params) {
    LATTICE_CHECK(p.requires_grad() && p.is_leaf());
    LATTICE_CHECK(p.dtype() == first.dtype() && p.device() == first.device());
    total += p.numel();
  }
  params_ = torch::empty({total}, options);
  float* memory = grad_memory && first.device().is_cpu() && first.scalar_type() == torch::kFloat
                      ? grad_memory(total)
                      : nullptr;
  grads_ = memory != nullptr ? torch::from_blob(memory, {total}, options).zero_()
                             : torch::zeros({total}, options);
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
  const double coef = max_norm / (norm + 1e-6);
  // A NaN norm leaves the gradients as they are and an Inf one zeroes the finite ones; either
  // way the next step's loss is non-finite and the trainer stops the run.
  if (coef < 1) grads_.mul_(coef);
  return norm;
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
  return {step_, exp_avg_.clone(),
          exp_avg_sq_.defined() ? exp_avg_sq_.clone() : torch::Tensor()};
}

Status FlatOptimizer::Load(torch::serialize::InputArchive& archive) {
  torch::Tensor step, exp_avg, exp_avg_sq;
  archive.read("optimizer.step", step);
  archive.read("optimizer.exp_avg", exp_avg);
  if (exp_avg.numel() != exp_avg_.numel()) {
    return Status::FailedPrecondition("optimizer state has " + std::to_string(exp_avg.numel()) +
                                      " values, the model " + std::to_string(exp_avg_.numel()));
  }
  if (exp_avg_sq_.defined()) {
    archive.read("optimizer.exp_avg_sq", exp_avg_sq);
    exp_avg_sq_.copy_(exp_avg_sq);
  }
  exp_avg_.copy_(exp_avg);
  step_ = step.item<int64_t>();
  return Status::Ok();
}

FlatOptimizer::FlatOptimizer(FlatParameters& flat, FlatOptimizerOptions options)
    : flat_(flat), options_(options) {
  exp_avg_ = torch::zeros_like(flat_.params());
  if (options_.type != OptimizerType::kSgd) exp_avg_sq_ = torch::zeros_like(flat_.params());
  scratch_ = torch::empty_like(flat_.params());
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
  const torch::Tensor& p = flat_.params();
  const double lr = options_.lr, wd = options_.weight_decay;
  const double b1 = options_.beta1, b2 = options_.beta2;
  if (decoupled && wd != 0) p.mul_(1 - lr * wd);
  torch::Tensor g = flat_.grads();
  if (!decoupled && wd != 0) g = torch::add_out(scratch_, g, p, wd);  // L2: g + wd * p
  exp_avg_.mul_(b1).add_(g, 1 - b1);
  exp_avg_sq_.mul_(b2).addcmul_(g, g, 1 - b2);
  const double bc1 = 1 - std::pow(b1, static_cast<double>(step_));
  const double sqrt_bc2 = std::sqrt(1 - std::pow(b2, static_cast<double>(step_)));
  torch::Tensor denom = torch::sqrt_out(scratch_, exp_avg_sq_);  // g no longer needed
  denom.add_(options_.eps * sqrt_bc2);
  p.addcdiv_(exp_avg_, denom, -lr * sqrt_bc2 / bc1);
}

void FlatOptimizer::StepSgd() {
  const torch::Tensor& p = flat_.params();
  torch::Tensor d = flat_.grads();
  if (options_.weight_decay != 0) d = torch::add_out(scratch_, d, p, options_.weight_decay);
  if (options_.momentum != 0) {
    if (step_ == 1) {
      exp_avg_.copy_(d);
    } else {
      exp_avg_.mul_(options_.momentum).add_(d);
    }
    d = exp_avg_;
  }
  p.add_(d, -options_.lr);
}

}  // namespace lattice::jobs::internal
