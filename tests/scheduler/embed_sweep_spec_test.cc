// Embed sweeps over embedding variants (scheduler/embed_spec.h): search.parameters sweeps
// pooling / normalize / encoder, each variant publishes an index named after its point, and
// `metric` ranks them against relevance judgments read at submit.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "scheduler/sweep_spec.h"
#include "tests/testutil/testutil.h"

namespace lattice::scheduler {
namespace {

using nlohmann::json;

const char kImages[] = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";

class EmbedSweepSpecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Queries 0 and 1 (rows of the corpus) judge a few other rows.
    std::ofstream(qrels_) << "0 0 5 3\n0 0 6 1\n1 0 7 3\n";
  }

  // 100 rows in shards of 40 (3 shards), an index named "fm", `extra` appended.
  std::string Spec(const std::string& extra) const {
    return std::string("name: e\nkind: embed\nencoder: {type: flatten}\n") +
           "corpus: {format: idx, images: " + kImages + ", limit: 100}\nshard_size: 40\n" +
           "index: {name: fm, type: flat}\n" + extra;
  }
  std::string Metric(const std::string& name = "ndcg@10") const {
    return "metric: {name: " + name + ", qrels: " + qrels_ + ", relevant_at: 3}\n";
  }
  static void ExpectInvalid(const std::string& text, const std::string& needle) {
    StatusOr<SweepSpec> spec = ParseSweepSpec(text);
    ASSERT_FALSE(spec.ok()) << "accepted:\n" << text;
    EXPECT_EQ(spec.status().code(), StatusCode::kInvalidArgument) << spec.status().ToString();
    EXPECT_NE(spec.status().message().find(needle), std::string::npos)
        << "message: " << spec.status().message() << "\nexpected to contain: " << needle;
  }

  testutil::TempDir dir_;
  const std::string qrels_ = dir_.Join("judgments.qrels");
};

const char kGrid[] =
    "search:\n  method: grid\n  parameters:\n    pooling: [mean, last]\n"
    "    normalize: [false, true]\n";

TEST_F(EmbedSweepSpecTest, VariantsTimesShardsWithIndexNamesFromThePoints) {
  ASSERT_OK_AND_ASSIGN(SweepSpec spec, ParseSweepSpec(Spec(std::string(kGrid) + Metric())));
  ASSERT_EQ(spec.points.size(), 12u);  // 4 variants x 3 shards, variant-major
  ASSERT_EQ(spec.trial_configs.size(), 12u);
  EXPECT_EQ(spec.parameter_names,
            (std::vector<std::string>{"pooling", "normalize", "variant", "shard", "begin", "end"}));
  EXPECT_EQ(spec.points[4], (json{{"pooling", "mean"},
                                  {"normalize", true},
                                  {"variant", 1},
                                  {"shard", 1},
                                  {"begin", 40},
                                  {"end", 80}}));
  EXPECT_EQ(spec.trial_configs[4]["normalize"], true);
  EXPECT_EQ(spec.trial_configs[4]["pooling"], "mean");
  EXPECT_EQ(spec.trial_configs[4]["shard"], (json{{"begin", 40}, {"end", 80}}));
  EXPECT_EQ(spec.trial_configs[11]["pooling"], "last");
  EXPECT_FALSE(spec.trial_configs[0].contains("metric"));
  EXPECT_FALSE(spec.trial_configs[0].contains("variants"));
  const json& variants = spec.spec["variants"];
  ASSERT_EQ(variants.size(), 4u);
  const std::vector<std::string> names = {
      "fm-pooling-mean-normalize-false", "fm-pooling-mean-normalize-true",
      "fm-pooling-last-normalize-false", "fm-pooling-last-normalize-true"};
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(variants[i]["index"], names[i]);
    EXPECT_EQ(variants[i]["variant"], i);
  }
  EXPECT_EQ(variants[3]["params"], (json{{"pooling", "last"}, {"normalize", true}}));
  EXPECT_EQ(variants[3]["embedding"],
            (json{{"encoder", {{"type", "flatten"}}}, {"pooling", "last"}, {"normalize", true}}));
  // The sweep ranks by the metric.
  EXPECT_EQ(spec.metric, "ndcg@10");
  EXPECT_TRUE(spec.maximize);
  EXPECT_EQ(spec.spec["metric"]["relevant_at"], 3);
}

