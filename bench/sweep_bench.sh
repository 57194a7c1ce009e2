#!/usr/bin/env bash
# Sweep benchmark (issue: foundation). In ONE run, on this machine:
#  1. the 27-point digits grid on a 2-worker Lattice cluster (submit -> sweep finished);
#  2. the floor: the same 27 trainings as a plain LibTorch loop in 2 processes;
#  3. the peer: Optuna + PyTorch (../shared/bench/optuna_digits_grid.py --n-jobs 2);
#  4. no-op dispatch throughput with durable (synced) state vs Optuna with SQLite.
# Usage: bench/sweep_bench.sh [build-dir]   (prints a table with ratios)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
source bench/lib.sh
SHARED=${LATTICE_SHARED_DIR:-../shared}
WORK=$(mktemp -d)
trap 'stop_cluster 2>/dev/null || true; rm -rf "$WORK"' EXIT
SPEC=examples/digits-probe-grid.yaml
NOOP_TRIALS=${NOOP_TRIALS:-5000}

echo "== 1. Lattice: 27-point grid, 2 workers"
start_cluster "$BUILD" "$WORK/lattice" 3
t0=$(date +%s.%N)
sweep=$(run_sweep "$SPEC")
t1=$(date +%s.%N)
lattice_wall=$(echo "$t1 - $t0" | bc)
lattice_server=$(json_field "$sweep" "(j['finished_ms']-j['created_ms'])/1000")
lattice_best=$(json_field "$sweep" "j['best']['objective']")
lattice_done=$(json_field "$sweep" "j['counts']['completed']")
echo "   $lattice_done trials, wall ${lattice_wall}s (server ${lattice_server}s), best val_accuracy $lattice_best"

echo "== 4a. Lattice: $NOOP_TRIALS no-op trials, durable state (WAL fsync per batch)"
cat > "$WORK/noop.yaml" <<YAML
name: noop-dispatch
kind: noop
search: {method: random, max_trials: $NOOP_TRIALS, parameters: {sleep_ms: [0]}}
YAML
sweep=$(run_sweep "$WORK/noop.yaml")
noop_s=$(json_field "$sweep" "(j['finished_ms']-j['created_ms'])/1000")
noop_rate=$(json_field "$sweep" "round($NOOP_TRIALS/max((j['finished_ms']-j['created_ms'])/1000,1e-3))")
echo "   $NOOP_TRIALS trials in ${noop_s}s: $noop_rate trials/s"
stop_cluster

echo "== 2. Floor: plain LibTorch loop, 2 processes"
plain_wall=$(run_halves "$BUILD/bench/plain_grid" "$SPEC" "$WORK/p")
echo "   wall ${plain_wall}s  $(cat "$WORK/p0.json") $(cat "$WORK/p1.json")"

echo "== 3. Peer: Optuna + PyTorch, n_jobs 2"
t0=$(date +%s.%N)
optuna=$($PYTHON "$SHARED/bench/optuna_digits_grid.py" --n-jobs 2 | tail -1)
t1=$(date +%s.%N)
optuna_wall=$(echo "$t1 - $t0" | bc)
echo "   wall ${optuna_wall}s  $optuna"

echo "== 4b. Peer: Optuna, SQLite storage, no-op trials"
optuna_noop=$($PYTHON bench/optuna_noop_sqlite.py --trials 500 | tail -1)
optuna_rate=$(json_field "$optuna_noop" "j['trials_per_s']")
echo "   $optuna_noop"

echo
echo "== Summary (same run)"
printf "%-48s %10s\n" "27-point grid, 2 workers: Lattice (s, submit->done)" "$lattice_server"
printf "%-48s %10s\n" "  same, seen by the polling client (s)" "$lattice_wall"
printf "%-48s %10s\n" "plain LibTorch loop, 2 processes (s)" "$plain_wall"
printf "%-48s %10s\n" "Optuna + PyTorch n_jobs=2 (s)" "$optuna_wall"
printf "%-48s %10.3f\n" "Lattice / plain loop (target <= 1.05)" "$(echo "$lattice_server / $plain_wall" | bc -l)"
printf "%-48s %10.3f\n" "Lattice / Optuna (target <= 0.5)" "$(echo "$lattice_server / $optuna_wall" | bc -l)"
printf "%-48s %10s\n" "no-op dispatch, durable: Lattice (trials/s)" "$noop_rate"
printf "%-48s %10s\n" "no-op, Optuna SQLite (trials/s)" "$optuna_rate"
printf "%-48s %10.1f\n" "Lattice / Optuna SQLite (target >= 1600/s)" "$(echo "$noop_rate / $optuna_rate" | bc -l)"
