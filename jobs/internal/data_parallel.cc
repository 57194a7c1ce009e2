#include "jobs/internal/data_parallel.h"

#include <chrono>
#include <cstring>
#include <string>

namespace lattice::jobs::internal {

template <typename Op>
Status DataParallel::OnHost(torch::Tensor& t, Op op) {
  if (t.device().is_cpu() || gang_->backend() == "nccl") {
    LATTICE_CHECK(t.is_contiguous());
    return op(t);
  }
  torch::Tensor host = t.to(torch::kCPU).contiguous();
  LATTICE_RETURN_IF_ERROR(op(host));
  t.copy_(host);
  return Status::Ok();
}

Status DataParallel::Start(const std::vector<torch::Tensor>& buffers, FlatParameters& flat,
                           std::vector<std::pair<torch::Tensor, torch::Tensor>>& batches,
                           const std::vector<std::vector<torch::Tensor>*>& companions,
                           int64_t min_rows) {
  if (!active()) return Status::Ok();
  const int64_t m = gang_->rank(), k = gang_->size();
  shares_.clear();
  for (size_t b = 0; b < batches.size(); ++b) {
    const int64_t len = batches[b].first.size(0);
    const int64_t begin = len * m / k, end = len * (m + 1) / k;
    if (end - begin < min_rows) {
      return Status::InvalidArgument(
          "train.batch_size: a batch of " + std::to_string(len) + " rows gives member " +
          std::to_string(m) + " of a gang of " + std::to_string(k) + " " +
          std::to_string(end - begin) + " rows; each needs at least " + std::to_string(min_rows) +
          " (raise train.batch_size or lower resources.workers_per_trial)");
    }
    batches[b].first = batches[b].first.narrow(0, begin, end - begin);
    batches[b].second = batches[b].second.narrow(0, begin, end - begin);
    for (std::vector<torch::Tensor>* c : companions) {
      if (!c->empty()) (*c)[b] = (*c)[b].narrow(0, begin, end - begin);
    }
    shares_.push_back(static_cast<double>(end - begin) / static_cast<double>(len));
  }
  torch::NoGradGuard no_grad;
  torch::Tensor params = flat.params();
  LATTICE_RETURN_IF_ERROR(OnHost(params, [&](torch::Tensor& t) {
    return gang_->Broadcast(t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size(), 0);
  }));
  for (torch::Tensor buffer : buffers) {
    torch::Tensor b = buffer.contiguous();
    LATTICE_RETURN_IF_ERROR(OnHost(b, [&](torch::Tensor& t) {
      return gang_->Broadcast(t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size(), 0);
    }));
    if (!b.is_same(buffer)) buffer.copy_(b);
  }
  return Status::Ok();
}

Status DataParallel::AllreduceGradients(FlatParameters& flat) {
  if (!active()) return Status::Ok();
  const auto start = std::chrono::steady_clock::now();
  torch::Tensor grads = flat.grads();
  Status s = OnHost(grads, [&](torch::Tensor& t) {
    return gang_->Allreduce(t.data_ptr<float>(), static_cast<size_t>(t.numel()),
                            comm::ReduceOp::kSum);
  });
  allreduce_seconds_ +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return s;
}

void DataParallel::Report(std::map<std::string, double>* metrics) const {
  if (!active()) return;
  (*metrics)["gang_size"] = gang_->size();
  (*metrics)["gang_allreduce_seconds"] = allreduce_seconds_;
}

Status DataParallel::AverageBuffers(const std::vector<torch::Tensor>& buffers) {
  if (!active()) return Status::Ok();
  torch::NoGradGuard no_grad;
  for (torch::Tensor buffer : buffers) {
    if (buffer.scalar_type() != torch::kFloat) continue;  // num_batches_tracked: equal anyway
    torch::Tensor b = buffer.contiguous();
    LATTICE_RETURN_IF_ERROR(OnHost(b, [&](torch::Tensor& t) {
      return gang_->Allreduce(t.data_ptr<float>(), static_cast<size_t>(t.numel()),
                              comm::ReduceOp::kMean);
    }));
    if (!b.is_same(buffer)) buffer.copy_(b);
  }
  return Status::Ok();
}

Status DataParallel::SumEpochLoss(double* loss_sum, int64_t* seen) {
  if (!active()) return Status::Ok();
  // Doubles gathered, not reduced in float: the sum keeps double precision.
  std::vector<float> mine(4), all(4 * static_cast<size_t>(gang_->size()));
  std::memcpy(mine.data(), loss_sum, sizeof(double));
  const double rows = static_cast<double>(*seen);
  std::memcpy(mine.data() + 2, &rows, sizeof(double));
  LATTICE_RETURN_IF_ERROR(gang_->Allgather(mine.data(), 4, all.data()));
  double total_loss = 0, total_rows = 0;
  for (int m = 0; m < gang_->size(); ++m) {
    double l = 0, r = 0;
    std::memcpy(&l, all.data() + 4 * m, sizeof(double));
    std::memcpy(&r, all.data() + 4 * m + 2, sizeof(double));
    total_loss += l;
    total_rows += r;
  }
  *loss_sum = total_loss;
  *seen = static_cast<int64_t>(total_rows);
  return Status::Ok();
}

Status DataParallel::ShareValues(double* values, size_t count) {
  if (!active()) return Status::Ok();
  return gang_->Broadcast(values, count * sizeof(double), 0);
}

}  // namespace lattice::jobs::internal
