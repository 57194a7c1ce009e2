// Parsed, typed form of a job config (torch-free; library lattice_jobs_config).
//
// ParseJobConfig turns the JSON trial config described in jobs/job_config.h into the
// structs below, filling every default and rejecting unknown keys, wrong types and bad
// ranges with InvalidArgument naming the key path ("train.lr: must be > 0, got -1").
// It does NOT touch the file system; ValidateJobConfig adds the file-existence checks.
//
// Schema (every key optional unless marked):
//   kind: "train" | "distill" | "noop" | "embed" (required; embed: jobs/embed_config.h)
//   seed: int >= 0 (default 0)    name: string (ignored)
//   noop:  sleep_ms: int >= 0 (default 0)
//          crash: {signal: SIGSEGV|SIGABRT|SIGKILL = SIGSEGV, once_file: path (required)}
//            fault injection for tests of task isolation: when once_file does not exist the
//            task creates it and kills its own process with the signal (so the next attempt
//            of the trial runs normally)
//   dataset (required for train):
//     {features: f.npy, labels: l.npy}                 format npy (default when features given)
//     {format: idx, images: f[.gz], labels: l[.gz]}    MNIST idx3 / idx1
//     {format: csv, path: f.csv[.gz], label_column: -1 (last), header: false}
//     split: {validation_fraction: (0,1) = 0.2, seed: int = 42, stratify: bool = false,
//             train_per_class: int >= 1 (optional), test_fraction: [0,1) = 0}
//       (jobs/internal/stratified_split.h): test_fraction of the rows (of each class when
//       stratified) are the test part; then train_per_class rows of each class train and
//       the rest validate, or validation_fraction of all rows (of each class) validate.
//       train_per_class implies stratify and excludes validation_fraction.
//       OR validation: {the file keys of the format}   explicit validation files
//     test: {the file keys of the format}   explicit test files (not with test_fraction)
//       The test part never drives early stopping or selection: it is evaluated once, with
//       the final (selected) weights (jobs/train_job.h, "Classification report").
//     standardize: bool = false    scale: number (multiplies features)    limit: int >= 1
//     classes: [int >= 0, ...] (optional): keep only rows with these labels, relabelled by
//       position ([0, 6, 9] -> 0, 1, 2), in every part (jobs/internal/class_subset.h)
//     rows_per_class: [int >= 1, ...] (optional, needs classes, one per class): keep the
//       first N rows of each class of the training file (after limit)
//     Relative paths resolve against the current working directory of the process that
//     reads them (the coordinator at submit time, the worker at run time).
//   model: {type: linear|mlp = mlp, hidden: int | [int] = [256], batchnorm: false,
//           dropout: [0,1) = 0, activation: relu|gelu|tanh = relu}
//        | {type: torchscript, path: m.pt (required), input_shape: [int >= 1] (optional)}
//           the user's TorchScript module (torch.jit.script(model).save("m.pt")), its
//           parameters trained in place (jobs/internal/torchscript_model.h): forward gets the
//           prepared rows as [B, cols] (or reshaped to [B, *input_shape]) and returns the
//           logits [B, classes]. It has no hidden layers to name: as a feature-matching
//           student only its output (student_layer -1) can be matched. The other model keys
//           are rejected with it (a sweep over model.type keeps them out of the base).
//   train: {epochs: >=1 = 10, batch_size: >=1 = 32, lr: >0 = 1e-3,
//           optimizer: adamw|adam|sgd = adamw, weight_decay: >=0 = 0,
//           momentum: [0,1) = 0.9 (sgd only), label_smoothing: [0,1) = 0,
//           class_weights: none|inverse_frequency = none
//                          | {inverse_frequency: true, boost: {<class>: factor > 0}}
//                          | [w_0, w_1, ...] (one weight > 0 per class)
//                          (jobs/internal/class_weights.h),
//           mixup: {alpha: > 0 (required), until: (0,1] = 1} (optional; jobs/internal/mixup.h:
//                  mix each training batch with a shuffled copy of itself, lambda ~
//                  Beta(alpha, alpha), during the first `until` share of the epochs),
//           early_stopping: {patience: >=1 (required), metric: val_loss|val_accuracy,
//                            min_delta: >=0 = 0}
//                           (also makes the final weights those of the best epoch, below),
//           threads: >=1 (intra-op threads; default: JobContext::num_threads),
//           checkpoint: bool = true (keep the final weights: JobResult::checkpoint; with
//                       checkpoint.keep_best >= 1 or early_stopping, those of the best epoch:
//                       see "Final weights" in jobs/train_job.h),
//           clip_grad_norm: >0 (optional; clip the global L2 norm of all gradients to this
//                           value before every optimizer step),
//           schedule: (optional; none = constant lr) the learning-rate schedule, see
//                     jobs/internal/lr_schedule.h for the exact formulas:
//             {type: step|cosine|plateau (required), warmup_steps: >=0 = 0,
//              step:    step_size: >=1 (required), gamma: (0,1] = 0.1
//                       (lr * gamma^floor(epoch / step_size), epochs from 0),
//              cosine:  min_lr: [0, lr] = 0 (cosine from lr to min_lr over the optimizer
//                       steps of the whole run after the warmup),
//              plateau: patience: >=0 = 10, factor: (0,1) = 0.1, min_lr: [0, lr] = 0
//                       (ReduceLROnPlateau, mode min on val_loss)}
//             A key of another type ("gamma" with type cosine) is rejected, so a sweep over
//             train.schedule.type must keep type-specific keys out of the base config.}
//   distill: dataset, model (the student), train as for train, plus (loss = alpha *
//     CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T)))
//     teacher (required): {type: trial, trial: s3-t4}    a finished train (or distill) trial's
//                           checkpoint: its own input preparation, its logits; a sweep id or
//                           name means its best trial (the coordinator resolves it at submit)
//                       | {type: torchscript, path: t.pt, input_shape: [1, 28, 28]}
//                           fed the rows as loaded (after dataset.scale, before
//                           standardisation); its output [B, classes] are the logits
//     distill: {temperature: > 0 = 4, alpha: [0, 1] = 0.5,
//               feature_match: (optional; teacher {type: trial} only)
//                 {teacher_layer: int (required), student_layer: int (required),
//                  weight: > 0 = 1.0}}
//       Layers are counted as jobs::ResolveLayer's (jobs/checkpoint.h: 0 = the input,
//       1..H = after hidden block i, -1 = the logits, -2 = the last hidden block, ...);
//       student_layer may not be the student's input (0). loss += weight * MSE(map(s), t),
//       s the student's output at student_layer, t the teacher's at teacher_layer (fixed):
//       map is the identity when the widths are equal, else a learned linear map (student
//       width -> teacher width) trained with the student by the same optimizer and kept
//       out of the final checkpoint (jobs/train_job.h, "Feature matching").
//   alignment: siglip (train; optional): train a projector (model.type linear|mlp2|
//     c_abstractor|perceiver, keys queries, depth, width, heads, output_dim) on token data
//     (dataset.features 3-D .npy, or idx images with dataset.tokens: {patch: P}) against
//     paired target embeddings (dataset.targets: t.npy, also in validation / test) with the
//     SigLIP loss: jobs/projector_config.h, jobs/token_data.h.
//   checkpoint (train, distill; optional): {every_steps: >=1, every_seconds: >0 (at least one
//     of them), keep_last: >=1 = 2, keep_best: >=0 = 0, metric: string = val_loss}
//     With keep_best >= 1, metric must be a per-epoch metric of the job (train_loss, val_loss,
//     val_accuracy, lr; distill also agreement, teacher_*, student_params and, with
//     distill.feature_match, feature_loss), and it also picks the epoch whose weights are the
//     final checkpoint's (lower is better for names containing "loss"; jobs/train_job.h).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/job_kind.h"
#include "common/status.h"
#include "jobs/sae_config.h"

