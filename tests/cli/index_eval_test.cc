// `lattice index eval` / `index compare` (cli/index_eval.h) against a real index server
// (the index routes over a catalog of real FAISS / hnswlib indexes on a loopback port).
#include "cli/index_eval.h"

#include <omp.h>

#include <fstream>
#include <random>
#include <sstream>
#include <tuple>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "http/server.h"
#include "index/routes.h"
#include "store/index_catalog.h"
#include "store/retrieval_metrics.h"
#include "tests/testutil/testutil.h"

namespace lattice::cli {
namespace {

using nlohmann::json;

constexpr int kDim = 8;
constexpr int64_t kRows = 3000;

// Two indexes over the same random vectors: "flat" (exact) and "hnsw" with a small graph
// so that its recall is below 1.
class IndexEvalTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    omp_set_num_threads(1);
    dir_ = new testutil::TempDir;
    auto catalog = store::IndexCatalog::Open(dir_->Join("indexes"));
    ASSERT_OK(catalog);
    catalog_ = catalog->release();
    std::mt19937_64 rng = testutil::SeededRng("IndexEvalTest");
    std::normal_distribution<float> normal(0.f, 1.f);
    base_ = new store::FloatMatrix{kRows, kDim, std::vector<float>(kRows * kDim)};
    for (float& x : base_->data) x = normal(rng);
    std::vector<int64_t> ids(kRows);
    for (int64_t i = 0; i < kRows; ++i) ids[i] = i;
    Publish("flat", {store::IndexType::kFlat, store::Metric::kL2, kDim, json::object()}, ids);
    Publish("hnsw", {store::IndexType::kHnsw, store::Metric::kL2, kDim,
                     {{"M", 4}, {"ef_construction", 8}, {"ef_search", 10}}}, ids);
    auto router = std::make_shared<Router>();
    AddIndexRoutes(*router, catalog_, IndexApiOptions{});
    HttpServerOptions hopts;
    hopts.port = 0;
    auto server = HttpServer::Start(hopts, router);
    ASSERT_OK(server);
    server_ = server->release();
  }
  static void Publish(const std::string& name, const store::IndexParams& params,
                      const std::vector<int64_t>& ids) {
    auto index = store::MakeVectorIndex(params);
    ASSERT_OK(index);
    ASSERT_OK((*index)->Add(base_->data.data(), kRows, ids.data()));
    ASSERT_OK(catalog_->Publish(name, **index, json{{"vectors", kRows}, {"dim", kDim}}));
  }
  static void TearDownTestSuite() {
    delete server_;
    delete catalog_;
    delete base_;
    delete dir_;
  }

  ClientOptions Options() const {
    ClientOptions o;
    o.port = server_->port();
    return o;
  }

  // The first `n` base rows, perturbed, as an .fvecs query file.
  std::string WriteQueries(int64_t n) const {
    const std::string path = dir_->Join("queries.fvecs");
    std::ofstream out(path, std::ios::binary);
    for (int64_t r = 0; r < n; ++r) {
      const int32_t d = kDim;
      out.write(reinterpret_cast<const char*>(&d), 4);
      for (int j = 0; j < kDim; ++j) {
        const float v = base_->data[r * kDim + j] + 0.05f * static_cast<float>((j % 3) - 1);
        out.write(reinterpret_cast<const char*>(&v), 4);
      }
    }
    return path;
  }

  // Runs a command function and returns {exit code, stdout, stderr}.
  template <typename Fn>
  static std::tuple<int, std::string, std::string> Run(Fn fn) {
    std::ostringstream out, err;
    CommandIo io{out, err};
    const int rc = fn(io);
    return {rc, out.str(), err.str()};
  }

  static testutil::TempDir* dir_;
  static store::IndexCatalog* catalog_;
  static store::FloatMatrix* base_;
  static HttpServer* server_;
};

testutil::TempDir* IndexEvalTest::dir_ = nullptr;
store::IndexCatalog* IndexEvalTest::catalog_ = nullptr;
store::FloatMatrix* IndexEvalTest::base_ = nullptr;
HttpServer* IndexEvalTest::server_ = nullptr;

