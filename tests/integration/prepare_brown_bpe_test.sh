#!/usr/bin/env bash
# scripts/prepare_brown.sh --bpe VOCAB: the BPE is trained on Brown train
# (scripts/train_bpe.py), the splits' documents are tokenized by the worker with
# one EOS each, the ids are Hugging Face tokenizers' own, a second run rebuilds
# nothing, training twice gives the same bytes, and a new VOCAB retrains.
source "$(dirname "$0")/lib.sh"
SRC="${DISTILL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
lib_init prepare_brown_bpe
prepare() { # LOG ARGS...
  local log=$1
  shift
  PYTHON="$PY" bash "$SRC/scripts/prepare_brown.sh" --out "$T/brown" --cache "$T/cache" \
    --bpe-out "$T/bpe" --worker "$W" --threads 2 "$@" >"$T/$log" 2>&1
}
SHARDS=(train val test holdout/train holdout/val holdout/test)

prepare first.log --bpe 1024 || die "prepare: $(tail -5 "$T/first.log")"
for s in "${SHARDS[@]}"; do
  [ -s "$T/bpe/$s.bin" ] && ok || fail "$s.bin missing"
done
[ "$(cat "$T/bpe/holdout/genre.txt")" = science_fiction ] && ok || fail "holdout/genre.txt"

# The worker's ids, document by document, are tokenizers' encode(text) + EOS.
"$PY" - "$T/bpe" "$T/brown" >"$T/check.log" 2>&1 <<'PY' && ok || fail "ids differ from tokenizers': $(cat "$T/check.log")"
import array, json, os, sys
from tokenizers import Tokenizer
bpe, brown = sys.argv[1:3]
tok = Tokenizer.from_file(os.path.join(bpe, "tokenizer.json"))
assert tok.get_vocab_size() == 1024 and tok.token_to_id("<|endoftext|>") == 0
config = json.load(open(os.path.join(bpe, "tokenizer_config.json")))
assert config["eos_token"] == "<|endoftext|>", config
for split, jsonl in (("val", "val"), ("holdout/train", "genre/science_fiction/train")):
    want = []
    with open(os.path.join(brown, jsonl + ".jsonl"), encoding="utf-8") as f:
        for line in f:
            want += tok.encode(json.loads(line)["text"]).ids + [0]
    got = array.array("I", open(os.path.join(bpe, split + ".bin"), "rb").read())
    assert list(got) == want, f"{split}: {len(got)} ids, want {len(want)}"
PY

# A second run trains and tokenizes nothing.
stat -c '%n %Y %s' "$T"/bpe/*.json "$T"/bpe/*.bin "$T"/bpe/holdout/*.bin >"$T/before"
prepare second.log --bpe 1024 || die "second prepare: $(tail -5 "$T/second.log")"
grep -q "bpe: cached" "$T/second.log" && ok || fail "BPE retrained: $(grep bpe: "$T/second.log")"
grep -q "bpe: 0 .bin file(s) built" "$T/second.log" && ok || fail "shards rebuilt on a second run"
stat -c '%n %Y %s' "$T"/bpe/*.json "$T"/bpe/*.bin "$T"/bpe/holdout/*.bin >"$T/after"
cmp -s "$T/before" "$T/after" && ok || fail "files changed on a second run"

# Deterministic: the same text and vocabulary give the same tokenizer.json.
"$PY" "$SRC/scripts/train_bpe.py" --train "$T/brown/train.txt" --vocab 1024 --out "$T/again" \
  >/dev/null || die "train_bpe.py failed"
cmp -s "$T/bpe/tokenizer.json" "$T/again/tokenizer.json" && ok || fail "a second training differs"

# A new vocabulary size retrains and re-tokenizes every shard.
prepare third.log --bpe 1100 || die "prepare --bpe 1100: $(tail -5 "$T/third.log")"
grep -q "bpe: 6 .bin file(s) built" "$T/third.log" && ok || fail "not rebuilt: $(grep bpe: "$T/third.log")"
"$PY" -c 'import sys; from tokenizers import Tokenizer
assert Tokenizer.from_file(sys.argv[1]).get_vocab_size() == 1100' "$T/bpe/tokenizer.json" &&
  ok || fail "vocabulary not 1100 after --bpe 1100"

# Bad arguments are refused before anything is written.
for args in "--bpe 12x" "--bpe 1024 --text-only" "--bpe 1024 --holdout none"; do
  # shellcheck disable=SC2086
  if prepare bad.log $args; then fail "accepted $args"; else
    grep -q "prepare_brown: --bpe" "$T/bad.log" && ok || fail "$args: $(cat "$T/bad.log")"
  fi
done
finish prepare_brown_bpe
