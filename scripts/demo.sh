#!/usr/bin/env bash
# `make demo`: starts a local cluster (1 coordinator + 2 workers under mpirun), runs the
# 27-point digits probe grid to the end with live progress, prints the results table,
# and stops the cluster. Usage: scripts/demo.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
LATTICE="$BUILD_DIR/lattice"
DATA_DIR=${LATTICE_DEMO_DIR:-$BUILD_DIR/demo-data}
LOG="$DATA_DIR.log"

rm -rf "$DATA_DIR" "$LOG"
echo "== starting a local cluster: mpirun -np 3 $LATTICE cluster --data-dir $DATA_DIR"
setsid mpirun --allow-run-as-root --oversubscribe --enable-recovery --bind-to none -np 3 \
  "$LATTICE" cluster --data-dir "$DATA_DIR" --port 0 --worker-threads 1 \
  --data-roots "$PWD,/usr/share/datasets,/usr/lib/python3/dist-packages/sklearn/datasets/data" \
  > "$LOG" 2>&1 &
MPIRUN_PID=$!
cleanup() {
  kill -TERM -- "-$MPIRUN_PID" 2>/dev/null || true
  wait "$MPIRUN_PID" 2>/dev/null || true
}
trap cleanup EXIT

for _ in $(seq 1 600); do
  [ -f "$DATA_DIR/coordinator.json" ] && break
  if ! kill -0 "$MPIRUN_PID" 2>/dev/null; then echo "cluster failed to start:"; cat "$LOG"; exit 1; fi
  sleep 0.1
done
[ -f "$DATA_DIR/coordinator.json" ] || { echo "cluster did not start in 60 s:"; cat "$LOG"; exit 1; }
echo "   $(grep -m1 'listening' "$LOG" | sed 's/^lattice cluster: //')"

echo "== lattice submit examples/digits-probe-grid.yaml --wait"
"$LATTICE" submit examples/digits-probe-grid.yaml --wait --data-dir "$DATA_DIR"
echo
echo "== lattice status"
"$LATTICE" status --data-dir "$DATA_DIR"
echo
echo "== lattice trials digits-probe-grid --top 5"
"$LATTICE" trials digits-probe-grid --top 5 --data-dir "$DATA_DIR"
echo
echo "== lattice workers"
"$LATTICE" workers --data-dir "$DATA_DIR"
