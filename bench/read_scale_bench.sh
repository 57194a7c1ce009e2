#!/usr/bin/env bash
# Read-scale benchmark (issue 9, finding 9). For each `lattice` binary given (the build
# before the change and this one, in the same run), on a copy of one data directory that
# holds many stored trials (bench/state_fill):
#  1. `GET /v1/sweeps` (what `lattice status` calls): wall time and coordinator RSS growth;
#  2. a 100,000-point grid (train kind, the digits probe): `POST /v1/sweeps` wall time;
#  3. coordinator RSS over repeated submits of small no-op sweeps that run to the end, with a
#     `GET /v1/sweeps` after every LIST_EVERY-th (a dashboard polling).
# Usage: bench/read_scale_bench.sh [build-dir] [before-dir]
#   env: SWEEPS (2000) x TRIALS_PER_SWEEP (500) stored trials; SUBMITS (300) small sweeps of
#   SUBMIT_TRIALS (50) trials each, listing after every LIST_EVERY (100) of them.
#   before-dir: a directory with a `lattice` built from the commit before (default: none,
#   only this build).
#   Build one with: git worktree add /tmp/before <commit> && cmake -S /tmp/before -B
#   /tmp/before/build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo && ninja -C /tmp/before/build lattice
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
BEFORE=${2:-}
source bench/lib.sh
SWEEPS=${SWEEPS:-2000}
TRIALS_PER_SWEEP=${TRIALS_PER_SWEEP:-500}
SUBMITS=${SUBMITS:-300}
SUBMIT_TRIALS=${SUBMIT_TRIALS:-50}
LIST_EVERY=${LIST_EVERY:-100}
WORK=$(mktemp -d)
trap 'stop_cluster 2>/dev/null || true; rm -rf "$WORK"' EXIT

rss_mb() {  # coordinator (rank 0) resident set, MiB
  local pid
  pid=$($PYTHON -c "import json;print(json.load(open('$CLUSTER_DIR/coordinator.json'))['pid'])")
  awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$pid/status"
}

cpu_s() {  # CPU seconds (user + system) the coordinator has used so far
  local pid
  pid=$($PYTHON -c "import json;print(json.load(open('$CLUSTER_DIR/coordinator.json'))['pid'])")
  awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$pid/stat"
}

settle() {  # waits (60 s at most) until the coordinator is idle: RocksDB done compacting
  local c0 c1
  for _ in $(seq 1 60); do
    c0=$(cpu_s)
    sleep 1
    c1=$(cpu_s)
    [ "$(echo "$c1 - $c0 < 0.05" | bc)" = 1 ] && return
  done
}

timed_get() {  # PATH -> seconds
  curl -s -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $CLUSTER_TOKEN" \
    "http://127.0.0.1:$CLUSTER_PORT$1"
}

echo "== filling $SWEEPS finished sweeps x $TRIALS_PER_SWEEP trials"
"$BUILD/bench/state_fill" "$WORK/filled" "$SWEEPS" "$TRIALS_PER_SWEEP"
"$BUILD/bench/state_fill" "$WORK/filled-old" "$SWEEPS" "$TRIALS_PER_SWEEP" --no-counts

# The 100k-point grid: the digits probe with 1000 learning rates x 100 weight decays.
{
  sed -n '/^name:/,/^search:/p' examples/digits-probe-grid.yaml | sed '$d' | sed 's/^name: .*/name: grid100k/'
  echo "search:"
  echo "  method: grid"
  echo -n "  parameters: {lr: ["
  seq -s, 1 1000 | sed 's/\([0-9][0-9]*\)/\1e-6/g' | tr -d '\n'
  echo -n "], weight_decay: ["
  seq -s, 1 100 | sed 's/\([0-9][0-9]*\)/\1e-5/g' | tr -d '\n'
  echo "]}"
  echo "max_concurrent_trials: 1"
} > "$WORK/grid100k.yaml"
cat > "$WORK/small.yaml" <<YAML
name: small
kind: noop
search: {method: random, max_trials: $SUBMIT_TRIALS, parameters: {sleep_ms: [0]}}
YAML

