#include "store/index_catalog.h"

#include <fstream>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <regex>
#include <sstream>
#include <system_error>

#include "common/item_id.h"
#include "store/internal/vector_index_util.h"

namespace lattice::store {
namespace fs = std::filesystem;
namespace {

constexpr const char* kIndexFile = "index.bin";
constexpr const char* kMetaFile = "meta.json";
constexpr const char* kItemsFile = "items.jsonl";  // {"id": N, "meta": {...}} per line
constexpr const char* kIdsFile = "ids.json";        // [id of row 0, id of row 1, ...]

// The map of `ids` (element i: the id of row i); InvalidArgument for a repeated id.
StatusOr<std::shared_ptr<ItemIdMap>> MakeIdMap(const nlohmann::json& ids) {
  auto map = std::make_shared<ItemIdMap>();
  map->json_by_row.reserve(ids.size());
  map->row_by_text.reserve(ids.size());
  for (size_t r = 0; r < ids.size(); ++r) {
    const nlohmann::json& id = ids[r];
    if (!id.is_string() && !id.is_number_integer()) {
      return Status::InvalidArgument("item id of row " + std::to_string(r) +
                                     ": expected a string or an integer, got " + id.dump());
    }
    auto [it, inserted] = map->row_by_text.emplace(ItemIdText(id), static_cast<int64_t>(r));
    if (!inserted) {
      return Status::InvalidArgument("duplicate item id '" + it->first + "' (rows " +
                                     std::to_string(it->second) + " and " + std::to_string(r) +
                                     ")");
    }
    map->json_by_row.push_back(id.dump());
  }
  return map;
}
constexpr const char* kCurrentFile = "CURRENT";

// "v12" -> 12; anything else -> -1.
int64_t ParseVersionDir(const std::string& dirname) {
  if (dirname.size() < 2 || dirname[0] != 'v' || dirname.size() > 19) return -1;
  int64_t v = 0;
  for (size_t i = 1; i < dirname.size(); ++i) {
    if (dirname[i] < '0' || dirname[i] > '9') return -1;
    v = v * 10 + (dirname[i] - '0');
  }
  return v;
}

// ".v12.tmp" -> 12; anything else -> -1.
int64_t ParseTempDir(const std::string& dirname) {
  const std::string suffix = ".tmp";
  if (dirname.size() < 6 || dirname[0] != '.' ||
      dirname.compare(dirname.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return -1;
  }
  return ParseVersionDir(dirname.substr(1, dirname.size() - 1 - suffix.size()));
}

Status CheckName(const std::string& name) { return ValidateIndexName(name); }

}  // namespace

Status ValidateIndexName(const std::string& name) {
  static const std::regex kName("[A-Za-z0-9][A-Za-z0-9_.-]{0,127}");
  if (!std::regex_match(name, kName)) {
    return Status::InvalidArgument(
        "index name " +
        nlohmann::json(name).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
        ": must match [A-Za-z0-9][A-Za-z0-9_.-]{0,127}");
  }
  return Status::Ok();
}

IndexCatalog::IndexCatalog(std::string root, IndexCatalogOptions options)
    : root_(std::move(root)), options_(options) {}

StatusOr<std::unique_ptr<IndexCatalog>> IndexCatalog::Open(const std::string& root,
                                                            IndexCatalogOptions options) {
  if (options.keep_versions < 1) {
    return Status::InvalidArgument("index catalog: keep_versions must be >= 1, got " +
                                   std::to_string(options.keep_versions));
  }
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return Status::IoError("index catalog " + root + ": " + ec.message());
  return std::unique_ptr<IndexCatalog>(new IndexCatalog(root, options));
}

std::string IndexCatalog::Dir(const std::string& name) const { return root_ + "/" + name; }

StatusOr<int64_t> IndexCatalog::ReadCurrent(const std::string& name) const {
  auto text = internal::ReadWholeFile(Dir(name) + "/" + kCurrentFile);
  if (!text.ok()) {
    if (text.status().code() == StatusCode::kNotFound) {
      return Status::NotFound("index \"" + name + "\": not published");
    }
    return text.status();
  }
  std::string s = *text;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  const int64_t v = ParseVersionDir(s);
  if (v < 0) return Status::IoError(Dir(name) + "/CURRENT: malformed \"" + s + "\"");
  return v;
}

StatusOr<std::vector<int64_t>> IndexCatalog::Versions(const std::string& name) const {
  LATTICE_RETURN_IF_ERROR(CheckName(name));
  std::vector<int64_t> versions;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(Dir(name), ec)) {
    const int64_t v = ParseVersionDir(entry.path().filename().string());
    std::error_code dir_ec;
    if (v >= 0 && entry.is_directory(dir_ec)) versions.push_back(v);
  }
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return Status::IoError(Dir(name) + ": " + ec.message());
  }
  std::sort(versions.begin(), versions.end());
  return versions;
}

