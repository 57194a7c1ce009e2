// Pure helpers of `lattice index eval / search` (cli/index_commands.h).
#include "cli/index_commands.h"

#include <gtest/gtest.h>

#include "index/search_request.h"
#include "tests/testutil/testutil.h"

namespace lattice::cli {
namespace {

TEST(IndexCommandsTest, EvalMetricsPerCutoff) {
  // Query 0: perfect. Query 1: true nearest (5) at rank 2, one of the top-2 missing.
  store::IdMatrix truth{2, 2, {1, 2, 5, 6}};
  store::IdMatrix retrieved{2, 2, {1, 2, 9, 5}};
  ASSERT_OK_AND_ASSIGN(auto rows, ComputeEvalMetrics(retrieved, truth, {1, 2}));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].k, 1);
  EXPECT_DOUBLE_EQ(rows[0].recall, 0.5);  // q0 hit, q1 miss (9 is not 5)
  EXPECT_DOUBLE_EQ(rows[0].mrr, 0.5);
  EXPECT_EQ(rows[1].k, 2);
  EXPECT_DOUBLE_EQ(rows[1].recall, (1.0 + 0.5) / 2);
  EXPECT_DOUBLE_EQ(rows[1].mrr, (1.0 + 0.5) / 2);
  EXPECT_DOUBLE_EQ(rows[1].map, (1.0 + 0.25) / 2);  // q1: (1/2) * precision@2 (= 1/2)
  EXPECT_GT(rows[1].ndcg, rows[1].recall - 0.5);
  EXPECT_FALSE(ComputeEvalMetrics(retrieved, truth, {3}).ok());  // k > columns
}

TEST(IndexCommandsTest, LatencyPercentilesAndQps) {
  std::vector<double> ms;
  for (int i = 100; i >= 1; --i) ms.push_back(i);
  LatencySummary s = SummarizeLatencies(ms, 1000, 2.0);
  EXPECT_DOUBLE_EQ(s.qps, 500);
  EXPECT_DOUBLE_EQ(s.p50_ms, 50);
  EXPECT_DOUBLE_EQ(s.p95_ms, 95);
  EXPECT_DOUBLE_EQ(s.p99_ms, 99);
  EXPECT_DOUBLE_EQ(SummarizeLatencies({7}, 1, 1).p99_ms, 7);
}

TEST(IndexCommandsTest, KList) {
  ASSERT_OK_AND_ASSIGN(auto ks, ParseKList("1,5,10"));
  EXPECT_EQ(ks, (std::vector<int>{1, 5, 10}));
  EXPECT_FALSE(ParseKList("1,,5").ok());
  EXPECT_FALSE(ParseKList("0").ok());
  EXPECT_FALSE(ParseKList("ten").ok());
}

TEST(IndexCommandsTest, SearchBodyRoundTripsThroughTheServerParser) {
  const std::vector<float> x = {0.1f, -2.5f, 3e-7f, 1234.5f, 0.f, 1.f / 3};
  store::SearchParams params;
  params.ef_search = 64;
  const std::string body = SearchBody(x.data(), 2, 3, 7, params);
  ASSERT_OK_AND_ASSIGN(SearchRequest r, ParseSearchRequest(body, {3, 100, 10}));
  EXPECT_EQ(r.vectors, x);  // shortest round-trip text: bit-exact
  EXPECT_EQ(r.nq, 2);
  EXPECT_EQ(r.k, 7);
  EXPECT_EQ(r.params.ef_search, 64);
  EXPECT_EQ(r.params.nprobe, 0);
}

TEST(IndexCommandsTest, ResultIdsPadsShortRows) {
  ASSERT_OK_AND_ASSIGN(
      HitIds m,
      ResultIds(R"({"results":[{"ids":[4,5],"distances":[0,1]},{"ids":[],"distances":[]}]})", 2,
                3));
  EXPECT_EQ(m.ids, (std::vector<std::string>{"4", "5", "", "", "", ""}));
  EXPECT_FALSE(ResultIds(R"({"results":[]})", 2, 3).ok());
  EXPECT_FALSE(ResultIds("not json", 1, 1).ok());
  EXPECT_FALSE(ResultIds(R"({"results":[{"ids":[null]}]})", 1, 1).ok());
}

