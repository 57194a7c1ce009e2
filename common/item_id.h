// Item ids as users give them: an embed corpus's `ids:` file (jobs/item_ids.h), the index
// catalog's id map (store/index_catalog.h), qrels docids, the items of a search request.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace lattice {

// An item id as text: a string as it is, an integer in decimal. Ids are compared by this
// text, so 42 and "42" name the same item. Other JSON values give their compact JSON.
std::string ItemIdText(const nlohmann::json& id);

}  // namespace lattice
