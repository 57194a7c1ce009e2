// IndexApiTest: the index query routes over a real IndexCatalog in a temp dir, served by a
// real HttpServer on a free port and called through the CLI's HttpClient.
#include "index/routes.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <omp.h>

#include "http/client.h"
#include "monitoring/metrics.h"
#include "index/search_request.h"
#include "tests/testutil/testutil.h"

namespace lattice {
namespace {

using nlohmann::json;

constexpr int kDim = 16;
constexpr int64_t kRows = 2000;
constexpr int64_t kMaxBatch = 100;

class IndexApiTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    omp_set_num_threads(1);
    dir_ = new testutil::TempDir;
    auto catalog = store::IndexCatalog::Open(dir_->Join("indexes"));
    ASSERT_OK(catalog);
    catalog_ = catalog->release();
    std::mt19937_64 rng = testutil::SeededRng("IndexApiTest");
    std::normal_distribution<float> normal(0.f, 1.f);
    base_ = new std::vector<float>(kRows * kDim);
    for (float& x : *base_) x = normal(rng);
    std::vector<int64_t> ids(kRows);
    for (int64_t i = 0; i < kRows; ++i) ids[i] = 10 * i;  // ids are not positions
    Publish("flat16", {store::IndexType::kFlat, store::Metric::kL2, kDim, json::object()}, ids);
    Publish("hnsw16", {store::IndexType::kHnsw, store::Metric::kL2, kDim, {{"M", 16}, {"ef_search", 64}}}, ids);
    // The user's ids: index id (corpus row) r is "doc-<r>".
    std::vector<int64_t> rows(kRows);
    std::vector<json> names(kRows);
    for (int64_t i = 0; i < kRows; ++i) {
      rows[i] = i;
      names[i] = "doc-" + std::to_string(i);
    }
    Publish("named16", {store::IndexType::kFlat, store::Metric::kL2, kDim, json::object()}, rows,
            &names);

    registry_ = new prometheus::Registry;
    auto router = std::make_shared<Router>();
    router->SetToken("secret-token-for-mutations");  // search must not need it
    IndexApiOptions options;
    options.max_batch = kMaxBatch;
    options.registry = registry_;
    AddIndexRoutes(*router, catalog_, options);
    HttpServerOptions hopts;
    hopts.port = 0;
    auto server = HttpServer::Start(hopts, router);
    ASSERT_OK(server);
    server_ = server->release();
  }

  static void Publish(const std::string& name, const store::IndexParams& params,
                      const std::vector<int64_t>& ids,
                      const std::vector<json>* user_ids = nullptr) {
    auto index = store::MakeVectorIndex(params);
    ASSERT_OK(index);
    ASSERT_OK((*index)->Add(base_->data(), kRows, ids.data()));
    json meta = {{"vectors", kRows}, {"dim", kDim}, {"metric", "l2"}, {"recall@10", 0.99},
                 {"built_from", {{"sweep", "s1"}, {"name", "embed-test"}, {"encoder", nullptr}}},
                 {"created_ms", 1700000000000}};
    ASSERT_OK(catalog_->Publish(name, **index, meta, nullptr, user_ids));
  }

  static void TearDownTestSuite() {
    delete server_;
    delete registry_;
    delete catalog_;
    delete base_;
    delete dir_;
  }

  void SetUp() override { client_ = std::make_unique<cli::HttpClient>("127.0.0.1", server_->port()); }

  json Call(const std::string& method, const std::string& target, const std::string& body,
            int want_status) {
    auto r = client_->Request(method, target, body);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return json();
    EXPECT_EQ(r->status, want_status) << target << " " << body.substr(0, 200) << " -> " << r->body;
    return json::parse(r->body, nullptr, false);
  }

  // The error message of a request that must fail with `status`.
  std::string Error(const std::string& body, int status = 400,
                    const std::string& name = "flat16") {
    json j = Call("POST", "/v1/indexes/" + name + "/search", body, status);
    EXPECT_TRUE(j.is_object() && j.contains("error") && j["error"].contains("code") &&
                j["error"]["message"].is_string())
        << j.dump();
    return j.is_object() && j.contains("error") ? j["error"].value("message", "") : "";
  }

  static json Rows(int64_t first, int64_t n) {
    json rows = json::array();
    for (int64_t r = first; r < first + n; ++r) {
      rows.push_back(std::vector<float>(base_->begin() + r * kDim, base_->begin() + (r + 1) * kDim));
    }
    return rows;
  }

