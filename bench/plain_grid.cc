// The floor for the sweep benchmark: the same trainings a sweep spec expands to, run
// as a plain LibTorch loop (jobs::RunJob back to back, one dataset cache), with no
// scheduler, no MPI, no state store. Run one process per worker slot:
//
//   plain_grid examples/digits-probe-grid.yaml --part 0 --of 2 &
//   plain_grid examples/digits-probe-grid.yaml --part 1 --of 2
//
// Process i runs trials i, i+n, i+2n, ... Prints one JSON line per process.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "jobs/train_job.h"
#include "scheduler/sweep_spec.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: plain_grid SPEC [--part I --of N] [--threads T]\n");
    return 2;
  }
  std::string spec_path = argv[1];
  int part = 0, of = 1, threads = 1;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    int value = std::atoi(argv[i + 1]);
    if (flag == "--part") part = value;
    if (flag == "--of") of = value;
    if (flag == "--threads") threads = value;
  }
  auto start = std::chrono::steady_clock::now();
  auto spec = lattice::scheduler::LoadSweepSpecFile(spec_path);
  if (!spec.ok()) {
    std::fprintf(stderr, "plain_grid: %s\n", spec.status().ToString().c_str());
    return 1;
  }
  lattice::jobs::DatasetCache cache;
  int done = 0;
  double best = -1;
  for (size_t i = static_cast<size_t>(part); i < spec->trial_configs.size(); i += of) {
    lattice::jobs::JobContext ctx;
    ctx.cache = &cache;
    ctx.num_threads = threads;
    auto result = lattice::jobs::RunJob(spec->trial_configs[i], ctx);
    if (!result.ok()) {
      std::fprintf(stderr, "plain_grid: trial %zu: %s\n", i, result.status().ToString().c_str());
      continue;
    }
    ++done;
    auto it = result->metrics.find(spec->metric);
    if (it != result->metrics.end()) best = std::max(best, it->second);
  }
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  nlohmann::json out = {{"part", part}, {"of", of}, {"trials", done}, {"seconds", seconds},
                        {"best_" + spec->metric, best}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
