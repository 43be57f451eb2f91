#!/usr/bin/env bash
# Instruction data end to end, against transformers on the real Qwen3
# tokenizer and chat template (tests/integration/instruction_reference.py
# makes tiny Qwen3 models, chat and prompt/completion data, and computes
# every number in float64, example by example, with labels -100 outside the
# responses):
#   - `eval --format chat|prompt_completion`: loss over the response targets,
#     their count, and with --teacher KL, top-1 agreement and the teacher's
#     loss, packed and unpacked (--packing=false) alike;
#   - a distill job on chat data: its first step's ce, kd and feature losses
#     count the responses only (one micro-batch holds every packed row, so
#     the step's means are the dataset's), and the job trains on;
#   - bad input: one clear error line naming the file and line.
# Losses 1e-5 relative (fp32 against float64), KL 1e-5 absolute.
source "$(dirname "$0")/lib.sh"
SRC="${DISTILL_SOURCE_DIR:?}"
QWEN3="${DISTILL_REFERENCE_DIR:?}/qwen3_tokenizer"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1
lib_init instruction
L=64
bash "$SRC/scripts/qwen3_tokenizer.sh" "$QWEN3" >/dev/null || die "the Qwen3 tokenizer"
REFPY="$SRC/tests/integration/instruction_reference.py"
$PY "$REFPY" make --tokenizer "$QWEN3" --out "$T" 2>"$T/make.log" || die "reference models: $(tail -3 "$T/make.log")"
$PY "$REFPY" reference --out "$T" --seq-len $L >"$T/ref.json" 2>"$T/ref.log" ||
  die "reference numbers: $(tail -3 "$T/ref.log")"

# check GOT_JSON FORMAT [KEYS...]: GOT's tokens and loss (and KEYS) against the reference.
check() {
  $PY - "$1" "$T/ref.json" "$2" "${@:3}" <<'PY'
import json, sys
got, ref, fmt, keys = json.loads(sys.argv[1]), json.load(open(sys.argv[2]))[sys.argv[3]], sys.argv[3], sys.argv[4:]
assert got["tokens"] == ref["tokens"], ("tokens", got, ref)
for k in ["loss"] + keys:
    tol = 1e-5 if k in ("kl", "top1_agreement") else 1e-5 * abs(ref[k])
    assert abs(got[k] - ref[k]) <= tol, (k, got[k], ref[k])
PY
}

# 1. Eval over the responses, packed and one example per row.
for fmt in chat prompt_completion; do
  data="$T/$([ $fmt = chat ] && echo chat || echo pc).jsonl"
  for packing in true false; do
    got=$("$W" eval --model "$T/student" --data "$data" --format $fmt --tokenizer "$QWEN3" --seq-len $L \
      --batch 3 --packing=$packing 2>"$T/eval.err" | tail -n 1)
    check "$got" $fmt && ok || fail "$fmt eval (packing $packing) vs transformers: $got $(cat "$T/eval.err")"
  done
  got=$("$W" eval --model "$T/student" --teacher "$T/teacher" --data "$data" --format $fmt \
    --tokenizer "$QWEN3/tokenizer.json" --seq-len $L 2>"$T/eval.err" | tail -n 1)
  check "$got" $fmt kl top1_agreement teacher_loss && ok || fail "$fmt eval --teacher vs transformers: $got"
done
# The cache: a second eval reads the examples back without re-tokenizing.
ls "$T"/chat.jsonl.*  >/dev/null 2>&1 && ok || fail "no cache beside chat.jsonl"

# 2. A distill job on chat data: step 1 holds every packed row once.
"$W" eval --model "$T/student" --data "$T/chat.jsonl" --format chat --tokenizer "$QWEN3" --seq-len $L \
  2>"$T/eval.err" >/dev/null || fail "eval for the row count: $(cat "$T/eval.err")"
rows=$(sed -n 's/.* into \([0-9]*\) rows.*/\1/p' "$T/eval.err" | head -1)
[ -n "$rows" ] || die "no row count in: $(cat "$T/eval.err")"
cat >"$T/distill.yaml" <<YAML
type: distill
teacher: {model: $T/teacher}
student: {model: $T/student, method: full}
distill:
  temperature: 2
  alpha: 0.5
  loss: forward_kl
  logits: dense
  features: [{student_layer: 0, teacher_layer: 1, loss: mse, weight: 0.1}]
data: {format: chat, tokenizer: $QWEN3, train: [$T/chat.jsonl], eval: [$T/chat.jsonl], seq_len: $L}
train: {steps: 3, micro_batch: $rows, lr: 1e-3, warmup: 0, log_every: 1, threads: 2, device: cpu}
output: $T/job
YAML
"$W" train --spec "$T/distill.yaml" >"$T/train.log" 2>&1 || fail "chat distill job: $(tail -5 "$T/train.log")"
$PY - "$T/job/metrics.jsonl" "$T/ref.json" <<'PY' && ok || fail "chat distill step 1 vs transformers: $(head -3 "$T/job/metrics.jsonl")"
import json, sys
records = [json.loads(l) for l in open(sys.argv[1])]
steps = [r for r in records if r["event"] == "train"]
ref = json.load(open(sys.argv[2]))["chat"]["step"]
first = steps[0]
for got, want in [(first["ce_loss"], ref["ce_loss"]), (first["kd_loss"], ref["kd_loss"]),
                  (first["feature_losses"]["s0_t1"], ref["feature"]), (first["loss"], ref["loss"])]:
    assert abs(got - want) <= 1e-5 * abs(want), (got, want, first)
