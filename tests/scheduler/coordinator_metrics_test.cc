// The coordinator's metrics (monitoring/metrics.h), driven through the in-memory channel:
// per-rank series exist from the start, heartbeats and registrations set the memory
// gauges, workers' processed rows land in the counter of their sweep's kind, checkpoint
// bytes are counted with their commit, and a coordinator without metrics still works.
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "monitoring/metrics.h"
#include "scheduler/coordinator.h"
#include "scheduler/sweep_spec.h"
#include "tests/testutil/fake_channel.h"
#include "tests/testutil/fake_clock.h"
#include "tests/testutil/testutil.h"

namespace lattice {
namespace {

using testutil::FakeChannel;
using testutil::FakeClock;

constexpr int kWorkers = 3;

WorkerRank W(int r) { return WorkerRank{r}; }

// A sweep of `trials` trials of `kind`, built directly (no dataset is read).
scheduler::SweepSpec Spec(JobKind kind, int trials) {
  scheduler::SweepSpec spec;
  spec.name = std::string(JobKindName(kind)) + "-sweep";
  spec.kind = kind;
  spec.spec = {{"kind", JobKindName(kind)}};
  spec.method = "grid";
  spec.metric = "val_accuracy";
  for (int i = 0; i < trials; ++i) {
    spec.points.push_back({{"seed", i}});
    spec.trial_configs.push_back({{"kind", JobKindName(kind)}, {"seed", i}});
  }
  return spec;
}

class CoordinatorMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = StateStore::Open({dir_.Join("state"), /*sync_writes=*/false});
    ASSERT_OK(store);
    store_ = std::move(store).value();
    Start(/*with_metrics=*/true);
  }

  void Start(bool with_metrics) {
    coordinator_.reset();
    channel_ = std::make_unique<FakeChannel>(kWorkers + 1);
    registry_ = std::make_unique<prometheus::Registry>();
    metrics_ = std::make_unique<SchedulerMetrics>(*registry_);
    CoordinatorOptions options;
    options.clock = &clock_;
    coordinator_ = std::make_unique<Coordinator>(options, store_.get(), channel_.get(),
                                                 with_metrics ? metrics_.get() : nullptr);
  }

  void Step(int iterations = 1) {
    for (int i = 0; i < iterations; ++i) coordinator_->RunOnce();
  }

  void RegisterWorkers() {
    for (int r = 1; r <= kWorkers; ++r) channel_->Deliver(W(r), RegisterMsg{"host", 1, "cpu"});
    Step();
  }

  SweepRecord Submit(scheduler::SweepSpec spec) {
    auto future = coordinator_->SubmitAsync(std::move(spec));
    Step();
    auto result = future.get();
    EXPECT_OK(result);
    return result.ok() ? *result : SweepRecord{};
  }

  std::string Text() { return RenderMetrics(*registry_); }
  // The sample lines of the throughput counters.
  std::string Throughput() {
    std::string out, line;
    std::istringstream in(Text());
    while (std::getline(in, line)) {
      if (line.rfind("lattice_samples_total{", 0) == 0 || line.rfind("lattice_items_total{", 0) == 0) {
        out += line + "\n";
      }
    }
    return out;
  }
  // Whether the exposition has exactly this sample line.
  bool Has(const std::string& line) { return ("\n" + Text()).find("\n" + line + "\n") != std::string::npos; }

  testutil::TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<StateStore> store_;
  std::unique_ptr<FakeChannel> channel_;
  std::unique_ptr<prometheus::Registry> registry_;
  std::unique_ptr<SchedulerMetrics> metrics_;
  std::unique_ptr<Coordinator> coordinator_;
};

