// Item ids as users give them: an embed corpus's `ids:` file (jobs/item_ids.h), the index
// catalog's id map (store/index_catalog.h), qrels docids, the items of a search request.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace lattice {

// An item id as text: a string as it is, an integer in decimal. Ids are compared by this
// text, so 42 and "42" name the same item. Other JSON values give their compact JSON.
std::string ItemIdText(const nlohmann::json& id);

// The row number an item id names in an index without ids of its own: a decimal integer
// >= 0 with nothing around it ("42"); nullopt otherwise ("-1", "4x", "", out of range).
std::optional<int64_t> ParseRowNumber(const std::string& text);

}  // namespace lattice