assert len(steps) == 3 and steps[-1]["loss"] < first["loss"], [s["loss"] for s in steps]
PY
grep -q "efficiency" "$T/train.log" && ok || fail "the job log lacks the packing line: $(head -5 "$T/train.log")"

# 2b. Data parallel on packed chat data: 2 student ranks of micro-batch 2 and
# a teacher rank give the weights one colocated process of micro-batch 4 gets
# (the same rows per step; Note [Token-weighted accumulation] weighs each
# rank's micro-batches by their counted targets over the step's total).
for run in dp single; do
  if [ $run = dp ]; then ranks="teacher: {model: $T/teacher, ranks: 1}"; students=2; micro=2; else
    ranks="teacher: {model: $T/teacher, ranks: 0}"; students=1; micro=4; fi
  cat >"$T/$run.yaml" <<YAML
type: distill
$ranks
student: {model: $T/student, method: full, ranks: $students}
distill: {temperature: 2, alpha: 0.5, loss: forward_kl, logits: topk, top_k: 8}
data: {format: chat, tokenizer: $QWEN3, train: [$T/chat.jsonl], seq_len: 32}
train: {steps: 2, micro_batch: $micro, grad_accum: 2, lr: 1e-3, log_every: 1, threads: 1, device: cpu}
output: $T/$run
YAML
done
"${MPIRUN[@]}" -np 3 "$W" train --spec "$T/dp.yaml" >"$T/dp.log" 2>&1 || fail "data-parallel chat job: $(tail -5 "$T/dp.log")"
"$W" train --spec "$T/single.yaml" >"$T/single.log" 2>&1 || fail "single chat job: $(tail -5 "$T/single.log")"
$PY - "$T/dp" "$T/single" <<'PY' 2>"$T/dp.err" && ok ||
import json, sys
from safetensors.torch import load_file
# The gradient (its norm before clipping) of every step, to fp32 summation order.
norms = [[json.loads(l)["grad_norm"] for l in open(d + "/metrics.jsonl") if '"train"' in l] for d in sys.argv[1:]]
assert len(norms[0]) == 2 and all(abs(x - y) <= 1e-5 * y for x, y in zip(*norms)), norms
# The weights on average: Adam normalises near-zero gradients, so a few single
# weights may differ by summation-order rounding blown up to O(lr); the mean
# difference stays ~1e-10, while the training moves weights ~1e-3 on average.
a, b = (load_file(d + "/model/model.safetensors") for d in sys.argv[1:])
diff = sum((a[k] - w).abs().sum().item() for k, w in b.items()) / sum(w.numel() for w in b.values())
assert diff <= 1e-7, diff
PY
  fail "2 student ranks differ from one process on the same rows: $(tail -2 "$T/dp.err")"

# 3. Bad input: one error line naming the file and line.
bad() {  # bad NAME EXPECTED FORMAT LINE...
  local name=$1 want=$2 fmt=$3
  shift 3
  printf '%s\n' "$@" >"$T/bad_$name.jsonl"
  expect_error "$name" "$want" "$W" eval --model "$T/student" --data "$T/bad_$name.jsonl" --format "$fmt" \
    --tokenizer "$QWEN3" --seq-len $L
  grep -qF "bad_$name.jsonl:" "$T/err" || fail "$name: the error does not name the file and line: $(cat "$T/err")"
}
good='{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}'
bad no_assistant "no assistant turn" chat "$good" '{"messages": [{"role": "user", "content": "hi"}]}'
bad unknown_role "unknown role 'bot'" chat "$good" '{"messages": [{"role": "bot", "content": "hi"}, {"role": "assistant", "content": "x"}]}'
bad invalid_json "jsonl:2" chat "$good" '{"messages": ['
bad invalid_utf8 "UTF-8" prompt_completion '{"prompt": "a", "completion": "b"}' $'{"prompt": "\xff", "completion": "b"}'
bad missing_field "completion" prompt_completion '{"prompt": "a"}'
mkdir -p "$T/notemplate" && cp "$QWEN3/tokenizer.json" "$T/notemplate/" &&
  $PY -c "import json,sys; c=json.load(open(sys.argv[1])); c.pop('chat_template'); json.dump(c, open(sys.argv[2],'w'))" \
    "$QWEN3/tokenizer_config.json" "$T/notemplate/tokenizer_config.json"
printf '%s\n' "$good" >"$T/one.jsonl"
expect_error "no chat_template" "chat_template" "$W" eval --model "$T/student" --data "$T/one.jsonl" --format chat \
  --tokenizer "$T/notemplate" --seq-len $L
# Overflow: drop counts what it drops; truncate keeps the first L + 1 tokens.
"$W" eval --model "$T/student" --data "$T/chat.jsonl" --format chat --tokenizer "$QWEN3" --seq-len 40 \
  --overflow drop 2>"$T/drop.err" >/dev/null && grep -Eq "[1-9][0-9]* dropped" "$T/drop.err" && ok ||
  fail "overflow drop is not counted: $(cat "$T/drop.err")"

finish instruction_data
