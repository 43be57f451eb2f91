#!/usr/bin/env bash
# End-to-end checks of the distill-worker command-line contract: init, train
# (full and LoRA), eval, merge, tokenize, and that every bad input exits
# non-zero with exactly one clear line on stderr naming the culprit.
source "$(dirname "$0")/lib.sh"
lib_init cli

# --version names the LibTorch and CUDA of the torch wheel in DISTILL_PYTHON
# (the one CMake built against), as torch itself reports them.
want=$($PY -c "import torch; print('(LibTorch %s, %s)' % (torch.__version__.split('+')[0], 'CUDA ' + torch.version.cuda if torch.version.cuda else 'no CUDA'))")
got=$("$W" --version 2>&1)
version_re='^distill-worker [0-9]+\.[0-9]+\.[0-9]+ \(LibTorch '
[[ "$got" =~ $version_re ]] && [[ "$got" == *" $want" ]] && ok \
  || fail "distill-worker --version: '$got', want '... $want'"
C="${DISTILL_COORDINATOR_BIN:-}"
if [ -n "$C" ]; then
  got=$("$C" --version 2>&1)
  [ "$got" = "$("$W" --version | sed 's/^distill-worker/distill-coordinator/')" ] && ok \
    || fail "distill-coordinator --version: '$got'"
fi

write_tiny_config "$T/config.json"
write_text "$T/text.txt" 40
tokenize_bytes "$T/text.txt" "$T/train.bin" || fail "tokenize"
head -c 2000 "$T/text.txt" >"$T/val.txt"
tokenize_bytes "$T/val.txt" "$T/val.bin" || fail "tokenize val"
[ "$(stat -c %s "$T/train.bin")" -eq $((4 * $(stat -c %s "$T/text.txt"))) ] && ok || fail "tokenize size"

# init
"$W" init --config "$T/config.json" --out "$T/base" --seed 3 >/dev/null || fail "init"
[ -f "$T/base/config.json" ] && [ -f "$T/base/model.safetensors" ] && ok || fail "init outputs"

# eval contract: tokens = floor((N-1)/L)*L over non-overlapping windows.
N=$(($(stat -c %s "$T/val.bin") / 4))
L=48
out=$("$W" eval --model "$T/base" --tokens "$T/val.bin" --seq-len $L --batch 3 | tail -n 1)
$PY - "$out" "$N" "$L" <<'PY' && ok || fail "eval json: $out"
import json, math, sys
r = json.loads(sys.argv[1]); n, l = int(sys.argv[2]), int(sys.argv[3])
assert r["tokens"] == (n - 1) // l * l, r
assert abs(r["ppl"] - math.exp(r["loss"])) < 1e-6 * r["ppl"], r
assert 4.0 < r["loss"] < 7.0, r   # random init over 256 symbols: about ln 256 = 5.55
PY
# eval against the independent reference (tests/reference/make_reference.py)
REF="${DISTILL_REFERENCE_DIR:?}/llama_gqa"
for RL in 16 50; do
  got=$("$W" eval --model "$REF" --tokens "$REF/eval_tokens.bin" --seq-len $RL --batch 2 | tail -n 1)
  $PY - "$got" "$REF/eval.json" $RL <<'PY' && ok || fail "eval vs reference L=$RL: $got"
import json, sys
got, L = json.loads(sys.argv[1]), int(sys.argv[3])
want = next(c for c in json.load(open(sys.argv[2]))["cases"] if c["seq_len"] == L)
assert got["tokens"] == want["tokens"], (got, want)
assert abs(got["loss"] - want["loss"]) <= 1e-5 * want["loss"], (got, want)
PY
done
# batch size does not change the result
out2=$("$W" eval --model "$T/base" --tokens "$T/val.bin" --seq-len $L --batch 1 | tail -n 1)
$PY -c "import json,sys; a,b=json.loads(sys.argv[1]),json.loads(sys.argv[2]); assert abs(a['loss']-b['loss'])<1e-5*a['loss'] and a['tokens']==b['tokens']" "$out" "$out2" && ok || fail "eval batch invariance"

