// The index builder on a real full disk (a small tmpfs filled with a ballast file): below
// the space reserve, or when the disk fills while the index is written, the build ends
// InsufficientStorage naming the full directory, publishes nothing and leaves nothing
// behind; the same build succeeds once space is back (the coordinator starts it again).
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "index/builder.h"
#include "store/index_catalog.h"
#include "store/state_store.h"
#include "store/vector_block_store.h"
#include "tests/testutil/testutil.h"
#include "tests/testutil/tmpfs.h"

namespace lattice {
namespace {

class BuilderDiskFullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto mount = testutil::TmpfsMount::Mount(dir_.Join("mnt"), int64_t{32} << 20);
    if (!mount.ok()) GTEST_SKIP() << mount.status().message();
    mount_ = std::move(mount).value();
    auto store = StateStore::Open({mount_->Join("state"), /*sync_writes=*/true});
    ASSERT_OK(store);
    store_ = std::move(store).value();
    // 20000 vectors of dim 32 (2.4 MiB as an index file).
    sweep_.id = SweepId{1};
    sweep_.name = "fx";
    sweep_.kind = JobKind::kEmbed;
    sweep_.spec = {{"index",
                    {{"name", "fx"}, {"type", "flat"}, {"metric", "l2"},
                     {"params", nlohmann::json::object()},
                     {"eval", {{"queries", 20}, {"k", 10}}}}}};
    VectorBlock block;
    block.begin = 0;
    block.rows = 20000;
    block.dim = 32;
    block.data.resize(static_cast<size_t>(block.rows * block.dim));
    for (size_t i = 0; i < block.data.size(); ++i) block.data[i] = static_cast<float>(i % 977) / 977.0f;
    StateWriteBatch batch;
    VectorBlockStore::Put(batch, sweep_.id, block);
    ASSERT_OK(store_->Commit(batch));
  }
  void TearDown() override {
    store_.reset();
    mount_.reset();  // always unmounted
  }

  IndexBuildOutcome Build(IndexBuilder& builder) {
    builder.Start(sweep_);
    std::vector<IndexBuildOutcome> done;
    testutil::WaitFor(
        [&] {
          for (auto& o : builder.TakeFinished()) done.push_back(std::move(o));
          return !done.empty();
        },
        std::chrono::seconds(60), std::chrono::milliseconds(20));
    EXPECT_EQ(done.size(), 1u);
    return done.empty() ? IndexBuildOutcome{} : done[0];
  }

  testutil::TempDir dir_;
  std::unique_ptr<testutil::TmpfsMount> mount_;
  std::unique_ptr<StateStore> store_;
  SweepRecord sweep_;
};

TEST_F(BuilderDiskFullTest, BelowTheReserveTheBuildEndsInsufficientStorageAndWorksOnceFreed) {
  IndexBuilder builder(store_.get(), mount_->Join("indexes"), {}, /*min_free_bytes=*/4 << 20);
  ASSERT_OK(mount_->Fill(int64_t{3} << 20));
  IndexBuildOutcome full = Build(builder);
  EXPECT_EQ(full.status.code(), StatusCode::kInsufficientStorage) << full.status.ToString();
  EXPECT_NE(full.status.message().find("is full"), std::string::npos) << full.status.message();
  EXPECT_NE(full.status.message().find(mount_->Join("indexes")), std::string::npos)
      << full.status.message();
  ASSERT_OK_AND_ASSIGN(auto catalog, store::IndexCatalog::Open(mount_->Join("indexes")));
  EXPECT_EQ(catalog->Current("fx").status().code(), StatusCode::kNotFound);

  mount_->Free();
  IndexBuildOutcome ok = Build(builder);
  ASSERT_OK(ok.status);
  EXPECT_EQ(ok.version, 1);
  EXPECT_OK(catalog->Current("fx"));
}

TEST_F(BuilderDiskFullTest, ADiskThatFillsWhileTheIndexIsWrittenEndsInsufficientStorage) {
  // No reserve: the publish itself runs out of space (about 1 MiB left for 2.4 MiB).
  IndexBuilder builder(store_.get(), mount_->Join("indexes"), {}, /*min_free_bytes=*/0);
  ASSERT_OK(mount_->Fill(int64_t{1} << 20));
  IndexBuildOutcome full = Build(builder);
  EXPECT_EQ(full.status.code(), StatusCode::kInsufficientStorage) << full.status.ToString();
  ASSERT_OK_AND_ASSIGN(auto catalog, store::IndexCatalog::Open(mount_->Join("indexes")));
  EXPECT_EQ(catalog->Current("fx").status().code(), StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(auto versions, catalog->Versions("fx"));
  EXPECT_TRUE(versions.empty()) << "nothing half-written is left";

  mount_->Free();
  IndexBuildOutcome ok = Build(builder);
  ASSERT_OK(ok.status);
  EXPECT_EQ(ok.version, 1);
}

}  // namespace
}  // namespace lattice