  static testutil::TempDir* dir_;
  static store::IndexCatalog* catalog_;
  static std::vector<float>* base_;
  static prometheus::Registry* registry_;
  static HttpServer* server_;
  std::unique_ptr<cli::HttpClient> client_;
};

testutil::TempDir* IndexApiTest::dir_ = nullptr;
store::IndexCatalog* IndexApiTest::catalog_ = nullptr;
std::vector<float>* IndexApiTest::base_ = nullptr;
prometheus::Registry* IndexApiTest::registry_ = nullptr;
HttpServer* IndexApiTest::server_ = nullptr;

TEST_F(IndexApiTest, ListsAndGetsIndexes) {
  json list = Call("GET", "/v1/indexes", "", 200);
  ASSERT_EQ(list["indexes"].size(), 3u) << list.dump();
  const json& flat = list["indexes"][0];
  EXPECT_EQ(flat["name"], "flat16");
  EXPECT_EQ(flat["version"], 1);
  EXPECT_EQ(flat["vectors"], kRows);
  EXPECT_EQ(flat["dim"], kDim);
  EXPECT_EQ(flat["type"], "flat");
  EXPECT_EQ(flat["metric"], "l2");
  EXPECT_EQ(flat["backend"], "faiss");
  EXPECT_EQ(flat["recall@10"], 0.99);
  EXPECT_EQ(flat["built_from"]["sweep"], "s1");
  EXPECT_EQ(flat["created_ms"], 1700000000000);
  EXPECT_EQ(list["indexes"][1]["name"], "hnsw16");
  EXPECT_EQ(list["indexes"][1]["backend"], "hnswlib");
  EXPECT_EQ(list["indexes"][2]["item_ids"], kRows);  // named16 carries the user's ids

  for (const json& e : list["indexes"]) {
    EXPECT_GT(e["index_bytes"].get<int64_t>(), kRows * kDim * 4) << e.dump();  // the vectors
  }
  EXPECT_GT(list["server"]["rss_bytes"].get<int64_t>(), 0) << list.dump();
  EXPECT_GE(list["server"]["peak_rss_bytes"].get<int64_t>(),
            list["server"]["rss_bytes"].get<int64_t>());

  json one = Call("GET", "/v1/indexes/hnsw16", "", 200);
  EXPECT_EQ(one["name"], "hnsw16");
  EXPECT_GT(one["server"]["peak_rss_bytes"].get<int64_t>(), 0);
  EXPECT_EQ(one["versions"], json::array({1}));
  json missing = Call("GET", "/v1/indexes/nope", "", 404);
  EXPECT_EQ(missing["error"]["code"], "not_found");
}

TEST_F(IndexApiTest, SearchByVectorEqualsInProcessSearch) {
  for (const char* name : {"flat16", "hnsw16"}) {
    json body = {{"vectors", Rows(100, 5)}, {"k", 7}, {"params", {{"ef_search", 80}}}};
    json r = Call("POST", std::string("/v1/indexes/") + name + "/search", body.dump(), 200);
    ASSERT_EQ(r["results"].size(), 5u) << r.dump();
    EXPECT_TRUE(r["took_ms"].is_number());
    ASSERT_OK_AND_ASSIGN(auto index, catalog_->Current(name));
    store::SearchParams sp;
    sp.ef_search = 80;
    ASSERT_OK_AND_ASSIGN(auto want, index->Search(base_->data() + 100 * kDim, 5, 7, sp));
    for (int q = 0; q < 5; ++q) {
      const json& row = r["results"][q];
      ASSERT_EQ(row["ids"].size(), 7u);
      for (int j = 0; j < 7; ++j) {
        EXPECT_EQ(row["ids"][j].get<int64_t>(), want.ids[q * 7 + j]) << name << " q" << q;
        EXPECT_FLOAT_EQ(row["distances"][j].get<float>(), want.distances[q * 7 + j]);
      }
      EXPECT_EQ(row["ids"][0].get<int64_t>(), 10 * (100 + q));  // the row itself, distance 0
    }
  }
}

