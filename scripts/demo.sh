#!/usr/bin/env bash
# README command 1, the main job: installs what is missing, builds, prepares
# the Brown corpus, starts the coordinator (distill-coordinator, state in
# var/coordinator), and through it (distillctl submit --watch):
#   1. trains a teacher, a byte-level Llama (4 x 256), on the corpus;
#   2. distills a student 8x smaller (2 x 128) from it: KD on the logits plus
#      the student's last layer pulled towards the teacher's (features);
#   3. trains the same student without KD (same init, batches and steps);
#   4. LoRA-fine-tunes the teacher on the held-out genre;
# then prints two tables (the student against the same student without KD
# and against the teacher; LoRA before and after) and stops the coordinator.
# Idempotent: a rerun submits the jobs again and the worker resumes from their
# checkpoints or skips finished training (a trained teacher is reused).
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
# Jobs read only beneath the checkout and write only beneath var/ (Note [Roots required]).
"$COORDINATOR" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --state-dir "$STATE" --slots 1 \
  --worker-bin "$WORKER" --data-root "$ROOT" --output-root "$ROOT/var" >"$STATE/coordinator.log" 2>&1 &
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
echo "== 1/4: the teacher: full-parameter training on the Brown corpus (all genres but $HOLDOUT)"
submit_and_watch examples/brown_full.yaml
echo
echo "== 2/4: a student 8x smaller distilled from the teacher (KD on logits + last-layer features)"
submit_and_watch examples/brown_distill.yaml
echo
echo "== 3/4: the same student without KD (cross-entropy only)"
submit_and_watch examples/brown_student_ce.yaml
echo
echo "== 4/4: LoRA fine-tuning of the teacher on the held-out genre ($HOLDOUT)"
submit_and_watch examples/brown_lora_holdout.yaml
echo
"$CTL" list --page-size 4   # this run's four jobs
echo
echo "== evaluation"
# The first 65,536 tokens of val: every model is measured on the same ones.
head -c 262144 data/brown/val.bin >var/demo/val_65k.bin
evaluate() { "$WORKER" eval --tokens "$1" --seq-len 256 --threads "$THREADS" "${@:2}" | tail -n 1; }
teacher=$(evaluate var/demo/val_65k.bin --model var/demo/base/model)
kd=$(evaluate var/demo/val_65k.bin --model var/demo/distill/model --teacher var/demo/base/model)
ce=$(evaluate var/demo/val_65k.bin --model var/demo/student_ce/model --teacher var/demo/base/model)
genre_val="data/brown/genre/$HOLDOUT/val.bin"
before=$(evaluate "$genre_val" --model var/demo/base/model)
after=$(evaluate "$genre_val" --model var/demo/base/model --adapter var/demo/lora/adapter)
/usr/bin/python3 scripts/demo_tables.py "$teacher" "$kd" "$ce" "$before" "$after" "$HOLDOUT"
