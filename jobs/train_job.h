// Running one trial's job (library lattice_jobs; this header is torch-free).
//
// RunJob dispatches on config["kind"]:
//   "noop"  — sleeps `sleep_ms` (checking cancellation every 10 ms) and returns no metrics.
//   "embed" — embeds one shard of a corpus and returns the vectors in
//     JobResult::embeddings; see jobs/embed_job.h (RunEmbed) for the contract.
//   "train" — trains a linear / MLP classifier on a dataset (see jobs/train_config.h):
//     1. load the dataset (through ctx.cache when set) and split it: a seeded Fisher-Yates
//        shuffle (dataset.split.seed; stratified and with a test part: MakeDatasetSplit)
//        or the explicit validation (and test) files;
//     2. optionally standardize with mean/std fitted on the training split only;
//     3. seed the torch RNG with config["seed"] (model init, dropout) and shuffle the
//        training rows each epoch with std::mt19937_64(seed);
//     4. per epoch: mini-batch steps (cancellation checked before each), then an eval
//        pass under NoGradGuard; ctx.on_epoch(epoch, {train_loss, train_accuracy, val_loss,
//        val_accuracy, val_f1, lr}) with epoch counted from 1; early stopping if configured.
//        train_accuracy: share of the epoch's training rows whose training-mode logits
//        (dropout, mixup inputs) argmax to their own label; val_f1: macro F1 on validation.
//     Each step: backward; if train.clip_grad_norm is set, scale the gradients to that
//     global L2 norm (FlatParameters::ClipGradNorm, as torch's clip_grad_norm_); set the
//     optimizer's lr from the train.schedule (internal::LrSchedule; constant lr without
//     one) and step. After each eval the schedule sees val_loss (plateau). The cosine
//     schedule spans epochs * (steps per epoch) steps, the run as planned: early stopping
//     ends it before the lr reaches min_lr.
//   Mixup (train.mixup): jobs/internal/mixup.h.
//   Loss: cross-entropy with label smoothing and class weights (train.class_weights,
//   jobs/internal/class_weights.h: inverse frequency on the training split
//   n / (k * count_c), times per-class boosts; or an explicit list). train_loss is the mean training-batch loss of the
//   epoch (with dropout, smoothing and weights); val_loss is the plain unweighted,
//   unsmoothed cross-entropy on the validation split, so trials are comparable.
//   With batchnorm, a final training batch of a single row is skipped (BatchNorm needs 2).
//
// Checkpoint: unless train.checkpoint is false, JobResult::checkpoint holds the final
// weights in the format of jobs/checkpoint.h (header with `config` as given, LibTorch
// archive), which an embed job with encoder {type: trial} loads.
//
// Final weights: those of the last epoch run, unless an epoch is selected:
//   - checkpoint.keep_best >= 1: the best epoch by checkpoint.metric (a per-epoch metric;
//     lower is better for names containing "loss"; ties keep the earlier epoch);
//   - else train.early_stopping: the best by its metric, an improvement exceeding min_delta
//     (the result's best_epoch, as Keras' restore_best_weights).
//   Then the checkpoint holds the selected epoch's parameters and buffers (with the input
//   standardisation, fitted once per run), its header metrics are that epoch's per-epoch
//   metrics over the result's, and the result metrics add selected_epoch,
//   selected_val_loss and selected_val_accuracy (the other result metrics stay as below).
//   The copy of the selected weights travels in step checkpoints (archive keys
//   "resume.best.<name>"), so a resumed run still ends with the same bytes.
//
// Per-epoch metric lr: the learning rate of the epoch's last optimizer step (after warmup
// and decay), so a sweep's curves show the schedule that produced them.
//
// Alignment (config alignment: siglip, jobs/projector_config.h): the model is a projector
//   (jobs/internal/projectors.h), the rows' targets are embeddings instead of labels, the
//   loss is SigLIP's (jobs/internal/siglip.h) and the per-epoch metrics are the alignment
//   ones (siglip_score, recalls, ...); no classification report. One worker only.
//
// "distill" — train with a frozen teacher (jobs/internal/teacher.h; its logits, and its
//   features for feature matching, computed once per run, eval mode); loss = alpha * CE +
//   (1 - alpha) * T^2 * KL(teacher || student). Per-epoch metrics add agreement,
//   teacher_val_loss, teacher_val_accuracy, teacher_params and student_params.
//   Feature matching (distill.feature_match, jobs/internal/feature_match.h): loss +=
//   weight * MSE(map(s), t) with s the student's output at student_layer (with dropout, in
//   training mode) and t the teacher's at teacher_layer; map is the identity for equal
//   widths, else a Linear(S -> T) seeded from `seed` and trained by the same optimizer
//   (with weight decay and clipping). train_loss includes the term; the per-epoch metric
//   feature_loss is the unweighted MSE on the validation rows (eval mode). The map and its
//   optimizer moments are part of step checkpoints (archive keys "resume.feature_map.*",
//   "optimizer.*"), not of the final checkpoint, which holds the plain student.
//
// Classification report: with the final weights (the selected epoch's when one is
// selected), once, after training: the validation split's report under the prefix
// "selected_val" and, when the dataset has a test part, the test part's under "test" plus
// test_loss (jobs/internal/classification_metrics.h: <prefix>_accuracy, <prefix>_f1
// (macro), per class <prefix>_precision_<c>, _recall_<c>, _f1_<c>, _support_<c>, and the
// confusion matrix <prefix>_confusion_<true>_<predicted>). The test part is never seen
// by training, early stopping, the LR schedule or selection.
//
// Result metrics: train_loss, val_loss, val_accuracy, lr (= final epoch's values),
// final_train_loss, final_val_loss, final_val_accuracy, best_val_accuracy (max over
// epochs), best_val_loss (min over epochs), best_epoch (epoch with the best value of the
// early-stopping metric; val_loss when early stopping is off).
//
// Errors: InvalidArgument (bad config, bad dataset files), Cancelled (ctx.cancelled() or
// ctx.preempted() returned true), FailedPrecondition ("epoch 3: training loss is NaN" / "... is Inf"),
// Internal (any LibTorch / std exception, with context). No exception escapes.
//
// Determinism: the same config (incl. seed) and the same thread count give bit-identical
// metrics. Threading: RunJob sets the process-wide intra-op thread count
// (at::set_num_threads) and seeds the process-wide torch RNG, so run at most one train
// job per process at a time. The callbacks are invoked on the calling thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "jobs/dataset.h"

