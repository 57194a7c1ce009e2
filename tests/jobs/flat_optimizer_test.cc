#include "jobs/internal/flat_optimizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <vector>

namespace lattice::jobs::internal {
namespace {

// A small MLP with batchnorm, no dropout. BatchNorm1d sits after the ReLU: directly after
// a Linear it cancels that Linear's bias, whose gradient is then rounding noise that Adam
// normalizes to steps of size lr, so two float-equivalent optimizers drift apart on it.
torch::nn::Sequential MakeModel() {
  return torch::nn::Sequential(torch::nn::Linear(12, 24), torch::nn::ReLU(),
                               torch::nn::BatchNorm1d(24), torch::nn::Linear(24, 5));
}

class FlatOptimizerTest : public ::testing::Test {
 protected:
  // Trains two copies of one initial model for `steps` steps on the same batches: one with
  // `reference` (a torch optimizer over the model's parameters), one with a FlatOptimizer.
  // Returns the largest absolute difference between their final parameters.
  double MaxDiffAfter(int steps, const FlatOptimizerOptions& options,
                      const std::function<std::unique_ptr<torch::optim::Optimizer>(
                          std::vector<torch::Tensor>)>& reference) {
    torch::manual_seed(3);
    torch::nn::Sequential ref = MakeModel();
    torch::nn::Sequential flat = MakeModel();
    {
      torch::NoGradGuard no_grad;
      auto src = ref->parameters(), dst = flat->parameters();
      for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
    }
    std::unique_ptr<torch::optim::Optimizer> ref_opt = reference(ref->parameters());
    FlatParameters buffers(flat->parameters());
    FlatOptimizer flat_opt(buffers, options);
    torch::Tensor x = torch::randn({steps, 16, 12});
    torch::Tensor y = torch::randint(0, 5, {steps, 16}, torch::kLong);
    for (int s = 0; s < steps; ++s) {
      ref_opt->zero_grad();
      torch::nn::functional::cross_entropy(ref->forward(x[s]), y[s]).backward();
      ref_opt->step();
      flat_opt.ZeroGrad();
      torch::nn::functional::cross_entropy(flat->forward(x[s]), y[s]).backward();
      flat_opt.Step();
    }
    EXPECT_EQ(flat_opt.steps(), steps);
    double max_diff = 0;
    auto a = ref->parameters(), b = flat->parameters();
    for (size_t i = 0; i < a.size(); ++i) {
      max_diff = std::max(max_diff, (a[i] - b[i]).abs().max().item<double>());
    }
    // The parameters changed (the test would pass trivially otherwise).
    torch::manual_seed(3);
    torch::nn::Sequential initial = MakeModel();
    EXPECT_GT((initial->parameters()[0] - b[0]).abs().max().item<double>(), 1e-3);
    return max_diff;
  }
};

TEST_F(FlatOptimizerTest, ParametersAndGradsAliasTheFlatBuffers) {
  torch::manual_seed(1);
  torch::nn::Sequential model = MakeModel();
  std::vector<torch::Tensor> before;
  for (const auto& p : model->parameters()) before.push_back(p.detach().clone());
  FlatParameters flat(model->parameters());
  const std::vector<torch::Tensor> params = model->parameters();
  int64_t total = 0;
  for (size_t i = 0; i < before.size(); ++i) {
    const torch::Tensor& p = params[i];
    EXPECT_TRUE(torch::equal(p.detach(), before[i]));  // values kept
    EXPECT_EQ(p.data_ptr<float>(), flat.params().data_ptr<float>() + total);
    EXPECT_EQ(p.grad().data_ptr<float>(), flat.grads().data_ptr<float>() + total);
    total += p.numel();
  }
  EXPECT_EQ(flat.numel(), total);

  torch::nn::functional::cross_entropy(model->forward(torch::randn({8, 12})),
                                       torch::randint(0, 5, {8}, torch::kLong))
      .backward();
  EXPECT_GT(flat.grads().abs().sum().item<double>(), 0);
  EXPECT_EQ(params[0].grad().data_ptr<float>(), flat.grads().data_ptr<float>());
  flat.ZeroGrad();
  EXPECT_EQ(flat.grads().abs().sum().item<double>(), 0);
}

TEST_F(FlatOptimizerTest, AdamWMatchesTorchAdamWFor50Steps) {
  FlatOptimizerOptions o;
  o.type = OptimizerType::kAdamW;
  o.lr = 1e-2;
  o.weight_decay = 1e-2;
  double diff = MaxDiffAfter(50, o, [&](std::vector<torch::Tensor> params) {
    return std::make_unique<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay));
  });
  EXPECT_LT(diff, 1e-5);
}

