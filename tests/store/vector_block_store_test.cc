// VectorBlockStore on a real RocksDB: what goes in comes out, blocks
// must cover rows [0, n), a deleted sweep's blocks are gone (and their disk space given
// back) while other sweeps' blocks stay.
#include "store/vector_block_store.h"

#include <gtest/gtest.h>

#include <memory>
#include <random>

#include "tests/testutil/testutil.h"

namespace lattice {
namespace {

class VectorBlockStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(store_, StateStore::Open({dir_.Join("state"), /*sync_writes=*/false}));
  }

  // Rows [begin, begin + rows) of a dim-`dim` corpus whose values encode (row, column).
  static VectorBlock Block(int64_t begin, int64_t rows, int dim, bool with_metadata = false) {
    VectorBlock b{begin, rows, dim, {}, {}};
    for (int64_t r = begin; r < begin + rows; ++r) {
      for (int c = 0; c < dim; ++c) b.data.push_back(static_cast<float>(r * 1000 + c));
      if (with_metadata) b.metadata.push_back("{\"row\":" + std::to_string(r) + "}");
    }
    return b;
  }

  void Put(SweepId sweep, const VectorBlock& block, int variant = 0) {
    StateWriteBatch batch;
    VectorBlockStore::Put(batch, sweep, block, variant);
    ASSERT_OK(store_->Commit(batch));
  }

  testutil::TempDir dir_;
  std::unique_ptr<StateStore> store_;
};

TEST_F(VectorBlockStoreTest, BlocksInAnyOrderReadBackAsOneMatrixWithMetadata) {
  const SweepId sweep{4};
  Put(sweep, Block(6, 4, 3, /*with_metadata=*/true));
  Put(sweep, Block(0, 6, 3, /*with_metadata=*/true));
  VectorBlockStore blocks(store_.get());
  ASSERT_OK_AND_ASSIGN(store::FloatMatrix m, blocks.ReadAll(sweep));
  ASSERT_EQ(m.rows, 10);
  ASSERT_EQ(m.dim, 3);
  for (int64_t r = 0; r < 10; ++r) {
    for (int c = 0; c < 3; ++c) EXPECT_EQ(m.data[r * 3 + c], static_cast<float>(r * 1000 + c));
  }
  ASSERT_OK_AND_ASSIGN(auto items, blocks.ReadMetadata(sweep));
  ASSERT_EQ(items.size(), 10u);
  EXPECT_EQ(items.at(7), "{\"row\":7}");
}

// An embed sweep over embedding variants keeps one set of blocks per variant: each reads
// back alone (its own dimension, its own metadata), and one Delete of the sweep removes
// every variant's blocks but no other sweep's.
TEST_F(VectorBlockStoreTest, VariantsAreKeptApartAndDeletedTogether) {
  const SweepId sweep{1};
  Put(sweep, Block(0, 4, 2, /*with_metadata=*/true), /*variant=*/0);
  VectorBlock v1 = Block(0, 4, 5, /*with_metadata=*/true);
  for (float& x : v1.data) x += 0.5f;
  v1.metadata[2] = "{\"variant\":1}";
  Put(sweep, v1, /*variant=*/1);
  Put(sweep, Block(0, 3, 2), /*variant=*/12);
  Put(SweepId{10}, Block(0, 2, 2));  // another sweep: untouched
  Put(SweepId{10}, Block(0, 2, 2), /*variant=*/1);
  VectorBlockStore blocks(store_.get());
  ASSERT_OK_AND_ASSIGN(store::FloatMatrix m0, blocks.ReadAll(sweep, 0));
  EXPECT_EQ(m0.rows, 4);
  EXPECT_EQ(m0.dim, 2);
  EXPECT_EQ(m0.data[3], 1001.0f);
  ASSERT_OK_AND_ASSIGN(store::FloatMatrix m1, blocks.ReadAll(sweep, 1));
  EXPECT_EQ(m1.rows, 4);
  EXPECT_EQ(m1.dim, 5);
  EXPECT_EQ(m1.data[6], 1001.5f);
  ASSERT_OK_AND_ASSIGN(store::FloatMatrix m12, blocks.ReadAll(sweep, 12));
  EXPECT_EQ(m12.rows, 3);
  EXPECT_EQ(blocks.ReadAll(sweep, 2).status().code(), StatusCode::kFailedPrecondition);
  ASSERT_OK_AND_ASSIGN(auto items0, blocks.ReadMetadata(sweep, 0));
  ASSERT_OK_AND_ASSIGN(auto items1, blocks.ReadMetadata(sweep, 1));
  EXPECT_EQ(items0.at(2), "{\"row\":2}");
  EXPECT_EQ(items1.at(2), "{\"variant\":1}");
  ASSERT_OK_AND_ASSIGN(auto items12, blocks.ReadMetadata(sweep, 12));
  EXPECT_TRUE(items12.empty());

  StateWriteBatch batch;
  VectorBlockStore::Delete(batch, sweep);
  ASSERT_OK(store_->Commit(batch));
  for (int variant : {0, 1, 12}) {
    EXPECT_EQ(blocks.ReadAll(sweep, variant).status().code(), StatusCode::kFailedPrecondition)
        << "variant " << variant;
  }
  ASSERT_OK_AND_ASSIGN(auto gone, blocks.ReadMetadata(sweep, 1));
  EXPECT_TRUE(gone.empty());
  ASSERT_OK_AND_ASSIGN(store::FloatMatrix other0, blocks.ReadAll(SweepId{10}, 0));
  ASSERT_OK_AND_ASSIGN(store::FloatMatrix other1, blocks.ReadAll(SweepId{10}, 1));
  EXPECT_EQ(other0.rows + other1.rows, 4);
}

