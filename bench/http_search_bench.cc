// http_search_bench: the index query service (POST /v1/indexes/{name}/search)
// against its floor, in-process VectorIndex::Search on the very same index
// object, at 60,000 vectors.
//
//   1. build HNSW (hnswlib, M 16, ef_construction 100, ef_search 32) over the
//   Fashion-MNIST
//      training images (ids = rows), publish it to a temporary IndexCatalog and
//      take it back with Current() — the object the HTTP routes serve;
//   2. start an HttpServer in this process with AddIndexRoutes (2 io threads);
//   3. the 10,000 test images, k = 10, ef_search 32:
//        single   one query per Search call / per HTTP request (keep-alive
//        HttpClient); batched  100 queries per Search call / per HTTP request;
//      per call: latency (P50 / P95 / P99); per mode: QPS (queries / total
//      time) and recall@10 against the shared exact ground truth.
// HTTP is measured with two body formats: JSON ({"vectors": [[...]], "k", "params"}) and
// the binary fast path (Content-Type application/octet-stream, raw float32 rows, k and
// ef_search in the query string: what a numpy client sends with .tobytes()).
// HTTP timings include the client's send and receive and the server's body
// parse and reply; the request bodies are built before the clock starts (a client
// holds its queries already, as the in-process floor does) and the replies parsed
// after it stops (to check ids), so client-side JSON work is not counted.
//
// usage: http_search_bench [--images DIR] [--gt FILE] [--threads N] [--repeat
// R]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "http/client.h"
#include "jobs/dataset.h"
#include "http/server.h"
#include "index/routes.h"
#include "index/search_request.h"
#include "store/index_catalog.h"
#include "store/retrieval_metrics.h"

namespace {

using lattice::Status;
using lattice::StatusOr;
using lattice::jobs::FeatureMatrix;
using namespace lattice::store;  // NOLINT: a benchmark main

constexpr int kK = 10;
constexpr int kEfSearch = 32;
constexpr int kBatch = 100;

struct Options {
  std::string images = "/usr/share/datasets/fashion-mnist";
  std::string gt = "/work/shared/data/fashion-mnist/fashion-mnist-784-euclidean_gt100.ivecs";
  int threads = 2;  // HTTP io threads
};

struct Measured {
  std::string name;
  double qps = 0, p50_ms = 0, p95_ms = 0, p99_ms = 0, recall = 0;
  double server_ms = 0;  // HTTP: mean took_ms the server reports (request in -> reply out)
  double parse_ms = 0;   // HTTP: mean ParseSearchRequest time of one body, in this thread
};

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void Die(const Status& s) {
  std::fprintf(stderr, "http_search_bench: %s\n", s.ToString().c_str());
  std::exit(1);
}

template <typename T>
T OrDie(StatusOr<T> v) {
  if (!v.ok()) Die(v.status());
  return std::move(v).value();
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t at = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(at, v.size() - 1)];
}

// Fills latency percentiles and QPS from per-call latencies (seconds) over
// `queries`.
Measured Summarise(std::string name, const std::vector<double>& lat, double total_s,
                   int64_t queries, const std::vector<int64_t>& ids, const IdMatrix& gt) {
  Measured m;
  m.name = std::move(name);
  m.qps = static_cast<double>(queries) / total_s;
  m.p50_ms = Percentile(lat, 0.50) * 1e3;
  m.p95_ms = Percentile(lat, 0.95) * 1e3;
  m.p99_ms = Percentile(lat, 0.99) * 1e3;
  IdMatrix got{queries, kK, ids};
  m.recall = OrDie(RecallAtK(got, gt, kK));
  return m;
}

// In-process floor: Search on `index` with `per_call` queries per call.
Measured InProcess(const VectorIndex& index, const FeatureMatrix& q, int per_call,
                   const IdMatrix& gt) {
  SearchParams sp;
  sp.ef_search = kEfSearch;
  std::vector<double> lat;
  std::vector<int64_t> ids;
  ids.reserve(static_cast<size_t>(q.rows * kK));
  const double t0 = Now();
  for (int64_t start = 0; start < q.rows; start += per_call) {
    const int64_t n = std::min<int64_t>(per_call, q.rows - start);
    const double s = Now();
    SearchResult r = OrDie(index.Search(q.data.data() + start * q.cols, n, kK, sp));
    lat.push_back(Now() - s);
    ids.insert(ids.end(), r.ids.begin(), r.ids.end());
  }
  const double total = Now() - t0;
  return Summarise(per_call == 1 ? "in-process single" : "in-process batch 100", lat, total, q.rows,
                   ids, gt);
}

// Request bodies of `per_call` queries each, serialised ahead of the timed
// loop.
std::vector<std::string> SearchBodies(const FeatureMatrix& q, int per_call) {
  std::vector<std::string> bodies;
  for (int64_t start = 0; start < q.rows; start += per_call) {
    const int64_t n = std::min<int64_t>(per_call, q.rows - start);
    nlohmann::json vectors = nlohmann::json::array();
    for (int64_t i = start; i < start + n; ++i) {
      const float* row = q.data.data() + i * q.cols;
      vectors.push_back(std::vector<float>(row, row + q.cols));
    }
    nlohmann::json body = {{"vectors", vectors}, {"k", kK}, {"params", {{"ef_search", kEfSearch}}}};
    bodies.push_back(body.dump());
  }
  return bodies;
}

