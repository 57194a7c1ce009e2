// dataset.classes / dataset.rows_per_class: a subset of a dataset's classes (torch-free;
// internal to lattice_jobs_config).
//
// SelectClasses keeps the rows of `part` whose label is one of `classes` (in file order)
// and relabels them by position: classes [0, 6, 9] become labels 0, 1, 2. With
// `rows_per_class` (one count per class), only the first rows_per_class[i] rows of class
// classes[i] are kept. Errors (InvalidArgument naming `path`'s fields): a class with fewer
// rows than asked ("dataset.rows_per_class[1]: class 6 has 150 rows, 200 asked").
// Thread-safety: pure function.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "jobs/dataset.h"

namespace lattice::jobs::internal {

Status SelectClasses(const std::vector<int64_t>& classes,
                     const std::vector<int64_t>& rows_per_class, const std::string& path,
                     DatasetPart* part);

}  // namespace lattice::jobs::internal
