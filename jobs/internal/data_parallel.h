// Data-parallel training over a gang (JobContext::gang; internal to lattice_jobs).
//
// Every member of a multi-worker trial runs the same train / distill job on the whole
// dataset: the same split, the same seeded shuffle, so the same global batches in the same
// order. Per step:
//   1. each member takes its slice of the global batch: rows [len*m/k, len*(m+1)/k) of
//      member m of k (Slice; a slice must hold a row, two with BatchNorm);
//   2. its mean loss is scaled by its share of the batch's rows (Share), so that the sum
//      over members of the scaled gradients is the gradient of the global batch's mean
//      loss (exact for the plain and smoothed cross-entropy, distillation's KL and feature
//      matching; with class weights each slice's weighted mean is weighted by its rows,
//      not by its weight sum: the same expectation, not the same bits);
//   3. the flat gradient buffer (FlatParameters) is summed over the members
//      (ExchangeGradients), and the optimizer step follows in one of two ways:
//      - sharded (ZeRO stage 1; CPU gangs, whose buffers live in the relay's workspace):
//        the buffers are padded to k equal shards; a reduce-scatter leaves member m the sum
//        of shard m only, m steps the optimizer on shard m of the parameters and of the
//        moments, and an allgather of the parameters (GatherParameters) gives every member
//        every shard. The same bytes cross as with an allreduce (which is a reduce-scatter
//        and an allgather), but each member runs 1/k of the optimizer step. Gradient
//        clipping sums the shards' squared norms over the members (ClipGradNorm). The
//        moments of the other shards are stale, so a step checkpoint first gathers them
//        (GatherOptimizerState), and with a time-based policy members agree every step on
//        whether one is due (AnyMember), so that all of them checkpoint at the same step.
//      - replicated (GPU gangs, or buffers that do not fit the workspace): one allreduce;
//        clipping and the whole optimizer step then run on identical gradients on every
//        member. Either way the parameters are identical on every member after a step.
// At the start member 0's parameters and buffers are broadcast (Start), after a resume too
// (every member got the same checkpoint; the broadcast makes it certain). BatchNorm: each
// member normalises with its slice's statistics (as DDP without SyncBatchNorm); the
// running statistics are averaged over the members before every evaluation
// (AverageBuffers), so that every member evaluates and member 0 saves the same model.
// Evaluation is sharded: member m evaluates rows [n*m/k, n*(m+1)/k) of the n (EvalRows)
// and the partial sums (loss, correct rows, confusion counts) are summed over the members
// in member order (SumOverMembers, in double), so every member gets the same values, and
// the same counts as one worker (the loss differs from one worker's by float summation
// order). The epoch's training loss is summed the same way (SumEpochLoss), so early
// stopping, plateau schedules and the selected epoch decide alike everywhere. Member 0
// alone reports and checkpoints (the worker drops the others' reports); nothing here is
// collective except these calls, which every member makes at the same points.
//
// Buffers: with a CPU model the flat gradient and parameter buffers live in the
// communicator's Workspace when it has one (BufferMemory: the relay's shared memory), so
// the per-step collectives copy nothing in or out. One exchange after backward, no buckets
// overlapping the backward pass: on CPU workers the backward pass already keeps every core
// busy (docs/BENCHMARKS.md, "Multi-worker trials").
// Tensors on a GPU go through the device communicator (NCCL) when the worker has one,
// through host memory and the host communicator otherwise; host data (the sums) always
// goes through the host communicator.
// Errors: the communicator's (a gang member gone: Cancelled once the worker cancels).
// Without a communicator (a one-worker trial) every call is a no-op and Share() is 1.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "comm/communicator.h"
#include "common/status.h"
#include "jobs/internal/flat_optimizer.h"

namespace lattice::jobs::internal {

class DataParallel {
 public:
  // `gang`: host memory (the relay); `device_gang` (may be null): device memory (NCCL).
  DataParallel(comm::Communicator* gang, comm::Communicator* device_gang)
      : gang_(gang), device_gang_(device_gang) {}

  bool active() const { return gang_ != nullptr && gang_->size() > 1; }

