#!/usr/bin/env bash
# Knowledge distillation against cross-entropy only, on the Brown corpus (by
# hand, not a test): a teacher is trained by a finetune job, then a smaller
# student is trained for the same number of steps from the same init and data
# order, once with KD (a distill job: T=2, alpha=0.5, dense logits) and once
# with cross-entropy only (a finetune job from the same init config and seed:
# the same initial weights and batches), for each of 3 seeds. Every student is then
# evaluated on the same validation slice with `distill-worker eval --teacher`
# (loss, ppl, KL(teacher || student), top-1 agreement).
#
# Sized for ~15 minutes on the 2-core development VM; scale with the variables
# below. Writes OUT/results.jsonl and prints a Markdown table (mean +- std
# over seeds) for docs/experiments.md.
#
#   scripts/prepare_brown.sh && scripts/kd_experiment.sh
set -euo pipefail

W=${WORKER:-./build/worker/distill-worker}
DATA=${DATA:-./data/brown}
OUT=${OUT:-./var/kd_experiment}
SEQ=${SEQ:-128}
BATCH=${BATCH:-8}
TEACHER_STEPS=${TEACHER_STEPS:-400}
STUDENT_STEPS=${STUDENT_STEPS:-200}
SEEDS=${SEEDS:-"1 2 3"}
THREADS=${THREADS:-2}
VAL_TOKENS=${VAL_TOKENS:-65536}
TEMPERATURE=${TEMPERATURE:-2}
ALPHA=${ALPHA:-0.5}

[ -x "$W" ] || { echo "no distill-worker at $W (set WORKER=...)" >&2; exit 1; }
[ -f "$DATA/train.bin" ] && [ -f "$DATA/val.bin" ] || { echo "run scripts/prepare_brown.sh first ($DATA)" >&2; exit 1; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DATA=$(cd "$DATA" && pwd)
# One fixed validation slice for every model (whole uint32 tokens).
head -c $((VAL_TOKENS * 4)) "$DATA/val.bin" >"$OUT/val_slice.bin"

cat >"$OUT/teacher.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 256, "hidden_size": 192,
 "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 6, "num_key_value_heads": 3,
 "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": true,
 "hidden_act": "silu", "initializer_range": 0.02, "torch_dtype": "float32"}
JSON
cat >"$OUT/student.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 256, "hidden_size": 96,
 "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
 "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": true,
 "hidden_act": "silu", "initializer_range": 0.02, "torch_dtype": "float32"}
JSON

train_spec() {  # NAME SPEC_TEXT: writes OUT/NAME.yaml and runs it, timing it
  local name=$1 text=$2
  printf '%s\n' "$text" >"$OUT/$name.yaml"
  local start end
  start=$(date +%s.%N)
  "$W" train --spec "$OUT/$name.yaml" >"$OUT/$name.log" 2>&1 || { tail -5 "$OUT/$name.log" >&2; exit 1; }
  end=$(date +%s.%N)
  echo "$name: $(tail -n 1 "$OUT/$name.log") [$(printf '%.0f' "$(echo "$end - $start" | bc)") s]" >&2
}

WARMUP=${WARMUP:-20}
common_train="micro_batch: $BATCH, lr: 2e-3, min_lr: 2e-4, warmup: $WARMUP, weight_decay: 0.1, clip: 1.0, log_every: 50, threads: $THREADS"

# 1. The teacher (skipped when already trained).
if [ ! -f "$OUT/teacher/model/model.safetensors" ]; then
  train_spec teacher "type: finetune
init: $OUT/teacher.json
data: {train: $DATA/train.bin, seq_len: $SEQ}
train: {steps: $TEACHER_STEPS, seed: 100, $common_train}
output: $OUT/teacher"
fi

# 2. Students: KD and cross-entropy only, per seed.
: >"$OUT/results.jsonl"
for seed in $SEEDS; do
  for mode in kd ce; do
    name="student_${mode}_seed$seed"
    rm -rf "${OUT:?}/$name"
    if [ "$mode" = kd ]; then
      train_spec "$name" "type: distill
teacher: {model: $OUT/teacher/model}
student: {init: $OUT/student.json}
distill: {temperature: $TEMPERATURE, alpha: $ALPHA}
data: {train: $DATA/train.bin, seq_len: $SEQ}
train: {steps: $STUDENT_STEPS, seed: $seed, $common_train}
output: $OUT/$name"
    else
      train_spec "$name" "type: finetune
init: $OUT/student.json
data: {train: $DATA/train.bin, seq_len: $SEQ}
train: {steps: $STUDENT_STEPS, seed: $seed, $common_train}
output: $OUT/$name"
    fi
    r=$("$W" eval --model "$OUT/$name/model" --teacher "$OUT/teacher/model" --tokens "$OUT/val_slice.bin" \
        --seq-len "$SEQ" --threads "$THREADS" | tail -n 1)
    # Mean step and teacher seconds over the run's progress records.
    times=$(python3 -c 'import json,sys
rs=[json.loads(l) for l in open(sys.argv[1])]
rs=[r for r in rs if r.get("event")=="train"]
print(json.dumps({"step_s": sum(r["step_s"] for r in rs)/len(rs), "teacher_s": sum(r.get("teacher_s",0) for r in rs)/len(rs)}))' "$OUT/$name/metrics.jsonl")
    echo "{\"mode\": \"$mode\", \"seed\": $seed, \"times\": $times, \"eval\": $r}" >>"$OUT/results.jsonl"
  done
done

# 3. The table.
python3 - "$OUT/results.jsonl" "$TEACHER_STEPS" "$STUDENT_STEPS" "$TEMPERATURE" "$ALPHA" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
teacher_steps, steps, t, alpha = sys.argv[2:6]
def stat(xs):
    m = sum(xs) / len(xs)
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return m, s
print(f"teacher: {teacher_steps} steps; students: {steps} steps; KD T={t} alpha={alpha}; "
      f"teacher val loss {rows[0]['eval']['teacher_loss']:.4f} (ppl {rows[0]['eval']['teacher_ppl']:.3f}); "
      f"{rows[0]['eval']['tokens']} validation targets")
print()
print("| student | seeds | val loss | val ppl | KL(teacher‖student) | top-1 agreement | step s | of which teacher s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for mode, label in (("kd", f"KD (T={t}, alpha={alpha})"), ("ce", "cross-entropy only")):
    rs = [r for r in rows if r["mode"] == mode]
    cols = [stat([r["eval"][k] for r in rs]) for k in ("loss", "ppl", "kl", "top1_agreement")]
    step = stat([r["times"]["step_s"] for r in rs])
    teacher = stat([r["times"]["teacher_s"] for r in rs])
    print(f"| {label} | {len(rs)} | " + " | ".join(f"{m:.4f} ± {s:.4f}" for m, s in cols) +
          f" | {step[0]:.3f} ± {step[1]:.3f} | {teacher[0]:.3f} |")
print()
for r in rows:
    e = r["eval"]
    print(f"- {r['mode']} seed {r['seed']}: loss {e['loss']:.4f}, ppl {e['ppl']:.3f}, kl {e['kl']:.4f}, "
          f"top1 {e['top1_agreement']:.4f}, step {r['times']['step_s']:.3f} s")
PY
