// The train and noop job kinds, and RunJob's dispatch (embed: jobs/embed_job.cc).
#include "jobs/train_job.h"
#include "jobs/internal/threads.h"

#include <fcntl.h>
#include <unistd.h>

#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "jobs/embed_config.h"
#include "jobs/embed_job.h"
#include "jobs/internal/data_parallel.h"
#include "jobs/internal/device.h"
#include "jobs/internal/evaluation.h"
#include "jobs/internal/classification_metrics.h"
#include "jobs/internal/feature_match.h"
#include "jobs/internal/flat_optimizer.h"
#include "jobs/internal/lr_schedule.h"
#include "jobs/internal/mixup.h"
#include "jobs/internal/model.h"
#include "jobs/internal/prepared_data.h"
#include "jobs/internal/progress.h"
#include "jobs/internal/sae_trainer.h"
#include "jobs/internal/projectors.h"
#include "jobs/internal/siglip.h"
#include "jobs/internal/teacher.h"
#include "jobs/internal/train_model.h"

namespace lattice::jobs {
namespace {

namespace F = torch::nn::functional;

// Archive keys of a step checkpoint's state beyond the model (jobs/checkpoint.h).
constexpr char kOrderKey[] = "resume.order";         // the epoch's shuffled row order
constexpr char kTorchRngKey[] = "resume.torch_rng";  // the CPU generator (dropout)
constexpr char kBestPrefix[] = "resume.best.";       // + "0.weight": the selected epoch's
constexpr char kFeatureMapPrefix[] = "resume.feature_map.";  // + "weight", "bias"

// The state of one training run.
class Trainer {
 public:
  // `teacher`: distill only (the teacher's logits for the training and validation rows).
  // `model`: internal::MakeTrainModel's, on `device`.
  Trainer(const JobConfig& cfg, const nlohmann::json& config, internal::PreparedData data,
          torch::Device device, std::optional<internal::TeacherLogits> teacher,
          std::unique_ptr<internal::TrainModel> model, JobContext& ctx)
      : cfg_(cfg), config_(config), data_(std::move(data)), device_(device),
        teacher_(std::move(teacher)), ctx_(ctx), rng_(cfg.seed), model_(std::move(model)) {
    projector_ = dynamic_cast<internal::ProjectorModel*>(model_.get());  // alignment jobs
    const int64_t n = data_.x_train.size(0);
    std::vector<torch::Tensor> params = model_->parameters();
    if (teacher_ && teacher_->features_train.defined()) {
      feature_match_ = std::make_unique<internal::FeatureMatch>(
          *cfg.distill->feature_match, cfg.model, data_.x_train.size(1), data_.num_classes,
          teacher_->features_train.size(1), cfg.seed, device_);
      for (const torch::Tensor& p : feature_match_->parameters()) params.push_back(p);
    }
    // One contiguous buffer for the parameters and one for the gradients, updated by a
    // fused optimizer: a few ops per step instead of ~10 per parameter tensor.
    // A gang's buffers live in its communicator's workspace: no copies per exchange.
    flat_ = std::make_unique<internal::FlatParameters>(params, dp_.BufferMemory());
    optimizer_ = std::make_unique<internal::FlatOptimizer>(
        *flat_, internal::FlatOptimizerOptions::FromTrainConfig(cfg.train));
    loss_options_ = F::CrossEntropyFuncOptions().label_smoothing(cfg.train.label_smoothing);
    if (data_.class_weights.defined()) loss_options_.weight(data_.class_weights);
    order_.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) order_[i] = i;
    perm_ = torch::empty({n}, torch::kLong);  // filled on the CPU, copied to device_
    x_epoch_ = torch::empty_like(data_.x_train);
    y_epoch_ = torch::empty_like(data_.y_train);
    if (teacher_) t_epoch_ = torch::empty_like(teacher_->train);
    if (feature_match_) f_epoch_ = torch::empty_like(teacher_->features_train);
    // Views of x_epoch_ / y_epoch_ (/ t_epoch_), which index_select_out refills in place
    // every epoch.
    for (int64_t start = 0; start < n; start += cfg.train.batch_size) {
      const int64_t len = std::min(cfg.train.batch_size, n - start);
      if (len < 2 && model_->needs_two_rows()) {
        continue;  // BatchNorm needs 2 rows; skipping it here keeps the step count exact
      }
      batches_.push_back({x_epoch_.narrow(0, start, len), y_epoch_.narrow(0, start, len)});
      global_rows_.push_back(len);
      if (teacher_) teacher_batches_.push_back(t_epoch_.narrow(0, start, len));
      if (feature_match_) feature_batches_.push_back(f_epoch_.narrow(0, start, len));
    }
    // The cosine schedule spans the planned run's steps: one per batch, every epoch.
    schedule_ = std::make_unique<internal::LrSchedule>(
        cfg.train.schedule, cfg.train.lr,
        cfg.train.epochs * static_cast<int64_t>(batches_.size()));
    if (rule_) selection_.emplace(rule_->lower_is_better, rule_->min_delta);
  }

