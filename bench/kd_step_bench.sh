#!/usr/bin/env bash
# Colocated KD step time against the plain fine-tuning step (issue 4 target:
# KD step <= plain step + teacher forward + 10%), side by side in one run.
#
# For each vocabulary size, a random-init teacher (4 x 192) and student
# (2 x 96) are made with `distill-worker init`; then, interleaved REPS times,
# a finetune job of the student and distill jobs with dense, topk and hidden
# transport run STEPS steps each on the same data. The per-step wall time
# (step_s) and teacher time (teacher_s) come from each job's metrics.jsonl,
# median over its progress records after the first (warm-up). Prints a
# Markdown table for docs/benchmarks.md: overhead = kd_step / (plain_step +
# teacher_s), the target being <= 1.10.
#
#   bench/kd_step_bench.sh            (after scripts/build.sh; data from scripts/prepare_brown.sh)
#   WORKER=build/worker/distill-worker STEPS=40 REPS=2 THREADS=2 VOCABS="256 32000" bench/kd_step_bench.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
W=${WORKER:-$ROOT/build/worker/distill-worker}
DATA=${DATA:-$ROOT/data/brown/train.bin}
STEPS=${STEPS:-40}
REPS=${REPS:-2}
THREADS=${THREADS:-2}
VOCABS=${VOCABS:-"256 32000"}
SEQ=${SEQ:-128}
BATCH=${BATCH:-8}
[ -x "$W" ] || { echo "no distill-worker at $W (set WORKER=...)" >&2; exit 1; }
[ -f "$DATA" ] || { echo "no token shard $DATA (run scripts/prepare_brown.sh or set DATA=...)" >&2; exit 1; }
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

config() {  # VOCAB HIDDEN INTER LAYERS HEADS KV
  cat <<JSON
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": $1, "hidden_size": $2,
 "intermediate_size": $3, "num_hidden_layers": $4, "num_attention_heads": $5, "num_key_value_heads": $6,
 "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false,
 "hidden_act": "silu", "initializer_range": 0.02, "torch_dtype": "float32"}
JSON
}

median_times() {  # METRICS -> "step_s teacher_s"
  /usr/bin/python3 - "$1" <<'PY'
import json, statistics, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
rs = [r for r in rs if r.get("event") == "train"][1:]
print(statistics.median(r["step_s"] for r in rs), statistics.median(r.get("teacher_s", 0.0) for r in rs))
PY
}

RESULTS="$OUT/results.txt"
for v in $VOCABS; do
  config "$v" 192 512 4 6 3 >"$OUT/teacher_$v.json"
  config "$v" 96 256 2 4 2 >"$OUT/student_$v.json"
  "$W" init --config "$OUT/teacher_$v.json" --out "$OUT/teacher_$v" --seed 1 >/dev/null
  common="data: {train: $DATA, seq_len: $SEQ}
train: {steps: $STEPS, micro_batch: $BATCH, lr: 1e-3, log_every: 5, threads: $THREADS, seed: 1}
checkpoint: {every: 0, keep: 1, resume: false}"
  for ((rep = 1; rep <= REPS; ++rep)); do
    for mode in plain dense topk hidden; do
      dir="$OUT/run_${v}_${mode}_$rep"
      if [ "$mode" = plain ]; then
        printf 'type: finetune\ninit: %s\n%s\noutput: %s\n' "$OUT/student_$v.json" "$common" "$dir" >"$dir.yaml"
      else
        printf 'type: distill\nteacher: {model: %s}\nstudent: {init: %s}\ndistill: {logits: %s, top_k: 64}\n%s\noutput: %s\n' \
          "$OUT/teacher_$v/" "$OUT/student_$v.json" "$mode" "$common" "$dir" >"$dir.yaml"
      fi
      "$W" train --spec "$dir.yaml" >"$dir.log" 2>&1 || { tail -5 "$dir.log" >&2; exit 1; }
      echo "$v $mode $(median_times "$dir/metrics.jsonl")" | tee -a "$RESULTS" >&2
    done
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

/usr/bin/python3 - "$RESULTS" "$THREADS" "$STEPS" "$REPS" <<'PY'
import statistics, sys
path, threads, steps, reps = sys.argv[1:5]
runs = {}
for line in open(path):
    v, mode, step, teacher = line.split()
    runs.setdefault((v, mode), []).append((float(step), float(teacher)))
print(f"Median per-step times, {steps} steps per job, {reps} interleaved repetitions, {threads} threads; "
      "teacher 4 x 192, student 2 x 96, seq 128, micro-batch 8.\n")
print("| vocab | transport | plain step ms | KD step ms | teacher ms | KD / (plain + teacher) |")
print("|---:|---|---:|---:|---:|---:|")
for v in dict.fromkeys(k[0] for k in runs):
    plain = statistics.median(s for s, _ in runs[(v, "plain")])
    for mode in ("dense", "topk", "hidden"):
        step = statistics.median(s for s, _ in runs[(v, mode)])
        teacher = statistics.median(t for _, t in runs[(v, mode)])
        print(f"| {v} | {mode} | {1e3 * plain:.1f} | {1e3 * step:.1f} | {1e3 * teacher:.1f} "
              f"| {step / (plain + teacher):.3f} |")
PY