namespace lattice::jobs {

enum class DatasetFormat { kNpy, kIdx, kCsv };

// The files of one part (training or validation) of a dataset.
// npy: features + labels; idx: images (in `features`) + labels; csv: path (in `features`).
struct DatasetFiles {
  std::string features;
  std::string labels;   // empty for csv; may be empty when `targets` is given
  std::string targets;  // paired target embeddings N x Dt (.npy; jobs/token_data.h); or empty
};

struct DatasetConfig {
  DatasetFormat format = DatasetFormat::kNpy;
  DatasetFiles train;
  std::optional<DatasetFiles> validation;  // explicit validation files; else a split
  std::optional<DatasetFiles> test;        // explicit test files; else test_fraction
  int label_column = -1;                   // csv: column index, negative counts from the end
  bool header = false;                     // csv: skip the first line
  double validation_fraction = 0.2;        // split: share of rows held out, (0, 1)
  uint64_t split_seed = 42;                // split: shuffle seed
  bool stratify = false;                   // split: per class (implied by train_per_class)
  std::optional<int64_t> train_per_class;  // split: training rows of each class
  double test_fraction = 0.0;              // split: share of rows held out as test, [0, 1)
  bool standardize = false;                // fit mean/std on the training split only
  std::optional<double> scale;             // features *= scale after loading
  std::optional<int64_t> limit;            // keep only the first N rows of each file
  std::vector<int64_t> classes;            // keep these labels (relabelled 0..k-1); empty: all
  std::vector<int64_t> rows_per_class;     // training file: first N rows of each class
  // {activations: <name>} (jobs/activation_dataset.h): an embed job's activation dataset
  // instead of files; `activations_source` is its embed sweep's id, which the coordinator
  // writes into the trial's config at submit ("source").
  std::string activations;
  std::string activations_source;
  int64_t patch = 0;  // tokens: {patch: P}: idx images as P x P patch tokens; 0: none

