#!/usr/bin/env bash
# End to end: the real distill-coordinator on loopback launching the real
# distill-worker through mpirun, driven by a small Python gRPC client.
#   1. submit a tiny job, watch it to SUCCEEDED, its model is written;
#   2. cancel a long job: the worker checkpoints on SIGTERM, job CANCELLED;
#   3. a rank that exits 17 after 3 steps (attempt 1) is retried from its
#      checkpoint and succeeds on attempt 2;
#   4. kill -9 the coordinator with one job running and one queued, restart
#      it: no job is lost, both finish; SIGTERM then exits 0.
source "$(dirname "$0")/lib.sh"
C="${DISTILL_COORDINATOR_BIN:?}"
SRC="${DISTILL_SOURCE_DIR:?}"
lib_init coord
on_exit stop_coordinator_and_jobs

# Python stubs of the API.
python_stubs
CLIENT="$SRC/tests/integration/coordinator_client.py"

read -r PORT MPORT < <(free_ports 2)
ADDR="127.0.0.1:$PORT"
cli() { $PY "$CLIENT" "$ADDR" "$@"; }

# A tiny model and data (as in cli_test.sh).
write_tiny_config "$T/config.json"
write_text "$T/text.txt" 40
tokenize_bytes "$T/text.txt" "$T/train.bin" || die "tokenize failed"

# spec NAME STEPS [CKPT_EVERY]: writes $T/NAME.json
spec() {
  cat >"$T/$1.json" <<JSON
{"type": "FINETUNE", "name": "$1", "init": "$T/config.json",
 "data": {"train": ["$T/train.bin"], "seq_len": 16},
 "train": {"steps": $2, "micro_batch": 2, "lr": 0.01, "log_every": 1, "threads": 1},
 "checkpoint": {"every": ${3:-0}},
 "output": "$T/out/$1"}
JSON
}

# The worker wrapper: the job named "flaky" stops after 3 steps (with a
# checkpoint) and exits 17 on its first attempt; everything else is the real worker.
cat >"$T/worker.sh" <<SH
#!/bin/bash
if grep -q '"name": "flaky"' "\$3" && [ "\$DISTILL_ATTEMPT" = 1 ]; then
  "$W" "\$@" --max-steps-this-run 3
  exit 17
fi
if grep -q '"name": "slow"' "\$3"; then
  # Held until the test releases it, so that it is surely still running
  # across the coordinator's kill -9 and restart (else nothing is adopted).
  "$W" "\$@"
  rc=\$?
  while [ ! -f "$T/release_slow" ]; do sleep 0.1; done
  exit \$rc
fi
exec "$W" "\$@"
SH
chmod +x "$T/worker.sh"

start_coordinator() {
  "$C" --listen "$ADDR" --metrics-listen "127.0.0.1:$MPORT" --state-dir "$T/var" --slots 1 --allow-any-path \
    --worker-bin "$T/worker.sh" --retry-backoff 0.5s --grace-period 20s >>"$T/coordinator.log" 2>&1 &
  COORD_PID=$!
  for _ in $(seq 1 100); do
    case "$(cli get none 2>&1)" in *NOT_FOUND*) return 0 ;; esac
    sleep 0.1
  done
  echo "coordinator did not come up: $(tail -5 "$T/coordinator.log")"
  exit 1
}
rank_log() { echo "$T/var/jobs/$1/attempt-$2/logs/1/rank.0/stdout"; }

start_coordinator

# 1. submit, watch to SUCCEEDED, outputs present
spec tiny 6
ID1=$(cli submit "$T/tiny.json" req-tiny) || fail "submit"
[ "$(cli submit "$T/tiny.json" req-tiny)" = "$ID1" ] && ok || fail "request_id is idempotent"
cli watch "$ID1" >"$T/watch1.txt" && ok || fail "watch to SUCCEEDED: $(cat "$T/watch1.txt") $(tail -5 "$(rank_log "$ID1" 1)")"
grep -q "QUEUED" "$T/watch1.txt" && grep -q "STARTING" "$T/watch1.txt" && ok || fail "watch states: $(cat "$T/watch1.txt")"
[ -f "$T/out/tiny/model/model.safetensors" ] && ok || fail "model written"
grep -q "step 6/6" "$(rank_log "$ID1" 1)" && ok || fail "rank log: $(cat "$(rank_log "$ID1" 1)")"
$PY -c "import urllib.request,sys; t=urllib.request.urlopen('http://127.0.0.1:$MPORT/metrics').read().decode(); \
assert 'distill_jobs{state=\"succeeded\"} 1' in t and 'distill_job_submissions_total 1' in t, t" && ok || fail "/metrics"

