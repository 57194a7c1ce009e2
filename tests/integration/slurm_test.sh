#!/usr/bin/env bash
# Acceptance test of deploy/slurm/lattice.sbatch under a real Slurm (Debian's slurm-wlm and
# munge): a private two-node Slurm on this machine (tests/integration/slurm_local.sh), the
# batch script submitted as is with command-line options that fit it (one worker node, two
# workers, one CPU each; the nodes' "GPUs" are stand-in devices), a sweep of checkpointing
# train trials, `scontrol requeue` mid-sweep. It checks that:
#   - the job asks GPUs for the worker component only;
#   - on the requeue's SIGTERM the cluster drains (running trials checkpoint, exit 0) and
#     the requeued job starts again on the same data directory;
#   - the sweep then completes with every grid point exactly once, one attempt spent each,
#     the interrupted trials resumed from their checkpoints (not from epoch 1);
#   - scancel stops the cluster cleanly.
# Every daemon is stopped and the temp directory removed on exit, failure included.
#
# Usage: slurm_test.sh <lattice binary> <source dir>   (ctest runs it: test slurm_requeue)
# Exit: 0 passed, 1 failed, 77 skipped (not root, or slurm-wlm / munge missing;
# scripts/setup.sh installs them). LATTICE_SLURM_TEST_KEEP=1 keeps the temp directory.
set -uo pipefail

LATTICE=$(realpath "${1:?usage: slurm_test.sh <lattice binary> <source dir>}")
unset LATTICE_PORT  # the client commands read it
SRC=$(realpath "${2:?usage: slurm_test.sh <lattice binary> <source dir>}")