TEST_F(FlatOptimizerTest, AdamWWithoutWeightDecayMatchesTorch) {
  FlatOptimizerOptions o;
  o.type = OptimizerType::kAdamW;
  o.lr = 3e-3;
  o.weight_decay = 0;
  double diff = MaxDiffAfter(50, o, [&](std::vector<torch::Tensor> params) {
    return std::make_unique<torch::optim::AdamW>(params,
                                                 torch::optim::AdamWOptions(o.lr).weight_decay(0));
  });
  EXPECT_LT(diff, 1e-5);
}

TEST_F(FlatOptimizerTest, AdamMatchesTorchAdamFor50Steps) {
  FlatOptimizerOptions o;
  o.type = OptimizerType::kAdam;
  o.lr = 1e-2;
  o.weight_decay = 1e-2;
  double diff = MaxDiffAfter(50, o, [&](std::vector<torch::Tensor> params) {
    return std::make_unique<torch::optim::Adam>(
        params, torch::optim::AdamOptions(o.lr).weight_decay(o.weight_decay));
  });
  EXPECT_LT(diff, 1e-5);
}

TEST_F(FlatOptimizerTest, SgdWithMomentumMatchesTorchSgdFor50Steps) {
  FlatOptimizerOptions o;
  o.type = OptimizerType::kSgd;
  o.lr = 5e-2;
  o.weight_decay = 1e-3;
  o.momentum = 0.9;
  double diff = MaxDiffAfter(50, o, [&](std::vector<torch::Tensor> params) {
    return std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(o.lr).momentum(o.momentum).weight_decay(o.weight_decay));
  });
  EXPECT_LT(diff, 1e-5);
}

TEST_F(FlatOptimizerTest, SgdWithoutMomentumMatchesTorchSgd) {
  FlatOptimizerOptions o;
  o.type = OptimizerType::kSgd;
  o.lr = 5e-2;
  o.momentum = 0;
  double diff = MaxDiffAfter(50, o, [&](std::vector<torch::Tensor> params) {
    return std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(o.lr));
  });
  EXPECT_LT(diff, 1e-5);
}

// Backpropagates the cross-entropy of a fixed batch, multiplied by `scale`, into `flat`.
void Backward(torch::nn::Sequential& model, FlatParameters& flat, double scale) {
  torch::manual_seed(5);
  flat.ZeroGrad();
  torch::Tensor loss = torch::nn::functional::cross_entropy(
      model->forward(torch::randn({16, 12})), torch::randint(0, 5, {16}, torch::kLong));
  (loss * scale).backward();
}

// The global L2 norm over every parameter's own .grad (not the flat buffer), so the test
// also checks that the parameters still see the clipped gradients.
double ParameterGradNorm(torch::nn::Sequential& model) {
  double sq = 0;
  for (const torch::Tensor& p : model->parameters()) sq += p.grad().pow(2).sum().item<double>();
  return std::sqrt(sq);
}

TEST_F(FlatOptimizerTest, ClipGradNormBoundsTheGlobalNormAndKeepsTheDirection) {
  torch::manual_seed(1);
  torch::nn::Sequential model = MakeModel();
  FlatParameters flat(model->parameters());
  Backward(model, flat, /*scale=*/1e6);
  const torch::Tensor before = flat.grads().clone();
  const double norm_before = ParameterGradNorm(model);
  const double clip = 1.0;
  ASSERT_GT(norm_before, 1e3 * clip);  // far above the clip value, or the test proves nothing
  const double returned = flat.ClipGradNorm(clip);
  EXPECT_NEAR(returned, norm_before, 1e-4 * norm_before);
  const double norm_after = ParameterGradNorm(model);
  EXPECT_LE(norm_after, clip + 1e-5);
  EXPECT_GE(norm_after, clip - 1e-4);  // scaled to the bound, not just shrunk
  // Same direction: after == before * (clip / norm).
  const double max_err =
      (flat.grads() - before * (clip / returned)).abs().max().item<double>();
  EXPECT_LT(max_err, 1e-6);
}

TEST_F(FlatOptimizerTest, ClipGradNormIsANoOpBelowTheBound) {
  torch::manual_seed(1);
  torch::nn::Sequential model = MakeModel();
  FlatParameters flat(model->parameters());
  Backward(model, flat, /*scale=*/1.0);
  const torch::Tensor before = flat.grads().clone();
  const double norm = ParameterGradNorm(model);
  ASSERT_GT(norm, 0);
  EXPECT_NEAR(flat.ClipGradNorm(2 * norm), norm, 1e-5 * norm);
  EXPECT_TRUE(torch::equal(flat.grads(), before));  // bit-identical
  // Just above the norm is still a no-op; just below scales.
  flat.ClipGradNorm(norm * (1 + 1e-3));
  EXPECT_TRUE(torch::equal(flat.grads(), before));
  flat.ClipGradNorm(norm / 2);
  EXPECT_FALSE(torch::equal(flat.grads(), before));
  EXPECT_NEAR(ParameterGradNorm(model), norm / 2, 1e-5);
}

