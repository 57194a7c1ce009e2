#include "jobs/internal/sae_trainer.h"

#include <cmath>
#include <cstring>
#include <random>

#include "jobs/activation_dataset.h"
#include "jobs/internal/device.h"
#include "jobs/internal/flat_optimizer.h"
#include "jobs/internal/lr_schedule.h"
#include "jobs/internal/sae.h"
#include "jobs/internal/threads.h"

namespace lattice::jobs::internal {
namespace {

// The rows an SAE trains on, before the split.
struct SaeRows {
  std::string what;  // for messages: "dataset.activations fmnist-act", "dataset"
  std::shared_ptr<const FeatureMatrix> features;  // shares ownership of what holds it
  std::vector<int64_t> labels;  // one per row, or empty
};

StatusOr<SaeRows> LoadRows(const DatasetConfig& d, JobContext& ctx) {
  SaeRows rows;
  if (!d.activations.empty()) {
    rows.what = "dataset.activations " + d.activations;
    auto sweep = SweepId::Parse(d.activations_source);
    std::shared_ptr<const std::string> blob;
    if (sweep && ctx.checkpoint) blob = ctx.checkpoint(ActivationsBlobId(*sweep).ToString());
    if (blob == nullptr) {
      return Status::FailedPrecondition(rows.what + ": not received from the coordinator " +
                                        "(dataset.source \"" + d.activations_source + "\")");
    }
    LATTICE_ASSIGN_OR_RETURN(ActivationData data, DecodeActivations(*blob));
    auto owned = std::make_shared<ActivationData>(std::move(data));
    rows.labels = owned->labels;
    rows.features = std::shared_ptr<const FeatureMatrix>(owned, &owned->features);
    return rows;
  }
  rows.what = "dataset";
  std::shared_ptr<const LoadedDataset> data;
  if (ctx.cache != nullptr) {
    LATTICE_ASSIGN_OR_RETURN(data, ctx.cache->Get(d));
  } else {
    LATTICE_ASSIGN_OR_RETURN(LoadedDataset loaded, LoadDataset(d));
    data = std::make_shared<const LoadedDataset>(std::move(loaded));
  }
  rows.features = std::shared_ptr<const FeatureMatrix>(data, &data->train.features);
  rows.labels = data->train.labels;
  const FeatureMatrix& f = *rows.features;
  if (!f.all_finite) {
    for (size_t i = 0; i < f.data.size(); ++i) {
      if (!std::isfinite(f.data[i])) {
        return Status::FailedPrecondition(
            "dataset: row " + std::to_string(static_cast<int64_t>(i) / f.cols) + ", column " +
            std::to_string(static_cast<int64_t>(i) % f.cols) + " is " +
            (std::isnan(f.data[i]) ? "NaN" : "Inf") + ": an SAE needs finite activations");
      }
    }
  }
  return rows;
}

class SaeTrainer {
 public:
  SaeTrainer(const JobConfig& cfg, JobContext& ctx, torch::Tensor x_train, torch::Tensor x_val,
             torch::Tensor y_val, torch::Device device)
      : cfg_(cfg), sae_(cfg.model.sae), ctx_(ctx), device_(device), rng_(cfg.seed),
        x_train_(std::move(x_train)), x_val_(std::move(x_val)), y_val_(std::move(y_val)) {
    const int64_t d = x_train_.size(1);
    torch::manual_seed(cfg.seed);
    model_ = std::make_unique<SaeModel>(d, d * sae_.expansion, x_train_.mean(0));
    model_->to(device_);
    x_train_ = x_train_.to(device_);
    x_val_ = x_val_.to(device_);
    if (y_val_.defined()) y_val_ = y_val_.to(device_);
    flat_ = std::make_unique<FlatParameters>(model_->parameters());
    optimizer_ = std::make_unique<FlatOptimizer>(*flat_,
                                                 FlatOptimizerOptions::FromTrainConfig(cfg.train));
    const int64_t n = x_train_.size(0);
    steps_per_epoch_ = (n + cfg.train.batch_size - 1) / cfg.train.batch_size;
    schedule_ = std::make_unique<LrSchedule>(cfg.train.schedule, cfg.train.lr,
                                             cfg.train.epochs * steps_per_epoch_);
    tracker_ = std::make_unique<DeadFeatureTracker>(model_->features(), sae_.dead_window);
    order_.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) order_[i] = i;
  }

