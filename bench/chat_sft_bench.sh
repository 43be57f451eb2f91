#!/usr/bin/env bash
# Instruction fine-tuning throughput, side by side in one run: our
# `distill-worker train` on prompt/completion data (completion-only loss) with
# packing (the default) and one example per row, against TRL's SFTTrainer on
# the same file, config and tokenizer (bench/trl_sft.py: padding per batch,
# completion-only loss; TRL packs only with a padding-free attention kernel,
# which the CPU lacks). One epoch over N Brown conversations
# (scripts/prepare_brown_chat.sh, make_brown_chat.py --format
# prompt_completion) with the real Qwen3 tokenizer, a Qwen3-shaped model
# (examples/qwen3_chat_student.json), fp32, the same threads on both sides,
# REPS interleaved repetitions. Prints examples/s and real (non-padding)
# tokens/s per run, and the ratios against TRL (median and range).
#
#   bench/chat_sft_bench.sh     (after scripts/build.sh and scripts/prepare_brown_chat.sh)
#   N=256 REPS=3 THREADS=2 BATCH=8 SEQ=256 bench/chat_sft_bench.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
W=${WORKER:-$ROOT/build/worker/distill-worker}
PY=${PYTHON:-$ROOT/.venv/bin/python}
N=${N:-256}
REPS=${REPS:-3}
THREADS=${THREADS:-2}
BATCH=${BATCH:-8}
SEQ=${SEQ:-256}
CONFIG=$ROOT/examples/qwen3_chat_student.json
TOK=$ROOT/data/qwen3_tokenizer
[ -x "$W" ] || { echo "no distill-worker at $W" >&2; exit 1; }
[ -f "$TOK/tokenizer.json" ] || { echo "no $TOK: run scripts/prepare_brown_chat.sh" >&2; exit 1; }
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
"$PY" "$ROOT/scripts/make_brown_chat.py" --brown "$ROOT/data/brown" --format prompt_completion --n "$N" \
  --out "$OUT/pc.jsonl" >/dev/null
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; $N examples, batch $BATCH, seq $SEQ, $THREADS threads" >&2

# ours PACK: one epoch (steps = ceil(rows / BATCH)); prints examples/s and real tokens/s.
ours() {
  local pack=$1 dir="$OUT/ours_$1_$RANDOM"
  # The row count (and real slots) come from eval's data line.
  "$W" eval --model "$OUT/init" --data "$OUT/pc.jsonl" --format prompt_completion --tokenizer "$TOK" \
    --seq-len "$SEQ" --packing="$pack" --batch 64 --threads "$THREADS" 2>"$OUT/eval.err" >/dev/null
  local rows real
  rows=$(sed -n 's/.* \([0-9]*\) rows of .*/\1/p' "$OUT/eval.err")
  real=$(sed -n 's/.*efficiency \([0-9.]*\)%.*/\1/p' "$OUT/eval.err")
  local steps=$(((rows + BATCH - 1) / BATCH))
  cat >"$dir.yaml" <<YAML
type: finetune
model: $OUT/init
method: full
data: {format: prompt_completion, tokenizer: $TOK, train: [$OUT/pc.jsonl], seq_len: $SEQ, packing: $pack}
train: {steps: $steps, micro_batch: $BATCH, lr: 2e-3, warmup: 0, schedule: constant, clip: 1.0, log_every: $steps, threads: $THREADS, device: cpu}
checkpoint: {every: 0, keep: 1}
output: $dir
YAML
  "$W" train --spec "$dir.yaml" >"$dir.log" 2>&1 || { tail -5 "$dir.log" >&2; return 1; }
  # The training loop's own time (elapsed_s of the last step: no model load or
  # tokenization, as TRL's train() excludes its dataset preparation).
  "$PY" -c "
import json,sys
n,rows,seq,eff=int(sys.argv[1]),int(sys.argv[2]),int(sys.argv[3]),float(sys.argv[4])
s=[json.loads(l) for l in open(sys.argv[5]) if '\"train\"' in l][-1]['elapsed_s']
print(json.dumps({'impl':'ours packing=$pack','examples':n,'seconds':s,'examples_per_s':n/s,'real_tokens_per_s':rows*seq*eff/100/s,'rows':rows,'efficiency':eff}))
" "$N" "$rows" "$SEQ" "$real" "$dir/metrics.jsonl"
}

"$W" init --config "$CONFIG" --out "$OUT/init" --seed 0 >/dev/null
cp "$TOK"/tokenizer*.json "$OUT/init/"
for rep in $(seq 1 "$REPS"); do
  ours true | tee -a "$OUT/results.jsonl"
  ours false | tee -a "$OUT/results.jsonl"
  "$PY" "$ROOT/bench/trl_sft.py" --config "$CONFIG" --tokenizer "$TOK" --data "$OUT/pc.jsonl" --seq-len "$SEQ" \
    --batch "$BATCH" --threads "$THREADS" 2>"$OUT/trl.err" | tail -n 1 | tee -a "$OUT/results.jsonl" ||
    { tail -5 "$OUT/trl.err" >&2; exit 1; }
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$PY" - "$OUT/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["impl"], []).append(r)
trl = by["trl"]
print("| run | examples/s (median, range) | real tokens/s (median) | vs TRL examples/s (median, range) |")
print("|---|---|---|---|")
for impl, rs in by.items():
    eps = [r["examples_per_s"] for r in rs]
    ratios = [r["examples_per_s"] / t["examples_per_s"] for r, t in zip(rs, trl)]
    print(f"| {impl} | {statistics.median(eps):.1f} ({min(eps):.1f}-{max(eps):.1f}) | "
          f"{statistics.median(r['real_tokens_per_s'] for r in rs):.0f} | "
          f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |")
PY