TEST_F(IndexApiTest, SearchByItemDropsTheItemItself) {
  json body = {{"items", {50, 170, 19990}}, {"k", 5}};
  json r = Call("POST", "/v1/indexes/flat16/search", body.dump(), 200);
  ASSERT_EQ(r["results"].size(), 3u) << r.dump();
  ASSERT_OK_AND_ASSIGN(auto index, catalog_->Current("flat16"));
  const int64_t rows[] = {5, 17, 1999};
  for (int q = 0; q < 3; ++q) {
    const json& ids = r["results"][q]["ids"];
    ASSERT_EQ(ids.size(), 5u);
    ASSERT_OK_AND_ASSIGN(auto want, index->Search(base_->data() + rows[q] * kDim, 1, 6, {}));
    EXPECT_EQ(want.ids[0], 10 * rows[q]);
    for (int j = 0; j < 5; ++j) {
      EXPECT_NE(ids[j].get<int64_t>(), 10 * rows[q]);
      EXPECT_EQ(ids[j].get<int64_t>(), want.ids[j + 1]);
    }
  }
  // The hnswlib backend reconstructs too.
  json h = Call("POST", "/v1/indexes/hnsw16/search", json{{"items", {50}}, {"k", 3}}.dump(), 200);
  ASSERT_EQ(h["results"][0]["ids"].size(), 3u);
  for (const auto& id : h["results"][0]["ids"]) EXPECT_NE(id.get<int64_t>(), 50);
}

// params.exact (JSON) and ?exact=true (binary) search by brute force: on the HNSW index
// the answer is the flat index's, by vector and by item.
TEST_F(IndexApiTest, ExactSearchEqualsFlatSearch) {
  const json rows = Rows(500, 30);
  json flat = Call("POST", "/v1/indexes/flat16/search",
                   json{{"vectors", rows}, {"k", 10}}.dump(), 200);
  json exact = Call("POST", "/v1/indexes/hnsw16/search",
                    json{{"vectors", rows}, {"k", 10}, {"params", {{"exact", true}}}}.dump(), 200);
  ASSERT_EQ(exact["results"].size(), 30u) << exact.dump().substr(0, 300);
  for (size_t q = 0; q < 30; ++q) {
    EXPECT_EQ(exact["results"][q]["ids"], flat["results"][q]["ids"]) << q;
  }
  json by_item = Call("POST", "/v1/indexes/hnsw16/search",
                      json{{"items", {50, 70}}, {"k", 4}, {"params", {{"exact", true}}}}.dump(), 200);
  json flat_items = Call("POST", "/v1/indexes/flat16/search",
                         json{{"items", {50, 70}}, {"k", 4}}.dump(), 200);
  EXPECT_EQ(by_item["results"][0]["ids"], flat_items["results"][0]["ids"]);
  EXPECT_EQ(by_item["results"][1]["ids"], flat_items["results"][1]["ids"]);
  std::string bytes(reinterpret_cast<const char*>(base_->data() + 500 * kDim), 4 * kDim);
  auto bin = client_->Request("POST", "/v1/indexes/hnsw16/search?k=10&exact=true", bytes,
                              "application/octet-stream");
  ASSERT_OK(bin);
  ASSERT_EQ(bin->status, 200) << bin->body;
  EXPECT_EQ(json::parse(bin->body)["results"][0]["ids"], flat["results"][0]["ids"]);
  EXPECT_EQ(Error(json{{"vectors", Rows(0, 1)}, {"params", {{"exact", 1}}}}.dump()),
            "params.exact: expected true or false, got integer");
  auto bad = client_->Request("POST", "/v1/indexes/hnsw16/search?exact=yes", bytes,
                              "application/octet-stream");
  ASSERT_OK(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("exact: expected true or false, got 'yes'"), std::string::npos);
}

TEST_F(IndexApiTest, BatchEqualsSingleQueries) {
  json batch = Call("POST", "/v1/indexes/hnsw16/search",
                    json{{"vectors", Rows(300, 40)}, {"k", 10}}.dump(), 200);
  ASSERT_EQ(batch["results"].size(), 40u);
  for (int q = 0; q < 40; q += 13) {
    json one = Call("POST", "/v1/indexes/hnsw16/search",
                    json{{"vectors", Rows(300 + q, 1)}}.dump(), 200);
    EXPECT_EQ(one["results"][0], batch["results"][q]) << q;
  }
}