TEST_F(CoordinatorMetricsTest, EveryRankHasItsSeriesBeforeItSpeaks) {
  for (int r = 1; r <= kWorkers; ++r) {
    const std::string rank = "rank=\"" + std::to_string(r) + "\"";
    EXPECT_TRUE(Has("lattice_worker_up{" + rank + "} 0")) << Text();
    EXPECT_TRUE(Has("lattice_worker_rss_bytes{" + rank + "} 0"));
    EXPECT_TRUE(Has("lattice_worker_vram_bytes{" + rank + "} 0"));
    EXPECT_TRUE(Has("lattice_worker_vram_total_bytes{" + rank + "} 0"));
    EXPECT_TRUE(Has("lattice_samples_total{kind=\"train\"," + rank + "} 0"));
    EXPECT_TRUE(Has("lattice_samples_total{kind=\"distill\"," + rank + "} 0"));
    EXPECT_TRUE(Has("lattice_items_total{kind=\"embed\"," + rank + "} 0"));
  }
  EXPECT_EQ(Text().find("rank=\"0\""), std::string::npos);  // the coordinator
  EXPECT_EQ(Text().find("rank=\"4\""), std::string::npos);
}

TEST_F(CoordinatorMetricsTest, RegistrationsAndHeartbeatsSetTheRanksMemoryGauges) {
  RegisterMsg gpu{"gpu-node", 1, "cuda:0 NVIDIA H100 (80.0 GiB)", 0, int64_t{80} << 30};
  channel_->Deliver(W(1), gpu);
  channel_->Deliver(W(2), RegisterMsg{"cpu-node", 1, "cpu"});
  Step();
  EXPECT_TRUE(Has("lattice_worker_up{rank=\"1\"} 1")) << Text();
  EXPECT_TRUE(Has("lattice_worker_up{rank=\"2\"} 1"));
  EXPECT_TRUE(Has("lattice_worker_up{rank=\"3\"} 0"));  // never registered
  EXPECT_TRUE(Has("lattice_worker_vram_total_bytes{rank=\"1\"} 85899345920")) << Text();
  EXPECT_TRUE(Has("lattice_worker_vram_total_bytes{rank=\"2\"} 0"));

  HeartbeatMsg beat;
  beat.rss_bytes = 123456789;
  beat.vram_bytes = 4096;
  channel_->Deliver(W(1), beat);
  beat.rss_bytes = 2222;
  beat.vram_bytes = 0;
  channel_->Deliver(W(2), beat);
  Step();
  EXPECT_TRUE(Has("lattice_worker_rss_bytes{rank=\"1\"} 123456789")) << Text();
  EXPECT_TRUE(Has("lattice_worker_vram_bytes{rank=\"1\"} 4096"));
  EXPECT_TRUE(Has("lattice_worker_rss_bytes{rank=\"2\"} 2222"));
  EXPECT_TRUE(Has("lattice_worker_vram_bytes{rank=\"2\"} 0"));
  EXPECT_TRUE(Has("lattice_worker_rss_bytes_max 123456789"));
  for (const WorkerView& v : coordinator_->Workers()) {
    if (v.rank == W(1)) {
      EXPECT_EQ(v.vram_total_bytes, int64_t{80} << 30);
    }
  }
}