TEST_F(EmbedSweepSpecTest, EncoderObjectsAndLayersNameVariantsOrFallBackToTheirNumber) {
  ASSERT_OK_AND_ASSIGN(SweepSpec spec,
                       ParseSweepSpec(Spec("search:\n  method: grid\n  parameters:\n"
                                           "    encoder: [{type: flatten}, {type: flatten}]\n"
                                           "    normalize: [true]\n")));
  ASSERT_EQ(spec.spec["variants"].size(), 2u);
  EXPECT_EQ(spec.spec["variants"][0]["index"], "fm-v0");  // an object makes no label
  EXPECT_EQ(spec.spec["variants"][1]["index"], "fm-v1");
  EXPECT_EQ(spec.metric, "items_per_s");  // no metric: the shards' throughput, as before
  // A dotted parameter (encoder.<key>) names itself in the label.
  ASSERT_OK_AND_ASSIGN(SweepSpec spaced,
                       ParseSweepSpec(Spec("search:\n  method: grid\n  parameters:\n"
                                           "    pooling: [\"mean\"]\n"
                                           "    encoder.type: [flatten]\n")));
  EXPECT_EQ(spaced.spec["variants"][0]["index"], "fm-pooling-mean-encoder.type-flatten");
}

TEST_F(EmbedSweepSpecTest, OnlyEmbeddingParametersMaySweep) {
  ExpectInvalid(Spec("search:\n  method: grid\n  parameters:\n    batch_size: [64, 128]\n"),
                "search.parameters.batch_size: not an embedding parameter (allowed: pooling, "
                "normalize, encoder, encoder.<key>)");
  ExpectInvalid(Spec("search:\n  method: grid\n  parameters:\n    corpus.limit: [10, 20]\n"),
                "search.parameters.corpus.limit: not an embedding parameter");
  ExpectInvalid(Spec("search:\n  method: random\n  parameters:\n"
                     "    normalize: [false, true]\n"),
                "search.method: an embed sweep's variants are a grid");
  ExpectInvalid(Spec("search:\n  method: grid\n  metric: {name: ndcg@10}\n  parameters:\n"
                     "    normalize: [false, true]\n"),
                "search.metric: an embed sweep ranks its variants by the top-level metric");
  ExpectInvalid(Spec("search:\n  method: grid\n  parameters:\n    pooling: [mean, average]\n"),
                "search: variant 1 (pooling=average): pooling");
  ExpectInvalid(Spec("search:\n  method: grid\n  parameters:\n    normalize: [true, true]\n"),
                "would both publish index \"fm-normalize-true\"");
}

TEST_F(EmbedSweepSpecTest, UnknownMetricNamesAreRefusedListingTheValidOnes) {
  for (const char* bad : {"ndcg", "ndcg@0", "ndcg@x", "f1@10", "recall@1001", "mrr@05"}) {
    ExpectInvalid(Spec(Metric(bad)), std::string("metric.name: unknown relevance metric \"") + bad +
                                         "\" (valid: recall@k, hit@k, precision@k, "
                                         "ndcg@k, mrr@k or map@k");
  }
  for (const char* good : {"recall@5", "hit@1", "precision@3", "mrr@10", "map@100"}) {
    ASSERT_OK_AND_ASSIGN(SweepSpec spec, ParseSweepSpec(Spec(Metric(good))));
    EXPECT_EQ(spec.metric, good);
  }
  ExpectInvalid(Spec("metric: {name: ndcg@10, qrels: " + qrels_ + ", relevant_at: 0}\n"),
                "metric.relevant_at: must be an integer >= 1");
  ExpectInvalid(Spec("metric: {name: ndcg@10, qrels: " + qrels_ + ", goal: minimize}\n"),
                "metric.goal: unknown key (allowed: name, qrels, relevant_at)");
  ExpectInvalid(Spec("metric: {name: ndcg@10}\n"), "metric.qrels: required");
}

