#!/usr/bin/env bash
# The benchmarks of `make bench`, each side by side with PyTorch in the same
# run (Debian's python3-torch through /usr/bin/python3; without it only
# whorl's figures are printed):
#   1. the seed model's convolutions (build/bench/bench_conv, with the
#      per-layer lines of bench/peer_torch_conv.py)
#   2. end to end: a training step (forward, backward, RMSprop update) at
#      batch 16 and batch-1 inference of the 224x224 and 100x100 seed
#      autoencoders (bench/train_step.lua, with bench/peer_torch_train.py):
#      images/s, the ratio and each side's peak resident memory
# whorl runs with OMP_WAIT_POLICY=passive (spinning idle OpenMP threads
# steal the cores of a shared machine); PyTorch with its own defaults and
# torch.set_num_threads(WH_BENCH_THREADS, default 2).
# Environment: BUILD (default build), WH_BENCH_REPS (best of N, default 5).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
PY=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

torch=0
if "$PY" -c "import torch" 2>/dev/null; then torch=1; else
  echo "(PyTorch not importable by $PY: whorl's figures only)"
fi

echo "== convolutions of the seed model (bench/bench_conv.c)"
if [ "$torch" = 1 ]; then
  "$PY" bench/peer_torch_conv.py >"$tmp/torch_conv.txt"
  OMP_WAIT_POLICY=passive "$BUILD/bench/bench_conv" "$tmp/torch_conv.txt"
else
  OMP_WAIT_POLICY=passive "$BUILD/bench/bench_conv"
fi

echo
echo "== end to end: training steps and inference (bench/train_step.lua)"
peer=()
if [ "$torch" = 1 ]; then
  "$PY" bench/peer_torch_train.py >"$tmp/torch_train.txt"
  peer=("$tmp/torch_train.txt")
fi
OMP_WAIT_POLICY=passive LUA_PATH="lua/?.lua;lua/?/init.lua;models/?.lua;;" \
  LUA_CPATH="$BUILD/?.so;;" lua5.4 bench/train_step.lua "${peer[@]}"

echo
echo "== synthetic fingerprints and damage (bench/bench_synth.c)"
OMP_WAIT_POLICY=passive "$BUILD/bench/bench_synth"

echo
echo "== fingerprint identity: extraction, cylinders, matching (bench/bench_fingerprint.c)"
OMP_WAIT_POLICY=passive OMP_NUM_THREADS=${WH_BENCH_THREADS:-2} "$BUILD/bench/bench_fingerprint"
