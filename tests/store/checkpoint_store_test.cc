// CheckpointStore on a real RocksDB: checkpoints round-trip through chunks, a missing or
// corrupt chunk is a DataLoss naming it, unfinished transfers leave no orphan, and a process
// SIGKILLed while it writes and prunes checkpoints leaves a consistent store.
#include "store/checkpoint_store.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "tests/testutil/testutil.h"

namespace lattice {
namespace {

constexpr const char* kCf = "checkpoints";

std::string Bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string bytes = "{\"format\":\"test\",\"seed\":" + std::to_string(seed) + "}\n";
  while (bytes.size() < n) bytes.push_back(static_cast<char>(rng()));
  bytes.resize(n);
  return bytes;
}

class CheckpointStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(store_, StateStore::Open({dir_.Join("state"), /*sync_writes=*/false}));
  }
  // The keys of the chunks of `trial` (layout: store/checkpoint_store.h).
  std::vector<std::string> ChunkKeys(const TrialId& trial) {
    auto keys = store_->ScanKeys(kCf, trial.Key() + "/chunk/");
    EXPECT_OK(keys.status());
    return keys.ok() ? *keys : std::vector<std::string>{};
  }

  testutil::TempDir dir_;
  std::unique_ptr<StateStore> store_;
  const TrialId trial_{SweepId{3}, 7};
};