  // Continues the run a step checkpoint of the same config was taken from (train.epochs
  // may differ: a resumed run may be longer). Call before Run().
  Status Restore(const std::string& blob);

  StatusOr<JobResult> Run();

  ~Trainer() { (void)WaitForSnapshot(); }

 private:
  StatusOr<double> TrainEpoch(int epoch);
  // Whether the checkpoint policy says "now", after an optimizer step.
  bool CheckpointDue() const;
  // Copies the whole state in the middle of `epoch`, before batch `next_batch`
  // (== batches_.size(): the epoch's batches are done, its evaluation not), then serialises
  // it and hands it to ctx_.on_checkpoint on a writer thread while training goes on. One
  // snapshot at a time: it first waits for the previous one.
  Status Snapshot(int epoch, size_t next_batch, double loss_sum, int64_t seen);
  // Waits for the snapshot being written, if any; its error, if it failed.
  Status WaitForSnapshot();
  // ctx_.preempted() said so before batch `next_batch` of `epoch`: a step checkpoint of this
  // point (with a checkpoint policy, unless one was made at this step), written out before
  // returning Cancelled.
  Status Preempt(int epoch, size_t next_batch, double loss_sum, int64_t seen);
  // After `epoch`'s evaluation: keeps a copy of the weights when the epoch is the best so far
  // by the selection rule.
  void Select(int epoch);
  // distill: alpha * hard + (1 - alpha) * T^2 * KL(teacher || student) at temperature T.
  torch::Tensor DistillLoss(const torch::Tensor& hard, const torch::Tensor& student,
                            const torch::Tensor& teacher) const;

