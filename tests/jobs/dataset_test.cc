#include "jobs/dataset.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <thread>

#include "tests/jobs/npy_writer.h"
#include "tests/testutil/testutil.h"

namespace lattice::jobs {
namespace {

using testing::kDigitsCsv;
using testing::kFashionDir;
using testing::WriteNpy;
using testing::WriteText;

#define EXPECT_MESSAGE_HAS(status, text)                                                \
  EXPECT_NE((status).message().find(text), std::string::npos) << (status).ToString()

class DatasetTest : public ::testing::Test {
 protected:
  testutil::TempDir dir_;
};

TEST_F(DatasetTest, NpyRoundTripFloat32AndInt64) {
  std::vector<float> x = {0.5f, -1.f, 2.f, 3.25f, 4.f, 5.f};
  std::vector<int64_t> y = {2, 0, 1};
  WriteNpy(dir_.Join("x.npy"), "<f4", "(3, 2)", x);
  WriteNpy(dir_.Join("y.npy"), "<i8", "(3,)", y, /*version=*/2);
  ASSERT_OK_AND_ASSIGN(FeatureMatrix m, LoadNpyFeatures(dir_.Join("x.npy")));
  EXPECT_EQ(m.rows, 3);
  EXPECT_EQ(m.cols, 2);
  EXPECT_EQ(m.data, x);
  ASSERT_OK_AND_ASSIGN(std::vector<int64_t> labels, LoadNpyLabels(dir_.Join("y.npy")));
  EXPECT_EQ(labels, y);
}

TEST_F(DatasetTest, NpyConvertsOtherDtypes) {
  WriteNpy(dir_.Join("f8.npy"), "<f8", "(2, 2)", std::vector<double>{1.5, 2, 3, 4});
  WriteNpy(dir_.Join("u1.npy"), "|u1", "(1, 3)", std::vector<uint8_t>{0, 128, 255});
  WriteNpy(dir_.Join("i4.npy"), "<i4", "(2,)", std::vector<int32_t>{7, 3});
  WriteNpy(dir_.Join("l.npy"), "|u1", "(2,)", std::vector<uint8_t>{9, 1});
  ASSERT_OK_AND_ASSIGN(FeatureMatrix a, LoadNpyFeatures(dir_.Join("f8.npy")));
  EXPECT_EQ(a.data, (std::vector<float>{1.5f, 2, 3, 4}));
  ASSERT_OK_AND_ASSIGN(FeatureMatrix b, LoadNpyFeatures(dir_.Join("u1.npy")));
  EXPECT_EQ(b.data, (std::vector<float>{0, 128, 255}));
  ASSERT_OK_AND_ASSIGN(auto i4, LoadNpyLabels(dir_.Join("i4.npy")));
  EXPECT_EQ(i4, (std::vector<int64_t>{7, 3}));
  ASSERT_OK_AND_ASSIGN(auto u1, LoadNpyLabels(dir_.Join("l.npy")));
  EXPECT_EQ(u1, (std::vector<int64_t>{9, 1}));
}

TEST_F(DatasetTest, MalformedNpyErrorsNameTheFile) {
  std::string p3 = dir_.Join("x3.npy");
  WriteNpy(p3, "<f4", "(2, 1, 1)", std::vector<float>{1, 2});
  Status s = LoadNpyFeatures(p3).status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_MESSAGE_HAS(s, p3 + ": expected 2-D float32 features, got 3-D");

  WriteText(dir_.Join("junk.npy"), "definitely not numpy");
  EXPECT_MESSAGE_HAS(LoadNpyFeatures(dir_.Join("junk.npy")).status(), "not a .npy file");

  WriteNpy(dir_.Join("short.npy"), "<f4", "(4, 4)", std::vector<float>{1, 2, 3});
  EXPECT_MESSAGE_HAS(LoadNpyFeatures(dir_.Join("short.npy")).status(), "truncated data");

  WriteNpy(dir_.Join("c8.npy"), "<c8", "(1, 1)", std::vector<float>{1, 2});
  EXPECT_MESSAGE_HAS(LoadNpyFeatures(dir_.Join("c8.npy")).status(), "unsupported dtype '<c8'");

  WriteNpy(dir_.Join("fl.npy"), "<f4", "(2,)", std::vector<float>{1, 2});
  EXPECT_MESSAGE_HAS(LoadNpyLabels(dir_.Join("fl.npy")).status(), "labels must be integers");

  WriteNpy(dir_.Join("neg.npy"), "<i8", "(2,)", std::vector<int64_t>{1, -1});
  EXPECT_MESSAGE_HAS(LoadNpyLabels(dir_.Join("neg.npy")).status(), "is negative");

  WriteNpy(dir_.Join("l2.npy"), "<i8", "(1, 2)", std::vector<int64_t>{1, 1});
  EXPECT_MESSAGE_HAS(LoadNpyLabels(dir_.Join("l2.npy")).status(), "expected 1-D integer labels");

  Status missing = LoadNpyFeatures(dir_.Join("nope.npy")).status();
  EXPECT_MESSAGE_HAS(missing, "file not found: " + dir_.Join("nope.npy"));
}

TEST_F(DatasetTest, LoadDatasetAddsKeyPathAndChecksRowCounts) {
  WriteNpy(dir_.Join("x.npy"), "<f4", "(2, 1, 1, 1)", std::vector<float>{1, 2});  // 3-D: tokens
  WriteNpy(dir_.Join("y.npy"), "<i8", "(2,)", std::vector<int64_t>{0, 1});
  DatasetConfig c;
  c.train = {dir_.Join("x.npy"), dir_.Join("y.npy"), ""};
  Status s = LoadDataset(c).status();
  EXPECT_MESSAGE_HAS(s, "dataset.features: " + dir_.Join("x.npy") + ": expected 2-D");

  WriteNpy(dir_.Join("x.npy"), "<f4", "(3, 1)", std::vector<float>{1, 2, 3});
  s = LoadDataset(c).status();
  EXPECT_MESSAGE_HAS(s, "dataset.labels: ");
  EXPECT_MESSAGE_HAS(s, "has 2 labels but");

  c.train.features = dir_.Join("missing.npy");
  EXPECT_MESSAGE_HAS(LoadDataset(c).status(),
                     "dataset.features: file not found: " + dir_.Join("missing.npy"));
}

TEST_F(DatasetTest, IdxFashionMnistTestLabels) {
  ASSERT_OK_AND_ASSIGN(auto labels,
                       LoadIdxLabels(std::string(kFashionDir) + "/t10k-labels-idx1-ubyte.gz"));
  ASSERT_EQ(labels.size(), 10000u);
  std::vector<int> counts(10, 0);
  for (int64_t l : labels) {
    ASSERT_GE(l, 0);
    ASSERT_LT(l, 10);
    ++counts[static_cast<size_t>(l)];
  }
  for (int c : counts) EXPECT_EQ(c, 1000);
}

TEST_F(DatasetTest, IdxFashionMnistTestImages) {
  ASSERT_OK_AND_ASSIGN(FeatureMatrix m,
                       LoadIdxImages(std::string(kFashionDir) + "/t10k-images-idx3-ubyte.gz"));
  EXPECT_EQ(m.rows, 10000);
  EXPECT_EQ(m.cols, 28 * 28);
  auto [lo, hi] = std::minmax_element(m.data.begin(), m.data.end());
  EXPECT_EQ(*lo, 0.f);
  EXPECT_EQ(*hi, 255.f);
  // Labels are not images: the magic number says so.
  Status s = LoadIdxImages(std::string(kFashionDir) + "/t10k-labels-idx1-ubyte.gz").status();
  EXPECT_MESSAGE_HAS(s, "not an idx file with magic number 2051");
}

TEST_F(DatasetTest, IdxDatasetWithLimitAndScale) {
  DatasetConfig c;
  c.format = DatasetFormat::kIdx;
  c.train = {std::string(kFashionDir) + "/t10k-images-idx3-ubyte.gz",
             std::string(kFashionDir) + "/t10k-labels-idx1-ubyte.gz", ""};
  c.limit = 100;
  c.scale = 1.0 / 255;
  ASSERT_OK_AND_ASSIGN(LoadedDataset d, LoadDataset(c));
  EXPECT_EQ(d.train.features.rows, 100);
  EXPECT_EQ(d.train.labels.size(), 100u);
  EXPECT_EQ(d.num_classes, 10);
  EXPECT_LE(*std::max_element(d.train.features.data.begin(), d.train.features.data.end()), 1.f);
}

TEST_F(DatasetTest, CsvDigits) {
  ASSERT_OK_AND_ASSIGN(DatasetPart d, LoadCsv(kDigitsCsv, -1, false));
  EXPECT_EQ(d.features.rows, 1797);
  EXPECT_EQ(d.features.cols, 64);
  EXPECT_EQ(d.labels.size(), 1797u);
  EXPECT_EQ(std::set<int64_t>(d.labels.begin(), d.labels.end()).size(), 10u);
  EXPECT_EQ(d.labels[0], 0);
  EXPECT_EQ(d.features.data[2], 5.f);  // first row: 0,0,5,13,...
  ASSERT_OK_AND_ASSIGN(DatasetPart head, LoadCsv(kDigitsCsv, -1, false, 10));
  EXPECT_EQ(head.features.rows, 10);
}

TEST_F(DatasetTest, CsvHeaderLabelColumnAndErrors) {
  WriteText(dir_.Join("a.csv"), "label,a,b\r\n1,0.5,2\r\n0,1.5,3\r\n\n");
  ASSERT_OK_AND_ASSIGN(DatasetPart d, LoadCsv(dir_.Join("a.csv"), 0, true));
  EXPECT_EQ(d.features.rows, 2);
  EXPECT_EQ(d.features.cols, 2);
  EXPECT_EQ(d.labels, (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(d.features.data, (std::vector<float>{0.5f, 2, 1.5f, 3}));

  WriteText(dir_.Join("b.csv"), "1,2,0\n1,2\n");
  EXPECT_MESSAGE_HAS(LoadCsv(dir_.Join("b.csv"), -1, false).status(),
                     "b.csv: line 2: expected 3 columns, got 2");
  WriteText(dir_.Join("c.csv"), "1,x,0\n");
  EXPECT_MESSAGE_HAS(LoadCsv(dir_.Join("c.csv"), -1, false).status(), "line 1: malformed number");
  WriteText(dir_.Join("d.csv"), "1,2,0.5\n");
  EXPECT_MESSAGE_HAS(LoadCsv(dir_.Join("d.csv"), -1, false).status(), "label must be an integer");
  EXPECT_MESSAGE_HAS(LoadCsv(dir_.Join("d.csv"), 7, false).status(), "label_column 7 out of range");
}

TEST(MakeSplitTest, DeterministicDisjointAndSized) {
  ASSERT_OK_AND_ASSIGN(SplitIndices a, MakeSplit(1797, 0.2, 42));
  ASSERT_OK_AND_ASSIGN(SplitIndices b, MakeSplit(1797, 0.2, 42));
  ASSERT_OK_AND_ASSIGN(SplitIndices c, MakeSplit(1797, 0.2, 43));
  EXPECT_EQ(a.validation.size(), 359u);
  EXPECT_EQ(a.train.size(), 1438u);
  EXPECT_EQ(a.train, b.train);
  EXPECT_EQ(a.validation, b.validation);
  EXPECT_NE(a.validation, c.validation);
  std::set<int64_t> all(a.train.begin(), a.train.end());
  all.insert(a.validation.begin(), a.validation.end());
  EXPECT_EQ(all.size(), 1797u);
  ASSERT_OK_AND_ASSIGN(SplitIndices tiny, MakeSplit(2, 0.01, 1));
  EXPECT_EQ(tiny.validation.size(), 1u);
  EXPECT_FALSE(MakeSplit(1, 0.5, 1).ok());
}

TEST(DatasetCacheTest, LoadsOncePerKey) {
  std::atomic<int> calls{0};
  DatasetCache cache(4, [&](const DatasetConfig& c) -> StatusOr<LoadedDataset> {
    ++calls;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // widen the race window
    LoadedDataset d;
    d.train.labels = {static_cast<int64_t>(c.train.features.size())};
    return d;
  });
  DatasetConfig a;
  a.train = {"a.npy", "y.npy", ""};
  std::vector<std::thread> threads;
  std::vector<const LoadedDataset*> seen(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      DatasetConfig mine = a;
      mine.split_seed = static_cast<uint64_t>(i);  // the split is not part of the key
      mine.standardize = i % 2 == 0;
      auto r = cache.Get(mine);
      seen[i] = r.ok() ? r->get() : nullptr;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(cache.loads(), 1);
  for (auto* p : seen) EXPECT_EQ(p, seen[0]);
  DatasetConfig b = a;
  b.limit = 10;
  ASSERT_OK(cache.Get(b));
  EXPECT_EQ(cache.loads(), 2);
}

TEST(DatasetCacheTest, RealDigitsLoadedOnceAndErrorsNotCached) {
  DatasetCache cache;
  DatasetConfig c;
  c.format = DatasetFormat::kCsv;
  c.train.features = kDigitsCsv;
  ASSERT_OK_AND_ASSIGN(auto first, cache.Get(c));
  ASSERT_OK_AND_ASSIGN(auto second, cache.Get(c));
  EXPECT_EQ(first.get(), second.get());
  EXPECT_EQ(cache.loads(), 1);
  EXPECT_EQ(first->train.features.rows, 1797);
  EXPECT_EQ(first->num_classes, 10);

  DatasetConfig bad = c;
  bad.train.features = "/nonexistent.csv";
  EXPECT_FALSE(cache.Get(bad).ok());
  EXPECT_FALSE(cache.Get(bad).ok());
  EXPECT_EQ(cache.loads(), 3);  // failures are retried
}

TEST(DatasetCacheTest, EvictsLeastRecentlyUsed) {
  DatasetCache cache(2, [](const DatasetConfig&) -> StatusOr<LoadedDataset> {
    return LoadedDataset{};
  });
  DatasetConfig a, b, c;
  a.train.features = "a";
  b.train.features = "b";
  c.train.features = "c";
  ASSERT_OK_AND_ASSIGN(auto held, cache.Get(a));
  ASSERT_OK(cache.Get(b));
  ASSERT_OK(cache.Get(c));  // evicts a
  EXPECT_EQ(cache.loads(), 3);
  ASSERT_OK(cache.Get(c));
  EXPECT_EQ(cache.loads(), 3);
  ASSERT_OK(cache.Get(a));
  EXPECT_EQ(cache.loads(), 4);
  EXPECT_NE(held, nullptr);  // still valid after eviction
}

}  // namespace
}  // namespace lattice::jobs
