#include "cli/index_eval.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <memory>
#include <optional>
#include <sstream>
#include <unordered_map>

#include <CLI/CLI.hpp>

#include "cli/index_commands.h"
#include "cli/internal/api.h"
#include "http/client.h"
#include "store/relevance_metrics.h"
#include "store/retrieval_metrics.h"

namespace lattice::cli {

using nlohmann::json;
using internal::PrintError;

namespace {

// Queries of one evaluation: by vector rows or by item ids, each with its query id.
struct QuerySet {
  std::vector<std::string> ids;
  std::vector<json> items;     // by item: ids as the search request sends them
  store::FloatMatrix vectors;  // by vector
  bool by_item = false;
  int64_t size() const { return static_cast<int64_t>(ids.size()); }
};

// Exact searches are O(vectors) per query: requests of this many queries at most.
constexpr int kExactBatch = 100;

StatusOr<QuerySet> LoadQueries(const IndexEvalArgs& args, const store::Qrels* qrels) {
  QuerySet q;
  q.by_item = args.by_item;
  if (args.by_item) {
    if (qrels == nullptr) {
      return Status::InvalidArgument("--by-item needs --qrels: its query ids are the items searched");
    }
    for (const auto& entry : qrels->judgments) {
      const std::string& qid = entry.first;
      if (args.limit > 0 && q.size() == args.limit) break;
      q.ids.push_back(qid);
      q.items.push_back(ItemIdJson(qid));
    }
    return q;
  }
  if (args.queries.empty()) {
    return Status::InvalidArgument("give --queries FILE (one query vector per row) or --by-item");
  }
  LATTICE_ASSIGN_OR_RETURN(q.vectors, LoadQueryFile(args.queries, args.limit));
  if (args.query_ids.empty()) {
    for (int64_t r = 0; r < q.vectors.rows; ++r) q.ids.push_back(std::to_string(r));
    return q;
  }
  LATTICE_ASSIGN_OR_RETURN(q.ids, ReadQueryIds(args.query_ids));
  const int64_t lines = q.size();
  if (lines < q.vectors.rows || (args.limit == 0 && lines != q.vectors.rows)) {
    return Status::InvalidArgument("--query-ids: " + args.query_ids + " has " +
                                   std::to_string(lines) + " ids but " + args.queries + " has " +
                                   std::to_string(q.vectors.rows) + " query rows");
  }
  q.ids.resize(static_cast<size_t>(q.vectors.rows));
  return q;
}

struct SearchRun {
  HitIds hits;
  std::vector<double> request_ms;
  double wall_s = 0;
};

// Sends the queries in requests of `batch` and collects the returned ids (-1 padded).
StatusOr<SearchRun> SearchAll(HttpClient& client, const std::string& name, const QuerySet& q,
                              int k, const store::SearchParams& params, int batch) {
  SearchRun run;
  run.hits = {q.size(), k, {}};
  run.hits.ids.reserve(static_cast<size_t>(q.size() * k));
  const std::string target = "/v1/indexes/" + internal::EncodePathSegment(name) + "/search";
  const auto start = std::chrono::steady_clock::now();
  for (int64_t first = 0; first < q.size(); first += batch) {
    const int64_t n = std::min<int64_t>(batch, q.size() - first);
    const std::string body =
        q.by_item ? ItemsBody(q.items.data() + first, n, k, params)
                  : SearchBody(q.vectors.data.data() + first * q.vectors.dim, n, q.vectors.dim,
                               k, params);
    const auto t0 = std::chrono::steady_clock::now();
    auto response = client.Request("POST", target, body);
    run.request_ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    if (!response.ok() || response->status != 200) {
      return internal::ParseResponse(response).status().WithContext(
          "index " + name + ": queries " + std::to_string(first) + ".." +
          std::to_string(first + n - 1));
    }
    LATTICE_ASSIGN_OR_RETURN(HitIds hits, ResultIds(response->body, n, k));
    run.hits.ids.insert(run.hits.ids.end(), hits.ids.begin(), hits.ids.end());
  }
  run.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return run;
}

StatusOr<store::IdMatrix> ReadTruth(const IndexEvalArgs& args, const QuerySet& q, int k) {
  if (q.by_item) {
    return Status::InvalidArgument("--ground-truth holds one row per query vector: use it with "
                                   "--queries, or use --exact with --by-item");
  }
  LATTICE_ASSIGN_OR_RETURN(store::IdMatrix truth, store::ReadIvecs(args.ground_truth, q.size()));
  if (truth.rows < q.size() || truth.cols < k) {
    return Status::InvalidArgument(args.ground_truth + ": has " + std::to_string(truth.rows) +
                                   " rows of " + std::to_string(truth.cols) + " ids; need " +
                                   std::to_string(q.size()) + " rows of at least " +
                                   std::to_string(k));
  }
  return truth;
}

std::optional<double> Find(const IndexEvaluation& e, const std::string& name) {
  for (const auto& [n, v] : e.metrics) {
    if (n == name) return v;
  }
  return std::nullopt;
}

std::string Fixed(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

std::string Mib(int64_t bytes) { return Fixed(static_cast<double>(bytes) / (1 << 20), 1) + " MiB"; }

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// The object of one index in JSON output.
json EvaluationJson(const IndexEvaluation& e) {
  json j = {{"index", e.index},         {"queries", e.queries},
            {"evaluated", e.evaluated}, {"without_relevant", e.without_relevant},
            {"without_judgments", e.without_judgments}, {"batch", e.batch}};
  for (const auto& [name, value] : e.metrics) j[name] = value;
  j.update(e.server);
  return j;
}

// Every column of `rows` in first-seen order: the counts, metrics, then server fields.
std::vector<std::string> Columns(const std::vector<IndexEvaluation>& rows) {
  std::vector<std::string> cols = {"index", "queries", "evaluated"};
  auto add = [&cols](const std::string& c) {
    if (std::find(cols.begin(), cols.end(), c) == cols.end()) cols.push_back(c);
  };
  for (const auto& r : rows) {
    for (const auto& m : r.metrics) add(m.first);
  }
  for (const auto& r : rows) {
    for (const auto& [key, value] : r.server.items()) add(key);
  }
  return cols;
}

}  // namespace

StatusOr<std::vector<std::string>> ReadQueryIds(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("--query-ids: " + path + ": cannot open");
  std::vector<std::string> ids;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    const size_t b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos) {
      return Status::InvalidArgument("--query-ids: " + path + ": line " + std::to_string(n) +
                                     " is empty (one query id per line, line i for row i)");
    }
    ids.push_back(line.substr(b, line.find_last_not_of(" \t\r") + 1 - b));
  }
  return ids;
}