  const JobConfig& cfg_;
  const nlohmann::json& config_;  // as submitted: goes into the checkpoint
  internal::PreparedData data_;
  const torch::Device device_;
  const std::optional<internal::TeacherLogits> teacher_;
  JobContext& ctx_;
  std::mt19937_64 rng_;
  std::unique_ptr<internal::TrainModel> model_;
  // An alignment job's projector (model_ itself; jobs/internal/siglip.h), else null.
  internal::ProjectorModel* projector_ = nullptr;
  // distill.feature_match (null without): its map's parameters follow model_'s in flat_.
  std::unique_ptr<internal::FeatureMatch> feature_match_;
  std::unique_ptr<internal::FlatParameters> flat_;  // aliases model_'s parameters
  std::unique_ptr<internal::FlatOptimizer> optimizer_;
  internal::DataParallel dp_{ctx_.gang, ctx_.gang_device};  // a no-op for one worker
  std::unique_ptr<internal::LrSchedule> schedule_;
  double last_lr_ = 0;  // lr of the latest optimizer step: the per-epoch metric "lr"
  internal::Progress progress_{cfg_.train.early_stopping};
  // The final weights' epoch (jobs/internal/progress.h); unset: the last epoch's weights.
  const std::optional<internal::SelectionRule> rule_ = internal::SelectionRule::For(cfg_);
  std::optional<internal::BestEpoch> selection_;
  // The selected epoch so far: its weights and metrics. Immutable once made (a new best
  // makes a new one), so a snapshot writer thread can serialise it while training goes on.
  struct Selected {
    std::map<std::string, double> metrics;
    internal::NamedWeights weights;
  };
  std::shared_ptr<const Selected> selected_;
  std::map<std::string, double> last_;  // the latest epoch's metrics
  // Adds the classification reports of the current weights on validation and test
  // (collective in a gang: the evaluation is sharded).
  Status AddReports(std::map<std::string, double>* metrics);
  // An alignment job's evaluation after `epoch`: sets last_ (jobs/projector_config.h),
  // steps the schedule; returns whether early stopping says stop.
  bool AlignmentEpoch(int epoch, double train_loss);
  // Where Run starts (1, 0 for a fresh run; from the checkpoint when restored), and the
  // epoch loss accumulated before the checkpoint's batch.
  int start_epoch_ = 1;
  size_t start_batch_ = 0;
  double carried_loss_sum_ = 0;
  int64_t carried_seen_ = 0;
  int64_t epoch_correct_ = 0;  // training rows predicted right so far in this epoch
  bool order_restored_ = false;  // order_ is the restored epoch's shuffle: do not reshuffle
  int64_t last_checkpoint_step_ = 0;
  std::unique_ptr<internal::TrainModel> snapshot_model_;  // the writer's copy of the weights
  std::thread snapshot_writer_;
  Status snapshot_status_;  // set by the writer thread; read after joining it
  std::chrono::steady_clock::time_point last_checkpoint_time_ = std::chrono::steady_clock::now();
  F::CrossEntropyFuncOptions loss_options_;
  std::vector<int64_t> order_;
  torch::Tensor perm_, x_epoch_, y_epoch_, t_epoch_, f_epoch_;    // reused every epoch
  std::vector<std::pair<torch::Tensor, torch::Tensor>> batches_;  // (x, y) views, in order
  std::vector<int64_t> global_rows_;  // rows of each batch (a gang member's slice: fewer)
  double train_seconds_ = 0;          // wall time in TrainEpoch, this run
  int64_t train_samples_ = 0;         // rows of the global batches stepped on, this run
  std::vector<torch::Tensor> teacher_batches_;  // distill: the teacher's logits per batch
  std::vector<torch::Tensor> feature_batches_;  // feature_match: the teacher's features
};

// One pass over the shuffled training rows; returns the mean batch loss.
StatusOr<double> Trainer::TrainEpoch(int epoch) {
  const int64_t n = static_cast<int64_t>(order_.size());
  const bool resumed = order_restored_ && epoch == start_epoch_;
  if (!resumed) {
    for (int64_t i = n - 1; i > 0; --i) {  // Fisher-Yates, platform-independent
      std::swap(order_[i], order_[rng_() % static_cast<uint64_t>(i + 1)]);
    }
  }
  std::memcpy(perm_.data_ptr<int64_t>(), order_.data(), order_.size() * sizeof(int64_t));
  const torch::Tensor perm = perm_.to(device_);  // perm_ itself on the CPU
  torch::index_select_out(x_epoch_, data_.x_train, 0, perm);
  torch::index_select_out(y_epoch_, data_.y_train, 0, perm);
  if (teacher_) torch::index_select_out(t_epoch_, teacher_->train, 0, perm);
  if (feature_match_) torch::index_select_out(f_epoch_, teacher_->features_train, 0, perm);
  double loss_sum = resumed ? carried_loss_sum_ : 0;
  int64_t seen = resumed ? carried_seen_ : 0;
  if (!resumed) epoch_correct_ = 0;
  const bool mixing =
      cfg_.train.mixup && internal::MixupActive(*cfg_.train.mixup, epoch, cfg_.train.epochs);
  for (size_t b = resumed ? start_batch_ : 0; b < batches_.size(); ++b) {
    const auto& [xb, yb] = batches_[b];
    if (ctx_.preempted && ctx_.preempted()) return Preempt(epoch, b, loss_sum, seen);
    if (ctx_.cancelled && ctx_.cancelled()) {
      return Status::Cancelled("cancelled in epoch " + std::to_string(epoch));
    }
    const int64_t len = xb.size(0);
    optimizer_->ZeroGrad();
    torch::Tensor feature;
    std::optional<internal::MixedBatch> mixed;
    if (mixing) mixed = internal::Mixup(xb, yb, cfg_.train.mixup->alpha, rng_);
    const torch::Tensor& input = mixed ? mixed->x : xb;
    torch::Tensor loss;
    if (projector_ != nullptr) {  // alignment: the SigLIP loss against the targets
      loss = internal::SiglipBatchLoss(*projector_, input, yb);
    } else {
      torch::Tensor logits = feature_match_ ? feature_match_->Forward(*model_, input, &feature)
                                            : model_->forward(input);
      loss = mixed ? internal::MixupLoss(logits, yb, *mixed, loss_options_)
                   : F::cross_entropy(logits, yb, loss_options_);
      epoch_correct_ += logits.argmax(1).eq(yb).sum().item<int64_t>();
      if (teacher_) loss = DistillLoss(loss, logits, teacher_batches_[b]);
    }
    if (feature_match_) loss = loss + feature_match_->Loss(feature, feature_batches_[b]);
    const double value = loss.item<double>();
    if (!std::isfinite(value)) {
      return Status::FailedPrecondition("epoch " + std::to_string(epoch) + ": training loss is " +
                                        (std::isnan(value) ? "NaN" : "Inf"));
    }
    (dp_.active() ? loss * dp_.Share(b) : loss).backward();  // gangs: this slice's share
    LATTICE_RETURN_IF_ERROR(dp_.ExchangeGradients(*flat_));
    if (cfg_.train.clip_grad_norm) {
      LATTICE_RETURN_IF_ERROR(dp_.ClipGradNorm(*flat_, *cfg_.train.clip_grad_norm));
    }
    last_lr_ = schedule_->lr();
    optimizer_->set_lr(last_lr_);
    optimizer_->Step();
    LATTICE_RETURN_IF_ERROR(dp_.GatherParameters(*flat_));
    schedule_->OnStep();
    loss_sum += value * static_cast<double>(len);
    seen += len;
    train_samples_ += global_rows_[b];
    if (ctx_.processed != nullptr) ctx_.processed->fetch_add(len, std::memory_order_relaxed);
    // A sharded gang checkpoints at steps all its members agree on: the snapshot gathers
    // every member's part of the optimizer state (members > 0 have no on_checkpoint).
    bool due = CheckpointDue();
    if (cfg_.checkpoints && cfg_.checkpoints->every_seconds > 0) {  // each member's clock
      LATTICE_ASSIGN_OR_RETURN(due, dp_.AnyMember(due));
    }
    if (due) {
      last_checkpoint_step_ = optimizer_->steps();
      last_checkpoint_time_ = std::chrono::steady_clock::now();
      if (ctx_.on_checkpoint || dp_.sharded()) {
        LATTICE_RETURN_IF_ERROR(Snapshot(epoch, b + 1, loss_sum, seen));
      }
    }
  }
  LATTICE_RETURN_IF_ERROR(dp_.SumEpochLoss(&loss_sum, &seen));
  return seen > 0 ? loss_sum / static_cast<double>(seen) : 0.0;
}

torch::Tensor Trainer::DistillLoss(const torch::Tensor& hard, const torch::Tensor& student,
                                   const torch::Tensor& teacher) const {
  const double t = cfg_.distill->temperature;
  const double alpha = cfg_.distill->alpha;
  // KL(softmax(teacher/T) || softmax(student/T)), mean over the batch; T^2 keeps the soft
  // term's gradients on the scale of the hard term's (Hinton et al., 2015).
  torch::Tensor kl = F::kl_div(F::log_softmax(student / t, 1), F::log_softmax(teacher / t, 1),
                               F::KLDivFuncOptions().reduction(torch::kBatchMean).log_target(true));
  return alpha * hard + (1.0 - alpha) * t * t * kl;
}

bool Trainer::CheckpointDue() const {
  if (!cfg_.checkpoints) return false;
  const int64_t steps = optimizer_->steps();
  const bool by_steps = cfg_.checkpoints->every_steps > 0 &&
                        steps - last_checkpoint_step_ >= cfg_.checkpoints->every_steps;
  const bool by_time =
      cfg_.checkpoints->every_seconds > 0 &&
      std::chrono::duration<double>(std::chrono::steady_clock::now() - last_checkpoint_time_)
              .count() >= cfg_.checkpoints->every_seconds;
  return by_steps || by_time;
}

Status Trainer::Preempt(int epoch, size_t next_batch, double loss_sum, int64_t seen) {
  const int64_t steps = optimizer_->steps();
  std::string what = "preempted in epoch " + std::to_string(epoch) + " at step " +
                     std::to_string(steps);
  if (dp_.sharded()) {
    // Its optimizer state is spread over the members, and a preempted gang's collectives
    // stop at once (comm/relay.h): it resumes from its latest periodic step checkpoint.
    what += " (a sharded gang writes no step checkpoint when preempted)";
  } else if (cfg_.checkpoints && ctx_.on_checkpoint && steps > last_checkpoint_step_) {
    LATTICE_RETURN_IF_ERROR(Snapshot(epoch, next_batch, loss_sum, seen));
    last_checkpoint_step_ = steps;
    what += " (step checkpoint written)";
  }
  LATTICE_RETURN_IF_ERROR(WaitForSnapshot());  // on_checkpoint has run when this returns
  return Status::Cancelled(what);
}

Status Trainer::WaitForSnapshot() {
  if (snapshot_writer_.joinable()) snapshot_writer_.join();
  return snapshot_status_;
}

Status Trainer::Snapshot(int epoch, size_t next_batch, double loss_sum, int64_t seen) {
  LATTICE_RETURN_IF_ERROR(WaitForSnapshot());
  LATTICE_RETURN_IF_ERROR(dp_.GatherOptimizerState(*optimizer_));  // sharded: collective
  if (!ctx_.on_checkpoint) return Status::Ok();  // a gang's member > 0: the gather only
  std::ostringstream rng;
  rng << rng_;
  CheckpointHeader header;
  header.config = config_;
  header.in_dim = data_.x_train.size(1);
  header.classes = data_.num_classes;
  header.epochs = epoch - 1;  // completed epochs
  header.metrics = last_;
  header.resume = {{"step", optimizer_->steps()},
                   {"epoch", epoch},
                   {"batch", next_batch},
                   {"epoch_loss_sum", loss_sum},
                   {"epoch_seen", seen},
                   {"epoch_correct", epoch_correct_},
                   {"rng", rng.str()},
                   {"schedule", schedule_->state().ToJson()},
                   {"last_lr", last_lr_},
                   {"progress", progress_.ToJson()},
                   {"last", last_}};
  if (selected_) {
    header.resume["selected"] = {{"epoch", selection_->epoch()},
                                 {"score", selection_->score()},
                                 {"metrics", selected_->metrics}};
  }
  torch::Tensor order =
      torch::from_blob(order_.data(), {static_cast<int64_t>(order_.size())}, torch::kLong).clone();
  // Building the twin draws initial weights from the generator: its state is put back, so
  // that checkpointing never changes the run's dropout masks.
  internal::KeepCpuGeneratorState generator;
  torch::Tensor torch_rng = generator.state();
  if (!snapshot_model_) snapshot_model_ = model_->Twin();
  snapshot_model_->CopyWeightsFrom(*model_);
  internal::NamedWeights feature_map =
      feature_match_ ? feature_match_->CloneMap() : internal::NamedWeights();
  internal::FlatOptimizer::State optimizer = optimizer_->CopyState();
  const int64_t step = optimizer.step;
  snapshot_status_ = Status::Ok();
  snapshot_writer_ = std::thread([this, header = std::move(header), order = std::move(order),
                                  torch_rng = std::move(torch_rng),
                                  optimizer = std::move(optimizer), selected = selected_,
                                  feature_map = std::move(feature_map), step, epoch]() mutable {
    try {
      std::string bytes = snapshot_model_->Encode(
          header, data_.mean, data_.std,
          [&](torch::serialize::OutputArchive& archive) {
            optimizer.Save(archive);
            archive.write(kOrderKey, order);
            archive.write(kTorchRngKey, torch_rng);
            for (const auto& [name, t] : feature_map) archive.write(kFeatureMapPrefix + name, t);
            if (selected) {
              for (const auto& [name, t] : selected->weights) archive.write(kBestPrefix + name, t);
            }
          });
      ctx_.on_checkpoint(std::move(bytes), step, epoch);
    } catch (const std::exception& e) {
      snapshot_status_ = Status::Internal(std::string("step checkpoint: ") + e.what());
    }
  });
  return Status::Ok();
}

Status Trainer::Restore(const std::string& blob) {
  size_t offset = 0;
  LATTICE_ASSIGN_OR_RETURN(CheckpointHeader header, ReadCheckpointHeader(blob, &offset));
  if (header.resume.is_null()) {
    return Status::InvalidArgument("resume: the checkpoint is a final one, not a step checkpoint");
  }
  // The same run, except that it may be given more (or fewer) epochs.
  nlohmann::json theirs = header.config, ours = config_;
  for (nlohmann::json* c : {&theirs, &ours}) {
    if (c->contains("train")) (*c)["train"].erase("epochs");
  }
  if (theirs != ours) {
    return Status::FailedPrecondition("resume: the checkpoint was written by a different config");
  }
  try {
    const nlohmann::json& r = header.resume;
    torch::serialize::InputArchive archive;  // the state beyond the weights
    model_->Decode(blob, offset, &archive);
    if (feature_match_) {
      internal::NamedWeights map = feature_match_->CloneMap();  // the names
      for (auto& [name, t] : map) archive.read(kFeatureMapPrefix + name, t);
      feature_match_->LoadMap(map);
    }
    LATTICE_RETURN_IF_ERROR(optimizer_->Load(archive));
    torch::Tensor order, torch_rng;
    archive.read(kOrderKey, order);
    archive.read(kTorchRngKey, torch_rng);
    if (order.numel() != static_cast<int64_t>(order_.size())) {
      return Status::FailedPrecondition("resume: the checkpoint's data order has " +
                                        std::to_string(order.numel()) + " rows, the run has " +
                                        std::to_string(order_.size()));
    }
    std::memcpy(order_.data(), order.data_ptr<int64_t>(), order_.size() * sizeof(int64_t));
    {
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(torch_rng);
    }
    std::istringstream rng(r.at("rng").get<std::string>());
    rng >> rng_;
    LATTICE_ASSIGN_OR_RETURN(internal::LrScheduleState schedule,
                             internal::LrScheduleState::FromJson(r.at("schedule")));
    LATTICE_RETURN_IF_ERROR(schedule_->Restore(schedule));
    last_lr_ = r.at("last_lr").get<double>();
    progress_.Restore(r.at("progress"));
    if (r.contains("selected") && selection_) {
      const nlohmann::json& sel = r.at("selected");
      selection_->Restore(sel.at("epoch").get<int>(), sel.at("score").get<double>());
      auto restored = std::make_shared<Selected>();
      restored->metrics = sel.at("metrics").get<std::map<std::string, double>>();
      restored->weights = model_->CloneWeights();  // the names; values read below
      for (auto& [name, t] : restored->weights) {
        torch::Tensor saved;
        archive.read(kBestPrefix + name, saved);
        t = saved.to(device_);
      }
      selected_ = std::move(restored);
    }
    last_ = r.at("last").get<std::map<std::string, double>>();
    start_epoch_ = r.at("epoch").get<int>();
    start_batch_ = r.at("batch").get<size_t>();
    carried_loss_sum_ = r.at("epoch_loss_sum").get<double>();
    carried_seen_ = r.at("epoch_seen").get<int64_t>();
    epoch_correct_ = r.value("epoch_correct", int64_t{0});
    last_checkpoint_step_ = optimizer_->steps();
    order_restored_ = true;
    if (start_batch_ > batches_.size()) {
      return Status::FailedPrecondition("resume: batch " + std::to_string(start_batch_) +
                                        " is past the epoch's " + std::to_string(batches_.size()));
    }
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("resume: bad step checkpoint: ") + e.what());
  }
  return Status::Ok();
}