TEST_F(FlatOptimizerTest, SetLrChangesTheNextStepsSize) {
  torch::manual_seed(1);
  torch::nn::Sequential model = MakeModel();
  FlatParameters flat(model->parameters());
  FlatOptimizerOptions o;
  o.type = OptimizerType::kSgd;
  o.lr = 0.1;
  o.momentum = 0;
  FlatOptimizer opt(flat, o);
  for (double lr : {0.1, 0.025, 0.5}) {
    Backward(model, flat, 1.0);
    const torch::Tensor p0 = flat.params().clone();
    const torch::Tensor g = flat.grads().clone();
    opt.set_lr(lr);
    EXPECT_EQ(opt.lr(), lr);
    opt.Step();
    // Plain SGD: p1 = p0 - lr * g.
    EXPECT_LT((flat.params() - (p0 - lr * g)).abs().max().item<double>(), 1e-7) << lr;
  }
}

// A sharded step (ZeRO stage 1, jobs/internal/data_parallel.h) by hand: k members, each
// with its own copy of the model padded to k shards, step their shard from their block of
// the (here: one process's) gradients; the shards are then copied to every member, as the
// allgather does. After every step each member's parameters, and the moments gathered from
// the members' shards, are bit-identical to one optimizer's whole step.
TEST_F(FlatOptimizerTest, ShardedStepsEqualTheWholeStep) {
  const int k = 3;
  for (OptimizerType type : {OptimizerType::kAdamW, OptimizerType::kAdam, OptimizerType::kSgd}) {
    FlatOptimizerOptions o;
    o.type = type;
    o.lr = 1e-2;
    o.weight_decay = 0.05;
    torch::manual_seed(1);
    torch::nn::Sequential whole_model = MakeModel();
    FlatParameters whole(whole_model->parameters(), FlatMemory{k, nullptr});
    FlatOptimizer whole_opt(whole, o);
    const int64_t shard = whole.padded_params().numel() / k;
    ASSERT_GT(whole.padded_params().numel(), whole.numel());  // 461 parameters: padded
    std::vector<torch::nn::Sequential> models;
    std::vector<std::unique_ptr<FlatParameters>> flats;
    std::vector<std::unique_ptr<FlatOptimizer>> opts;
    for (int m = 0; m < k; ++m) {
      torch::manual_seed(1);
      models.push_back(MakeModel());
      flats.push_back(std::make_unique<FlatParameters>(models[m]->parameters(), FlatMemory{k, nullptr}));
      opts.push_back(std::make_unique<FlatOptimizer>(*flats[m], o));
      opts[m]->Shard(m * shard, shard, flats[m]->padded_grads().narrow(0, 0, shard));
    }
    for (int step = 0; step < 5; ++step) {
      Backward(whole_model, whole, 1.0);
      for (int m = 0; m < k; ++m) {  // a reduce-scatter: member m's block at its front
        flats[m]->padded_grads().narrow(0, 0, shard)
            .copy_(whole.padded_grads().narrow(0, m * shard, shard));
        opts[m]->Step();
      }
      whole_opt.Step();
      for (int m = 0; m < k; ++m) {  // the allgather
        for (int from = 0; from < k; ++from) {
          flats[m]->padded_params().narrow(0, from * shard, shard)
              .copy_(flats[from]->padded_params().narrow(0, from * shard, shard));
        }
        EXPECT_TRUE(torch::equal(flats[m]->params(), whole.params()))
            << "member " << m << " step " << step << " optimizer " << static_cast<int>(type);
      }
    }
    for (size_t b = 0; b < whole_opt.StateBuffers().size(); ++b) {
      for (int m = 0; m < k; ++m) {
        EXPECT_TRUE(torch::equal(opts[m]->StateBuffers()[b].narrow(0, m * shard, shard),
                                 whole_opt.StateBuffers()[b].narrow(0, m * shard, shard)));
      }
    }
    torch::manual_seed(1);
    EXPECT_FALSE(torch::equal(whole.params(), FlatParameters(MakeModel()->parameters()).params()));
  }
}

}  // namespace
}  // namespace lattice::jobs::internal