StatusOr<IndexEvaluation> EvaluateIndex(const ClientOptions& options, const IndexEvalArgs& args,
                                        const store::Qrels* qrels) {
  if (qrels == nullptr && !args.exact && args.ground_truth.empty()) {
    return Status::InvalidArgument("nothing to measure: give --qrels FILE (relevance judgments), "
                                   "--exact (ANN recall against exact search on the server) or "
                                   "--ground-truth GT.ivecs");
  }
  if (args.exact && !args.ground_truth.empty()) {
    return Status::InvalidArgument("give --exact or --ground-truth, not both");
  }
  if (args.ks.empty()) return Status::InvalidArgument("--k: at least one cutoff is needed");
  if (args.batch < 1) return Status::InvalidArgument("--batch must be >= 1");
  const int k = *std::max_element(args.ks.begin(), args.ks.end());
  LATTICE_ASSIGN_OR_RETURN(QuerySet q, LoadQueries(args, qrels));
  if (q.size() == 0) return Status::InvalidArgument("no queries to search");
  std::optional<store::IdMatrix> truth;
  if (!args.ground_truth.empty()) {
    LATTICE_ASSIGN_OR_RETURN(truth, ReadTruth(args, q, k));
  }

  auto client = internal::MakeClient(options, "");
  IndexEvaluation e;
  e.index = args.name;
  e.queries = q.size();
  e.batch = args.batch;
  const std::string target = "/v1/indexes/" + internal::EncodePathSegment(args.name);
  LATTICE_ASSIGN_OR_RETURN(json entry, internal::CallJson(*client, "GET", target, "", ""));

  store::SearchParams params{args.nprobe, args.ef_search};
  LATTICE_ASSIGN_OR_RETURN(SearchRun run, SearchAll(*client, args.name, q, k, params, args.batch));
  std::unordered_map<std::string, int64_t> numbers;  // ids that are no row numbers
  const store::IdMatrix found = NumberHits(run.hits, &numbers);
  if (args.exact) {
    params.exact = true;
    LATTICE_ASSIGN_OR_RETURN(SearchRun exact, SearchAll(*client, args.name, q, k, params,
                                                        kExactBatch));
    truth = NumberHits(exact.hits, &numbers);
  }

  if (qrels != nullptr) {
    std::vector<store::RankedList> lists(static_cast<size_t>(q.size()));
    for (int64_t i = 0; i < q.size(); ++i) {
      lists[static_cast<size_t>(i)].query = q.ids[static_cast<size_t>(i)];
      for (int j = 0; j < k; ++j) {
        const std::string& id = run.hits.ids[static_cast<size_t>(i * k + j)];
        if (!id.empty()) lists[static_cast<size_t>(i)].items.push_back(id);
      }
    }
    LATTICE_ASSIGN_OR_RETURN(
        store::RelevanceReport report,
        store::EvaluateRankings(lists, *qrels, store::RelevanceOptions{args.relevant_at, args.ks}));
    if (report.queries == 0) {
      return Status::InvalidArgument(
          args.qrels + ": none of the " + std::to_string(q.size()) +
          " queries has a judged item with grade >= " + std::to_string(args.relevant_at) +
          " (query ids " + (q.by_item ? "are the qrels' own" : "come from --query-ids or are row "
                                                               "numbers 0, 1, ...") + ")");
    }
    for (size_t i = 0; i < report.names.size(); ++i) {
      e.metrics.emplace_back(report.names[i], report.means[i]);
    }
    e.evaluated = report.queries;
    e.without_relevant = report.without_relevant;
    e.without_judgments = report.without_judgments;
  }
  if (truth) {
    store::IdMatrix cut = *truth;  // an .ivecs may hold more than k columns
    if (cut.cols != k) {
      store::IdMatrix narrowed{cut.rows, k, {}};
      for (int64_t r = 0; r < cut.rows; ++r) {
        const auto row = cut.ids.begin() + r * cut.cols;
        narrowed.ids.insert(narrowed.ids.end(), row, row + k);
      }
      cut = std::move(narrowed);
    }
    cut.rows = q.size();
    cut.ids.resize(static_cast<size_t>(q.size() * k));
    LATTICE_ASSIGN_OR_RETURN(std::vector<EvalRow> rows, ComputeEvalMetrics(found, cut, args.ks));
    for (const EvalRow& r : rows) e.metrics.emplace_back("ann_recall@" + std::to_string(r.k), r.recall);
    for (const EvalRow& r : rows) e.metrics.emplace_back("ann_mrr@" + std::to_string(r.k), r.mrr);
    for (const EvalRow& r : rows) e.metrics.emplace_back("ann_map@" + std::to_string(r.k), r.map);
    for (const EvalRow& r : rows) e.metrics.emplace_back("ann_ndcg@" + std::to_string(r.k), r.ndcg);
  }
  const LatencySummary lat = SummarizeLatencies(run.request_ms, q.size(), run.wall_s);
  e.metrics.emplace_back("latency_p50_ms", lat.p50_ms);
  e.metrics.emplace_back("latency_p95_ms", lat.p95_ms);
  e.metrics.emplace_back("latency_p99_ms", lat.p99_ms);
  e.metrics.emplace_back("qps", lat.qps);
  e.server["index_bytes"] = entry.value("index_bytes", json());
  e.server["server_peak_rss_bytes"] = Field(Field(entry, "server"), "peak_rss_bytes");
  return e;
}