StatusOr<JobResult> Trainer::Run() {
  JobResult result;
  model_->train();
  std::map<std::string, double>& last = last_;
  std::map<std::string, double> teacher_metrics;
  if (teacher_) {
    internal::EvalResult t = internal::EvaluateLogits(teacher_->val, data_.y_val);
    int64_t student_params = 0;
    for (const auto& p : model_->parameters()) student_params += p.numel();
    teacher_metrics = {{"teacher_val_loss", t.loss},
                       {"teacher_val_accuracy", t.accuracy},
                       {"teacher_params", static_cast<double>(teacher_->params)},
                       {"student_params", static_cast<double>(student_params)}};
  }
  if (!order_restored_) last_lr_ = schedule_->lr();  // as is if an epoch had no step at all
  const bool batchnorm = cfg_.model.batchnorm && cfg_.model.type == ModelType::kMlp;
  LATTICE_RETURN_IF_ERROR(dp_.Start(model_->buffers(), *flat_, *optimizer_, batches_,
                                    {&teacher_batches_, &feature_batches_}, batchnorm ? 2 : 1));
  dp_.DropRestoredEpochSums(&carried_loss_sum_, &carried_seen_);
  result.epochs_done = start_epoch_ - 1;
  int64_t trained_rows = 0;  // per epoch (a skipped 1-row batchnorm batch does not count)
  for (const auto& batch : batches_) trained_rows += batch.first.size(0);
  for (int epoch = start_epoch_; epoch <= cfg_.train.epochs; ++epoch) {
    const auto epoch_start = std::chrono::steady_clock::now();
    LATTICE_ASSIGN_OR_RETURN(double train_loss, TrainEpoch(epoch));
    train_seconds_ +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    LATTICE_RETURN_IF_ERROR(dp_.AverageBuffers(model_->buffers()));
    if (projector_ != nullptr) {  // alignment: its own metrics (jobs/projector_config.h)
      const bool stop = AlignmentEpoch(epoch, train_loss);
      result.epochs_done = epoch;
      if (ctx_.on_epoch) ctx_.on_epoch(epoch, last);
      Select(epoch);
      if (stop) break;
      continue;
    }
    // Gangs: every member gets the same values (Evaluate sums the shards in one order), so
    // early stopping and schedules decide alike.
    LATTICE_ASSIGN_OR_RETURN(
        internal::EvalResult eval,
        internal::Evaluate(dp_, *model_, data_.x_val, data_.y_val, data_.num_classes,
                 teacher_ ? teacher_->val : torch::Tensor(), feature_match_.get(),
                 feature_match_ ? teacher_->features_val : torch::Tensor()));
    schedule_->OnEpochEnd(eval.loss);
    last = {{"train_loss", train_loss},
            {"train_accuracy", static_cast<double>(epoch_correct_) /
                                   static_cast<double>(std::max<int64_t>(trained_rows, 1))},
            {"val_loss", eval.loss},
            {"val_accuracy", eval.accuracy},
            {"val_f1", internal::MakeReport(eval.confusion, data_.num_classes).macro_f1},
            {"lr", last_lr_}};
    if (teacher_) {
      last["agreement"] = eval.agreement;
      if (feature_match_) last["feature_loss"] = eval.feature_loss;
      last.insert(teacher_metrics.begin(), teacher_metrics.end());
    }
    result.epochs_done = epoch;
    if (ctx_.on_epoch) ctx_.on_epoch(epoch, last);
    Select(epoch);
    if (progress_.Record(epoch, eval.loss, eval.accuracy)) break;
  }
  result.metrics = last;
  result.metrics["final_train_loss"] = last["train_loss"];
  result.metrics["final_val_loss"] = last["val_loss"];
  if (projector_ == nullptr) result.metrics["final_val_accuracy"] = last["val_accuracy"];
  if (selected_) {
    result.metrics["selected_epoch"] = selection_->epoch();
    result.metrics["selected_val_loss"] = selected_->metrics.at("val_loss");
    model_->LoadWeights(selected_->weights);  // the final weights from here on
  }
  if (projector_ == nullptr) {
    LATTICE_RETURN_IF_ERROR(AddReports(&result.metrics));
  }
  progress_.Fill(&result.metrics);
  if (projector_ != nullptr) {  // Progress saw siglip_score where a classifier has accuracy
    result.metrics["best_siglip_score"] = result.metrics["best_val_accuracy"];
    result.metrics.erase("best_val_accuracy");
  }
  dp_.Report(&result.metrics, &result.timings);
  result.timings["train_seconds"] = train_seconds_;
  if (train_seconds_ > 0) {
    result.timings["train_samples_per_second"] =
        static_cast<double>(train_samples_) / train_seconds_;
  }
  LATTICE_RETURN_IF_ERROR(WaitForSnapshot());  // every step checkpoint is out before the result
  if (cfg_.train.save_checkpoint) {
    CheckpointHeader header;
    header.config = config_;
    header.in_dim = data_.x_train.size(1);
    header.classes = data_.num_classes;
    header.epochs = result.epochs_done;
    header.metrics = result.metrics;
    if (selected_) {  // the selected epoch's metrics (model_ has its weights)
      for (const auto& [key, value] : selected_->metrics) header.metrics[key] = value;
    }
    model_->to(torch::kCPU);  // training is over; a checkpoint loads anywhere
    result.checkpoint = model_->Encode(header, data_.mean, data_.std);
  }
  return result;
}

