#!/usr/bin/env bash
# Cost of metrics on the hot paths: the same cluster with `--metrics true` (the default:
# every coordinator metric update, per-rank gauges and throughput counters, the workers'
# per-task peak-RSS probe and row counting, the extra message fields) and `--metrics false`
# (none of that work is done: the coordinator gets no SchedulerMetrics, the workers no
# usage reports), alternated in ONE run: the 27-point digits grid's wall time and no-op
# dispatch throughput, plus a scrape of /metrics every second during the metrics-on runs
# (what Prometheus would do). Besides wall time it reports the CPU time every process of
# the cluster (coordinator, worker ranks, task processes) spent on each workload — what the
# metric work costs, and far steadier than wall time on a loaded machine.
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

# CPU seconds (user + system) of every process in the cluster's session so far.
cluster_cpu() {
  $PYTHON - "$CLUSTER_PID" <<'PY'
import os, sys
sid, ticks = int(sys.argv[1]), 0
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        fields = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    except OSError:
        continue
    if int(fields[3]) == sid:  # session id (fields after the name start at state)
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
print(ticks / os.sysconf('SC_CLK_TCK'))
PY
}
declare -A grid noop gridcpu noopcpu
for round in $(seq 1 "$ROUNDS"); do
  for mode in true false; do
    [ $((round % 2)) -eq 0 ] && mode=$([ "$mode" = true ] && echo false || echo true)  # alternate order
    start_cluster "$BUILD" "$WORK/c-$mode-$round" 3 --metrics "$mode"
    if [ "$mode" = true ]; then  # scraped like Prometheus would (1 s)
      (while :; do curl -s -o /dev/null "http://127.0.0.1:$CLUSTER_PORT/metrics"; sleep 1; done) &
      SCRAPER=$!
    fi
    c0=$(cluster_cpu)
    sweep=$(run_sweep examples/digits-probe-grid.yaml)
    c1=$(cluster_cpu)
    g=$(json_field "$sweep" "(j['finished_ms']-j['created_ms'])/1000")
    sweep=$(run_sweep "$WORK/noop.yaml")
    c2=$(cluster_cpu)
    n=$(json_field "$sweep" "$NOOP_TRIALS/max((j['finished_ms']-j['created_ms'])/1000,1e-3)")
    gc=$($PYTHON -c "print($c1 - $c0)")
    nc=$($PYTHON -c "print(($c2 - $c1) * 1000 / $NOOP_TRIALS)")
    if [ -n "$SCRAPER" ]; then kill "$SCRAPER" 2>/dev/null; wait "$SCRAPER" 2>/dev/null || true; SCRAPER=; fi
    stop_cluster
    grid[$mode]="${grid[$mode]:-} $g"
    noop[$mode]="${noop[$mode]:-} $n"
    gridcpu[$mode]="${gridcpu[$mode]:-} $gc"
    noopcpu[$mode]="${noopcpu[$mode]:-} $nc"
    echo "round $round metrics=$mode: 27-grid ${g}s (${gc} CPU s), no-op ${n} trials/s (${nc} CPU s per 1000)"
  done
done
median() { $PYTHON -c "import statistics,sys;print(statistics.median(map(float,sys.argv[1:])))" $1; }
gi=$(median "${grid[true]}"); gn=$(median "${grid[false]}")
ni=$(median "${noop[true]}"); nn=$(median "${noop[false]}")
gci=$(median "${gridcpu[true]}"); gcn=$(median "${gridcpu[false]}")
nci=$(median "${noopcpu[true]}"); ncn=$(median "${noopcpu[false]}")
echo
echo "| ($ROUNDS rounds, medians) | metrics on | metrics off | cost |"
echo "|---|---:|---:|---:|"
$PYTHON -c "print('| 27-grid wall (s) | %.2f | %.2f | %+.1f %% |' % ($gi, $gn, 100 * ($gi / $gn - 1)))"
$PYTHON -c "print('| no-op dispatch (trials/s) | %.0f | %.0f | %+.1f %% |' % ($ni, $nn, 100 * ($nn / $ni - 1)))"
$PYTHON -c "print('| 27-grid CPU, all cluster processes (s) | %.2f | %.2f | %+.1f %% |' % ($gci, $gcn, 100 * ($gci / $gcn - 1)))"
$PYTHON -c "print('| no-op CPU per 1,000 trials (s) | %.3f | %.3f | %+.1f %% |' % ($nci, $ncn, 100 * ($nci / $ncn - 1)))"
