// The `lattice` command: `lattice cluster` runs a cluster under mpirun; `lattice
// serve-index` a read-only index server (also its own MPI-free binary, index/main.cc);
// every other subcommand is a client of the coordinator's HTTP API (see cli/commands.h,
// cli/index_commands.h, cli/checkpoint_commands.h, cli/top_command.h).
#include <atomic>
#include <csignal>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <CLI/CLI.hpp>
#include <mpi.h>

#include "cli/checkpoint_commands.h"
#include "cli/commands.h"
#include "cli/dataset_commands.h"
#include "cli/export_command.h"
#include "cli/index_commands.h"
#include "cli/report_command.h"
#include "cli/top_command.h"
#include "control/mpi_channel.h"
#include "index/server.h"
#include "jobs/data_roots.h"
#include "jobs/torchscript_export.h"
#include "scheduler/cluster.h"
#include "scheduler/sweep_spec.h"
#include "worker/worker.h"

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop = true; }

// `lattice cluster`: SIGTERM, SIGINT and SIGUSR1 count here. The first drains the cluster
// (running trials checkpoint and are queued again; docs/ARCHITECTURE.md, "Stopping and
// Slurm requeue"), a second stops at once. Slurm sends SIGTERM to every task of a step
// before a requeue or at the time limit; `--signal=USR1@<secs>` sends SIGUSR1 earlier; Open
// MPI's mpirun forwards SIGUSR1 to every rank.
std::atomic<int> g_stop_signals{0};
static_assert(std::atomic<int>::is_always_lock_free);

void OnStopSignal(int) { g_stop_signals.fetch_add(1); }

