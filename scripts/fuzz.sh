#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/) with clang in their own build directory and
# runs each of them for a bounded time. See "Fuzzing" in docs/ARCHITECTURE.md.
#
#   scripts/fuzz.sh [TARGET...]          each target FUZZ_SECONDS (default 20) s on a copy
#                                        of its seed corpus; what it finds is thrown away
#                                        (make test runs this after ctest)
#   scripts/fuzz.sh --long [TARGET...]   each target FUZZ_SECONDS (default 600) s; new
#                                        inputs are kept in $FUZZ_WORK/corpus/<target>
#                                        (default build-fuzz/work) and reused next time
#                                        (make fuzz)
#
# Environment: FUZZ_SECONDS (0: build nothing, run nothing), FUZZ_TIMEOUT (seconds one
# input may take, default 10), FUZZ_RSS_MB (default 2048), FUZZ_BUILD_DIR (default
# build-fuzz), FUZZ_WORK, JOBS (build parallelism), CXX (default clang++-14).
#
# Exit status 1 when a target crashes, trips ASan / UBSan / LeakSanitizer, or an input
# times out or runs out of memory; the input is left in <work>/artifacts/ and the log's
# tail is printed. The repository's corpus is never written to.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

LONG=0
if [ "${1:-}" = "--long" ]; then
  LONG=1
  shift
fi
ALL_TARGETS=(fuzz_sweep_spec fuzz_search_request fuzz_control_messages fuzz_http_server)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")

SECONDS_PER_TARGET=${FUZZ_SECONDS:-$([ $LONG -eq 1 ] && echo 600 || echo 20)}
TIMEOUT=${FUZZ_TIMEOUT:-10}
RSS_MB=${FUZZ_RSS_MB:-2048}
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
CXX_FUZZ=${CXX:-clang++-14}
JOBS=${JOBS:-$(nproc)}

if [ "$SECONDS_PER_TARGET" = "0" ]; then
  echo "fuzz: FUZZ_SECONDS=0, skipped"
  exit 0
fi
if ! command -v "$CXX_FUZZ" > /dev/null; then
  echo "fuzz: $CXX_FUZZ not found (make setup installs clang-14 and libclang-rt-14-dev)" >&2
  exit 1
fi
case "$CXX_FUZZ" in
  *clang*) ;;
  *) echo "fuzz: CXX=$CXX_FUZZ is not clang; libFuzzer needs clang (CXX=clang++-14)" >&2
     exit 1 ;;
esac

echo "fuzz: building ${TARGETS[*]} in $BUILD ($CXX_FUZZ, ASan + UBSan + libFuzzer)"
cmake -S . -B "$BUILD" -G Ninja -DLATTICE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER="$CXX_FUZZ" > "$BUILD.configure.log" 2>&1 ||
  { cat "$BUILD.configure.log" >&2; exit 1; }
rm -f "$BUILD.configure.log"
cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}"

# Readable stack traces (llvm-symbolizer of the same LLVM).
for s in llvm-symbolizer-14 llvm-symbolizer; do
  if command -v "$s" > /dev/null; then
    export ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-$(command -v "$s")}
    break
  fi
done
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
# ASan's default 256 MB quarantine of freed memory, kept per size class, made the RSS of a
# 5-minute run ~900 MB (replaying its corpus: 590 MB; with 64 MB: 250 MB), too close to
# -rss_limit_mb for a 10-minute run.
export ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=64}

if [ $LONG -eq 1 ]; then
  WORK=${FUZZ_WORK:-$BUILD/work}
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d "$ROOT/$BUILD/run.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK/artifacts" "$WORK/logs"

failed=()
for t in "${TARGETS[@]}"; do
  seeds="tests/fuzz/corpus/$t"
  args=(-max_total_time="$SECONDS_PER_TARGET" -timeout="$TIMEOUT" -rss_limit_mb="$RSS_MB"
        -print_final_stats=1 -artifact_prefix="$WORK/artifacts/$t-")
  [ -f "tests/fuzz/$t.dict" ] && args+=(-dict="tests/fuzz/$t.dict")
  # Per-target flags, one a line (# comments).
  if [ -f "tests/fuzz/$t.options" ]; then
    while read -r flag; do
      case "$flag" in ''|'#'*) ;; *) args+=("$flag") ;; esac
    done < "tests/fuzz/$t.options"
  fi
  if [ $LONG -eq 1 ]; then
    # New inputs go to the first folder only; the seeds are read, never written.
    mkdir -p "$WORK/corpus/$t"
    dirs=("$WORK/corpus/$t" "$seeds")
  else
    mkdir -p "$WORK/corpus"
    cp -r "$seeds" "$WORK/corpus/$t"
    dirs=("$WORK/corpus/$t")
  fi
  log="$WORK/logs/$t.log"
  echo "fuzz: $t for ${SECONDS_PER_TARGET}s"
  rc=0
  timeout $((SECONDS_PER_TARGET + 300)) "$BUILD/$t" "${args[@]}" "${dirs[@]}" > "$log" 2>&1 || rc=$?
  stats=$(grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "$log" |
          sed 's/stat:://' | tr -s ' \n' ' ' || true)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 || true)
  if [ $rc -ne 0 ]; then
    echo "fuzz: $t FAILED (exit $rc); log $log, inputs in $WORK/artifacts:" >&2
    tail -n 60 "$log" >&2
    failed+=("$t")
    trap - EXIT  # keep the work folder for the artifacts
  else
    echo "fuzz: $t ok: $cov, ${stats}"
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (artifacts: $WORK/artifacts; reproduce with $BUILD/<target> <file>)" >&2
  exit 1
fi
echo "fuzz: all ${#TARGETS[@]} targets ok"
