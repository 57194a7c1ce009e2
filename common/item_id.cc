#include "common/item_id.h"

namespace lattice {

std::string ItemIdText(const nlohmann::json& id) {
  return id.is_string() ? id.get<std::string>() : id.dump();
}

}  // namespace lattice
