#!/bin/bash
# Data-parallel training throughput: an MLP 784-2048-2048-10 on Fashion-MNIST trained on one
# worker and on a gang of two (resources.workers_per_trial: 2), one thread each, in one run
# on one cluster (mpirun -np 3: coordinator + 2 workers). Same global batch, seed, data.
# Prints samples/s of each (training rows x epochs / the trial's run time, evaluation
# included), the speedup, and the gradient allreduce's share of the gang trial's run time
# (gang_allreduce_seconds of member 0 / run time: the relay through the worker rank, the MPI
# allreduce and the waits for the slower member together).
#
# Usage: bench/gang_bench.sh [BUILD_DIR]      ROWS=12000 EPOCHS=2 BATCH=1024 (environment)
# BATCH is the global batch: at 256 (128 per member) the step's compute itself does not halve
# on a CPU (bench/gang_step_split.py; docs/BENCHMARKS.md, "Multi-worker trials").
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
BUILD=${1:-build}
ROWS=${ROWS:-12000}
EPOCHS=${EPOCHS:-2}
BATCH=${BATCH:-1024}
WORK=$(mktemp -d)
DIR=$WORK/data
FMNIST=/usr/share/datasets/fashion-mnist

spec() {  # NAME K EPOCHS HIDDEN SEEDS -> file
  local f=$WORK/$1.yaml
  cat > "$f" <<SPEC
name: $1
kind: train
seed: 7
dataset: {format: idx, images: $FMNIST/train-images-idx3-ubyte.gz, labels: $FMNIST/train-labels-idx1-ubyte.gz,
          scale: 0.00392156862745098, standardize: true, limit: $ROWS, split: {validation_fraction: 0.1}}
model: {type: mlp, hidden: $4}
train: {epochs: $3, batch_size: $BATCH, lr: 0.001, threads: 1, checkpoint: false}
resources: {workers_per_trial: $2}
search: {method: grid, parameters: {seed: [$5]}}
SPEC
  echo "$f"
}

trial_of() {  # SWEEP-JSON -> the first trial's JSON
  local id
  id=$(json_field "$1" "j['id']")
  api GET "/v1/trials/$id-t0"
}

start_cluster "$BUILD" "$DIR" 3
trap 'stop_cluster; rm -rf "$WORK"' EXIT
# Warm-up: each worker's task process loads and caches the dataset once.
run_sweep "$(spec warm 1 1 16 "1, 2")" > /dev/null
cpu() { $PYTHON bench/proc_cpu.py "$CLUSTER_PID"; }
c0=$(cpu)
one=$(trial_of "$(run_sweep "$(spec one 1 "$EPOCHS" "[2048, 2048]" 7)")")
c1=$(cpu)
two=$(trial_of "$(run_sweep "$(spec two 2 "$EPOCHS" "[2048, 2048]" 7)")")
c2=$(cpu)
$PYTHON - "$one" "$two" "$ROWS" "$EPOCHS" "$BATCH" <<'PY'
import json, sys
one, two = json.loads(sys.argv[1]), json.loads(sys.argv[2])
rows, epochs, batch = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
train_rows = rows - round(rows * 0.1)
for t in (one, two):
    assert t["state"] == "completed", t
def secs(t): return (t["finished_ms"] - t["started_ms"]) / 1000.0
s1, s2 = train_rows * epochs / secs(one), train_rows * epochs / secs(two)
share = two["metrics"]["gang_allreduce_seconds"] / secs(two)
print(f"MLP 784-2048-2048-10, {train_rows} training rows x {epochs} epochs, batch {batch}, 1 thread per worker")
print(f"1 worker : {secs(one):7.2f} s  {s1:8.0f} samples/s  val_accuracy {one['metrics']['val_accuracy']:.4f}")
print(f"2 workers: {secs(two):7.2f} s  {s2:8.0f} samples/s  val_accuracy {two['metrics']['val_accuracy']:.4f}")
print(f"speedup {s2 / s1:.2f}x; allreduce share of the gang's run time {100 * share:.1f} % "
      f"({two['metrics']['gang_allreduce_seconds']:.2f} s)")
PY
echo "CPU during the 1-worker trial (load average $(cut -d' ' -f1 /proc/loadavg)):"
$PYTHON bench/proc_cpu.py --diff "$c0" "$c1"
echo "CPU during the gang trial:"
$PYTHON bench/proc_cpu.py --diff "$c1" "$c2"