TEST_F(IndexApiTest, BadRequestsAreClear4xxErrors) {
  const std::string row = Rows(0, 1)[0].dump();
  auto vectors = [&](const std::string& rows) { return "{\"vectors\":[" + rows + "]}"; };
  EXPECT_NE(Error("{not json").find("malformed JSON"), std::string::npos);
  EXPECT_NE(Error("").find("malformed JSON"), std::string::npos);
  EXPECT_NE(Error("[1,2]").find("must be a JSON object"), std::string::npos);
  EXPECT_NE(Error("{}").find("one of vectors or items is required"), std::string::npos);
  EXPECT_NE(Error("{\"vectors\":[" + row + "],\"items\":[10]}").find("not both"),
            std::string::npos);
  EXPECT_NE(Error("{\"vectors\":[]}").find("at least one query"), std::string::npos);
  json short_row = Rows(0, 5);
  short_row[3].erase(short_row[3].size() - 1);
  EXPECT_EQ(Error(json{{"vectors", short_row}}.dump()), "vectors[3]: expected 16 values, got 15");
  json long_row = Rows(0, 2);
  long_row[1].push_back(1.0);
  EXPECT_EQ(Error(json{{"vectors", long_row}}.dump()), "vectors[1]: expected 16 values, got 17");
  EXPECT_EQ(Error("{\"k\":0,\"vectors\":[" + row + "]}"), "k: must be between 1 and 1000, got 0");
  EXPECT_NE(Error("{\"k\":1001,\"vectors\":[" + row + "]}").find("got 1001"), std::string::npos);
  EXPECT_NE(Error("{\"k\":\"10\",\"vectors\":[" + row + "]}").find("k: expected an integer"),
            std::string::npos);
  EXPECT_NE(Error(json{{"vectors", Rows(0, kMaxBatch + 1)}}.dump()).find("too many queries"),
            std::string::npos);
  std::string bad = row;
  bad.replace(1, bad.find(',') - 1, "\"NaN\"");
  EXPECT_EQ(Error(vectors(bad)), "vectors[0][0]: expected a number, got string");
  bad = row;
  bad.replace(1, bad.find(',') - 1, "null");
  EXPECT_EQ(Error(vectors(row + "," + bad)), "vectors[1][0]: expected a number, got null");
  bad = row;
  bad.replace(1, bad.find(',') - 1, "1e999");
  EXPECT_EQ(Error(vectors(bad)), "vectors[0][0]: not a finite float32 (1e999)");
  bad = row;
  bad.replace(1, bad.find(',') - 1, "-4e38");
  EXPECT_EQ(Error(vectors(bad)), "vectors[0][0]: not a finite float32");
  EXPECT_NE(Error(vectors("5")).find("vectors[0]: expected an array of numbers"),
            std::string::npos);
  EXPECT_EQ(Error("{\"params\":{\"efsearch\":5},\"vectors\":[" + row + "]}"),
            "params.efsearch: unknown key (expected ef_search, nprobe, exact)");
  EXPECT_NE(Error("{\"params\":{\"ef_search\":0},\"vectors\":[" + row + "]}")
                .find("params.ef_search: must be between 1"),
            std::string::npos);
  EXPECT_NE(Error("{\"kk\":5,\"vectors\":[" + row + "]}").find("unknown key 'kk'"),
            std::string::npos);
  EXPECT_NE(Error("{\"items\":[null]}").find("items[0]: expected an item id"),
            std::string::npos);
  // A row number is a decimal integer >= 0 (common/item_id.h), not "-3" or "+3".
  for (const char* text : {"-3", "+3", " 3"}) {
    EXPECT_NE(Error(std::string("{\"items\":[\"") + text + "\"]}")
                  .find(std::string("items[0]: '") + text + "' is not an item of index"),
              std::string::npos)
        << text;
  }
  EXPECT_NE(Error("{\"items\":[10, \"x\"]}")
                .find("items[1]: 'x' is not an item of index \"flat16\": it has no item ids"),
            std::string::npos);
  EXPECT_EQ(Error("{\"items\":[10, 77]}", 404), "items[1]: item 77 is not in index \"flat16\"");
  EXPECT_NE(Error(vectors(row), 404, "nope").find("nope"), std::string::npos);
  EXPECT_EQ(Error(vectors(row), 400, "bad%20name").find("malformed"), std::string::npos);
  // The server is still fine.
  Call("POST", "/v1/indexes/flat16/search", vectors(row), 200);
}

// The binary fast path (application/octet-stream, raw float32 rows, k and params in the
// query string) answers exactly what the JSON form answers.
TEST_F(IndexApiTest, BinaryBodyEqualsJsonBody) {
  const std::string rows(reinterpret_cast<const char*>(base_->data() + 300 * kDim),
                         sizeof(float) * kDim * 40);
  for (const char* name : {"flat16", "hnsw16"}) {
    const std::string target = std::string("/v1/indexes/") + name + "/search";
    json want = Call("POST", target,
                     json{{"vectors", Rows(300, 40)}, {"k", 7}, {"params", {{"ef_search", 50}}}}
                         .dump(),
                     200);
    auto r = client_->Request("POST", target + "?k=7&ef_search=50", rows,
                              "application/octet-stream");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->status, 200) << r->body;
    json got = json::parse(r->body);
    ASSERT_EQ(got["results"].size(), 40u);
    EXPECT_EQ(got["results"], want["results"]) << name;
  }
  // k defaults to 10; Content-Type is matched without case and with parameters.
  auto r = client_->Request("POST", "/v1/indexes/flat16/search", rows.substr(0, 4 * kDim),
                            "Application/Octet-Stream; charset=binary");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body)["results"][0]["ids"].size(), 10u);
}

