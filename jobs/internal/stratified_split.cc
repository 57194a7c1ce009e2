#include "jobs/internal/stratified_split.h"

#include <cmath>
#include <map>
#include <random>
#include <string>

#include "jobs/internal/config_fields.h"

namespace lattice::jobs::internal {

StatusOr<SplitIndices> StratifiedSplit(const std::vector<int64_t>& labels,
                                       const DatasetConfig& config) {
  std::map<int64_t, std::vector<int64_t>> groups;  // ordered: classes ascending
  for (size_t i = 0; i < labels.size(); ++i) {
    groups[config.stratify ? labels[i] : 0].push_back(static_cast<int64_t>(i));
  }
  std::mt19937_64 rng(config.split_seed);
  SplitIndices s;
  for (auto& [cls, rows] : groups) {
    const int64_t n = static_cast<int64_t>(rows.size());
    for (int64_t i = n - 1; i > 0; --i) {
      std::swap(rows[i], rows[rng() % static_cast<uint64_t>(i + 1)]);
    }
    const int64_t n_test = std::llround(static_cast<double>(n) * config.test_fraction);
    int64_t n_train = 0;
    if (config.train_per_class) {
      n_train = *config.train_per_class;
      if (n - n_test <= n_train) {
        return Bad("dataset.split.train_per_class",
                   "class " + std::to_string(cls) + " has " + std::to_string(n - n_test) +
                       " rows" + (n_test > 0 ? " after the test part" : "") +
                       ", needs more than " + std::to_string(n_train) + " (the rest validates)");
      }
    } else {
      n_train = n - n_test - std::llround(static_cast<double>(n) * config.validation_fraction);
    }
    auto at = [&rows = rows](int64_t k) { return rows.begin() + k; };
    s.test.insert(s.test.end(), at(0), at(n_test));
    s.train.insert(s.train.end(), at(n_test), at(n_test + std::max<int64_t>(n_train, 0)));
    s.validation.insert(s.validation.end(), at(n_test + std::max<int64_t>(n_train, 0)), at(n));
  }
  if (s.train.empty()) return Bad("dataset.split", "no rows left to train on");
  if (s.validation.empty()) return Bad("dataset.split", "no rows left to validate on");
  return s;
}

}  // namespace lattice::jobs::internal