// The user's ids (strings) come back as they are; for the ANN metrics they are numbered,
// the same text the same number in every matrix that shares the numbering.
TEST(IndexCommandsTest, StringIdsAreKeptAndNumberedConsistently) {
  ASSERT_OK_AND_ASSIGN(
      HitIds found,
      ResultIds(R"({"results":[{"ids":["doc-7","doc-2"]},{"ids":["doc-2"]}]})", 2, 2));
  EXPECT_EQ(found.ids, (std::vector<std::string>{"doc-7", "doc-2", "doc-2", ""}));
  ASSERT_OK_AND_ASSIGN(HitIds exact, ResultIds(R"({"results":[{"ids":["doc-2",3]},{"ids":[]}]})",
                                               2, 2));
  std::unordered_map<std::string, int64_t> numbers;
  const store::IdMatrix a = NumberHits(found, &numbers);
  const store::IdMatrix b = NumberHits(exact, &numbers);
  EXPECT_EQ(a.ids[1], a.ids[2]);
  EXPECT_EQ(b.ids[0], a.ids[1]);
  EXPECT_NE(a.ids[0], a.ids[1]);
  EXPECT_EQ(b.ids[1], 3);  // a row number stays itself (compares with an .ivecs)
  EXPECT_EQ(a.ids[3], -1);
  EXPECT_GE(a.ids[0], int64_t{1} << 62);
  EXPECT_EQ(ItemIdJson("42"), nlohmann::json(42));
  EXPECT_EQ(ItemIdJson("-3"), nlohmann::json(-3));
  EXPECT_EQ(ItemIdJson("doc-7"), nlohmann::json("doc-7"));
  EXPECT_EQ(ItemIdJson("4x"), nlohmann::json("4x"));
  EXPECT_EQ(ItemsBody(std::vector<nlohmann::json>{1, "a"}.data(), 2, 5, {}),
            R"({"k":5,"items":[1,"a"]})");
}

TEST(IndexCommandsTest, BuiltFromShowsCheckpointLineage) {
  using nlohmann::json;
  EXPECT_EQ(FormatBuiltFrom(json::object()), "-");
  EXPECT_EQ(FormatBuiltFrom(json{{"built_from", {{"sweep", "s5"}, {"name", "fmnist"}}}}),
            "s5 (fmnist)");
  json entry = {{"built_from",
                 {{"sweep", "s6"}, {"name", "probe"},
                  {"checkpoint", {{"trial", "s3-t1"}, {"layer", 1}, {"sweep", "s3"}}}}}};
  EXPECT_EQ(FormatBuiltFrom(entry), "s6 (probe) <- trial s3-t1 layer 1");
}

TEST(IndexCommandsTest, HitsTableShowsMetadataWhenPresent) {
  using nlohmann::json;
  const std::string plain =
      FormatHits(json::parse(R"({"results":[{"ids":[4,5],"distances":[0.5,1.5]}]})"));
  EXPECT_EQ(plain.find("METADATA"), std::string::npos);
  EXPECT_NE(plain.find("5   1.5"), std::string::npos) << plain;
  const std::string meta = FormatHits(json::parse(
      R"({"results":[{"ids":[4,5],"distances":[0.5,1.5],"metadata":[{"label":3},null]}]})"));
  EXPECT_NE(meta.find("METADATA"), std::string::npos) << meta;
  EXPECT_NE(meta.find("{\"label\":3}"), std::string::npos) << meta;
  EXPECT_NE(meta.find("null"), std::string::npos) << meta;
}

}  // namespace
}  // namespace lattice::cli
