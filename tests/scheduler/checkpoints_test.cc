// ResolveTrialEncoder against a real RocksDB state store: which trial an embed sweep's
// encoder {type: trial} means, and every way the reference can be wrong.
#include "scheduler/checkpoints.h"

#include <gtest/gtest.h>

#include "store/checkpoint_store.h"
#include "tests/testutil/testutil.h"

namespace lattice {
namespace {

using nlohmann::json;

// A checkpoint blob with a valid header (the archive part is not read at submit).
std::string Blob(const json& model) {
  jobs::CheckpointHeader h;
  h.config = {{"kind", "train"}, {"dataset", {{"features", "x.npy"}, {"labels", "y.npy"}}},
              {"model", model}};
  h.in_dim = 8;
  h.classes = 3;
  h.epochs = 2;
  h.metrics = {{"val_accuracy", 0.5}};
  return h.ToJson().dump() + "\nARCHIVE";
}

class ResolveTrialEncoderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(store_, StateStore::Open(StateStoreOptions{dir_.Join("db"), false}));
  }

  // A finished train sweep "probe" (id s<id>) whose trials have these objectives; a null
  // objective is a failed trial (no checkpoint).
  void AddSweep(uint64_t id, const std::string& name, bool maximize,
                const std::vector<std::optional<double>>& objectives,
                SweepState state = SweepState::kCompleted) {
    StateWriteBatch b;
    SweepRecord s;
    s.id = SweepId{id};
    s.name = name;
    s.kind = JobKind::kTrain;
    s.state = state;
    s.metric = "val_loss";
    s.maximize = maximize;
    s.num_trials = static_cast<uint32_t>(objectives.size());
    b.PutSweep(s);
    for (uint32_t i = 0; i < objectives.size(); ++i) {
      TrialRecord t;
      t.id = TrialId{s.id, i};
      t.params = {{"lr", 0.1 * (i + 1)}};
      t.config = {{"kind", "train"}};
      t.state = objectives[i] ? TrialState::kCompleted : TrialState::kFailed;
      t.objective = objectives[i];
      if (objectives[i]) {
        const std::string blob = Blob({{"type", "mlp"}, {"hidden", {16, 8}}});
        t.checkpoint_bytes = static_cast<int64_t>(blob.size());
        CheckpointStore::Put(b, t.id, CheckpointStore::kFinal, blob);
      }
      b.PutTrial(t);
    }
    ASSERT_OK(store_->Commit(b));
  }

  StatusOr<TrialEncoder> Resolve(const std::string& trial, int layer = -2) {
    return ResolveTrialEncoder(*store_, {{"type", "trial"}, {"trial", trial}, {"layer", layer}});
  }

  void ExpectError(const std::string& trial, const std::string& message, int layer = -2) {
    auto r = Resolve(trial, layer);
    ASSERT_FALSE(r.ok()) << trial;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(message), std::string::npos) << r.status().message();
  }

  testutil::TempDir dir_;
  std::unique_ptr<StateStore> store_;
};

TEST_F(ResolveTrialEncoderTest, TrialIdSweepIdAndSweepName) {
  AddSweep(1, "probe", /*maximize=*/false, {0.9, 0.4, std::nullopt, 0.6});
  ASSERT_OK_AND_ASSIGN(TrialEncoder t2, Resolve("s1-t1"));
  EXPECT_EQ(t2.trial.ToString(), "s1-t1");
  EXPECT_EQ(t2.layer, 2);  // -2 of two hidden layers
  EXPECT_EQ(t2.header.in_dim, 8);
  EXPECT_EQ(t2.params, (json{{"lr", 0.2}}));
  ASSERT_OK_AND_ASSIGN(TrialEncoder by_id, Resolve("s1"));  // minimise val_loss: t1 (0.4)
  EXPECT_EQ(by_id.trial.ToString(), "s1-t1");
  AddSweep(2, "probe", /*maximize=*/true, {0.1, 0.3, 0.2});
  ASSERT_OK_AND_ASSIGN(TrialEncoder by_name, Resolve("probe"));  // newest "probe": s2, max
  EXPECT_EQ(by_name.trial.ToString(), "s2-t1");
  json lineage = CheckpointLineage(by_name);
  EXPECT_EQ(lineage["trial"], "s2-t1");
  EXPECT_EQ(lineage["sweep"], "s2");
  EXPECT_EQ(lineage["key"], CheckpointStore::FinalKey(by_name.trial));
  EXPECT_EQ(lineage["metrics"]["val_accuracy"], 0.5);
  ASSERT_OK_AND_ASSIGN(TrialEncoder logits, Resolve("s1-t0", -1));
  EXPECT_EQ(logits.layer, 3);
}

TEST_F(ResolveTrialEncoderTest, BadReferences) {
  AddSweep(1, "probe", true, {0.5, std::nullopt});
  AddSweep(2, "live", true, {0.5}, SweepState::kRunning);
  AddSweep(3, "broken", true, {std::nullopt});
  ExpectError("s1-t7", "encoder.trial: no trial s1-t7");
  ExpectError("s1-t1", "encoder.trial: s1-t1 is failed; only a completed train trial");
  ExpectError("s9", "encoder.trial: no sweep s9");
  ExpectError("s2", "encoder.trial: sweep s2 is still running");
  ExpectError("live", "is neither a trial id");  // a running sweep's name does not count
  ExpectError("s3", "sweep s3 has no completed trial with a checkpoint");
  ExpectError("nope", "encoder.trial: \"nope\" is neither a trial id");
  ExpectError("s1-t0", "encoder.layer: 4 is out of range for a model with 2 hidden layers", 4);
  ExpectError("s1-t0", "encoder.layer: -5 is out of range", -5);

  // Completed without a checkpoint (train.checkpoint: false).
  StateWriteBatch b;
  TrialRecord t;
  t.id = TrialId{SweepId{1}, 5};
  t.state = TrialState::kCompleted;
  t.config = {{"kind", "train"}};
  b.PutTrial(t);
  CheckpointStore::Put(b, TrialId{SweepId{1}, 6}, CheckpointStore::kFinal, "not a checkpoint");
  t.id = TrialId{SweepId{1}, 6};
  b.PutTrial(t);
  ASSERT_OK(store_->Commit(b));
  ExpectError("s1-t5", "encoder.trial: s1-t5 has no checkpoint (kind train");
  ExpectError("s1-t6", "encoder.trial: s1-t6: checkpoint: no header line");
}

}  // namespace
}  // namespace lattice