Status Trainer::AddReports(std::map<std::string, double>* metrics) {
  LATTICE_ASSIGN_OR_RETURN(internal::EvalResult val,
                           internal::Evaluate(dp_, *model_, data_.x_val, data_.y_val, data_.num_classes));
  internal::AddReport(internal::MakeReport(val.confusion, data_.num_classes), "selected_val",
                      metrics);
  if (!data_.x_test.defined()) return Status::Ok();
  LATTICE_ASSIGN_OR_RETURN(internal::EvalResult test,
                           internal::Evaluate(dp_, *model_, data_.x_test, data_.y_test, data_.num_classes));
  internal::AddReport(internal::MakeReport(test.confusion, data_.num_classes), "test", metrics);
  (*metrics)["test_loss"] = test.loss;
  return Status::Ok();
}

bool Trainer::AlignmentEpoch(int epoch, double train_loss) {
  internal::AlignmentMetrics m =
      internal::EvaluateAlignment(*projector_, data_.x_val, data_.y_val);
  schedule_->OnEpochEnd(m.loss);
  last_ = {{"train_loss", train_loss},
           {"val_loss", m.loss},
           {"siglip_score", m.score},
           {"val_recall_at_1_i2t", m.recall1_i2t},
           {"val_recall_at_5_i2t", m.recall5_i2t},
           {"val_recall_at_1_t2i", m.recall1_t2i},
           {"val_recall_at_5_t2i", m.recall5_t2i},
           {"logit_scale", projector_->logit_scale().exp().item<double>()},
           {"logit_bias", projector_->logit_bias().item<double>()},
           {"lr", last_lr_}};
  return progress_.Record(epoch, m.loss, m.score);
}

