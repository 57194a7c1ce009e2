#include "jobs/item_ids.h"

#include <unordered_map>

#include "common/item_id.h"
#include "jobs/corpus_rows.h"
#include "jobs/dataset.h"

namespace lattice::jobs {
namespace {

using nlohmann::json;

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The name without a trailing ".gz".
std::string Plain(const std::string& path) {
  return EndsWith(path, ".gz") ? path.substr(0, path.size() - 3) : path;
}

StatusOr<std::vector<json>> ParseJsonIds(const std::string& path, const std::string& text) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Status::InvalidArgument(path + ": not valid JSON");
  if (!doc.is_array()) {
    return Status::InvalidArgument(path + ": expected a JSON array of ids, got " +
                                   std::string(doc.type_name()));
  }
  std::vector<json> ids;
  ids.reserve(doc.size());
  for (size_t i = 0; i < doc.size(); ++i) {
    json& id = doc[i];
    const bool integer = id.is_number_integer();
    if (!integer && !(id.is_string() && !id.get<std::string>().empty())) {
      return Status::InvalidArgument(path + ": element " + std::to_string(i) +
                                     ": expected a non-empty string or an integer, got " +
                                     (id.is_string() ? std::string("\"\"") : id.dump()));
    }
    ids.push_back(std::move(id));
  }
  return ids;
}

// Ids are served as JSON strings, which must be UTF-8.
bool IsUtf8(const std::string& text) {
  try {
    (void)json(text).dump();
    return text.find('\0') == std::string::npos;
  } catch (const json::exception&) {
    return false;
  }
}

StatusOr<std::vector<json>> ParseTextIds(const std::string& path, const std::string& text) {
  std::vector<json> ids;
  size_t pos = 0;
  for (int64_t line = 1; pos < text.size(); ++line) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string raw = text.substr(pos, end - pos);
    pos = end + 1;
    const size_t b = raw.find_first_not_of(" \t\r");
    if (b == std::string::npos) {
      return Status::InvalidArgument(path + ": line " + std::to_string(line) +
                                     " is empty (one id per line, line i for corpus row i - 1)");
    }
    const std::string id = raw.substr(b, raw.find_last_not_of(" \t\r") + 1 - b);
    if (!IsUtf8(id)) {
      return Status::InvalidArgument(path + ": line " + std::to_string(line) +
                                     ": not valid UTF-8 text");
    }
    ids.emplace_back(id);
  }
  return ids;
}

}  // namespace

StatusOr<std::vector<json>> LoadItemIds(const std::string& path) {
  const std::string plain = Plain(path);
  if (EndsWith(plain, ".npy")) {
    LATTICE_ASSIGN_OR_RETURN(std::vector<int64_t> values, LoadNpyIds(path));
    return std::vector<json>(values.begin(), values.end());
  }
  LATTICE_ASSIGN_OR_RETURN(std::string text, ReadDataFile(path));
  if (EndsWith(plain, ".json")) return ParseJsonIds(path, text);
  return ParseTextIds(path, text);
}

Status CheckItemIds(const std::vector<json>& ids, int64_t rows, const std::string& path) {
  if (static_cast<int64_t>(ids.size()) != rows) {
    return Status::InvalidArgument(path + ": " + std::to_string(ids.size()) + " ids for " +
                                   std::to_string(rows) + " corpus rows");
  }
  std::unordered_map<std::string, int64_t> first_row;
  first_row.reserve(ids.size());
  for (size_t r = 0; r < ids.size(); ++r) {
    const std::string text = ItemIdText(ids[r]);
    auto [it, inserted] = first_row.emplace(text, static_cast<int64_t>(r));
    if (!inserted) {
      return Status::InvalidArgument(path + ": duplicate id '" + text + "' (rows " +
                                     std::to_string(it->second) + " and " + std::to_string(r) +
                                     ")");
    }
  }
  return Status::Ok();
}

StatusOr<std::vector<json>> LoadCorpusItemIds(const CorpusConfig& corpus) {
  if (corpus.ids.empty()) return std::vector<json>();
  CorpusConfig unlimited = corpus;
  unlimited.limit.reset();
  auto rows = CountCorpusRows(unlimited);
  if (!rows.ok()) return rows.status();
  auto ids = LoadItemIds(corpus.ids);
  if (!ids.ok()) return ids.status().WithContext("corpus.ids");
  LATTICE_RETURN_IF_ERROR(CheckItemIds(*ids, *rows, corpus.ids).WithContext("corpus.ids"));
  if (corpus.limit && *corpus.limit < *rows) ids->resize(static_cast<size_t>(*corpus.limit));
  return ids;
}

}  // namespace lattice::jobs