TEST_F(CoordinatorMetricsTest, ProcessedRowsGoToTheCounterOfTheSweepsKindAndTheWorkersRank) {
  RegisterWorkers();
  Submit(Spec(JobKind::kTrain, 2));
  auto assigns = channel_->TakeSentOf<AssignMsg>();
  ASSERT_EQ(assigns.size(), 2u);
  for (const auto& [rank, a] : assigns) {
    channel_->Deliver(rank, ProgressMsg{a.trial, a.attempt, 1, {{"val_loss", 1.0}}, 1000});
    ResultMsg r{a.trial, a.attempt, StatusCode::kOk, {{"val_accuracy", 0.5}, {"peak_rss_bytes", 512345678}}, 1, "", 0.5};
    r.processed = 24;  // rows after the last epoch report (none here, but counted all the same)
    channel_->Deliver(rank, r);
  }
  Step();
  for (const auto& [rank, a] : assigns) {
    EXPECT_TRUE(Has("lattice_samples_total{kind=\"train\",rank=\"" + std::to_string(rank.value) +
                    "\"} 1024"))
        << Text();
  }
  EXPECT_TRUE(Has("lattice_trial_peak_rss_bytes 512345678")) << Text();

  // Embed rows are items, counted even when the shard then fails (the work was done).
  Submit(Spec(JobKind::kEmbed, 1));
  auto embed = channel_->TakeSentOf<AssignMsg>();
  ASSERT_EQ(embed.size(), 1u);
  ResultMsg failed{embed[0].second.trial, embed[0].second.attempt, StatusCode::kInternal, {}, 0, "boom", 0.1};
  failed.processed = 500;
  channel_->Deliver(embed[0].first, failed);
  Step();
  EXPECT_TRUE(Has("lattice_items_total{kind=\"embed\",rank=\"" +
                  std::to_string(embed[0].first.value) + "\"} 500"))
      << Text();

  // No-op trials process nothing that is counted.
  channel_->TakeSentOf<AssignMsg>();  // the failed shard's next attempt
  const std::string before = Throughput();
  SweepRecord noops = Submit(Spec(JobKind::kNoop, 1));
  bool delivered = false;
  for (const auto& [rank, a] : channel_->TakeSentOf<AssignMsg>()) {
    if (a.trial.sweep != noops.id) continue;
    ResultMsg done{a.trial, a.attempt, StatusCode::kOk, {}, 0, "", 0.001};
    done.processed = 7;
    channel_->Deliver(rank, done);
    delivered = true;
  }
  ASSERT_TRUE(delivered);
  Step();
  EXPECT_EQ(Throughput(), before);
}

TEST_F(CoordinatorMetricsTest, CheckpointBytesAreCountedWithTheCommitThatStoredThem) {
  RegisterWorkers();
  Submit(Spec(JobKind::kTrain, 1));
  auto assigns = channel_->TakeSentOf<AssignMsg>();
  ASSERT_EQ(assigns.size(), 1u);
  const auto& [rank, a] = assigns[0];
  const std::string bytes = "{\"epochs\":1}\n" + std::string(1000, 'x');
  for (auto& piece : SplitCheckpoint(a.trial, a.attempt, 40, bytes, /*piece_bytes=*/300)) {
    channel_->Deliver(rank, std::move(piece));
  }
  Step();
  EXPECT_TRUE(Has("lattice_checkpoint_written_bytes_total " + std::to_string(bytes.size()))) << Text();
  EXPECT_TRUE(Has("lattice_checkpoint_write_seconds_count 1")) << Text();
}

TEST_F(CoordinatorMetricsTest, WithoutMetricsTheCoordinatorWorksAndUpdatesNone) {
  Start(/*with_metrics=*/false);
  RegisterWorkers();
  SweepRecord sweep = Submit(Spec(JobKind::kNoop, 3));
  for (int round = 0; round < 3; ++round) {
    for (const auto& [rank, a] : channel_->TakeSentOf<AssignMsg>()) {
      ResultMsg r{a.trial, a.attempt, StatusCode::kOk, {}, 0, "", 0.001};
      r.processed = 5;
      channel_->Deliver(rank, r);
    }
    Step();
  }
  auto stored = store_->GetSweep(sweep.id);
  ASSERT_OK(stored);
  EXPECT_EQ(stored->state, SweepState::kCompleted);
  EXPECT_EQ(metrics_->trials_completed.Value(), 0);
  EXPECT_EQ(metrics_->trials_dispatched.Value(), 0);
  EXPECT_EQ(Text().find("rank=\""), std::string::npos);  // no per-rank series either
  EXPECT_EQ(coordinator_->Workers().size(), static_cast<size_t>(kWorkers));
}

}  // namespace
}  // namespace lattice
