#!/usr/bin/env bash
# Installs every Debian package Lattice needs to build, test, demo and benchmark.
# Idempotent: does nothing when everything is already installed.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git zlib1g-dev
  libtorch-dev libfaiss-dev librocksdb-dev libopenmpi-dev openmpi-bin
  prometheus-cpp-dev libboost-all-dev libgtest-dev libyaml-cpp-dev nlohmann-json3-dev
  libcli11-dev libspdlog-dev libhnswlib-dev libopenblas0-pthread libstb-dev
  prometheus dataset-fashion-mnist curl bc
  slurm-wlm munge   # tests/integration/slurm_test.sh runs deploy/slurm/lattice.sbatch under a real Slurm
  # scripts/fuzz.sh: clang + libFuzzer / sanitizer runtimes, OpenMP for FAISS under clang,
  # llvm-symbolizer for readable crash reports
  clang-14 libclang-rt-14-dev libomp-14-dev llvm-14
  python3-torch python3-faiss python3-hnswlib python3-optuna python3-sklearn python3-numpy
  python3-yaml   # bench/optuna_probe_grid.py reads the probe spec
  chromium   # tests/integration/report_page_test.cc: the sweep report page in headless Chromium
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${#missing[@]} Debian package(s): ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# LibTorch and FAISS call libblas.so.3: make it OpenBLAS (~25x faster than reference BLAS).
blas=$(update-alternatives --query libblas.so.3-x86_64-linux-gnu 2>/dev/null | awk '/^Value:/{print $2}')
case "$blas" in
  *openblas*) ;;
  *) echo "setup: selecting OpenBLAS for libblas.so.3"
     ${SUDO:-} update-alternatives --set libblas.so.3-x86_64-linux-gnu \
       /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 ;;
esac
