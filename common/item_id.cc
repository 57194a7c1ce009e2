#include "common/item_id.h"

#include <charconv>

namespace lattice {

std::string ItemIdText(const nlohmann::json& id) {
  return id.is_string() ? id.get<std::string>() : id.dump();
}

std::optional<int64_t> ParseRowNumber(const std::string& text) {
  int64_t row = -1;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, row);
  if (ec != std::errc() || ptr != end || row < 0) return std::nullopt;
  return row;
}

}  // namespace lattice
