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
//   3. one allreduce (sum) of the flat gradient buffer (FlatParameters) per step
//      (AllreduceGradients); clipping and the optimizer step then run on identical
//      gradients, so the parameters stay identical on every member without being sent.
// At the start member 0's parameters and buffers are broadcast (Start), after a resume too
// (every member got the same checkpoint; the broadcast makes it certain). BatchNorm: each
// member normalises with its slice's statistics (as DDP without SyncBatchNorm); the
// running statistics are averaged over the members before every evaluation
// (AverageBuffers), so that every member evaluates and member 0 saves the same model. The
// epoch's training loss is summed over the members (SumEpochLoss) and the evaluation's
// values are member 0's (ShareValues), so early stopping, plateau schedules and the
// selected epoch decide alike everywhere. Member 0 alone reports and checkpoints (the
// worker drops the others' reports); nothing here is collective except these calls,
// which every member makes at the same points.
//
// Tensors on a GPU go through host memory unless the communicator is NCCL's.
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
  explicit DataParallel(comm::Communicator* gang) : gang_(gang) {}

  bool active() const { return gang_ != nullptr && gang_->size() > 1; }

  // Cuts every batch (and the per-batch tensors in `companions`, same rows) to this
  // member's slice, then broadcasts member 0's parameters and `buffers` (the model's). `min_rows`: rows a
  // slice needs (2 with BatchNorm); InvalidArgument naming train.batch_size otherwise.
  Status Start(const std::vector<torch::Tensor>& buffers, FlatParameters& flat,
               std::vector<std::pair<torch::Tensor, torch::Tensor>>& batches,
               const std::vector<std::vector<torch::Tensor>*>& companions, int64_t min_rows);
  // After a resume every member restored member 0's partial sums of the interrupted epoch
  // (a step checkpoint is member 0's): the others drop them, so the epoch's train_loss
  // covers member 0's rows before the checkpoint and everyone's after it (the weights are
  // exact either way).
  void DropRestoredEpochSums(double* loss_sum, int64_t* seen) const {
    if (active() && gang_->rank() != 0) *loss_sum = 0, *seen = 0;
  }
  // This member's rows of batch `b` / the batch's rows.
  double Share(size_t b) const { return active() ? shares_[b] : 1.0; }
  Status AllreduceGradients(FlatParameters& flat);
  Status AverageBuffers(const std::vector<torch::Tensor>& buffers);
  Status SumEpochLoss(double* loss_sum, int64_t* seen);
  Status ShareValues(double* values, size_t count);
  // Gang trials' result metrics: gang_size and gang_allreduce_seconds (this member's wall
  // time in the gradient allreduces, relay included: its share of the run is what the
  // data plane costs).
  void Report(std::map<std::string, double>* metrics) const;

 private:
  // Runs `op` on the float data of `t` (through a host copy when `t` is not on the CPU and
  // the backend is not NCCL), writing the result back.
  template <typename Op>
  Status OnHost(torch::Tensor& t, Op op);

  comm::Communicator* gang_;
  std::vector<double> shares_;
  double allreduce_seconds_ = 0;
};

}  // namespace lattice::jobs::internal
