// The train and noop job kinds, and RunJob's dispatch (embed: jobs/embed_job.cc).
#include "jobs/train_job.h"
#include "jobs/internal/threads.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <random>
#include <thread>

#include "jobs/embed_config.h"
#include "jobs/embed_job.h"
#include "jobs/internal/flat_optimizer.h"
#include "jobs/internal/model.h"

namespace lattice::jobs {
namespace {

namespace F = torch::nn::functional;

// Training and validation tensors, ready for the loop.
struct PreparedData {
  torch::Tensor x_train, y_train, x_val, y_val;  // [n, d] float32, [n] int64
  torch::Tensor mean, std;  // [d] standardisation fitted on x_train; undefined without
  int64_t num_classes = 0;
};

torch::Tensor FeaturesTensor(const FeatureMatrix& m) {
  // from_blob does not copy; the tensors built from it are only read.
  return torch::from_blob(const_cast<float*>(m.data.data()), {m.rows, m.cols}, torch::kFloat);
}

torch::Tensor LabelsTensor(const std::vector<int64_t>& labels) {
  return torch::from_blob(const_cast<int64_t*>(labels.data()),
                          {static_cast<int64_t>(labels.size())}, torch::kLong);
}

torch::Tensor IndexTensor(const std::vector<int64_t>& idx) {
  return LabelsTensor(idx).clone();
}

// Splits (or takes the explicit validation part) and standardizes. The returned tensors
// own their memory unless they alias `data` read-only (explicit validation, no scaling).
StatusOr<PreparedData> Prepare(const LoadedDataset& data, const DatasetConfig& cfg) {
  PreparedData p;
  p.num_classes = data.num_classes;
  torch::Tensor x = FeaturesTensor(data.train.features);
  torch::Tensor y = LabelsTensor(data.train.labels);
  if (data.validation) {
    p.x_train = x;
    p.y_train = y;
    p.x_val = FeaturesTensor(data.validation->features);
    p.y_val = LabelsTensor(data.validation->labels);
  } else {
    LATTICE_ASSIGN_OR_RETURN(SplitIndices split,
                             MakeSplit(x.size(0), cfg.validation_fraction, cfg.split_seed));
    torch::Tensor ti = IndexTensor(split.train);
    torch::Tensor vi = IndexTensor(split.validation);
    p.x_train = x.index_select(0, ti);
    p.y_train = y.index_select(0, ti);
    p.x_val = x.index_select(0, vi);
    p.y_val = y.index_select(0, vi);
  }
  if (cfg.standardize) {
    torch::Tensor mean = p.x_train.mean(0);
    torch::Tensor std = p.x_train.std(0, /*unbiased=*/false);
    // Constant features keep their scale (as in scikit-learn's StandardScaler).
    std = torch::where(std < 1e-12, torch::ones_like(std), std);
    p.x_train = (p.x_train - mean) / std;
    p.x_val = (p.x_val - mean) / std;
    p.mean = mean;
    p.std = std;
  }
  p.x_train = p.x_train.contiguous();
  p.x_val = p.x_val.contiguous();
  return p;
}

// Inverse-frequency weights n / (k * count_c) over the k classes present in `y`;
// classes absent from the training split get weight 1.
torch::Tensor InverseFrequencyWeights(const torch::Tensor& y, int64_t num_classes) {
  torch::Tensor counts = torch::bincount(y, {}, num_classes).to(torch::kFloat);
  double k = counts.gt(0).sum().item<double>();
  torch::Tensor w = static_cast<double>(y.size(0)) / (k * counts);
  return torch::where(counts > 0, w, torch::ones_like(w));
}

struct EvalResult {
  double loss = 0;
  double accuracy = 0;
};

// Plain cross-entropy and accuracy on the validation split, in chunks.
EvalResult Evaluate(torch::nn::Sequential& model, const torch::Tensor& x, const torch::Tensor& y) {
  torch::InferenceMode inference;
  model->eval();
  constexpr int64_t kChunk = 8192;
  const int64_t n = x.size(0);
  double loss_sum = 0;
  int64_t correct = 0;
  for (int64_t start = 0; start < n; start += kChunk) {
    int64_t len = std::min(kChunk, n - start);
    torch::Tensor logits = model->forward(x.narrow(0, start, len));
    torch::Tensor yb = y.narrow(0, start, len);
    loss_sum += F::cross_entropy(logits, yb, F::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    correct += logits.argmax(1).eq(yb).sum().item<int64_t>();
  }
  model->train();
  return {loss_sum / static_cast<double>(n), static_cast<double>(correct) / static_cast<double>(n)};
}

// Tracks best values and the early-stopping counter.
class Progress {
 public:
  explicit Progress(const std::optional<EarlyStoppingConfig>& es) : es_(es) {}

  // Records one epoch; returns true when early stopping says stop.
  bool Record(int epoch, double val_loss, double val_accuracy) {
    best_val_accuracy_ = std::max(best_val_accuracy_, val_accuracy);
    best_val_loss_ = std::min(best_val_loss_, val_loss);
    bool by_accuracy = es_ && es_->metric == EarlyStoppingMetric::kValAccuracy;
    double score = by_accuracy ? val_accuracy : -val_loss;  // higher is better
    double min_delta = es_ ? es_->min_delta : 0.0;
    if (best_epoch_ == 0 || score > best_score_ + min_delta) {
      best_score_ = score;
      best_epoch_ = epoch;
      stale_ = 0;
    } else {
      ++stale_;
    }
    return es_ && stale_ >= es_->patience;
  }

  void Fill(std::map<std::string, double>* m) const {
    (*m)["best_val_accuracy"] = best_val_accuracy_;
    (*m)["best_val_loss"] = best_val_loss_;
    (*m)["best_epoch"] = best_epoch_;
  }

 private:
  std::optional<EarlyStoppingConfig> es_;
  double best_val_accuracy_ = 0;
  double best_val_loss_ = std::numeric_limits<double>::infinity();
  double best_score_ = 0;
  int best_epoch_ = 0;
  int64_t stale_ = 0;
};

// The state of one training run.
class Trainer {
 public:
  Trainer(const JobConfig& cfg, const nlohmann::json& config, PreparedData data, JobContext& ctx)
      : cfg_(cfg), config_(config), data_(std::move(data)), ctx_(ctx), rng_(cfg.seed) {
    const int64_t n = data_.x_train.size(0);
    model_ = internal::BuildModel(cfg.model, data_.x_train.size(1), data_.num_classes);
    // One contiguous buffer for the parameters and one for the gradients, updated by a
    // fused optimizer: a few ops per step instead of ~10 per parameter tensor.
    flat_ = std::make_unique<internal::FlatParameters>(model_->parameters());
    optimizer_ = std::make_unique<internal::FlatOptimizer>(
        *flat_, internal::FlatOptimizerOptions::FromTrainConfig(cfg.train));
    loss_options_ = F::CrossEntropyFuncOptions().label_smoothing(cfg.train.label_smoothing);
    if (cfg.train.inverse_frequency_class_weights) {
      loss_options_.weight(InverseFrequencyWeights(data_.y_train, data_.num_classes));
    }
    order_.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) order_[i] = i;
    perm_ = torch::empty({n}, torch::kLong);
    x_epoch_ = torch::empty_like(data_.x_train);
    y_epoch_ = torch::empty_like(data_.y_train);
    // Views of x_epoch_ / y_epoch_, which index_select_out refills in place every epoch.
    for (int64_t start = 0; start < n; start += cfg.train.batch_size) {
      const int64_t len = std::min(cfg.train.batch_size, n - start);
      batches_.push_back({x_epoch_.narrow(0, start, len), y_epoch_.narrow(0, start, len)});
    }
  }

  StatusOr<JobResult> Run();

 private:
  StatusOr<double> TrainEpoch(int epoch);

  const JobConfig& cfg_;
  const nlohmann::json& config_;  // as submitted: goes into the checkpoint
  PreparedData data_;
  JobContext& ctx_;
  std::mt19937_64 rng_;
  torch::nn::Sequential model_{nullptr};
  std::unique_ptr<internal::FlatParameters> flat_;  // aliases model_'s parameters
  std::unique_ptr<internal::FlatOptimizer> optimizer_;
  F::CrossEntropyFuncOptions loss_options_;
  std::vector<int64_t> order_;
  torch::Tensor perm_, x_epoch_, y_epoch_;  // reused every epoch
  std::vector<std::pair<torch::Tensor, torch::Tensor>> batches_;  // (x, y) views, in order
};

// One pass over the shuffled training rows; returns the mean batch loss.
StatusOr<double> Trainer::TrainEpoch(int epoch) {
  const int64_t n = static_cast<int64_t>(order_.size());
  for (int64_t i = n - 1; i > 0; --i) {  // Fisher-Yates, platform-independent
    std::swap(order_[i], order_[rng_() % static_cast<uint64_t>(i + 1)]);
  }
  std::memcpy(perm_.data_ptr<int64_t>(), order_.data(), order_.size() * sizeof(int64_t));
  torch::index_select_out(x_epoch_, data_.x_train, 0, perm_);
  torch::index_select_out(y_epoch_, data_.y_train, 0, perm_);
  double loss_sum = 0;
  int64_t seen = 0;
  for (const auto& [xb, yb] : batches_) {
    if (ctx_.cancelled && ctx_.cancelled()) {
      return Status::Cancelled("cancelled in epoch " + std::to_string(epoch));
    }
    const int64_t len = xb.size(0);
    if (len < 2 && cfg_.model.batchnorm && cfg_.model.type == ModelType::kMlp) continue;
    optimizer_->ZeroGrad();
    torch::Tensor logits = model_->forward(xb);
    torch::Tensor loss = F::cross_entropy(logits, yb, loss_options_);
    const double value = loss.item<double>();
    if (!std::isfinite(value)) {
      return Status::FailedPrecondition("epoch " + std::to_string(epoch) + ": training loss is " +
                                        (std::isnan(value) ? "NaN" : "Inf"));
    }
    loss.backward();
    optimizer_->Step();
    loss_sum += value * static_cast<double>(len);
    seen += len;
  }
  return seen > 0 ? loss_sum / static_cast<double>(seen) : 0.0;
}

StatusOr<JobResult> Trainer::Run() {
  JobResult result;
  Progress progress(cfg_.train.early_stopping);
  model_->train();
  std::map<std::string, double> last;
  for (int epoch = 1; epoch <= cfg_.train.epochs; ++epoch) {
    LATTICE_ASSIGN_OR_RETURN(double train_loss, TrainEpoch(epoch));
    EvalResult eval = Evaluate(model_, data_.x_val, data_.y_val);
    last = {{"train_loss", train_loss}, {"val_loss", eval.loss}, {"val_accuracy", eval.accuracy}};
    result.epochs_done = epoch;
    if (ctx_.on_epoch) ctx_.on_epoch(epoch, last);
    if (progress.Record(epoch, eval.loss, eval.accuracy)) break;
  }
  result.metrics = last;
  result.metrics["final_train_loss"] = last["train_loss"];
  result.metrics["final_val_loss"] = last["val_loss"];
  result.metrics["final_val_accuracy"] = last["val_accuracy"];
  progress.Fill(&result.metrics);
  if (cfg_.train.save_checkpoint) {
    CheckpointHeader header;
    header.config = config_;
    header.in_dim = data_.x_train.size(1);
    header.classes = data_.num_classes;
    header.epochs = result.epochs_done;
    header.metrics = result.metrics;
    result.checkpoint = internal::EncodeCheckpoint(model_, header, data_.mean, data_.std);
  }
  return result;
}

StatusOr<JobResult> RunTrain(const JobConfig& cfg, const nlohmann::json& config,
                             JobContext& ctx) {
  std::shared_ptr<const LoadedDataset> data;
  if (ctx.cache != nullptr) {
    LATTICE_ASSIGN_OR_RETURN(data, ctx.cache->Get(cfg.dataset));
  } else {
    LATTICE_ASSIGN_OR_RETURN(LoadedDataset loaded, LoadDataset(cfg.dataset));
    data = std::make_shared<const LoadedDataset>(std::move(loaded));
  }
  internal::SetJobThreads(cfg.train.threads.value_or(ctx.num_threads));
  torch::manual_seed(cfg.seed);
  LATTICE_ASSIGN_OR_RETURN(PreparedData prepared, Prepare(*data, cfg.dataset));
  Trainer trainer(cfg, config, std::move(prepared), ctx);
  // `data` stays alive until here: prepared tensors may alias it.
  return trainer.Run();
}

StatusOr<JobResult> RunNoop(const JobConfig& cfg, JobContext& ctx) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(cfg.sleep_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (ctx.cancelled && ctx.cancelled()) return Status::Cancelled("noop cancelled");
    auto left = deadline - std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
        left, std::chrono::milliseconds(10)));
  }
  return JobResult{};
}

}  // namespace

StatusOr<JobResult> RunJob(const nlohmann::json& config, JobContext& ctx) {
  LATTICE_ASSIGN_OR_RETURN(JobConfig cfg, ParseJobConfig(config));
  if (cfg.kind == JobKind::kNoop) return RunNoop(cfg, ctx);
  if (cfg.kind == JobKind::kEmbed) return RunEmbed(*cfg.embed, ctx);  // catches its own exceptions
  try {
    return RunTrain(cfg, config, ctx);
  } catch (const c10::Error& e) {
    return Status::Internal(std::string("train job: libtorch: ") + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return Status::Internal(std::string("train job: ") + e.what());
  } catch (...) {
    return Status::Internal("train job: unknown exception");
  }
}

}  // namespace lattice::jobs