void Trainer::Select(int epoch) {
  if (!selection_) return;
  const auto value = last_.find(rule_->metric);
  if (value == last_.end() || !selection_->Offer(epoch, value->second)) return;
  auto selected = std::make_shared<Selected>();
  selected->metrics = last_;
  selected->weights = model_->CloneWeights();
  selected_ = std::move(selected);
}

// The projector of an alignment job (jobs/projector_config.h) for the loaded data.
StatusOr<std::unique_ptr<internal::TrainModel>> MakeAlignmentModel(const JobConfig& cfg,
                                                                   const LoadedDataset& data,
                                                                   const JobContext& ctx,
                                                                   const torch::Device& device) {
  if (ctx.gang != nullptr) {
    return Status::InvalidArgument("alignment: the SigLIP loss pairs every row of a batch with "
                                   "every other: it trains on one worker "
                                   "(resources.workers_per_trial: 1)");
  }
  const FeatureMatrix& f = data.train.features;
  if (f.tokens == 0) {
    return Status::InvalidArgument("dataset: a projector needs token sequences (a 3-D .npy, or "
                                   "idx images with dataset.tokens.patch), got rows of " +
                                   std::to_string(f.cols) + " values");
  }
  for (const std::optional<DatasetPart>* part : {&data.validation, &data.test}) {
    if (*part && ((*part)->features.cols != f.cols || (*part)->features.tokens != f.tokens ||
                  (*part)->targets.cols != data.train.targets.cols)) {
      return Status::InvalidArgument(std::string("dataset.") +
                                     (part == &data.validation ? "validation" : "test") +
                                     ": its tokens or targets differ in shape from the "
                                     "training files'");
    }
  }
  LATTICE_ASSIGN_OR_RETURN(std::unique_ptr<internal::ProjectorModel> projector,
                           internal::MakeProjectorModel(cfg.model, f.tokens, f.cols / f.tokens,
                                                        data.train.targets.cols, device));
  return std::unique_ptr<internal::TrainModel>(std::move(projector));
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
  LATTICE_ASSIGN_OR_RETURN(torch::Device device, internal::JobDevice(ctx.device));
  internal::SetJobThreads(cfg.train.threads.value_or(ctx.num_threads));
  LATTICE_ASSIGN_OR_RETURN(internal::PreparedData prepared,
                           internal::Prepare(*data, cfg.dataset, /*keep_raw=*/cfg.distill.has_value()));
  std::optional<internal::TeacherLogits> teacher;
  if (cfg.distill) {
    std::optional<int64_t> feature_layer;
    if (cfg.distill->feature_match) feature_layer = cfg.distill->feature_match->teacher_layer;
    LATTICE_ASSIGN_OR_RETURN(teacher, internal::ComputeTeacherLogits(
                                          cfg.distill->teacher, prepared.raw_train,
                                          prepared.raw_val, prepared.num_classes, cfg.dataset.scale,
                                          device, ctx.checkpoint, feature_layer));
    prepared.raw_train = prepared.raw_val = torch::Tensor();  // only the teacher reads them
  }
  LATTICE_ASSIGN_OR_RETURN(prepared.class_weights, internal::LossWeights(cfg.train.class_weights, prepared));
  internal::MoveTo(prepared, device);
  // Seeded after the teacher was built (its rebuild draws initial weights), so the student
  // starts exactly as the same model would in a train job.
  torch::manual_seed(cfg.seed);
  const torch::Tensor probe =
      prepared.x_train.narrow(0, 0, std::min<int64_t>(2, prepared.x_train.size(0)));
  std::unique_ptr<internal::TrainModel> model;
  if (cfg.alignment) {
    LATTICE_ASSIGN_OR_RETURN(model, MakeAlignmentModel(cfg, *data, ctx, device));
  } else {
    LATTICE_ASSIGN_OR_RETURN(model, internal::MakeTrainModel(cfg.model, probe.size(1),
                                                             prepared.num_classes, probe, device));
  }
  Trainer trainer(cfg, config, std::move(prepared), device, std::move(teacher), std::move(model),
                  ctx);
  if (ctx.resume_from != nullptr) LATTICE_RETURN_IF_ERROR(trainer.Restore(*ctx.resume_from));
  // `data` stays alive until here: prepared tensors may alias it.
  return trainer.Run();
}

StatusOr<JobResult> RunNoop(const JobConfig& cfg, JobContext& ctx) {
  if (cfg.crash) {
    // O_EXCL: of tasks running at once on several workers, only the one that creates the
    // file crashes.
    const int fd = ::open(cfg.crash->once_file.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
    if (fd >= 0) {
      ::close(fd);
      std::raise(cfg.crash->signal);
    }
  }
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

Status CheckJobDevice(const std::string& device) {
  try {
    return internal::JobDevice(device).status();
  } catch (const std::exception& e) {
    return Status::FailedPrecondition("device " + device + ": " + e.what());
  }
}

StatusOr<JobResult> RunJob(const nlohmann::json& config, JobContext& ctx) {
  LATTICE_ASSIGN_OR_RETURN(JobConfig cfg, ParseJobConfig(config));
  if (cfg.kind == JobKind::kNoop) return RunNoop(cfg, ctx);
  if (cfg.kind == JobKind::kEmbed) return RunEmbed(*cfg.embed, ctx);  // catches its own exceptions
  try {
    if (cfg.model.type == ModelType::kSae) return internal::RunSaeTrain(cfg, config, ctx);
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
