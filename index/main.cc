// `lattice-index`: the read-only index server on its own (index/server.h), for machines
// that serve searches and run nothing else. Links no MPI, no LibTorch, no scheduler:
// `lattice-index --data-dir DIR --port 7071` is `lattice serve-index --data-dir DIR ...`.
#include <atomic>
#include <csignal>

#include <CLI/CLI.hpp>

#include "index/server.h"

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop = true; }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "lattice-index: serve the vector indexes of a Lattice data directory read-only\n"
      "(POST /v1/indexes/{name}/search, GET /v1/indexes[/{name}], /healthz, /metrics).\n"
      "New versions a coordinator publishes are picked up on their own."};
  lattice::IndexServerOptions options;
  lattice::AddIndexServerFlags(&app, &options);
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  return lattice::RunIndexServer(options, &g_stop);
}
