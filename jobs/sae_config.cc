#include "jobs/sae_config.h"

#include "jobs/internal/config_fields.h"

namespace lattice::jobs {

using internal::Bad;
using internal::CheckObject;
using internal::Find;
using internal::GetInt;
using internal::GetNumber;
using internal::Join;

StatusOr<SaeConfig> ParseSaeConfig(const nlohmann::json& m, const std::string& path) {
  SaeConfig c;
  for (auto it = m.begin(); it != m.end(); ++it) {
    static const std::set<std::string> kKeys = {"type", "expansion", "l1_coefficient",
                                                "dead_window", "purity_top"};
    if (!kKeys.count(it.key())) {
      return Bad(Join(path, it.key()),
                 "not a key of model type sae (its keys: type, expansion, l1_coefficient, "
                 "dead_window, purity_top)");
    }
  }
  LATTICE_RETURN_IF_ERROR(GetInt(m, "expansion", path, &c.expansion, 1, 1024));
  LATTICE_RETURN_IF_ERROR(GetNumber(m, "l1_coefficient", path, &c.l1_coefficient,
                                    internal::Bound::kClosed, 0.0));
  LATTICE_RETURN_IF_ERROR(GetInt(m, "dead_window", path, &c.dead_window, 1));
  LATTICE_RETURN_IF_ERROR(GetInt(m, "purity_top", path, &c.purity_top, 1));
  return c;
}

std::vector<std::string> SaePerEpochMetricNames(bool labels) {
  std::vector<std::string> names = {"train_loss",      "val_loss",        "val_mse",
                                    "val_explained_variance", "val_l0",   "val_l0_fraction",
                                    "dead_features",   "dead_fraction",   "dictionary_size",
                                    "lr"};
  if (labels) names.push_back("val_label_purity");
  return names;
}

}  // namespace lattice::jobs
