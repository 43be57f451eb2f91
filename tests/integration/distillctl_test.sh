#!/usr/bin/env bash
# The real distillctl against a real distill-coordinator (bearer token on)
# launching the real worker: submit --watch, list, get, get --json, logs,
# cancel, delete, watch of a cancelled and of a failed job, watch across a coordinator
# restart; exit codes 0/1/2 and the "distillctl: CODE: message" error line.
source "$(dirname "$0")/lib.sh"
C="${DISTILL_COORDINATOR_BIN:?}"
CTL="${DISTILL_CTL_BIN:?}"
lib_init ctl
on_exit stop_coordinator_and_jobs

# A tiny model and data (as in cli_test.sh), and specs in their own directory
# with paths relative to it: distillctl must resolve them against the file.
mkdir -p "$T/specs" "$T/elsewhere"
write_tiny_config "$T/specs/config.json"
write_text "$T/text.txt" 40
tokenize_bytes "$T/text.txt" "$T/specs/train.bin" || die "tokenize failed"
spec() {  # spec NAME STEPS [INIT]
  cat >"$T/specs/$1.yaml" <<YAML
type: finetune
name: $1
init: ${3:-config.json}
data: {train: train.bin, seq_len: 16}
train: {steps: $2, micro_batch: 2, lr: 0.01, log_every: 1, threads: 1}
output: ../out/$1
YAML
}

echo "ctl-test-token" >"$T/token"
chmod 600 "$T/token"  # a token others can read is refused
# start_coordinator [PORT]: port 0 (default) picks a free one; sets PORT.
start_coordinator() {
  start_coordinator_at "${1:-0}" --slots 1 --auth-token-file "$T/token" --max-retries 0 || exit 1
}
start_coordinator
export DISTILL_COORDINATOR="127.0.0.1:$PORT"
export DISTILL_TOKEN=ctl-test-token
cd "$T/elsewhere"  # not the spec's directory

# run CMD...: runs it, keeping stdout, stderr and the exit code (RC)
run() {
  "$@" >"$T/out.txt" 2>"$T/err.txt"
  RC=$?
}

# 1. submit --watch: the id, then progress lines, exit 0 on success
spec tiny 6
run "$CTL" submit "$T/specs/tiny.yaml" --watch
[ "$RC" -eq 0 ] && ok || fail "submit --watch exit $RC: $(cat "$T/out.txt" "$T/err.txt")"
ID1=$(head -n 1 "$T/out.txt")
[[ "$ID1" =~ ^[A-Za-z0-9_-]+$ ]] && ok || fail "first line is the job id: '$ID1'"
grep -q "SUCCEEDED" "$T/out.txt" && ok || fail "watch shows SUCCEEDED: $(cat "$T/out.txt")"
tail -n 1 "$T/out.txt" | grep -q "^job $ID1 SUCCEEDED" && ok || fail "final line: $(tail -n 1 "$T/out.txt")"
grep -q $'\r' "$T/out.txt" && fail "no progress-bar redraws when stdout is not a TTY" || ok
[ -f "$T/out/tiny/model/model.safetensors" ] && ok || fail "relative output resolved against the spec file"

# 2. list, get, get --json
run "$CTL" list
grep -q "^$ID1 .*SUCCEEDED .*tiny" "$T/out.txt" && ok || fail "list shows the job: $(cat "$T/out.txt")"
head -n 1 "$T/out.txt" | grep -q "^ID .*STATE" && ok || fail "list header: $(head -n 1 "$T/out.txt")"
run "$CTL" get "$ID1"
grep -q "^state: *SUCCEEDED" "$T/out.txt" && grep -q "^id: *$ID1" "$T/out.txt" && ok || fail "get: $(cat "$T/out.txt")"
run "$CTL" get "$ID1" --json
$PY - "$T/out.txt" "$ID1" "$T" <<'PY' && ok || fail "get --json: $(cat "$T/out.txt")"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["id"] == sys.argv[2] and j["state"] == "SUCCEEDED", j
assert j["spec"]["init"] == sys.argv[3] + "/specs/config.json", j["spec"]
assert j["spec"]["data"]["train"] == [sys.argv[3] + "/specs/train.bin"], j["spec"]
PY

# 3. logs: the worker's own output
run "$CTL" logs "$ID1"
[ "$RC" -eq 0 ] && grep -q "step 6/6" "$T/out.txt" && ok || fail "logs: $RC $(cat "$T/out.txt" "$T/err.txt")"
run "$CTL" logs "$ID1" --rank 0 -f
[ "$RC" -eq 0 ] && grep -q "step 6/6" "$T/out.txt" && ok || fail "logs -f of a finished job ends: $RC"

# 4. cancel: a finished job is FAILED_PRECONDITION (exit 1); a running one
#    ends CANCELLED and watching it exits non-zero with the reason.
run "$CTL" cancel "$ID1"
[ "$RC" -eq 1 ] && grep -q "^distillctl: FAILED_PRECONDITION: " "$T/err.txt" && ok ||
  fail "cancel of a finished job: exit $RC, $(cat "$T/err.txt")"
