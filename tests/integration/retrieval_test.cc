// Retrieval evaluation on a real `mpirun -np 3` cluster: two embedding variants of
// Fashion-MNIST (raw pixels, and L2-normalised pixels) are embedded and indexed by embed
// sweeps; `lattice index compare` runs against graded judgments derived from the labels,
// and its table must equal a plain numpy computation (retrieval_reference.py) from the
// same hits. `lattice index eval --exact` must reproduce the .ivecs ground-truth path, and
// every listing command must print valid JSON with --format json. A corpus with the user's
// ids (corpus.ids, given relative to the spec file) answers, is searched and is judged in
// those ids exactly as the same corpus without them is in row numbers.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "jobs/dataset.h"
#include "store/retrieval_metrics.h"
#include "tests/integration/cluster_fixture.h"

namespace lattice {
namespace {

using nlohmann::json;

constexpr char kTrainImages[] = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";
constexpr char kTrainLabels[] = "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz";
constexpr char kTestImages[] = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
constexpr int64_t kCorpus = 2000;
constexpr int64_t kQueries = 100;  // items 0..99 are the queries
// Fashion-MNIST label -> group of related classes: tops (T-shirt, pullover, coat, shirt),
// trouser, dress, footwear (sandal, sneaker, ankle boot), bag.
const std::vector<int> kGroups = {0, 1, 0, 2, 0, 3, 0, 3, 4, 3};

std::string EmbedSpec(const std::string& name, bool normalize) {
  return "name: " + name + "\nkind: embed\nencoder: {type: flatten}\n" +
         "corpus: {format: idx, images: " + kTrainImages + ", labels: " + kTrainLabels +
         ", limit: " + std::to_string(kCorpus) + "}\n" +
         "normalize: " + (normalize ? "true" : "false") + "\nshard_size: 500\n" +
         "index: {name: " + name + ", type: hnsw, metric: l2, " +
         "params: {M: 6, ef_construction: 24, ef_search: 12}}\n";
}

class RetrievalTest : public testutil::ClusterFixture {
 protected:
  // Hits of `index` for items 0..kQueries-1, by item, as the CLI asks for them.
  std::vector<std::vector<int64_t>> HitsByItem(const std::string& index, int k) {
    std::vector<int64_t> items;
    for (int64_t i = 0; i < kQueries; ++i) items.push_back(i);
    json r = Call("POST", "/v1/indexes/" + index + "/search",
                  json{{"items", items}, {"k", k}}.dump(), 200, "application/json");
    std::vector<std::vector<int64_t>> hits;
    for (const auto& row : r["results"]) hits.push_back(row["ids"].get<std::vector<int64_t>>());
    return hits;
  }
};

TEST_F(RetrievalTest, CompareEmbeddingVariantsAgainstLabelJudgments) {
  StartCluster();
  const std::vector<std::pair<std::string, bool>> variants = {{"fmnist-raw", false},
                                                              {"fmnist-norm", true}};
  std::vector<std::string> sweeps;
  for (const auto& [name, normalize] : variants) {
    json sweep = Call("POST", "/v1/sweeps", EmbedSpec(name, normalize), 201);
    ASSERT_TRUE(sweep.contains("id")) << sweep.dump();
    sweeps.push_back(sweep["id"]);
  }
  for (const std::string& id : sweeps) {
    json sweep = WaitForSweep(id, std::chrono::seconds(300));
    ASSERT_EQ(sweep["state"], "completed") << sweep.dump(2) << cluster_->Log();
  }

  // Graded judgments from the labels: same label 3, same group 1 (TREC format).
  ASSERT_OK_AND_ASSIGN(std::vector<int64_t> labels, jobs::LoadIdxLabels(kTrainLabels));
  labels.resize(kCorpus);
  const std::string qrels = dir_.Join("qrels.txt");
  {
    std::ofstream out(qrels);
    for (int64_t q = 0; q < kQueries; ++q) {
      for (int64_t d = 0; d < kCorpus; ++d) {
        if (d == q) continue;
        if (labels[d] == labels[q]) {
          out << q << " 0 " << d << " 3\n";
        } else if (kGroups[labels[d]] == kGroups[labels[q]]) {
          out << q << " 0 " << d << " 1\n";
        }
      }
    }
  }
  const json table = LatticeJson("index compare fmnist-raw fmnist-norm --qrels " + qrels +
                                 " --relevant-at 3 --k 1,3,5,10 --format json");
  ASSERT_TRUE(table.is_array() && table.size() == 2) << table.dump(2);
  std::printf("[ info ] %s\n", Lattice("index compare fmnist-raw fmnist-norm --qrels " + qrels +
                                       " --relevant-at 3 --k 1,3,5,10").c_str());

  // The same hits, recomputed with numpy from the labels.
  json input = {{"labels", labels}, {"groups", kGroups}, {"ks", {1, 3, 5, 10}},
                {"indexes", json::object()}};
  std::vector<int64_t> queries;
  for (int64_t i = 0; i < kQueries; ++i) queries.push_back(i);
  for (const auto& [name, normalize] : variants) {
    input["indexes"][name] = {{"queries", queries}, {"hits", HitsByItem(name, 10)}};
  }
  std::ofstream(dir_.Join("reference.json")) << input.dump();
  std::string text;
  ASSERT_EQ(testutil::RunCommand("/usr/bin/python3 " + testutil::SourceDir() +
                                     "/tests/integration/retrieval_reference.py " +
                                     dir_.Join("reference.json"),
                                 &text),
            0)
      << text;
  const json want = json::parse(text);
  for (const json& row : table) {
    const std::string name = row["index"];
    EXPECT_EQ(row["queries"], kQueries);
    EXPECT_EQ(row["evaluated"], kQueries);
    ASSERT_TRUE(want.contains(name)) << name;
    int compared = 0;
    for (const auto& [metric, value] : want[name].items()) {
      ASSERT_TRUE(row.contains(metric)) << name << " lacks " << metric;
      EXPECT_NEAR(row[metric].get<double>(), value.get<double>(), 1e-9) << name << " " << metric;
      ++compared;
    }
    EXPECT_EQ(compared, 18);  // 4 families x 4 cutoffs + MRR + MAP
    EXPECT_GT(row["index_bytes"].get<int64_t>(), kCorpus * 784 * 4);
    EXPECT_GT(row["server_peak_rss_bytes"].get<int64_t>(), 0);
  }
  // The variants differ: normalised pixels retrieve differently from raw ones.
  EXPECT_NE(table[0]["ndcg@10"], table[1]["ndcg@10"]);
}

// --exact (brute force on the server) reproduces an .ivecs file of the exact neighbours,
// here computed in the test from the same corpus rows; and every listing prints JSON.
TEST_F(RetrievalTest, ExactMatchesGroundTruthFileAndListingsPrintJson) {
  StartCluster();
  json sweep = Call("POST", "/v1/sweeps", EmbedSpec("fmnist-raw", false), 201);
  ASSERT_TRUE(sweep.contains("id")) << sweep.dump();
  const std::string sweep_id = sweep["id"];
  sweep = WaitForSweep(sweep_id, std::chrono::seconds(300));
  ASSERT_EQ(sweep["state"], "completed") << sweep.dump(2) << cluster_->Log();

  ASSERT_OK_AND_ASSIGN(jobs::FeatureMatrix corpus, jobs::LoadIdxImages(kTrainImages));
  ASSERT_OK_AND_ASSIGN(jobs::FeatureMatrix test, jobs::LoadIdxImages(kTestImages));
  store::FloatMatrix base{kCorpus, static_cast<int>(corpus.cols),
                          std::vector<float>(corpus.data.begin(),
                                             corpus.data.begin() + kCorpus * corpus.cols)};
  constexpr int64_t kTestQueries = 300;
  store::FloatMatrix queries{kTestQueries, static_cast<int>(test.cols),
                             std::vector<float>(test.data.begin(),
                                                test.data.begin() + kTestQueries * test.cols)};
  ASSERT_OK_AND_ASSIGN(store::IdMatrix truth,
                       store::ExactGroundTruth(base, queries, 10, store::Metric::kL2));
  const std::string gt = dir_.Join("gt.ivecs");
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
  const std::string common = std::string("index eval fmnist-raw --queries ") + kTestImages +
                             " --limit " + std::to_string(kTestQueries) +
                             " --k 1,5,10 --format json";
  const json file = LatticeJson(common + " --ground-truth " + gt);
  const json exact = LatticeJson(common + " --exact");
  for (const char* metric : {"ann_recall@1", "ann_recall@5", "ann_recall@10", "ann_mrr@10",
                             "ann_map@10", "ann_ndcg@10"}) {
    ASSERT_TRUE(file.contains(metric) && exact.contains(metric)) << file.dump() << exact.dump();
    EXPECT_DOUBLE_EQ(exact[metric].get<double>(), file[metric].get<double>()) << metric;
  }
  std::printf("[ info ] fmnist-raw ann_recall@10: %.4f (ground-truth file) %.4f (--exact)\n",
              file["ann_recall@10"].get<double>(), exact["ann_recall@10"].get<double>());
  EXPECT_LT(exact["ann_recall@10"].get<double>(), 1.0);  // a small graph: not trivially 1
  EXPECT_GT(exact["ann_recall@10"].get<double>(), 0.5);

  // Every listing command, --format json.
  const json status = LatticeJson("status --format json");
  ASSERT_TRUE(status.is_array()) << status.dump();
  EXPECT_EQ(status[0]["id"], sweep_id);
  EXPECT_EQ(LatticeJson("status " + sweep_id + " --format json")["id"], sweep_id);
  const json trials = LatticeJson("trials " + sweep_id + " --format json");
  ASSERT_TRUE(trials.is_array()) << trials.dump();
  EXPECT_EQ(trials.size(), static_cast<size_t>(kCorpus / 500));
  const json workers = LatticeJson("workers --format json");
  ASSERT_TRUE(workers.is_array()) << workers.dump();
  EXPECT_EQ(workers.size(), 2u);
  const json indexes = LatticeJson("index list --format json");
  ASSERT_TRUE(indexes.is_array() && indexes.size() == 1) << indexes.dump();
  EXPECT_EQ(indexes[0]["name"], "fmnist-raw");
  EXPECT_GT(indexes[0]["index_bytes"].get<int64_t>(), 0);
  const std::string trial = trials[0]["id"];
  EXPECT_TRUE(LatticeJson("checkpoints " + trial + " --format json").is_array());
  EXPECT_TRUE(LatticeJson("curves " + trial + " --format json").is_array());
  const json datasets = LatticeJson("datasets --format json");  // none made here
  EXPECT_TRUE(datasets.is_array() && datasets.empty()) << datasets.dump();
  const json compare = LatticeJson("index compare fmnist-raw --exact --k 1,10 --queries " +
                                   std::string(kTestImages) + " --limit 50 --format json");
  ASSERT_TRUE(compare.is_array() && compare.size() == 1) << compare.dump();
  EXPECT_TRUE(compare[0]["ann_recall@10"].is_number());
  // csv prints the header then a line per index.
  const std::string csv = Lattice("index list --format csv");
  EXPECT_EQ(csv.rfind("NAME,VERSION,TYPE", 0), 0u) << csv;
}

// The user's ids: the same 2,000 items embedded twice into flat (exact) indexes, once with
// ids "fm-<row>" from a text file beside the spec (a relative path, resolved by `lattice
// submit`), once without. Hits, --item search, --by-item judged metrics and --exact ANN
// recall must agree, the named index speaking in the user's ids; a spec whose ids repeat
// one is refused at submit naming it.
TEST_F(RetrievalTest, UserItemIdsNameHitsQueriesAndJudgments) {
  StartCluster();
  const std::string specs = dir_.Join("specs");
  std::filesystem::create_directories(specs);
  {
    std::ofstream ids(specs + "/ids.txt");
    for (int64_t r = 0; r < 60000; ++r) ids << "fm-" << r << "\n";  // one per corpus row
    std::ofstream dup(specs + "/dup.txt");
    for (int64_t r = 0; r < 60000; ++r) dup << "fm-" << (r == 777 ? 12 : r) << "\n";
  }
  auto spec = [](const std::string& name, const std::string& ids) {
    return "name: " + name + "\nkind: embed\nencoder: {type: flatten}\n" +
           "corpus: {format: idx, images: " + kTrainImages + ", limit: " +
           std::to_string(kCorpus) + (ids.empty() ? "" : ", ids: " + ids) + "}\n" +
           "shard_size: 1000\nindex: {name: " + name + ", type: flat}\n";
  };
  std::ofstream(specs + "/named.yaml") << spec("fmnist-named", "ids.txt");
  std::ofstream(specs + "/dup.yaml") << spec("fmnist-dup", "dup.txt");
  const std::string submit = testutil::LatticeBinary() + " submit --data-dir " + DataDir() +
                             " --port " + std::to_string(cluster_->port()) + " ";
  std::string err;
  EXPECT_EQ(testutil::RunCommand("cd / && " + submit + specs + "/dup.yaml", &err), 2) << err;
  EXPECT_NE(err.find("corpus.ids: " + specs + "/dup.txt: duplicate id 'fm-12' (rows 12 and 777)"),
            std::string::npos)
      << err;
  ASSERT_EQ(testutil::RunCommand("cd " + dir_.path() + " && " + submit + "specs/named.yaml --wait",
                                 &err),
            0)
      << err << cluster_->Log();
  json rows_sweep = Call("POST", "/v1/sweeps", spec("fmnist-rows", ""), 201);
  ASSERT_EQ(WaitForSweep(rows_sweep["id"], std::chrono::seconds(300))["state"], "completed")
      << cluster_->Log();

  // Hits: the same items, named.
  const json named = LatticeJson("index search fmnist-named --item fm-5 --k 5 --format json");
  const json numbered = LatticeJson("index search fmnist-rows --item 5 --k 5 --format json");
  ASSERT_EQ(named["results"][0]["ids"].size(), 5u) << named.dump();
  for (size_t j = 0; j < 5; ++j) {
    EXPECT_EQ(named["results"][0]["ids"][j],
              "fm-" + std::to_string(numbered["results"][0]["ids"][j].get<int64_t>()));
  }
  EXPECT_EQ(LatticeJson("index list --format json")[0]["item_ids"], kCorpus);

  // Judgments in the user's ids and in row numbers: the same metrics.
  ASSERT_OK_AND_ASSIGN(std::vector<int64_t> labels, jobs::LoadIdxLabels(kTrainLabels));
  {
    std::ofstream by_name(dir_.Join("named.qrels"));
    std::ofstream by_row(dir_.Join("rows.qrels"));
    for (int64_t q = 0; q < kQueries; ++q) {
      for (int64_t d = 0; d < kCorpus; ++d) {
        const int grade = labels[d] == labels[q] ? 3 : kGroups[labels[d]] == kGroups[labels[q]];
        if (d == q || grade == 0) continue;
        by_name << "fm-" << q << " 0 fm-" << d << " " << grade << "\n";
        by_row << q << " 0 " << d << " " << grade << "\n";
      }
    }
  }
  const std::string flags = " --by-item --relevant-at 3 --k 1,5,10 --exact --format json";
  const json a = LatticeJson("index eval fmnist-named --qrels " + dir_.Join("named.qrels") + flags);
  const json b = LatticeJson("index eval fmnist-rows --qrels " + dir_.Join("rows.qrels") + flags);
  EXPECT_EQ(a["evaluated"], kQueries);
  for (const char* metric : {"recall@10", "hit@1", "precision@5", "ndcg@10", "mrr@10", "map@10",
                             "ann_recall@10"}) {
    ASSERT_TRUE(a.contains(metric) && b.contains(metric)) << a.dump() << b.dump();
    EXPECT_DOUBLE_EQ(a[metric].get<double>(), b[metric].get<double>()) << metric;
  }
  EXPECT_GT(a["ndcg@10"].get<double>(), 0.3);
  std::printf("[ info ] fmnist-named ndcg@10 %.4f (user ids) %.4f (row numbers)\n",
              a["ndcg@10"].get<double>(), b["ndcg@10"].get<double>());
}

}  // namespace
}  // namespace lattice
