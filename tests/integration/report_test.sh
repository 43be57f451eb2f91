#!/usr/bin/env bash
# `distillctl report` end to end on one job: a real distill-coordinator runs
# two tiny finetune jobs with the real worker; the report of one of them has
# one row whose numbers match the worker's own metrics.jsonl (eval loss, its
# exp, the tokens, the loss curve's steps), real PNGs drawn by gnuplot, and
# the errors: unknown id, DIR not writable, gnuplot missing, no --out; and
# the report of both jobs side by side (a job column).
# (A sweep's report, across children and seeds: tests/integration/sweep_test.sh.)
source "$(dirname "$0")/lib.sh"
C="${DISTILL_COORDINATOR_BIN:?}"
CTL="${DISTILL_CTL_BIN:?}"
lib_init report
on_exit stop_coordinator_and_jobs

write_tiny_config "$T/config.json"
write_text "$T/text.txt" 40
tokenize_bytes "$T/text.txt" "$T/train.bin" || die "tokenize failed"
write_text "$T/eval.txt" 8
tokenize_bytes "$T/eval.txt" "$T/eval.bin" || die "tokenize failed"
spec() {  # spec NAME SEED
  cat >"$T/$1.yaml" <<YAML
type: finetune
name: $1
init: config.json
data: {train: train.bin, eval: eval.bin, seq_len: 16}
train: {steps: 6, micro_batch: 2, lr: 0.01, log_every: 2, eval_batches: 2, threads: 1, seed: $2}
output: out/$1
YAML
}

start_coordinator_at 0 --slots 1 --max-retries 0 || die "coordinator"
export DISTILL_COORDINATOR="127.0.0.1:$PORT"

run() {  # run CMD...: stdout, stderr and the exit code (RC) kept
  "$@" >"$T/out.txt" 2>"$T/err.txt"
  RC=$?
}

spec one 1
spec two 2
run "$CTL" submit "$T/one.yaml" --watch
[ "$RC" -eq 0 ] || die "job one: exit $RC $(cat "$T/out.txt" "$T/err.txt")"
ID1=$(head -n 1 "$T/out.txt")
run "$CTL" submit "$T/two.yaml" --watch
[ "$RC" -eq 0 ] || die "job two: exit $RC $(cat "$T/out.txt" "$T/err.txt")"
ID2=$(head -n 1 "$T/out.txt")

# 1. the report of job one
run "$CTL" report "$ID1" --out "$T/rep"
[ "$RC" -eq 0 ] && ok || fail "report: exit $RC $(cat "$T/err.txt")"
for f in children.csv summary.csv report.md loss_curves.png plots.gp; do
  [ -s "$T/rep/$f" ] && ok || fail "report wrote $f"
done
grep -q "$T/rep/loss_curves.png" "$T/out.txt" && ok || fail "report lists its files: $(cat "$T/out.txt")"
$PY - "$T/rep" "$ID1" "$T/out/one/metrics.jsonl" <<'PY' && ok || fail "report's numbers"
import csv, json, math, struct, sys
rep, job_id, metrics = sys.argv[1:]
rows = list(csv.DictReader(open(f"{rep}/children.csv")))
assert len(rows) == 1, rows
r = rows[0]
assert r["id"] == job_id and r["state"] == "SUCCEEDED", r
records = [json.loads(line) for line in open(metrics)]
evals = [x for x in records if x["event"] == "eval"]
steps = [x for x in records if x["event"] == "train"]
assert evals and steps, records
# The worker's own record of the run, written beside the model.
assert abs(float(r["eval_loss"]) - evals[-1]["loss"]) <= 1e-5 * abs(evals[-1]["loss"]), (r, evals[-1])
assert abs(float(r["ppl"]) - math.exp(evals[-1]["loss"])) <= 1e-4 * math.exp(evals[-1]["loss"]), r
assert int(r["eval_step"]) == 6 and int(r["step"]) == 6 and int(r["total_steps"]) == 6, r
assert int(r["tokens"]) == steps[-1]["tokens"] == 6 * 2 * 16, (r, steps[-1])
assert int(r["trainable_params"]) > 0 and int(r["peak_memory_bytes"]) > 0, r
assert float(r["tokens_per_s_mean"]) > 0 and float(r["tokens_per_s_final"]) > 0, r
assert r["kl"] == "" and r["top1_agreement"] == "", r  # a finetune has no teacher
curve = [l.split() for l in open(f"{rep}/loss_curves.dat") if l.strip() and not l.startswith("#")]
assert [int(s) for s, _ in curve] == [x["step"] for x in steps], curve
for (s, loss), x in zip(curve, steps):
    assert abs(float(loss) - x["loss"]) <= 1e-6 * abs(x["loss"]), (loss, x)
