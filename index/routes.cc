#include "index/routes.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cctype>
#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/histogram.h>

#include "common/item_id.h"
#include "index/search_request.h"
#include "monitoring/metrics.h"
#include "store/retrieval_metrics.h"

namespace lattice {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct IndexMetrics {
  explicit IndexMetrics(prometheus::Registry& r)
      : search_seconds(prometheus::BuildHistogram()
                           .Name("lattice_index_search_seconds")
                           .Help("Server time of one index search request (parse, search, "
                                 "serialise), seconds")
                           .Register(r)
                           .Add({}, prometheus::Histogram::BucketBoundaries{
                                        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                        0.025, 0.05, 0.1, 0.25, 1, 5})),
        queries(prometheus::BuildCounter()
                    .Name("lattice_index_queries_total")
                    .Help("Queries answered by the index search API (a batch counts each)")
                    .Register(r)
                    .Add({})) {}
  prometheus::Histogram& search_seconds;
  prometheus::Counter& queries;
};

json EntryJson(const store::CatalogEntry& entry) {
  json j = entry.meta.is_object() ? entry.meta : json::object();
  j["name"] = entry.name;
  j["version"] = entry.version;
  j["index_bytes"] = entry.index_bytes;
  if (!j.contains("created_ms") && j.contains("created_unix") && j["created_unix"].is_number()) {
    j["created_ms"] = static_cast<int64_t>(j["created_unix"].get<double>() * 1000);
  }
  return j;
}

// The serving process's memory, for callers that size a deployment.
json ServerJson() {
  const int64_t rss = ResidentBytes();  // sampled apart from the peak: keep peak >= rss
  return {{"rss_bytes", rss}, {"peak_rss_bytes", std::max(rss, PeakResidentBytes())}};
}

StatusOr<store::CatalogEntry> FindEntry(store::IndexCatalog* catalog, const std::string& name) {
  LATTICE_ASSIGN_OR_RETURN(auto entries, catalog->List());
  for (auto& e : entries) {
    if (e.name == name) return std::move(e);
  }
  return Status::NotFound("index \"" + name + "\": not published");
}

// Each item's stored vector, row by row.
StatusOr<std::vector<float>> ItemVectors(const store::VectorIndex& index, const std::string& name,
                                         const std::vector<int64_t>& items) {
  std::vector<float> out;
  out.reserve(items.size() * static_cast<size_t>(index.dim()));
  for (size_t i = 0; i < items.size(); ++i) {
    auto v = index.Reconstruct(items[i]);
    if (!v.ok()) {
      if (v.status().code() != StatusCode::kNotFound) return v.status();
      return Status::NotFound("items[" + std::to_string(i) + "]: item " +
                              std::to_string(items[i]) + " is not in index \"" + name + "\"");
    }
    out.insert(out.end(), v->begin(), v->end());
  }
  return out;
}

void AppendInt(std::string& out, int64_t v) {
  char buf[24];
  out.append(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
}

void AppendFloat(std::string& out, float v) {
  char buf[32];
  out.append(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
}

// The index rows (corpus rows) of a request's items. Without user ids (`ids` null) items
// are rows: integers, or strings holding one; with them, each item is looked up by its text.
StatusOr<std::vector<int64_t>> ItemRows(const SearchRequest& sr, const store::ItemIdMap* ids,
                                        const std::string& name) {
  if (ids == nullptr && sr.item_names.empty()) return sr.items;
  std::vector<std::string> names = sr.item_names;
  if (names.empty()) {
    for (int64_t item : sr.items) names.push_back(std::to_string(item));
  }
  std::vector<int64_t> rows;
  rows.reserve(names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string at = "items[" + std::to_string(i) + "]: ";
    if (ids == nullptr) {
      const std::optional<int64_t> row = ParseRowNumber(names[i]);
      if (!row) {
        return Status::InvalidArgument(at + "'" + names[i] + "' is not an item of index \"" +
                                       name + "\": it has no item ids of its own (its items " +
                                       "are row numbers; an embed spec's corpus.ids names them)");
      }
      rows.push_back(*row);
      continue;
    }
    auto it = ids->row_by_text.find(names[i]);
    if (it == ids->row_by_text.end()) {
      return Status::NotFound(at + "item '" + names[i] + "' is not in index \"" + name + "\"");
    }
    rows.push_back(it->second);
  }
  return rows;
}

// {"results": [...], "took_ms": ...} written directly (no DOM). Padding (-1) is dropped;
// with `items` (rows), row q also drops items[q] and keeps at most k hits. With user ids
// (`ids` non-null) each hit's id is the user's (a JSON integer or string), else its row.
// With item metadata (`meta` non-empty), each row also has "metadata": one object (or
// null) per hit.
std::string ResultsJson(const store::SearchResult& r, const std::vector<int64_t>& items, int k,
                        const store::ItemIdMap* ids, const store::ItemMetadata* meta,
                        Clock::time_point start) {
  std::string out;
  out.reserve(static_cast<size_t>(r.nq) * static_cast<size_t>(r.k) * 20 + 64);
  out += "{\"results\":[";
  std::vector<size_t> keep;
  for (int64_t q = 0; q < r.nq; ++q) {
    keep.clear();
    const size_t row = static_cast<size_t>(q) * static_cast<size_t>(r.k);
    bool dropped = false;
    for (size_t j = row; j < row + static_cast<size_t>(r.k); ++j) {
      if (r.ids[j] < 0 || static_cast<int>(keep.size()) == k) continue;
      if (!items.empty() && !dropped && r.ids[j] == items[static_cast<size_t>(q)]) {
        dropped = true;
        continue;
      }
      keep.push_back(j);
    }
    if (q > 0) out += ',';
    out += "{\"ids\":[";
    for (size_t i = 0; i < keep.size(); ++i) {
      if (i > 0) out += ',';
      const int64_t row = r.ids[keep[i]];
      if (ids != nullptr && row < static_cast<int64_t>(ids->json_by_row.size())) {
        out += ids->json_by_row[static_cast<size_t>(row)];
      } else {
        AppendInt(out, row);
      }
    }
    out += "],\"distances\":[";
    for (size_t i = 0; i < keep.size(); ++i) {
      if (i > 0) out += ',';
      AppendFloat(out, r.distances[keep[i]]);
    }
    if (meta != nullptr && !meta->empty()) {
      out += "],\"metadata\":[";
      for (size_t i = 0; i < keep.size(); ++i) {
        if (i > 0) out += ',';
        auto it = meta->find(r.ids[keep[i]]);
        out += it == meta->end() ? "null" : it->second;
      }
    }
    out += "]}";
  }
  out += "],\"took_ms\":";
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  out += json(std::round(ms * 1000) / 1000).dump();
  out += '}';
  return out;
}

// "application/octet-stream", any case, parameters allowed.
bool IsOctetStream(const std::string& content_type) {
  constexpr std::string_view kType = "application/octet-stream";
  if (content_type.size() < kType.size()) return false;
  for (size_t i = 0; i < kType.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(content_type[i])) != kType[i]) return false;
  }
  return content_type.size() == kType.size() || content_type[kType.size()] == ';' ||
         content_type[kType.size()] == ' ';
}

HttpResponse Search(store::IndexCatalog* catalog, const IndexApiOptions& options,
                    IndexMetrics* metrics, HttpRequest& req) {
  const Clock::time_point start = Clock::now();
  const std::string& name = req.path_params["name"];
  auto index = catalog->Current(name);
  if (!index.ok()) return HttpResponse::FromStatus(index.status());
  const store::VectorIndex& ix = **index;
  SearchRequestLimits limits;
  limits.dim = ix.dim();
  limits.max_k = std::min(options.max_k, store::kMaxSearchK);
  limits.max_batch = options.max_batch;
  limits.max_ef_search = options.max_ef_search;
  limits.max_nprobe = options.max_nprobe;
  limits.max_query_work = options.max_query_work;
  auto parsed = IsOctetStream(req.content_type)
                    ? ParseBinarySearchRequest(req.body, req.query, limits)
                    : ParseSearchRequest(req.body, limits);
  if (!parsed.ok()) return HttpResponse::FromStatus(parsed.status());
  SearchRequest& sr = *parsed;
  // The version's user ids (a publish between this lookup and Current() can pair a new
  // version's ids with the old index for one request, as for the metadata below).
  auto ids = catalog->Ids(name);
  if (!ids.ok()) return HttpResponse::FromStatus(ids.status());
  int search_k = sr.k;
  if (sr.by_items()) {
    auto rows = ItemRows(sr, ids->get(), name);
    if (!rows.ok()) return HttpResponse::FromStatus(rows.status());
    sr.items = std::move(rows).value();
    auto vectors = ItemVectors(ix, name, sr.items);
    if (!vectors.ok()) return HttpResponse::FromStatus(vectors.status());
    sr.vectors = std::move(vectors).value();
    search_k = std::min(sr.k + 1, store::kMaxSearchK);  // room for the item itself
  }
  auto result = sr.params.exact ? store::ExactSearch(ix, sr.vectors.data(), sr.nq, search_k)
                                : ix.Search(sr.vectors.data(), sr.nq, search_k, sr.params);
  if (!result.ok()) return HttpResponse::FromStatus(result.status());
  // Metadata of the current version (a publish between the two lookups can pair a new
  // version's metadata with the old index for one request; ids are corpus rows either way).
  auto item_meta = catalog->Items(name);
  HttpResponse response;
  response.body = ResultsJson(*result, sr.items, sr.k, ids->get(),
                              item_meta.ok() ? item_meta->get() : nullptr, start);
  if (metrics != nullptr) {
    metrics->search_seconds.Observe(
        std::chrono::duration<double>(Clock::now() - start).count());
    metrics->queries.Increment(static_cast<double>(sr.nq));
  }
  return response;
}

}  // namespace

