#!/usr/bin/env bash
# Issue 20's probes, replayed against the real binaries: inputs a careless user
# or an attacker gives distill-worker and distillctl (absurd sizes in a model
# config or a spec, hostile YAML, tokenizer.json and safetensors files, a FIFO
# where a file belongs). Each must end with exit 65 or 1 (never a signal), one
# line on stderr naming the file and the field or tensor, and none of the
# library words that name nothing: std::bad_alloc, "can't allocate memory",
# "bad conversion", "terminate called". A FIFO must not block the open.
source "$(dirname "$0")/lib.sh"
CTL="${DISTILL_CTL_BIN:?}"
lib_init hostile

# expect_clear NAME SUBSTRING CMD...: expect_error (lib.sh), and no library
# word that names nothing.
expect_clear() {
  local before=$failures
  expect_error "$@"
  [ "$failures" -ne "$before" ] && return
  if grep -qiE "bad_alloc|can't allocate|cannot allocate|bad conversion|terminate called|std::" "$T/err"; then
    pass=$((pass - 1))
    fail "$1: an error that names nothing: $(cat "$T/err")"
  fi
}

write_tiny_config "$T/config.json"
write_text "$T/text.txt" 20
tokenize_bytes "$T/text.txt" "$T/train.bin" || die "tokenize failed"

# config KEY JSON_VALUE OUT: the tiny config with KEY set.
config() {
  $PY - "$T/config.json" "$1" "$2" "$3" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c[sys.argv[2]] = json.loads(sys.argv[3])
json.dump(c, open(sys.argv[4], "w"))
PY
}

# 1. Model configs: each size past Note [Config size limits], and a model
# whose sizes each pass but which no host holds (Note [Model fits memory]).
for kv in "hidden_size 1099511627776" "num_hidden_layers 1099511627776" "vocab_size 4294967296" \
          "intermediate_size 1099511627776" "max_position_embeddings 1099511627776"; do
  set -- $kv
  config "$1" "$2" "$T/c_$1.json"
  expect_clear "config $1" "c_$1.json: field '$1': $2 exceeds the limit" \
    "$W" init --config "$T/c_$1.json" --out "$T/m_$1"
done
$PY - "$T/config.json" "$T/c_huge.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.update(hidden_size=32768, intermediate_size=65536, num_hidden_layers=64, num_attention_heads=256,
         num_key_value_heads=256)
json.dump(c, open(sys.argv[2], "w"))
PY
expect_clear "model past the host's memory" "c_huge.json: the model's 687207383040 parameters need 2.5 TiB" \
  "$W" init --config "$T/c_huge.json" --out "$T/m_huge"
rc=0
"$W" init --config "$T/c_huge.json" --out "$T/m_huge" >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 65 ] && ok || fail "model past the host's memory: exit $rc, want 65 (not retried)"

# 2. Specs: sizes past Note [Spec bounds], hostile YAML.
# spec NAME TRAIN_FIELDS [SEQ_LEN] [TOP_LEVEL_LINES]
spec() {
  cat >"$T/$1.yaml" <<YAML
type: finetune
init: config.json
data: {train: train.bin, seq_len: ${3:-16}}
train: {steps: 2, lr: 0.01, $2}
output: out_$1
${4:-}
YAML
}
spec micro "micro_batch: 2147483647, threads: 1"
expect_clear "spec micro_batch" "train.micro_batch" "$W" train --spec "$T/micro.yaml"
spec threads "micro_batch: 2, threads: 1000000"
expect_clear "spec threads" "train.threads" "$W" train --spec "$T/threads.yaml"
spec seqlen "micro_batch: 2, threads: 1" 1000000000
expect_clear "spec seq_len" "data.seq_len" "$W" train --spec "$T/seqlen.yaml"
spec lora "micro_batch: 2, threads: 1" 16 "method: lora
lora: {rank: 1000000000}"
expect_clear "spec lora.rank" "lora.rank" "$W" train --spec "$T/lora.yaml"
spec dup "micro_batch: 2, threads: 1" 16 "output: elsewhere" "output: elsewhere"
expect_clear "duplicate key" "output" "$W" train --spec "$T/dup.yaml"
grep -q "dup.yaml: output: given twice (lines 5 and 6)" "$T/err" && ok || fail "duplicate key: $(cat "$T/err")"
printf 'type: finetune\nname: x\n? [a, b]\n: 1\n' >"$T/listkey.yaml"
expect_clear "distillctl list key" "listkey.yaml: spec: line 3" "$CTL" submit "$T/listkey.yaml"
grep -q "a key must be a plain name" "$T/err" && ok || fail "list key: $(cat "$T/err")"
$PY -c "print('type: finetune\nname: ' + '[' * 100000 + ']' * 100000)" >"$T/deep.yaml"
expect_clear "deeply nested YAML (worker)" "deep.yaml" "$W" train --spec "$T/deep.yaml"
expect_clear "deeply nested YAML (distillctl)" "deep.yaml" "$CTL" submit "$T/deep.yaml"
$PY -c "print('{\"type\": \"finetune\", \"name\": ' + '[' * 100000 + ']' * 100000 + '}')" >"$T/deep.json"
expect_clear "deeply nested JSON spec" "deep.json" "$CTL" submit "$T/deep.json"

