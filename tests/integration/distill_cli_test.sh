#!/usr/bin/env bash
# End-to-end checks of the distill-worker command line for distillation:
# `eval --teacher` (the JSON contract, against the independent reference), a
# tiny `type: distill` job through `train --spec` (progress line, metrics,
# resume, outputs, the student moving towards its teacher), and bad distill
# specs: non-zero exit with exactly one stderr line naming the field.
source "$(dirname "$0")/lib.sh"
lib_init kd_cli

# --- eval --teacher against tests/reference/make_distill_reference.py ------
REF="${DISTILL_REFERENCE_DIR:?}/distill"
for L in 16 37; do
  got=$("$W" eval --model "$REF/student" --teacher "$REF/teacher" --tokens "$REF/eval_tokens.bin" --seq-len $L \
        --batch 2 | tail -n 1)
  $PY - "$got" "$REF/eval.json" $L <<'PY' && ok || fail "eval --teacher vs reference L=$L: $got"
import json, sys
got, L = json.loads(sys.argv[1]), int(sys.argv[3])
want = next(c for c in json.load(open(sys.argv[2]))["cases"] if c["seq_len"] == L)
assert set(got) == {"loss", "ppl", "tokens", "kl", "top1_agreement", "teacher_loss", "teacher_ppl"}, got
assert got["tokens"] == want["tokens"], (got, want)
for k in ("loss", "ppl", "teacher_loss", "teacher_ppl"):
    assert abs(got[k] - want[k]) <= 1e-5 * want[k], (k, got, want)
assert abs(got["kl"] - want["kl"]) <= 1e-5, (got, want)
assert abs(got["top1_agreement"] - want["top1_agreement"]) < 1e-9, (got, want)  # printed with 9 digits
PY
done
# Without --teacher the contract is unchanged.
got=$("$W" eval --model "$REF/student" --tokens "$REF/eval_tokens.bin" --seq-len 16 | tail -n 1)
$PY -c "import json,sys; r=json.loads(sys.argv[1]); assert set(r)=={'loss','ppl','tokens'}, r" "$got" && ok \
  || fail "eval without teacher: $got"
# A teacher whose vocabulary is smaller than the model's.
expect_error "eval teacher smaller vocab" "teacher.model" \
  "$W" eval --model "$REF/teacher" --teacher "$REF/student" --tokens "$REF/eval_tokens.bin" --seq-len 16

# --- a tiny distill job ------------------------------------------------------
write_tiny_config "$T/student.json"
# The teacher: wider, deeper, its vocabulary padded to 264 rows.
cat >"$T/teacher.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "vocab_size": 264, "hidden_size": 48, "intermediate_size": 96,
 "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
 "tie_word_embeddings": true}
JSON
write_text "$T/text.txt" 60
tokenize_bytes "$T/text.txt" "$T/train.bin" || fail "tokenize"
head -c 3000 "$T/text.txt" >"$T/val.txt"
tokenize_bytes "$T/val.txt" "$T/val.bin" || fail "tokenize val"
"$W" init --config "$T/teacher.json" --out "$T/teacher0" --seed 1 >/dev/null || fail "init teacher"
"$W" init --config "$T/student.json" --out "$T/student0" --seed 2 >/dev/null || fail "init student"
# Train the teacher a little (finetune) so it has something to teach.
cat >"$T/teacher.yaml" <<YAML
type: finetune
model: teacher0
data: {train: train.bin, seq_len: 32}
train: {steps: 30, micro_batch: 4, lr: 0.01, log_every: 30, threads: 2}
output: teacher_out
YAML
"$W" train --spec "$T/teacher.yaml" >"$T/teacher.log" 2>&1 || fail "teacher finetune: $(tail -3 "$T/teacher.log")"

cat >"$T/distill.yaml" <<YAML
type: distill
teacher: {model: teacher_out/model}
student: {model: student0}
distill: {temperature: 2, alpha: 0.9, layer_map: uniform, feature_weight: 0.1}
data: {train: train.bin, eval: val.bin, seq_len: 32}
train: {steps: 12, micro_batch: 4, lr: 0.01, log_every: 4, eval_every: 6, threads: 2}
checkpoint: {every: 6}
output: distill_out
YAML
"$W" train --spec "$T/distill.yaml" --max-steps-this-run 6 >"$T/d1.log" 2>&1 || fail "distill first half: $(tail -3 "$T/d1.log")"
"$W" train --spec "$T/distill.yaml" >"$T/d2.log" 2>&1 || fail "distill resume: $(tail -3 "$T/d2.log")"
grep -q "resumed from checkpoint at step 6" "$T/d2.log" && ok || fail "resume message: $(head -3 "$T/d2.log")"
grep -Eq "^step 12/12 \| loss [0-9.]+ \(ce [0-9.]+ kd [0-9.]+ feat [0-9.]+\) \|.*\| compute [0-9]+% teacher [0-9]+% \| [0-9]+ B/tok \|" "$T/d2.log" && ok \
  || fail "distill progress line: $(grep '^step' "$T/d2.log")"