TEST_F(IndexApiTest, BadBinaryRequestsAreClear400s) {
  const std::string row(reinterpret_cast<const char*>(base_->data()), sizeof(float) * kDim);
  auto error = [&](const std::string& query, const std::string& body) {
    auto r = client_->Request("POST", "/v1/indexes/flat16/search" + query, body,
                              "application/octet-stream");
    EXPECT_TRUE(r.ok());
    if (!r.ok()) return std::string();
    EXPECT_EQ(r->status, 400) << r->body;
    return json::parse(r->body, nullptr, false)["error"].value("message", "");
  };
  EXPECT_EQ(error("", row + "abc"),
            "body: 67 bytes is not a multiple of 64 (rows of dim 16 float32 values)");
  // (HttpClient sends no Content-Type with an empty body: call the parser itself.)
  EXPECT_EQ(ParseBinarySearchRequest("", {}, {kDim, 10, 5}).status().message(),
            "vectors: must hold at least one query");
  EXPECT_EQ(error("?k=0", row), "k: must be between 1 and 1000, got 0");
  EXPECT_EQ(error("?k=ten", row), "k: expected an integer, got 'ten'");
  EXPECT_EQ(error("?ef_search=0", row),
            "ef_search: must be between 1 and 1024, got 0 (max_ef_search)");
  EXPECT_EQ(error("?nprobe=1025", row),
            "nprobe: must be between 1 and 1024, got 1025 (max_nprobe)");
  EXPECT_EQ(error("?nprobe=2x", row), "nprobe: expected an integer, got '2x'");
  EXPECT_EQ(error("?kk=5", row), "unknown query parameter 'kk' (expected k, ef_search, nprobe, exact)");
  std::string too_many;
  for (int64_t i = 0; i <= kMaxBatch; ++i) too_many += row;
  EXPECT_NE(error("", too_many).find("too many queries"), std::string::npos);
  std::string nan_row = row;
  const float nan = std::nanf("");
  std::memcpy(&nan_row[4 * 3], &nan, sizeof nan);
  EXPECT_EQ(error("", row + nan_row), "vectors[1][3]: not a finite float32");
}

// A body of many 64 KiB reads (the server makes room for large reads after the header)
// arrives whole and answers like the compact one.
TEST_F(IndexApiTest, LargeBodiesAreReadWhole) {
  const std::string compact = json{{"vectors", Rows(7, 3)}, {"k", 5}}.dump();
  json want = Call("POST", "/v1/indexes/flat16/search", compact, 200);
  std::string padded = compact;
  padded.insert(padded.size() - 1, std::string(300000, ' '));
  padded.insert(1, std::string(70000, '\n'));
  json got = Call("POST", "/v1/indexes/flat16/search", padded, 200);
  EXPECT_EQ(got["results"], want["results"]);
  for (int i = 0; i < 3; ++i) {  // keep-alive: the next request on the same connection
    EXPECT_EQ(Call("POST", "/v1/indexes/flat16/search", compact, 200)["results"],
              want["results"]);
  }
}

TEST_F(IndexApiTest, SearchIsCountedInPrometheusMetrics) {
  Call("POST", "/v1/indexes/flat16/search", json{{"vectors", Rows(0, 3)}}.dump(), 200);
  const std::string text = RenderMetrics(*registry_);
  EXPECT_NE(text.find("lattice_index_queries_total"), std::string::npos) << text;
  EXPECT_NE(text.find("lattice_index_search_seconds_count"), std::string::npos) << text;
}

// Issue 9: {"items": [0..9999], "k": 1000, "params": {"ef_search": 1048576}} held an HTTP
// thread for minutes. Each cap is a 400 that names its limit.
TEST_F(IndexApiTest, WorkPerRequestIsCappedAndNamed) {
  const std::string row = Rows(0, 1)[0].dump();
  EXPECT_EQ(Error("{\"params\":{\"ef_search\":1048576},\"vectors\":[" + row + "]}"),
            "params.ef_search: must be between 1 and 1024, got 1048576 (max_ef_search)");
  EXPECT_EQ(Error("{\"vectors\":[" + row + "],\"params\":{\"nprobe\":4096}}"),
            "params.nprobe: must be between 1 and 1024, got 4096 (max_nprobe)");
  // At the caps a search is still served.
  Call("POST", "/v1/indexes/hnsw16/search",
       "{\"vectors\":[" + row + "],\"k\":1000,\"params\":{\"ef_search\":1024}}", 200);
}