# LoRA training, then adapter eval == merged eval.
cat >"$T/lora.yaml" <<YAML
type: finetune
model: base
method: lora
lora: {rank: 4, alpha: 8, target_modules: [q_proj, v_proj, down_proj]}
data: {train: train.bin, eval: val.bin, seq_len: 32}
train: {steps: 12, micro_batch: 4, lr: 0.01, log_every: 4, threads: 2}
output: lora_out
YAML
"$W" train --spec "$T/lora.yaml" >"$T/train.log" 2>&1 || fail "lora train: $(tail -3 "$T/train.log")"
grep -q "^step 12/12 | loss" "$T/train.log" && ok || fail "progress line: $(cat "$T/train.log")"
[ -f "$T/lora_out/adapter/adapter_model.safetensors" ] && ok || fail "adapter written"
"$W" merge --base "$T/base" --adapter "$T/lora_out/adapter" --out "$T/merged" >/dev/null || fail "merge"
a=$("$W" eval --model "$T/base" --adapter "$T/lora_out/adapter" --tokens "$T/val.bin" --seq-len $L | tail -n 1)
m=$("$W" eval --model "$T/merged" --tokens "$T/val.bin" --seq-len $L | tail -n 1)
$PY -c "import json,sys; a,m,b=(json.loads(x) for x in sys.argv[1:4]); assert abs(a['loss']-m['loss'])<1e-4*a['loss'], (a,m); assert a['loss']<b['loss'], (a,b)" "$a" "$m" "$out" && ok || fail "merged eval == adapter eval < base eval: $a $m $out"

# The spec's learning-rate schedule drives training: the lr of every step in
# metrics.jsonl is transformers' schedule (stepped with a real optimizer).
for sched in cosine linear constant; do
  sed -e "s/lr: 0.01, log_every: 4/lr: 0.01, min_lr: 0.002, warmup: 3, schedule: $sched, log_every: 1/" \
      -e "s/output: lora_out/output: sched_$sched/" "$T/lora.yaml" >"$T/sched_$sched.yaml"
  "$W" train --spec "$T/sched_$sched.yaml" >"$T/sched.log" 2>&1 || fail "train schedule $sched: $(tail -3 "$T/sched.log")"
  $PY - "$T/sched_$sched/metrics.jsonl" "$sched" <<'PY' && ok || fail "schedule $sched: lr per step differs from transformers'"
import json, sys, torch, transformers.optimization as o
rows = [json.loads(l) for l in open(sys.argv[1]) if '"train"' in l]
opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.01)
make = {"cosine": lambda: o.get_cosine_with_min_lr_schedule_with_warmup(opt, 3, 12, min_lr=0.002),
        "linear": lambda: o.get_polynomial_decay_schedule_with_warmup(opt, 3, 12, lr_end=0.002, power=1.0),
        "constant": lambda: o.get_constant_schedule_with_warmup(opt, 3)}[sys.argv[2]]
sched = make()
want = []
for _ in range(12):
    want.append(opt.param_groups[0]["lr"])
    opt.step(); sched.step()
got = [r["lr"] for r in rows]
assert len(got) == 12, got
for s, (g, w) in enumerate(zip(got, want)):
    assert abs(g - w) <= 1e-9 * max(w, 1e-12), (s, g, w)
PY
done
sed 's/lr: 0.01,/lr: 0.01, schedule: exponential,/' "$T/lora.yaml" >"$T/badsched.yaml"
expect_error "unknown schedule" "train.schedule" "$W" train --spec "$T/badsched.yaml"

