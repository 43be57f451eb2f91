#!/usr/bin/env bash
# README command 1, the main job: installs what is missing, builds, prepares
# the Brown corpus, starts the coordinator (distill-coordinator, state in
# var/coordinator), and through it (distillctl submit --watch) trains a small
# byte-level Llama on the corpus (full-parameter), then LoRA-fine-tunes it on
# the held-out genre; prints a summary table and stops the coordinator.
# Idempotent: a rerun submits the jobs again and the worker resumes from their
# checkpoints or skips finished training.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
THREADS="${THREADS:-$(nproc)}"
export OMP_NUM_THREADS="$THREADS"

bash scripts/setup.sh
bash scripts/build.sh
WORKER="$ROOT/build/worker/distill-worker"
COORDINATOR="$ROOT/build/coordinator/distill-coordinator"
CTL="$ROOT/build/coordinator/ctl/distillctl"
bash scripts/prepare_brown.sh --out data/brown --worker "$WORKER" --holdout science_fiction

# The coordinator, on a free loopback port; its jobs run one at a time.
STATE=var/coordinator
mkdir -p "$STATE" var/demo
"$COORDINATOR" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --state-dir "$STATE" --slots 1 \
  --worker-bin "$WORKER" >"$STATE/coordinator.log" 2>&1 &
COORD_PID=$!
JOB=
stop_coordinator() {
  # Interrupted mid-job: cancel it gracefully (the worker checkpoints, so a
  # rerun resumes), then stop the coordinator.
  if [ -n "$JOB" ]; then "$CTL" cancel "$JOB" >/dev/null 2>&1 || true; fi
  kill "$COORD_PID" 2>/dev/null && wait "$COORD_PID" 2>/dev/null || true
}
trap stop_coordinator EXIT
PORT=
for _ in $(seq 1 100); do
  PORT=$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$STATE/coordinator.log")
  [ -n "$PORT" ] && break
  kill -0 "$COORD_PID" 2>/dev/null || break
  sleep 0.1
done
[ -n "$PORT" ] || { echo "distill-coordinator did not start:"; cat "$STATE/coordinator.log"; exit 1; }
export DISTILL_COORDINATOR="127.0.0.1:$PORT"
echo "distill-coordinator on $DISTILL_COORDINATOR ($(sed -n 's/.*(metrics port \([0-9]*\)).*/metrics on http:\/\/127.0.0.1:\1\/metrics/p' "$STATE/coordinator.log"), log $STATE/coordinator.log)"

# submit_and_watch SPEC: submits through the coordinator and follows the job
# to its end; fails the demo if the job does not succeed.
submit_and_watch() {
  JOB=$("$CTL" submit "$1")
  echo "job $JOB (logs: $CTL logs $JOB)"
  "$CTL" watch "$JOB"
  JOB=
}

HOLDOUT=$(cat data/brown/holdout.txt)
echo
echo "== 1/2: full-parameter training on the Brown corpus (all genres but $HOLDOUT)"
submit_and_watch examples/brown_full.yaml
echo
echo "== 2/2: LoRA fine-tuning on the held-out genre ($HOLDOUT)"
submit_and_watch examples/brown_lora_holdout.yaml
echo
"$CTL" list
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