Status IndexCatalog::WriteVersion(const std::string& name, int64_t version,
                                  const VectorIndex& index, nlohmann::json meta,
                                  const ItemMetadata* items,
                                  const std::vector<nlohmann::json>* ids) {
  const std::string final_dir = Dir(name) + "/v" + std::to_string(version);
  const std::string tmp_dir = Dir(name) + "/.v" + std::to_string(version) + ".tmp";
  std::error_code ec;
  fs::remove_all(tmp_dir, ec);
  fs::create_directories(tmp_dir, ec);
  if (ec) return Status::IoError(tmp_dir + ": " + ec.message());
  LATTICE_RETURN_IF_ERROR(index.Save(tmp_dir + "/" + kIndexFile));
  if (items != nullptr && !items->empty()) {
    std::string lines;
    for (const auto& [id, value] : *items) {
      lines += "{\"id\":" + std::to_string(id) + ",\"meta\":" + value + "}\n";
    }
    LATTICE_RETURN_IF_ERROR(internal::WriteStringAtomically(tmp_dir + "/" + kItemsFile, lines));
    meta["item_metadata"] = items->size();
  }
  if (ids != nullptr) {
    if (static_cast<int64_t>(ids->size()) != index.size()) {
      return Status::InvalidArgument(std::to_string(ids->size()) + " item ids for " +
                                     std::to_string(index.size()) + " vectors");
    }
    const nlohmann::json array(*ids);
    LATTICE_RETURN_IF_ERROR(MakeIdMap(array).status());
    LATTICE_RETURN_IF_ERROR(
        internal::WriteStringAtomically(tmp_dir + "/" + kIdsFile, array.dump() + "\n"));
    meta["item_ids"] = ids->size();
  }
  meta["name"] = name;
  meta["version"] = version;
  meta["type"] = IndexTypeName(index.params().type);
  meta["backend"] = index.backend();
  meta["created_unix"] = std::chrono::duration_cast<std::chrono::seconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  LATTICE_RETURN_IF_ERROR(
      internal::WriteStringAtomically(tmp_dir + "/" + kMetaFile, meta.dump(2) + "\n"));
  fs::rename(tmp_dir, final_dir, ec);
  if (ec) return Status::IoError(final_dir + ": rename from " + tmp_dir + ": " + ec.message());
  return Status::Ok();
}

// Keeps the newest keep_versions versions <= newest; removes older ones and stray temp
// directories (and versions above newest, which no CURRENT ever named).
void IndexCatalog::Prune(const std::string& name, int64_t newest) {
  std::error_code ec;
  std::vector<int64_t> kept;
  std::vector<fs::path> doomed;
  for (const auto& entry : fs::directory_iterator(Dir(name), ec)) {
    const std::string base = entry.path().filename().string();
    const int64_t v = ParseVersionDir(base);
    if (v >= 0 && v <= newest) {
      kept.push_back(v);
    } else if (v > newest || ParseTempDir(base) >= 0) {
      doomed.push_back(entry.path());
    }
  }
  std::sort(kept.rbegin(), kept.rend());
  for (size_t i = static_cast<size_t>(options_.keep_versions); i < kept.size(); ++i) {
    doomed.push_back(Dir(name) + "/v" + std::to_string(kept[i]));
  }
  for (const fs::path& path : doomed) {
    std::error_code ignored;  // best effort; retried on the next Publish
    fs::remove_all(path, ignored);
  }
}

StatusOr<int64_t> IndexCatalog::Publish(const std::string& name, const VectorIndex& index,
                                        nlohmann::json meta, const ItemMetadata* items,
                                        const std::vector<nlohmann::json>* ids) {
  LATTICE_RETURN_IF_ERROR(CheckName(name));
  if (meta.is_null()) meta = nlohmann::json::object();
  if (!meta.is_object()) return Status::InvalidArgument("index meta: must be a JSON object");
  std::lock_guard<std::mutex> lock(publish_mu_);
  std::error_code ec;
  fs::create_directories(Dir(name), ec);
  if (ec) return Status::IoError(Dir(name) + ": " + ec.message());
  // Next version: one above CURRENT (step 1 of the protocol in the header).
  int64_t current = 0;
  if (StatusOr<int64_t> read = ReadCurrent(name); read.ok()) {
    current = *read;
  } else if (read.status().code() != StatusCode::kNotFound) {
    return read.status();
  }
  const int64_t version = current + 1;
  Prune(name, current);  // leftovers of a killed publish, before their number is reused
  if (Status s = WriteVersion(name, version, index, std::move(meta), items, ids); !s.ok()) {
    // Nothing half-written stays behind (after a full disk it would hold the space).
    std::error_code ignored;
    fs::remove_all(Dir(name) + "/.v" + std::to_string(version) + ".tmp", ignored);
    return s.WithContext("publish index \"" + name + "\" v" + std::to_string(version));
  }
  if (Status s = internal::WriteStringAtomically(Dir(name) + "/" + kCurrentFile,
                                                 "v" + std::to_string(version) + "\n");
      !s.ok()) {
    StatusOr<int64_t> now_current = ReadCurrent(name);
    if (!now_current.ok() || *now_current != version) {  // never current: the version goes
      std::error_code ignored;
      fs::remove_all(Dir(name) + "/v" + std::to_string(version), ignored);
    }
    return s.WithContext("publish index \"" + name + "\" v" + std::to_string(version));
  }
  Prune(name, version);
  return version;
}