TEST(SearchRequestTest, TheFuzzedRequestIsRejectedNamingTheLimit) {
  std::string items;
  for (int i = 0; i < 10000; ++i) items += (i > 0 ? "," : "") + std::to_string(i);
  SearchRequestLimits limits;
  limits.dim = 4;
  auto fuzzed = ParseSearchRequest(
      "{\"items\":[" + items + "],\"k\":1000,\"params\":{\"ef_search\":1048576}}", limits);
  ASSERT_FALSE(fuzzed.ok());
  EXPECT_EQ(fuzzed.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(fuzzed.status().message().find("(max_ef_search)"), std::string::npos)
      << fuzzed.status().message();
  // Within every single cap, the product still is too much.
  auto product = ParseSearchRequest(
      "{\"items\":[" + items + "],\"k\":1000,\"params\":{\"ef_search\":1024}}", limits);
  ASSERT_FALSE(product.ok());
  EXPECT_EQ(product.status().message(),
            "too much work in one request: 10000 queries x ef_search 1024 = 10240000 exceeds "
            "1000000 (max_query_work); split the batch");
  auto k_product = ParseSearchRequest("{\"items\":[" + items + "],\"k\":1000}", limits);
  ASSERT_FALSE(k_product.ok());
  EXPECT_NE(k_product.status().message().find("10000 queries x k 1000"), std::string::npos);
  // The binary form applies the same product.
  std::string body(static_cast<size_t>(2000) * 4 * sizeof(float), '\0');
  auto binary = ParseBinarySearchRequest(body, {{"k", "1000"}}, limits);
  ASSERT_FALSE(binary.ok());
  EXPECT_NE(binary.status().message().find("(max_query_work)"), std::string::npos);
  // What the benchmarks send is fine: 10,000 queries, k 10, ef_search 32.
  auto bench = ParseSearchRequest(
      "{\"items\":[" + items + "],\"k\":10,\"params\":{\"ef_search\":32}}", limits);
  EXPECT_TRUE(bench.ok()) << bench.status().message();
}

// Found by tests/fuzz/fuzz_search_request: without k in the query string the binary
// form used the default k (10) even with max_k below it, which the JSON form refuses.
TEST(SearchRequestTest, BinaryDefaultKIsCheckedAgainstMaxK) {
  SearchRequestLimits limits;
  limits.dim = 1;
  limits.max_k = 5;
  const std::string row(sizeof(float), '\0');
  auto binary = ParseBinarySearchRequest(row, {}, limits);
  ASSERT_FALSE(binary.ok());
  EXPECT_EQ(binary.status().message(), "k: must be between 1 and 5, got 10");
  auto json_form = ParseSearchRequest("{\"vectors\": [[0]]}", limits);
  ASSERT_FALSE(json_form.ok());
  EXPECT_EQ(json_form.status().message(), binary.status().message());
  auto with_k = ParseBinarySearchRequest(row, {{"k", "5"}}, limits);
  ASSERT_OK(with_k);
  EXPECT_EQ(with_k->k, 5);
}

TEST(SearchRequestTest, ParsesIntoOneContiguousBuffer) {
  ASSERT_OK_AND_ASSIGN(
      SearchRequest r,
      ParseSearchRequest(R"({"vectors": [[1, 2.5], [-3e2, 4]], "k": 3,
                             "params": {"nprobe": 4, "ef_search": 99}})",
                         {2, 10, 5}));
  EXPECT_EQ(r.nq, 2);
  EXPECT_EQ(r.vectors, (std::vector<float>{1.f, 2.5f, -300.f, 4.f}));
  EXPECT_EQ(r.k, 3);
  EXPECT_EQ(r.params.nprobe, 4);
  EXPECT_EQ(r.params.ef_search, 99);
  EXPECT_FALSE(r.by_items());
  ASSERT_OK_AND_ASSIGN(SearchRequest items, ParseSearchRequest(R"({"items": [7, 0]})", {2, 10, 5}));
  EXPECT_EQ(items.items, (std::vector<int64_t>{7, 0}));
  EXPECT_EQ(items.nq, 2);
  EXPECT_EQ(items.k, 10);
  EXPECT_EQ(ParseSearchRequest(R"({"items": [1,2,3,4,5,6]})", {2, 10, 5}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseSearchRequest(R"({"items": [1], "items": [2]})", {2, 10, 5}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseSearchRequest(R"({"vectors": [[1e39, 1]]})", {2, 10, 5}).status().code(),
            StatusCode::kInvalidArgument);
}

// The hand-written scanner must yield exactly the float nlohmann's lexer yields (double,
// then float) for every JSON number form, and leave malformed numbers to the SAX parser.
TEST(SearchRequestTest, ScannerReadsNumbersLikeNlohmann) {
  std::vector<std::string> tokens = {
      "0", "-0", "0.0", "-0.0", "255", "255.0", "-17.250", "1e2", "1E+2", "2.5e-3", "0.1",
      "3.4028234e38", "-3.4028234e38", "1e-40", "1e-400", "16777217", "123456789012345678",
      "18446744073709551615", "18446744073709551616", "-9223372036854775809",
      "0.30000000000000004", "123456789012345678901234567890", "7.006492e-46"};
  std::mt19937_64 rng = testutil::SeededRng("ScannerReadsNumbersLikeNlohmann");
  std::uniform_real_distribution<double> uniform(-1e6, 1e6);
  for (int i = 0; i < 200; ++i) {
    char buf[64];
    const char* formats[] = {"%.9g", "%.17g", "%.3f", "%e"};
    std::snprintf(buf, sizeof buf, formats[i % 4], uniform(rng) / std::pow(10.0, i % 9));
    tokens.emplace_back(buf);
  }
  for (const std::string& token : tokens) {
    const float want = static_cast<float>(json::parse(token).get<double>());
    for (const std::string& body :
         {"{\"vectors\":[[" + token + ",1]]}", "{ \"vectors\" : [ [ " + token + " ,\n1 ] ] }"}) {
      ASSERT_OK_AND_ASSIGN(SearchRequest r, ParseSearchRequest(body, {2, 10, 5}));
      ASSERT_EQ(r.vectors.size(), 2u) << body;
      EXPECT_EQ(r.vectors[0], want) << body;
      EXPECT_EQ(std::signbit(r.vectors[0]), std::signbit(want)) << body;
    }
  }
  for (const char* bad : {"01", "1.", ".5", "+1", "-", "1e", "1e+", "NaN", "Infinity",
                                 "0x10", "1..2", "--1", "1 2"}) {
    auto r = ParseSearchRequest(std::string("{\"vectors\":[[") + bad + ",1]]}", {2, 10, 5});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(r.status().message().rfind("malformed JSON", 0), 0u) << bad << ": " << r.status().ToString();
  }
}

// Pretty-printed and compact bodies parse to the same request; trailing garbage does not.
TEST(SearchRequestTest, WhitespaceAndKeyOrderDoNotMatter) {
  const json body = {{"vectors", {{1.5, -2}, {3, 4e-3}}},
                     {"k", 4},
                     {"params", {{"ef_search", 7}, {"nprobe", 2}}}};
  ASSERT_OK_AND_ASSIGN(SearchRequest compact, ParseSearchRequest(body.dump(), {2, 10, 5}));
  ASSERT_OK_AND_ASSIGN(SearchRequest pretty, ParseSearchRequest(body.dump(2), {2, 10, 5}));
  ASSERT_OK_AND_ASSIGN(
      SearchRequest reordered,
      ParseSearchRequest("\r\n\t{\"params\":{\"nprobe\":2,\"ef_search\":7},\"k\":4,"
                         "\"vectors\":[[1.5,-2],[3,4e-3]]}  \n",
                         {2, 10, 5}));
  for (const SearchRequest* r : {&compact, &pretty, &reordered}) {
    EXPECT_EQ(r->vectors, (std::vector<float>{1.5f, -2.f, 3.f, 4e-3f}));
    EXPECT_EQ(r->nq, 2);
    EXPECT_EQ(r->k, 4);
    EXPECT_EQ(r->params.ef_search, 7);
    EXPECT_EQ(r->params.nprobe, 2);
  }
  EXPECT_EQ(ParseSearchRequest(body.dump() + "x", {2, 10, 5}).status().message().rfind(
                "malformed JSON", 0),
            0u);
  EXPECT_EQ(ParseSearchRequest(R"({"k": 10.0, "items": [1]})", {2, 10, 5}).status().message(),
            "k: expected an integer, got number");
  EXPECT_EQ(ParseSearchRequest(R"({"vectors": [[1, 2], [3]]})", {2, 10, 5}).status().message(),
            "vectors[1]: expected 2 values, got 1");
  EXPECT_EQ(ParseSearchRequest(R"({"vectors": [[1, 2, 3]]})", {2, 10, 5}).status().message(),
            "vectors[0]: expected 2 values, got 3");
  EXPECT_EQ(ParseSearchRequest(R"({"vectors": [[1, 2]], "vectors": [[1, 2]]})", {2, 10, 5})
                .status()
                .message(),
            "duplicate key 'vectors'");
}

}  // namespace
}  // namespace lattice

