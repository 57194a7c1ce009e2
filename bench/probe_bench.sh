#!/usr/bin/env bash
# Probe benchmark (issue 12). In ONE run, on this machine, the 27-point grid of
# examples/fashion-mnist-probe-recipe.yaml with its full recipe (mixup until 0.7,
# inverse-frequency class weights with a boost, label smoothing, ReduceLROnPlateau, clipping,
# early stopping with the best epoch's weights, AdamW, batch 32, train_per_class 150, a test
# part), each side with 2 trainings at a time on 1 thread each:
#  1. Lattice: a 3-rank cluster (coordinator + 2 workers), submit -> sweep finished;
#  2. the floor: the same recipe as a hand-written LibTorch loop (bench/probe_plain.cc),
#     2 processes;
#  2b. Lattice's own trainer without the scheduler (bench/plain_grid, jobs::RunJob back to
#     back), 2 processes: what the cluster adds;
#  3. the peer: the same recipe in Optuna + PyTorch (bench/optuna_probe_grid.py, n_jobs 2).
# EPOCHS (default 60) replaces train.epochs (500) so that a run takes minutes on 2 cores;
# the mixup share and the patiences stay as in the spec. Each side prints the epochs it ran
# (early stopping may end trials at different epochs), so the summary also compares seconds
# per epoch.
# Usage: [EPOCHS=N] bench/probe_bench.sh [build-dir]   (prints a table with ratios)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
EPOCHS=${EPOCHS:-60}
source bench/lib.sh
WORK=$(mktemp -d)
trap 'stop_cluster 2>/dev/null || true; rm -rf "$WORK"' EXIT
SPEC=$WORK/probe.yaml
sed "s/^  epochs: 500 *\$/  epochs: $EPOCHS/" examples/fashion-mnist-probe-recipe.yaml > "$SPEC"
grep -q "^  epochs: $EPOCHS\$" "$SPEC" || { echo "could not set train.epochs in $SPEC"; exit 1; }

echo "== 1. Lattice: 27-point probe grid, 3 ranks (2 workers), $EPOCHS epochs at most"
start_cluster "$BUILD" "$WORK/lattice" 3
sweep=$(run_sweep "$SPEC")
id=$(json_field "$sweep" "j['id']")
lattice_s=$(json_field "$sweep" "(j['finished_ms']-j['created_ms'])/1000")
lattice_done=$(json_field "$sweep" "j['counts']['completed']")
lattice_best=$(json_field "$sweep" "j['best']['objective']")
trials=$(api GET "/v1/sweeps/$id/trials?limit=100")
lattice_epochs=$(json_field "$trials" "sum(t['epochs_done'] for t in j['trials'])")
stop_cluster
echo "   $lattice_done trials, $lattice_epochs epochs, ${lattice_s}s (server), best selected_val_f1 $lattice_best"

# One BLAS / OpenMP thread per process, as a worker limits its task (jobs/internal/threads.cc):
# OpenBLAS reads its thread count from the environment when it loads.
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

echo "== 2. Floor: plain LibTorch loop, 2 processes"
plain_s=$(run_halves "$BUILD/bench/probe_plain" "$SPEC" "$WORK/p")
plain_epochs=$(( $(json_field "$(cat "$WORK/p0.json")" "j['epochs']") + \
                 $(json_field "$(cat "$WORK/p1.json")" "j['epochs']") ))
echo "   $plain_epochs epochs, ${plain_s}s  $(cat "$WORK/p0.json") $(cat "$WORK/p1.json")"

echo "== 2b. Lattice's trainer without the scheduler (bench/plain_grid: jobs::RunJob), 2 processes"
trainer_s=$(run_halves "$BUILD/bench/plain_grid" "$SPEC" "$WORK/g")
echo "   ${trainer_s}s  $(cat "$WORK/g0.json") $(cat "$WORK/g1.json")"

echo "== 3. Peer: Optuna + PyTorch, n_jobs 2"
t0=$(date +%s.%N)
optuna=$($PYTHON bench/optuna_probe_grid.py "$SPEC" --n-jobs 2 | tail -1)
t1=$(date +%s.%N)
optuna_s=$(echo "$t1 - $t0" | bc)
optuna_epochs=$(json_field "$optuna" "j['epochs']")
echo "   ${optuna_s}s  $optuna"

per_epoch() { echo "$1 / $2" | bc -l; }
echo
echo "== Summary (same run, train.epochs $EPOCHS)"
printf "%-52s %10s %8s\n" "" "seconds" "epochs"
printf "%-52s %10.2f %8s\n" "Lattice, 3 ranks (submit -> done, server clock)" "$lattice_s" "$lattice_epochs"
printf "%-52s %10.2f %8s\n" "plain LibTorch loop, 2 processes" "$plain_s" "$plain_epochs"
printf "%-52s %10.2f %8s\n" "Lattice's trainer alone (RunJob), 2 processes" "$trainer_s" "$lattice_epochs"
printf "%-52s %10.2f %8s\n" "Optuna + PyTorch, n_jobs 2" "$optuna_s" "$optuna_epochs"
printf "%-52s %10.3f\n" "Lattice / plain loop, wall (target <= 1.05)" \
  "$(echo "$lattice_s / $plain_s" | bc -l)"
printf "%-52s %10.3f\n" "Lattice / plain loop, per epoch" \
  "$(echo "$(per_epoch "$lattice_s" "$lattice_epochs") / $(per_epoch "$plain_s" "$plain_epochs")" | bc -l)"
printf "%-52s %10.3f\n" "Lattice / its trainer alone (scheduler overhead)" \
  "$(echo "$lattice_s / $trainer_s" | bc -l)"
printf "%-52s %10.3f\n" "Lattice / Optuna, wall (target <= 0.5)" \
  "$(echo "$lattice_s / $optuna_s" | bc -l)"
printf "%-52s %10.3f\n" "Lattice / Optuna, per epoch" \
  "$(echo "$(per_epoch "$lattice_s" "$lattice_epochs") / $(per_epoch "$optuna_s" "$optuna_epochs")" | bc -l)"
