// Prometheus metric families of the coordinator, registered on an injected registry.
//
// Label values come from fixed sets (trial state, worker state, job kind); never ids.
// Thread-safety: prometheus-cpp metrics are safe to update from any thread.
#pragma once

#include <memory>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace lattice {

struct SchedulerMetrics {
  explicit SchedulerMetrics(prometheus::Registry& registry);

  // lattice_trials_finished_total{state="completed|failed|cancelled"}
  prometheus::Counter& trials_completed;
  prometheus::Counter& trials_failed;
  prometheus::Counter& trials_cancelled;
  prometheus::Counter& trials_retried;         // lattice_trials_retried_total
  prometheus::Counter& trials_dispatched;      // lattice_trials_dispatched_total
  prometheus::Counter& epochs_reported;        // lattice_epochs_total
  prometheus::Gauge& queue_depth;              // lattice_queue_depth (queued trials)
  prometheus::Gauge& trials_running;           // lattice_trials_running
  prometheus::Gauge& workers_idle;             // lattice_workers{state="idle"}
  prometheus::Gauge& workers_busy;             // lattice_workers{state="busy"}
  prometheus::Gauge& workers_lost;             // lattice_workers{state="lost"}
  prometheus::Gauge& worker_rss_bytes_max;     // lattice_worker_rss_bytes_max
  prometheus::Gauge& worker_vram_bytes_max;    // lattice_worker_vram_bytes_max (GPU memory)
  // lattice_trial_peak_device_memory_bytes: the allocator's peak of the last trial that
  // finished on a GPU (0 until one did).
  prometheus::Gauge& trial_peak_device_memory_bytes;
  prometheus::Gauge& coordinator_rss_bytes;    // lattice_process_resident_memory_bytes
  prometheus::Histogram& trial_seconds;        // lattice_trial_duration_seconds
  prometheus::Histogram& commit_seconds;       // lattice_state_commit_seconds (synced batch)
};

// Prometheus text exposition format (version 0.0.4) of everything in `registry`.
std::string RenderMetrics(prometheus::Registry& registry);

// Resident set size of this process in bytes (from /proc/self/statm); 0 if unknown.
int64_t ResidentBytes();

}  // namespace lattice
