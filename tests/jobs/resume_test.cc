// Step checkpoints and exact resume of a train job: a run resumed from any of its step
// checkpoints (mid-epoch or at an epoch's end) ends bit-identical to the run that was never
// interrupted — weights, optimizer moments, LR schedule, both RNGs, the data order and the
// early-stopping state all travel in the checkpoint.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "jobs/checkpoint.h"
#include "jobs/train_job.h"
#include "tests/jobs/npy_writer.h"
#include "tests/testutil/testutil.h"

namespace lattice::jobs {
namespace {

using nlohmann::json;

// Dropout and batchnorm (the torch RNG and buffers), AdamW moments, a cosine schedule with
// warmup, clipping, early-stopping bookkeeping: everything a resume must restore.
json Config(int every_steps) {
  return {{"kind", "train"},
          {"seed", 9},
          {"dataset",
           {{"format", "csv"}, {"path", testing::kDigitsCsv}, {"standardize", true},
            {"split", {{"validation_fraction", 0.2}, {"seed", 4}}}}},
          {"model", {{"type", "mlp"}, {"hidden", {64}}, {"batchnorm", true}, {"dropout", 0.2}}},
          {"train",
           {{"epochs", 4}, {"batch_size", 50}, {"lr", 2e-3}, {"threads", 1},
            {"schedule", {{"type", "cosine"}, {"warmup_steps", 10}}}, {"clip_grad_norm", 1.0},
            {"early_stopping", {{"patience", 10}}}}},
          {"checkpoint", {{"every_steps", every_steps}}}};
}

struct Saved {
  std::string bytes;
  int64_t step = 0;
  int epoch = 0;
};

struct Outcome {
  JobResult result;
  std::vector<Saved> checkpoints;
  std::vector<std::map<std::string, double>> epochs;
};

Outcome RunTrial(const json& config, std::shared_ptr<const std::string> resume_from = nullptr) {
  Outcome out;
  JobContext ctx;
  ctx.resume_from = std::move(resume_from);
  ctx.on_checkpoint = [&](std::string bytes, int64_t step, int epoch) {
    out.checkpoints.push_back({std::move(bytes), step, epoch});
  };
  ctx.on_epoch = [&](int, const std::map<std::string, double>& m) { out.epochs.push_back(m); };
  auto r = RunJob(config, ctx);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (r.ok()) out.result = std::move(r).value();
  return out;
}

TEST(ResumeTest, ResumedRunsAreBitIdenticalToTheUninterruptedOne) {
  // 1437 training rows / 50 = 29 batches per epoch; every 29 steps lands on epoch ends.
  for (int every : {11, 29}) {
    SCOPED_TRACE("every_steps " + std::to_string(every));
    Outcome whole = RunTrial(Config(every));
    ASSERT_EQ(whole.epochs.size(), 4u);
    ASSERT_EQ(static_cast<int64_t>(whole.checkpoints.size()), 4 * 29 / every);
    ASSERT_TRUE(whole.result.checkpoint.has_value());
    for (size_t i = 0; i < whole.checkpoints.size(); ++i) {
      const Saved& c = whole.checkpoints[i];
      EXPECT_EQ(c.step, static_cast<int64_t>(i + 1) * every);
      ASSERT_OK_AND_ASSIGN(CheckpointHeader h, ReadCheckpointHeader(c.bytes));
      EXPECT_EQ(h.resume.at("step").get<int64_t>(), c.step);
    }
    for (size_t i : {size_t{0}, whole.checkpoints.size() / 2, whole.checkpoints.size() - 1}) {
      SCOPED_TRACE("resumed from the checkpoint at step " + std::to_string(whole.checkpoints[i].step));
      auto blob = std::make_shared<const std::string>(whole.checkpoints[i].bytes);
      Outcome resumed = RunTrial(Config(every), blob);
      for (const auto& [key, value] : whole.result.metrics) {
        EXPECT_EQ(resumed.result.metrics.at(key), value) << key;
      }
      EXPECT_EQ(resumed.result.epochs_done, whole.result.epochs_done);
      EXPECT_TRUE(*resumed.result.checkpoint == *whole.result.checkpoint)
          << "the final weights differ";
      // The epochs run after the resume report what the uninterrupted run reported.
      ASSERT_LE(resumed.epochs.size(), whole.epochs.size());
      const size_t skipped = whole.epochs.size() - resumed.epochs.size();
      for (size_t e = 0; e < resumed.epochs.size(); ++e) {
        EXPECT_EQ(resumed.epochs[e], whole.epochs[skipped + e]) << "epoch " << skipped + e + 1;
      }
      // It goes on writing the checkpoints the whole run wrote after that one.
      ASSERT_EQ(resumed.checkpoints.size(), whole.checkpoints.size() - i - 1);
      if (!resumed.checkpoints.empty()) {
        EXPECT_TRUE(resumed.checkpoints.back().bytes == whole.checkpoints.back().bytes);
      }
    }
  }
}

// A preempted run (ctx.preempted, as a draining worker sets it) writes a step checkpoint of
// exactly where it stopped — mid-epoch, off the every_steps grid — and ends Cancelled; the
// run resumed from that checkpoint ends bit-identical to the uninterrupted one.
TEST(ResumeTest, PreemptionCheckpointsWhereItStoppedAndResumesBitIdentically) {
  const json config = Config(1000);  // no policy checkpoint before the preemption
  Outcome whole = RunTrial(config);
  ASSERT_TRUE(whole.checkpoints.empty());
  for (int stop_after : {37, 58}) {  // mid-epoch 2; exactly epoch 2's end (2 x 29 batches)
    SCOPED_TRACE("preempted after " + std::to_string(stop_after) + " batches");
    std::vector<Saved> saved;
    int polls = 0;
    JobContext ctx;
    ctx.preempted = [&] { return polls++ >= stop_after; };  // polled once per batch
    ctx.on_checkpoint = [&](std::string bytes, int64_t step, int epoch) {
      saved.push_back({std::move(bytes), step, epoch});
    };
    auto stopped = RunJob(config, ctx);
    ASSERT_FALSE(stopped.ok());
    EXPECT_EQ(stopped.status().code(), StatusCode::kCancelled);
    EXPECT_NE(stopped.status().message().find("preempted in epoch"), std::string::npos)
        << stopped.status().message();
    EXPECT_NE(stopped.status().message().find("step checkpoint written"), std::string::npos);
    ASSERT_EQ(saved.size(), 1u);
    EXPECT_EQ(saved[0].step, stop_after);
    EXPECT_EQ(saved[0].epoch, stop_after / 29 + 1);
    Outcome resumed = RunTrial(config, std::make_shared<const std::string>(saved[0].bytes));
    EXPECT_EQ(resumed.result.metrics, whole.result.metrics);
    ASSERT_TRUE(resumed.result.checkpoint.has_value());
    EXPECT_TRUE(*resumed.result.checkpoint == *whole.result.checkpoint)
        << "the final weights differ";
    ASSERT_EQ(resumed.epochs.size(), 4u - static_cast<size_t>(stop_after / 29));
  }
  // Without a checkpoint policy a preempted run just stops: nothing to resume from.
  json plain = config;
  plain.erase("checkpoint");
  JobContext ctx;
  int saved = 0;
  ctx.preempted = [] { return true; };
  ctx.on_checkpoint = [&](std::string, int64_t, int) { ++saved; };
  auto stopped = RunJob(plain, ctx);
  ASSERT_FALSE(stopped.ok());
  EXPECT_EQ(stopped.status().code(), StatusCode::kCancelled);
  EXPECT_EQ(saved, 0);
}

// With keep_best the final checkpoint holds the best epoch's weights, a copy of which every
// later step checkpoint carries: a run resumed after that epoch still ends with the same bytes.
TEST(ResumeTest, KeepBestResumesBitIdentically) {
  json c = Config(29);  // every epoch's end
  c["train"]["lr"] = 2e-2;
  c["train"]["epochs"] = 8;
  c["train"].erase("early_stopping");
  c["checkpoint"]["keep_best"] = 1;
  c["checkpoint"]["metric"] = "val_accuracy";
  Outcome whole = RunTrial(c);
  ASSERT_EQ(whole.epochs.size(), 8u);
  const int selected = static_cast<int>(whole.result.metrics.at("selected_epoch"));
  ASSERT_LT(selected, 7) << "the test needs checkpoints taken after the selected epoch";
  ASSERT_EQ(whole.checkpoints.size(), 8u);
  for (size_t i : {size_t{0}, static_cast<size_t>(selected), size_t{6}}) {
    SCOPED_TRACE("resumed from the checkpoint of epoch " + std::to_string(i + 1));
    Outcome resumed = RunTrial(c, std::make_shared<const std::string>(whole.checkpoints[i].bytes));
    EXPECT_EQ(resumed.result.metrics, whole.result.metrics);
    ASSERT_TRUE(resumed.result.checkpoint.has_value());
    EXPECT_TRUE(*resumed.result.checkpoint == *whole.result.checkpoint)
        << "the final weights differ";
  }
}

// Checkpointing only observes: the same run without a checkpoint key ends the same.
TEST(ResumeTest, CheckpointingDoesNotChangeTheRun) {
  json plain = Config(11);
  plain.erase("checkpoint");
  Outcome with = RunTrial(Config(11));
  Outcome without = RunTrial(plain);
  EXPECT_FALSE(with.checkpoints.empty());
  EXPECT_TRUE(without.checkpoints.empty());
  EXPECT_EQ(with.result.metrics, without.result.metrics);
  EXPECT_EQ(with.epochs, without.epochs);
}

TEST(ResumeTest, CheckpointsOfAnotherConfigOrFinalOnesAreRefused) {
  Outcome whole = RunTrial(Config(20));
  ASSERT_FALSE(whole.checkpoints.empty());
  json other = Config(20);
  other["train"]["lr"] = 1e-2;
  JobContext ctx;
  ctx.resume_from = std::make_shared<const std::string>(whole.checkpoints[0].bytes);
  auto r = RunJob(other, ctx);
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << r.status().ToString();
  EXPECT_NE(r.status().message().find("different config"), std::string::npos);

  ctx.resume_from = std::make_shared<const std::string>(*whole.result.checkpoint);
  r = RunJob(Config(20), ctx);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();

  ctx.resume_from = std::make_shared<const std::string>(whole.checkpoints[0].bytes.substr(0, 500));
  r = RunJob(Config(20), ctx);
  EXPECT_FALSE(r.ok());
}

TEST(ResumeTest, CheckpointPolicyIsValidated) {
  json c = Config(5);
  c["checkpoint"] = json::object();
  JobContext ctx;
  auto r = RunJob(c, ctx);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("checkpoint: needs every_steps or every_seconds"),
            std::string::npos)
      << r.status().ToString();
  c["checkpoint"] = {{"every_steps", 0}};
  EXPECT_EQ(RunJob(c, ctx).status().code(), StatusCode::kInvalidArgument);
  c["checkpoint"] = {{"every_steps", 5}, {"keep_lats", 2}};
  r = RunJob(c, ctx);
  EXPECT_NE(r.status().message().find("checkpoint.keep_lats: unknown key"), std::string::npos)
      << r.status().ToString();
}

}  // namespace
}  // namespace lattice::jobs
