#include "cli/index_commands.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/format.h"
#include "cli/index_eval.h"
#include "http/client.h"
#include "cli/internal/api.h"
#include "common/item_id.h"
#include "jobs/dataset.h"

namespace lattice::cli {

using nlohmann::json;
using internal::CallJson;
using internal::PrintError;

namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string IndexTarget(const std::string& name, const std::string& suffix) {
  return "/v1/indexes/" + internal::EncodePathSegment(name) + suffix;
}

StatusOr<json> PostSearch(HttpClient& client, const std::string& name, const std::string& body) {
  return CallJson(client, "POST", IndexTarget(name, "/search"), body, "application/json");
}

void AppendParams(std::string& out, const store::SearchParams& params) {
  json p = json::object();
  if (params.ef_search > 0) p["ef_search"] = params.ef_search;
  if (params.nprobe > 0) p["nprobe"] = params.nprobe;
  if (params.exact) p["exact"] = true;
  if (!p.empty()) out += ",\"params\":" + p.dump();
}


}  // namespace

std::string FormatHits(const json& response) {
  const json& results = response.at("results");
  bool with_metadata = false;
  for (const json& row : results) with_metadata = with_metadata || row.contains("metadata");
  std::vector<std::string> header = {"QUERY", "RANK", "ID", "DISTANCE"};
  if (with_metadata) header.push_back("METADATA");
  TextTable table(header);
  for (size_t q = 0; q < results.size(); ++q) {
    const json& ids = results[q].at("ids");
    const json& distances = results[q].at("distances");
    const json metadata = results[q].value("metadata", json::array());
    for (size_t j = 0; j < ids.size(); ++j) {
      std::vector<std::string> row = {std::to_string(q), std::to_string(j + 1), FormatCell(ids[j]),
                                      j < distances.size() ? FormatCell(distances[j]) : "-"};
      if (with_metadata) row.push_back(j < metadata.size() ? metadata[j].dump() : "-");
      table.AddRow(row);
    }
  }
  return table.Render();
}

std::string FormatBuiltFrom(const json& entry) {
  const auto it = entry.find("built_from");
  if (it == entry.end() || !it->is_object()) return "-";
  std::string out = FormatCell(it->value("sweep", json()));
  const std::string name = internal::StringField(*it, "name");
  if (!name.empty()) out += " (" + name + ")";
  const auto checkpoint = it->find("checkpoint");
  if (checkpoint != it->end() && checkpoint->is_object()) {
    out += " <- trial " + internal::StringField(*checkpoint, "trial");
    if (checkpoint->contains("layer")) out += " layer " + FormatCell(checkpoint->value("layer", json()));
  }
  return out;
}


// ---- pure helpers ----

StatusOr<std::vector<EvalRow>> ComputeEvalMetrics(const store::IdMatrix& retrieved,
                                                  const store::IdMatrix& truth,
                                                  const std::vector<int>& ks) {
  std::vector<EvalRow> rows;
  for (int k : ks) {
    EvalRow row;
    row.k = k;
    LATTICE_ASSIGN_OR_RETURN(row.recall, store::RecallAtK(retrieved, truth, k));
    LATTICE_ASSIGN_OR_RETURN(row.mrr, store::MrrAtK(retrieved, truth, k));
    LATTICE_ASSIGN_OR_RETURN(row.map, store::MapAtK(retrieved, truth, k));
    LATTICE_ASSIGN_OR_RETURN(row.ndcg, store::NdcgAtK(retrieved, truth, k));
    rows.push_back(row);
  }
  return rows;
}

LatencySummary SummarizeLatencies(std::vector<double> batch_ms, int64_t queries, double wall_s) {
  LatencySummary s;
  if (wall_s > 0) s.qps = static_cast<double>(queries) / wall_s;
  if (batch_ms.empty()) return s;
  std::sort(batch_ms.begin(), batch_ms.end());
  auto rank = [&](double p) {
    const size_t n = batch_ms.size();
    size_t r = static_cast<size_t>(std::ceil(p * static_cast<double>(n)));
    return batch_ms[std::min(n, std::max<size_t>(r, 1)) - 1];
  };
  s.p50_ms = rank(0.50);
  s.p95_ms = rank(0.95);
  s.p99_ms = rank(0.99);
  return s;
}