summary = list(csv.DictReader(open(f"{rep}/summary.csv")))
assert len(summary) == 1 and summary[0]["runs"] == "1" and summary[0]["eval_loss_ci_low"] == "", summary
png = open(f"{rep}/loss_curves.png", "rb").read()
assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR", png[:16]
w, h = struct.unpack(">II", png[16:24])
assert w > 0 and h > 0, (w, h)
md = open(f"{rep}/report.md").read()
assert f"# Report: {job_id}" in md and "![loss_curves.png](loss_curves.png)" in md, md
assert "| id | state |" in md and "| runs | eval loss |" in md, md
PY
# trainable parameters as the worker's start line counts them ("..., N trainable, ...")
TRAINABLE=$("$CTL" logs "$ID1" | sed -n 's/.* \([0-9]*\) trainable, .*/\1/p' | head -n 1)
[ -n "$TRAINABLE" ] && grep -q ",$TRAINABLE,[0-9]*$" "$T/rep/children.csv" && ok ||
  fail "trainable params '$TRAINABLE' as the worker logged: $(cat "$T/rep/children.csv")"
grep -q "$ID2" "$T/rep/children.csv" && fail "the other job is not in a single job's report" || ok

# 1b. both jobs in one report: a job column with their names, a row each
run "$CTL" report "$ID1" "$ID2" --out "$T/both"
[ "$RC" -eq 0 ] && ok || fail "report of two: exit $RC $(cat "$T/err.txt")"
$PY - "$T/both" "$ID1" "$ID2" <<'PY' && ok || fail "report of two jobs"
import csv, sys
rep, id1, id2 = sys.argv[1:]
rows = list(csv.DictReader(open(f"{rep}/children.csv")))
assert [(r["id"], r["job"]) for r in rows] == [(id1, "one"), (id2, "two")], rows
summary = list(csv.DictReader(open(f"{rep}/summary.csv")))
assert [(g["job"], g["runs"]) for g in summary] == [("one", "1"), ("two", "1")], summary
md = open(f"{rep}/report.md").read()
assert f"# Report: {id1}, {id2}" in md and "Job `two`" in md, md
PY
[ -s "$T/both/eval_loss_vs_job.png" ] && ok || fail "eval loss against job plotted: $(ls "$T/both")"

# 2. errors
run "$CTL" report no-such-job --out "$T/rep2"
[ "$RC" -eq 1 ] && grep -q "^distillctl: NOT_FOUND: .*no-such-job" "$T/err.txt" && ok ||
  fail "unknown id: exit $RC, $(cat "$T/err.txt")"
run "$CTL" report "$ID1" --out "$T/one.yaml/rep"
[ "$RC" -eq 1 ] && grep -q "^distillctl: FAILED_PRECONDITION: .*$T/one.yaml/rep" "$T/err.txt" && ok ||
  fail "DIR not writable: exit $RC, $(cat "$T/err.txt")"
run env PATH=/nonexistent "$CTL" report "$ID1" --out "$T/rep3"
[ "$RC" -eq 1 ] && grep -q "^distillctl: FAILED_PRECONDITION: gnuplot not found" "$T/err.txt" && ok ||
  fail "gnuplot missing: exit $RC, $(cat "$T/err.txt")"
run "$CTL" report "$ID1"
[ "$RC" -eq 2 ] && grep -q -- "--out" "$T/err.txt" && ok || fail "no --out: exit $RC, $(cat "$T/err.txt")"

finish report_test || { echo "--- coordinator log"; tail -30 "$T/coordinator.log"; false; }
