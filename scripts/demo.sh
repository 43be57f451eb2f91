#!/usr/bin/env bash
# README command 1, the main job: installs what is missing, builds, prepares
# the Brown corpus, trains a small byte-level Llama on it (full-parameter),
# then LoRA-fine-tunes it on the held-out genre and prints a summary table.
# Idempotent: a rerun resumes or skips finished training (checkpoints).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
THREADS="${THREADS:-$(nproc)}"
export OMP_NUM_THREADS="$THREADS"

bash scripts/setup.sh
bash scripts/build.sh
WORKER="$ROOT/build/worker/distill-worker"
bash scripts/prepare_brown.sh --out data/brown --worker "$WORKER" --holdout science_fiction

HOLDOUT=$(cat data/brown/holdout.txt)
mkdir -p var/demo
echo
echo "== 1/2: full-parameter training on the Brown corpus (all genres but $HOLDOUT)"
"$WORKER" train --spec examples/brown_full.yaml
echo
echo "== 2/2: LoRA fine-tuning on the held-out genre ($HOLDOUT)"
"$WORKER" train --spec examples/brown_lora_holdout.yaml

echo
echo "== evaluation on the held-out genre's validation split"
before=$("$WORKER" eval --model var/demo/base/model --tokens data/brown/genre/science_fiction/val.bin --seq-len 256 --threads "$THREADS" | tail -n 1)
after=$("$WORKER" eval --model var/demo/base/model --adapter var/demo/lora/adapter --tokens data/brown/genre/science_fiction/val.bin --seq-len 256 --threads "$THREADS" | tail -n 1)

/usr/bin/python3 - "$before" "$after" "$HOLDOUT" <<'PY'
import json, os, sys
before, after, genre = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
def last_train(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    rows = [r for r in rows if r.get("event") == "train"]
    toks = [r["tokens_per_s"] for r in rows if r.get("tokens_per_s")]
    return sum(toks) / len(toks) if toks else float("nan")
def count(path):
    import struct
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    total = 0
    for k, v in header.items():
        if k == "__metadata__": continue
        c = 1
        for d in v["shape"]: c *= d
        total += c
    return total
full_params = count("var/demo/base/model/model.safetensors")
lora_params = count("var/demo/lora/adapter/adapter_model.safetensors")
adapter_bytes = os.path.getsize("var/demo/lora/adapter/adapter_model.safetensors")
model_bytes = os.path.getsize("var/demo/base/model/model.safetensors")
rows = [
    ("held-out genre", genre, ""),
    ("eval ppl on held-out val (byte level)", f"{before['ppl']:.3f} (base)", f"{after['ppl']:.3f} (base + LoRA)"),
    ("eval loss (nats/byte)", f"{before['loss']:.4f}", f"{after['loss']:.4f}"),
    ("training tokens/s", f"{last_train('var/demo/base/metrics.jsonl'):,.0f} (full)", f"{last_train('var/demo/lora/metrics.jsonl'):,.0f} (LoRA)"),
    ("trainable parameters", f"{full_params:,} (full)", f"{lora_params:,} (LoRA)"),
    ("saved weights", f"{model_bytes/1e6:.2f} MB model", f"{adapter_bytes/1e6:.3f} MB adapter"),
]
w0 = max(len(r[0]) for r in rows); w1 = max(len(r[1]) for r in rows)
print()
for a, b, c in rows:
    print(f"  {a:<{w0}}  {b:<{w1}}  {c}")
print()
PY