# Bad inputs: one line naming the problem, non-zero exit, no crash.
cp -r "$T/base" "$T/trunc"; head -c 100 "$T/base/model.safetensors" >"$T/trunc/model.safetensors"
expect_error "truncated safetensors" "model.safetensors" "$W" eval --model "$T/trunc" --tokens "$T/val.bin" --seq-len 8
cp -r "$T/base" "$T/lying"
$PY - "$T/base/model.safetensors" "$T/lying/model.safetensors" <<'PY'
import json, struct, sys
data = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", data[:8])[0]
h = json.loads(data[8:8 + n])
name = next(k for k in h if k != "__metadata__")
h[name]["data_offsets"][1] += 1 << 30   # claims more data than the file holds
hb = json.dumps(h).encode(); hb += b" " * (-len(hb) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hb)) + hb + data[8 + n:])
PY
expect_error "lying safetensors header" "model.safetensors" "$W" eval --model "$T/lying" --tokens "$T/val.bin" --seq-len 8
cp -r "$T/base" "$T/hugeheader"
$PY -c "import struct,sys; d=open(sys.argv[1],'rb').read(); open(sys.argv[2],'wb').write(struct.pack('<Q', 1<<40)+d[8:])" "$T/base/model.safetensors" "$T/hugeheader/model.safetensors"
expect_error "header length beyond file" "model.safetensors" "$W" eval --model "$T/hugeheader" --tokens "$T/val.bin" --seq-len 8
cp -r "$T/base" "$T/nohidden"
$PY -c "import json,sys; c=json.load(open(sys.argv[1])); del c['hidden_size']; json.dump(c, open(sys.argv[1],'w'))" "$T/nohidden/config.json"
expect_error "missing config field" "hidden_size" "$W" eval --model "$T/nohidden" --tokens "$T/val.bin" --seq-len 8
cp -r "$T/base" "$T/gpt2"
$PY -c "import json,sys; c=json.load(open(sys.argv[1])); c['architectures']=['GPT2LMHeadModel']; c['model_type']='gpt2'; json.dump(c, open(sys.argv[1],'w'))" "$T/gpt2/config.json"
expect_error "unknown architecture" "GPT2LMHeadModel" "$W" eval --model "$T/gpt2" --tokens "$T/val.bin" --seq-len 8
expect_error "missing model dir" "/nonexistent/model" "$W" eval --model /nonexistent/model --tokens "$T/val.bin" --seq-len 8
expect_error "missing token file" "/nonexistent/t.bin" "$W" eval --model "$T/base" --tokens /nonexistent/t.bin --seq-len 8
head -c 6 "$T/val.bin" >"$T/odd.bin"
expect_error "odd-sized token file" "odd.bin" "$W" eval --model "$T/base" --tokens "$T/odd.bin" --seq-len 8
$PY -c "import struct; open('$T/big.bin','wb').write(struct.pack('<4I', 1, 2, 300, 4))"
expect_error "token outside vocabulary" "big.bin" "$W" eval --model "$T/base" --tokens "$T/big.bin" --seq-len 2
expect_error "missing spec" "/nonexistent/spec.yaml" "$W" train --spec /nonexistent/spec.yaml
sed 's/lr: 0.01/lr: -1/' "$T/lora.yaml" >"$T/badlr.yaml"
expect_error "bad spec value" "train.lr: must be > 0" "$W" train --spec "$T/badlr.yaml"
sed 's/rank: 4/rnak: 4/' "$T/lora.yaml" >"$T/typo.yaml"
expect_error "unknown spec field" "lora.rnak: unknown field" "$W" train --spec "$T/typo.yaml"
sed 's#train: train.bin#train: missing.bin#' "$T/lora.yaml" >"$T/nodata.yaml"
expect_error "missing training data" "missing.bin" "$W" train --spec "$T/nodata.yaml"
expect_error "missing init config" "/nonexistent/config.json" "$W" init --config /nonexistent/config.json --out "$T/x"
expect_error "merge with missing adapter" "adapter_config.json" "$W" merge --base "$T/base" --adapter "$T/nothing" --out "$T/y"
"$W" eval --model "$T/base" --bogus 1 >/dev/null 2>&1; [ $? -eq 2 ] && ok || fail "usage error exits 2"
# Options (absl/flags): a bad one is named; another command's option is unknown;
# --opt=value is the same as --opt value; COMMAND --help lists the command's
# options, generated from the flags.
err=$("$W" eval --model "$T/base" --bogus 1 2>&1 >/dev/null)
echo "$err" | grep -qF "distill-worker eval: unknown option --bogus" && ok || fail "unknown option named: $err"
"$W" train --spec "$T/lora.yaml" --seed 1 >/dev/null 2>&1; [ $? -eq 2 ] && ok || fail "another command's option exits 2"
expect_error "missing required option" "missing required option --spec" "$W" train
expect_error "non-integer value" "option --seq-len: expected an integer, got 'abc'" \
  "$W" eval --model "$T/base" --tokens "$T/val.bin" --seq-len abc
expect_error "--opt=value" "--seq-len must be >= 1, got 0" "$W" eval --model="$T/base" --tokens "$T/val.bin" --seq-len=0
help=$("$W" eval --help) && echo "$help" | grep -qE -- '--seq-len L +required; tokens per sequence' \
  && echo "$help" | grep -qE -- '--batch B +sequences per batch \(default 8\)' && ok || fail "eval --help: $help"
"$W" --help | grep -qE -- '--chunk-bytes N ' && ok || fail "--help lists every command's options"

finish cli_test
