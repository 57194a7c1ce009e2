# Shared helpers of the bench scripts: start/stop a local cluster, call its API.
# Usage: source bench/lib.sh; start_cluster BUILD_DIR DATA_DIR RANKS; api GET /v1/sweeps; stop_cluster
PYTHON=/usr/bin/python3

start_cluster() {  # build-dir data-dir ranks [extra `lattice cluster` args...]
  local build=$1 dir=$2 ranks=$3
  shift 3
  # KEEP_DATA=1: start on the data directory as it is (else it starts empty).
  [ "${KEEP_DATA:-0}" = 1 ] || rm -rf "$dir"
  rm -f "$dir.log"
  setsid mpirun --allow-run-as-root --oversubscribe --enable-recovery --bind-to none -np "$ranks" \
    "$build/lattice" cluster --data-dir "$dir" --port 0 --worker-threads 1 \
    --data-roots "$PWD,/usr/share/datasets,/usr/lib/python3/dist-packages/sklearn/datasets/data" \
    "$@" > "$dir.log" 2>&1 &
  CLUSTER_PID=$!
  CLUSTER_DIR=$dir
  for _ in $(seq 1 600); do
    [ -f "$dir/coordinator.json" ] && break
    sleep 0.1
  done
  [ -f "$dir/coordinator.json" ] || { echo "cluster failed to start"; cat "$dir.log"; return 1; }
  CLUSTER_PORT=$($PYTHON -c "import json;print(json.load(open('$dir/coordinator.json'))['port'])")
  CLUSTER_TOKEN=$(cat "$dir/token")
}

stop_cluster() {
  kill -TERM -- "-$CLUSTER_PID" 2>/dev/null || true
  wait "$CLUSTER_PID" 2>/dev/null || true
}

api() {  # METHOD PATH [BODY-FILE]
  if [ $# -ge 3 ]; then
    curl -s -X "$1" -H "Authorization: Bearer $CLUSTER_TOKEN" --data-binary @"$3" \
      "http://127.0.0.1:$CLUSTER_PORT$2"
  else
    curl -s -X "$1" -H "Authorization: Bearer $CLUSTER_TOKEN" "http://127.0.0.1:$CLUSTER_PORT$2"
  fi
}

# Submits a spec file and waits for the sweep to end; prints the final sweep JSON.
# Polls only every POLL_SECONDS (default 0.25) s: each poll forks curl, which would steal
# CPU from the workers on a 2-core machine. Timings use the server's own
# created_ms/finished_ms, not the polls.
run_sweep() {  # SPEC-FILE
  local id
  id=$(api POST /v1/sweeps "$1" | $PYTHON -c "import json,sys;print(json.load(sys.stdin)['id'])")
  while :; do
    local s
    s=$(api GET "/v1/sweeps/$id")
    if ! echo "$s" | grep -q '"state":"running"'; then echo "$s"; return; fi
    sleep "${POLL_SECONDS:-0.25}"
  done
}

json_field() {  # JSON FIELD-EXPRESSION (python, `j` is the object)
  $PYTHON -c "import json,sys;j=json.loads(sys.argv[1]);print($2)" "$1"
}

run_halves() {  # PROGRAM SPEC OUT-PREFIX: parts 0 and 1 of 2 side by side into OUT-PREFIX{0,1}.json;
                # prints the wall seconds
  local t0 t1
  t0=$(date +%s.%N)
  "$1" "$2" --part 0 --of 2 > "${3}0.json" &
  "$1" "$2" --part 1 --of 2 > "${3}1.json"
  wait
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}