// Mean time of the server's body parser (ParseSearchRequest or ParseBinarySearchRequest)
// on `bodies`, in ms.
double ParseMs(const std::vector<std::string>& bodies, int dim, bool binary) {
  lattice::SearchRequestLimits limits;
  limits.dim = dim;
  const std::map<std::string, std::string> query = {{"k", std::to_string(kK)},
                                                    {"ef_search", std::to_string(kEfSearch)}};
  const double t0 = Now();
  for (const std::string& body : bodies) {
    OrDie(binary ? lattice::ParseBinarySearchRequest(body, query, limits)
                 : lattice::ParseSearchRequest(body, limits));
  }
  return (Now() - t0) * 1e3 / static_cast<double>(bodies.size());
}

// Binary request bodies: `per_call` raw float32 rows each, built ahead of the timed loop.
std::vector<std::string> BinaryBodies(const FeatureMatrix& q, int per_call) {
  std::vector<std::string> bodies;
  for (int64_t start = 0; start < q.rows; start += per_call) {
    const int64_t n = std::min<int64_t>(per_call, q.rows - start);
    const char* first = reinterpret_cast<const char*>(q.data.data() + start * q.cols);
    bodies.emplace_back(first, sizeof(float) * static_cast<size_t>(n * q.cols));
  }
  return bodies;
}

// HTTP: one request per body on one keep-alive connection; ids parsed after the
// clock. `binary`: application/octet-stream bodies, else JSON.
Measured OverHttp(uint16_t port, const FeatureMatrix& q, int per_call, bool binary,
                  const IdMatrix& gt) {
  const std::vector<std::string> bodies =
      binary ? BinaryBodies(q, per_call) : SearchBodies(q, per_call);
  const std::string content_type = binary ? "application/octet-stream" : "application/json";
  lattice::cli::HttpClient client("127.0.0.1", port);
  const std::string target =
      binary ? "/v1/indexes/fmnist/search?k=" + std::to_string(kK) +
                   "&ef_search=" + std::to_string(kEfSearch)
             : std::string("/v1/indexes/fmnist/search");
  (void)client.Request("POST", target, bodies[0], content_type);  // connect + warm up
  std::vector<double> lat;
  std::vector<std::string> replies;
  replies.reserve(bodies.size());
  const double t0 = Now();
  for (const std::string& body : bodies) {
    const double s = Now();
    auto r = client.Request("POST", target, body, content_type);
    lat.push_back(Now() - s);
    if (!r.ok()) Die(r.status());
    if (r->status != 200)
      Die(Status::Internal("HTTP " + std::to_string(r->status) + ": " + r->body));
    replies.push_back(std::move(r->body));
  }
  const double total = Now() - t0;
  std::vector<int64_t> ids;
  double took_ms = 0;
  for (const std::string& reply : replies) {
    const nlohmann::json parsed = nlohmann::json::parse(reply, nullptr, false);
    if (!parsed.contains("results")) Die(Status::Internal("reply without results: " + reply));
    took_ms += parsed.value("took_ms", 0.0);
    for (const auto& result : parsed["results"]) {
      auto row = result["ids"].get<std::vector<int64_t>>();
      row.resize(kK, -1);
      ids.insert(ids.end(), row.begin(), row.end());
    }
  }
  const std::string name = std::string(binary ? "HTTP bin " : "HTTP json ") +
                           (per_call == 1 ? "single" : "batch 100");
  Measured m = Summarise(name, lat, total, q.rows, ids, gt);
  m.server_ms = took_ms / static_cast<double>(replies.size());
  m.parse_ms = ParseMs(bodies, static_cast<int>(q.cols), binary);
  return m;
}

// The transport alone: the P50 round trip, in ms, of the same bodies POSTed to an index
// that is not published (answered 404 before any parse or search).
double TransportP50Ms(uint16_t port, const FeatureMatrix& q, int per_call, bool binary) {
  const std::vector<std::string> bodies =
      binary ? BinaryBodies(q, per_call) : SearchBodies(q, per_call);
  const std::string content_type = binary ? "application/octet-stream" : "application/json";
  lattice::cli::HttpClient client("127.0.0.1", port);
  std::vector<double> lat;
  for (const std::string& body : bodies) {
    const double s = Now();
    auto r = client.Request("POST", "/v1/indexes/not-published/search", body, content_type);
    lat.push_back(Now() - s);
    if (!r.ok()) Die(r.status());
  }
  return Percentile(lat, 0.5) * 1e3;
}

