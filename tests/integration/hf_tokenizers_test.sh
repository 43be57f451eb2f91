#!/usr/bin/env bash
# `distill-worker tokenize` against Hugging Face tokenizers: for every
# tokenizer that tests/reference/hf_tokenizers.py wrote (the real Qwen3 one and
# those trained with tokenizers' own trainers) and every text (Brown val,
# tests/data/qwen3_adversarial.txt, a text of added tokens and Unicode edge
# cases), the .bin must hold exactly tokenizers' encode(text).ids followed by
# the separator, whole (1 thread) and cut into small chunks on 2 threads.
# (Decoded text and add_special_tokens: worker_tests HfTokenizerReferenceTest.)
source "$(dirname "$0")/lib.sh"
REF="${DISTILL_REFERENCE_DIR:?}/hf_tokenizers"
lib_init hf_tok
[ -f "$REF/manifest.json" ] || die "$REF/manifest.json missing (reference.hf_tokenizers)"
checked=0

# "CASE EOS_ID" lines, then "TEXT" lines after a "--".
mapfile -t lines < <("$PY" -c '
import json, sys
m = json.load(open(sys.argv[1]))
for c in m["cases"]: print(c["name"], c["eos"])
print("--")
for t in m["texts"]: print(t)' "$REF/manifest.json")
cases=() texts=() seen_sep=0
for l in "${lines[@]}"; do
  if [ "$l" = "--" ]; then seen_sep=1; elif [ $seen_sep = 0 ]; then cases+=("$l"); else texts+=("$l"); fi
done
[ ${#cases[@]} -gt 0 ] && [ ${#texts[@]} -gt 0 ] || die "empty manifest"

for c in "${cases[@]}"; do
  read -r name eos <<<"$c"
  tok="$REF/cases/$name/tokenizer.json"
  for text in "${texts[@]}"; do
    # The reference ids, then the separator (<|endoftext|>), as tokenize writes them.
    cp "$REF/cases/$name/$text.ids.bin" "$T/want.bin"
    "$PY" -c 'import sys; sys.stdout.buffer.write(int(sys.argv[1]).to_bytes(4, "little"))' \
      "$eos" >>"$T/want.bin"
    for opts in "--threads 1" "--threads 2 --chunk-bytes 1000"; do
      # shellcheck disable=SC2086
      if ! "$W" tokenize --tokenizer "$tok" --input "$REF/texts/$text.txt" --output "$T/got.bin" \
          --separator '<|endoftext|>' $opts 2>"$T/err"; then
        fail "$name on $text ($opts): tokenize failed: $(tail -2 "$T/err")"
      elif ! cmp -s "$T/want.bin" "$T/got.bin"; then
        fail "$name on $text ($opts): ids differ from tokenizers' ($(cmp "$T/want.bin" "$T/got.bin" | head -1))"
      fi
      checked=$((checked + 1))
    done
  done
done

# A tokenizer.json with a component we do not support is a clear error naming it.
for f in "$REF"/unsupported/*.json; do
  if "$W" tokenize --tokenizer "$f" --input "$REF/texts/extra.txt" --output "$T/x.bin" 2>"$T/err"; then
    fail "$(basename "$f"): tokenize accepted an unsupported tokenizer.json"
  elif ! grep -q "unsupported\|not supported" "$T/err" || ! grep -qF "$f" "$T/err"; then
    fail "$(basename "$f"): unclear error: $(cat "$T/err")"
  fi
done

[ "$failures" -eq 0 ] || { echo "$failures failure(s) of $checked"; exit 1; }
echo "hf tokenizers parity: $checked tokenize runs identical"