TEST_F(EmbedSweepSpecTest, BadJudgmentsAreRefusedAtSubmit) {
  ExpectInvalid(Spec("metric: {name: ndcg@10, qrels: " + dir_.Join("none.qrels") + "}\n"),
                "metric.qrels: file not found: " + dir_.Join("none.qrels"));
  std::ofstream(dir_.Join("short.qrels")) << "0 0 5\n";
  ExpectInvalid(Spec("metric: {name: ndcg@10, qrels: " + dir_.Join("short.qrels") + "}\n"),
                "metric.qrels: " + dir_.Join("short.qrels") + ": line 1: expected 4 fields");
  std::ofstream(dir_.Join("far.qrels")) << "0 0 5 3\n100 0 6 3\n";  // rows are 0..99
  ExpectInvalid(Spec("metric: {name: ndcg@10, qrels: " + dir_.Join("far.qrels") + "}\n"),
                "query '100' is not an item of the corpus (its items are row numbers 0..99)");
  ExpectInvalid(Spec("metric: {name: ndcg@10, qrels: " + qrels_ + ", relevant_at: 4}\n"),
                "no judgment has a grade >= 4");
  // The user's ids name the items when the corpus has them.
  std::string ids;
  for (int r = 0; r < 10000; ++r) ids += "img-" + std::to_string(r) + "\n";
  std::ofstream(dir_.Join("ids.txt")) << ids;
  std::ofstream(dir_.Join("named.qrels")) << "img-3 0 img-4 3\n";
  const std::string named = std::string("name: e\nkind: embed\nencoder: {type: flatten}\n") +
                            "corpus: {format: idx, images: " + kImages +
                            ", limit: 100, ids: " + dir_.Join("ids.txt") + "}\n";
  EXPECT_OK(
      ParseSweepSpec(named + "metric: {name: hit@1, qrels: " + dir_.Join("named.qrels") + "}\n"));
  ExpectInvalid(named + Metric(), "query '0' is not an item of the corpus (not among corpus.ids)");
}

TEST_F(EmbedSweepSpecTest, MetricWithoutSearchIsOneVariantAndOutputTakesNeither) {
  ASSERT_OK_AND_ASSIGN(SweepSpec spec, ParseSweepSpec(Spec(Metric("map@10"))));
  EXPECT_EQ(spec.points.size(), 3u);
  EXPECT_EQ(spec.points[0], (json{{"shard", 0}, {"begin", 0}, {"end", 40}}));
  EXPECT_FALSE(spec.spec.contains("variants"));  // its index is index.name itself
  EXPECT_EQ(spec.metric, "map@10");

  const std::string dataset = std::string("name: e\nkind: embed\nencoder: {type: flatten}\n") +
                              "corpus: {format: idx, images: " + kImages + ", limit: 100}\n" +
                              "output: {dataset: acts}\n";
  ExpectInvalid(dataset + kGrid, "search: an embed sweep with output.dataset writes one dataset");
  ExpectInvalid(dataset + Metric(), "metric: an embed sweep with output.dataset");
  // metric belongs to embed sweeps only.
  ExpectInvalid("name: n\nkind: noop\n" + Metric(), "metric: only used by kind embed");
}

TEST_F(EmbedSweepSpecTest, SubmitMakesTheJudgmentsPathAbsolute) {
  ASSERT_OK_AND_ASSIGN(std::string text,
                       ResolveSpecPaths("name: e\nkind: embed\nmetric: {name: ndcg@10, qrels: "
                                        "j/q.txt}\nsearch: {method: grid, parameters: {encoder: "
                                        "[{type: torchscript, path: a.pt}]}}\n",
                                        "/data/specs"));
  const json doc = json::parse(text);
  EXPECT_EQ(doc["metric"]["qrels"], "/data/specs/j/q.txt");
  EXPECT_EQ(doc["search"]["parameters"]["encoder"][0]["path"], "/data/specs/a.pt");
}

// examples/retrieval/fmnist-variants.yaml, with its judgments written beside it (as its
// comment says) and its paths resolved as `lattice submit` does.
TEST_F(EmbedSweepSpecTest, TheVariantsExampleParses) {
  const std::string example = testutil::SourceDir() + "/examples/retrieval/fmnist-variants.yaml";
  std::ifstream in(example);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(text.empty()) << example;
  std::ofstream(dir_.Join("fmnist.qrels")) << "0 0 1 3\n0 0 2 1\n";
  ASSERT_OK_AND_ASSIGN(std::string resolved, ResolveSpecPaths(text, dir_.path()));
  StatusOr<SweepSpec> spec = ParseSweepSpec(resolved);
  if (!spec.ok() && spec.status().message().find("not found") != std::string::npos) {
    GTEST_SKIP() << "Fashion-MNIST is not installed: " << spec.status().message();
  }
  ASSERT_OK(spec);
  EXPECT_EQ(spec->metric, "ndcg@10");
  EXPECT_EQ(spec->spec["metric"]["qrels"], dir_.Join("fmnist.qrels"));
  ASSERT_EQ(spec->spec["variants"].size(), 2u);
  EXPECT_EQ(spec->spec["variants"][0]["index"], "fmnist-normalize-false");
  EXPECT_EQ(spec->spec["variants"][1]["index"], "fmnist-normalize-true");
  EXPECT_EQ(spec->points.size(), 10u);  // 2 variants x 5 shards of 2,000
}

}  // namespace
}  // namespace lattice::scheduler