  // Key of the loaded (scaled, limited) data: equal keys load identical data.
  // Excludes the split and standardization, which are applied per trial.
  std::string CacheKey() const;
};

// kMlp2, kCAbstractor, kPerceiver (and kLinear in an alignment job): the projectors of
// jobs/projector_config.h.
enum class ModelType { kLinear, kMlp, kTorchScript, kMlp2, kCAbstractor, kPerceiver, kSae };
enum class Activation { kRelu, kGelu, kTanh };

struct ModelConfig {
  ModelType type = ModelType::kMlp;
  std::vector<int64_t> hidden = {256};  // widths of the hidden layers (mlp only)
  bool batchnorm = false;
  double dropout = 0.0;
  Activation activation = Activation::kRelu;
  std::string path;                  // torchscript: the module file
  std::vector<int64_t> input_shape;  // torchscript: per-row input shape; empty = [cols]
  SaeConfig sae;                     // sae only (jobs/sae_config.h)
  // Projectors (alignment jobs; jobs/projector_config.h); 0 = that type's default.
  int64_t queries = 0;     // M output tokens (c_abstractor, perceiver)
  int64_t depth = 0;       // ResNet blocks per stage (c_abstractor), layers (perceiver)
  int64_t width = 0;       // hidden width (mlp2, c_abstractor, perceiver)
  int64_t heads = 4;       // attention heads (perceiver)
  int64_t output_dim = 0;  // Dt; must equal the targets' width (0: take it from them)

  // Number of hidden blocks (0 for a linear model and a TorchScript one: its layers are
  // not visible, only its input (0) and output (1)).
  int64_t HiddenLayers() const {
    return type == ModelType::kMlp ? static_cast<int64_t>(hidden.size()) : 0;
  }
};

enum class OptimizerType { kAdamW, kAdam, kSgd };
enum class EarlyStoppingMetric { kValLoss, kValAccuracy };

struct EarlyStoppingConfig {
  int64_t patience = 1;  // epochs without improvement before stopping
  EarlyStoppingMetric metric = EarlyStoppingMetric::kValLoss;
  double min_delta = 0.0;  // an improvement must exceed this
};

enum class LrScheduleType { kStep, kCosine, kPlateau };

// train.schedule; the semantics of each field are in jobs/internal/lr_schedule.h.
struct LrScheduleConfig {
  LrScheduleType type = LrScheduleType::kStep;
  int64_t warmup_steps = 0;  // linear warmup over the first optimizer steps; 0: none
  int64_t step_size = 1;     // step: epochs between decays
  double gamma = 0.1;        // step: decay factor, (0, 1]
  int64_t patience = 10;     // plateau: epochs without improvement tolerated
  double factor = 0.1;       // plateau: lr *= factor on a plateau, (0, 1)
  double min_lr = 0.0;       // cosine: final lr; plateau: floor
};

// train.class_weights (jobs/internal/class_weights.h). Empty: no weights.
struct ClassWeightsConfig {
  bool inverse_frequency = false;
  std::map<int64_t, double> boost;  // class -> multiplier of its inverse-frequency weight
  std::vector<double> weights;      // explicit, one per class (not with inverse_frequency)

  bool empty() const { return !inverse_frequency && weights.empty(); }
};

// train.mixup (jobs/internal/mixup.h).
struct MixupConfig {
  double alpha = 0.2;  // lambda ~ Beta(alpha, alpha)
  double until = 1.0;  // share of train.epochs (from the start) that mix, (0, 1]
};

struct TrainConfig {
  int64_t epochs = 10;
  int64_t batch_size = 32;
  double lr = 1e-3;
  OptimizerType optimizer = OptimizerType::kAdamW;
  double weight_decay = 0.0;
  double momentum = 0.9;  // sgd only
  double label_smoothing = 0.0;
  ClassWeightsConfig class_weights;
  std::optional<MixupConfig> mixup;
  std::optional<EarlyStoppingConfig> early_stopping;
  std::optional<int> threads;  // unset: use JobContext::num_threads
  bool save_checkpoint = true;  // "checkpoint": return the final weights
  std::optional<double> clip_grad_norm;     // max global gradient L2 norm; unset: no clipping
  std::optional<LrScheduleConfig> schedule;  // unset: constant lr
  std::optional<double> l1_coefficient;      // model type sae only (or model.l1_coefficient)
};

// When a train / distill run writes step checkpoints (top-level "checkpoint" key). The
// keep_* fields are the coordinator's retention policy; jobs only check them.
struct CheckpointPolicy {
  int64_t every_steps = 0;     // after every N optimizer steps; 0 = not by steps
  double every_seconds = 0;    // after a step once this much time passed; 0 = not by time
  int64_t keep_last = 2;       // the newest N are kept
  int64_t keep_best = 0;       // plus the best N by `metric`
  std::string metric = "val_loss";  // lower is better for *loss*, higher otherwise