std::string FormatEvaluation(const IndexEvaluation& e, const IndexEvalArgs& args,
                             TrialsFormat format) {
  if (format == TrialsFormat::kJson) return EvaluationJson(e).dump(2) + "\n";
  if (format == TrialsFormat::kCsv) {
    std::string out = "metric,value\n";
    const json fields = EvaluationJson(e);
    for (const auto& [key, value] : fields.items()) {
      out += CsvEscape(key) + "," + CsvEscape(value.is_string() ? value.get<std::string>()
                                                                : value.dump()) + "\n";
    }
    return out;
  }
  std::ostringstream out;
  out << "index " << e.index << ": " << e.queries << " queries ("
      << (args.by_item ? "by item" : "rows of " + args.queries) << ")";
  if (!args.qrels.empty()) {
    out << "; relevant: grade >= " << args.relevant_at << "; " << e.evaluated << " evaluated";
    if (e.without_relevant > 0) out << ", " << e.without_relevant << " without a relevant item";
    if (e.without_judgments > 0) out << ", " << e.without_judgments << " without judgments";
    if (e.without_relevant + e.without_judgments > 0) out << " (left out)";
  }
  out << "\n";
  std::vector<std::string> families;
  for (const char* f : {"recall", "hit", "precision", "ndcg", "ann_recall", "ann_mrr", "ann_map",
                        "ann_ndcg"}) {
    if (Find(e, std::string(f) + "@" + std::to_string(args.ks[0]))) families.push_back(f);
  }
  std::vector<std::string> header = {"K"};
  for (const auto& f : families) header.push_back(Upper(f));
  TextTable table(header);
  for (int k : args.ks) {
    std::vector<std::string> row = {std::to_string(k)};
    for (const auto& f : families) row.push_back(Fixed(*Find(e, f + "@" + std::to_string(k)), 4));
    table.AddRow(row);
  }
  out << table.Render();
  const std::string depth = std::to_string(*std::max_element(args.ks.begin(), args.ks.end()));
  if (auto mrr = Find(e, "mrr@" + depth)) {
    out << "MRR@" << depth << " " << Fixed(*mrr, 4) << "  MAP@" << depth << " "
        << Fixed(*Find(e, "map@" + depth), 4) << "\n";
  }
  out << "latency " << (e.batch == 1 ? "per query (batch 1" : "per batch (batches of " +
                                                                  std::to_string(e.batch))
      << ", client side): P50 " << Fixed(*Find(e, "latency_p50_ms"), 2) << " ms, P95 "
      << Fixed(*Find(e, "latency_p95_ms"), 2) << " ms, P99 "
      << Fixed(*Find(e, "latency_p99_ms"), 2) << " ms; " << Fixed(*Find(e, "qps"), 1) << " QPS\n";
  const json& bytes = Field(e.server, "index_bytes");
  const json& rss = Field(e.server, "server_peak_rss_bytes");
  if (bytes.is_number_integer() && rss.is_number_integer()) {
    out << "index file " << Mib(bytes.get<int64_t>()) << "; peak RSS of the serving process "
        << Mib(rss.get<int64_t>()) << "\n";
  }
  return out.str();
}