std::string SearchBody(const float* x, int64_t n, int dim, int k,
                       const store::SearchParams& params) {
  std::string out;
  out.reserve(static_cast<size_t>(n) * static_cast<size_t>(dim) * 8 + 64);
  out += "{\"k\":" + std::to_string(k);
  AppendParams(out, params);
  out += ",\"vectors\":[";
  char buf[32];
  for (int64_t i = 0; i < n; ++i) {
    out += i == 0 ? "[" : ",[";
    for (int j = 0; j < dim; ++j) {
      if (j > 0) out += ',';
      out.append(buf, std::to_chars(buf, buf + sizeof buf, x[i * dim + j]).ptr);
    }
    out += ']';
  }
  out += "]}";
  return out;
}

std::string ItemsBody(const json* items, int64_t n, int k, const store::SearchParams& params) {
  std::string out = "{\"k\":" + std::to_string(k);
  AppendParams(out, params);
  out += ",\"items\":[";
  for (int64_t i = 0; i < n; ++i) out += (i ? "," : "") + items[i].dump();
  out += "]}";
  return out;
}

json ItemIdJson(const std::string& text) {
  int64_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (!text.empty() && ec == std::errc() && end == text.data() + text.size()) return n;
  return text;
}

StatusOr<HitIds> ResultIds(const std::string& response_body, int64_t rows, int cols) {
  json body = json::parse(response_body, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object() || !body.contains("results") || !body["results"].is_array() ||
      static_cast<int64_t>(body["results"].size()) != rows) {
    return Status::Internal("search response: expected \"results\" with " +
                            std::to_string(rows) + " rows");
  }
  HitIds hits{rows, cols, std::vector<std::string>(static_cast<size_t>(rows * cols))};
  for (int64_t q = 0; q < rows; ++q) {
    const json& ids = body["results"][static_cast<size_t>(q)].value("ids", json::array());
    for (size_t j = 0; j < ids.size() && j < static_cast<size_t>(cols); ++j) {
      if (!ids[j].is_number_integer() && !ids[j].is_string()) {
        return Status::Internal("search response: bad id " + ids[j].dump());
      }
      hits.ids[static_cast<size_t>(q * cols) + j] = ItemIdText(ids[j]);
    }
  }
  return hits;
}

store::IdMatrix NumberHits(const HitIds& hits, std::unordered_map<std::string, int64_t>* numbers) {
  constexpr int64_t kFirstName = int64_t{1} << 62;
  store::IdMatrix m{hits.rows, hits.cols, std::vector<int64_t>(hits.ids.size(), -1)};
  for (size_t i = 0; i < hits.ids.size(); ++i) {
    const std::string& id = hits.ids[i];
    if (id.empty()) continue;
    int64_t n = -1;
    const auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), n);
    if (ec == std::errc() && end == id.data() + id.size() && n >= 0) {
      m.ids[i] = n;
      continue;
    }
    m.ids[i] = numbers->emplace(id, kFirstName + static_cast<int64_t>(numbers->size()))
                   .first->second;
  }
  return m;
}

StatusOr<store::FloatMatrix> LoadQueryFile(const std::string& path, int64_t limit) {
  store::FloatMatrix m;
  if (EndsWith(path, ".fvecs")) {
    LATTICE_ASSIGN_OR_RETURN(m, store::ReadFvecs(path, limit));
    return m;
  }
  jobs::FeatureMatrix f;
  if (EndsWith(path, ".npy") || EndsWith(path, ".npy.gz")) {
    LATTICE_ASSIGN_OR_RETURN(f, jobs::LoadNpyFeatures(path));
  } else {
    LATTICE_ASSIGN_OR_RETURN(f, jobs::LoadIdxImages(path));
  }
  if (limit > 0 && f.rows > limit) {
    f.rows = limit;
    f.data.resize(static_cast<size_t>(f.rows * f.cols));
  }
  m.rows = f.rows;
  m.dim = static_cast<int>(f.cols);
  m.data = std::move(f.data);
  if (m.rows == 0) return Status::InvalidArgument(path + ": no query rows");
  return m;
}

StatusOr<std::vector<int>> ParseKList(const std::string& text) {
  std::vector<int> ks;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    int k = 0;
    auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), k);
    if (ec != std::errc() || end != item.data() + item.size() || k < 1) {
      return Status::InvalidArgument("--k: expected positive integers like 1,5,10, got '" +
                                     text + "'");
    }
    ks.push_back(k);
  }
  if (ks.empty()) return Status::InvalidArgument("--k: empty list");
  return ks;
}

// ---- commands ----

