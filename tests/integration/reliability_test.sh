#!/usr/bin/env bash
# Issue 20's reliability, as a user meets it: a real distill-coordinator, the
# real distillctl, the real worker under mpirun.
#   1. Note [Preflight]: a coordinator that cannot run its worker refuses to
#      start, naming it; one started from the build tree without --worker-bin
#      finds build/worker/distill-worker. Note [Roots required]: one started
#      without roots (nor --allow-any-path) refuses to start.
#   2. Note [Output ownership]: a second job with another seed into a finished
#      job's output fails DETERMINISTIC at once (no retry), naming the owner
#      and the difference, and leaves the model as it was; the same spec
#      submitted again finds it complete.
#   3. Note [Request ids]: a request id reused with another spec is refused.
#   4. Note [Liveness by progress]: rank 1 of two stopped (SIGSTOP) mid-run:
#      its heartbeat thread stops with it but rank 0's goes on; the attempt
#      fails PROGRESS_TIMEOUT naming a rank and its step, and the retry
#      finishes.
#   5. Note [Confinement at use]: a data path through a symlink leading out of
#      the data root fails the job (DETERMINISTIC), naming it; Note [Cache
#      directory]: text data is tokenized into OUTPUT_ROOT/.distill-cache.
#   6. Staging a crashed checkpoint left behind is removed by the next run.
source "$(dirname "$0")/lib.sh"
C="${DISTILL_COORDINATOR_BIN:?}"
CTL="${DISTILL_CTL_BIN:?}"
lib_init reliab
on_exit stop_coordinator_and_jobs

mkdir -p "$T/out"
write_tiny_config "$T/config.json"
write_text "$T/text.txt" 40
tokenize_bytes "$T/text.txt" "$T/train.bin" || die "tokenize failed"
# spec NAME STEPS SEED OUT [RANKS]
spec() {
  cat >"$T/$1.yaml" <<YAML
type: finetune
name: $1
init: $T/config.json
ranks: ${5:-1}
data: {train: $T/train.bin, seq_len: 16}
train: {steps: $2, micro_batch: 2, lr: 0.01, log_every: 1, threads: 1, seed: $3}
output: $4
YAML
}

# 1. preflight, and Note [Roots required]
"$C" --listen 127.0.0.1:0 --metrics-listen '' --state-dir "$T/nope" --worker-bin "$W" >"$T/pre.log" 2>&1
rc=$?
[ "$rc" -eq 2 ] && grep -q -- "--data-root: required" "$T/pre.log" && ok || fail "no roots: exit $rc: $(cat "$T/pre.log")"
"$C" --listen 127.0.0.1:0 --metrics-listen '' --state-dir "$T/nope" --allow-any-path --worker-bin "$T/missing-worker" \
  >"$T/pre.log" 2>&1
rc=$?
[ "$rc" -eq 1 ] && grep -q "cannot run the worker '$T/missing-worker': no such file" "$T/pre.log" && ok ||
  fail "a missing worker: exit $rc: $(cat "$T/pre.log")"
"$C" --listen 127.0.0.1:0 --metrics-listen '' --state-dir "$T/nope" --allow-any-path --mpirun no-such-mpirun \
  --worker-bin "$W" >"$T/pre.log" 2>&1
rc=$?
[ "$rc" -eq 1 ] && grep -q "cannot run mpirun 'no-such-mpirun': not found on PATH" "$T/pre.log" && ok ||
  fail "a missing mpirun: exit $rc: $(cat "$T/pre.log")"
# From the build tree (the README's way): no --worker-bin.
read -r P0 < <(free_ports 1)
"$C" --listen "127.0.0.1:$P0" --metrics-listen '' --state-dir "$T/tree" --data-root "$T" --output-root "$T/out" \
  >"$T/tree.log" 2>&1 &
TREE_PID=$!
wait_log "$T/tree.log" "serving on port" 30 && grep -q "worker $(dirname "$W")/distill-worker," "$T/tree.log" &&
  ok || fail "the build tree's worker: $(cat "$T/tree.log")"
kill "$TREE_PID" 2>/dev/null
wait "$TREE_PID" 2>/dev/null

start_coordinator_at 0 --slots 2 --max-retries 2 --retry-backoff 0.2s --progress-timeout 5s \
  --heartbeat-timeout 60s --data-root "$T" --output-root "$T/out" || die "coordinator"
export DISTILL_COORDINATOR="127.0.0.1:$PORT"

# 2. output ownership
spec first 4 1 "$T/out/shared"
spec second 4 2 "$T/out/shared"
"$CTL" submit "$T/first.yaml" --watch >"$T/first.txt" 2>&1 || fail "first job: $(cat "$T/first.txt")"
SUM=$(sha256sum <"$T/out/shared/model/model.safetensors")
ID1=$(head -n 1 "$T/first.txt")
"$CTL" submit "$T/second.yaml" --watch >"$T/second.txt" 2>&1
ID2=$(head -n 1 "$T/second.txt")
[ "$(field "$ID2" state)" = FAILED ] && [ "$(field "$ID2" failure_reason)" = DETERMINISTIC ] &&
  [ "$(field "$ID2" attempt)" = 1 ] && ok || fail "second job: $("$CTL" get "$ID2")"
msg=$(field "$ID2" failure_message)
case "$msg" in
  *"$T/out/shared: belongs to job $ID1, which differs from this job $ID2 in seed (1, now 2)"*) ok ;;
  *) fail "ownership message: $msg" ;;