StatusOr<std::shared_ptr<const VectorIndex>> IndexCatalog::Current(const std::string& name) {
  LATTICE_RETURN_IF_ERROR(CheckName(name));
  LATTICE_ASSIGN_OR_RETURN(int64_t version, ReadCurrent(name));
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(name);
    if (it != cache_.end() && it->second.version == version) return it->second.index;
  }
  // Load outside the lock: a large index must not block lookups of other names. Two
  // racing loaders of the same version both succeed; the first one cached wins.
  const std::string path = Dir(name) + "/v" + std::to_string(version) + "/" + kIndexFile;
  auto loaded = LoadVectorIndex(path);
  if (!loaded.ok()) return loaded.status().WithContext("index \"" + name + "\"");
  std::shared_ptr<const VectorIndex> index(std::move(loaded).value());
  std::lock_guard<std::mutex> lock(cache_mu_);
  Cached& slot = cache_[name];
  if (slot.version < version || !slot.index) slot = Cached{version, index};
  return slot.version == version ? slot.index : index;
}

StatusOr<std::shared_ptr<const ItemMetadata>> IndexCatalog::Items(const std::string& name) {
  LATTICE_RETURN_IF_ERROR(CheckName(name));
  LATTICE_ASSIGN_OR_RETURN(int64_t version, ReadCurrent(name));
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = items_cache_.find(name);
    if (it != items_cache_.end() && it->second.version == version) return it->second.items;
  }
  auto items = std::make_shared<ItemMetadata>();
  const std::string path = Dir(name) + "/v" + std::to_string(version) + "/" + kItemsFile;
  std::ifstream in(path);
  std::string line;
  while (in && std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("id") || !j["id"].is_number_integer() || !j.contains("meta")) {
      return Status::IoError(path + ": malformed line");
    }
    (*items)[j["id"].get<int64_t>()] = j["meta"].dump();
  }
  std::lock_guard<std::mutex> lock(cache_mu_);
  items_cache_[name] = CachedItems{version, items};
  return std::shared_ptr<const ItemMetadata>(items);
}

StatusOr<std::shared_ptr<const ItemIdMap>> IndexCatalog::Ids(const std::string& name) {
  LATTICE_RETURN_IF_ERROR(CheckName(name));
  LATTICE_ASSIGN_OR_RETURN(int64_t version, ReadCurrent(name));
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = ids_cache_.find(name);
    if (it != ids_cache_.end() && it->second.version == version) return it->second.ids;
  }
  std::shared_ptr<const ItemIdMap> ids;
  const std::string path = Dir(name) + "/v" + std::to_string(version) + "/" + kIdsFile;
  std::ifstream in(path);
  if (in) {
    std::stringstream text;
    text << in.rdbuf();
    nlohmann::json array = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
    if (!array.is_array()) return Status::IoError(path + ": not a JSON array");
    auto map = MakeIdMap(array);
    if (!map.ok()) return Status::IoError(path + ": " + map.status().message());
    ids = std::move(map).value();
  }
  std::lock_guard<std::mutex> lock(cache_mu_);
  ids_cache_[name] = CachedIds{version, ids};
  return ids;
}

StatusOr<std::vector<CatalogEntry>> IndexCatalog::List() const {
  std::vector<CatalogEntry> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_, ec)) {
    const std::string name = entry.path().filename().string();
    std::error_code dir_ec;
    if (!entry.is_directory(dir_ec) || !CheckName(name).ok()) continue;
    auto version = ReadCurrent(name);
    if (!version.ok()) {
      if (version.status().code() == StatusCode::kNotFound) continue;  // never published
      return version.status();
    }
    const std::string meta_path =
        Dir(name) + "/v" + std::to_string(*version) + "/" + kMetaFile;
    LATTICE_ASSIGN_OR_RETURN(std::string text, internal::ReadWholeFile(meta_path));
    nlohmann::json meta = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (meta.is_discarded()) return Status::IoError(meta_path + ": invalid JSON");
    const int64_t bytes =
        internal::FileBytes(Dir(name) + "/v" + std::to_string(*version) + "/" + kIndexFile);
    out.push_back(CatalogEntry{name, *version, std::move(meta), std::max<int64_t>(bytes, 0)});
  }
  if (ec) return Status::IoError(root_ + ": " + ec.message());
  std::sort(out.begin(), out.end(),
            [](const CatalogEntry& a, const CatalogEntry& b) { return a.name < b.name; });
  return out;
}

}  // namespace lattice::store