int RunIndexList(const ClientOptions& options, const std::string& format, CommandIo& io) {
  auto parsed_format = ParseTrialsFormat(format);
  if (!parsed_format.ok()) return PrintError(io, parsed_format.status().message(), 1);
  auto client = internal::MakeClient(options, "");
  StatusOr<json> body = CallJson(*client, "GET", "/v1/indexes", "", "");
  if (!body.ok()) return PrintError(io, body.status().message(), 1);
  const json list = body->value("indexes", json::array());
  if (*parsed_format == TrialsFormat::kJson) {
    io.out << list.dump(2) << "\n";
    return 0;
  }
  if (list.empty() && *parsed_format == TrialsFormat::kTable) {
    io.out << "no indexes yet: an embed sweep publishes one when it completes\n";
    return 0;
  }
  TextTable table(
      {"NAME", "VERSION", "TYPE", "VECTORS", "DIM", "METRIC", "RECALL@10", "BYTES", "BUILT-FROM"});
  for (const json& e : list) {
    auto cell = [&e](const char* key) { return FormatCell(Field(e, key)); };
    table.AddRow({cell("name"), cell("version"), cell("type"), cell("vectors"), cell("dim"),
                  cell("metric"), cell("recall@10"), cell("index_bytes"), FormatBuiltFrom(e)});
  }
  io.out << (*parsed_format == TrialsFormat::kCsv ? table.RenderCsv() : table.Render());
  return 0;
}

int RunIndexSearch(const ClientOptions& options, const IndexSearchArgs& args, CommandIo& io) {
  if (args.vector_file.empty() == args.item.empty()) {
    return PrintError(io, "give exactly one of --vector-file or --item", 1);
  }
  const store::SearchParams params{args.nprobe, args.ef_search};
  std::string body;
  if (!args.item.empty()) {
    const json item = ItemIdJson(args.item);
    body = ItemsBody(&item, 1, args.k, params);
  } else {
    auto queries = LoadQueryFile(args.vector_file, 0);
    if (!queries.ok()) return PrintError(io, queries.status().message(), 1);
    body = SearchBody(queries->data.data(), queries->rows, queries->dim, args.k, params);
  }
  auto client = internal::MakeClient(options, "");
  StatusOr<json> response = PostSearch(*client, args.name, body);
  if (!response.ok()) return PrintError(io, response.status().message(), 1);
  if (args.format == "json") {
    io.out << response->dump(2) << "\n";
    return 0;
  }
  try {
    io.out << FormatHits(*response);
  } catch (const std::exception& e) {
    return PrintError(io, std::string("unexpected search response: ") + e.what(), 1);
  }
  return 0;
}

// ---- registration ----

namespace {

struct IndexCommandState {
  ClientOptions options;
  IndexSearchArgs search;
  std::string list_format = "table";
};

void AddSearchKnobs(CLI::App* sub, int* ef_search, int* nprobe) {
  sub->add_option("--ef-search", *ef_search, "HNSW candidate list size (0: index default)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--nprobe", *nprobe, "IVF lists visited (0: index default)")
      ->check(CLI::NonNegativeNumber);
}

}  // namespace

void RegisterIndexCommands(CLI::App& app, int* exit_code) {
  auto st = std::make_shared<IndexCommandState>();
  CLI::App* index = app.add_subcommand("index", "list, query and evaluate vector indexes");
  index->require_subcommand(1);

  CLI::App* list = index->add_subcommand("list", "list published indexes");
  internal::AddCommonOptions(list, &st->options);
  list->add_option("--format", st->list_format, "table | csv | json")
      ->check(CLI::IsMember({"table", "csv", "json"}))->capture_default_str();
  internal::SetRunner(list, exit_code,
                      [st](CommandIo& io) { return RunIndexList(st->options, st->list_format, io); });

  CLI::App* search = index->add_subcommand("search", "k nearest neighbours of vectors or an item");
  search->add_option("name", st->search.name, "index name")->required();
  auto* file = search->add_option("--vector-file", st->search.vector_file,
                                  "queries: .npy, .fvecs or idx3 images (.gz ok)");
  auto* item = search->add_option("--item", st->search.item, "item id: more like this item (the corpus's own ids when its spec gave ids:, else a row number)");
  file->excludes(item);
  search->add_option("--k", st->search.k, "neighbours per query")
      ->check(CLI::PositiveNumber)->capture_default_str();
  AddSearchKnobs(search, &st->search.ef_search, &st->search.nprobe);
  search->add_option("--format", st->search.format, "table | json")
      ->check(CLI::IsMember({"table", "json"}))->capture_default_str();
  internal::AddCommonOptions(search, &st->options);
  internal::SetRunner(search, exit_code,
                 [st](CommandIo& io) { return RunIndexSearch(st->options, st->search, io); });

  AddIndexEvalCommands(index, exit_code);
}

}  // namespace lattice::cli
