// Writes finished sweeps straight into a StateStore, as a coordinator that ran them would
// have left its data directory: the read-scale benchmark's many stored trials
// (bench/read_scale_bench.sh) without running them.
//
//   state_fill <data-dir> <sweeps> <trials-per-sweep> [--no-counts]
//
// <data-dir>/state gets sweeps s1..sN (kind train, completed), each with its trials (a
// digits-probe-grid trial config, params, final metrics, an objective) and, unless
// --no-counts (a data directory of the version before counts were stored), its SweepCounts.
// Prints {"sweeps", "trials", "seconds"}.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "store/state_store.h"

namespace {

using nlohmann::json;

json TrialConfig(uint32_t index) {
  return {{"kind", "train"},
          {"seed", 42},
          {"dataset",
           {{"format", "csv"},
            {"path", "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz"},
            {"label_column", -1},
            {"header", false},
            {"standardize", true},
            {"split", {{"validation_fraction", 0.2}, {"seed", 42}}}}},
          {"model",
           {{"type", "mlp"}, {"hidden", {256}}, {"batchnorm", true}, {"dropout", 0.1 + (index % 3) * 0.1},
            {"activation", "relu"}}},
          {"train",
           {{"epochs", 30}, {"batch_size", 32}, {"optimizer", "adamw"},
            {"lr", 1e-4 * (1 + index % 10)}, {"weight_decay", 1e-4 * (1 + index % 7)}}}};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s <data-dir> <sweeps> <trials-per-sweep> [--no-counts]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const int sweeps = std::atoi(argv[2]);
  const int per_sweep = std::atoi(argv[3]);
  const bool counts = !(argc > 4 && std::string(argv[4]) == "--no-counts");
  auto store = lattice::StateStore::Open({dir + "/state", /*sync_writes=*/false});
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    return 1;
  }
  const auto start = std::chrono::steady_clock::now();
  const int64_t now = lattice::NowMillis();
  for (int s = 0; s < sweeps; ++s) {
    auto id = (*store)->AllocateSweepId();
    if (!id.ok()) return 1;
    lattice::SweepRecord sweep;
    sweep.id = *id;
    sweep.name = "filled-" + std::to_string(s % 50);
    sweep.spec = {{"name", sweep.name}, {"kind", "train"}};
    sweep.state = lattice::SweepState::kCompleted;
    sweep.metric = "val_accuracy";
    sweep.num_trials = static_cast<uint32_t>(per_sweep);
    sweep.created_ms = now - 3600000;
    sweep.finished_ms = now;
    lattice::StateWriteBatch batch;
    batch.PutSweep(sweep);
    lattice::SweepCounts tally;
    tally.sweep = sweep.id;
    for (int i = 0; i < per_sweep; ++i) {
      lattice::TrialRecord t;
      t.id = lattice::TrialId{sweep.id, static_cast<uint32_t>(i)};
      t.config = TrialConfig(static_cast<uint32_t>(i));
      t.params = {{"lr", t.config["train"]["lr"]},
                  {"weight_decay", t.config["train"]["weight_decay"]},
                  {"dropout", t.config["model"]["dropout"]}};
      t.state = lattice::TrialState::kCompleted;
      t.attempts = 1;
      t.worker = lattice::WorkerRank{1 + i % 2};
      const double accuracy = 0.9 + (i % 97) / 1000.0;
      t.metrics = {{"val_accuracy", accuracy}, {"val_loss", 1 - accuracy}, {"train_loss", 0.05}};
      t.objective = accuracy;
      t.epochs_done = 30;
      t.started_ms = now - 1000;
      t.finished_ms = now;
      tally.Move(std::nullopt, t.state);
      tally.Consider(t, sweep.maximize);
      batch.PutTrial(t);
      if (batch.count() >= 5000) {
        lattice::Status st = (*store)->Commit(batch);
        if (!st.ok()) {
          std::fprintf(stderr, "%s\n", st.ToString().c_str());
          return 1;
        }
      }
    }
    if (counts) batch.PutSweepCounts(tally);
    lattice::Status st = (*store)->Commit(batch);
    if (!st.ok()) {
      std::fprintf(stderr, "%s\n", st.ToString().c_str());
      return 1;
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%s\n", json{{"sweeps", sweeps},
                           {"trials", static_cast<int64_t>(sweeps) * per_sweep},
                           {"seconds", seconds}}
                          .dump()
                          .c_str());
  return 0;
}