// --exact (brute force on the server) gives the very ann_* numbers of an .ivecs file of
// the exact neighbours computed here.
TEST_F(IndexEvalTest, ExactReproducesTheGroundTruthFilePath) {
  const std::string queries = WriteQueries(200);
  ASSERT_OK_AND_ASSIGN(store::FloatMatrix q, store::ReadFvecs(queries));
  ASSERT_OK_AND_ASSIGN(store::IdMatrix truth,
                       store::ExactGroundTruth(*base_, q, 10, store::Metric::kL2));
  const std::string gt = dir_->Join("gt.ivecs");
  {
    std::ofstream out(gt, std::ios::binary);
    for (int64_t r = 0; r < truth.rows; ++r) {
      const int32_t d = truth.cols;
      out.write(reinterpret_cast<const char*>(&d), 4);
      for (int j = 0; j < truth.cols; ++j) {
        const int32_t id = static_cast<int32_t>(truth.ids[r * truth.cols + j]);
        out.write(reinterpret_cast<const char*>(&id), 4);
      }
    }
  }
  IndexEvalArgs args;
  args.name = "hnsw";
  args.queries = queries;
  args.ks = {1, 5, 10};
  args.exact = true;
  ASSERT_OK_AND_ASSIGN(IndexEvaluation exact, EvaluateIndex(Options(), args, nullptr));
  args.exact = false;
  args.ground_truth = gt;
  args.batch = 50;
  ASSERT_OK_AND_ASSIGN(IndexEvaluation file, EvaluateIndex(Options(), args, nullptr));
  int compared = 0;
  for (const auto& [name, value] : file.metrics) {
    if (name.rfind("ann_", 0) != 0) continue;
    bool found = false;
    for (const auto& [n2, v2] : exact.metrics) {
      if (n2 == name) {
        EXPECT_DOUBLE_EQ(v2, value) << name;
        found = true;
      }
    }
    EXPECT_TRUE(found) << name;
    ++compared;
  }
  EXPECT_EQ(compared, 12);  // 4 families x 3 cutoffs
  const double recall10 = exact.metrics[2].second;
  EXPECT_EQ(exact.metrics[2].first, "ann_recall@10");
  EXPECT_LT(recall10, 1.0);  // the small graph misses some: the check has teeth
  EXPECT_GT(recall10, 0.3);
  // The flat index is exact: recall 1.
  args.name = "flat";
  args.ground_truth.clear();
  args.exact = true;
  ASSERT_OK_AND_ASSIGN(IndexEvaluation flat, EvaluateIndex(Options(), args, nullptr));
  EXPECT_DOUBLE_EQ(flat.metrics[2].second, 1.0);
  EXPECT_GT(flat.server["index_bytes"].get<int64_t>(), kRows * kDim * 4);
  EXPECT_GT(flat.server["server_peak_rss_bytes"].get<int64_t>(), 0);
}