void AddIndexRoutes(Router& router, store::IndexCatalog* catalog,
                    const IndexApiOptions& options) {
  std::shared_ptr<IndexMetrics> metrics;
  if (options.registry != nullptr) metrics = std::make_shared<IndexMetrics>(*options.registry);
  router.Add("GET", "/v1/indexes", [catalog](HttpRequest&) {
    auto entries = catalog->List();
    if (!entries.ok()) return HttpResponse::FromStatus(entries.status());
    json out = json::array();
    for (const auto& e : *entries) out.push_back(EntryJson(e));
    return HttpResponse::Json(200, {{"indexes", out}, {"server", ServerJson()}});
  });
  router.Add("GET", "/v1/indexes/{name}", [catalog](HttpRequest& req) {
    const std::string& name = req.path_params["name"];
    auto entry = FindEntry(catalog, name);
    if (!entry.ok()) return HttpResponse::FromStatus(entry.status());
    auto versions = catalog->Versions(name);
    if (!versions.ok()) return HttpResponse::FromStatus(versions.status());
    json j = EntryJson(*entry);
    j["versions"] = *versions;
    j["server"] = ServerJson();
    return HttpResponse::Json(200, j);
  });
  router.Add(
      "POST", "/v1/indexes/{name}/search",
      [catalog, options, metrics](HttpRequest& req) {
        return Search(catalog, options, metrics.get(), req);
      },
      RouteOptions{/*authenticated=*/false, /*offload=*/true});
}

}  // namespace lattice