namespace lattice {
namespace {

// Hits carry the item metadata published with the index; indexes without any don't.
// (Its own catalog and server: the shared ones list exactly two indexes.)
TEST_F(IndexApiTest, HitsCarryItemMetadata) {
  testutil::TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto catalog, store::IndexCatalog::Open(dir.Join("indexes")));
  std::vector<int64_t> ids(kRows);
  store::ItemMetadata items;
  for (int64_t i = 0; i < kRows; ++i) {
    ids[i] = 10 * i;
    if (i % 2 == 0) items[10 * i] = "{\"path\":\"img/" + std::to_string(i) + ".png\"}";
  }
  for (bool with_meta : {true, false}) {
    auto index = store::MakeVectorIndex({store::IndexType::kFlat, store::Metric::kL2, kDim, json::object()});
    ASSERT_OK(index);
    ASSERT_OK((*index)->Add(base_->data(), kRows, ids.data()));
    ASSERT_OK(catalog->Publish(with_meta ? "withmeta" : "plain", **index, json::object(),
                               with_meta ? &items : nullptr));
  }
  auto router = std::make_shared<Router>();
  AddIndexRoutes(*router, catalog.get(), IndexApiOptions{});
  HttpServerOptions hopts;
  hopts.port = 0;
  ASSERT_OK_AND_ASSIGN(auto server, HttpServer::Start(hopts, router));
  cli::HttpClient client("127.0.0.1", server->port());

