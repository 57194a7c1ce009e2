#!/usr/bin/env bash
# `make bench`: every benchmark, each against its peer in the same run. Takes ~25 minutes
# on 2 cores. Results and how to read them: docs/BENCHMARKS.md.
# Usage: bench/run_all.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
echo "######## sweeps: 27-point grid vs plain LibTorch loop vs Optuna; no-op dispatch"
bash bench/sweep_bench.sh "$BUILD"
echo
echo "######## probe recipe: 27-point grid vs hand-written LibTorch loop vs Optuna (40 epochs)"
EPOCHS=40 bash bench/probe_bench.sh "$BUILD"
echo
echo "######## embedding: embed sweep end to end (2 workers) + embed job vs plain LibTorch loop"
bash bench/embed_sweep_bench.sh "$BUILD"
echo
echo "######## long training: step checkpoints, resume, distillation vs plain LibTorch"
"$BUILD/bench/checkpoint_bench"
echo
echo "######## vector search in process vs FAISS and hnswlib (python peers)"
bash bench/ann_peers.sh "$BUILD" 1000
echo
echo "######## vector search over HTTP vs in process"
"$BUILD/bench/http_search_bench"
echo
echo "######## cost of metrics on the hot paths (--metrics true vs false, alternated)"
bash bench/metrics_bench.sh "$BUILD" 3
echo
echo "######## multi-worker trials: the MLP 784-2048-2048-10 on 1 worker vs a gang of 2"
bash bench/gang_bench.sh "$BUILD"
echo
echo "######## projectors (linear, mlp2, c_abstractor, perceiver): alignment job vs plain LibTorch loop"
"$BUILD/bench/projector_bench"
echo
echo "######## sparse autoencoder: SAE job vs plain LibTorch loop"
"$BUILD/bench/sae_bench"
