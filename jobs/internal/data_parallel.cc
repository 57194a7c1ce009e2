#include "jobs/internal/data_parallel.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <string>

namespace lattice::jobs::internal {

template <typename Op>
Status DataParallel::Collective(torch::Tensor& t, Op op) {
  if (t.device().is_cpu() || (t.device().is_cuda() && device_gang_ != nullptr)) {
    LATTICE_CHECK(t.is_contiguous());
    return op(t.device().is_cpu() ? *gang_ : *device_gang_, t);
  }
  torch::Tensor host = t.to(torch::kCPU).contiguous();
  LATTICE_RETURN_IF_ERROR(op(*gang_, host));
  t.copy_(host);
  return Status::Ok();
}

Status DataParallel::Start(const std::vector<torch::Tensor>& buffers, FlatParameters& flat,
                           FlatOptimizer& optimizer,
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
  sharded_ = flat.borrowed();
  if (sharded_) {
    shard_ = flat.padded_params().numel() / k;
    optimizer.Shard(m * shard_, shard_, flat.padded_grads().narrow(0, 0, shard_));
  }
  torch::NoGradGuard no_grad;
  torch::Tensor params = flat.params();
  LATTICE_RETURN_IF_ERROR(Collective(params, [&](comm::Communicator& c, torch::Tensor& t) {
    return c.Broadcast(t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size(), 0);
  }));
  for (torch::Tensor buffer : buffers) {
    torch::Tensor b = buffer.contiguous();
    LATTICE_RETURN_IF_ERROR(Collective(b, [&](comm::Communicator& c, torch::Tensor& t) {
      return c.Broadcast(t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size(), 0);
    }));
    if (!b.is_same(buffer)) buffer.copy_(b);
  }
  return Status::Ok();
}

Status DataParallel::ExchangeGradients(FlatParameters& flat) {
  if (!active()) return Status::Ok();
  const auto start = std::chrono::steady_clock::now();
  Status s;
  if (sharded_) {
    s = gang_->ReduceScatter(flat.padded_grads().data_ptr<float>(), static_cast<size_t>(shard_),
                             comm::ReduceOp::kSum);
  } else {
    torch::Tensor grads = flat.grads();
    s = Collective(grads, [&](comm::Communicator& c, torch::Tensor& t) {
      return c.Allreduce(t.data_ptr<float>(), static_cast<size_t>(t.numel()),
                         comm::ReduceOp::kSum);
    });
  }
  allreduce_seconds_ +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return s;
}

Status DataParallel::ClipGradNorm(FlatParameters& flat, double max_norm) {
  if (!sharded_) {
    flat.ClipGradNorm(max_norm);
    return Status::Ok();
  }
  torch::NoGradGuard no_grad;
  torch::Tensor shard = flat.padded_grads().narrow(0, 0, shard_);
  const double mine = shard.norm().item<double>();
  double squares = mine * mine;
  LATTICE_RETURN_IF_ERROR(SumOverMembers(&squares, 1));
  FlatParameters::ScaleToMaxNorm(shard, std::sqrt(squares), max_norm);
  return Status::Ok();
}

Status DataParallel::GatherParameters(FlatParameters& flat) {
  if (!sharded_) return Status::Ok();
  const auto start = std::chrono::steady_clock::now();
  float* params = flat.padded_params().data_ptr<float>();
  Status s = gang_->Allgather(params + gang_->rank() * shard_, static_cast<size_t>(shard_), params);
  allreduce_seconds_ +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return s;
}

Status DataParallel::GatherOptimizerState(const FlatOptimizer& optimizer) {
  if (!sharded_) return Status::Ok();
  for (const torch::Tensor& buffer : optimizer.StateBuffers()) {
    float* data = buffer.data_ptr<float>();
    for (int m = 0; m < gang_->size(); ++m) {
      LATTICE_RETURN_IF_ERROR(
          gang_->Broadcast(data + m * shard_, static_cast<size_t>(shard_) * sizeof(float), m));
    }
  }
  return Status::Ok();
}

StatusOr<bool> DataParallel::AnyMember(bool mine) {
  if (!sharded_) return mine;
  double votes = mine ? 1 : 0;
  LATTICE_RETURN_IF_ERROR(SumOverMembers(&votes, 1));
  return votes > 0;
}

void DataParallel::Report(std::map<std::string, double>* metrics,
                          std::map<std::string, double>* timings) const {
  if (!active()) return;
  (*metrics)["gang_size"] = gang_->size();
  (*metrics)["gang_optimizer_shards"] = sharded_ ? gang_->size() : 1;
  (*timings)["gang_allreduce_seconds"] = allreduce_seconds_;
}

Status DataParallel::AverageBuffers(const std::vector<torch::Tensor>& buffers) {
  if (!active()) return Status::Ok();
  torch::NoGradGuard no_grad;
  for (torch::Tensor buffer : buffers) {
    if (buffer.scalar_type() != torch::kFloat) continue;  // num_batches_tracked: equal anyway
    torch::Tensor b = buffer.contiguous();
    LATTICE_RETURN_IF_ERROR(Collective(b, [&](comm::Communicator& c, torch::Tensor& t) {
      return c.Allreduce(t.data_ptr<float>(), static_cast<size_t>(t.numel()),
                              comm::ReduceOp::kMean);
    }));
    if (!b.is_same(buffer)) buffer.copy_(b);
  }
  return Status::Ok();
}

Status DataParallel::SumEpochLoss(double* loss_sum, int64_t* seen) {
  double values[] = {*loss_sum, static_cast<double>(*seen)};
  LATTICE_RETURN_IF_ERROR(SumOverMembers(values, 2));
  *loss_sum = values[0];
  *seen = static_cast<int64_t>(values[1]);
  return Status::Ok();
}

Status DataParallel::SumOverMembers(double* values, size_t count) {
  if (!active()) return Status::Ok();
  // Doubles gathered as pairs of floats, not reduced in float: the sum keeps double
  // precision and one order. In pieces, so that a large confusion matrix fits the relay.
  constexpr size_t kPiece = 4096;
  const size_t k = static_cast<size_t>(gang_->size());
  std::vector<float> all(2 * kPiece * k);
  for (size_t begin = 0; begin < count; begin += kPiece) {
    const size_t n = std::min(kPiece, count - begin);
    std::vector<float> mine(2 * n);
    std::memcpy(mine.data(), values + begin, n * sizeof(double));
    LATTICE_RETURN_IF_ERROR(gang_->Allgather(mine.data(), 2 * n, all.data()));
    for (size_t i = 0; i < n; ++i) {
      double total = 0;
      for (size_t m = 0; m < k; ++m) {
        double v = 0;
        std::memcpy(&v, all.data() + m * 2 * n + 2 * i, sizeof(double));
        total += v;
      }
      values[begin + i] = total;
    }
  }
  return Status::Ok();
}

}  // namespace lattice::jobs::internal