int RunCluster(const lattice::ClusterOptions& options) {
  // Every rank reads spec files; each applies the same roots (same flags) before MPI.
  const lattice::Status roots = lattice::jobs::SetDataRoots(options.data_roots, {options.data_dir});
  if (!roots.ok()) {
    std::fprintf(stderr, "lattice cluster: error: --data-roots: %s\n", roots.message().c_str());
    return 2;
  }
  int provided = 0;
  MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  for (int sig : {SIGINT, SIGTERM, SIGUSR1}) std::signal(sig, OnStopSignal);
  // Gangs make their sub-communicators from this duplicate (collective: every rank, now),
  // not from the control channel's MPI_COMM_WORLD (lattice::WorkerOptions::gang_parent).
  MPI_Comm gang_parent = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_WORLD, &gang_parent);
  int rc = 0;
  {
    lattice::MpiControlChannel channel(MPI_COMM_WORLD);
    if (channel.rank() == lattice::kCoordinatorRank) {
      if (channel.size() < 2) {
        std::fprintf(stderr, "lattice cluster: warning: no workers (run under `mpirun -np 3 ...`: "
                             "rank 0 coordinates, ranks 1..N run trials)\n");
      }
      const char* recovery = std::getenv("OMPI_MCA_orte_enable_recovery");
      if (channel.size() >= 2 && (recovery == nullptr || std::string(recovery) != "1")) {
        std::fprintf(stderr, "lattice cluster: warning: mpirun runs without --enable-recovery: "
                             "a worker rank that dies will end the whole cluster\n");
      }
      rc = lattice::RunCoordinatorProcess(options, channel, &g_stop_signals);
    } else {
      lattice::WorkerOptions wopts;
      wopts.num_threads = options.worker_threads;
      wopts.isolate_tasks = options.isolate_tasks;
      wopts.report_usage = options.metrics;
      wopts.coordinator_timeout_ms = options.worker_timeout_ms;
      wopts.stop_signals = &g_stop_signals;
      wopts.drain_grace_ms = options.drain_grace_ms;
      wopts.gang_parent = gang_parent;
      rc = lattice::RunWorker(channel, wopts);
    }
    // Shutdown and last results still in flight; a dead rank never takes its share.
    channel.Flush(std::chrono::seconds(5));
  }
  MPI_Comm_free(&gang_parent);
  MPI_Finalize();
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Lattice: a cluster job scheduler for sweeps of LibTorch trainings.\n"
      "Start a cluster with `mpirun -np 3 lattice cluster` (rank 0 coordinates, the other\n"
      "ranks are workers), then submit sweeps to it with `lattice submit spec.yaml --wait`."};
  app.require_subcommand(1);

  lattice::ClusterOptions cluster_options;
  CLI::App* cluster = app.add_subcommand(
      "cluster", "Run a cluster (under mpirun): rank 0 is the coordinator, ranks 1..N workers");
  cluster->add_option("--data-dir", cluster_options.data_dir,
                      "State directory (RocksDB, token, coordinator.json)")
      ->capture_default_str();
  cluster->add_option("--address", cluster_options.http_address, "HTTP API address")
      ->capture_default_str();
  cluster->add_option("--port", cluster_options.http_port, "HTTP API port (0 = any free port)")
      ->capture_default_str();
  cluster->add_option("--http-threads", cluster_options.http_threads, "HTTP server threads")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cluster->add_option("--task-isolation", cluster_options.isolate_tasks,
                      "Run each worker's tasks in a child process that the worker restarts when "
                      "a task crashes (true), or in the worker rank itself (false)")
      ->capture_default_str();
  // Hidden: only bench/metrics_bench.sh turns metric updates off, to measure their cost.
  cluster->add_option("--metrics", cluster_options.metrics, "Update metrics (false: benchmarks only)")
      ->group("");
  cluster->add_option("--max-connections", cluster_options.http_max_connections,
                      "Most HTTP connections open at once; beyond it /healthz is still served "
                      "and other requests get 503")
      ->check(CLI::Range(16, 1000000))
      ->capture_default_str();
  cluster->add_option("--allowed-hosts", cluster_options.allowed_hosts,
                      "Host header names accepted besides the bound address, loopback, "
                      "localhost and this machine's name (DNS-rebinding protection; * = any)")
      ->delimiter(',');
  cluster->add_option("--data-roots", cluster_options.data_roots,
                      "Directories that dataset and corpus files of specs must lie in "
                      "(default: the working directory; the data directory is never readable)")
      ->delimiter(',');
  cluster->add_option("--worker-threads", cluster_options.worker_threads,
                      "Intra-op threads per worker task (give each rank its share of the cores)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cluster->add_option("--min-free-bytes", cluster_options.min_free_bytes,
                      "Free bytes to keep on the data directory's disk: below it submit, cancel "
                      "and resume get HTTP 507, no trial starts and /healthz says degraded, "
                      "until space is freed (0: only a failing write degrades)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 50))
      ->capture_default_str();
  cluster->add_option("--worker-timeout-ms", cluster_options.worker_timeout_ms,
                      "Silence after which a worker is declared lost and its trial re-queued")
      ->check(CLI::Range(1000, 3600000))
      ->capture_default_str();
  cluster->add_option("--drain-grace-ms", cluster_options.drain_grace_ms,
                      "After SIGTERM/SIGINT/SIGUSR1: how long running trials get to checkpoint "
                      "and report before the cluster stops anyway (keep it below Slurm's "
                      "KillWait); a second signal stops at once")
      ->check(CLI::Range(0, 3600000))
      ->capture_default_str();

  lattice::IndexServerOptions index_server_options;
  CLI::App* serve_index = app.add_subcommand(
      "serve-index", "Serve the indexes of a data directory read-only (no MPI): search routes, "
                     "/healthz, /metrics");
  lattice::AddIndexServerFlags(serve_index, &index_server_options);

  int exit_code = 0;  // set by the client subcommand that runs during parsing
  lattice::cli::RegisterClientCommands(app, &exit_code, lattice::scheduler::ResolveSpecPaths);
  lattice::cli::RegisterIndexCommands(app, &exit_code);
  lattice::cli::RegisterCheckpointCommands(app, &exit_code);
  lattice::cli::RegisterDatasetCommands(app, &exit_code);
  lattice::cli::RegisterExportCommand(app, &exit_code, lattice::jobs::ExportTorchScript);
  lattice::cli::RegisterReportCommand(app, &exit_code);
  lattice::cli::RegisterTopCommand(app, &exit_code);

  if (const std::string unknown = lattice::cli::UnknownSubcommandError(app, argc, argv);
      !unknown.empty()) {
    std::fprintf(stderr, "error: %s\nRun with --help for more information.\n", unknown.c_str());
    return 2;
  }
  CLI11_PARSE(app, argc, argv);
  if (cluster->parsed()) return RunCluster(cluster_options);
  if (serve_index->parsed()) {
    std::signal(SIGINT, OnSignal);
    std::signal(SIGTERM, OnSignal);
    return lattice::RunIndexServer(index_server_options, &g_stop);
  }
  return exit_code;
}
