#!/usr/bin/env bash
# End-to-end embed benchmark. In ONE run, on this machine:
#  1. Lattice: the example embed sweep (examples/fashion-mnist-embed.yaml: 60,000 images,
#     flatten encoder, 30 shards) on a 2-worker cluster, submit -> sweep completed (the HNSW
#     index built, its recall gated and published): items/s including the index build, and
#     the split between the embedding phase and the index build (from the trial records);
#  2. the in-process embed path and its floor (embed_bench), for the ratio of the parts.
# Usage: bench/embed_sweep_bench.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
source bench/lib.sh
WORK=$(mktemp -d)
trap 'stop_cluster 2>/dev/null || true; rm -rf "$WORK"' EXIT
SPEC=examples/fashion-mnist-embed.yaml
ROWS=60000

echo "== 1. Lattice: $SPEC, 2 workers"
start_cluster "$BUILD" "$WORK/lattice" 3
t0=$(date +%s.%N)
sweep=$(run_sweep "$SPEC")
t1=$(date +%s.%N)
id=$(json_field "$sweep" "j['id']")
state=$(json_field "$sweep" "j['state']")
message=$(json_field "$sweep" "j['message']")
wall=$(echo "$t1 - $t0" | bc)
server_s=$(json_field "$sweep" "(j['finished_ms']-j['created_ms'])/1000")
trials=$(api GET "/v1/sweeps/$id/trials")
embed_s=$(json_field "$trials" \
  "(max(t['finished_ms'] for t in j['trials'])-j['sweep']['created_ms'])/1000")
stop_cluster
[ "$state" = completed ] || { echo "sweep $state: $message"; cat "$WORK/lattice.log"; exit 1; }
echo "   $message"
echo "   wall ${wall}s (server ${server_s}s); shards embedded after ${embed_s}s"

echo "== 2. In-process embed path vs floor (1 thread)"
"$BUILD/bench/embed_bench" --min-seconds 2 | tee "$WORK/embed_bench.txt"

echo
echo "== Summary (same run)"
printf "%-58s %10s\n" "example embed sweep, 2 workers, wall (s)" "$wall"
printf "%-58s %10.0f\n" "  items/s incl. index build (wall)" "$(echo "$ROWS / $wall" | bc -l)"
printf "%-58s %10s\n" "  submit -> last shard stored (s)" "$embed_s"
printf "%-58s %10.0f\n" "  items/s of the embedding phase" "$(echo "$ROWS / $embed_s" | bc -l)"
printf "%-58s %10.1f\n" "  index build + recall eval + publish (s)" \
  "$(echo "$server_s - $embed_s" | bc -l)"
