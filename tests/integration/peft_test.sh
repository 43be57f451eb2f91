#!/usr/bin/env bash
# Our LoRA adapters are interchangeable with peft's, checked against peft
# itself (tests/reference/hf_peft.py wrote the base model, the adapters and
# peft's numbers):
#   - a peft adapter in `distill-worker eval --adapter` gives peft's loss;
#   - `distill-worker merge` writes merge_and_unload()'s weights;
#   - an adapter our `train` writes loads with PeftModel.from_pretrained and
#     gives the loss our eval gives with it;
#   - an adapter with a feature we lack is one clear error line.
# Losses 1e-5 relative (fp32 forward on both sides, sums in double); merged
# weights 1e-6 relative to each tensor's max |w| (the same fp32 W + BA*s).
source "$(dirname "$0")/lib.sh"
SRC="${DISTILL_SOURCE_DIR:?}"
REF="${DISTILL_REFERENCE_DIR:?}/hf_peft"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1
lib_init peft
L=16  # hf_peft.py's EVAL_SEQ_LEN

# close GOT_JSON WANT_JSON: same token count, loss within 1e-5 relative.
close() {
  $PY - "$1" "$2" <<'PY'
import json, sys
got, want = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert got["tokens"] == want["tokens"], (got, want)
assert abs(got["loss"] - want["loss"]) <= 1e-5 * abs(want["loss"]), (got, want)
PY
}

# 1. peft's adapters in our eval, and our merge against merge_and_unload.
for name in rslora plain; do
  got=$("$W" eval --model "$REF/base" --adapter "$REF/$name/adapter" --tokens "$REF/tokens.bin" --seq-len $L \
    --batch 5 | tail -n 1)
  close "$got" "$(cat "$REF/$name/eval.json")" && ok || fail "$name: our eval --adapter vs peft: $got"
  "$W" merge --base "$REF/base" --adapter "$REF/$name/adapter" --out "$T/merged_$name" >/dev/null ||
    fail "$name: merge"
  $PY - "$T/merged_$name/model.safetensors" "$REF/$name/merged/model.safetensors" <<'PY' && ok ||
from safetensors.torch import load_file
import sys
ours, peft = load_file(sys.argv[1]), load_file(sys.argv[2])
assert sorted(ours) == sorted(peft), (sorted(ours), sorted(peft))
for k, w in peft.items():
    err = (ours[k] - w).abs().max().item()
    assert err <= 1e-6 * w.abs().max().item(), (k, err)
PY
    fail "$name: our merge vs peft merge_and_unload"
done
base=$("$W" eval --model "$REF/base" --tokens "$REF/tokens.bin" --seq-len $L | tail -n 1)

# 2. Adapters our train writes, loaded by PeftModel.from_pretrained.
printf 'The quick brown fox jumps over the lazy dog %s. ' $(seq 1 60) >"$T/text.txt"
tokenize_bytes "$T/text.txt" "$T/bytes.bin" || fail "tokenize"
# Byte ids reach 121; the tiny model has 64 tokens.
$PY -c "import numpy as np,sys; np.fromfile(sys.argv[1],'<u4').__mod__(64).astype('<u4').tofile(sys.argv[2])" \
  "$T/bytes.bin" "$T/train.bin" || fail "train tokens"
for variant in "rslora: true, rank: 4, alpha: 6, target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]" \
  "rank: 3, alpha: 5, dropout: 0.1, target_modules: [q_proj, v_proj, up_proj, down_proj]"; do
  rm -rf "$T/out"
  cat >"$T/spec.yaml" <<YAML
type: finetune
model: $REF/base
method: lora
lora: {$variant}
data: {train: $T/train.bin, seq_len: 16}
train: {steps: 6, micro_batch: 4, lr: 0.02, log_every: 6, threads: 2}
output: $T/out
YAML
  "$W" train --spec "$T/spec.yaml" >"$T/train.log" 2>&1 || fail "train ($variant): $(tail -3 "$T/train.log")"
  ours=$("$W" eval --model "$REF/base" --adapter "$T/out/adapter" --tokens "$REF/tokens.bin" --seq-len $L | tail -n 1)
  peft=$($PY - "$SRC/tests/reference" "$REF/base" "$T/out/adapter" "$REF/tokens.bin" $L <<'PY'
import json, sys
sys.path.insert(0, sys.argv[1])
import hf_peft
print(json.dumps(hf_peft.peft_eval_loss(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))))
PY
  )
  close "$ours" "$peft" && ok || fail "our trained adapter ($variant): ours $ours, peft $peft"
  # The trained adapter must matter, or the comparison above proves nothing.
  $PY -c "import json,sys; a,b=(json.loads(x)['loss'] for x in sys.argv[1:3]); assert abs(a-b)>1e-3*b, (a,b)" \
    "$ours" "$base" && ok || fail "trained adapter changes nothing: $ours vs base $base"
done

# 3. A peft adapter with a feature we lack: one line naming file and field.
cp -r "$REF/rslora/adapter" "$T/mts"
$PY -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); c['modules_to_save']=['lm_head']; json.dump(c, open(p,'w'))" \
  "$T/mts/adapter_config.json"
"$W" eval --model "$REF/base" --adapter "$T/mts" --tokens "$REF/tokens.bin" --seq-len $L >/dev/null 2>"$T/err"
rc=$?
if [ $rc -ne 65 ] || [ "$(wc -l <"$T/err")" -ne 1 ] || ! grep -q "mts/adapter_config.json: field 'modules_to_save'" "$T/err"; then
  fail "modules_to_save: exit $rc: $(cat "$T/err")"
else
  ok
fi

finish peft_test
