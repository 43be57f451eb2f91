#!/usr/bin/env bash
# The GPU checks, in one run on the GPU machine (Ubuntu 24.04, pip LibTorch
# with CUDA, NCCL, Open MPI; no gRPC/protobuf/abseil/yaml-cpp/...: those come
# as Debian .debs from scripts/fetch_gpu_debs.sh in .deps/debs, so carry
# `.deps`; unpacked under /opt/deb, never into /), and the chat template
# engine from scripts/fetch_jinja.sh in third_party/llama-jinja, so carry
# `third_party/llama-jinja` too. No network there.
#
# Builds the worker, its tests and benchmarks against pip LibTorch, then runs
# each check as a step: output to $OUT/<step>.log (its tail to stdout), exit
# code and seconds to $OUT/summary.txt; a failing step does not stop the
# others, and the build keeps going past errors (-k) so partial results come
# back. Steps: nccl (NCCL backend tests, 1 rank), nccl2 (2 ranks sharing the
# GPU), reference + models (model tests, CUDA ones included), bf16_train (a
# CUDA fine-tune with bf16 weights, fp32 master weights and activation
# checkpointing, stopped and resumed), dist_bench (bench/gpu_dist_bench.sh,
# when present). Aim: under 7 minutes on 16 cores.
#
#   OUT=dir bash scripts/gpu_check.sh                     (all steps)
#   STEPS="nccl nccl2" OUT=dir bash scripts/gpu_check.sh  (the build, then these)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
OUT="${OUT:-$ROOT/gpu-out}"
DEB=${DEB_ROOT:-/opt/deb}
BUILD=${BUILD_DIR:-$ROOT/build-gpu}
STEPS=${STEPS:-"nccl nccl2 models bf16_train dist_bench"}
JOBS=${JOBS:-$(nproc)}
mkdir -p "$OUT" "$DEB"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
START=$(date +%s)

# step NAME TIMEOUT_S COMMAND...: one check; never stops the script.
step() {
  local name=$1 limit=$2 t0 rc
  shift 2
  t0=$(date +%s)
  echo "== $name (at $((t0 - START)) s): $*"
  if declare -F "$1" >/dev/null; then
    "$@" >"$OUT/$name.log" 2>&1  # A function of this script: no timeout.
  else
    timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  fi
  rc=$?
  printf '%-11s rc=%-3s %4s s%s\n' "$name" "$rc" "$(($(date +%s) - t0))" \
    "$([ "$rc" = 124 ] && echo " (timed out after $limit s)")" | tee -a "$SUMMARY"
  tail -n "${TAIL:-15}" "$OUT/$name.log"
}
want() { [[ " $STEPS " == *" $1 "* ]]; }