  bool LowerIsBetter() const { return metric.find("loss") != std::string::npos; }
};

struct EmbedConfig;  // jobs/embed_config.h

enum class AlignmentType { kSiglip };

// The frozen teacher of a distill job (eval mode, no autograd).
struct TeacherConfig {
  enum class Type { kTrial, kTorchScript };
  Type type = Type::kTrial;
  std::string trial;                 // kTrial: the trial id; bytes via JobContext::checkpoint
  std::string path;                  // kTorchScript: the module file
  std::vector<int64_t> input_shape;  // kTorchScript: per-row input shape; empty = [cols]
};

// distill.feature_match: the student's features at one layer pulled towards the teacher's.
struct FeatureMatchConfig {
  int64_t teacher_layer = -2;  // as in jobs::ResolveLayer, of the teacher's network
  int64_t student_layer = -2;  // of the student's; never resolves to 0 (the input)
  double weight = 1.0;         // of the MSE term in the loss, > 0
};

struct DistillConfig {
  TeacherConfig teacher;
  double temperature = 4.0;  // T: softens both distributions
  double alpha = 0.5;        // weight of the hard-label cross-entropy
  std::optional<FeatureMatchConfig> feature_match;  // teacher kTrial only
};

// noop's fault injection (see the schema above).
struct NoopCrash {
  int signal = 0;
  std::string once_file;
};

struct JobConfig {
  JobKind kind = JobKind::kTrain;
  uint64_t seed = 0;
  int64_t sleep_ms = 0;  // noop only
  std::optional<NoopCrash> crash;  // noop only
  DatasetConfig dataset;  // train, distill
  ModelConfig model;      // train, distill (the student)
  TrainConfig train;      // train only
  std::optional<DistillConfig> distill;  // distill only (then dataset/model/train as train)
  std::optional<CheckpointPolicy> checkpoints;  // train, distill: step checkpoints
  std::shared_ptr<const EmbedConfig> embed;  // embed only (set iff kind == kEmbed)
  // train only: `alignment: siglip` trains a projector against paired target embeddings
  // (jobs/projector_config.h) instead of a classifier against labels.
  std::optional<AlignmentType> alignment;
};

// Parses and range-checks `config` (no file-system access). Errors: InvalidArgument.
StatusOr<JobConfig> ParseJobConfig(const nlohmann::json& config);

// The per-epoch metrics a train / distill job reports (jobs/train_job.h; empty for other
// kinds), in a fixed order.
std::vector<std::string> PerEpochMetricNames(const JobConfig& config);
// The result metrics of such a job a sweep can rank its trials by: the per-epoch ones
// (their final values), final_*, best_*, and selected_* (the final weights' validation
// metrics; selected_epoch and selected_val_loss only when an epoch is selected). Test
// metrics are left out on purpose: choosing by them would leak the test part.
std::vector<std::string> ResultMetricNames(const JobConfig& config);
// "a, b, c".
std::string JoinNames(const std::vector<std::string>& names);

// Parses a job config's "checkpoint" section (the coordinator reads retention from it).
StatusOr<CheckpointPolicy> ParseCheckpointPolicy(const nlohmann::json& policy);

// Parses just a "dataset" section; `path` prefixes error messages ("dataset").
StatusOr<DatasetConfig> ParseDatasetConfig(const nlohmann::json& dataset,
                                           const std::string& path = "dataset");

// Checks that every file named by `dataset` exists and is a regular file.
// Error: InvalidArgument "dataset.features: file not found: x.npy".
Status CheckDatasetFilesExist(const DatasetConfig& dataset, const std::string& path = "dataset");

// The JSON key name of each file for the format: {"features","labels"}, {"images","labels"}
// or {"path", ""}.
std::pair<const char*, const char*> DatasetFileKeys(DatasetFormat format);

}  // namespace lattice::jobs
