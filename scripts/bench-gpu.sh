#!/bin/sh
# make bench-gpu: MobileNetV2 and ResNet-50 on a GPU, servingd against in-process
# (tests/bench/gpu.py). Without a GPU it prints "skipped: no GPU" and exits 0.
# BENCH_GPU_PYTHON: an interpreter whose TensorFlow is built for CUDA (default: the venv's).
set -eu
cd "$(dirname "$0")/.."
PYTHON="${BENCH_GPU_PYTHON:-.venv/bin/python}"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    echo "skipped: no GPU (nvidia-smi lists none)"
    exit 0
fi
exec timeout 480 "$PYTHON" -m tests.bench.gpu "$@"
