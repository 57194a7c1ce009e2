// The worker process (MPI ranks 1..N): runs one task at a time for the coordinator.
//
// Protocol (see control/messages.h, control/channel.h):
//   1. Send Register to rank 0 (host, threads, device, pid).
//   2. Loop until Shutdown, a second stop signal (the first drains, below), or loss of the
//      coordinator (nothing heard from it, not even its keep-alive Heartbeat, for
//      `coordinator_timeout_ms`):
//      - Checkpoint -> keep it for the embed jobs that use it (sent before their Assign).
//      - Assign  -> queue the job for the task thread, which runs one at a time in order
//                   (the coordinator assigns ahead only for very short tasks).
//      - Cancel  -> set the running task's cancel flag, or drop it from the queue; either
//                   way it is answered with a Cancelled result.
//      - Drain   -> preempt the running task (it checkpoints first if its job can) and
//                   answer it, the queued ones and every later Assign with a Cancelled
//                   Result marked preempted; a stop signal to the worker does the same.
//      - forward Progress (per epoch) and the final Result from the task thread (after
//        the attempt's Vectors or Checkpoint, when it has any).
//      - send a Heartbeat every `heartbeat_interval_ms`.
//
// Multi-worker trials (AssignMsg::gang): every member runs the task; its collectives go
// from the task process to the rank through shared memory (comm/relay.h), and the rank runs
// them on a sub-communicator of the gang's ranks while it goes on relaying. Only member 0
// sends Progress and checkpoints; every member sends its Result. They need task isolation.
//
// Task isolation (`isolate_tasks`, the default): the rank that owns MPI does not run tasks
// itself. It forks a long-lived task process (RunTaskLoop over a socketpair,
// control/socket_channel.h) and relays messages between it and the coordinator. When the
// task process dies (a segfault or abort inside LibTorch or a TorchScript model, the
// kernel's OOM killer), the rank answers its running task with a failed Result (a
// retryable attempt failure naming the signal), its queued ones with Cancelled (they run
// again elsewhere), starts a new task process, hands it again the encoder / teacher
// checkpoints it was given, and reports the restart in its heartbeats. The task process
// keeps its dataset cache across tasks; it dies with the rank (PR_SET_PDEATHSIG). It ignores
// stop signals (Slurm signals every process of a step at once): the rank drains it with a
// Drain message, so the running task can write its checkpoint. Why this
// design (and `mpirun --enable-recovery` for a rank that dies itself): docs/ARCHITECTURE.md.
//
// Threading: the calling thread owns the channel (MPI_THREAD_FUNNELED). The task thread
// runs jobs::RunJob and talks to the loop only through a mutex-protected outbox.
#pragma once

#include <mpi.h>

#include <atomic>

#include "control/channel.h"

namespace lattice::comm {
class RelayBuffer;  // comm/relay.h
}  // namespace lattice::comm

namespace lattice {

struct WorkerOptions {
  // Intra-op threads (LibTorch / OpenMP) a task may use. Default: 1.
  int num_threads = 1;
  // Interval between heartbeats, milliseconds. Default: 1000.
  int heartbeat_interval_ms = 1000;
  // Run tasks in a child process restarted when it dies (above). Default: true.
  bool isolate_tasks = true;
  // Exit (code 1) after this long without any message from the coordinator; 0: never.
  // Default: 60000.
  int coordinator_timeout_ms = 60000;
  // Usage reports: each task's peak resident memory (result metric peak_rss_bytes) and
  // the rows it processed (Progress / Result `processed`, the throughput counters).
  // false only to measure their cost (bench/metrics_bench.sh). Default: true.
  bool report_usage = true;
  // Set by a signal handler: stop after cancelling the running task. Not owned.
  const std::atomic<bool>* stop = nullptr;
  // Stop signals counted by the process's signal handler (SIGTERM, SIGINT, SIGUSR1). Not
  // owned; null: none. The first drains the worker — the running task is preempted (a
  // train / distill task writes a step checkpoint first; its Result is marked preempted),
  // later Assigns are answered the same way without running — and the worker then waits
  // for the coordinator's Shutdown at most drain_grace_ms + 5 s before it exits (code 0);
  // a second stops it at once (code 0). worker/stop_signal_watch.h.
  const std::atomic<int>* stop_signals = nullptr;
  // The coordinator's drain grace period (ClusterOptions::drain_grace_ms). Default: 20000.
  int drain_grace_ms = 20000;
  // Shared memory to the rank for a gang's collectives (comm/relay.h): set by the rank
  // (RunWorker, isolated) before it forks the task process. Not owned; null: multi-worker
  // trials fail (they need task isolation).
  comm::RelayBuffer* relay = nullptr;
  // The communicator gangs' sub-communicators are made from (MPI_Comm_create_group): a
  // duplicate of MPI_COMM_WORLD made by every rank at start (cli/main.cc), never the
  // control channel's, whose MPI_Iprobe(MPI_ANY_TAG) would take the group creation's own
  // messages for control messages. MPI_COMM_NULL: no gangs on this worker.
  MPI_Comm gang_parent = MPI_COMM_NULL;
};

// Runs the worker on `channel` (rank != 0): isolated or in-process as options say.
// Returns the process exit code.
int RunWorker(ControlChannel& channel, const WorkerOptions& options);

// The loop that runs tasks (steps 1-2 above) in this process: the task process of an
// isolated worker, or the rank itself without isolation.
int RunTaskLoop(ControlChannel& channel, const WorkerOptions& options);

}  // namespace lattice
