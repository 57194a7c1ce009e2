#include "store/retrieval_metrics.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "tests/testutil/testutil.h"

namespace lattice::store {
namespace {

// Two queries, k = 3.
//   row 0: truth [1 2 3], retrieved [2 9 1]  -> hits 2 (pos 1) and 1 (pos 3)
//   row 1: truth [5 6 7], retrieved [5 6 7]  -> perfect
IdMatrix Truth() { return {2, 3, {1, 2, 3, 5, 6, 7}}; }
IdMatrix Retrieved() { return {2, 3, {2, 9, 1, 5, 6, 7}}; }

TEST(RetrievalMetricsTest, RecallAtK) {
  // row 0: |{2,1}| / 3 = 2/3; row 1: 1. Mean = 5/6.
  EXPECT_NEAR(*RecallAtK(Retrieved(), Truth(), 3), 5.0 / 6.0, 1e-12);
  // k = 1: row 0 top-1 {2} vs {1} -> 0; row 1 {5} vs {5} -> 1. Mean = 1/2.
  EXPECT_NEAR(*RecallAtK(Retrieved(), Truth(), 1), 0.5, 1e-12);
}

TEST(RetrievalMetricsTest, Mrr) {
  // row 0: true nearest (1) is at rank 3 -> 1/3; row 1: rank 1 -> 1. Mean = 2/3.
  EXPECT_NEAR(*MrrAtK(Retrieved(), Truth(), 3), 2.0 / 3.0, 1e-12);
  // cutoff 2: row 0 misses id 1 -> 0; mean = 1/2.
  EXPECT_NEAR(*MrrAtK(Retrieved(), Truth(), 2), 0.5, 1e-12);
}

TEST(RetrievalMetricsTest, MapAtK) {
  // row 0: P@1 = 1 (id 2), P@3 = 2/3 (id 1); AP = (1 + 2/3) / 3 = 5/9. row 1: 1.
  // Mean = (5/9 + 1) / 2 = 7/9.
  EXPECT_NEAR(*MapAtK(Retrieved(), Truth(), 3), 7.0 / 9.0, 1e-12);
}

TEST(RetrievalMetricsTest, NdcgAtK) {
  // row 0: DCG = 1/log2(2) + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3) + 0.5 = 2.1309297536;
  // NDCG = 0.7039180890. row 1: 1. Mean = 0.8519590445.
  EXPECT_NEAR(*NdcgAtK(Retrieved(), Truth(), 3), 0.8519590445, 1e-9);
}

TEST(RetrievalMetricsTest, PaddingIsNeverRelevantAndShapesAreChecked) {
  IdMatrix padded{1, 3, {-1, -1, -1}};
  IdMatrix truth{1, 3, {4, 5, 6}};
  EXPECT_EQ(*RecallAtK(padded, truth, 3), 0.0);
  EXPECT_EQ(*MrrAtK(padded, truth, 3), 0.0);
  EXPECT_EQ(*NdcgAtK(padded, truth, 3), 0.0);
  // A duplicated hit counts once: [4 4 4] -> recall 1/3.
  EXPECT_NEAR(*RecallAtK(IdMatrix{1, 3, {4, 4, 4}}, truth, 3), 1.0 / 3.0, 1e-12);
  EXPECT_EQ(RecallAtK(Retrieved(), Truth(), 4).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(RecallAtK(Retrieved(), Truth(), 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(RecallAtK(padded, Truth(), 1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(MapAtK(IdMatrix{1, 3, {1}}, truth, 1).status().code(), StatusCode::kInvalidArgument);
}

TEST(RetrievalMetricsTest, ExactGroundTruthOnATinyExample) {
  FloatMatrix base{3, 1, {0.f, 10.f, 3.f}};
  FloatMatrix query{1, 1, {2.f}};
  // L2: |2-3|^2 = 1 (row 2), |2-0|^2 = 4 (row 0), |2-10|^2 = 64 (row 1).
  ASSERT_OK_AND_ASSIGN(IdMatrix l2, ExactGroundTruth(base, query, 2, Metric::kL2));
  EXPECT_EQ(l2.ids, (std::vector<int64_t>{2, 0}));
  // IP: 2*10 = 20 (row 1), 2*3 = 6 (row 2), 0 (row 0).
  ASSERT_OK_AND_ASSIGN(IdMatrix ip, ExactGroundTruth(base, query, 2, Metric::kInnerProduct));
  EXPECT_EQ(ip.ids, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(ExactGroundTruth(base, query, 4, Metric::kL2).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ExactGroundTruth(base, FloatMatrix{1, 2, {1, 2}}, 1, Metric::kL2).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(RetrievalMetricsTest, FvecsRoundTripAndTruncation) {
  testutil::TempDir dir;
  const std::string path = dir.Join("x.fvecs");
  {
    std::ofstream out(path, std::ios::binary);
    const int32_t d = 3;
    const float rows[2][3] = {{1.f, 2.f, 3.f}, {4.f, 5.f, 6.f}};
    for (const auto& row : rows) {
      out.write(reinterpret_cast<const char*>(&d), 4);
      out.write(reinterpret_cast<const char*>(row), 12);
    }
  }
  ASSERT_OK_AND_ASSIGN(FloatMatrix m, ReadFvecs(path));
  EXPECT_EQ(m.rows, 2);
  EXPECT_EQ(m.dim, 3);
  EXPECT_EQ(m.data, (std::vector<float>{1, 2, 3, 4, 5, 6}));
  ASSERT_OK_AND_ASSIGN(FloatMatrix first, ReadFvecs(path, 1));
  EXPECT_EQ(first.rows, 1);
  std::filesystem::resize_file(path, 30);  // row 1 loses 2 bytes
  auto truncated = ReadFvecs(path);
  EXPECT_EQ(truncated.status().code(), StatusCode::kIoError);
  EXPECT_NE(truncated.status().message().find("row 1"), std::string::npos);
  std::filesystem::resize_file(path, 18);  // row 1's dim prefix cut in half
  EXPECT_EQ(ReadFvecs(path).status().code(), StatusCode::kIoError);
  EXPECT_EQ(ReadIvecs(dir.Join("missing.ivecs")).status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace lattice::store
