// The worker process (MPI ranks 1..N): runs one task at a time for the coordinator.
//
// Protocol (see control/messages.h, control/channel.h):
//   1. Send Register to rank 0 (host, threads, device).
//   2. Loop until Shutdown, a stop signal, or loss of the coordinator:
//      - Checkpoint -> keep it for the embed jobs that use it (sent before their Assign).
//      - Assign  -> queue the job for the task thread, which runs one at a time in order
//                   (the coordinator assigns ahead only for very short tasks).
//      - Cancel  -> set the running task's cancel flag, or drop it from the queue; either
//                   way it is answered with a Cancelled result.
//      - forward Progress (per epoch) and the final Result from the task thread (after
//        the attempt's Vectors or Checkpoint, when it has any).
//      - send a Heartbeat every `heartbeat_interval_ms`.
//
// Threading: the calling thread owns MPI (ControlChannel). The task thread runs
// jobs::RunJob and talks to the MPI thread only through a mutex-protected outbox.
// The worker's DatasetCache lives as long as RunWorker, so trials share loaded datasets.
#pragma once

#include <atomic>

#include "control/channel.h"

namespace lattice {

struct WorkerOptions {
  // Intra-op threads (LibTorch / OpenMP) a task may use. Default: 1.
  int num_threads = 1;
  // Interval between heartbeats, milliseconds. Default: 1000.
  int heartbeat_interval_ms = 1000;
  // Set by a signal handler: stop after cancelling the running task. Not owned.
  const std::atomic<bool>* stop = nullptr;
};

// Runs the worker loop on `channel` (rank != 0). Returns the process exit code.
int RunWorker(ControlChannel& channel, const WorkerOptions& options);

}  // namespace lattice