std::string FormatComparison(const std::vector<IndexEvaluation>& rows, TrialsFormat format) {
  if (format == TrialsFormat::kJson) {
    json out = json::array();
    for (const auto& r : rows) out.push_back(EvaluationJson(r));
    return out.dump(2) + "\n";
  }
  const std::vector<std::string> cols = Columns(rows);
  std::vector<std::vector<std::string>> cells;
  for (const auto& r : rows) {
    const json j = EvaluationJson(r);
    std::vector<std::string> line;
    for (const auto& c : cols) {
      const json& v = Field(j, c.c_str());
      if (format == TrialsFormat::kCsv) {
        line.push_back(v.is_null() ? "" : v.is_string() ? v.get<std::string>() : v.dump());
      } else if (v.is_number_float()) {
        line.push_back(Fixed(v.get<double>(), c.rfind("latency", 0) == 0 ? 2 : 4));
      } else if (v.is_number_integer() && c.size() > 6 && c.substr(c.size() - 6) == "_bytes") {
        line.push_back(Mib(v.get<int64_t>()));
      } else {
        line.push_back(FormatCell(v));
      }
    }
    cells.push_back(std::move(line));
  }
  std::vector<std::string> header = cols;
  if (format == TrialsFormat::kTable) {
    for (auto& c : header) c = Upper(c);
  }
  TextTable table(header);
  for (auto& line : cells) table.AddRow(std::move(line));
  return format == TrialsFormat::kCsv ? table.RenderCsv() : table.Render();
}

