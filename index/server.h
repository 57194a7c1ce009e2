// `lattice serve-index`: a standalone, read-only server of the index query routes
// (index/routes.h) plus GET /healthz and GET /metrics, over the catalog that a
// coordinator publishes to (<data-dir>/indexes). Run several next to one coordinator to
// scale searches out; each picks up newly published versions on its own (IndexCatalog
// reloads when CURRENT changes). Needs no MPI and no token (it has no mutating route).
//
// On start it writes <data-dir>/index-server-<port>.json ({"address", "port", "pid"})
// and prints "lattice serve-index: listening on http://ADDRESS:PORT ..." to stderr; the
// file is removed on a clean stop.
//
// Threading: the HTTP server's `threads` io threads run every request; the caller's
// thread only waits for `stop`.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

#include "index/routes.h"

namespace lattice {

struct IndexServerOptions {
  // Data directory whose indexes/ subdirectory is served. Default: ./lattice-data.
  std::string data_dir = "./lattice-data";
  // Address to bind. Default: 127.0.0.1 (loopback only).
  std::string address = "127.0.0.1";
  // TCP port; 0 picks a free one (see the info file). Default: 7071.
  uint16_t port = 7071;
  // HTTP io threads, each runs one request at a time. Default: 2.
  int threads = 2;
  // Limits of the search route (registry is ignored: the server has its own). Default: {}.
  IndexApiOptions api;
};

// Adds --data-dir, --address, --port and --threads to `command` (`lattice serve-index`
// and the standalone `lattice-index` binary share them).
void AddIndexServerFlags(CLI::App* command, IndexServerOptions* options);

// Serves until *stop becomes true (polled every 100 ms). Returns the process exit code:
// 0 after a clean stop, 1 when the catalog cannot be opened or the address not bound
// (the error is printed to stderr).
int RunIndexServer(const IndexServerOptions& options, const std::atomic<bool>* stop);

}  // namespace lattice