namespace lattice::comm {
class Communicator;  // comm/communicator.h
}  // namespace lattice::comm

namespace lattice::jobs {

class EncoderCache;  // jobs/embed_job.h

struct JobContext {
  // Polled between training batches; returning true stops the job with Cancelled.
  // May be empty (never cancelled).
  std::function<bool()> cancelled;
  // Polled between training batches, before `cancelled`: returning true preempts the job
  // (the worker is draining: the cluster is stopping). A train / distill job with a
  // checkpoint policy first writes a step checkpoint of where it stands (through
  // on_checkpoint, before RunJob returns) unless it has written one at this very step;
  // then it ends with Cancelled "preempted ...". A job resumed from that checkpoint goes
  // on exactly as if it had never stopped. Other jobs just stop (their `cancelled` should
  // say true too). May be empty.
  std::function<bool()> preempted;
  // Called after every epoch with that epoch's metrics. May be empty.
  std::function<void(int epoch, const std::map<std::string, double>& metrics)> on_epoch;
  // Rows processed, added to as the job goes (train / distill: each training batch's
  // samples after its optimizer step; embed: the shard's rows once embedded), for the
  // worker's throughput reports. Not owned; null: not counted.
  std::atomic<int64_t>* processed = nullptr;
  // Shared dataset cache (not owned; must outlive RunJob). Null: load without caching.
  DatasetCache* cache = nullptr;
  // Intra-op threads when the config has no train.threads. Default: 1.
  int num_threads = 1;
  // The device models and batches live on: a torch device string, "cpu" or "cuda:N" (the
  // worker's own GPU). Results (metrics, vectors, checkpoints) always come back on the CPU.
  // Default: "cpu".
  std::string device = "cpu";
  // Step checkpoints (config "checkpoint"): called with each one's bytes (jobs/checkpoint.h,
  // with a "resume" header section), the optimizer steps done and the epoch in progress. The
  // state is copied on the job's thread and serialised, then passed here, on a writer thread
  // while training goes on: one call at a time, in step order, all before RunJob returns.
  // May be empty (no checkpoints are made).
  std::function<void(std::string bytes, int64_t step, int epoch)> on_checkpoint;
  // A step checkpoint of this same config (train.epochs may differ) to continue from: the
  // run goes on exactly as if it had never stopped (on the CPU, with the same threads:
  // bit-identical). Null: start fresh.
  std::shared_ptr<const std::string> resume_from;
  // Loaded TorchScript encoders for embed jobs (not owned; must outlive RunJob).
  // Null: the process-wide EncoderCache::ProcessDefault().
  EncoderCache* encoders = nullptr;
  // The checkpoint of a train trial, by trial id ("s3-t4"), for embed jobs with encoder
  // {type: trial}; returns null when this process does not have it. May be empty.
  std::function<std::shared_ptr<const std::string>(const std::string& trial)> checkpoint;
  // A multi-worker trial: this member's Communicator of the gang (not owned; must outlive
  // RunJob). Train / distill jobs then train data-parallel (jobs/internal/data_parallel.h):
  // every member calls RunJob with the same config, and member 0's results, checkpoints
  // and callbacks are the trial's. Null: one worker.
  comm::Communicator* gang = nullptr;
  // The same gang's communicator for device memory (NCCL, on CUDA workers; not owned):
  // data-parallel training runs the collectives of tensors on the GPU through it, and of
  // host data through `gang`. Null: device tensors go through host memory and `gang`.
  comm::Communicator* gang_device = nullptr;
};

// Checks that this process can run jobs on `device` ("cpu", "cuda:0"): FailedPrecondition
// naming what is missing (a CPU-only LibTorch, no GPU, an ordinal past the device count).
// A worker calls it once at start and exits when it fails.
Status CheckJobDevice(const std::string& device);

// The vectors of one embedded shard: rows [begin, begin + rows) of the corpus.
struct EmbeddingBlock {
  int64_t begin = 0;           // first corpus row of the shard
  int64_t rows = 0;            // number of vectors
  int dim = 0;                 // floats per vector
  std::vector<float> vectors;  // rows * dim, row-major: vector i is corpus row begin + i
  // Per row (metadata[i] is corpus row begin + i), a compact JSON object, or empty (size 0)
  // when the corpus has none. Images corpus: {"path":"/data/imgs/a.png"} (the folder as
  // configured + the file name); idx / npy with corpus "labels": {"label":3}. Set by
  // RunEmbed; EmbedRows leaves it empty.
  std::vector<std::string> metadata;
};

struct JobResult {
  std::map<std::string, double> metrics;
  // Wall-clock figures, not deterministic (so apart from `metrics`, which are): train and
  // distill report train_seconds (time in the training epochs: shuffling, steps, the
  // gang's gradient exchange; not data preparation or evaluation), train_samples_per_second
  // (training rows of the global batches / train_seconds) and, in a gang,
  // gang_allreduce_seconds. The worker reports them among the trial's metrics.
  std::map<std::string, double> timings;
  int epochs_done = 0;
  std::optional<EmbeddingBlock> embeddings;  // set by kind "embed" only
  std::optional<std::string> checkpoint;     // set by kind "train" (jobs/checkpoint.h)
};

StatusOr<JobResult> RunJob(const nlohmann::json& config, JobContext& ctx);

}  // namespace lattice::jobs