int RunIndexEval(const ClientOptions& options, const IndexEvalArgs& args, CommandIo& io) {
  auto format = ParseTrialsFormat(args.format);
  if (!format.ok()) return PrintError(io, format.status().message(), 1);
  std::optional<store::Qrels> qrels;
  if (!args.qrels.empty()) {
    auto read = store::ReadQrelsFile(args.qrels);
    if (!read.ok()) return PrintError(io, "--qrels: " + read.status().message(), 1);
    qrels = std::move(read).value();
  }
  auto e = EvaluateIndex(options, args, qrels ? &*qrels : nullptr);
  if (!e.ok()) return PrintError(io, e.status().message(), 1);
  io.out << FormatEvaluation(*e, args, *format);
  return 0;
}

int RunIndexCompare(const ClientOptions& options, const IndexCompareArgs& args, CommandIo& io) {
  auto format = ParseTrialsFormat(args.eval.format);
  if (!format.ok()) return PrintError(io, format.status().message(), 1);
  if (args.names.empty()) return PrintError(io, "name at least one index", 1);
  if (args.eval.qrels.empty() && !args.eval.exact) {
    return PrintError(io, "nothing to compare: give --qrels FILE (relevance judgments) and/or "
                          "--exact (ANN recall against exact search)", 1);
  }
  if (!args.queries.empty() && args.queries.size() != args.names.size()) {
    return PrintError(io, "--queries: give one query file per index (" +
                              std::to_string(args.names.size()) + " indexes, " +
                              std::to_string(args.queries.size()) + " files), or none to search "
                              "by item", 1);
  }
  std::optional<store::Qrels> qrels;
  if (!args.eval.qrels.empty()) {
    auto read = store::ReadQrelsFile(args.eval.qrels);
    if (!read.ok()) return PrintError(io, "--qrels: " + read.status().message(), 1);
    qrels = std::move(read).value();
  }
  std::vector<IndexEvaluation> rows;
  for (size_t i = 0; i < args.names.size(); ++i) {
    IndexEvalArgs one = args.eval;
    one.name = args.names[i];
    one.by_item = args.queries.empty();
    one.queries = args.queries.empty() ? "" : args.queries[i];
    auto e = EvaluateIndex(options, one, qrels ? &*qrels : nullptr);
    if (!e.ok()) return PrintError(io, e.status().message(), 1);
    // ANN recall only: the other ann_* columns would double the table's width.
    std::vector<std::pair<std::string, double>> kept;
    for (auto& m : e->metrics) {
      if (m.first.rfind("ann_", 0) != 0 || m.first.rfind("ann_recall@", 0) == 0) {
        kept.push_back(m);
      }
    }
    e->metrics = std::move(kept);
    rows.push_back(std::move(e).value());
  }
  io.out << FormatComparison(rows, *format);
  return 0;
}