esac
[ "$(sha256sum <"$T/out/shared/model/model.safetensors")" = "$SUM" ] && ok || fail "the first job's model changed"
"$CTL" submit "$T/first.yaml" --watch >"$T/again.txt" 2>&1 && ok || fail "the same spec again: $(cat "$T/again.txt")"
ID3=$(head -n 1 "$T/again.txt")
grep -q "already complete" "$T/var/jobs/$ID3/attempt-1/logs/1/rank.0/stdout" && ok ||
  fail "resubmission: $(cat "$T/var/jobs/$ID3/attempt-1/logs/1/rank.0/stdout")"

# 3. request ids
spec r1 2 1 "$T/out/r1"
spec r2 2 1 "$T/out/r2"
A=$("$CTL" submit "$T/r1.yaml" --request-id req-7) || fail "submit with a request id"
B=$("$CTL" submit "$T/r1.yaml" --request-id req-7)
[ "$A" = "$B" ] && ok || fail "the same request: $A vs $B"
"$CTL" submit "$T/r2.yaml" --request-id req-7 >"$T/r2.txt" 2>&1
rc=$?
[ "$rc" -ne 0 ] && grep -q "ALREADY_EXISTS.*request_id 'req-7' was used for job $A with another spec" "$T/r2.txt" &&
  ok || fail "another spec with the request id: exit $rc: $(cat "$T/r2.txt")"
wait_state "$A" SUCCEEDED 120 || fail "r1: $("$CTL" get "$A")"

# 4. progress timeout: two ranks, rank 1 stopped
spec stuck 400 1 "$T/out/stuck" 2
ID4=$("$CTL" submit "$T/stuck.yaml" --max-retries 1) || die "submit stuck"
LOG4="$T/var/jobs/$ID4/attempt-1/logs/1/rank.0/stdout"
wait_log "$LOG4" "^step 5/" 120 || fail "stuck job did not start: $(tail -3 "$LOG4")"
R1=
for p in $(pgrep -f "distill-worker train --spec $T/var/jobs/$ID4/attempt-1/spec.json"); do
  tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1" && R1=$p
done
[ -n "$R1" ] || die "rank 1 of $ID4 not found"
kill -STOP "$R1"
wait_state "$ID4" SUCCEEDED 300 || fail "stuck job after its retry: $("$CTL" get "$ID4")"
"$CTL" get "$ID4" --json >"$T/stuck.json"
[ "$(field "$ID4" attempt)" = 2 ] && ok || fail "stuck attempts: $(cat "$T/stuck.json")"
grep -q "attempt 1 failed: PROGRESS_TIMEOUT: rank [01] (student [01]) still at step [0-9]* after" "$T/coordinator.log" &&
  ok || fail "progress timeout: $(grep "$ID4" "$T/coordinator.log" | tail -5)"

# 5. Note [Confinement at use]: the submit-time check resolves the paths as
# they are then; a directory swapped for a symlink out of the data root after
# the job was accepted is refused at the worker's open. The job waits behind
# another one writing its output (Note [One writer per output]) while the swap
# happens. Note [Cache directory]: text is tokenized into the output root's
# cache, not beside the input.
OUTSIDE="$T/../reliab_outside.$$"
mkdir -p "$OUTSIDE" "$T/swap"
on_exit "rm -rf '$OUTSIDE'"
cp "$T/train.bin" "$OUTSIDE/train.bin"
cp "$T/train.bin" "$T/swap/train.bin"
spec holder 100000 1 "$T/out/swapped"
spec swapped 2 1 "$T/out/swapped"
sed -i "s|train: $T/train.bin|train: $T/swap/train.bin|" "$T/swapped.yaml"
IDH=$("$CTL" submit "$T/holder.yaml") || die "submit holder"
wait_state "$IDH" RUNNING 60 || fail "holder: $("$CTL" get "$IDH")"
ID6=$("$CTL" submit "$T/swapped.yaml") || die "submit swapped"
[ "$(field "$ID6" state)" = QUEUED ] && ok || fail "swapped job did not wait: $("$CTL" get "$ID6")"
rm -rf "$T/swap" && ln -s "$OUTSIDE" "$T/swap"
"$CTL" cancel "$IDH" --force >/dev/null || fail "cancel holder"
wait_state "$ID6" FAILED 120 || fail "swapped: $("$CTL" get "$ID6")"
[ "$(field "$ID6" failure_reason)" = DETERMINISTIC ] && field "$ID6" failure_message | grep -q \
  "$T/swap/train.bin: resolves (through a symlink or '..') outside the data root $T" && ok ||
  fail "swapped: $("$CTL" get "$ID6")"
spec text 2 1 "$T/out/text"
sed -i "s|train: $T/train.bin|train: $T/text.txt|" "$T/text.yaml"
"$CTL" submit "$T/text.yaml" --watch >"$T/text.out" 2>&1 || fail "text job: $(cat "$T/text.out")"
ls "$T"/text.txt.*.bin >/dev/null 2>&1 && fail "a cache beside the input: $(ls "$T")" || ok
ls "$T/out/.distill-cache/"*-text.txt.bytes.bin >/dev/null 2>&1 && ok || fail "no cache in the output root's cache dir"

# 6. a crashed checkpoint's staging (standalone worker, same spec again)
mkdir -p "$T/out/shared/checkpoints/step_00000003.tmp.4242" "$T/out/shared/checkpoints/.pending_step_00000003"
env -u DISTILL_COORDINATOR "$W" train --spec "$T/first.yaml" >"$T/rerun.txt" 2>&1 || fail "rerun: $(cat "$T/rerun.txt")"
[ ! -e "$T/out/shared/checkpoints/step_00000003.tmp.4242" ] && [ ! -e "$T/out/shared/checkpoints/.pending_step_00000003" ] &&
  grep -q "removed 2 half-written file(s)" "$T/rerun.txt" && ok || fail "staging left: $(ls -a "$T/out/shared/checkpoints") $(cat "$T/rerun.txt")"

finish reliability
