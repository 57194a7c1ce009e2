// Prometheus metric families of the coordinator, registered on an injected registry.
// Every family, its labels and where its values come from: docs/ARCHITECTURE.md, "Metrics".
//
// Label values come from fixed sets (trial state, worker state, job kind, worker rank);
// never trial or sweep ids, so the number of series is fixed by the cluster's size.
// Per-rank series are created up front (EnsureWorkers) so that every panel has data (a
// CPU worker reports VRAM 0, not nothing).
// Thread-safety: prometheus-cpp metrics are safe to update from any thread; EnsureWorkers
// is called once, before any update.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "common/ids.h"

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
  prometheus::Gauge& sweeps_active;            // lattice_sweeps_active (running sweeps)
  prometheus::Gauge& workers_idle;             // lattice_workers{state="idle"}
  prometheus::Gauge& workers_busy;             // lattice_workers{state="busy"}
  prometheus::Gauge& workers_lost;             // lattice_workers{state="lost"}
  prometheus::Gauge& workers_starting;         // lattice_workers{state="starting"}
  prometheus::Gauge& worker_rss_bytes_max;     // lattice_worker_rss_bytes_max
  prometheus::Gauge& worker_vram_bytes_max;    // lattice_worker_vram_bytes_max (GPU memory)
  // lattice_trial_peak_device_memory_bytes: the allocator's peak of the last trial that
  // finished on a GPU (0 until one did).
  prometheus::Gauge& trial_peak_device_memory_bytes;
  // lattice_trial_peak_rss_bytes: the task process's peak resident memory during the last
  // trial that completed (its result's peak_rss_bytes).
  prometheus::Gauge& trial_peak_rss_bytes;
  prometheus::Gauge& coordinator_rss_bytes;    // lattice_process_resident_memory_bytes
  prometheus::Histogram& trial_seconds;        // lattice_trial_duration_seconds
  prometheus::Histogram& commit_seconds;       // lattice_state_commit_seconds (synced batch)
  // lattice_checkpoint_written_bytes_total: checkpoint bytes (step and final) put into the
  // state store, counted when the commit that carried them succeeded.
  prometheus::Counter& checkpoint_bytes;
  // lattice_checkpoint_write_seconds: the synced state-store commits that carried
  // checkpoint bytes (one observation per commit).
  prometheus::Histogram& checkpoint_write_seconds;
  // lattice_index_build_seconds: an embed sweep's index build (reading the vector blocks and
  // adding them to the index; the index's build_seconds).
  prometheus::Histogram& index_build_seconds;

  // The series of one worker rank.
  struct Worker {
    prometheus::Gauge* up = nullptr;                // lattice_worker_up{rank}: idle or busy
    prometheus::Gauge* rss_bytes = nullptr;         // lattice_worker_rss_bytes{rank}
    prometheus::Gauge* vram_bytes = nullptr;        // lattice_worker_vram_bytes{rank}
    prometheus::Gauge* vram_total_bytes = nullptr;  // lattice_worker_vram_total_bytes{rank}
    // lattice_samples_total{kind="train|distill",rank}: training samples through a step.
    prometheus::Counter* train_samples = nullptr;
    prometheus::Counter* distill_samples = nullptr;
    // lattice_items_total{kind="embed",rank}: corpus rows embedded.
    prometheus::Counter* embed_items = nullptr;
  };
  // Creates the series of ranks 1..ranks-1 (rank 0 is the coordinator). Once.
  void EnsureWorkers(int ranks);
  // The series of `rank`; null when it has none.
  Worker* worker(WorkerRank rank) {
    const size_t r = static_cast<size_t>(rank.value);
    return rank.value > 0 && r < workers_.size() ? &workers_[r] : nullptr;
  }

 private:
  prometheus::Registry& registry_;
  std::vector<Worker> workers_;  // index = rank; 0 unused
};

// Prometheus text exposition format (version 0.0.4) of everything in `registry`.
std::string RenderMetrics(prometheus::Registry& registry);

// Resident set size of this process in bytes (from /proc/self/statm); 0 if unknown.
int64_t ResidentBytes();

// The peak resident memory of this process since the last ResetPeakResidentBytes (or its
// start), bytes: the kernel's high-water mark (getrusage ru_maxrss). The reset writes "5"
// to /proc/self/clear_refs (Linux >= 4.0); where that is not allowed the peak is the
// process's lifetime peak. About 4 us together: one syscall each (the file stays open).
void ResetPeakResidentBytes();
int64_t PeakResidentBytes();

}  // namespace lattice
