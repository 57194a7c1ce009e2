#!/bin/bash
# Data-parallel training throughput: an MLP 784-2048-2048-10 on Fashion-MNIST trained on one
# worker and on a gang of two (resources.workers_per_trial: 2), one thread each, in one run
# on one cluster (mpirun -np 3: coordinator + 2 workers). Same global batch, seed, data.
# Prints, for each, the training throughput (train_samples_per_second: training rows of the
# global batches / the time in the training epochs, i.e. the steps and the gradient exchange,
# without data preparation and evaluation) and the whole trial's (training rows x epochs /
# the trial's run time, preparation and evaluation included), the speedups, and the gradient
# exchange's share of the gang's training time (gang_allreduce_seconds of member 0 /
# train_seconds: the relay through the worker rank, the MPI collectives and the waits for the
# slower member together).
#
# Usage: bench/gang_bench.sh [BUILD_DIR]      ROWS=48000 EPOCHS=2 BATCH=4096 REPEATS=3 (environment)
# Each repetition runs the 1-worker trial, then the gang trial; medians over the repetitions.
# BATCH is the global batch (each member steps on half of it). Per step, the work that
# scales with the weights (reading and writing 23 MB of weights and gradients, the 23 MB
# gradient exchange) is the same at any batch while the per-row work halves, so the speedup
# grows with the batch: docs/BENCHMARKS.md ("Multi-worker trials") has 1024, 2048 and 4096.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
BUILD=${1:-build}
ROWS=${ROWS:-48000}
EPOCHS=${EPOCHS:-2}
BATCH=${BATCH:-4096}
REPEATS=${REPEATS:-3}
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
export POLL_SECONDS=1  # fewer curl forks beside the workers (timings are the server's)
# Warm-up: a gang trial, so that both workers' task processes load and cache the dataset.
run_sweep "$(spec warm 2 1 16 1)" > /dev/null
cpu() { $PYTHON bench/proc_cpu.py "$CLUSTER_PID"; }
ones=() twos=()
for rep in $(seq 1 "$REPEATS"); do  # alternating, so that drifts in load hit both alike
  c0=$(cpu)
  ones+=("$(trial_of "$(run_sweep "$(spec one 1 "$EPOCHS" "[2048, 2048]" 7)")")")
  c1=$(cpu)
  twos+=("$(trial_of "$(run_sweep "$(spec two 2 "$EPOCHS" "[2048, 2048]" 7)")")")
  c2=$(cpu)
  echo "repetition $rep of $REPEATS done" >&2
done
$PYTHON - "$ROWS" "$EPOCHS" "$BATCH" "${ones[@]}" "${twos[@]}" <<'PY'
import json, statistics, sys
rows, epochs, batch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
trials = [json.loads(a) for a in sys.argv[4:]]
ones, twos = trials[:len(trials) // 2], trials[len(trials) // 2:]
train_rows = rows - round(rows * 0.1)
for t in trials:
    assert t["state"] == "completed", t
def secs(t): return (t["finished_ms"] - t["started_ms"]) / 1000.0
def train(t): return t["metrics"]["train_samples_per_second"]
def whole(t): return train_rows * epochs / secs(t)
print(f"MLP 784-2048-2048-10, {train_rows} training rows x {epochs} epochs, global batch {batch}, "
      f"1 thread per worker, {len(ones)} repetition(s), 1 worker then gang of 2 each")
print("rep  training samples/s: 1 worker  gang  speedup | whole trial: 1 worker  gang  speedup | exchange share")
rows_out = []
for i, (a, b) in enumerate(zip(ones, twos), 1):
    share = b["metrics"]["gang_allreduce_seconds"] / b["metrics"]["train_seconds"]
    rows_out.append((train(b) / train(a), whole(b) / whole(a), share))
    print(f"{i:3d}  {train(a):27.0f} {train(b):5.0f} {train(b) / train(a):7.2f}x |"
          f" {whole(a):20.0f} {whole(b):5.0f} {whole(b) / whole(a):7.2f}x | {100 * share:5.1f} %")
med = [statistics.median(r[j] for r in rows_out) for j in range(3)]
print(f"median speedup: training {med[0]:.2f}x, whole trial {med[1]:.2f}x; gradient exchange "
      f"{100 * med[2]:.1f} % of the gang's training time (member 0's reduce-scatter + allgather, "
      f"waits included); val_accuracy {ones[0]['metrics']['val_accuracy']:.4f} (1 worker), "
      f"{twos[0]['metrics']['val_accuracy']:.4f} (gang); optimizer shards "
      f"{twos[0]['metrics'].get('gang_optimizer_shards', 1):.0f}")
PY
echo "CPU during the last 1-worker trial (load average $(cut -d' ' -f1 /proc/loadavg)):"
$PYTHON bench/proc_cpu.py --diff "$c0" "$c1"
echo "CPU during the last gang trial:"
$PYTHON bench/proc_cpu.py --diff "$c1" "$c2"
