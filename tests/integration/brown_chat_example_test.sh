#!/usr/bin/env bash
# The chat examples as a user runs them, shortened: scripts/prepare_brown_chat.sh
# makes the conversations from the Brown corpus and fetches the Qwen3
# tokenizer; examples/brown_chat_sft.yaml trains the chat teacher and
# examples/brown_chat_distill.yaml distills it into the student (steps, batch
# and seq_len cut down; everything else as shipped). Checks that both jobs
# run, log their packing, evaluate against the teacher, write their outputs,
# and that the student's loss goes down.
source "$(dirname "$0")/lib.sh"
SRC="${DISTILL_SOURCE_DIR:?}"
lib_init brown_chat
mkdir -p "$T/examples"
cp "$SRC"/examples/brown_chat_{sft,distill}.yaml "$SRC"/examples/qwen3_chat_{teacher,student}.json "$T/examples/"
bash "$SRC/scripts/prepare_brown_chat.sh" "$T" >"$T/prepare.log" 2>&1 || die "prepare: $(tail -5 "$T/prepare.log")"
for f in "$T"/examples/*.yaml; do
  sed -i -e 's/^  steps: .*/  steps: 4/' -e 's/^  micro_batch: .*/  micro_batch: 2/' -e 's/^  seq_len: .*/  seq_len: 128/' \
    -e 's/^  eval_every: .*/  eval_every: 0/' -e 's/^  eval_batches: .*/  eval_batches: 2/' -e 's/^  log_every: .*/  log_every: 1/' \
    -e 's/^  warmup: .*/  warmup: 0/' -e 's/^checkpoint: .*/checkpoint: {every: 0, keep: 1}/' "$f"
done
grep -q "steps: 4" "$T/examples/brown_chat_distill.yaml" || die "the examples did not shrink"

for job in sft distill; do
  "$W" train --spec "$T/examples/brown_chat_$job.yaml" >"$T/$job.log" 2>&1 || fail "$job: $(tail -5 "$T/$job.log")"
  grep -q "efficiency" "$T/$job.log" && ok || fail "$job: no packing line: $(head -5 "$T/$job.log")"
done
[ -f "$T/var/demo/chat_teacher/model/model.safetensors" ] && ok || fail "the teacher model was not written"
[ -f "$T/var/demo/chat_distill/model/model.safetensors" ] && ok || fail "the student model was not written"
$PY - "$T/var/demo/chat_distill/metrics.jsonl" <<'PY' && ok || fail "distill metrics: $(cat "$T/var/demo/chat_distill/metrics.jsonl")"
import json, sys
rec = [json.loads(l) for l in open(sys.argv[1])]
train = [r for r in rec if r["event"] == "train"]
evals = [r for r in rec if r["event"] == "eval"]
assert len(train) == 4, len(train)
assert train[-1]["ce_loss"] < train[0]["ce_loss"], [r["ce_loss"] for r in train]
assert evals and "kl" in evals[-1] and evals[-1]["tokens"] > 0, evals
PY
# The distilled student against its teacher on the held-out conversations.
got=$("$W" eval --model "$T/var/demo/chat_distill/model" --teacher "$T/var/demo/chat_teacher/model" \
  --data "$T/data/brown_chat/eval.jsonl" --format chat --tokenizer "$T/data/qwen3_tokenizer" --seq-len 128 \
  2>"$T/eval.err" | tail -n 1)
$PY -c "import json,sys; r=json.loads(sys.argv[1]); assert r['tokens'] > 0 and r['kl'] >= 0, r" "$got" && ok ||
  fail "eval of the distilled student: $got $(cat "$T/eval.err")"
finish brown_chat_example