TEST_F(VectorBlockStoreTest, MissingRowsAndChangedDimensionsAreErrors) {
  VectorBlockStore blocks(store_.get());
  Put(SweepId{1}, Block(0, 5, 2));
  Put(SweepId{1}, Block(8, 2, 2));  // rows 5..8 missing
  auto gap = blocks.ReadAll(SweepId{1});
  EXPECT_EQ(gap.status().code(), StatusCode::kInternal);
  EXPECT_NE(gap.status().message().find("rows 5..8 are missing"), std::string::npos);

  Put(SweepId{2}, Block(0, 5, 2));
  Put(SweepId{2}, Block(5, 5, 3));
  EXPECT_EQ(blocks.ReadAll(SweepId{2}).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(blocks.ReadAll(SweepId{3}).status().code(), StatusCode::kFailedPrecondition)
      << "a sweep without vectors";
}

TEST_F(VectorBlockStoreTest, DeleteRemovesOneSweepsBlocksAndCompactionGivesTheSpaceBack) {
  // Two sweeps of ~4 MB of incompressible floats each; sweep 10 is deleted.
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1, 1);
  for (SweepId sweep : {SweepId{10}, SweepId{11}}) {
    for (int64_t begin = 0; begin < 8000; begin += 1000) {
      VectorBlock b = Block(begin, 1000, 128, /*with_metadata=*/true);
      for (float& x : b.data) x = u(rng);
      Put(sweep, b);
    }
  }
  VectorBlockStore blocks(store_.get());
  ASSERT_OK(blocks.Compact(SweepId{10}));  // flush to SST files, so that sizes are on disk
  ASSERT_OK(blocks.Compact(SweepId{11}));
  ASSERT_OK_AND_ASSIGN(int64_t before, store_->DiskBytes());
  EXPECT_GT(before, 2 * 8000 * 128 * 4 * 9 / 10);

  StateWriteBatch batch;
  VectorBlockStore::Delete(batch, SweepId{10});
  ASSERT_OK(store_->Commit(batch));
  EXPECT_EQ(blocks.ReadAll(SweepId{10}).status().code(), StatusCode::kFailedPrecondition);
  ASSERT_OK_AND_ASSIGN(auto gone_items, blocks.ReadMetadata(SweepId{10}));
  EXPECT_TRUE(gone_items.empty());
  ASSERT_OK_AND_ASSIGN(store::FloatMatrix kept, blocks.ReadAll(SweepId{11}));
  EXPECT_EQ(kept.rows, 8000);
  ASSERT_OK_AND_ASSIGN(auto kept_items, blocks.ReadMetadata(SweepId{11}));
  EXPECT_EQ(kept_items.size(), 8000u);

  ASSERT_OK(blocks.Compact(SweepId{10}));
  ASSERT_OK_AND_ASSIGN(int64_t after, store_->DiskBytes());
  EXPECT_LT(after, before * 6 / 10) << "before " << before << " after " << after;
  EXPECT_GT(after, 8000 * 128 * 4 * 9 / 10) << "sweep 11's blocks must stay";
}

}  // namespace
}  // namespace lattice
