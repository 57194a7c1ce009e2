// `lattice index ...`: clients of the index query routes (index/routes.h), served
// by the coordinator or by `lattice serve-index` (pass its --port).
//
//   index list [--format table|csv|json]
//                                    GET /v1/indexes → table NAME VERSION TYPE VECTORS DIM
//                                    METRIC RECALL@10 BYTES BUILT-FROM (BYTES: the index
//                                    file); json: the entries as the server sends them
//   index search NAME (--vector-file F | --item ID) [--k 10] [--ef-search N] [--nprobe N]
//                                    (ids: the corpus's own, when its spec gave ids:)
//                [--format table|json]
//                                    POST /v1/indexes/NAME/search; table QUERY RANK ID DISTANCE
//   index eval / index compare       see cli/index_eval.h
// Query files: .npy (2-D), .fvecs, or MNIST idx3 images (optionally .gz).
//
// Exit codes: 0 success; 1 any error, printed as "error: <message>" on stderr.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/status.h"
#include "store/retrieval_metrics.h"
#include "store/vector_index.h"

namespace CLI {
class App;
}  // namespace CLI

namespace lattice::cli {

struct IndexSearchArgs {
  std::string name;
  // Query vectors file (--vector-file), every row is one query. Default: "" (use --item).
  std::string vector_file;
  // Item id for "more like this" (--item): the index's own item ids (a corpus's ids:), else
  // a row number; "" = not given. Default: "".
  std::string item;
  // Neighbours per query (--k). Default: 10.
  int k = 10;
  // Per-request HNSW ef / IVF nprobe (--ef-search / --nprobe); 0 = the index's default.
  int ef_search = 0;
  int nprobe = 0;
  // table | json (--format). Default: "table".
  std::string format = "table";
};

// format: "table" | "csv" | "json".
int RunIndexList(const ClientOptions& options, const std::string& format, CommandIo& io);
int RunIndexSearch(const ClientOptions& options, const IndexSearchArgs& args, CommandIo& io);

// Adds `index` with subcommands list, search, eval and compare to `app` (same conventions as
// RegisterClientCommands: *exit_code receives the exit code).
void RegisterIndexCommands(CLI::App& app, int* exit_code);

// ---- pure helpers (unit-tested) ----

struct EvalRow {
  int k = 0;
  double recall = 0, mrr = 0, map = 0, ndcg = 0;
};
// recall@k, MRR@k, MAP@k and NDCG@k of `retrieved` against exact neighbours `truth` for
// each k in `ks` (index eval's ann_* metrics).
// InvalidArgument on a shape mismatch (see store/retrieval_metrics.h).
StatusOr<std::vector<EvalRow>> ComputeEvalMetrics(const store::IdMatrix& retrieved,
                                                  const store::IdMatrix& truth,
                                                  const std::vector<int>& ks);

struct LatencySummary {
  double qps = 0;                         // queries / wall_s
  double p50_ms = 0, p95_ms = 0, p99_ms = 0;  // nearest-rank percentiles of the requests
};
LatencySummary SummarizeLatencies(std::vector<double> batch_ms, int64_t queries, double wall_s);

// The body of a search request for rows [0, n) of x (n * dim floats), shortest float text.
std::string SearchBody(const float* x, int64_t n, int dim, int k, const store::SearchParams& params);

// The same for item ids ("more like this"): {"k", "params", "items": [items[0..n)]}, each
// item an integer or a string.
std::string ItemsBody(const nlohmann::json* items, int64_t n, int k,
                      const store::SearchParams& params);

// An item id typed on the command line or read from qrels, as a search request sends it:
// an integer when the text is one (int64, decimal), else the string.
nlohmann::json ItemIdJson(const std::string& text);

// A search response's hit ids, row-major: rows x cols id texts (common/item_id.h: the
// user's ids of the index, or row numbers), "" where a query has fewer hits.
struct HitIds {
  int64_t rows = 0;
  int cols = 0;
  std::vector<std::string> ids;
};
// The response's "results" as HitIds of `cols` columns. Internal error for a malformed body.
StatusOr<HitIds> ResultIds(const std::string& response_body, int64_t rows, int cols);

// `hits` as an IdMatrix for the ANN metrics (store/retrieval_metrics.h): an id that is an
// integer >= 0 stays that number (so it compares with an .ivecs of row numbers), any other
// id gets a number from 2^62 up, the same for the same text across calls sharing `numbers`;
// "" becomes -1.
store::IdMatrix NumberHits(const HitIds& hits, std::unordered_map<std::string, int64_t>* numbers);

// The table `index search` prints for a search response: QUERY, RANK, ID, DISTANCE, and
// METADATA (each hit's JSON object) when the index has item metadata.
std::string FormatHits(const nlohmann::json& response);

// The BUILT FROM cell of `index list` for one entry of GET /v1/indexes:
// "s5 (fmnist)", or "s6 (probe) <- trial s3-t1 layer 1" for a checkpoint encoder; "-" if none.
std::string FormatBuiltFrom(const nlohmann::json& entry);

// Reads .npy / .fvecs / idx3 (by extension; .gz allowed for npy and idx). limit > 0 keeps
// the first `limit` rows.
StatusOr<store::FloatMatrix> LoadQueryFile(const std::string& path, int64_t limit);

// "1,5,10" → {1, 5, 10}; InvalidArgument for anything but positive integers.
StatusOr<std::vector<int>> ParseKList(const std::string& text);

}  // namespace lattice::cli
