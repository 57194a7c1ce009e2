#include "jobs/internal/mixup.h"

#include <vector>

namespace lattice::jobs::internal {

bool MixupActive(const MixupConfig& config, int epoch, int64_t epochs) {
  return static_cast<double>(epoch - 1) < config.until * static_cast<double>(epochs);
}

MixedBatch Mixup(const torch::Tensor& x, const torch::Tensor& y, double alpha,
                 std::mt19937_64& rng) {
  // Beta(a, a) as G1 / (G1 + G2) with G ~ Gamma(a, 1); fresh distributions, so that no
  // state outside `rng` carries over between batches.
  const double g1 = std::gamma_distribution<double>(alpha, 1.0)(rng);
  const double g2 = std::gamma_distribution<double>(alpha, 1.0)(rng);
  MixedBatch m;
  m.lambda = g1 + g2 > 0 ? g1 / (g1 + g2) : 0.5;
  const int64_t n = x.size(0);
  std::vector<int64_t> perm(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) perm[i] = i;
  for (int64_t i = n - 1; i > 0; --i) {
    std::swap(perm[i], perm[rng() % static_cast<uint64_t>(i + 1)]);
  }
  const torch::Tensor index = torch::from_blob(perm.data(), {n}, torch::kLong).clone().to(x.device());
  m.x = x * m.lambda + x.index_select(0, index) * (1.0 - m.lambda);
  m.y_other = y.index_select(0, index);
  return m;
}

torch::Tensor MixupLoss(const torch::Tensor& logits, const torch::Tensor& y,
                        const MixedBatch& batch,
                        const torch::nn::functional::CrossEntropyFuncOptions& options) {
  namespace F = torch::nn::functional;
  return F::cross_entropy(logits, y, options) * batch.lambda +
         F::cross_entropy(logits, batch.y_other, options) * (1.0 - batch.lambda);
}

}  // namespace lattice::jobs::internal
