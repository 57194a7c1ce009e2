// Stratified train / validation / test splits (torch-free; internal to lattice_jobs_config).
//
// StratifiedSplit splits rows by dataset.split (jobs/train_config.h):
//   1. groups: with split.stratify (or train_per_class) the rows of each class, classes in
//      ascending order; else one group of all rows;
//   2. each group's rows (ascending) are shuffled by one std::mt19937_64(split.seed), drawn
//      from group after group (Fisher-Yates, as MakeSplit: identical on every platform);
//   3. of each group, the first round(n * test_fraction) rows are test; then either the
//      next train_per_class rows train and the rest validate, or round(n *
//      validation_fraction) validate and the rest train.
// Each part lists its rows group by group, in shuffled order.
// Errors (InvalidArgument naming the field): a class with too few rows for train_per_class
// ("dataset.split.train_per_class: class 1 has 120 rows after the test part, needs more
// than 150 (the rest validates)"), an empty training or validation part.
// Thread-safety: pure function.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "jobs/dataset.h"
#include "jobs/train_config.h"

namespace lattice::jobs::internal {

StatusOr<SplitIndices> StratifiedSplit(const std::vector<int64_t>& labels,
                                       const DatasetConfig& config);

}  // namespace lattice::jobs::internal
