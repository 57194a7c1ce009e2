// The floor of the probe benchmark (bench/probe_bench.sh): the trainings of a probe-recipe
// sweep spec (examples/fashion-mnist-probe-recipe.yaml) as a plain LibTorch loop, the way a
// user would write it by hand: torch::nn modules, torch::optim::AdamW, clip_grad_norm_, a
// hand-rolled mixup, ReduceLROnPlateau and early stopping; no Lattice trainer, scheduler,
// MPI or state store. Only the rows come from Lattice's loader (the same class subset,
// stratified split and standardisation), so both sides train on identical tensors.
//
//   OPENBLAS_NUM_THREADS=T probe_plain SPEC [--part I --of N] [--threads T]
//
// Process i runs trials i, i+n, i+2n, ... on T threads. Prints one JSON line:
// {"part", "of", "trials", "epochs" (summed over its trials), "seconds",
//  "best_selected_val_f1"}.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "jobs/dataset.h"
#include "jobs/train_config.h"
#include "scheduler/sweep_spec.h"

namespace {

namespace F = torch::nn::functional;
using lattice::jobs::JobConfig;

struct Data {
  torch::Tensor x_train, y_train, x_val, y_val, x_test, y_test;
  int64_t classes = 0;
};

torch::Tensor Rows(const lattice::jobs::FeatureMatrix& m, const std::vector<int64_t>& idx) {
  torch::Tensor all = torch::from_blob(const_cast<float*>(m.data.data()), {m.rows, m.cols});
  return all.index_select(0, torch::tensor(idx, torch::kLong));
}

torch::Tensor Labels(const std::vector<int64_t>& labels, const std::vector<int64_t>& idx) {
  std::vector<int64_t> out;
  for (int64_t i : idx) out.push_back(labels[static_cast<size_t>(i)]);
  return torch::tensor(out, torch::kLong);
}

Data Prepare(const JobConfig& cfg) {
  auto loaded = lattice::jobs::LoadDataset(cfg.dataset);
  if (!loaded.ok()) throw std::runtime_error(loaded.status().ToString());
  auto split = lattice::jobs::MakeDatasetSplit(loaded->train.labels, cfg.dataset);
  if (!split.ok()) throw std::runtime_error(split.status().ToString());
  const auto& part = loaded->train;
  Data d;
  d.classes = loaded->num_classes;
  d.x_train = Rows(part.features, split->train);
  d.y_train = Labels(part.labels, split->train);
  d.x_val = Rows(part.features, split->validation);
  d.y_val = Labels(part.labels, split->validation);
  d.x_test = Rows(part.features, split->test);
  d.y_test = Labels(part.labels, split->test);
  if (cfg.dataset.standardize) {
    torch::Tensor mean = d.x_train.mean(0);
    torch::Tensor std = d.x_train.std(0, /*unbiased=*/false);
    std = torch::where(std < 1e-12, torch::ones_like(std), std);
    d.x_train = (d.x_train - mean) / std;
    d.x_val = (d.x_val - mean) / std;
    d.x_test = (d.x_test - mean) / std;
  }
  return d;
}

// Cross-entropy (mean), accuracy and macro F1 in eval mode.
struct Eval {
  double loss = 0, accuracy = 0, macro_f1 = 0;
};

Eval Evaluate(torch::nn::Sequential& model, const torch::Tensor& x, const torch::Tensor& y,
              int64_t classes) {
  torch::NoGradGuard no_grad;
  model->eval();
  torch::Tensor logits = model->forward(x);
  torch::Tensor predicted = logits.argmax(1);
  Eval e;
  e.loss = F::cross_entropy(logits, y).item<double>();
  e.accuracy = predicted.eq(y).to(torch::kDouble).mean().item<double>();
  torch::Tensor confusion =
      torch::bincount(y * classes + predicted, {}, classes * classes).view({classes, classes});
  torch::Tensor tp = confusion.diag().to(torch::kDouble);
  torch::Tensor precision = tp / confusion.sum(0).to(torch::kDouble).clamp_min(1);
  torch::Tensor recall = tp / confusion.sum(1).to(torch::kDouble).clamp_min(1);
  torch::Tensor f1 = (2 * precision * recall / (precision + recall)).nan_to_num(0);
  e.macro_f1 = f1.mean().item<double>();
  model->train();
  return e;
}

struct TrialResult {
  int epochs = 0;
  double train_loss = 0, train_accuracy = 0;  // of the last epoch
  double selected_val_f1 = 0, test_accuracy = 0;
};

TrialResult Train(const JobConfig& cfg, const Data& d) {
  const auto& t = cfg.train;
  torch::manual_seed(static_cast<uint64_t>(cfg.seed));
  std::mt19937_64 rng(cfg.seed);
  const int64_t in = d.x_train.size(1);
  const int64_t hidden = cfg.model.hidden.at(0);
  torch::nn::Sequential model(torch::nn::Linear(in, hidden), torch::nn::BatchNorm1d(hidden),
                              torch::nn::ReLU(), torch::nn::Dropout(cfg.model.dropout),
                              torch::nn::Linear(hidden, d.classes));
  // Inverse-frequency class weights of the training rows, times the boosts.
  torch::Tensor counts = torch::bincount(d.y_train, {}, d.classes).to(torch::kDouble);
  torch::Tensor weight =
      (counts.sum() / (static_cast<double>(d.classes) * counts)).to(torch::kFloat);
  for (const auto& [cls, factor] : t.class_weights.boost) weight[cls] *= factor;
  auto loss_options =
      F::CrossEntropyFuncOptions().weight(weight).label_smoothing(t.label_smoothing);
  torch::optim::AdamW optimizer(model->parameters(),
                                torch::optim::AdamWOptions(t.lr).weight_decay(t.weight_decay));
  const int64_t n = d.x_train.size(0);
  double lr = t.lr, best_plateau = std::numeric_limits<double>::infinity();
  double best_loss = std::numeric_limits<double>::infinity();
  int plateau_bad = 0, bad = 0;
  std::vector<torch::Tensor> best_weights;
  TrialResult r;
  for (int epoch = 1; epoch <= t.epochs; ++epoch) {
    const bool mixing = t.mixup && epoch - 1 < t.mixup->until * static_cast<double>(t.epochs);
    torch::Tensor perm = torch::randperm(n, torch::kLong);
    torch::Tensor xs = d.x_train.index_select(0, perm), ys = d.y_train.index_select(0, perm);
    double loss_sum = 0;
    int64_t correct = 0;
    for (int64_t start = 0; start + 1 < n; start += t.batch_size) {  // BatchNorm: >= 2 rows
      const int64_t len = std::min(t.batch_size, n - start);
      torch::Tensor xb = xs.narrow(0, start, len), yb = ys.narrow(0, start, len);
      optimizer.zero_grad();
      torch::Tensor loss, logits;
      if (mixing) {
        const double g1 = std::gamma_distribution<double>(t.mixup->alpha, 1.0)(rng);
        const double g2 = std::gamma_distribution<double>(t.mixup->alpha, 1.0)(rng);
        const double lambda = g1 + g2 > 0 ? g1 / (g1 + g2) : 0.5;
        torch::Tensor other = torch::randperm(len, torch::kLong);
        logits = model->forward(xb * lambda + xb.index_select(0, other) * (1 - lambda));
        loss = F::cross_entropy(logits, yb, loss_options) * lambda +
               F::cross_entropy(logits, yb.index_select(0, other), loss_options) * (1 - lambda);
      } else {
        logits = model->forward(xb);
        loss = F::cross_entropy(logits, yb, loss_options);
      }
      loss.backward();
      if (t.clip_grad_norm) torch::nn::utils::clip_grad_norm_(model->parameters(), *t.clip_grad_norm);
      for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
      optimizer.step();
      loss_sum += loss.item<double>() * static_cast<double>(len);
      correct += logits.argmax(1).eq(yb).sum().item<int64_t>();
    }
    const Eval val = Evaluate(model, d.x_val, d.y_val, d.classes);
    r.epochs = epoch;
    if (t.schedule) {  // ReduceLROnPlateau on the validation loss
      if (val.loss < best_plateau) {
        best_plateau = val.loss;
        plateau_bad = 0;
      } else if (++plateau_bad > t.schedule->patience) {
        lr = std::max(lr * t.schedule->factor, t.schedule->min_lr);
        plateau_bad = 0;
      }
    }
    if (val.loss < best_loss) {  // the selected weights: the best validation loss
      best_loss = val.loss;
      bad = 0;
      best_weights.clear();
      for (const auto& p : model->parameters()) best_weights.push_back(p.detach().clone());
      for (const auto& b : model->buffers()) best_weights.push_back(b.clone());
    } else if (t.early_stopping && ++bad >= t.early_stopping->patience) {
      break;
    }
    r.train_loss = loss_sum / static_cast<double>(n);
    r.train_accuracy = static_cast<double>(correct) / static_cast<double>(n);
  }
  {
    torch::NoGradGuard no_grad;
    size_t i = 0;
    for (auto& p : model->parameters()) p.copy_(best_weights[i++]);
    for (auto& b : model->buffers()) b.copy_(best_weights[i++]);
  }
  r.selected_val_f1 = Evaluate(model, d.x_val, d.y_val, d.classes).macro_f1;
  r.test_accuracy = Evaluate(model, d.x_test, d.y_test, d.classes).accuracy;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: probe_plain SPEC [--part I --of N] [--threads T]\n");
    return 2;
  }
  int part = 0, of = 1, threads = 1;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int value = std::atoi(argv[i + 1]);
    if (flag == "--part") part = value;
    if (flag == "--of") of = value;
    if (flag == "--threads") threads = value;
  }
  torch::set_num_threads(threads);
  const auto start = std::chrono::steady_clock::now();
  auto spec = lattice::scheduler::LoadSweepSpecFile(argv[1]);
  if (!spec.ok()) {
    std::fprintf(stderr, "probe_plain: %s\n", spec.status().ToString().c_str());
    return 1;
  }
  int trials = 0, epochs = 0;
  double best = -1;
  try {
    std::optional<Data> data;  // every trial of the grid trains on the same rows
    for (size_t i = static_cast<size_t>(part); i < spec->trial_configs.size(); i += of) {
      auto cfg = lattice::jobs::ParseJobConfig(spec->trial_configs[i]);
      if (!cfg.ok()) throw std::runtime_error(cfg.status().ToString());
      if (!data) data = Prepare(*cfg);
      const TrialResult r = Train(*cfg, *data);
      ++trials;
      epochs += r.epochs;
      best = std::max(best, r.selected_val_f1);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "probe_plain: %s\n", e.what());
    return 1;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const nlohmann::json out = {{"part", part},         {"of", of},           {"trials", trials},
                              {"epochs", epochs},     {"seconds", seconds},
                              {"best_selected_val_f1", best}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
