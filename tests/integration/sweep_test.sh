#!/usr/bin/env bash
# Sweeps end to end: the real distillctl and distill-coordinator (2 slots)
# launching the real distill-worker.
#   1. a 2 x 2 x 2 distill sweep (distill.temperature x student.method x
#      train.seed, tiny models, online teacher): submit prints the sweep and
#      its 8 children, list shows them under it, get shows their values;
#   2. kill -9 the coordinator while children run, restart it on the same
#      state dir: the sweep still succeeds, every child's output exists and
#      no child ran to completion twice;
#   3. distillctl report of the sweep: a row per child, the seeds aggregated
#      into one summary row per (temperature, method), the plots as PNGs;
#   4. a sweep sharing one teacher cache: its capture child runs first, every
#      student child reads the cache and loads no teacher;
#   5. cancel of a second sweep cancels all its children;
# and distill-worker train refuses a spec with a sweep.
source "$(dirname "$0")/lib.sh"
C="${DISTILL_COORDINATOR_BIN:?}"
CTL="${DISTILL_CTL_BIN:?}"
lib_init sweep
on_exit stop_coordinator_and_jobs

write_tiny_config "$T/student.json"
write_tiny_config "$T/teacher.json"
write_text "$T/text.txt" 40
tokenize_bytes "$T/text.txt" "$T/train.bin" || die "tokenize failed"
"$W" init --config "$T/teacher.json" --out "$T/teacher0" --seed 1 >/dev/null || die "init teacher"

sweep_spec() {  # sweep_spec NAME STEPS SWEEP
  cat >"$T/$1.yaml" <<YAML
type: distill
name: $1
teacher: {model: teacher0}
student: {init: student.json}
data: {train: train.bin, eval: [train.bin], seq_len: 16}
train: {steps: $2, micro_batch: 2, lr: 0.01, log_every: 1, threads: 1}
checkpoint: {every: 2}
output: out/$1
sweep: $3
YAML
}

start_coordinator() {
  start_coordinator_at "${PORT:-0}" --slots 2 --max-retries 1 --retry-backoff 0.5s || die "coordinator"
}
start_coordinator
export DISTILL_COORDINATOR="127.0.0.1:$PORT"

# 1. the grid: submit, list, get
sweep_spec grid 4 "{distill.temperature: [1, 2], student.method: [lora, full], train.seed: [1, 2]}"
"$CTL" submit "$T/grid.yaml" >"$T/submit.txt" 2>&1 || die "submit: $(cat "$T/submit.txt")"
P=$(head -n 1 "$T/submit.txt")
[ "$(tail -n +2 "$T/submit.txt" | wc -l)" -eq 8 ] && ok || fail "submit prints the 8 children: $(cat "$T/submit.txt")"
grep -q "distill.temperature=2, student.method=\"full\", train.seed=1" "$T/submit.txt" && ok \
  || fail "children's values: $(cat "$T/submit.txt")"
mapfile -t KIDS < <(tail -n +2 "$T/submit.txt" | awk '{print $1}')
[ "$(field "$P" kind)" = SWEEP ] && ok || fail "the parent is a sweep: $("$CTL" get "$P")"
"$CTL" list >"$T/list.txt"
grep -q "^$P " "$T/list.txt" && ok || fail "list: the sweep at top level: $(cat "$T/list.txt")"
[ "$(grep -c "^  j" "$T/list.txt")" -eq 8 ] && ok || fail "list: 8 children indented: $(cat "$T/list.txt")"
[ "$(grep -A1 "^$P " "$T/list.txt" | tail -n 1 | awk '{print $1}')" = "${KIDS[0]}" ] && ok \
  || fail "list: the first child right under its sweep: $(cat "$T/list.txt")"

# 2. kill -9 while children run; restart; the sweep completes
wait_log "$T/var/jobs/${KIDS[0]}/attempt-1/logs/1/rank.0/stdout" "^step 1/" 120 \
  || die "no child started: $(tail -5 "$T/coordinator.log")"
kill -9 "$COORD_PID"; wait "$COORD_PID" 2>/dev/null
start_coordinator
wait_state "$P" SUCCEEDED 150 && ok || fail "sweep after restart: $("$CTL" get "$P"; tail -5 "$T/coordinator.log")"
"$CTL" get "$P" >"$T/get.txt"
[ "$(grep -c "SUCCEEDED  distill.temperature" "$T/get.txt")" -eq 8 ] && ok || fail "get: children: $(cat "$T/get.txt")"
for k in "${KIDS[@]}"; do
  out=$(field "$k" output_dir)
  [ -f "$out/adapter/adapter_model.safetensors" ] || [ -f "$out/model/model.safetensors" ] \
    || fail "child $k output in '$out': $(ls "$out" 2>&1)"
  done_runs=$(grep -lx 0 "$T/var/jobs/$k"/attempt-*/exit_code 2>/dev/null | wc -l)
  [ "$done_runs" -eq 1 ] || fail "child $k ran to completion $done_runs times"
done
ok
[ "$(ls -d "$T/out/grid"/*/ | wc -l)" -eq 8 ] && ok || fail "8 distinct output dirs: $(ls "$T/out/grid")"
"$CTL" watch "$P" >"$T/watch.txt" 2>&1 && grep -q "SUCCEEDED" "$T/watch.txt" && ok \
  || fail "watch of the sweep: $(cat "$T/watch.txt")"