// ---- registration ----

namespace {

struct EvalCommandState {
  ClientOptions options;
  IndexEvalArgs eval;
  IndexCompareArgs compare;
  std::string ks = "1,3,5,10";
};

// The options eval and compare share.
void AddMeasureOptions(CLI::App* sub, IndexEvalArgs* args, std::string* ks) {
  sub->add_option("--qrels", args->qrels,
                  "relevance judgments: TREC lines 'qid 0 docid grade' or JSON "
                  "{qid: {docid: grade}}; docids are item ids");
  sub->add_option("--relevant-at", args->relevant_at,
                  "grade at or above which an item counts as relevant (binary metrics; NDCG "
                  "uses the grades)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  sub->add_flag("--exact", args->exact,
                "also search exactly (brute force) on the server and report ann_recall@k");
  sub->add_option("--k", *ks, "cutoffs, comma-separated")->capture_default_str();
  sub->add_option("--limit", args->limit, "use only the first N queries (0: all)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--batch", args->batch,
                  "queries per timed request (1: per-query latency)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  sub->add_option("--ef-search", args->ef_search, "HNSW candidate list size (0: index default)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--nprobe", args->nprobe, "IVF lists visited (0: index default)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--query-ids", args->query_ids,
                  "query ids, one per line (line i names query row i; default: row numbers)");
  sub->add_option("--format", args->format, "table | csv | json")
      ->check(CLI::IsMember({"table", "csv", "json"}))->capture_default_str();
}

}  // namespace

void AddIndexEvalCommands(CLI::App* index, int* exit_code) {
  auto st = std::make_shared<EvalCommandState>();
  CLI::App* eval = index->add_subcommand(
      "eval", "retrieval quality of an index: judged metrics (--qrels), ANN recall (--exact), "
              "latency and memory");
  eval->add_option("name", st->eval.name, "index name")->required();
  auto* queries = eval->add_option("--queries", st->eval.queries,
                                   "query vectors: .npy, .fvecs or idx3 images (.gz ok); row i "
                                   "is query i");
  auto* by_item = eval->add_flag("--by-item", st->eval.by_item,
                                 "the qrels' query ids are item ids: search with each item's "
                                 "stored vector");
  queries->excludes(by_item);
  eval->add_option("--ground-truth", st->eval.ground_truth,
                   ".ivecs of exact nearest item ids per query row (or use --exact)");
  AddMeasureOptions(eval, &st->eval, &st->ks);
  internal::AddCommonOptions(eval, &st->options);
  internal::SetRunner(eval, exit_code, [st](CommandIo& io) {
    auto ks = ParseKList(st->ks);
    if (!ks.ok()) return PrintError(io, ks.status().message(), 1);
    st->eval.ks = *ks;
    return RunIndexEval(st->options, st->eval, io);
  });

  CLI::App* compare = index->add_subcommand(
      "compare", "one table comparing indexes (embedding variants) on the same judgments");
  compare->add_option("names", st->compare.names, "index names")->required()->expected(1, -1);
  compare->add_option("--queries", st->compare.queries,
                      "query vectors, one file per index in order (default: search by item, "
                      "the qrels' query ids being item ids)");
  AddMeasureOptions(compare, &st->compare.eval, &st->ks);
  internal::AddCommonOptions(compare, &st->options);
  internal::SetRunner(compare, exit_code, [st](CommandIo& io) {
    auto ks = ParseKList(st->ks);
    if (!ks.ok()) return PrintError(io, ks.status().message(), 1);
    st->compare.eval.ks = *ks;
    return RunIndexCompare(st->options, st->compare, io);
  });
}

}  // namespace lattice::cli