export PATH="$PATH:/usr/sbin:/sbin"
skip() { echo "SKIPPED: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root: it starts munged, slurmctld and slurmd of its own"
for b in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/sbin/munged sbatch srun scontrol squeue \
         sinfo scancel munge unmunge runuser python3 curl; do
  command -v "$b" >/dev/null || skip "$b not found (scripts/setup.sh installs slurm-wlm and munge)"
done
getent passwd munge >/dev/null || skip "no munge user (apt-get install munge)"
compgen -G "/usr/lib/x86_64-linux-gnu/slurm-wlm/mpi_pmix*.so" >/dev/null ||
  compgen -G "/usr/lib/*/slurm*/mpi_pmix*.so" >/dev/null || skip "Slurm's mpi/pmix plugin is missing"
[ -x "$LATTICE" ] || { echo "FAIL: $LATTICE is not built"; exit 1; }
DATASET=/usr/share/datasets/fashion-mnist
[ -r "$DATASET/train-images-idx3-ubyte.gz" ] || skip "$DATASET missing (apt-get install dataset-fashion-mnist)"

# shellcheck source=tests/integration/slurm_local.sh
source "$SRC/tests/integration/slurm_local.sh"

TMP=$(mktemp -d /tmp/lattice-slurm-test.XXXXXX)
chmod 755 "$TMP"  # munged runs as the munge user and must reach its socket under it
DATA=$TMP/data
JOB=""

say() { echo "slurm_test: $(date +%T) $*"; }
fail() { echo "FAIL: $*"; exit 1; }

cleanup() {
  local rc=$?
  set +e
  if [ -n "$JOB" ] && squeue -h -j "$JOB" 2>/dev/null | grep -q .; then
    scancel "$JOB"
    for _ in $(seq 1 45); do squeue -h -j "$JOB" 2>/dev/null | grep -q . || break; sleep 1; done
  fi
  if [ "$rc" -ne 0 ]; then
    for f in "$TMP"/job-*.out "$TMP"/slurm/log/slurmctld.log "$TMP"/slurm/log/slurmd.*.log; do
      [ -f "$f" ] || continue
      echo "===== $f (last 80 lines)"
      tail -n 80 "$f"
    done
  fi
  slurm_local_stop "$TMP/slurm"
  # Whatever of this run is left (a step killed with its slurmd): only processes whose
  # command line names this run's unique temp directory, by pid.
  for pid in $(pgrep -f -- "$TMP" 2>/dev/null); do
    [ "$pid" != "$$" ] && kill -9 "$pid" 2>/dev/null
  done
  if [ "${LATTICE_SLURM_TEST_KEEP:-0}" = 1 ]; then
    echo "kept $TMP"
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
trap 'exit 143' TERM  # so that the EXIT trap runs (ctest's timeout, Ctrl-C)
trap 'exit 130' INT

# Polls `cmd` every second until it succeeds, up to `secs` seconds.
wait_for() {
  local secs=$1; shift
  for _ in $(seq 1 "$secs"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 1
  done
  return 1
}

trials_json() {
  "$LATTICE" trials "$SWEEP" --format json --data-dir "$DATA" > "$TMP/trials.json" 2>/dev/null
}
api_port() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["port"])' "$DATA/coordinator.json"; }
# Whether the job's output (every start of it) has a line matching the regex.
job_has() { grep -q -- "$1" "$TMP"/job-*.out 2>/dev/null; }

say "starting a private Slurm under $TMP/slurm"
slurm_local_start "$TMP/slurm" 2 4 4 || fail "could not start Slurm (logs above)"

say "submitting deploy/slurm/lattice.sbatch"
cd "$TMP" || fail "cd $TMP"
# The script's settings, for sbatch only (the job keeps them for every start; the client
# commands below find the port in coordinator.json: LATTICE_PORT would be theirs too).
JOB=$(LATTICE_BUILD_DIR=$(dirname "$LATTICE") LATTICE_DATA_DIR=$DATA \
      LATTICE_DATA_ROOTS=/usr/share/datasets LATTICE_PORT=0 LATTICE_DRAIN_GRACE_MS=15000 \
      sbatch --parsable --output="$TMP/job-%j.out" --cpus-per-task=1 \
        : --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 "$SRC/deploy/slurm/lattice.sbatch") ||
  fail "sbatch refused the script"
JOB=${JOB%%;*}
say "job $JOB"

# GPUs: none for the coordinator's component, one per task for the workers'.
scontrol show job "${JOB}+0" > "$TMP/component0.txt" || fail "no component 0"
scontrol show job "${JOB}+1" > "$TMP/component1.txt" || fail "no component 1"
grep -qi "gpu" "$TMP/component0.txt" && fail "the coordinator's component asks for a GPU: $(cat "$TMP/component0.txt")"
grep -q "TresPerTask=.*gres:gpu:1" "$TMP/component1.txt" ||
  fail "the workers' component does not ask a GPU per task: $(cat "$TMP/component1.txt")"

wait_for 180 "$LATTICE" status --data-dir "$DATA" || fail "the coordinator never answered"
say "coordinator up on port $(api_port)"

cat > "$TMP/sweep.yaml" <<EOF
name: slurm-requeue
kind: train
seed: 7
max_attempts: 1
dataset:
  format: idx
  images: $DATASET/train-images-idx3-ubyte.gz
  labels: $DATASET/train-labels-idx1-ubyte.gz
  scale: 0.00392156862745098
  standardize: true
  limit: 20000
model: {type: mlp, hidden: [512, 512]}
train: {epochs: 6, batch_size: 64, threads: 1}
checkpoint: {every_steps: 100, keep_last: 2}
search:
  method: grid
  metric: {name: val_accuracy, goal: maximize}
  parameters:
    lr: [1.0e-3, 2.0e-3, 3.0e-3, 4.0e-3]
EOF
out=$("$LATTICE" submit "$TMP/sweep.yaml" --data-dir "$DATA") || fail "submit: $out"
SWEEP=$(echo "$out" | sed -n 's/^submitted sweep \([^ ]*\) .*/\1/p')
[ -n "$SWEEP" ] || fail "no sweep id in: $out"
say "sweep $SWEEP submitted"

# Requeue once a trial is mid-run (at least one epoch done, several to go).
caught=""
for _ in $(seq 1 600); do
  if trials_json; then
    caught=$(python3 -c '
import json, sys
for t in json.load(open(sys.argv[1])):
    if t["state"] == "running" and 1 <= t["epochs_done"] <= 3:
        print(t["id"]); break' "$TMP/trials.json")
    [ -n "$caught" ] && break
  fi
  sleep 0.5
done
[ -n "$caught" ] || fail "no trial ever ran mid-way: $(cat "$TMP/trials.json")"
say "requeueing job $JOB while $caught runs"
cp "$TMP/trials.json" "$TMP/trials-at-requeue.json"  # for the diagnosis should a check fail
wait_for 30 scontrol requeue "$JOB" || fail "scontrol requeue $JOB refused"

# The requeued job: drained (every task exits 0), pending, started again.
wait_for 60 bash -c "grep -q 'the cluster exited with code' $TMP/job-$JOB.out" ||
  fail "the cluster did not exit after the requeue"
job_has "the cluster exited with code 0" || fail "the drained cluster exited non-zero"
job_has "coordinator: drained in " || fail "the coordinator did not drain"
if ! job_has "trial $caught attempt 1 preempted on "; then
  # What every trial was doing when the requeue was asked for, and now (the requeued job's
  # coordinator, if it is up within 60 s): ended before the drain, or failed?
  wait_for 60 trials_json || true
  fail "$caught was not preempted; trials at the requeue: $(cat "$TMP/trials-at-requeue.json");
trials now: $(cat "$TMP/trials.json" 2>/dev/null)"
fi
say "drained; waiting for the requeued job to start"
wait_for 180 bash -c "scontrol show job $JOB | grep -q 'Restarts=1'" || fail "the job was not requeued"
# Only Slurm's backfill scheduler starts heterogeneous jobs, and it runs only after some
# state change; on this otherwise idle test Slurm a requeued job waits minutes for one once
# it is eligible again. Moving its start time to now is that change (and skips the wait).
restarted() {
  scontrol update jobid="$JOB" StartTime=now >/dev/null 2>&1
  grep -q '^lattice.sbatch: .* start 2 on ' "$TMP/job-$JOB.out"
}
wait_for 240 restarted || fail "the requeued job did not start again"

# Every grid point exactly once, one attempt each; the caught trial resumed mid-run.
done_ok=0
for _ in $(seq 1 600); do
  if trials_json && python3 -c '
import json, sys
sys.exit(0 if all(t["state"] == "completed" for t in json.load(open(sys.argv[1]))) else 1)' \
      "$TMP/trials.json"; then
    done_ok=1
    break
  fi
  sleep 1
done
[ "$done_ok" = 1 ] || fail "the sweep did not complete: $(cat "$TMP/trials.json")"
python3 - "$TMP/trials.json" <<'EOF' || fail "the trials are not what a requeue-safe sweep leaves"
import json, sys
trials = json.load(open(sys.argv[1]))
lrs = sorted(t["params"]["lr"] for t in trials)
assert lrs == [1e-3, 2e-3, 3e-3, 4e-3], f"grid points: {lrs}"
for t in trials:
    assert t["state"] == "completed", t["id"]
    assert t["attempts"] - t["preemptions"] == 1, f'{t["id"]}: {t["attempts"]} attempts, {t["preemptions"]} preempted'
preempted = [t["id"] for t in trials if t["preemptions"] > 0]
assert preempted, "no trial was preempted by the requeue"
print("slurm_test: every grid point completed once; preempted by the requeue:", ", ".join(preempted))
EOF
resumed=$(sed -n "s/.*trial $caught attempt 2 resumes from its checkpoint at step \([0-9]*\).*/\1/p" \
  "$TMP"/job-*.out | head -n 1)
[ -n "$resumed" ] && [ "$resumed" -gt 0 ] || fail "$caught did not resume from a checkpoint"
first_epoch=$(curl -sf -H "Authorization: Bearer $(cat "$DATA/token")" \
    "http://127.0.0.1:$(api_port)/v1/trials/$caught/metrics" | python3 -c '
import json, sys
print(min(e["epoch"] for e in json.load(sys.stdin)["epochs"] if e["attempt"] == 2))') ||
  fail "no metrics of $caught"
[ "$first_epoch" -ge 2 ] || fail "$caught restarted from epoch $first_epoch, not from its checkpoint"
say "$caught resumed from its checkpoint at step $resumed (attempt 2 ran from epoch $first_epoch)"

# scancel: SIGTERM to every task again; the cluster drains (nothing runs) and exits 0.
scancel "$JOB"
wait_for 60 bash -c "! squeue -h -j $JOB | grep -q ." || fail "the job did not end after scancel"
[ "$(cat "$TMP"/job-*.out | grep -c 'the cluster exited with code 0')" -ge 2 ] ||
  fail "the cancelled cluster exited non-zero"
say "PASSED"
