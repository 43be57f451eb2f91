#!/usr/bin/env bash
# Load test of distill-coordinator (a benchmark, not a test): starts a
# coordinator with one slot, holds that slot with a job whose "worker" only
# sleeps, then runs bench/coordinator_load: 100 concurrent clients, each
# submitting 10 jobs (which only queue: nothing else is launched) and listing
# 10 times. Prints throughput and p50/p99 latency of SubmitJob and ListJobs
# and checks that no call failed and no job was lost. Results: docs/benchmarks.md.
# With `--watchers N [--watch-jobs W]` (W defaults to 10) the coordinator gets
# W more slots, for W jobs that run (sleeping) and report progress while N
# WatchJob streams follow them; it also prints the coordinator's threads and RSS.
#
#   bash bench/run_coordinator_load.sh [BUILD_DIR] [-- coordinator_load flags]
# (DISTILL_COORDINATOR_BIN / DISTILL_CTL_BIN override the binaries; KEEP_LOG=FILE
# keeps the coordinator's log; SYNC=full starts the coordinator with --sync full.)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
shift || true
[ "${1:-}" = "--" ] && shift
C="${DISTILL_COORDINATOR_BIN:-$BUILD/coordinator/distill-coordinator}"
CTL="${DISTILL_CTL_BIN:-$BUILD/coordinator/ctl/distillctl}"
LOAD="$BUILD/bench/coordinator_load"
for b in "$C" "$CTL" "$LOAD"; do
  [ -x "$b" ] || { echo "missing $b (build the targets distill-coordinator distillctl coordinator_load)"; exit 1; }
done

# One more slot per watched job (coordinator_load starts them first).
SLOTS=1
WATCHERS=0
WATCH_JOBS=10
args=("$@")
for ((i = 0; i + 1 < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --watchers) WATCHERS=${args[i + 1]} ;;
    --watch-jobs) WATCH_JOBS=${args[i + 1]} ;;
  esac
done
if [ "$WATCHERS" -gt 0 ]; then
  SLOTS=$((1 + WATCH_JOBS))
  set -- --watch-jobs "$WATCH_JOBS" "$@"
fi

T=$(mktemp -d /tmp/distill_load.XXXXXX)
COORD_PID=
cleanup() {
  # Under `set -e` a failing last command of an && list would end the trap
  # early (a job already gone makes pkill fail) and leak the rest: `|| true`.
  if [ -n "$COORD_PID" ]; then
    kill "$COORD_PID" 2>/dev/null || true
    wait "$COORD_PID" 2>/dev/null || true
  fi
  # A job launched just before the kill (a slot the watched jobs freed) may
  # write its pid file a moment later.
  sleep 0.5
  # The jobs run in sessions of their own, led by the pid in their pid
  # files; mpirun puts the rank in a process group of its own inside it, so
  # stop the whole session (a kill of the leader's group alone leaves the rank).
  for p in "$T"/var/jobs/*/attempt-*/pid; do
    if [ -f "$p" ]; then pkill -9 -s "$(cat "$p")" 2>/dev/null || true; fi
  done
  rm -rf "$T"
}
if [ -n "${KEEP_LOG:-}" ]; then
  trap 'cp "$T/coordinator.log" "$KEEP_LOG"; cleanup' EXIT
else
  trap cleanup EXIT
fi

# The coordinator's start-up check runs WORKER --version (Note [Preflight]).
printf '#!/bin/sh\n[ "$1" = --version ] && exit 0\nexec sleep 3600\n' >"$T/hold.sh"
chmod +x "$T/hold.sh"
echo '{}' >"$T/config.json"
: >"$T/train.bin"
"$C" --listen 127.0.0.1:0 --metrics-listen '' --state-dir "$T/var" --slots "$SLOTS" --worker-bin "$T/hold.sh" \
  --data-root "$T" --output-root "$T" --sync "${SYNC:-normal}" --heartbeat-timeout 3600s >"$T/coordinator.log" 2>&1 &
COORD_PID=$!
PORT=
for _ in $(seq 1 100); do
  PORT=$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$T/coordinator.log" 2>/dev/null || true)
  [ -n "$PORT" ] && break
  sleep 0.1
done
[ -n "$PORT" ] || { echo "coordinator did not start: $(cat "$T/coordinator.log")"; exit 1; }
ADDR="127.0.0.1:$PORT"

# The job that holds the only slot for the whole run.
cat >"$T/hold.yaml" <<YAML
type: finetune
name: hold-the-slot
init: config.json
data: {train: train.bin, seq_len: 16}
output: out/hold
YAML
HOLD=$("$CTL" --coordinator "$ADDR" submit "$T/hold.yaml")
for _ in $(seq 1 100); do
  state=$("$CTL" --coordinator "$ADDR" get "$HOLD" | sed -n 's/^state: *//p')
  [ "$state" = STARTING ] || [ "$state" = RUNNING ] && break
  sleep 0.1
done
[ "$state" = STARTING ] || [ "$state" = RUNNING ] || { echo "holding job is $state"; exit 1; }

echo "coordinator_load against $ADDR ($(nproc) cores, $(uname -m)); slot held by $HOLD"
TIME=(); [ -x /usr/bin/time ] && TIME=(/usr/bin/time -f "client CPU: %U s user, %S s sys, %e s wall")
"${TIME[@]}" "$LOAD" --coordinator "$ADDR" --spec-dir "$T" --server-pid "$COORD_PID" "$@"