declare -A RESULT
run_version() {  # LABEL BINARY-DIR
  local label=$1 bin=$2
  echo "== $label ($bin/lattice)"
  rm -rf "$WORK/data"
  cp -a "$WORK/filled" "$WORK/data"
  local t0 t1
  t0=$(date +%s.%N)
  KEEP_DATA=1 start_cluster "$bin" "$WORK/data" 3
  t1=$(date +%s.%N)
  echo "   start (Recover) $(echo "$t1 - $t0" | bc) s"
  settle
  local rss0 list1 list2 rss1 cpu0 cpu1
  rss0=$(rss_mb)
  cpu0=$(cpu_s)
  list1=$(timed_get /v1/sweeps)
  cpu1=$(cpu_s)
  list2=$(timed_get /v1/sweeps)
  rss1=$(rss_mb)
  local list_cpu
  list_cpu=$(echo "$cpu1 - $cpu0" | bc)
  echo "   GET /v1/sweeps: ${list1} s (coordinator CPU ${list_cpu} s), again ${list2} s; coordinator RSS ${rss0} -> ${rss1} MiB"
  local submit sid
  cpu0=$(cpu_s)
  submit=$(curl -s -o "$WORK/submit.json" -w '%{time_total}' -X POST \
    -H "Authorization: Bearer $CLUSTER_TOKEN" --data-binary @"$WORK/grid100k.yaml" \
    "http://127.0.0.1:$CLUSTER_PORT/v1/sweeps")
  cpu1=$(cpu_s)
  sid=$($PYTHON -c "import json;print(json.load(open('$WORK/submit.json'))['id'])")
  settle
  local rss2 detail submit_cpu
  submit_cpu=$(echo "$cpu1 - $cpu0" | bc)
  rss2=$(rss_mb)
  detail=$(timed_get "/v1/sweeps/$sid")
  api POST "/v1/sweeps/$sid/cancel" > /dev/null
  sleep 1
  local rss3
  rss3=$(rss_mb)
  echo "   100k-point grid: POST ${submit} s (coordinator CPU ${submit_cpu} s; RSS after ${rss2} MiB," \
       "after cancel ${rss3} MiB); GET /v1/sweeps/$sid ${detail} s"
  local rss_start rss_mid="" i id
  rss_start=$(rss_mb)
  for i in $(seq 1 "$SUBMITS"); do
    id=$(api POST /v1/sweeps "$WORK/small.yaml" | $PYTHON -c "import json,sys;print(json.load(sys.stdin)['id'])")
    while api GET "/v1/sweeps/$id" | grep -q '"state":"running"'; do sleep 0.05; done
    if [ $((i % LIST_EVERY)) -eq 0 ]; then timed_get /v1/sweeps > /dev/null; fi
    if [ "$i" -eq $((SUBMITS / 2)) ]; then rss_mid=$(rss_mb); fi
  done
  local rss_end
  rss_end=$(rss_mb)
  echo "   $SUBMITS submits of $SUBMIT_TRIALS no-op trials: coordinator RSS $rss_start -> $rss_mid -> $rss_end MiB"
  stop_cluster
  # A data directory of the version before counts: the first start counts every sweep once.
  rm -rf "$WORK/data"
  cp -a "$WORK/filled-old" "$WORK/data"
  t0=$(date +%s.%N)
  KEEP_DATA=1 start_cluster "$bin" "$WORK/data" 2
  t1=$(date +%s.%N)
  local counted="-" list_old
  if [ "$label" = after ]; then  # it counts the old sweeps in the background: until done
    until grep -q "every stored sweep is counted" "$WORK/data.log"; do sleep 0.2; done
    counted=$(echo "$(date +%s.%N) - $t0" | bc)
  fi
  list_old=$(timed_get /v1/sweeps)
  stop_cluster
  echo "   data dir without counts: start $(echo "$t1 - $t0" | bc) s, every sweep counted" \
       "${counted} s after the start, then GET /v1/sweeps ${list_old} s"
  RESULT[$label]="$list1 ($list_cpu)|$rss0->$rss1|$submit ($submit_cpu)|$rss2->$rss3|$rss_start->$rss_mid->$rss_end"
}

[ -n "$BEFORE" ] && run_version before "$BEFORE"
run_version after "$BUILD"

echo
echo "== Summary ($((SWEEPS * TRIALS_PER_SWEEP)) stored trials; $SUBMITS submits)"
echo "(wall seconds, coordinator CPU seconds in parentheses; RSS in MiB)"
printf "%-7s %22s %14s %22s %22s %22s\n" version "GET /v1/sweeps" "RSS" "100k POST" "RSS submit->cancel" "RSS over submits"
for label in before after; do
  [ -n "${RESULT[$label]:-}" ] || continue
  IFS='|' read -r a b c d e <<< "${RESULT[$label]}"
  printf "%-7s %22s %14s %22s %22s %22s\n" "$label" "$a" "$b" "$c" "$d" "$e"
done
