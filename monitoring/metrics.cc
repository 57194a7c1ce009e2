#include "monitoring/metrics.h"

#include <fcntl.h>
#include <sys/resource.h>
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
prometheus::Histogram& Histogram(prometheus::Registry& r, const std::string& name,
                                 const std::string& help,
                                 prometheus::Histogram::BucketBoundaries buckets) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r).Add({}, std::move(buckets));
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
      sweeps_active(Gauges(r, "lattice_sweeps_active",
                           "Sweeps running (trials left, or an index being built)").Add({})),
      workers_idle(Gauges(r, "lattice_workers", kWorkersHelp).Add({{"state", "idle"}})),
      workers_busy(Gauges(r, "lattice_workers", kWorkersHelp).Add({{"state", "busy"}})),
      workers_lost(Gauges(r, "lattice_workers", kWorkersHelp).Add({{"state", "lost"}})),
      workers_starting(Gauges(r, "lattice_workers", kWorkersHelp).Add({{"state", "starting"}})),
      worker_rss_bytes_max(Gauges(r, "lattice_worker_rss_bytes_max", "Largest worker resident memory").Add({})),
      worker_vram_bytes_max(Gauges(r, "lattice_worker_vram_bytes_max", "Largest worker GPU memory in use").Add({})),
      trial_peak_device_memory_bytes(
          Gauges(r, "lattice_trial_peak_device_memory_bytes",
                 "Peak GPU memory the allocator held during the last trial that ran on a GPU")
              .Add({})),
      trial_peak_rss_bytes(Gauges(r, "lattice_trial_peak_rss_bytes",
                                  "Peak resident memory of the task process during the last "
                                  "trial that completed")
                               .Add({})),
      coordinator_rss_bytes(Gauges(r, "lattice_process_resident_memory_bytes", "Coordinator resident memory").Add({})),
      trial_seconds(Histogram(r, "lattice_trial_duration_seconds", "Wall time of successful trial attempts",
                              {0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800})),
      commit_seconds(Histogram(r, "lattice_state_commit_seconds", "Latency of synced state-store commits",
                               {0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1})),
      checkpoint_bytes(Counters(r, "lattice_checkpoint_written_bytes_total",
                                "Checkpoint bytes (step and final) written into the state store")
                           .Add({})),
      checkpoint_write_seconds(Histogram(r, "lattice_checkpoint_write_seconds",
                                         "Latency of the synced state-store commits that carried "
                                         "checkpoint bytes",
                                         {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10})),
      index_build_seconds(Histogram(r, "lattice_index_build_seconds",
                                    "Time to build an embed sweep's vector index (read the "
                                    "vectors, add them to the index)",
                                    {0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 7200})),
      registry_(r) {}

void SchedulerMetrics::EnsureWorkers(int ranks) {
  if (ranks <= static_cast<int>(workers_.size())) return;
  auto& up = Gauges(registry_, "lattice_worker_up",
                    "1 while the worker is registered and not lost (idle or busy), else 0");
  auto& rss = Gauges(registry_, "lattice_worker_rss_bytes",
                     "Resident memory of the worker's task process (its last heartbeat)");
  auto& vram = Gauges(registry_, "lattice_worker_vram_bytes",
                      "GPU memory in use on the worker's device (0 on a CPU worker)");
  auto& vram_total = Gauges(registry_, "lattice_worker_vram_total_bytes",
                            "GPU memory of the worker's device (0 on a CPU worker)");
  auto& samples = Counters(registry_, "lattice_samples_total",
                           "Training samples through an optimizer step, by job kind and worker");
  auto& items = Counters(registry_, "lattice_items_total",
                         "Corpus rows embedded, by job kind and worker");
  const size_t first = workers_.empty() ? 1 : workers_.size();
  workers_.resize(static_cast<size_t>(ranks));
  for (size_t r = first; r < workers_.size(); ++r) {
    const std::string rank = std::to_string(r);
    Worker& w = workers_[r];
    w.up = &up.Add({{"rank", rank}});
    w.rss_bytes = &rss.Add({{"rank", rank}});
    w.vram_bytes = &vram.Add({{"rank", rank}});
    w.vram_total_bytes = &vram_total.Add({{"rank", rank}});
    w.train_samples = &samples.Add({{"kind", "train"}, {"rank", rank}});
    w.distill_samples = &samples.Add({{"kind", "distill"}, {"rank", rank}});
    w.embed_items = &items.Add({{"kind", "embed"}, {"rank", rank}});
  }
}

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

void ResetPeakResidentBytes() {
  // The file stays open (one pwrite per task). /proc/self resolves when it is opened, so a
  // forked child opens its own. -1 when not allowed: the peak stays the lifetime peak.
  // Called from one thread at a time (a worker's task thread).
  static pid_t opened_by = -1;
  static int fd = -1;
  if (opened_by != getpid()) {
    if (fd >= 0) close(fd);
    fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    opened_by = getpid();
  }
  if (fd >= 0) (void)!pwrite(fd, "5", 1, 0);
}

int64_t PeakResidentBytes() {
  struct rusage usage {};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // kB
}

}  // namespace lattice
