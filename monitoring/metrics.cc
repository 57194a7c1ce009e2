#include "monitoring/metrics.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

#include <prometheus/text_serializer.h>

namespace lattice {
namespace {

constexpr char kFinishedHelp[] = "Trials that reached a terminal state";
constexpr char kWorkersHelp[] = "Workers by state";

prometheus::Family<prometheus::Counter>& Counters(prometheus::Registry& r, const std::string& name,
                                                  const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r);
}
prometheus::Family<prometheus::Gauge>& Gauges(prometheus::Registry& r, const std::string& name,
                                              const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r);
}

}  // namespace

SchedulerMetrics::SchedulerMetrics(prometheus::Registry& r)
    : trials_completed(Counters(r, "lattice_trials_finished_total", kFinishedHelp)
                           .Add({{"state", "completed"}})),
      trials_failed(Counters(r, "lattice_trials_finished_total", kFinishedHelp).Add({{"state", "failed"}})),
      trials_cancelled(Counters(r, "lattice_trials_finished_total", kFinishedHelp).Add({{"state", "cancelled"}})),
      trials_retried(Counters(r, "lattice_trials_retried_total", "Attempts that were queued again").Add({})),
      trials_dispatched(Counters(r, "lattice_trials_dispatched_total", "Trial attempts assigned to workers").Add({})),
      epochs_reported(Counters(r, "lattice_epochs_total", "Per-epoch progress reports received").Add({})),
      queue_depth(Gauges(r, "lattice_queue_depth", "Queued trials waiting for a worker").Add({})),
      trials_running(Gauges(r, "lattice_trials_running", "Trials running on workers").Add({})),
      workers_idle(Gauges(r, "lattice_workers", kWorkersHelp).Add({{"state", "idle"}})),
      workers_busy(Gauges(r, "lattice_workers", kWorkersHelp).Add({{"state", "busy"}})),
      workers_lost(Gauges(r, "lattice_workers", kWorkersHelp).Add({{"state", "lost"}})),
      worker_rss_bytes_max(Gauges(r, "lattice_worker_rss_bytes_max", "Largest worker resident memory").Add({})),
      worker_vram_bytes_max(Gauges(r, "lattice_worker_vram_bytes_max", "Largest worker GPU memory in use").Add({})),
      trial_peak_device_memory_bytes(
          Gauges(r, "lattice_trial_peak_device_memory_bytes",
                 "Peak GPU memory the allocator held during the last trial that ran on a GPU")
              .Add({})),
      coordinator_rss_bytes(Gauges(r, "lattice_process_resident_memory_bytes", "Coordinator resident memory").Add({})),
      trial_seconds(prometheus::BuildHistogram()
                        .Name("lattice_trial_duration_seconds")
                        .Help("Wall time of successful trial attempts")
                        .Register(r)
                        .Add({}, prometheus::Histogram::BucketBoundaries{0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800})),
      commit_seconds(prometheus::BuildHistogram()
                         .Name("lattice_state_commit_seconds")
                         .Help("Latency of synced state-store commits")
                         .Register(r)
                         .Add({}, prometheus::Histogram::BucketBoundaries{0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1})) {}

std::string RenderMetrics(prometheus::Registry& registry) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry.Collect());
  return out.str();
}

int64_t ResidentBytes() {
  std::ifstream in("/proc/self/statm");
  int64_t size = 0, resident = 0;
  if (!(in >> size >> resident)) return 0;
  return resident * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace lattice
