#!/usr/bin/env bash
# Memory scale (issue 16), side by side in one run per rank count: plain data
# parallelism (zero 0), ZeRO-1, ZeRO-2 (fp32), plain DP and ZeRO-2 with
# activation checkpointing, bf16 weights with zero 0 and ZeRO-1, interleaved
# over REPS repetitions by bench/zero_bench.cc under mpirun for S = 2 and 4
# ranks, threads per rank explicit and equal for every setting. Prints:
#  (1) bytes per trainable parameter per rank, persistent after a step and at
#      the step's peak, measured by the counting allocator, against the formula;
#  (2) step time (max over ranks per step, median) against plain DP, with the
#      spread of the per-repetition ratios;
#  (3) the largest Llama-shaped model that fits 80 GB and 141 GB per rank at
#      S = 8, from the measured persistent bytes/param (a + b/S fitted to S = 2
#      and 4) plus the measured activations per token.
# On a 2-core VM 4 ranks oversubscribe the cores: read ratios, not speed
# (docs/benchmarks.md).
#
#   bench/zero_bench.sh    (after scripts/build.sh)
#   RANKS="2 4" REPS=3 STEPS=3 MODEL="640 8 10 1728 8192" SEQ=128 MICRO=2 bench/zero_bench.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
B=${BENCH:-$ROOT/build/bench/zero_bench}
RANKS=${RANKS:-"2 4"}
REPS=${REPS:-3}
WARMUP=${WARMUP:-1}
STEPS=${STEPS:-3}
SEQ=${SEQ:-128}
MICRO=${MICRO:-2}
# HIDDEN LAYERS HEADS INTER VOCAB
MODEL=${MODEL:-"640 8 10 1728 8192"}
SETTINGS=${SETTINGS:-zero0,zero1,zero2,zero0_ckpt,zero2_ckpt,bf16_zero0,bf16_zero1}
[ -x "$B" ] || { echo "no zero_bench at $B (build it: ninja -C build zero_bench)" >&2; exit 1; }
OUT=${BENCH_DIR:-$(mktemp -d)}
mkdir -p "$OUT"
read -r HIDDEN LAYERS HEADS INTER VOCAB <<<"$MODEL"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --bind-to none -x OMP_WAIT_POLICY=PASSIVE)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB, CPU" >&2
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# REPORT_ONLY=1 BENCH_DIR=DIR: the tables again from DIR's logs.
if [ -z "${REPORT_ONLY:-}" ]; then
  for s in $RANKS; do
    # Cores split evenly over the ranks (at least one thread each), the same
    # for every setting of the run.
    threads=$(( $(nproc) / s )); [ $threads -ge 1 ] || threads=1
    echo "S=$s: $threads threads/rank, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    "${MPIRUN[@]}" -x OMP_NUM_THREADS=$threads -np "$s" "$B" --threads=$threads --reps=$REPS \
      --warmup=$WARMUP --steps=$STEPS --seq=$SEQ --micro=$MICRO --hidden=$HIDDEN --layers=$LAYERS \
      --heads=$HEADS --inter=$INTER --vocab=$VOCAB --settings=$SETTINGS >"$OUT/zero_$s.log" 2>&1 ||
      { echo "S=$s failed:" >&2; tail -5 "$OUT/zero_$s.log" >&2; exit 1; }
    grep -v '^RESULT' "$OUT/zero_$s.log" >&2
  done
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

cat "$OUT"/zero_*.log | grep '^RESULT ' | cut -d' ' -f2- >"$OUT/results.jsonl"
/usr/bin/python3 - "$OUT/results.jsonl" "$STEPS" "$HIDDEN" "$LAYERS" "$VOCAB" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
steps, hidden, layers, vocab = (int(a) for a in sys.argv[2:6])
order = []
for r in rows:
    if r["setting"] not in order: order.append(r["setting"])
ranks = sorted({r["ranks"] for r in rows})
by = {(r["setting"], r["ranks"]): r for r in rows}

def formula(r, s):  # persistent bytes per trainable parameter per rank
    w = 2 if r["bf16"] else 4
    if r["zero"] == 0: return (w + w + w + (12 if r["bf16"] else 8), "%d" % (3 * w + (12 if r["bf16"] else 8)))
    if r["zero"] == 1:
        st = 12 if r["bf16"] else 8
        return (3 * w + st / s, "%d + %d/S" % (3 * w, st))
    return (w + 12 / s, "%d + 12/S" % w)  # fp32 chunk 4/S + moments 8/S (+ master 4/S for bf16, not run)

print("\n### Bytes per trainable parameter per rank\n")
print("| setting | S | params | formula | = | persistent (measured) | after setup | peak in a step |")
print("|---|---|---|---|---|---|---|---|")
for name in order:
    for s in ranks:
        r = by.get((name, s))
        if not r: continue
        n = r["params"]; f, ftext = formula(r, s)
        print("| %s | %d | %.1fM | %s | %.2f | %.2f | %.2f | %.2f |" % (name, s, n / 1e6, ftext, f,
              r["persistent"] / n, r["setup"] / n, r["peak"] / n))

