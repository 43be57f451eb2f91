#!/usr/bin/env bash
# Reproduces docs/experiments.md's three questions (issue 18) end to end:
#   1. data: Brown with a 4096-token BPE trained on its train split
#      (scripts/prepare_brown.sh --bpe 4096 -> data/brown_bpe);
#   2. the teacher: examples/brown_bpe_teacher.yaml (1000 steps), then
#      scripts/experiments/teacher_tail.yaml (300 more) -> var/brown_bpe/teacher_tail;
#   3. through a coordinator (state in var/experiments/coordinator, 2 slots of
#      1 thread): the teacher captured once (capture.yaml), then the sweeps
#      a_temperature + a_baseline, b_features, and c_lora + c_full (their base
#      is question (a)'s best student, T = 1, alpha = 0.9, seed 1);
#   4. `distillctl report` of each question into docs/experiments/{a,b,c},
#      extras.json (teacher ppl, full-vocabulary KL, sizes) and tables.md
#      (compact tables of the reports' numbers, paired by seed).
# Idempotent: finished stages are kept (the teacher's model, a complete cache),
# and each sweep is submitted with a fixed --request-id, so a rerun against
# the same coordinator state finds its jobs instead of running them again.
# Takes about 2 hours on 2 cores (the teacher ~30 min, the sweeps ~75 min).
# Environment: THREADS (teacher and capture, default 2), SLOTS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
THREADS="${THREADS:-2}"
SLOTS="${SLOTS:-2}"
export OMP_NUM_THREADS="$THREADS"
EXP=scripts/experiments

bash scripts/setup.sh
bash scripts/build.sh
WORKER="$ROOT/build/worker/distill-worker"
COORDINATOR="$ROOT/build/coordinator/distill-coordinator"
CTL="$ROOT/build/coordinator/ctl/distillctl"
bash scripts/prepare_brown.sh --bpe 4096 --worker "$WORKER" --holdout science_fiction --threads "$THREADS"

# train_once SPEC OUTPUT: trains unless OUTPUT/model is there (a killed run
# resumes from its checkpoints).
train_once() {
  if [ -f "$2/model/model.safetensors" ]; then
    echo "$2/model: already trained"
  else
    "$WORKER" train --spec "$1"
  fi
}
echo "== teacher"
train_once examples/brown_bpe_teacher.yaml var/brown_bpe/teacher
train_once "$EXP/teacher_tail.yaml" var/brown_bpe/teacher_tail

# The coordinator, on a free loopback port.
STATE=var/experiments/coordinator
mkdir -p "$STATE"
"$COORDINATOR" --listen 127.0.0.1:0 --state-dir "$STATE" --slots "$SLOTS" --worker-bin "$WORKER" \
  --data-root "$ROOT" --output-root "$ROOT/var" \
  >>"$STATE/coordinator.log" 2>&1 &
COORD_PID=$!
trap 'kill "$COORD_PID" 2>/dev/null; wait "$COORD_PID" 2>/dev/null || true' EXIT
PORT=
for _ in $(seq 1 100); do
  PORT=$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$STATE/coordinator.log" | tail -n 1)
  if [ -n "$PORT" ] && "$CTL" --coordinator "127.0.0.1:$PORT" list >/dev/null 2>&1; then break; fi
  PORT=
  kill -0 "$COORD_PID" 2>/dev/null || break
  sleep 0.2
done
[ -n "$PORT" ] || { echo "distill-coordinator did not start:"; tail -5 "$STATE/coordinator.log"; exit 1; }
export DISTILL_COORDINATOR="127.0.0.1:$PORT"

# submit NAME SPEC [--capture]: the job's id (the same job on a rerun).
submit() {
  "$CTL" submit --request-id "issue18-$1" "${@:3}" "$2" | head -n 1
}
# wait_all ID...: follows each job to its end; fails unless all succeeded.
wait_all() {
  local id
  for id in "$@"; do
    "$CTL" watch "$id" >/dev/null || { echo "job $id did not succeed:"; "$CTL" get "$id"; exit 1; }
  done
}

echo "== capture"
CAPTURE=$(submit capture "$EXP/capture.yaml" --capture)
wait_all "$CAPTURE"
"$CTL" logs "$CAPTURE" | grep '^capture done' || true

echo "== sweeps (a), (b) and their baseline"
A=$(submit a "$EXP/a_temperature.yaml")
BASE=$(submit baseline "$EXP/a_baseline.yaml")
B=$(submit b-t1 "$EXP/b_features.yaml")
echo "a $A, baseline $BASE, b $B"
wait_all "$BASE" "$A" "$B"

# (c)'s base: (a)'s best student, T = 1, alpha = 0.9, seed 1.
C_BASE=$("$CTL" get "$A" --json | python3 -c '
import json, subprocess, sys
for cid in json.load(sys.stdin)["child_ids"]:
    child = json.loads(subprocess.check_output([sys.argv[1], "get", cid, "--json"]))
    v = child.get("sweep_values", {})
    if tuple(float(v.get(k, 0)) for k in ("distill.temperature", "distill.alpha", "train.seed")) == (1, 0.9, 1):
        print(child["spec"]["output"] + "/model"); break' "$CTL")
[ -d "$C_BASE" ] || { echo "question (c)'s base model not found ($C_BASE)"; exit 1; }
ln -sfn "$C_BASE" var/experiments/c_base
echo "== sweep (c) on $(cat data/brown_bpe/holdout/genre.txt), from $C_BASE"
CL=$(submit c-lora-1ep "$EXP/c_lora.yaml")
CF=$(submit c-full-1ep "$EXP/c_full.yaml")
wait_all "$CL" "$CF"

echo "== reports"
python3 "$EXP/teacher_curve.py" docs/experiments
"$CTL" report "$A" "$BASE" --out docs/experiments/a
"$CTL" report "$B" "$BASE" --out docs/experiments/b
"$CTL" report "$CL" "$CF" --out docs/experiments/c
python3 "$EXP/extras.py" --worker "$WORKER" --ctl "$CTL" --baseline "$BASE" --a "$A" \
  --threads "$THREADS" --out docs/experiments/extras.json
python3 "$EXP/tables.py" docs/experiments >docs/experiments/tables.md
echo "done: docs/experiments/{a,b,c}/report.md, extras.json and tables.md (the tables of docs/experiments.md)"