  StatusOr<JobResult> Run(const nlohmann::json& config, const torch::Tensor& mean,
                          const torch::Tensor& std);

 private:
  StatusOr<double> TrainEpoch(int epoch);

  const JobConfig& cfg_;
  const SaeConfig& sae_;
  JobContext& ctx_;
  const torch::Device device_;
  std::mt19937_64 rng_;
  torch::Tensor x_train_, x_val_, y_val_;
  std::unique_ptr<SaeModel> model_;
  std::unique_ptr<FlatParameters> flat_;
  std::unique_ptr<FlatOptimizer> optimizer_;
  std::unique_ptr<LrSchedule> schedule_;
  std::unique_ptr<DeadFeatureTracker> tracker_;
  std::vector<int64_t> order_;
  int64_t steps_per_epoch_ = 0;
  double last_lr_ = 0;
};

StatusOr<double> SaeTrainer::TrainEpoch(int epoch) {
  const int64_t n = static_cast<int64_t>(order_.size());
  for (int64_t i = n - 1; i > 0; --i) {  // Fisher-Yates, as the classifier trainer
    std::swap(order_[i], order_[rng_() % static_cast<uint64_t>(i + 1)]);
  }
  torch::Tensor perm = torch::from_blob(order_.data(), {n}, torch::kLong).to(device_);
  torch::Tensor x_epoch = x_train_.index_select(0, perm);
  double loss_sum = 0;
  for (int64_t start = 0; start < n; start += cfg_.train.batch_size) {
    if ((ctx_.preempted && ctx_.preempted()) || (ctx_.cancelled && ctx_.cancelled())) {
      return Status::Cancelled("cancelled in epoch " + std::to_string(epoch));
    }
    const int64_t len = std::min(cfg_.train.batch_size, n - start);
    torch::Tensor xb = x_epoch.narrow(0, start, len), features;
    optimizer_->ZeroGrad();
    torch::Tensor x_hat = model_->Forward(xb, &features);
    SaeLossParts parts =
        SaeLoss(xb, x_hat, features, model_->DecoderNorms(), sae_.l1_coefficient);
    const double value = parts.mse + sae_.l1_coefficient * parts.sparsity;
    if (!std::isfinite(value)) {
      return Status::FailedPrecondition("epoch " + std::to_string(epoch) + ": training loss is " +
                                        (std::isnan(value) ? "NaN" : "Inf"));
    }
    parts.loss.backward();
    if (cfg_.train.clip_grad_norm) flat_->ClipGradNorm(*cfg_.train.clip_grad_norm);
    last_lr_ = schedule_->lr();
    optimizer_->set_lr(last_lr_);
    optimizer_->Step();
    schedule_->OnStep();
    model_->RenormaliseDecoder();
    tracker_->Record(features);
    loss_sum += value * static_cast<double>(len);
    if (ctx_.processed != nullptr) ctx_.processed->fetch_add(len, std::memory_order_relaxed);
  }
  return loss_sum / static_cast<double>(n);
}

StatusOr<JobResult> SaeTrainer::Run(const nlohmann::json& config, const torch::Tensor& mean,
                                    const torch::Tensor& std) {
  JobResult result;
  last_lr_ = schedule_->lr();
  const double m = static_cast<double>(model_->features());
  for (int epoch = 1; epoch <= cfg_.train.epochs; ++epoch) {
    LATTICE_ASSIGN_OR_RETURN(double train_loss, TrainEpoch(epoch));
    // Label purity is a property of the final dictionary (a top-k pass over every
    // validation row's features): measured once, after the last epoch.
    const bool last = epoch == cfg_.train.epochs;
    SaeEval e = EvaluateSae(*model_, x_val_, last ? y_val_ : torch::Tensor(),
                            sae_.l1_coefficient, sae_.purity_top);
    schedule_->OnEpochEnd(e.loss);
    const double dead = static_cast<double>(tracker_->Dead());
    result.metrics = {{"train_loss", train_loss},
                      {"val_loss", e.loss},
                      {"val_mse", e.mse},
                      {"val_explained_variance", e.explained_variance},
                      {"val_l0", e.l0},
                      {"val_l0_fraction", e.l0 / m},
                      {"dead_features", dead},
                      {"dead_fraction", dead / m},
                      {"dictionary_size", m},
                      {"lr", last_lr_}};
    if (last && y_val_.defined() && e.label_purity >= 0) {
      result.metrics["val_label_purity"] = e.label_purity;
    }
    result.epochs_done = epoch;
    if (ctx_.on_epoch) ctx_.on_epoch(epoch, result.metrics);
  }
  if (cfg_.train.save_checkpoint) {
    CheckpointHeader header;
    header.config = config;
    header.in_dim = model_->in();
    header.classes = model_->features();  // an SAE's outputs: its dictionary
    header.epochs = result.epochs_done;
    header.metrics = result.metrics;
    model_->to(torch::kCPU);
    result.checkpoint = model_->Encode(header, mean, std);
  }
  return result;
}

}  // namespace