# Only the coordinator expands a sweep: the worker refuses the spec.
"$W" train --spec "$T/grid.yaml" >/dev/null 2>"$T/refused.txt" && fail "the worker ran a sweep" \
  || { grep -q "sweep: submit a sweep with distillctl submit" "$T/refused.txt" && ok \
       || fail "worker refuses a sweep: $(cat "$T/refused.txt")"; }

# 3. the sweep's report: 8 rows, 4 groups of 2 seeds, plots
"$CTL" report "$P" --out "$T/report" >"$T/report.txt" 2>&1 || fail "report: $(cat "$T/report.txt")"
$PY - "$T/report" "${KIDS[@]}" <<'PY' && ok || fail "the sweep's report: $(cat "$T/report/summary.csv")"
import csv, struct, sys
rep, kids = sys.argv[1], sys.argv[2:]
rows = list(csv.DictReader(open(f"{rep}/children.csv")))
assert sorted(r["id"] for r in rows) == sorted(kids), rows
for r in rows:
    assert r["state"] == "SUCCEEDED", r
    assert float(r["eval_loss"]) > 0 and 0 <= float(r["top1_agreement"]) <= 1, r
    assert float(r["kl"]) >= 0 and int(r["trainable_params"]) > 0, r
assert {(r["distill.temperature"], r["student.method"], r["train.seed"]) for r in rows} == {
    (t, m, s) for t in ("1", "2") for m in ("lora", "full") for s in ("1", "2")}, rows
summary = list(csv.DictReader(open(f"{rep}/summary.csv")))
assert len(summary) == 4 and all(g["runs"] == "2" for g in summary), summary
for g in summary:
    members = [float(r["eval_loss"]) for r in rows
               if (r["distill.temperature"], r["student.method"]) ==
                  (g["distill.temperature"], g["student.method"])]
    mean = sum(members) / 2
    assert abs(float(g["eval_loss_mean"]) - mean) <= 1e-5 * abs(mean), (g, members)  # 6 digits
    half = 12.706 * abs(members[0] - members[1]) / 2  # t(0.975, 1 dof) * s / sqrt(2)
    assert abs(float(g["eval_loss_ci_high"]) - (mean + half)) <= 1e-4 * (1 + half), (g, members)
for png in ("loss_curves", "eval_loss_vs_distill_temperature", "eval_loss_vs_student_method",
            "kl_vs_distill_temperature"):
    b = open(f"{rep}/{png}.png", "rb").read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", b[16:24])[0] > 0, png
PY

# 4. a shared teacher cache: one capture, then the students read it
cat >"$T/shared.yaml" <<YAML
type: distill
name: shared
teacher: {model: teacher0, cache: out/shared-cache}
student: {init: student.json}
distill: {logits: topk, top_k: 16}
data: {train: train.bin, eval: [train.bin], seq_len: 16}
train: {steps: 3, micro_batch: 2, lr: 0.01, log_every: 1, threads: 1}
output: out/shared
sweep: {distill.temperature: [1, 4], train.seed: [1, 2]}
YAML
"$CTL" submit "$T/shared.yaml" >"$T/shared.txt" 2>&1 || die "submit shared: $(cat "$T/shared.txt")"
P3=$(head -n 1 "$T/shared.txt")
mapfile -t K3 < <(tail -n +2 "$T/shared.txt" | awk '{print $1}')
[ "${#K3[@]}" -eq 5 ] && [ "$(field "${K3[0]}" kind)" = CAPTURE ] && ok \
  || fail "a capture child first, then 4 students: $(cat "$T/shared.txt")"
wait_state "$P3" SUCCEEDED 120 && ok || fail "shared-cache sweep: $("$CTL" get "$P3"; tail -5 "$T/coordinator.log")"
grep -q "^capture done: " "$T/var/jobs/${K3[0]}/attempt-1/logs/1/rank.0/stdout" && ok \
  || fail "capture child's log: $(tail -3 "$T/var/jobs/${K3[0]}/attempt-1/logs/1/rank.0/stdout")"
for k in "${K3[@]:1}"; do
  log="$T/var/jobs/$k/attempt-1/logs/1/rank.0/stdout"
  grep -q "teacher: cache .*shared-cache (exact, top-16" "$log" || fail "child $k reads the cache: $(head -5 "$log")"
  $PY -c "import sys; from datetime import datetime as d; p=lambda s: d.fromisoformat(s.replace('Z', '+00:00'))
sys.exit(p(sys.argv[1]) < p(sys.argv[2]))" "$(field "$k" start_time)" "$(field "${K3[0]}" end_time)" \
    || fail "child $k started ($(field "$k" start_time)) before the capture ended ($(field "${K3[0]}" end_time))"
done
ok

# 5. cancel of a sweep cancels every child
sweep_spec long 100000 "{train.seed: [1, 2, 3]}"
P2=$("$CTL" submit "$T/long.yaml" | head -n 1)
K2=$(field "$P2" child_ids | tr -d "[]',")
wait_state "$P2" RUNNING 60 && ok || fail "second sweep running: $("$CTL" get "$P2")"
"$CTL" cancel "$P2" >/dev/null || fail "cancel of the sweep"
wait_state "$P2" CANCELLED 60 && ok || fail "sweep cancelled: $("$CTL" get "$P2")"
for k in $K2; do
  [ "$(field "$k" state)" = CANCELLED ] || fail "child $k cancelled: $("$CTL" get "$k")"
done
ok
finish sweep_test || { echo "--- coordinator log"; tail -30 "$T/coordinator.log"; false; }
