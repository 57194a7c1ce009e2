// `lattice index eval` and `lattice index compare`: retrieval quality of published indexes
// as IR teams measure it, against relevance judgments (store/qrels.h, metrics with
// trec_eval's definitions in store/relevance_metrics.h), and ANN recall against exact
// search on the server (POST /v1/indexes/{name}/search with params.exact) or an .ivecs
// ground-truth file.
//
//   index eval NAME (--queries F [--query-ids F] | --by-item)
//                   [--qrels F [--relevant-at 1]] [--exact | --ground-truth GT.ivecs]
//                   [--k 1,3,5,10] [--limit N] [--batch 1] [--ef-search N] [--nprobe N]
//                   [--format table|csv|json]
//   index compare A B C ... --qrels F [--relevant-at 1] [--exact] [--k ...] [--format ...]
//                   [--queries FA --queries FB ... (one per index, in order) | --by-item]
//
// Queries: rows of a vector file (.npy, .fvecs, idx3; query i = row i, its id the row
// number or line i of --query-ids), or --by-item: each query id of the qrels is an item id
// of the index, searched with that item's stored vector (the item itself is left out of
// its hits). compare defaults to --by-item (different embeddings need different query
// vectors).
//
// What is reported (names as in the JSON / CSV):
//   recall@k hit@k precision@k ndcg@k mrr@D map@D   with --qrels (D = max k)
//   ann_recall@k ann_mrr@k ann_map@k ann_ndcg@k     with --exact or --ground-truth: the
//       ANN hits against the exact nearest neighbours (store/retrieval_metrics.h)
//   latency_p50_ms latency_p95_ms latency_p99_ms qps   client-side, per request; a request
//       holds one query at --batch 1 (the default: per-query latency), else up to
//       --batch queries (labelled "per batch of N")
//   index_bytes (the index file), server_peak_rss_bytes (the serving process's high-water
//       resident memory), from GET /v1/indexes/{name}
//   queries, without_relevant, without_judgments (see store/relevance_metrics.h: queries
//       with no judged item at or above --relevant-at are left out of the means)
//
// Exit codes: 0 success; 1 any error, printed as "error: <message>" on stderr.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/format.h"
#include "common/status.h"
#include "store/qrels.h"

namespace CLI {
class App;
}  // namespace CLI

namespace lattice::cli {

struct IndexEvalArgs {
  std::string name;
  // Query vectors file (--queries); "" with --by-item. Default: "".
  std::string queries;
  // Query ids, one per line, line i for row i (--query-ids). Default: "" (row numbers).
  std::string query_ids;
  // Queries are the qrels' query ids, each an item id of the index (--by-item).
  bool by_item = false;
  // Relevance judgments, TREC or JSON (--qrels). Default: "" (none).
  std::string qrels;
  // Grade at or above which an item is relevant for the binary metrics (--relevant-at).
  // Default: 1.
  int relevant_at = 1;
  // Exact neighbours as .ivecs (--ground-truth). Default: "".
  std::string ground_truth;
  // ANN recall against exact search on the server (--exact). Default: false.
  bool exact = false;
  // Cutoffs (--k); the search asks for max(ks). Default: {1, 3, 5, 10}.
  std::vector<int> ks = {1, 3, 5, 10};
  // Use only the first N queries (--limit); 0 = all. Default: 0.
  int64_t limit = 0;
  // Queries per timed request (--batch). Default: 1.
  int batch = 1;
  int ef_search = 0;
  int nprobe = 0;
  // table | csv | json (--format). Default: "table".
  std::string format = "table";
};

// One index's results, metrics in report order.
struct IndexEvaluation {
  std::string index;
  std::vector<std::pair<std::string, double>> metrics;
  int64_t queries = 0;            // queries searched
  int64_t evaluated = 0;          // queries averaged for the judged metrics
  int64_t without_relevant = 0;
  int64_t without_judgments = 0;
  int batch = 1;
  nlohmann::json server = nlohmann::json::object();  // index_bytes, server_peak_rss_bytes
};

// Searches `args.name` with the queries of `args` and computes everything asked for.
// `qrels` may be null (no --qrels). Errors name the flag or file.
StatusOr<IndexEvaluation> EvaluateIndex(const ClientOptions& options, const IndexEvalArgs& args,
                                        const store::Qrels* qrels);

int RunIndexEval(const ClientOptions& options, const IndexEvalArgs& args, CommandIo& io);

struct IndexCompareArgs {
  std::vector<std::string> names;
  // One query vectors file per index, in order (--queries, repeated); empty: by item.
  std::vector<std::string> queries;
  // Every other field as for eval (its name, queries and by_item are ignored).
  IndexEvalArgs eval;
};
int RunIndexCompare(const ClientOptions& options, const IndexCompareArgs& args, CommandIo& io);

// ---- pure helpers (unit-tested) ----

// The comparison as one table: rows = indexes, columns = INDEX, QUERIES, then every
// metric; table numbers with 4 decimals, csv / json full precision (json: an array of
// objects {"index", "queries", "evaluated", ..., "<metric>": value}).
std::string FormatComparison(const std::vector<IndexEvaluation>& rows, TrialsFormat format);

// One index's report: table (per-k rows, then the depth metrics, latency and memory
// lines), csv (metric,value) or json (the object of FormatComparison's array).
std::string FormatEvaluation(const IndexEvaluation& e, const IndexEvalArgs& args,
                             TrialsFormat format);

// Query ids from a text file: one per line, surrounding blanks trimmed; an empty line is
// an error naming it.
StatusOr<std::vector<std::string>> ReadQueryIds(const std::string& path);

// Adds `eval` and `compare` under the `index` subcommand.
void AddIndexEvalCommands(CLI::App* index, int* exit_code);

}  // namespace lattice::cli