spec long 100000
run "$CTL" submit "$T/specs/long.yaml" --priority 3
ID2=$(cat "$T/out.txt")
run "$CTL" cancel "$ID2" --force
[ "$RC" -eq 0 ] && grep -q "^$ID2 " "$T/out.txt" && ok || fail "cancel: exit $RC, $(cat "$T/out.txt" "$T/err.txt")"
run timeout 120 "$CTL" watch "$ID2"
[ "$RC" -eq 1 ] && ok || fail "watch of a cancelled job: exit $RC"
grep -q "CANCELLED" "$T/err.txt" && grep -q "CANCEL_REQUESTED" "$T/err.txt" && ok ||
  fail "watch prints the reason: $(cat "$T/out.txt" "$T/err.txt")"
run "$CTL" list --state cancelled
[ "$(grep -c "^j" "$T/out.txt")" -eq 1 ] && grep -q "^$ID2 " "$T/out.txt" && ok || fail "list --state: $(cat "$T/out.txt")"
# delete: the finished job and its work directory go; twice is NOT_FOUND.
run "$CTL" delete "$ID2"
[ "$RC" -eq 0 ] && grep -q "^$ID2 deleted" "$T/out.txt" && [ ! -e "$T/var/jobs/$ID2" ] && ok ||
  fail "delete: exit $RC, $(cat "$T/out.txt" "$T/err.txt")"
run "$CTL" get "$ID2"
[ "$RC" -eq 1 ] && grep -q "^distillctl: NOT_FOUND: " "$T/err.txt" && ok || fail "get after delete: exit $RC"
run "$CTL" delete "$ID2"
[ "$RC" -eq 1 ] && grep -q "^distillctl: NOT_FOUND: " "$T/err.txt" && ok || fail "delete twice: exit $RC"

# 5. a job whose rank fails on its input: submit --watch exits 1 with
# DETERMINISTIC (the worker's exit code 65: not retried, though it may be)
# and the rank's own error line
spec broken 4 missing.json
run timeout 120 "$CTL" submit "$T/specs/broken.yaml" --watch --max-retries 2
[ "$RC" -eq 1 ] && grep -q "FAILED" "$T/err.txt" && grep -q "DETERMINISTIC" "$T/err.txt" &&
  grep -q "missing.json" "$T/err.txt" && ! grep -q "retry 1/" "$T/err.txt" && ok ||
  fail "failed job: exit $RC, $(cat "$T/out.txt" "$T/err.txt")"

# 6. watch survives a coordinator restart: kill -9 mid-job, restart on the
#    same port; the watch resumes after the last event it saw and exits 0.
spec slow 60
run "$CTL" submit "$T/specs/slow.yaml"
ID3=$(cat "$T/out.txt")
timeout 180 "$CTL" watch "$ID3" >"$T/watch3.txt" 2>&1 &
WATCH_PID=$!
for _ in $(seq 1 600); do
  grep -q "^step 3/" "$T"/var/jobs/"$ID3"/attempt-1/logs/1/rank.0/stdout 2>/dev/null && break
  sleep 0.1
done
kill -9 "$COORD_PID"
wait "$COORD_PID" 2>/dev/null
sleep 1
start_coordinator "$PORT"
wait "$WATCH_PID"
[ $? -eq 0 ] && grep -q "^job $ID3 SUCCEEDED" "$T/watch3.txt" && ok || fail "watch across a restart: $(cat "$T/watch3.txt")"
[ "$(grep -c "SUCCEEDED" "$T/watch3.txt")" -eq 2 ] && [ "$(grep -c "STARTING" "$T/watch3.txt")" -eq 1 ] && ok || fail "no event twice across the restart: $(cat "$T/watch3.txt")"

# 7. errors: server errors exit 1 as "distillctl: CODE: ...", usage errors 2
run "$CTL" get no-such-job
[ "$RC" -eq 1 ] && grep -q "^distillctl: NOT_FOUND: " "$T/err.txt" && ok || fail "get unknown: exit $RC, $(cat "$T/err.txt")"
run env -u DISTILL_TOKEN "$CTL" list
[ "$RC" -eq 1 ] && grep -q "^distillctl: UNAUTHENTICATED: " "$T/err.txt" && ok || fail "no token: exit $RC, $(cat "$T/err.txt")"
run env -u DISTILL_TOKEN "$CTL" --token-file "$T/token" list
[ "$RC" -eq 0 ] && ok || fail "--token-file: exit $RC, $(cat "$T/err.txt")"
run "$CTL" --coordinator 127.0.0.1:1 get "$ID1"
[ "$RC" -eq 1 ] && grep -q "^distillctl: UNAVAILABLE: " "$T/err.txt" && ok || fail "unreachable: exit $RC, $(cat "$T/err.txt")"
spec bad 0
run "$CTL" submit "$T/specs/bad.yaml"
[ "$RC" -eq 1 ] && grep -q "bad.yaml: train.steps" "$T/err.txt" && ok || fail "bad spec: exit $RC, $(cat "$T/err.txt")"
for args in "frob" "get" "get a b" "list --state bogus" "cancel x --hard" "submit"; do
  # shellcheck disable=SC2086
  run "$CTL" $args
  [ "$RC" -eq 2 ] && ok || fail "usage error '$args': exit $RC"
done
run "$CTL" --help
[ "$RC" -eq 0 ] && grep -q "^usage: distillctl" "$T/out.txt" && ok || fail "--help"

# SIGTERM: the coordinator stops cleanly.
kill -TERM "$COORD_PID"
wait "$COORD_PID"
[ $? -eq 0 ] && ok || fail "coordinator exit after SIGTERM"
COORD_PID=

finish distillctl_test || { echo "--- coordinator log"; tail -30 "$T/coordinator.log"; false; }