// Judged metrics by item: the qrels judge, for items 0..49, their exact neighbours
// (grade 3 for the nearest 2, grade 1 for the next 3) — so the flat index is perfect at
// relevant-at 3 for hit@1, and the comparison table has a row per index.
TEST_F(IndexEvalTest, CompareByItemAgainstQrelsInEveryFormat) {
  ASSERT_OK_AND_ASSIGN(auto flat, catalog_->Current("flat"));
  std::string qrels_text;
  for (int64_t item = 0; item < 50; ++item) {
    ASSERT_OK_AND_ASSIGN(store::SearchResult r,
                         flat->Search(base_->data.data() + item * kDim, 1, 6, {}));
    int rank = 0;
    for (int64_t id : r.ids) {
      if (id == item) continue;
      if (rank < 5) {
        qrels_text += std::to_string(item) + " 0 " + std::to_string(id) + " " +
                      (rank < 2 ? "3" : "1") + "\n";
      }
      ++rank;
    }
  }
  qrels_text += "noitem 0 1 3\n";  // not an item id: --by-item must say so
  const std::string qrels = dir_->Join("q.txt");
  std::ofstream(qrels) << qrels_text;

  IndexCompareArgs args;
  args.names = {"flat", "hnsw"};
  args.eval.qrels = qrels;
  args.eval.relevant_at = 3;
  args.eval.ks = {1, 5};
  auto [rc, out, err] = Run([&](CommandIo& io) { return RunIndexCompare(Options(), args, io); });
  EXPECT_EQ(rc, 1);
  // A query id that is no item of an index without ids of its own: the server names it.
  EXPECT_NE(err.find("items[0]: 'noitem' is not an item of index \"flat\": it has no item ids"),
            std::string::npos) << err;

  std::ofstream(qrels) << qrels_text.substr(0, qrels_text.find("noitem"));
  args.eval.format = "json";
  auto [rc2, out2, err2] = Run([&](CommandIo& io) { return RunIndexCompare(Options(), args, io); });
  ASSERT_EQ(rc2, 0) << err2;
  const json rows = json::parse(out2);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["index"], "flat");
  EXPECT_EQ(rows[0]["queries"], 50);
  EXPECT_EQ(rows[0]["evaluated"], 50);
  EXPECT_DOUBLE_EQ(rows[0]["hit@1"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(rows[0]["recall@5"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(rows[0]["ndcg@5"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(rows[0]["mrr@5"].get<double>(), 1.0);
  EXPECT_LE(rows[1]["ndcg@5"].get<double>(), 1.0);
  EXPECT_TRUE(rows[1]["latency_p95_ms"].is_number());
  EXPECT_FALSE(rows[1].contains("ann_recall@5"));

  args.eval.format = "csv";
  args.eval.exact = true;
  auto [rc3, out3, err3] = Run([&](CommandIo& io) { return RunIndexCompare(Options(), args, io); });
  ASSERT_EQ(rc3, 0) << err3;
  std::istringstream lines(out3);
  std::string header, first;
  std::getline(lines, header);
  std::getline(lines, first);
  EXPECT_EQ(header.rfind("index,queries,evaluated,recall@1,recall@5,hit@1", 0), 0u) << header;
  EXPECT_NE(header.find("ann_recall@5"), std::string::npos) << header;
  EXPECT_EQ(header.find("ann_mrr@5"), std::string::npos) << header;
  EXPECT_EQ(first.rfind("flat,50,50,", 0), 0u) << first;

  args.eval.format = "table";
  auto [rc4, out4, err4] = Run([&](CommandIo& io) { return RunIndexCompare(Options(), args, io); });
  ASSERT_EQ(rc4, 0) << err4;
  EXPECT_EQ(out4.rfind("INDEX", 0), 0u) << out4;
  EXPECT_NE(out4.find("\nflat "), std::string::npos) << out4;
  EXPECT_NE(out4.find("\nhnsw "), std::string::npos) << out4;
}

TEST_F(IndexEvalTest, EvalByVectorWithQueryIdsAndClearErrors) {
  const std::string queries = WriteQueries(20);
  const std::string ids = dir_->Join("ids.txt");
  std::ofstream idf(ids);
  for (int i = 0; i < 20; ++i) idf << "q" << i << "\n";
  idf.close();
  std::ofstream(dir_->Join("qrels.json")) << R"({"q0": {"0": 2}, "q1": {"1": 2}, "q2": {"7": 0}})";
  IndexEvalArgs args;
  args.name = "flat";
  args.queries = queries;
  args.query_ids = ids;
  args.qrels = dir_->Join("qrels.json");
  args.ks = {1, 3};
  args.format = "json";
  auto [rc, out, err] = Run([&](CommandIo& io) { return RunIndexEval(Options(), args, io); });
  ASSERT_EQ(rc, 0) << err;
  const json j = json::parse(out);
  EXPECT_EQ(j["queries"], 20);
  EXPECT_EQ(j["evaluated"], 2);           // q0, q1
  EXPECT_EQ(j["without_relevant"], 1);    // q2: only a grade-0 judgment
  EXPECT_EQ(j["without_judgments"], 17);  // q3..q19
  EXPECT_DOUBLE_EQ(j["hit@1"].get<double>(), 1.0);  // each query's own row is its nearest
  EXPECT_EQ(j["batch"], 1);

  args.format = "table";
  auto [rc1, out1, err1] = Run([&](CommandIo& io) { return RunIndexEval(Options(), args, io); });
  ASSERT_EQ(rc1, 0) << err1;
  EXPECT_NE(out1.find("2 evaluated, 1 without a relevant item, 17 without judgments (left out)"),
            std::string::npos) << out1;
  EXPECT_NE(out1.find("latency per query (batch 1"), std::string::npos) << out1;

  auto error_of = [&](const IndexEvalArgs& a) {
    auto [code, o, e] = Run([&](CommandIo& io) { return RunIndexEval(Options(), a, io); });
    EXPECT_EQ(code, 1) << o;
    return e;
  };
  IndexEvalArgs none = args;
  none.qrels.clear();
  EXPECT_NE(error_of(none).find("nothing to measure"), std::string::npos);
  IndexEvalArgs bad_ids = args;
  std::ofstream(dir_->Join("short.txt")) << "a\nb\n";
  bad_ids.query_ids = dir_->Join("short.txt");
  EXPECT_NE(error_of(bad_ids).find("has 2 ids but"), std::string::npos);
  IndexEvalArgs missing = args;
  missing.qrels = dir_->Join("nope.txt");
  EXPECT_NE(error_of(missing).find("--qrels: "), std::string::npos);
  IndexEvalArgs unknown = args;
  unknown.name = "nope";
  EXPECT_NE(error_of(unknown).find("nope"), std::string::npos);
}

TEST(IndexEvalFormatTest, QueryIdsRejectEmptyLines) {
  testutil::TempDir dir;
  std::ofstream(dir.Join("ids.txt")) << " a \nb\n\nc\n";
  auto ids = ReadQueryIds(dir.Join("ids.txt"));
  ASSERT_FALSE(ids.ok());
  EXPECT_NE(ids.status().message().find("line 3 is empty"), std::string::npos);
  std::ofstream(dir.Join("ok.txt")) << " a \nb\r\n";
  ASSERT_OK_AND_ASSIGN(auto good, ReadQueryIds(dir.Join("ok.txt")));
  EXPECT_EQ(good, (std::vector<std::string>{"a", "b"}));
}

}  // namespace
}  // namespace lattice::cli
