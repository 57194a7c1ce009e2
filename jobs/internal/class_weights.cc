#include "jobs/internal/class_weights.h"

#include <string>

#include "jobs/internal/config_fields.h"

namespace lattice::jobs::internal {

StatusOr<std::vector<double>> ClassWeights(const ClassWeightsConfig& config,
                                           const std::vector<int64_t>& counts) {
  const size_t classes = counts.size();
  if (!config.weights.empty()) {
    if (config.weights.size() != classes) {
      return Bad("train.class_weights", "has " + std::to_string(config.weights.size()) +
                                            " weights, the data has " + std::to_string(classes) +
                                            " classes");
    }
    return config.weights;
  }
  if (!config.inverse_frequency) return std::vector<double>();
  int64_t n = 0, present = 0;
  for (int64_t c : counts) {
    n += c;
    present += c > 0 ? 1 : 0;
  }
  std::vector<double> w(classes, 1.0);
  for (size_t c = 0; c < classes; ++c) {
    if (counts[c] > 0) {
      w[c] = static_cast<double>(n) / (static_cast<double>(present) * static_cast<double>(counts[c]));
    }
  }
  for (const auto& [cls, factor] : config.boost) {
    if (cls < 0 || static_cast<size_t>(cls) >= classes) {
      return Bad("train.class_weights.boost." + std::to_string(cls),
                 "no such class (the data has " + std::to_string(classes) + " classes)");
    }
    w[static_cast<size_t>(cls)] *= factor;
  }
  return w;
}

}  // namespace lattice::jobs::internal
