#!/usr/bin/env bash
# prepare_brown_chat.sh [ROOT]: the data of the chat examples
# (examples/brown_chat_sft.yaml, examples/brown_chat_distill.yaml) under ROOT
# (default: the repository root), each step idempotent:
#   ROOT/data/brown/{train,val}.txt       the Brown corpus as text (prepare_brown.sh --text-only)
#   ROOT/data/brown_chat/train.jsonl      conversations made from it (make_brown_chat.py)
#   ROOT/data/brown_chat/eval.jsonl       from other documents
#   ROOT/data/qwen3_tokenizer/            the real Qwen3 tokenizer and chat template
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${1:-$repo}"
py="$repo/.venv/bin/python"
[ -x "$py" ] || py=python3
mkdir -p "$root/data/brown_chat"
bash "$repo/scripts/prepare_brown.sh" --text-only --out "$root/data/brown" \
  --cache "${DISTILL_CACHE:-$repo/data/cache}" >/dev/null
"$py" "$repo/scripts/make_brown_chat.py" --brown "$root/data/brown" --split train \
  --out "$root/data/brown_chat/train.jsonl"
"$py" "$repo/scripts/make_brown_chat.py" --brown "$root/data/brown" --split eval \
  --out "$root/data/brown_chat/eval.jsonl"
bash "$repo/scripts/qwen3_tokenizer.sh" "$root/data/qwen3_tokenizer" >/dev/null
echo "chat data in $root/data/brown_chat, tokenizer in $root/data/qwen3_tokenizer"
