#!/usr/bin/env bash
# Training throughput, C++ trainer step (train_bench) against what a user would
# pick instead, transformers' LlamaForCausalLM + torch.optim.AdamW (+ peft for
# LoRA), and beside it a plain PyTorch loop (python_train.py --impl python), all
# on the same torch (.venv's wheel, whose LibTorch the C++ links); prints a
# markdown table for docs/benchmarks.md.
#
# Runs are interleaved REPS times per config, rotating which side goes first,
# and the median tokens/s of each side is reported with the min-max spread of
# the ratios; every raw JSON line goes to stderr. The sgemm peak (1024^3 fp32
# matmul in torch, same thread count) is measured in the same run.
#
# Usage: bench/run_train_bench.sh            (from anywhere)
#   THREADS=2 REPS=5 BUILD_DIR=build-d LORA=0 MALLOC=default bench/run_train_bench.sh
# MALLOC=tuned runs both sides with glibc malloc keeping freed memory
# (GLIBC_TUNABLES mmap/trim thresholds; see docs/benchmarks.md). Needs the
# project's .venv (scripts/setup.sh); do not run beside a build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-d}"
THREADS="${THREADS:-2}"
REPS="${REPS:-5}"
LORA="${LORA:-0}"  # 1: also a LoRA (r=8, q/v) row for the small model
MALLOC="${MALLOC:-default}"
PY="${DISTILL_PYTHON:-$ROOT/.venv/bin/python}"
export OMP_NUM_THREADS="$THREADS"
case "$MALLOC" in
  default) ;;
  tuned) export GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967295 ;;
  *) echo "MALLOC must be default or tuned" >&2; exit 2 ;;
esac

if [[ ! -f "$BUILD_DIR/build.ninja" && ! -f "$BUILD_DIR/Makefile" ]]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$BUILD_DIR" --target train_bench -j2 >/dev/null
BENCH="$BUILD_DIR/bench/train_bench"

# name|config|seq|batch|steps|warmup|extra flags
CASES=(
  "small 0.9M|$ROOT/bench/configs/small_0.9m.json|128|8|40|5|"
  "medium 19.5M|$ROOT/bench/configs/medium_19.5m.json|256|8|6|2|"
)
if [[ "$LORA" == 1 ]]; then
  CASES+=("small 0.9M LoRA|$ROOT/bench/configs/small_0.9m.json|128|8|40|5|--lora")
fi

RESULTS="$(mktemp)"
trap 'rm -f "$RESULTS"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# Best sgemm rate of 5 x 10 products; measured before and after, the higher kept.
sgemm_peak() {
  "$PY" - "$THREADS" <<'EOF'
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
n = 1024
a, b = torch.randn(n, n), torch.randn(n, n)
for _ in range(3):
    torch.mm(a, b)
best = float("inf")
for _ in range(5):
    t = time.perf_counter()
    for _ in range(10):
        torch.mm(a, b)
    best = min(best, (time.perf_counter() - t) / 10)
print(f"{2 * n**3 / best / 1e9:.1f}")
EOF
}
PEAK_BEFORE=$(sgemm_peak)

for ((rep = 1; rep <= REPS; ++rep)); do
  for c in "${CASES[@]}"; do
    IFS='|' read -r name config seq batch steps warmup extra <<<"$c"
    args=(--config "$config" --seq-len "$seq" --batch "$batch" --steps "$steps" --warmup "$warmup"
          --threads "$THREADS" $extra)
    order=(cpp transformers python)
    ((rep % 3 == 2)) && order=(transformers python cpp)
    ((rep % 3 == 0)) && order=(python cpp transformers)
    for impl in "${order[@]}"; do
      if [[ "$impl" == cpp ]]; then
        line=$("$BENCH" "${args[@]}")
      else
        line=$("$PY" "$ROOT/bench/python_train.py" "${args[@]}" --impl "$impl" 2>/dev/null)
      fi
      echo "$name | $line" >&2
      echo "$name|$line" >>"$RESULTS"
    done
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
PEAK_AFTER=$(sgemm_peak)
PEAK=$("$PY" -c "print(max($PEAK_BEFORE, $PEAK_AFTER))")
echo "sgemm peak (1024^3 fp32, $THREADS threads): before $PEAK_BEFORE, after $PEAK_AFTER GFLOP/s" >&2

"$PY" - "$RESULTS" "$PEAK" "$THREADS" "$REPS" "$MALLOC" <<'EOF'
import json, statistics, sys
path, peak, threads, reps, malloc = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
runs, order = {}, []
for raw in open(path):
    name, line = raw.rstrip("\n").split("|", 1)
    r = json.loads(line)
    if name not in order:
        order.append(name)
    runs.setdefault((name, r["impl"]), []).append(r)
median = {}
for key, rs in runs.items():
    tps = statistics.median(r["tokens_per_s"] for r in rs)
    median[key] = dict(rs[0], tokens_per_s=tps, gflops=6.0 * rs[0]["params"] * tps / 1e9)
def ratio_spread(name, other):
    # Per-repetition ratios (runs of one repetition ran back to back).
    rs = [c["tokens_per_s"] / o["tokens_per_s"] for c, o in zip(runs[(name, "cpp")], runs[(name, other)])]
    return f"{min(rs):.2f}-{max(rs):.2f}"
print(f"Median of {reps} interleaved runs each (ratio spread: min-max over the runs); {threads} threads; "
      f"malloc {malloc}; sgemm peak {peak:.1f} GFLOP/s.\n")
print("| config | params | seq | batch | transformers tok/s | plain PyTorch tok/s | C++ tok/s "
      "| C++ / transformers | C++ / plain | C++ GFLOP/s (% peak) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for name in order:
    hf, py, cc = median[(name, "transformers")], median[(name, "python")], median[(name, "cpp")]
    print(f"| {name} | {cc['params']:,} | {cc['seq_len']} | {cc['batch']} "
          f"| {hf['tokens_per_s']:,.0f} | {py['tokens_per_s']:,.0f} | {cc['tokens_per_s']:,.0f} "
          f"| {cc['tokens_per_s'] / hf['tokens_per_s']:.2f}x ({ratio_spread(name, 'transformers')}) "
          f"| {cc['tokens_per_s'] / py['tokens_per_s']:.2f}x ({ratio_spread(name, 'python')}) "
          f"| {cc['gflops']:.1f} ({100 * cc['gflops'] / peak:.0f}%) |")
EOF
