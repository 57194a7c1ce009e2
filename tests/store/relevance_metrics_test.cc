// Relevance judgments (store/qrels.h) and the metrics against them
// (store/relevance_metrics.h), checked against tests/store/relevance_reference.py (an
// independent numpy implementation of trec_eval's formulas) on random qrels and runs.
#include "store/relevance_metrics.h"

#include <cstdio>
#include <fstream>
#include <memory>
#include <random>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "store/qrels.h"
#include "tests/testutil/testutil.h"

namespace lattice::store {
namespace {

using nlohmann::json;

// ---- qrels parsing ----

TEST(QrelsTest, ParsesTrecAndJsonAlike) {
  ASSERT_OK_AND_ASSIGN(Qrels trec, ParseQrels("# comment\nq1 0 d1 3\n\nq1 0 d2 0\nq2 Q0 7 -1\n",
                                              "q.txt"));
  ASSERT_OK_AND_ASSIGN(Qrels js, ParseQrels(R"( {"q1": {"d1": 3, "d2": 0}, "q2": {"7": -1}})",
                                            "q.json"));
  EXPECT_EQ(trec.judgments, js.judgments);
  EXPECT_EQ(trec.size(), 3u);
  EXPECT_EQ(trec.judgments.at("q1").at("d1"), 3);
  EXPECT_EQ(trec.judgments.at("q2").at("7"), -1);
  ASSERT_OK_AND_ASSIGN(Qrels integral, ParseQrels(R"({"q": {"d": 2.0}})", "q.json"));
  EXPECT_EQ(integral.judgments.at("q").at("d"), 2);
}

void ExpectError(const std::string& text, const std::string& want) {
  auto parsed = ParseQrels(text, "q.txt");
  ASSERT_FALSE(parsed.ok()) << text;
  EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find(want), std::string::npos)
      << parsed.status().message() << " (wanted '" << want << "')";
}

TEST(QrelsTest, ErrorsNameTheLineOrKey) {
  ExpectError("q1 0 d1 3\nq1 d2 1\n", "q.txt: line 2: expected 4 fields (qid iteration docid "
                                      "grade), got 3");
  ExpectError("q1 0 d1 high\n", "line 1: grade 'high' is not an integer");
  ExpectError("q1 0 d1 2.5\n", "line 1: grade '2.5' is not an integer");
  ExpectError("q1 0 d1 3\nq2 0 d1 1\nq1 0 d1 2\n",
              "line 3: duplicate judgment of query 'q1', item 'd1' (first at line 1)");
  ExpectError(R"({"q1": {"d1": "3"}})", "query 'q1': item 'd1': grade must be an integer, got "
                                        "string");
  ExpectError(R"({"q1": {"d1": 2.5}})", "grade must be an integer, got 2.5");
  ExpectError(R"({"q1": [1, 2]})", "query 'q1': expected an object {docid: grade}, got array");
  ExpectError(R"({"q1": {"d1": 3})", "malformed JSON");
  ExpectError("# nothing\n\n", "q.txt: no judgments");
  ExpectError("{}", "no judgments");
}

TEST(QrelsTest, ReadsFilesAndNamesMissingOnes) {
  testutil::TempDir dir;
  EXPECT_EQ(ReadQrelsFile(dir.Join("missing.txt")).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(ReadQrelsFile(dir.path()).status().code(), StatusCode::kInvalidArgument);
  std::ofstream(dir.Join("q.txt")) << "a 0 b 1\n";
  ASSERT_OK_AND_ASSIGN(Qrels q, ReadQrelsFile(dir.Join("q.txt")));
  EXPECT_EQ(q.judgments.at("a").at("b"), 1);
}

// ---- metrics, by hand ----

TEST(RelevanceMetricsTest, HandComputedGradedExample) {
  // Judged: a=3, b=1, c=2, d=0; relevant_at 2 -> relevant {a, c}, R = 2.
  // Run: [x, c, a, c, b]: x unjudged, c at rank 2, a at rank 3, c repeated (ignored).
  const std::unordered_map<std::string, int> judged = {{"a", 3}, {"b", 1}, {"c", 2}, {"d", 0}};
  RelevanceOptions options;
  options.relevant_at = 2;
  options.ks = {1, 3};
  ASSERT_OK_AND_ASSIGN(auto v, QueryRelevanceMetrics({"x", "c", "a", "c", "b"}, judged, options));
  const auto names = RelevanceMetricNames(options.ks);
  ASSERT_EQ(names, (std::vector<std::string>{"recall@1", "recall@3", "hit@1", "hit@3",
                                             "precision@1", "precision@3", "ndcg@1", "ndcg@3",
                                             "mrr@3", "map@3"}));
  ASSERT_EQ(v.size(), names.size());
  EXPECT_DOUBLE_EQ(v[0], 0.0);        // recall@1
  EXPECT_DOUBLE_EQ(v[1], 1.0);        // recall@3: both relevant in the top 3
  EXPECT_DOUBLE_EQ(v[2], 0.0);        // hit@1
  EXPECT_DOUBLE_EQ(v[3], 1.0);        // hit@3
  EXPECT_DOUBLE_EQ(v[5], 2.0 / 3.0);  // precision@3
  EXPECT_DOUBLE_EQ(v[6], 0.0);        // ndcg@1
  // DCG@3 = 2/log2(3) + 3/log2(4) = 1.26186 + 1.5; IDCG@3 = 3 + 2/log2(3) + 1/2.
  EXPECT_NEAR(v[7], (2 / std::log2(3.0) + 1.5) / (3 + 2 / std::log2(3.0) + 0.5), 1e-12);
  EXPECT_DOUBLE_EQ(v[8], 0.5);                        // first relevant at rank 2
  EXPECT_DOUBLE_EQ(v[9], (1.0 / 2 + 2.0 / 3) / 2);    // (P@2 + P@3) / R
  EXPECT_EQ(QueryRelevanceMetrics({"a"}, {{"a", 1}}, options).status().code(),
            StatusCode::kFailedPrecondition);  // nothing reaches relevant_at 2
}

TEST(RelevanceMetricsTest, QueriesWithoutJudgmentsOrRelevantAreCountedNotAveraged) {
  Qrels qrels;
  qrels.judgments["q1"] = {{"a", 1}};
  qrels.judgments["q2"] = {{"a", 0}};
  RelevanceOptions options;
  options.ks = {1};
  ASSERT_OK_AND_ASSIGN(auto r, EvaluateRankings({{"q1", {"a"}}, {"q2", {"a"}}, {"q3", {"a"}}},
                                                qrels, options));
  EXPECT_EQ(r.queries, 1);
  EXPECT_EQ(r.without_relevant, 1);
  EXPECT_EQ(r.without_judgments, 1);
  EXPECT_DOUBLE_EQ(r.means[0], 1.0);
  EXPECT_FALSE(EvaluateRankings({{"q1", {}}, {"q1", {}}}, qrels, options).ok());
  options.relevant_at = 0;
  EXPECT_EQ(EvaluateRankings({}, qrels, options).status().code(), StatusCode::kInvalidArgument);
  options.relevant_at = 1;
  options.ks = {0};
  EXPECT_EQ(EvaluateRankings({}, qrels, options).status().code(), StatusCode::kInvalidArgument);
}

// ---- against the reference implementation ----

struct RandomCase {
  json qrels = json::object();
  std::vector<RankedList> runs;
};

// `queries` queries over a pool of 25 items; grades in [0, max_grade] (many ties); a few
// queries are never judged, a few judge nothing at or above 3; runs have 0..12 items with
// repeats and unjudged items.
RandomCase MakeCase(std::mt19937_64& rng, int queries, int max_grade) {
  RandomCase c;
  std::uniform_int_distribution<int> item(0, 24), grade(0, max_grade), len(0, 12), pct(0, 99);
  for (int q = 0; q < queries; ++q) {
    const std::string qid = "q" + std::to_string(q);
    if (pct(rng) >= 10) {
      json judged = json::object();
      const int n = 1 + pct(rng) % 10;
      const bool low = pct(rng) < 10;
      for (int i = 0; i < n; ++i) {
        judged["d" + std::to_string(item(rng))] = low ? std::min(grade(rng), 2) : grade(rng);
      }
      c.qrels[qid] = judged;
    }
    RankedList run{qid, {}};
    for (int i = len(rng); i > 0; --i) run.items.push_back("d" + std::to_string(item(rng)));
    c.runs.push_back(run);
  }
  return c;
}

// Runs the reference on `c` and compares every query's metrics and the means.
void CheckAgainstReference(const RandomCase& c, const RelevanceOptions& options) {
  testutil::TempDir dir;
  json runs = json::array();
  for (const RankedList& r : c.runs) runs.push_back({r.query, r.items});
  const std::string input = dir.Join("input.json");
  std::ofstream(input) << json{{"qrels", c.qrels},
                               {"runs", runs},
                               {"relevant_at", options.relevant_at},
                               {"ks", options.ks}}
                              .dump();
  const std::string command = "/usr/bin/python3 " + testutil::SourceDir() +
                              "/tests/store/relevance_reference.py " + input;
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), &::pclose);
  ASSERT_TRUE(pipe != nullptr);
  std::string text;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, pipe.get())) > 0;) text.append(buf, n);
  ASSERT_EQ(::pclose(pipe.release()), 0) << command;
  const json want = json::parse(text);

  // Through the TREC parser, so that parsing is part of what is compared.
  std::string trec;
  for (const auto& [qid, judged] : c.qrels.items()) {
    for (const auto& [doc, g] : judged.items()) {
      trec += qid + " 0 " + doc + " " + std::to_string(g.get<int>()) + "\n";
    }
  }
  ASSERT_OK_AND_ASSIGN(Qrels qrels, ParseQrels(trec, "random"));
  ASSERT_OK_AND_ASSIGN(RelevanceReport got, EvaluateRankings(c.runs, qrels, options));
  EXPECT_EQ(got.queries, want["queries"].get<int64_t>());
  EXPECT_EQ(got.without_relevant, want["without_relevant"].get<int64_t>());
  EXPECT_EQ(got.without_judgments, want["without_judgments"].get<int64_t>());
  ASSERT_GT(got.queries, 0);
  for (size_t i = 0; i < got.names.size(); ++i) {
    EXPECT_NEAR(got.means[i], want["means"][got.names[i]].get<double>(), 1e-12) << got.names[i];
  }
  int compared = 0;
  for (const RankedList& r : c.runs) {
    if (!want["per_query"].contains(r.query)) continue;
    ASSERT_OK_AND_ASSIGN(auto values,
                         QueryRelevanceMetrics(r.items, qrels.judgments.at(r.query), options));
    for (size_t i = 0; i < got.names.size(); ++i) {
      EXPECT_NEAR(values[i], want["per_query"][r.query][got.names[i]].get<double>(), 1e-12)
          << r.query << " " << got.names[i];
    }
    ++compared;
  }
  EXPECT_EQ(compared, got.queries);
}

TEST(RelevanceMetricsTest, GradedMatchesReference) {
  auto rng = testutil::SeededRng("GradedMatchesReference");
  RandomCase c = MakeCase(rng, 200, 5);
  RelevanceOptions options;
  options.relevant_at = 3;
  options.ks = {1, 3, 5, 10};
  CheckAgainstReference(c, options);
  options.relevant_at = 1;
  options.ks = {10, 2, 7};  // any order
  CheckAgainstReference(c, options);
}

TEST(RelevanceMetricsTest, BinaryMatchesReference) {
  auto rng = testutil::SeededRng("BinaryMatchesReference");
  RelevanceOptions options;
  options.relevant_at = 1;
  options.ks = {1, 5, 10};
  CheckAgainstReference(MakeCase(rng, 200, 1), options);
}

}  // namespace
}  // namespace lattice::store