// Builds the index over `base` and publishes it as "fmnist" under `root`.
std::shared_ptr<const VectorIndex> BuildAndPublish(IndexCatalog* catalog,
                                                   const FeatureMatrix& base) {
  IndexParams params;
  params.type = IndexType::kHnsw;
  params.dim = static_cast<int>(base.cols);
  params.build = {
      {"backend", "hnswlib"}, {"M", 16}, {"ef_construction", 100}, {"ef_search", kEfSearch}};
  auto index = OrDie(MakeVectorIndex(params));
  std::vector<int64_t> ids(static_cast<size_t>(base.rows));
  for (int64_t i = 0; i < base.rows; ++i) ids[static_cast<size_t>(i)] = i;
  const double t0 = Now();
  if (Status s = index->Add(base.data.data(), base.rows, ids.data()); !s.ok()) Die(s);
  std::printf("# built hnswlib M16 efC100 over %lld vectors in %.1f s\n",
              static_cast<long long>(base.rows), Now() - t0);
  OrDie(catalog->Publish("fmnist", *index, {{"vectors", base.rows}}));
  return OrDie(catalog->Current("fmnist"));
}

void Print(const Measured& m) {
  std::printf("%-22s %10.0f %9.3f %9.3f %9.3f %8.4f", m.name.c_str(), m.qps, m.p50_ms, m.p95_ms,
              m.p99_ms, m.recall);
  if (m.server_ms > 0) {
    std::printf("   server took_ms %.3f, of which body parse %.3f", m.server_ms, m.parse_ms);
  }
  std::printf("\n");
  std::fflush(stdout);
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const char* v = argv[i + 1];
    if (flag == "--images")
      o.images = v;
    else if (flag == "--gt")
      o.gt = v;
    else if (flag == "--threads")
      o.threads = std::atoi(v);
    else
      Die(Status::InvalidArgument("unknown flag " + flag));
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = ParseArgs(argc, argv);
  omp_set_num_threads(1);
  const FeatureMatrix base =
      OrDie(lattice::jobs::LoadIdxImages(opt.images + "/train-images-idx3-ubyte.gz"));
  const FeatureMatrix queries =
      OrDie(lattice::jobs::LoadIdxImages(opt.images + "/t10k-images-idx3-ubyte.gz"));
  const IdMatrix gt = OrDie(ReadIvecs(opt.gt));

  char dir[] = "/tmp/http_search_bench.XXXXXX";
  if (mkdtemp(dir) == nullptr) Die(Status::IoError("mkdtemp"));
  auto catalog = OrDie(IndexCatalog::Open(std::string(dir) + "/indexes"));
  std::shared_ptr<const VectorIndex> index = BuildAndPublish(catalog.get(), base);

  auto router = std::make_shared<lattice::Router>();
  lattice::AddIndexRoutes(*router, catalog.get(), lattice::IndexApiOptions{});
  lattice::HttpServerOptions hopts;
  hopts.port = 0;
  hopts.threads = opt.threads;
  auto server = OrDie(lattice::HttpServer::Start(hopts, router));

  std::printf(
      "# %lld queries, k=%d, ef_search=%d; HTTP server: %d io threads, "
      "same process\n",
      static_cast<long long>(queries.rows), kK, kEfSearch, opt.threads);
  std::printf("%-22s %10s %9s %9s %9s %8s\n", "path", "QPS", "P50 ms", "P95 ms", "P99 ms",
              "recall");
  const Measured local1 = InProcess(*index, queries, 1, gt);
  Print(local1);
  const Measured http1 = OverHttp(server->port(), queries, 1, false, gt);
  Print(http1);
  const Measured bin1 = OverHttp(server->port(), queries, 1, true, gt);
  Print(bin1);
  const Measured local100 = InProcess(*index, queries, kBatch, gt);
  Print(local100);
  const Measured http100 = OverHttp(server->port(), queries, kBatch, false, gt);
  Print(http100);
  const Measured bin100 = OverHttp(server->port(), queries, kBatch, true, gt);
  Print(bin100);

  auto overhead = [](const Measured& floor, const Measured& m) {
    return (floor.qps / m.qps - 1) * 100;
  };
  std::printf("\nHTTP overhead (in-process QPS / HTTP QPS - 1; target <= 20%% batched):\n");
  std::printf("  batched  JSON %6.1f %%   binary %6.1f %%\n", overhead(local100, http100),
              overhead(local100, bin100));
  std::printf("  single   JSON %6.1f %%   binary %6.1f %%\n", overhead(local1, http1),
              overhead(local1, bin1));
  std::printf(
      "transport alone (P50 round trip of the same bodies, answered 404 at once): batch 100 "
      "JSON %.3f ms, binary %.3f ms; single JSON %.3f ms, binary %.3f ms\n",
      TransportP50Ms(server->port(), queries, kBatch, false),
      TransportP50Ms(server->port(), queries, kBatch, true),
      TransportP50Ms(server->port(), queries, 1, false),
      TransportP50Ms(server->port(), queries, 1, true));
  std::printf(
      "HTTP single-query P95 (target <= 1 ms): JSON %.3f ms, binary %.3f ms (in-process %.3f "
      "ms)\n",
      http1.p95_ms, bin1.p95_ms, local1.p95_ms);
  server->Stop();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return 0;
}
