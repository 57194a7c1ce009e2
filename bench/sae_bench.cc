// sae_bench: a sparse autoencoder's training step in Lattice's job code vs a plain LibTorch
// loop on the same rows, batches and initial weights, one intra-op thread (as a worker).
//
// Rows: the 64-wide hidden layer (Linear + ReLU, seeded weights) of the first --rows
// Fashion-MNIST training images (scale 1/255): the shape and sparsity of real activations.
//   Lattice: RunJob on an activation dataset (the blob a worker receives,
//     jobs/activation_dataset.h) with model {type: sae, expansion: 8}, batch 256, AdamW,
//     --epochs epochs: the job as a worker runs it — split, shuffle, flat optimizer, decoder
//     renormalisation, dead-feature tracking and the per-epoch validation metrics (MSE,
//     explained variance, L0, dead features, label purity).
//   Plain loop: the loop a user writes: the same tensors as parameters, torch::optim::AdamW
//     (weight decay 0), per batch forward, MSE + l1 * sum(f * ||W_dec col||), backward,
//     step, decoder columns renormalised, loss.item() for logging; per epoch a validation
//     pass for MSE, explained variance and L0.
// Both timed from the call to the end; ms per optimizer step. Runs alternate (A B, B A, ...);
// medians and their ratio.
//
// usage: sae_bench [--rows N] [--epochs N] [--pairs N] [--images FILE]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "jobs/activation_dataset.h"
#include "jobs/dataset.h"
#include "jobs/internal/threads.h"
#include "jobs/train_job.h"

namespace {

using lattice::jobs::ActivationData;
using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The plain loop over the same split and order as the job (the split and the shuffle are
// index work, the same in both; the timed part is the training).
double PlainLoop(const torch::Tensor& x_train, const torch::Tensor& x_val, int epochs,
                 int64_t batch, double l1, int64_t expansion, int64_t* steps) {
  const auto start = Clock::now();
  const int64_t d = x_train.size(1), m = d * expansion;
  torch::manual_seed(0);
  torch::Tensor b_pre = x_train.mean(0).clone().requires_grad_(true);
  torch::Tensor w = torch::randn({d, m});
  torch::Tensor w_dec = (w / w.norm(2, {0}, true)).requires_grad_(true);
  torch::Tensor w_enc = w_dec.t().detach().clone().requires_grad_(true);
  torch::Tensor b_enc = torch::zeros({m}, torch::requires_grad());
  torch::optim::AdamW opt({b_pre, w_enc, b_enc, w_dec},
                          torch::optim::AdamWOptions(1e-3).weight_decay(0));
  const int64_t n = x_train.size(0);
  *steps = 0;
  for (int epoch = 0; epoch < epochs; ++epoch) {
    torch::Tensor xe = x_train.index_select(0, torch::randperm(n));
    double sum = 0;
    for (int64_t s = 0; s < n; s += batch) {
      torch::Tensor xb = xe.narrow(0, s, std::min(batch, n - s));
      opt.zero_grad();
      torch::Tensor f = torch::relu(torch::addmm(b_enc, xb - b_pre, w_enc.t()));
      torch::Tensor xh = torch::addmm(b_pre, f, w_dec.t());
      torch::Tensor loss = torch::mse_loss(xh, xb) + l1 * (f * w_dec.norm(2, {0})).sum(1).mean();
      loss.backward();
      opt.step();
      {
        torch::NoGradGuard no_grad;
        w_dec.div_(w_dec.norm(2, {0}, true).clamp_min(1e-12));
      }
      sum += loss.item<double>();
      ++*steps;
    }
    torch::NoGradGuard no_grad;
    torch::Tensor f = torch::relu(torch::addmm(b_enc, x_val - b_pre, w_enc.t()));
    torch::Tensor xh = torch::addmm(b_pre, f, w_dec.t());
    const double sq = (xh - x_val).pow(2).sum().item<double>();
    const double var = (x_val - x_val.mean(0, true)).pow(2).sum().item<double>();
    const double l0 = (f > 0).sum().item<double>() / static_cast<double>(x_val.size(0));
    if (sum < 0 || sq / var > 1e9 || l0 < 0) std::printf("?");  // keep the results alive
  }
  return Seconds(start);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t rows = 60000;  // the SAE example's size: every Fashion-MNIST training image
  int epochs = 3, pairs = 5;
  std::string images = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--rows") rows = std::atoll(argv[i + 1]);
    else if (flag == "--epochs") epochs = std::atoi(argv[i + 1]);
    else if (flag == "--pairs") pairs = std::atoi(argv[i + 1]);
    else if (flag == "--images") images = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: sae_bench [--rows N] [--epochs N] [--pairs N] [--images F]\n");
      return 2;
    }
  }
  lattice::jobs::internal::SetJobThreads(1);
  auto pixels = lattice::jobs::LoadIdxImages(images);
  if (!pixels.ok()) {
    std::fprintf(stderr, "%s\n", pixels.status().ToString().c_str());
    return 1;
  }
  rows = std::min(rows, pixels->rows);
  torch::manual_seed(7);
  torch::Tensor px =
      torch::from_blob(pixels->data.data(), {pixels->rows, 784}, torch::kFloat).narrow(0, 0, rows) /
      255.0;
  torch::Tensor hidden = torch::relu(torch::nn::Linear(784, 64)(px)).detach().contiguous();
  ActivationData data;
  data.name = "bench";
  data.features.rows = rows;
  data.features.cols = 64;
  data.features.data.assign(hidden.data_ptr<float>(), hidden.data_ptr<float>() + hidden.numel());
  data.labels.assign(static_cast<size_t>(rows), 0);
  auto blob = std::make_shared<const std::string>(lattice::jobs::EncodeActivations(data));
  const nlohmann::json config = {
      {"kind", "train"}, {"seed", 0},
      {"dataset", {{"activations", "bench"}, {"source", "s1"},
                   {"split", {{"validation_fraction", 0.2}, {"seed", 42}}}}},
      {"model", {{"type", "sae"}, {"expansion", 8}}},
      {"train", {{"epochs", epochs}, {"batch_size", 256}, {"lr", 1e-3},
                 {"l1_coefficient", 3e-3}, {"threads", 1}, {"checkpoint", false}}}};
  // The plain loop's split: the job's (80/20), as tensors.
  auto split = lattice::jobs::MakeSplit(rows, 0.2, 42);
  auto index = [](const std::vector<int64_t>& i) {
    return torch::tensor(i, torch::kLong);
  };
  torch::Tensor x_train = hidden.index_select(0, index(split->train)).contiguous();
  torch::Tensor x_val = hidden.index_select(0, index(split->validation)).contiguous();