StatusOr<JobResult> RunSaeTrain(const JobConfig& cfg, const nlohmann::json& config,
                                JobContext& ctx) {
  if (ctx.gang != nullptr) {
    return Status::InvalidArgument("model type sae trains on one worker (workers_per_trial: 1)");
  }
  LATTICE_ASSIGN_OR_RETURN(SaeRows rows, LoadRows(cfg.dataset, ctx));
  LATTICE_ASSIGN_OR_RETURN(torch::Device device, JobDevice(ctx.device));
  SetJobThreads(cfg.train.threads.value_or(ctx.num_threads));
  const FeatureMatrix& f = *rows.features;
  const int64_t n = cfg.dataset.limit ? std::min(*cfg.dataset.limit, f.rows) : f.rows;
  if (n < 2) {
    return Status::InvalidArgument(rows.what + ": needs at least 2 rows, has " +
                                   std::to_string(n));
  }
  torch::Tensor x =
      torch::from_blob(const_cast<float*>(f.data.data()), {f.rows, f.cols}, torch::kFloat)
          .narrow(0, 0, n);
  LATTICE_ASSIGN_OR_RETURN(SplitIndices split,
                           MakeSplit(n, cfg.dataset.validation_fraction, cfg.dataset.split_seed));
  auto index = [](const std::vector<int64_t>& i) {
    return torch::from_blob(const_cast<int64_t*>(i.data()), {static_cast<int64_t>(i.size())},
                            torch::kLong).clone();
  };
  torch::Tensor x_train = x.index_select(0, index(split.train));
  torch::Tensor x_val = x.index_select(0, index(split.validation));
  torch::Tensor y_val;
  if (!rows.labels.empty()) {
    torch::Tensor y = torch::from_blob(rows.labels.data(), {f.rows}, torch::kLong);
    y_val = y.index_select(0, index(split.validation));
    if (y_val.min().item<int64_t>() < 0) {
      return Status::InvalidArgument(rows.what + ": labels must be >= 0 (label purity)");
    }
  }
  torch::Tensor mean, std;
  if (cfg.dataset.standardize) {
    mean = x_train.mean(0);
    std = x_train.std(0, /*unbiased=*/false);
    std = torch::where(std < 1e-12, torch::ones_like(std), std);
    x_train = (x_train - mean) / std;
    x_val = (x_val - mean) / std;
  }
  SaeTrainer trainer(cfg, ctx, x_train.contiguous(), x_val.contiguous(), y_val, device);
  return trainer.Run(config, mean, std);
}

}  // namespace lattice::jobs::internal