# 2. cancel: SIGTERM, checkpoint, CANCELLED
spec long 100000
ID2=$(cli submit "$T/long.json")
wait_log "$(rank_log "$ID2" 1)" "^step 2/" 60 || fail "long job did not start: $(tail -3 "$T/coordinator.log")"
[ "$(cli cancel "$ID2")" != "CANCELLED" ] && ok || fail "cancel of a running job is not immediate"
[ "$(cli wait "$ID2" CANCELLED 60)" = CANCELLED ] && ok || fail "cancelled: $(cli get "$ID2")"
ls "$T/out/long/checkpoints"/step_* >/dev/null 2>&1 && ok || fail "checkpoint on SIGTERM: $(tail -3 "$(rank_log "$ID2" 1)")"
case "$(cli cancel "$ID2" 2>&1)" in *FAILED_PRECONDITION*) ok ;; *) fail "cancel of a finished job" ;; esac

# 3. rank exits non-zero once: retried from its checkpoint, then succeeds
spec flaky 6
ID3=$(cli submit "$T/flaky.json")
cli watch "$ID3" >"$T/watch3.txt" && ok || fail "flaky job: $(cat "$T/watch3.txt")"
[ "$(cli field "$ID3" attempt)" = 2 ] && ok || fail "flaky attempt: $(cli get "$ID3")"
grep -q "resumed from checkpoint at step 3" "$(rank_log "$ID3" 2)" && ok || fail "resume: $(head -5 "$(rank_log "$ID3" 2)")"
grep -q "RANK_FAILED" "$T/watch3.txt" && ok || fail "retry reason: $(cat "$T/watch3.txt")"

# 4. kill -9 with one job running and one queued; restart; both finish
spec slow 200 50
spec after 4
ID4=$(cli submit "$T/slow.json")
ID5=$(cli submit "$T/after.json")
wait_log "$(rank_log "$ID4" 1)" "^step 3/" 60 || fail "slow job did not start"
[ "$(cli field "$ID5" state)" = QUEUED ] && ok || fail "second job queued behind the first (1 slot)"
kill -9 "$COORD_PID"; wait "$COORD_PID" 2>/dev/null
start_coordinator
touch "$T/release_slow"
case "$(cli field "$ID5" state)" in  # QUEUED unless the adopted job has finished by now
  QUEUED | STARTING | RUNNING | SUCCEEDED) ok ;;
  *) fail "queued job kept after restart: $(cli get "$ID5")" ;;
esac
[ "$(cli field "$ID4" state)" != FAILED ] && ok || fail "running job not failed by the restart: $(cli get "$ID4")"
[ "$(cli wait "$ID4" SUCCEEDED 180)" = SUCCEEDED ] && ok || fail "running job finished after restart: $(cli get "$ID4")"
[ "$(cli field "$ID4" attempt)" = 1 ] && ok || fail "running job was adopted, not relaunched: $(cli get "$ID4")"
[ "$(cli wait "$ID5" SUCCEEDED 120)" = SUCCEEDED ] && ok || fail "queued job finished after restart: $(cli get "$ID5")"
[ -f "$T/out/slow/model/model.safetensors" ] && [ -f "$T/out/after/model/model.safetensors" ] && ok || fail "outputs after restart"
grep -q "adopted" "$T/coordinator.log" && ok || fail "adoption logged"

# SIGTERM: exit 0
kill -TERM "$COORD_PID"
wait "$COORD_PID"; rc=$?
COORD_PID=
[ "$rc" -eq 0 ] && ok || fail "SIGTERM exit code $rc"

finish coordinator_test || { echo "--- coordinator log"; tail -40 "$T/coordinator.log"; false; }
