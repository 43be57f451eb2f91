#!/usr/bin/env bash
# GPU machine (one GPU): student tokens/s with the teacher on a dedicated rank
# sharing the GPU (MPI backend, host staging) against the colocated teacher,
# through bench/dist_bench.sh on random byte tokens. Called by
# scripts/gpu_check.sh after the build; WORKER and OUT come from there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
W=${WORKER:-$ROOT/build-gpu/worker/distill-worker}
D=/tmp/gpu-dist  # the token file stays off $OUT (not worth bringing back)
mkdir -p "$D"
python3 -c "import numpy as np; np.random.default_rng(0).integers(0, 256, size=4_000_000, dtype=np.uint32).tofile('$D/train.bin')"
WORKER=$W DATA=$D/train.bin BENCH_DIR=$D/runs DEVICE=cuda PRECISION=bf16 STEPS=${STEPS:-24} SEQ=512 BATCH=8 \
  TEACHER="2048 5632 16 16 8" STUDENT="1024 2816 8 8 4" LAYOUTS="1+0 1+1" BUCKETS="" \
  bash "$ROOT/bench/dist_bench.sh"