  std::vector<double> ours, plain;
  int64_t steps = (x_train.size(0) + 255) / 256 * epochs, plain_steps = 0;
  auto run_job = [&] {
    lattice::jobs::JobContext ctx;
    ctx.checkpoint = [&](const std::string&) { return blob; };
    const auto start = Clock::now();
    auto r = lattice::jobs::RunJob(config, ctx);
    const double s = Seconds(start);
    if (!r.ok()) {
      std::fprintf(stderr, "job: %s\n", r.status().ToString().c_str());
      std::exit(1);
    }
    ours.push_back(s * 1e3 / static_cast<double>(steps));
  };
  auto run_plain = [&] {
    const double s = PlainLoop(x_train, x_val, epochs, 256, 3e-3, 8, &plain_steps);
    plain.push_back(s * 1e3 / static_cast<double>(plain_steps));
  };
  run_job();  // warm-up of both (allocator, first-touch)
  run_plain();
  ours.clear();
  plain.clear();
  for (int p = 0; p < pairs; ++p) {
    if (p % 2 == 0) run_job(), run_plain();
    else run_plain(), run_job();
  }
  std::printf("SAE 64 -> 512 (expansion 8), batch 256, %lld training rows, %d epochs, 1 thread\n",
              static_cast<long long>(x_train.size(0)), epochs);
  std::printf("lattice job  %.3f ms/step (median of %d)\n", Median(ours), pairs);
  std::printf("plain loop   %.3f ms/step (median of %d)\n", Median(plain), pairs);
  std::printf("ratio lattice / plain = %.3f (target <= 1.05)\n", Median(ours) / Median(plain));
  return 0;
}