  json body = {{"vectors", Rows(100, 2)}, {"k", 3}};
  auto r = client.Request("POST", "/v1/indexes/withmeta/search", body.dump());
  ASSERT_OK(r);
  json got = json::parse(r->body);
  ASSERT_EQ(got["results"].size(), 2u) << got.dump();
  for (const json& row : got["results"]) {
    ASSERT_EQ(row["metadata"].size(), row["ids"].size()) << row.dump();
    for (size_t j = 0; j < row["ids"].size(); ++j) {
      int64_t row_id = row["ids"][j].get<int64_t>() / 10;
      if (row_id % 2 == 0) {
        EXPECT_EQ(row["metadata"][j]["path"], "img/" + std::to_string(row_id) + ".png");
      } else {
        EXPECT_TRUE(row["metadata"][j].is_null());
      }
    }
  }
  auto plain = client.Request("POST", "/v1/indexes/plain/search", body.dump());
  ASSERT_OK(plain);
  EXPECT_FALSE(json::parse(plain->body)["results"][0].contains("metadata"));
}

// An index published with the user's ids answers in them and is searched by them.
TEST_F(IndexApiTest, UserItemIdsNameHitsAndItems) {
  json by_vector = Call("POST", "/v1/indexes/named16/search",
                        json{{"vectors", Rows(5, 1)}, {"k", 3}}.dump(), 200);
  ASSERT_EQ(by_vector["results"][0]["ids"].size(), 3u);
  EXPECT_EQ(by_vector["results"][0]["ids"][0], "doc-5");
  json by_item = Call("POST", "/v1/indexes/named16/search",
                      json{{"items", {"doc-5"}}, {"k", 2}}.dump(), 200);
  // The item itself is left out; the rest are the same hits as by its vector.
  EXPECT_EQ(by_item["results"][0]["ids"],
            json({by_vector["results"][0]["ids"][1], by_vector["results"][0]["ids"][2]}));
  EXPECT_EQ(Error("{\"items\":[\"doc-5\", \"doc-x\"]}", 404, "named16"),
            "items[1]: item 'doc-x' is not in index \"named16\"");
  // An integer is an id too, compared by its text: 5 is no id of this index.
  EXPECT_EQ(Error("{\"items\":[5]}", 404, "named16"), "items[0]: item '5' is not in index \"named16\"");
  // Without user ids, a string that holds a row number still works.
  json numbered = Call("POST", "/v1/indexes/flat16/search", json{{"items", {"50"}}, {"k", 1}}.dump(), 200);
  EXPECT_EQ(numbered["results"][0]["ids"].size(), 1u);
}

}  // namespace
}  // namespace lattice
