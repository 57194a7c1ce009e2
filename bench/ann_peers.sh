#!/usr/bin/env bash
# Lattice's ann_bench and the FAISS / hnswlib peers (shared/bench/peers_ann.py) in one run,
# single thread, same data and measurement: Fashion-MNIST-784, recall@10, single-query
# and batch QPS. Absolute numbers drift on shared machines; compare ratios within one run.
#
# usage: bench/ann_peers.sh [BUILD_DIR (default build)] [NQ (default 1000)]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-$here/../build}"
nq="${2:-1000}"
shared="${LATTICE_SHARED_DIR:-$here/../../shared}"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive

echo "== Lattice (ann_bench) =="
"$build/bench/ann_bench" --nq "$nq" \
  --gt "$shared/data/fashion-mnist/fashion-mnist-784-euclidean_gt100.ivecs"
echo
echo "== peers (peers_ann.py: FAISS 1.7.3, hnswlib 0.6.2, Debian python) =="
/usr/bin/python3 "$shared/bench/peers_ann.py" all --nq "$nq"
