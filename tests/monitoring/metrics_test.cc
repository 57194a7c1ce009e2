// monitoring/metrics.h: the series SchedulerMetrics creates, and the process memory probes.
#include "monitoring/metrics.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include <gtest/gtest.h>
#include <prometheus/registry.h>

namespace lattice {
namespace {

TEST(SchedulerMetricsTest, WorkerSeriesAreCreatedOncePerRankAndNeverForTheCoordinator) {
  prometheus::Registry registry;
  SchedulerMetrics metrics(registry);
  EXPECT_EQ(metrics.worker(WorkerRank{1}), nullptr);
  metrics.EnsureWorkers(3);
  metrics.EnsureWorkers(2);  // never shrinks
  EXPECT_EQ(metrics.worker(WorkerRank{0}), nullptr);
  ASSERT_NE(metrics.worker(WorkerRank{2}), nullptr);
  EXPECT_EQ(metrics.worker(WorkerRank{3}), nullptr);
  metrics.worker(WorkerRank{2})->train_samples->Increment(64);
  const std::string text = RenderMetrics(registry);
  EXPECT_NE(text.find("lattice_samples_total{kind=\"train\",rank=\"2\"} 64\n"), std::string::npos) << text;
  EXPECT_NE(text.find("lattice_worker_vram_bytes{rank=\"1\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE lattice_checkpoint_write_seconds histogram"), std::string::npos);
  EXPECT_NE(text.find("# TYPE lattice_index_build_seconds histogram"), std::string::npos);
}

TEST(SchedulerMetricsTest, PeakResidentBytesFollowsTheProcessAndResets) {
  ResetPeakResidentBytes();
  const int64_t before = PeakResidentBytes();
  EXPECT_GE(before, ResidentBytes() / 2);
  constexpr size_t kBytes = size_t{256} << 20;
  void* block = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(block, MAP_FAILED);
  std::memset(block, 1, kBytes);
  const int64_t peak = PeakResidentBytes();
  EXPECT_GE(peak, before + static_cast<int64_t>(kBytes) * 9 / 10);
  munmap(block, kBytes);
  ResetPeakResidentBytes();
  // After the reset the peak is today's RSS again (where the kernel allows the reset; else
  // it stays the lifetime peak, which is what the header promises).
  const int64_t after = PeakResidentBytes();
  if (access("/proc/self/clear_refs", W_OK) == 0) {
    EXPECT_LT(after, peak - static_cast<int64_t>(kBytes) / 2);
  } else {
    EXPECT_GE(after, peak);
  }
  std::printf("[ info ] peak RSS %lld MB, after the reset %lld MB\n",
              static_cast<long long>(peak >> 20), static_cast<long long>(after >> 20));
}

}  // namespace
}  // namespace lattice
