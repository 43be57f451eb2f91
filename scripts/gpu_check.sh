#!/usr/bin/env bash
# The GPU checks, in one run on the GPU machine (Ubuntu 24.04, pip LibTorch
# with CUDA, no protobuf/abseil/yaml-cpp: those come as Debian .debs from
# scripts/fetch_gpu_debs.sh, unpacked under /opt/deb, never into /).
# Builds against pip LibTorch, runs the model tests (CUDA ones included) and
# the training benchmark; results go to $OUT (or ./gpu-out).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT" /opt/deb
for f in .deps/debs/*.deb; do dpkg -x "$f" /opt/deb; done
export PATH=/opt/deb/usr/bin:$PATH
export LD_LIBRARY_PATH=/opt/deb/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
TORCH_PREFIX=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
cmake -S . -B build-gpu -G "${GENERATOR:-Unix Makefiles}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;/opt/deb/usr" -DProtobuf_PROTOC_EXECUTABLE=/opt/deb/usr/bin/protoc \
  -DDISTILL_BUILD_BENCH=ON 2>&1 | tee "$OUT/configure.log" | tail -5
cmake --build build-gpu -j"$(nproc)" --target worker_tests train_bench distill-worker 2>&1 | tee "$OUT/build.log" | tail -5
python3 tests/reference/make_reference.py --out build-gpu/reference
DISTILL_REFERENCE_DIR=$PWD/build-gpu/reference ./build-gpu/tests/worker_tests \
  --gtest_filter='LlamaCuda*:LlamaReference*:AdamWReference*:Lora*:HfIo*' 2>&1 | tee "$OUT/tests.log" | tail -20