  // Cuts every batch (and the per-batch tensors in `companions`, same rows) to this
  // member's slice, then broadcasts member 0's parameters and `buffers` (the model's), and
  // shards `optimizer` when flat's buffers are the communicator's (FlatParameters::
  // borrowed). `min_rows`: rows a slice needs (2 with BatchNorm); InvalidArgument naming
  // train.batch_size otherwise.
  Status Start(const std::vector<torch::Tensor>& buffers, FlatParameters& flat,
               FlatOptimizer& optimizer,
               std::vector<std::pair<torch::Tensor, torch::Tensor>>& batches,
               const std::vector<std::vector<torch::Tensor>*>& companions, int64_t min_rows);
  // Whether the optimizer step is sharded (decided by Start).
  bool sharded() const { return sharded_; }
  // After a resume every member restored member 0's partial sums of the interrupted epoch
  // (a step checkpoint is member 0's): the others drop them, so the epoch's train_loss
  // covers member 0's rows before the checkpoint and everyone's after it (the weights are
  // exact either way).
  void DropRestoredEpochSums(double* loss_sum, int64_t* seen) const {
    if (active() && gang_->rank() != 0) *loss_sum = 0, *seen = 0;
  }
  // This member's rows of batch `b` / the batch's rows.
  double Share(size_t b) const { return active() ? shares_[b] : 1.0; }
  // For FlatParameters: padding to k shards, and the communicator's workspace (nullptr
  // when it has none that large); nothing for one worker.
  FlatMemory BufferMemory() {
    if (!active()) return {};
    return {gang_->size(), [this](int64_t numel) {
              return gang_->Workspace(static_cast<size_t>(numel));
            }};
  }
  // After backward: the gradients summed over the members (sharded: this member's shard,
  // which the optimizer reads), timed into gang_allreduce_seconds.
  Status ExchangeGradients(FlatParameters& flat);
  // FlatParameters::ClipGradNorm over the gang's summed gradients (sharded: the shards'
  // squared norms summed over the members).
  Status ClipGradNorm(FlatParameters& flat, double max_norm);
  // After the optimizer step, sharded: every member's shard of the parameters to every
  // member (timed with the exchange). A no-op otherwise.
  Status GatherParameters(FlatParameters& flat);
  // Sharded: every member's shard of the optimizer's moments to every member, before a
  // checkpoint copies them. A no-op otherwise.
  Status GatherOptimizerState(const FlatOptimizer& optimizer);
  // Sharded: whether `mine` is true on any member (collective). Otherwise `mine`: each
  // member decides alone.
  StatusOr<bool> AnyMember(bool mine);
  Status AverageBuffers(const std::vector<torch::Tensor>& buffers);
  Status SumEpochLoss(double* loss_sum, int64_t* seen);
  // This member's shard [first, second) of `n` evaluation rows (all of them for one worker).
  std::pair<int64_t, int64_t> EvalRows(int64_t n) const {
    if (!active()) return {0, n};
    const int64_t m = gang_->rank(), k = gang_->size();
    return {n * m / k, n * (m + 1) / k};
  }
  // values[i] becomes the sum of values[i] over the members, added in member order in
  // double (the same bits on every member).
  Status SumOverMembers(double* values, size_t count);
  // Gang trials' result metrics: gang_size, gang_optimizer_shards (k when the optimizer
  // step was sharded, else 1); timings: gang_allreduce_seconds (this member's
  // wall time in the per-step gradient exchange, relay included: its share of the training
  // time is what the data plane costs).
  void Report(std::map<std::string, double>* metrics,
              std::map<std::string, double>* timings) const;

 private:
  // Runs `op(communicator, tensor)` on the float data of `t`: with the device communicator
  // on a GPU tensor when there is one, else with the host one (through a host copy when
  // `t` is not on the CPU), writing the result back.
  template <typename Op>
  Status Collective(torch::Tensor& t, Op op);

  comm::Communicator* gang_;
  comm::Communicator* device_gang_;
  std::vector<double> shares_;
  double allreduce_seconds_ = 0;
  bool sharded_ = false;
  int64_t shard_ = 0;  // floats per shard (the padded buffers hold k of them)
};

}  // namespace lattice::jobs::internal