grep -Eq "^eval step 12 \| loss .* \| kl [0-9.]+ \| top1 [0-9.]+% \| teacher ppl" "$T/d2.log" && ok \
  || fail "distill eval line: $(grep '^eval' "$T/d2.log")"
[ -f "$T/distill_out/model/model.safetensors" ] && ok || fail "student written"
$PY - "$T/distill_out/metrics.jsonl" <<'PY' && ok || fail "metrics.jsonl: $(tail -3 "$T/distill_out/metrics.jsonl")"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
train = [r for r in recs if r["event"] == "train"]
evals = [r for r in recs if r["event"] == "eval"]
assert [r["step"] for r in train] == [4, 8, 12], train
for r in train:
    assert set(r["feature_losses"]) == {"s0_t1", "s1_t2"}, r
    assert abs(r["loss"] - (0.9 * r["kd_loss"] + 0.1 * r["ce_loss"]
                            + 0.1 * sum(r["feature_losses"].values()))) < 1e-4 * r["loss"], r
    assert 0 < r["teacher_s"] < r["step_s"], r
assert [e["step"] for e in evals] == [6, 12], evals
assert all("kl" in e and "top1_agreement" in e and "teacher_ppl" in e for e in evals), evals
PY
# The distilled student is closer to its teacher than where it started.
before=$("$W" eval --model "$T/student0" --teacher "$T/teacher_out/model" --tokens "$T/val.bin" --seq-len 32 | tail -n 1)
after=$("$W" eval --model "$T/distill_out/model" --teacher "$T/teacher_out/model" --tokens "$T/val.bin" --seq-len 32 | tail -n 1)
$PY -c "import json,sys; b,a=json.loads(sys.argv[1]),json.loads(sys.argv[2]); assert a['kl'] < 0.5*b['kl'], (b,a); assert a['teacher_loss']==b['teacher_loss']" "$before" "$after" \
  && ok || fail "KL to the teacher falls: before $before after $after"

# --- bad distill specs from the real binary ---------------------------------
bad() {  # bad NAME WANT SED_EXPR
  sed "$3" "$T/distill.yaml" >"$T/bad.yaml"
  expect_error "$1" "$2" "$W" train --spec "$T/bad.yaml"
}
bad "negative temperature" "distill.temperature: must be > 0, got -1" 's/temperature: 2/temperature: -1/'
bad "student layer out of range" "distill.features[0].student_layer: 7 out of range, the student has 2 layers" \
  's/layer_map: uniform, feature_weight: 0.1/features: [{student_layer: 7, teacher_layer: 0}]/'
bad "teacher layer out of range" "distill.features[0].teacher_layer: 5 out of range, the teacher has 3 layers" \
  's/layer_map: uniform, feature_weight: 0.1/features: [{student_layer: 1, teacher_layer: 5}]/'
bad "unknown feature loss" "distill.features[0].loss" \
  's/layer_map: uniform, feature_weight: 0.1/features: [{student_layer: 1, teacher_layer: 1, loss: l1}]/'
bad "unknown kd loss" "distill.loss" 's/alpha: 0.9/alpha: 0.9, loss: kl/'
bad "top_k beyond vocabulary" "distill.top_k: 300 exceeds the vocabulary size 256" 's/alpha: 0.9/alpha: 0.9, logits: topk, top_k: 300/'
bad "top-level model" "model: for type distill put the student under student.model" 's/^type: distill/type: distill\nmodel: student0/'
bad "dedicated teacher ranks without mpirun" "the spec needs 3 ranks (student.ranks 1 + teacher.ranks 2) but 1 was launched: run mpirun -np 3" \
  's#teacher: {model: teacher_out/model}#teacher: {model: teacher_out/model, ranks: 2}#'
bad "missing teacher" "teacher.model" 's#teacher: {model: teacher_out/model}#teacher: {model: nothing}#'
# A teacher whose vocabulary (200) is smaller than the student's (256).
sed 's/"vocab_size": 264/"vocab_size": 200/' "$T/teacher.json" >"$T/small.json"
"$W" init --config "$T/small.json" --out "$T/small" >/dev/null || fail "init small teacher"
sed 's#teacher: {model: teacher_out/model}#teacher: {model: small}#' "$T/distill.yaml" >"$T/bad.yaml"
expect_error "teacher vocabulary smaller" "smaller than the student's 256" "$W" train --spec "$T/bad.yaml"

finish distill_cli_test