# The .debs under $DEB. Their .pc files name /usr: pointed at $DEB/usr. A
# library the machine has already (same soname: libssl, zlib, libcurl...)
# is used from the machine: the Debian copy becomes a link to it, so
# LD_LIBRARY_PATH adds only libraries the machine lacks.
unpack_debs() {
  local lib=$DEB/usr/lib/x86_64-linux-gnu f so sys n=0
  for f in .deps/debs/*.deb; do
    [ -f "$f" ] || { echo "no .deps/debs/*.deb: run scripts/fetch_gpu_debs.sh and carry .deps"; return 1; }
    dpkg -x "$f" "$DEB" || return 1
    n=$((n + 1))
  done
  echo "unpacked $n .debs into $DEB"
  sed -i -E "s#^([A-Za-z_]+[[:space:]]*=[[:space:]]*)/usr(/|\$)#\1$DEB/usr\2#" \
    "$lib"/pkgconfig/*.pc "$DEB"/usr/share/pkgconfig/*.pc 2>/dev/null
  for f in "$lib"/*.so.*; do
    if [ ! -f "$f" ] || [ -L "$f" ]; then continue; fi
    so=$(objdump -p "$f" 2>/dev/null | awk '$1 == "SONAME" {print $2}')
    [ -n "$so" ] || continue
    for sys in /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu; do
      if [ -e "$sys/$so" ]; then
        ln -sf "$sys/$so" "$f"
        ln -sf "$sys/$so" "$lib/$so"
        echo "from the machine: $so"
        break
      fi
    done
  done
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  echo "$(nproc) cores; $(python3 -c 'import torch;print("torch", torch.__version__, "cuda", torch.version.cuda, "nccl", torch.cuda.nccl.version())' 2>&1)"
} | tee "$OUT/gpu.txt" "$SUMMARY"

[ -f third_party/llama-jinja/.stamp ] || [ -d third_party/llama-jinja/common ] ||
  echo "no third_party/llama-jinja: run scripts/fetch_jinja.sh here and carry it" | tee -a "$SUMMARY"
step debs 120 unpack_debs
export PATH=$DEB/usr/bin:$PATH
export LD_LIBRARY_PATH=$DEB/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PKG_CONFIG_PATH=$DEB/usr/lib/x86_64-linux-gnu/pkgconfig:$DEB/usr/share/pkgconfig
TORCH_PREFIX=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
# CMAKE_ARGS: more configure arguments (word-split).
read -r -a EXTRA <<<"${CMAKE_ARGS:-}"
command -v pkg-config >/dev/null || EXTRA+=(-DPKG_CONFIG_EXECUTABLE="$DEB/usr/bin/pkgconf")
GEN=${GENERATOR:-$(command -v ninja >/dev/null && echo Ninja || echo "Unix Makefiles")}
KEEP_GOING=(-k)
[ "$GEN" = Ninja ] && KEEP_GOING=(-k 0)

step configure 180 cmake -S . -B "$BUILD" -G "$GEN" -DCMAKE_BUILD_TYPE=Release \
  -DDISTILL_PYTHON="$(command -v python3)" \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$DEB/usr" -DProtobuf_PROTOC_EXECUTABLE="$DEB/usr/bin/protoc" \
  -DDISTILL_BUILD_BENCH=ON "${EXTRA[@]}"
grep -E "distill:|NCCL|CMake Error" "$OUT/configure.log" | tee -a "$SUMMARY"
read -r -a TARGETS <<<"${TARGETS:-distill-worker mpi_tests worker_tests train_bench kd_loss_bench}"
step build "${BUILD_TIMEOUT:-420}" cmake --build "$BUILD" -j"$JOBS" --target "${TARGETS[@]}" -- "${KEEP_GOING[@]}"
grep -E "error|Error [0-9]" "$OUT/build.log" | head -20 >"$OUT/build-errors.txt"
# Which NCCL / CUDA runtime / Debian libraries the worker loads.
ldd "$BUILD/worker/distill-worker" 2>&1 | grep -E "nccl|cudart|torch_cuda|$DEB|not found" >"$OUT/ldd.txt"
grep -E "nccl|not found" "$OUT/ldd.txt" | tee -a "$SUMMARY"

MPIRUN=(mpirun --allow-run-as-root --bind-to none --mca btl_vader_single_copy_mechanism none -x OMP_NUM_THREADS=1)
if want nccl; then
  step nccl 240 "${MPIRUN[@]}" -np 1 "$BUILD/tests/mpi_tests" --gtest_filter='Nccl*'
fi
if want nccl2; then
  # NCCL is expected to refuse two ranks on one GPU; the test accepts a
  # prompt refusal or a working communicator (its log says which).
  step nccl2 180 "${MPIRUN[@]}" -np 2 "$BUILD/tests/mpi_tests" --gtest_filter='NcclTwoRanks*'
fi
if want models; then
  step reference 180 python3 tests/reference/make_reference.py --out "$BUILD/reference"
  # with_test_env.sh: the environment ctest gives the tests (reference dir...).
  step models 300 "$BUILD/tests/with_test_env.sh" "$BUILD/tests/worker_tests" \
    --gtest_filter='LlamaCuda*:LlamaReference*:AdamWReference*:Lora*:HfIo*:ActivationCheckpoint*'
fi
if want bf16_train; then
  step bf16_train 240 bash scripts/gpu_bf16_train.sh "$BUILD/worker/distill-worker" "$OUT/bf16_train"
fi
if want dist_bench && [ -f bench/gpu_dist_bench.sh ]; then
  step dist_bench 420 env WORKER="$BUILD/worker/distill-worker" OUT="$OUT" bash bench/gpu_dist_bench.sh
fi
echo "total $(($(date +%s) - START)) s" | tee -a "$SUMMARY"