def reps_medians(r):
    sec = r["seconds"]
    return [statistics.median(sec[i:i + steps]) for i in range(0, len(sec), steps)]

print("\n### Step time against plain DP (zero0), max over ranks per step, median\n")
print("| setting | " + " | ".join("S=%d ms | x zero0 | [min, max] of reps" % s for s in ranks) + " |")
print("|---|" + "---|---|---|" * len(ranks))
for name in order:
    cells = []
    for s in ranks:
        r, base = by.get((name, s)), by.get(("zero0", s))
        if not r or not base: cells.append("| | "); continue
        med, bmed = statistics.median(r["seconds"]), statistics.median(base["seconds"])
        # Repetition k of a setting and of zero0 ran back to back (interleaved).
        ratios = [a / b for a, b in zip(reps_medians(r), reps_medians(base))]
        cells.append("%.0f | %.3f | [%.3f, %.3f]" % (1e3 * med, med / bmed, min(ratios), max(ratios)))
    print("| %s | %s |" % (name, " | ".join(cells)))

# (3) The largest model in a budget. Model family: Llama-shaped, D = 128 L,
# I = 8/3 D, V = 32000, untied embeddings; per rank seq 2048 x micro 1.
# Per setting, bytes/param at S = 8 from a + b/S through the measured rank
# counts, for the persistent bytes and for the step peak. Activations per
# token, from the zero-0 setting of the same dtype without checkpointing (its
# step peak less its persistent bytes): the logits phase c V (LogitsPeak:
# logits, their gradient, the softmax) plus a L D for the layers' saved
# activations. With checkpointing a layer keeps only its input (w = 4 or 2
# bytes per hidden unit) and the peak is the larger of the logits phase and
# one layer's recompute: w L D + max(c V, a D); the script checks that
# prediction against the measured checkpointed peak. A model fits when both
# persistent + activations and the measured peak bytes/param times N (a peak
# that grows with the model, not the activations, as ZeRO-2's does) fit.
S8, V, T = 8, 32000, 2048
def params_of(L):
    D = 128 * L; I = 8 * D / 3
    return L * (4 * D * D + 3 * D * I) + 2 * V * D
def act_per_token(r, c, L, D, Vo):  # c: the plain zero-0 setting of r's dtype
    a = max(0.0, c["peak"] - c["persistent"] - c["logits_peak"]) / (c["tokens"] * layers * hidden)
    cv = c["logits_peak"] / c["tokens"] / vocab
    w = 2 if r["bf16"] else 4
    return w * L * D + max(cv * Vo, a * D) if r["ckpt"] else a * L * D + cv * Vo
def at_s8(rs, key):  # bytes/param of `key` at S8, a + b/S through the measured points
    pts = [(1.0 / r["ranks"], r[key] / r["params"]) for r in rs]
    if len(pts) < 2: return pts[0][1]
    (x0, y0), (x1, y1) = pts[0], pts[-1]
    b = (y1 - y0) / (x1 - x0)
    return y0 - b * x0 + b / S8
print("\n### Largest model per rank, S = %d ranks, %d tokens per rank (seq %d x micro 1), V = %d\n" % (S8, T, T, V))
print("| setting | persistent B/param at S=8 | peak B/param at S=8 | act. MB at bench size: predicted / measured | 80 GB | 141 GB |")
print("|---|---|---|---|---|---|")
for name in order:
    rs = [by[(name, s)] for s in ranks if (name, s) in by]
    if not rs: continue
    bpp, pbpp = at_s8(rs, "persistent"), at_s8(rs, "peak")
    r = rs[-1]
    c = by.get((("bf16_" if r["bf16"] else "") + "zero0", r["ranks"]))
    d = by.get((("bf16_" if r["bf16"] else "") + "zero0" + ("_ckpt" if r["ckpt"] else ""), r["ranks"]))
    if not c or not d: continue
    predicted = r["tokens"] * act_per_token(r, c, layers, hidden, vocab)
    measured = d["peak"] - d["persistent"]
    def fits(L, budget):
        n = params_of(L)
        return max(bpp * n + T * act_per_token(r, c, L, 128 * L, V), pbpp * n) <= budget
    cells = []
    for budget in (80e9, 141e9):
        lo, hi = 0.0, 512.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if fits(mid, budget) else (lo, mid)
        cells.append("%.1fB (L=%.0f, D=%.0f)" % (params_of(lo) / 1e9, lo, 128 * lo))
    print("| %s | %.2f | %.2f | %.1f / %.1f | %s |" % (name, bpp, pbpp, predicted / 1e6, measured / 1e6,
          " | ".join(cells)))
PY
