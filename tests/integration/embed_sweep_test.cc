// An embed sweep over embedding variants on a real `mpirun -np 3` cluster: Fashion-MNIST
// embedded with normalize: [false, true] in one sweep publishes one flat index per variant,
// named after its point; each variant's ndcg@10 against label-derived graded judgments
// (as tests/integration/retrieval_test.cc makes them) must equal what `lattice index eval
// --by-item` measures on that index with the same judgments, and the sweep's best trial
// must be a trial of the variant with the higher value. Listings print valid JSON.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "jobs/dataset.h"
#include "tests/integration/cluster_fixture.h"

namespace lattice {
namespace {

using nlohmann::json;

constexpr char kTrainImages[] = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";
constexpr char kTrainLabels[] = "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz";
constexpr int64_t kCorpus = 2000;
constexpr int64_t kQueries = 100;  // items 0..99 are the queries
constexpr int64_t kShards = 4;     // shards of 500 per variant
// Fashion-MNIST label -> group of related classes (tops, trouser, dress, footwear, bag).
const std::vector<int> kGroups = {0, 1, 0, 2, 0, 3, 0, 3, 4, 3};

class EmbedSweepTest : public testutil::ClusterFixture {
 protected:
  // Graded judgments from the labels: same label 3, same group 1 (TREC format).
  std::string WriteQrels() {
    auto labels = jobs::LoadIdxLabels(kTrainLabels);
    EXPECT_OK(labels);
    const std::string path = dir_.Join("labels.qrels");
    std::ofstream out(path);
    for (int64_t q = 0; q < kQueries; ++q) {
      for (int64_t d = 0; d < kCorpus; ++d) {
        const int64_t lq = (*labels)[q], ld = (*labels)[d];
        if (d == q) continue;
        if (ld == lq) {
          out << q << " 0 " << d << " 3\n";
        } else if (kGroups[ld] == kGroups[lq]) {
          out << q << " 0 " << d << " 1\n";
        }
      }
    }
    return path;
  }
};

TEST_F(EmbedSweepTest, EachVariantIsIndexedAndJudgedAndTheBestVariantIsTheBestTrial) {
  StartCluster();
  const std::string qrels = WriteQrels();
  const std::string spec = std::string("name: fmsweep\nkind: embed\nencoder: {type: flatten}\n") +
                           "corpus: {format: idx, images: " + kTrainImages +
                           ", labels: " + kTrainLabels + ", limit: " + std::to_string(kCorpus) +
                           "}\nshard_size: 500\n" + "index: {name: fmv, type: flat, metric: l2}\n" +
                           "search: {method: grid, parameters: {normalize: [false, true]}}\n" +
                           "metric: {name: ndcg@10, qrels: " + qrels + ", relevant_at: 3}\n";
  json sweep = Call("POST", "/v1/sweeps", spec, 201);
  ASSERT_TRUE(sweep.contains("id")) << sweep.dump();
  const std::string id = sweep["id"];
  sweep = WaitForSweep(id, std::chrono::seconds(300));
  ASSERT_EQ(sweep["state"], "completed") << sweep.dump(2) << cluster_->Log();
  EXPECT_EQ(sweep["metric"], "ndcg@10");

  // Both indexes exist under their point names; each variant's trials carry its value.
  const std::vector<std::string> names = {"fmv-normalize-false", "fmv-normalize-true"};
  const json trials = Call("GET", "/v1/sweeps/" + id + "/trials");
  ASSERT_EQ(trials["trials"].size(), static_cast<size_t>(2 * kShards)) << trials.dump();
  std::map<int, double> value;  // by variant
  for (const json& t : trials["trials"]) {
    const int variant = t["params"]["variant"];
    ASSERT_TRUE(t["objective"].is_number()) << t.dump();
    EXPECT_EQ(t["metrics"]["index"], names[variant]);
    EXPECT_EQ(t["objective"], t["metrics"]["ndcg@10"]);
    if (value.count(variant)) {
      EXPECT_EQ(value[variant], t["objective"].get<double>());
    }
    value[variant] = t["objective"];
  }
  ASSERT_EQ(value.size(), 2u);
  for (int v = 0; v < 2; ++v) {
    Call("GET", "/v1/indexes/" + names[v]);  // 200
    // The same judgments, measured by the CLI on the published index (queries = the
    // judged items, each searched by its own vector, itself left out).
    const json eval = LatticeJson("index eval " + names[v] + " --by-item --qrels " + qrels +
                                  " --relevant-at 3 --k 10 --format json");
    ASSERT_TRUE(eval.contains("ndcg@10")) << eval.dump();
    EXPECT_EQ(eval["queries"], kQueries);
    EXPECT_NEAR(eval["ndcg@10"].get<double>(), value[v], 1e-12) << names[v];
    std::printf("[ info ] %s: ndcg@10 %.6f (sweep) %.6f (index eval)\n", names[v].c_str(), value[v],
                eval["ndcg@10"].get<double>());
  }
  EXPECT_NE(value[0], value[1]);
  const int best = value[1] > value[0] ? 1 : 0;
  ASSERT_TRUE(sweep["best"].is_object()) << sweep.dump(2);
  EXPECT_EQ(sweep["best"]["params"]["variant"], best) << sweep.dump(2);
  EXPECT_DOUBLE_EQ(sweep["best"]["objective"].get<double>(), value[best]);
  EXPECT_NE(sweep["message"].get<std::string>().find("best variant: index " + names[best]),
            std::string::npos)
      << sweep["message"];

  // The listings show the metric per trial and print valid JSON.
  const json listed = LatticeJson("trials " + id + " --format json");
  ASSERT_TRUE(listed.is_array() && listed.size() == static_cast<size_t>(2 * kShards))
      << listed.dump();
  EXPECT_TRUE(listed[0]["metrics"].contains("ndcg@10")) << listed[0].dump();
  EXPECT_EQ(listed[0]["params"]["variant"], best);  // best first
  const json status = LatticeJson("status " + id + " --format json");
  EXPECT_TRUE(status.is_object()) << status.dump();
  const std::string details = Lattice("status " + id);
  EXPECT_NE(details.find("indexes:   fmv-normalize-false, fmv-normalize-true"), std::string::npos)
      << details;
  std::printf("[ info ] %s", Lattice("trials " + id).c_str());
}

}  // namespace
}  // namespace lattice