# 3. tokenizer.json: ids past the vocabulary's bounds, deep nesting (Note
# [Tokenizer limits]); the text is tokenized by `eval --data` with it.
tokenizer() {  # tokenizer OUT PY_EXPR_FOR_THE_JSON
  $PY - "$1" "$2" <<'PY'
import json, sys
vocab = {chr(c): i for i, c in enumerate(range(32, 127))}
tok = {"version": "1.0", "added_tokens": [], "normalizer": None, "pre_tokenizer": None, "post_processor": None,
       "decoder": None, "model": {"type": "BPE", "vocab": vocab, "merges": []}}
deep = None
exec(sys.argv[2])
text = json.dumps(tok)
if deep:  # nesting past Python's own recursion limit: spliced in as text
    text = text.replace('"normalizer": null', '"normalizer": ' + deep)
open(sys.argv[1], "w").write(text)
PY
}
"$W" init --config "$T/config.json" --out "$T/base" >/dev/null || die "init failed"
tokenizer "$T/tok_added.json" 'tok["added_tokens"] = [{"id": 2**33 + 5, "content": "<x>", "special": True}]'
expect_clear "added token id past 2^32" "tok_added.json: added_tokens[0].id: 8589934597 exceeds the limit" \
  "$W" eval --model "$T/base" --data "$T/text.txt" --tokenizer "$T/tok_added.json" --seq-len 8
tokenizer "$T/tok_vocab.json" 'tok["model"]["vocab"]["~"] = 2**31 - 2'
expect_clear "vocabulary id near 2^31" "tok_vocab.json: model.vocab[\"~\"]: expected an id in [0, " \
  "$W" eval --model "$T/base" --data "$T/text.txt" --tokenizer "$T/tok_vocab.json" --seq-len 8
tokenizer "$T/tok_deep.json" '
deep = "{\"type\": \"Sequence\", \"normalizers\": [" * 100000 + "{\"type\": \"Lowercase\"}" + "]}" * 100000'
expect_clear "normalizers nested 100000 deep" "tok_deep.json: normalizer.normalizers[0]" \
  "$W" eval --model "$T/base" --data "$T/text.txt" --tokenizer "$T/tok_deep.json" --seq-len 8

# 4. safetensors: overlapping tensors, a NaN weight.
cp -r "$T/base" "$T/overlap"
$PY - "$T/overlap/model.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]
b = open(p, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
names = sorted(k for k in h if k != "__metadata__" and h[k]["data_offsets"][1] - h[k]["data_offsets"][0] >= 8)
a, c = h[names[0]], h[names[1]]
span = c["data_offsets"][1] - c["data_offsets"][0]
if a["data_offsets"][1] - a["data_offsets"][0] >= span and a["dtype"] == c["dtype"]:
    c["data_offsets"] = [a["data_offsets"][0], a["data_offsets"][0] + span]
else:
    raise SystemExit("no pair to overlap")
hb = json.dumps(h).encode()
hb += b" " * ((8 - len(hb) % 8) % 8)
open(p, "wb").write(struct.pack("<Q", len(hb)) + hb + b[8 + n:])
PY
expect_clear "overlapping tensors" "overlap/model.safetensors" \
  "$W" eval --model "$T/overlap" --data "$T/train.bin" --seq-len 8
cp -r "$T/base" "$T/nan"
$PY - "$T/nan/model.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
t = h["model.norm.weight"]
assert t["dtype"] == "F32"
at = 8 + n + t["data_offsets"][0]
b[at:at + 4] = struct.pack("<f", float("nan"))
open(p, "wb").write(bytes(b))
PY
expect_clear "NaN weight" "model.norm.weight" "$W" eval --model "$T/nan" --data "$T/train.bin" --seq-len 8

# 5. A FIFO where the training data belongs: refused before an open that
# would block until a writer comes.
mkfifo "$T/fifo.bin"
spec fifo "micro_batch: 2, threads: 1"
sed -i 's/train: train.bin/train: fifo.bin/' "$T/fifo.yaml"
expect_clear "FIFO as data" "fifo.bin" timeout 60 "$W" train --spec "$T/fifo.yaml"
grep -q "not a regular file" "$T/err" && ok || fail "FIFO: $(cat "$T/err")"

finish hostile_input
