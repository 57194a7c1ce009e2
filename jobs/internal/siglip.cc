#include "jobs/internal/siglip.h"

#include <algorithm>

namespace lattice::jobs::internal {
namespace {

namespace F = torch::nn::functional;

constexpr int64_t kBlock = 1024;  // rows per evaluation block

torch::Tensor Normalize(const torch::Tensor& t) {
  return F::normalize(t, F::NormalizeFuncOptions().p(2).dim(-1).eps(1e-12));
}

// Of the rows i of `sims` [b, N] (block rows start..start+b of a square similarity
// matrix), how many have fewer than k entries strictly above their own (column start + i),
// for k = 1 and k = 5.
std::pair<int64_t, int64_t> Hits(const torch::Tensor& sims, int64_t start) {
  torch::Tensor own = sims.diagonal(start, 0, 1);  // sims[i, start + i]
  torch::Tensor higher = sims.gt(own.unsqueeze(1)).sum(1);
  return {higher.lt(1).sum().item<int64_t>(), higher.lt(5).sum().item<int64_t>()};
}

}  // namespace

torch::Tensor PoolAndNormalize(const torch::Tensor& output) { return Normalize(output.mean(1)); }

torch::Tensor SiglipLogits(const torch::Tensor& u, const torch::Tensor& v,
                           const torch::Tensor& logit_scale, const torch::Tensor& logit_bias) {
  return torch::matmul(u, v.t()) * logit_scale.exp() + logit_bias;
}

torch::Tensor SiglipLoss(const torch::Tensor& logits) {
  const int64_t b = logits.size(0);
  torch::Tensor labels =
      2 * torch::eye(b, logits.options()) - torch::ones({b, b}, logits.options());
  return -F::logsigmoid(labels * logits).sum() / static_cast<double>(b);
}

torch::Tensor SiglipBatchLoss(ProjectorModel& model, const torch::Tensor& x,
                              const torch::Tensor& targets) {
  torch::Tensor u = PoolAndNormalize(model.forward(x));
  return SiglipLoss(SiglipLogits(u, Normalize(targets), model.logit_scale(), model.logit_bias()));
}

AlignmentMetrics EvaluateAlignment(ProjectorModel& model, const torch::Tensor& x,
                                   const torch::Tensor& targets) {
  torch::InferenceMode inference;
  model.eval();
  const int64_t n = x.size(0);
  std::vector<torch::Tensor> parts;
  for (int64_t start = 0; start < n; start += kBlock) {
    parts.push_back(PoolAndNormalize(model.forward(x.narrow(0, start, std::min(kBlock, n - start)))));
  }
  model.train();
  const torch::Tensor u = torch::cat(parts, 0);
  const torch::Tensor v = Normalize(targets);
  const torch::Tensor scale = model.logit_scale().exp(), bias = model.logit_bias();
  double loss = 0, score = 0;
  int64_t i2t[2] = {0, 0}, t2i[2] = {0, 0};
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t len = std::min(kBlock, n - start);
    torch::Tensor sims = torch::matmul(u.narrow(0, start, len), v.t());  // [len, N]
    torch::Tensor logits = sims * scale + bias;
    torch::Tensor labels = -torch::ones_like(logits);
    labels.diagonal(start, 0, 1).fill_(1.0);
    loss -= F::logsigmoid(labels * logits).sum().item<double>();
    score += torch::sigmoid(logits.diagonal(start, 0, 1)).sum().item<double>();
    auto [a1, a5] = Hits(sims, start);
    auto [b1, b5] = Hits(torch::matmul(v.narrow(0, start, len), u.t()), start);
    i2t[0] += a1, i2t[1] += a5, t2i[0] += b1, t2i[1] += b5;
  }
  const double rows = static_cast<double>(n);
  return {loss / rows,       score / rows,      i2t[0] / rows,
          i2t[1] / rows,     t2i[0] / rows,     t2i[1] / rows};
}

}  // namespace lattice::jobs::internal
