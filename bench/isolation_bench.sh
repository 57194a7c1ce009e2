#!/usr/bin/env bash
# Cost of task isolation (worker/worker.h): the same cluster with `--task-isolation true`
# (tasks in a task process behind a socketpair relay) and `false` (tasks in the MPI rank),
# alternated in ONE run: the 27-point digits grid's wall time and no-op dispatch throughput.
# Usage: bench/isolation_bench.sh [build-dir] [rounds]   (prints medians and ratios)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
ROUNDS=${2:-3}
source bench/lib.sh
WORK=$(mktemp -d)
trap 'stop_cluster 2>/dev/null || true; rm -rf "$WORK"' EXIT
NOOP_TRIALS=${NOOP_TRIALS:-2000}
cat > "$WORK/noop.yaml" <<YAML
name: noop-dispatch
kind: noop
search: {method: random, max_trials: $NOOP_TRIALS, parameters: {sleep_ms: [0]}}
YAML

declare -A grid noop
for round in $(seq 1 "$ROUNDS"); do
  for mode in true false; do
    [ $((round % 2)) -eq 0 ] && mode=$([ "$mode" = true ] && echo false || echo true)  # alternate order
    start_cluster "$BUILD" "$WORK/c-$mode-$round" 3 --task-isolation "$mode"
    sweep=$(run_sweep examples/digits-probe-grid.yaml)
    g=$(json_field "$sweep" "(j['finished_ms']-j['created_ms'])/1000")
    sweep=$(run_sweep "$WORK/noop.yaml")
    n=$(json_field "$sweep" "$NOOP_TRIALS/max((j['finished_ms']-j['created_ms'])/1000,1e-3)")
    stop_cluster
    grid[$mode]="${grid[$mode]:-} $g"
    noop[$mode]="${noop[$mode]:-} $n"
    echo "round $round isolation=$mode: 27-grid ${g}s, no-op ${n} trials/s"
  done
done
median() { $PYTHON -c "import statistics,sys;print(statistics.median(map(float,sys.argv[1:])))" $1; }
gi=$(median "${grid[true]}"); gn=$(median "${grid[false]}")
ni=$(median "${noop[true]}"); nn=$(median "${noop[false]}")
echo
echo "| ($ROUNDS rounds, medians) | isolated | in the rank | ratio |"
echo "|---|---:|---:|---:|"
$PYTHON -c "print('| 27-grid wall (s) | %.2f | %.2f | %.3f |' % ($gi, $gn, $gi / $gn))"
$PYTHON -c "print('| no-op dispatch (trials/s) | %.0f | %.0f | %.3f |' % ($ni, $nn, $ni / $nn))"
