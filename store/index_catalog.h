// IndexCatalog: a directory of named, versioned vector indexes.
//
// Layout under `root`:
//   <root>/<name>/v<N>/index.bin (+ index.bin.params.json, see VectorIndex::Save)
//   <root>/<name>/v<N>/meta.json   caller's meta plus {"name", "version", "created_unix"}
//   <root>/<name>/v<N>/items.jsonl item metadata, when given
//   <root>/<name>/v<N>/ids.json    the user's item ids, when given: a JSON array, element i
//                                  the id of index id (corpus row) i
//   <root>/<name>/CURRENT          "v<N>\n", switched atomically (temp file + rename)
//
// Publish protocol (crash-safe at every step):
//   1. N = 1 + the version CURRENT names (0 when there is none). Version numbers are
//      thus taken only by publishes that completed step 3: what a publish that died
//      before it left (.v*.tmp, or a v<M> with M > CURRENT, never current) is deleted
//      here and its number is reused.
//   2. Save the index and meta.json into <name>/.v<N>.tmp, fsync, rename to v<N>.
//   3. Write CURRENT.tmp, fsync, rename onto CURRENT, fsync the directory.
//   4. Keep the newest keep_versions versions <= N (every one of them was current once),
//      delete older ones and leftover .v*.tmp directories.
// A crash before 3 leaves CURRENT on the previous version; the stray directory is removed
// by the next Publish, which takes the same number.
//
// Thread-safety: all methods may be called concurrently. One process publishes to a root
// at a time (a second publisher could see the first one's temp directory as stray).
// Within the process, Publish calls are serialised by
// a mutex; Current() serves a cached shared_ptr and only reloads (outside the lock that
// guards the cache) when CURRENT on disk names another version, so an index published by
// another process on the same root is picked up. The returned index stays valid for as
// long as the caller holds it, even after it is superseded or its files are deleted.
//
// Errors: InvalidArgument for a bad name (must match [A-Za-z0-9][A-Za-z0-9_.-]{0,127}) or
// non-object meta; NotFound for an unknown name; IoError for file system failures.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "store/vector_index.h"

namespace lattice::store {

struct IndexCatalogOptions {
  // Versions kept per name, the current one included. Default: 3. Must be >= 1.
  int keep_versions = 3;
};

// OK iff `name` may name an index: [A-Za-z0-9][A-Za-z0-9_.-]{0,127} (one path component,
// never "." or ".."). InvalidArgument quoting the name and the rule otherwise. Sweep specs
// check their index.name with it at submit.
Status ValidateIndexName(const std::string& name);

// Item id -> metadata (a compact JSON object as text, e.g. {"path":"img/3.png"}).
using ItemMetadata = std::unordered_map<int64_t, std::string>;

// The user's ids of a version's items (an embed corpus's `ids:`): index ids are corpus rows
// 0..n-1; these name them as the user does.
struct ItemIdMap {
  std::vector<std::string> json_by_row;  // row -> the id as JSON text (42, "doc-7")
  std::unordered_map<std::string, int64_t> row_by_text;  // ItemIdText(id) -> row
};

struct CatalogEntry {
  std::string name;
  int64_t version = 0;   // the CURRENT version
  nlohmann::json meta;   // its meta.json
  int64_t index_bytes = 0;  // size of its index file on disk (index.bin), bytes
};

class IndexCatalog {
 public:
  // Creates `root` if needed. IoError if it cannot.
  static StatusOr<std::unique_ptr<IndexCatalog>> Open(const std::string& root,
                                                      IndexCatalogOptions options = {});

  // Writes `index` as the next version of `name` and makes it current. Returns the version.
  // `meta` (an object, e.g. {"vectors", "dim", "metric", "recall@10", "built_from"}) is
  // stored as-is plus name/version/created_unix/type/backend.
  // `items`, when given, is stored with the version (items.jsonl) and served by Items().
  // `ids`, when given, is stored with the version (ids.json; meta "item_ids": count) and
  // served by Ids(): ids[i] (a string or an integer) is the user's id of index id i; ids
  // must be distinct by ItemIdText (InvalidArgument naming the first repeat otherwise).
  StatusOr<int64_t> Publish(const std::string& name, const VectorIndex& index,
                            nlohmann::json meta, const ItemMetadata* items = nullptr,
                            const std::vector<nlohmann::json>* ids = nullptr);

  // The current version of `name` (loaded on first use, cached, reloaded when CURRENT
  // changes). NotFound if `name` was never published.
  StatusOr<std::shared_ptr<const VectorIndex>> Current(const std::string& name);

  // The item metadata of the current version of `name` (empty when it has none); cached
  // like Current(). NotFound if `name` was never published.
  StatusOr<std::shared_ptr<const ItemMetadata>> Items(const std::string& name);

  // The user's item ids of the current version of `name` (null when it has none); cached
  // like Current(). NotFound if `name` was never published; IoError for a damaged ids.json.
  StatusOr<std::shared_ptr<const ItemIdMap>> Ids(const std::string& name);

  // Every published name with its current version and meta, sorted by name.
  StatusOr<std::vector<CatalogEntry>> List() const;

  // Versions present on disk for `name`, ascending (for tests and operators).
  StatusOr<std::vector<int64_t>> Versions(const std::string& name) const;

  const std::string& root() const { return root_; }

 private:
  struct Cached {
    int64_t version = 0;
    std::shared_ptr<const VectorIndex> index;
  };
  struct CachedItems {
    int64_t version = 0;
    std::shared_ptr<const ItemMetadata> items;
  };
  struct CachedIds {
    int64_t version = 0;
    std::shared_ptr<const ItemIdMap> ids;  // null: the version has none
  };
  IndexCatalog(std::string root, IndexCatalogOptions options);
  std::string Dir(const std::string& name) const;
  StatusOr<int64_t> ReadCurrent(const std::string& name) const;
  Status WriteVersion(const std::string& name, int64_t version, const VectorIndex& index,
                      nlohmann::json meta, const ItemMetadata* items,
                      const std::vector<nlohmann::json>* ids);
  void Prune(const std::string& name, int64_t newest);

  const std::string root_;
  const IndexCatalogOptions options_;
  std::mutex publish_mu_;          // serialises Publish
  mutable std::mutex cache_mu_;    // guards cache_
  std::map<std::string, Cached> cache_;
  std::map<std::string, CachedItems> items_cache_;  // guarded by cache_mu_
  std::map<std::string, CachedIds> ids_cache_;      // guarded by cache_mu_
};

}  // namespace lattice::store
