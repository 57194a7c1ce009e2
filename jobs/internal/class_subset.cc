#include "jobs/internal/class_subset.h"

#include <algorithm>
#include <map>

#include "jobs/internal/config_fields.h"

namespace lattice::jobs::internal {

Status SelectClasses(const std::vector<int64_t>& classes,
                     const std::vector<int64_t>& rows_per_class, const std::string& path,
                     DatasetPart* part) {
  std::map<int64_t, size_t> position;
  for (size_t i = 0; i < classes.size(); ++i) position[classes[i]] = i;
  std::vector<int64_t> kept(classes.size(), 0);
  const int64_t cols = part->features.cols;
  int64_t out = 0;
  for (int64_t r = 0; r < part->features.rows; ++r) {
    const auto it = position.find(part->labels[static_cast<size_t>(r)]);
    if (it == position.end()) continue;
    const size_t c = it->second;
    if (!rows_per_class.empty() && kept[c] >= rows_per_class[c]) continue;
    ++kept[c];
    std::copy_n(part->features.data.begin() + r * cols, cols,
                part->features.data.begin() + out * cols);
    part->labels[static_cast<size_t>(out)] = static_cast<int64_t>(c);
    ++out;
  }
  for (size_t c = 0; c < classes.size(); ++c) {
    if (!rows_per_class.empty() && kept[c] < rows_per_class[c]) {
      return Bad(path + ".rows_per_class[" + std::to_string(c) + "]",
                 "class " + std::to_string(classes[c]) + " has " + std::to_string(kept[c]) +
                     " rows, " + std::to_string(rows_per_class[c]) + " asked");
    }
  }
  if (out == 0) return Bad(path + ".classes", "no row has one of these labels");
  part->features.rows = out;
  part->features.data.resize(static_cast<size_t>(out * cols));
  part->features.data.shrink_to_fit();
  part->labels.resize(static_cast<size_t>(out));
  return Status::Ok();
}

}  // namespace lattice::jobs::internal
