#!/usr/bin/env bash
# Cost of metrics on the hot paths: the same cluster with `--metrics true` (the default:
# every coordinator metric update, per-rank gauges and throughput counters, the workers'
# per-task peak-RSS probe and row counting, the extra message fields) and `--metrics false`
# (none of that work is done: the coordinator gets no SchedulerMetrics, the workers no
# usage reports), alternated in ONE run: the 27-point digits grid's wall time and no-op
# dispatch throughput, plus a scrape of /metrics every second during the metrics-on runs
# (what Prometheus would do).
# Usage: bench/metrics_bench.sh [build-dir] [rounds]   (prints medians and ratios)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
ROUNDS=${2:-5}
source bench/lib.sh
WORK=$(mktemp -d)
SCRAPER=
trap '[ -n "$SCRAPER" ] && kill "$SCRAPER" 2>/dev/null; stop_cluster 2>/dev/null || true; rm -rf "$WORK"' EXIT
NOOP_TRIALS=${NOOP_TRIALS:-5000}
cat > "$WORK/noop.yaml" <<YAML
name: noop-dispatch
kind: noop
search: {method: random, max_trials: $NOOP_TRIALS, parameters: {sleep_ms: [0]}}
YAML

declare -A grid noop
for round in $(seq 1 "$ROUNDS"); do
  for mode in true false; do
    [ $((round % 2)) -eq 0 ] && mode=$([ "$mode" = true ] && echo false || echo true)  # alternate order
    start_cluster "$BUILD" "$WORK/c-$mode-$round" 3 --metrics "$mode"
    if [ "$mode" = true ]; then  # scraped like Prometheus would (1 s)
      (while :; do curl -s -o /dev/null "http://127.0.0.1:$CLUSTER_PORT/metrics"; sleep 1; done) &
      SCRAPER=$!
    fi
    sweep=$(run_sweep examples/digits-probe-grid.yaml)
    g=$(json_field "$sweep" "(j['finished_ms']-j['created_ms'])/1000")
    sweep=$(run_sweep "$WORK/noop.yaml")
    n=$(json_field "$sweep" "$NOOP_TRIALS/max((j['finished_ms']-j['created_ms'])/1000,1e-3)")
    if [ -n "$SCRAPER" ]; then kill "$SCRAPER" 2>/dev/null; wait "$SCRAPER" 2>/dev/null || true; SCRAPER=; fi
    stop_cluster
    grid[$mode]="${grid[$mode]:-} $g"
    noop[$mode]="${noop[$mode]:-} $n"
    echo "round $round metrics=$mode: 27-grid ${g}s, no-op ${n} trials/s"
  done
done
median() { $PYTHON -c "import statistics,sys;print(statistics.median(map(float,sys.argv[1:])))" $1; }
gi=$(median "${grid[true]}"); gn=$(median "${grid[false]}")
ni=$(median "${noop[true]}"); nn=$(median "${noop[false]}")
echo
echo "| ($ROUNDS rounds, medians) | metrics on | metrics off | cost |"
echo "|---|---:|---:|---:|"
$PYTHON -c "print('| 27-grid wall (s) | %.2f | %.2f | %+.1f %% |' % ($gi, $gn, 100 * ($gi / $gn - 1)))"
$PYTHON -c "print('| no-op dispatch (trials/s) | %.0f | %.0f | %+.1f %% |' % ($ni, $nn, 100 * ($nn / $ni - 1)))"