TEST_F(CheckpointStoreTest, ChunkedCheckpointsRoundTripAndListFromManifests) {
  const std::string final_bytes = Bytes(100000, 1);
  const std::string step_bytes = Bytes(25000, 2);
  StateWriteBatch batch;
  CheckpointStore::Put(batch, trial_, CheckpointStore::kFinal, final_bytes, 4096);
  CheckpointStore::Put(batch, trial_, 40, step_bytes, 10000);
  ASSERT_OK(store_->Commit(batch));

  CheckpointStore checkpoints(store_.get());
  ASSERT_OK_AND_ASSIGN(std::string back, checkpoints.Read(trial_, CheckpointStore::kFinal));
  EXPECT_EQ(back, final_bytes);
  ASSERT_OK_AND_ASSIGN(back, checkpoints.Read(trial_, 40));
  EXPECT_EQ(back, step_bytes);
  EXPECT_EQ(ChunkKeys(trial_).size(), 25u + 3u) << "ceil(100000/4096) + ceil(25000/10000)";

  ASSERT_OK_AND_ASSIGN(auto steps, checkpoints.ListSteps(trial_));
  ASSERT_EQ(steps.size(), 1u) << "the final checkpoint is not a step";
  EXPECT_EQ(steps[0].step, 40);
  EXPECT_EQ(steps[0].bytes, 25000);
  EXPECT_EQ(steps[0].chunks, 3);
  EXPECT_EQ(steps[0].header, "{\"format\":\"test\",\"seed\":2}");
  ASSERT_OK_AND_ASSIGN(CheckpointInfo info, checkpoints.Info(trial_, CheckpointStore::kFinal));
  EXPECT_EQ(info.bytes, 100000);
  EXPECT_EQ(info.chunks, 25);

  EXPECT_EQ(checkpoints.Read(TrialId{SweepId{3}, 8}, 0).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(checkpoints.Read(trial_, 41).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(CheckpointStore::FinalKey(trial_), trial_.Key() + "/final");

  // Deleting takes the manifest and every chunk in one batch.
  StateWriteBatch del;
  CheckpointStore::Delete(del, trial_, CheckpointStore::kFinal);
  ASSERT_OK(store_->Commit(del));
  EXPECT_EQ(checkpoints.Read(trial_, 0).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(ChunkKeys(trial_).size(), 3u);
}

TEST_F(CheckpointStoreTest, CheckpointsLargerThan64MBTravelAsChunksOfAtMost16MiB) {
  const std::string bytes = Bytes((size_t{64} << 20) + 12345, 3);
  StateWriteBatch batch;
  CheckpointStore::Put(batch, trial_, 10, bytes);  // default chunks: 16 MiB
  ASSERT_OK(store_->Commit(batch));
  ASSERT_OK_AND_ASSIGN(auto values, store_->Scan(kCf, trial_.Key()));
  ASSERT_EQ(values.size(), 6u) << "a manifest and 5 chunks";
  for (const auto& [key, value] : values) {
    EXPECT_LE(static_cast<int64_t>(value.size()), CheckpointStore::kChunkBytes) << key;
  }
  ASSERT_OK_AND_ASSIGN(std::string back, CheckpointStore(store_.get()).Read(trial_, 10));
  EXPECT_TRUE(back == bytes);
}

TEST_F(CheckpointStoreTest, MissingOrCorruptChunkIsDataLossNamingIt) {
  StateWriteBatch batch;
  CheckpointStore::Put(batch, trial_, 20, Bytes(10000, 4), 1000);
  ASSERT_OK(store_->Commit(batch));
  std::vector<std::string> chunks = ChunkKeys(trial_);
  ASSERT_EQ(chunks.size(), 10u);
  CheckpointStore checkpoints(store_.get());

  ASSERT_OK(store_->Delete(kCf, chunks[3]));
  auto missing = checkpoints.Read(trial_, 20);
  EXPECT_EQ(missing.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(missing.status().message(), "checkpoint of " + trial_.ToString() +
                                            " at step 20: chunk 4 of 10 is missing");

  ASSERT_OK_AND_ASSIGN(std::string chunk, store_->Get(kCf, chunks[5]));
  chunk[100] ^= 1;  // one flipped bit
  ASSERT_OK(store_->Put(kCf, chunks[3], std::string(1000, 'x')));
  ASSERT_OK(store_->Put(kCf, chunks[5], chunk));
  auto corrupt = checkpoints.Read(trial_, 20);
  EXPECT_EQ(corrupt.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(corrupt.status().message().find("chunk 4 of 10 is corrupt"), std::string::npos)
      << corrupt.status().ToString();
}

TEST_F(CheckpointStoreTest, WholeValuesWrittenBeforeChunkingStillRead) {
  const std::string bytes = Bytes(5000, 5);
  ASSERT_OK(store_->Put(kCf, trial_.Key() + "/step/000000000030", bytes));
  CheckpointStore checkpoints(store_.get());
  ASSERT_OK_AND_ASSIGN(std::string back, checkpoints.Read(trial_, 30));
  EXPECT_EQ(back, bytes);
  ASSERT_OK_AND_ASSIGN(auto steps, checkpoints.ListSteps(trial_));
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].bytes, 5000);
  EXPECT_EQ(steps[0].header, "{\"format\":\"test\",\"seed\":5}");
}

TEST_F(CheckpointStoreTest, WriterRejectsPiecesOutOfOrderAndAbandonLeavesNoChunk) {
  const std::string bytes = Bytes(3000, 6);
  CheckpointStore::Writer writer(trial_, 50, 3000);
  StateWriteBatch batch;
  EXPECT_EQ(writer.Add(batch, 1000, bytes.substr(1000, 1000)).code(), StatusCode::kInvalidArgument);
  ASSERT_OK(writer.Add(batch, 0, bytes.substr(0, 1000)));
  EXPECT_EQ(writer.Add(batch, 0, bytes.substr(0, 1000)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(writer.Add(batch, 1000, bytes.substr(1000)  + "extra").code(),
            StatusCode::kInvalidArgument)
      << "past the total";
  EXPECT_FALSE(writer.complete());
  ASSERT_OK(store_->Commit(batch));
  EXPECT_EQ(ChunkKeys(trial_).size(), 1u);
  StateWriteBatch abandon;
  writer.Abandon(abandon);
  ASSERT_OK(store_->Commit(abandon));
  EXPECT_TRUE(ChunkKeys(trial_).empty());
}

TEST_F(CheckpointStoreTest, OrphanChunksOfUnfinishedTransfersAreDeleted) {
  CheckpointStore checkpoints(store_.get());
  StateWriteBatch batch;
  CheckpointStore::Put(batch, trial_, 10, Bytes(4000, 7), 1000);  // whole: 4 chunks
  CheckpointStore::Writer cut(trial_, 20, 4000);                  // cut short: 2 of 4
  const std::string cut_bytes = Bytes(4000, 8);
  ASSERT_OK(cut.Add(batch, 0, cut_bytes.substr(0, 1000)));
  ASSERT_OK(cut.Add(batch, 1000, cut_bytes.substr(1000, 1000)));
  ASSERT_OK(store_->Commit(batch));
  EXPECT_EQ(ChunkKeys(trial_).size(), 6u);

  StateWriteBatch cleanup;
  ASSERT_OK_AND_ASSIGN(int64_t orphans, checkpoints.DeleteOrphanChunks(cleanup, trial_));
  EXPECT_EQ(orphans, 2);
  ASSERT_OK(store_->Commit(cleanup));
  EXPECT_EQ(ChunkKeys(trial_).size(), 4u);
  ASSERT_OK_AND_ASSIGN(std::string back, checkpoints.Read(trial_, 10));
  EXPECT_EQ(back, Bytes(4000, 7));

  // Rewriting a step with fewer chunks drops the chunks past the new last one.
  StateWriteBatch rewrite;
  CheckpointStore::Put(rewrite, trial_, 10, Bytes(1500, 9), 1000);
  ASSERT_OK(store_->Commit(rewrite));
  EXPECT_EQ(ChunkKeys(trial_).size(), 2u);
  ASSERT_OK_AND_ASSIGN(back, checkpoints.Read(trial_, 10));
  EXPECT_EQ(back, Bytes(1500, 9));
}

// The child's loop: as the coordinator does, each checkpoint arrives in pieces over several
// commits; the last piece's commit also writes the manifest and prunes to the newest 2.
[[noreturn]] void WriteAndPruneForever(const std::string& path, const TrialId& trial) {
  auto opened = StateStore::Open({path, /*sync_writes=*/true});
  if (!opened.ok()) _exit(2);
  std::unique_ptr<StateStore> store = std::move(opened).value();
  CheckpointStore checkpoints(store.get());
  auto listed = checkpoints.ListSteps(trial);
  if (!listed.ok()) _exit(3);
  std::vector<int64_t> kept;
  for (const auto& info : *listed) kept.push_back(info.step);
  int64_t step = kept.empty() ? 0 : kept.back();
  for (;;) {
    step += 10;
    const std::string bytes = Bytes(8 * 65536, static_cast<uint64_t>(step));
    CheckpointStore::Writer writer(trial, step, static_cast<int64_t>(bytes.size()));
    for (size_t at = 0; at < bytes.size(); at += 65536) {
      StateWriteBatch batch;
      if (!writer.Add(batch, static_cast<int64_t>(at), bytes.substr(at, 65536)).ok()) _exit(4);
      if (writer.complete()) {
        writer.Finish(batch);
        kept.push_back(step);
        while (kept.size() > 2) {
          CheckpointStore::Delete(batch, trial, kept.front());
          kept.erase(kept.begin());
        }
      }
      if (!store->Commit(batch).ok()) _exit(5);
      if (writer.complete()) {  // tell the parent how far it got
        std::ofstream(path + ".progress", std::ios::trunc) << step << "\n";
      }
    }
  }
}

// The last step the writer reported committed; 0 before its first.
int64_t Progress(const std::string& path) {
  std::ifstream in(path + ".progress");
  int64_t step = 0;
  in >> step;
  return step;
}

TEST_F(CheckpointStoreTest, KillDuringWritesAndPruningLeavesAConsistentStore) {
  const std::string path = dir_.Join("killed");
  store_.reset();
  std::mt19937_64 rng = testutil::SeededRng("KillDuringWritesAndPruningLeavesAConsistentStore");
  int64_t last_step = 0;
  for (int round = 0; round < 6; ++round) {
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) WriteAndPruneForever(path, trial_);
    // Once it has committed a checkpoint since the restart, kill it at a random moment of
    // the next ones (each is 8 commits, the last with the manifest and the pruning).
    const bool progressed = testutil::WaitFor([&] { return Progress(path) > last_step; },
                                              std::chrono::seconds(60), std::chrono::milliseconds(1));
    if (progressed) std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 120));
    ASSERT_EQ(kill(child, SIGKILL), 0);
    ASSERT_TRUE(progressed) << "the writer committed nothing in 60 s";
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the writer exited on its own with " << WEXITSTATUS(status);

    // What recovery does: open, delete the chunks of the transfer the kill cut short.
    ASSERT_OK_AND_ASSIGN(auto store, StateStore::Open({path, true}));
    CheckpointStore checkpoints(store.get());
    StateWriteBatch cleanup;
    ASSERT_OK(checkpoints.DeleteOrphanChunks(cleanup, trial_).status());
    ASSERT_OK(store->Commit(cleanup));

    ASSERT_OK_AND_ASSIGN(auto steps, checkpoints.ListSteps(trial_));
    ASSERT_FALSE(steps.empty()) << "round " << round;
    EXPECT_LE(steps.size(), 2u) << "pruning is atomic with the manifest that triggers it";
    EXPECT_GE(steps.back().step, last_step) << "a committed checkpoint never disappears";
    last_step = steps.back().step;
    int64_t chunks = 0;
    for (const auto& info : steps) {
      chunks += info.chunks;
      auto bytes = checkpoints.Read(trial_, info.step);
      ASSERT_TRUE(bytes.ok()) << bytes.status().ToString() << ", round " << round;
      EXPECT_TRUE(*bytes == Bytes(8 * 65536, static_cast<uint64_t>(info.step))) << info.step;
    }
    ASSERT_OK_AND_ASSIGN(auto keys, store->ScanKeys(kCf, trial_.Key() + "/chunk/"));
    EXPECT_EQ(static_cast<int64_t>(keys.size()), chunks) << "no orphaned chunk, round " << round;
  }
  EXPECT_GE(last_step, 30) << "the writer made progress across the kills";
}

}  // namespace
}  // namespace lattice
