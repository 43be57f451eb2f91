#!/usr/bin/env bash
# distill-coordinator --launcher slurm against a real single-node Slurm: munged,
# slurmctld and slurmd started here in $T with their own key, slurm.conf and
# loopback ports (SLURM_CONF points every Slurm command at them); the jobs run
# deploy/slurm/distill.sbatch (built into the coordinator), which execs mpirun
# with 2 ranks of the real distill-worker; driven with distillctl.
#   1. submit a tiny job: SUCCEEDED, model written, the Slurm job COMPLETED;
#   2. cancel a running job: the ranks get SIGUSR1 through scancel, student 0
#      checkpoints, the job is CANCELLED, and Slurm never had to kill it;
#   3. kill -9 one distill-worker rank: the Slurm job FAILED, the attempt is
#      retried as a new Slurm job (attempt 2), resumes and succeeds;
#   4. kill -9 the coordinator while a Slurm job runs, restart it: the job is
#      adopted by its Slurm job id (attempt 1) and succeeds;
#   5. cancel of a job Slurm keeps pending: scancelled at once;
#   6. the srun path (--slurm-launch srun): a job succeeds.
# Slurm and munge missing is a failure, not a skip (scripts/setup.sh installs them).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/slurm_lib.sh"
CTL="${DISTILL_CTL_BIN:?}"
: "${DISTILL_COORDINATOR_BIN:?}"
slurm_require
lib_init slurm

# --- the cluster: one node, this host, on loopback ----------------------------
slurm_start_munge
read -r CTLD_PORT SLURMD_PORT < <(free_ports 2)
NODE=$(hostname -s)
slurm_write_conf "$NODE" 127.0.0.1 "$CTLD_PORT" "$SLURMD_PORT" \
  "NodeName=$NODE NodeAddr=127.0.0.1 CPUs=8 RealMemory=1000 State=UNKNOWN"
slurm_start_ctld
slurm_start_slurmd
slurm_wait_idle 1

# --- the jobs -----------------------------------------------------------------
write_tiny_config "$T/config.json"
write_text "$T/text.txt" 40
tokenize_bytes "$T/text.txt" "$T/train.bin" || die "tokenize failed"

# spec NAME STEPS [CKPT_EVERY]: $T/NAME.yaml, 2 ranks.
spec() {
  cat >"$T/$1.yaml" <<YAML
type: finetune
name: $1
ranks: 2
init: $T/config.json
data: {train: [$T/train.bin], seq_len: 16}
train: {steps: $2, micro_batch: 2, lr: 0.01, log_every: 1, threads: 1}
checkpoint: {every: ${3:-0}}
output: $T/out/$1
YAML
}

# The worker: it notes which process started it; the job named "slow" holds after training until released, so
# it surely runs across the coordinator's restart; the others exec the real
# worker (a kill -9 of "distill-worker train" hits the worker itself).
cat >"$T/worker.sh" <<SH
#!/bin/bash
ps -o comm= -p \$PPID >>"$T/parent.\$DISTILL_JOB_ID"  # who started the rank: mpirun or slurmstepd (srun)
if grep -q '"name": "slow"' "\$3"; then
  "$W" "\$@"
  rc=\$?
  while [ ! -f "$T/release_slow" ]; do sleep 0.1; done
  exit \$rc
fi
exec "$W" "\$@"
SH
chmod +x "$T/worker.sh"

start_coordinator() {  # start_coordinator [FLAGS...]
  start_coordinator_at "${PORT:-0}" --launcher slurm --worker-bin "$T/worker.sh" --max-retries 1 \
    --retry-backoff 0.5s --grace-period 30s "$@" || die "coordinator"
}
start_coordinator
export DISTILL_COORDINATOR="127.0.0.1:$PORT"
attempt_dir() { echo "$T/var/jobs/$1/attempt-$2"; }
rank_log() { echo "$(attempt_dir "$1" "$2")/logs/1/rank.${3:-0}/stdout"; }
slurm_state() {  # slurm_state ID ATTEMPT: the attempt's Slurm job state
  scontrol show job -o "$(cat "$(attempt_dir "$1" "$2")/slurm_job_id")" | tr ' ' '\n' | sed -n 's/^JobState=//p'
}
submit() { "$CTL" submit "$T/$1.yaml" 2>&1 | head -n 1; }

# 1. submit, run to SUCCEEDED
spec tiny 6
ID1=$(submit tiny)
wait_state "$ID1" SUCCEEDED 60 && ok || fail "tiny job: $("$CTL" get "$ID1"; tail -5 "$T/coordinator.log" "$(attempt_dir "$ID1" 1)/slurm.out")"
[ -f "$T/out/tiny/model/model.safetensors" ] && ok || fail "model written"
grep -q "step 6/6" "$(rank_log "$ID1" 1)" && ok || fail "rank 0 log: $(cat "$(rank_log "$ID1" 1)")"
[ -f "$(rank_log "$ID1" 1 1)" ] && ok || fail "rank 1 log: $(ls "$(attempt_dir "$ID1" 1)/logs/1")"
[ "$(slurm_state "$ID1" 1)" = COMPLETED ] && ok || fail "Slurm job state: $(slurm_state "$ID1" 1)"
[ "$(sort -u "$T/parent.$ID1")" = mpirun ] && ok || fail "ranks started by: $(cat "$T/parent.$ID1")"

# 2. cancel a running job: a checkpoint, CANCELLED, Slurm did not kill it
spec long 1000000
ID2=$(submit long)
wait_log "$(rank_log "$ID2" 1)" "^step 3/" 60 || fail "long job did not start: $(tail -5 "$T/coordinator.log")"
"$CTL" cancel "$ID2" >/dev/null || fail "cancel"
wait_state "$ID2" CANCELLED 60 && ok || fail "cancelled: $("$CTL" get "$ID2")"
ls "$T/out/long/checkpoints"/step_* >/dev/null 2>&1 && ok || fail "checkpoint on cancel: $(tail -3 "$(rank_log "$ID2" 1)")"
grep -q "stopped by signal" "$(rank_log "$ID2" 1)" && ok || fail "rank 0 stopped on the signal: $(tail -3 "$(rank_log "$ID2" 1)")"
case "$(slurm_state "$ID2" 1)" in
  COMPLETED | FAILED) ok ;;  # the batch script ended by itself
  *) fail "Slurm job after a graceful cancel: $(slurm_state "$ID2" 1)" ;;
esac

# 3. kill -9 one rank: Slurm job FAILED, retried as attempt 2, succeeds
spec victim 400 20
ID3=$(submit victim)
wait_log "$(rank_log "$ID3" 1)" "^step 25/" 60 || fail "victim did not start: $(tail -5 "$T/coordinator.log")"
RANK_PID=$(pgrep -f "^$W train --spec $(attempt_dir "$ID3" 1)/" | tail -n 1)
[ -n "$RANK_PID" ] && kill -9 "$RANK_PID" && ok || fail "no distill-worker process of the victim"
wait_state "$ID3" SUCCEEDED 120 && ok || fail "victim after a rank kill: $("$CTL" get "$ID3")"
[ "$(field "$ID3" attempt)" = 2 ] && ok || fail "victim attempt: $("$CTL" get "$ID3")"
[ "$(slurm_state "$ID3" 1)" = FAILED ] && ok || fail "attempt 1's Slurm job: $(slurm_state "$ID3" 1)"
[ "$(cat "$(attempt_dir "$ID3" 1)/slurm_job_id")" != "$(cat "$(attempt_dir "$ID3" 2)/slurm_job_id")" ] && ok \
  || fail "attempt 2 is a new Slurm job"
grep -q "resumed from checkpoint" "$(rank_log "$ID3" 2)" && ok || fail "resume: $(head -5 "$(rank_log "$ID3" 2)")"
{ "$CTL" get "$ID3"; cat "$T/coordinator.log"; } | grep -q "Slurm job [0-9]* FAILED" && ok \
  || fail "the failure names the Slurm state: $("$CTL" get "$ID3")"

# 4. kill -9 the coordinator while a Slurm job runs; restart; adopted
spec slow 6
ID4=$(submit slow)
wait_log "$(rank_log "$ID4" 1)" "step 6/6" 60 || fail "slow job did not run: $(tail -5 "$T/coordinator.log")"
kill -9 "$COORD_PID"; wait "$COORD_PID" 2>/dev/null
start_coordinator
JOB4=$(cat "$(attempt_dir "$ID4" 1)/slurm_job_id")
wait_log "$T/coordinator.log" "job $ID4 adopted: attempt 1 still running (launch $JOB4)" 10 && ok \
  || fail "adopted by Slurm job id $JOB4: $(tail -5 "$T/coordinator.log")"
touch "$T/release_slow"
wait_state "$ID4" SUCCEEDED 60 && ok || fail "adopted job finished: $("$CTL" get "$ID4")"
[ "$(field "$ID4" attempt)" = 1 ] && ok || fail "adopted, not relaunched: $("$CTL" get "$ID4")"

# 5. cancel of a job Slurm keeps pending (9 ranks: more than the node has, so
#    it pends for PartitionConfig): STARTING meanwhile, then scancelled at
#    once, not after the grace period
spec huge 6
sed -i 's/^ranks: 2/ranks: 9/' "$T/huge.yaml"
ID5=$(submit huge)
for _ in $(seq 1 50); do [ -f "$(attempt_dir "$ID5" 1)/slurm_job_id" ] && break; sleep 0.2; done
sleep 1.5  # the coordinator has asked Slurm since: it knows the job pends
[ "$(slurm_state "$ID5" 1)" = PENDING ] && ok || fail "job pending in Slurm: $(slurm_state "$ID5" 1)"
[ "$(field "$ID5" state)" = STARTING ] && ok || fail "a pending Slurm job is STARTING: $("$CTL" get "$ID5")"
"$CTL" cancel "$ID5" >/dev/null || fail "cancel of a pending job"
wait_state "$ID5" CANCELLED 10 && ok || fail "pending job cancelled at once: $("$CTL" get "$ID5")"
[ "$(slurm_state "$ID5" 1)" = CANCELLED ] && ok || fail "Slurm job of the pending job: $(slurm_state "$ID5" 1)"

# 6. the srun path: restarted with --slurm-launch srun, a job runs its ranks
#    with srun --mpi=pmix inside the allocation and succeeds
kill -TERM "$COORD_PID"; wait "$COORD_PID" 2>/dev/null
start_coordinator --slurm-launch srun
spec viasrun 6
ID6=$(submit viasrun)
wait_state "$ID6" SUCCEEDED 60 && ok || fail "srun job: $("$CTL" get "$ID6"; tail -5 "$(attempt_dir "$ID6" 1)/slurm.out")"
grep -q "step 6/6" "$(rank_log "$ID6" 1)" && ok || fail "srun rank 0 log: $(cat "$(rank_log "$ID6" 1)")"
[ -f "$(rank_log "$ID6" 1 1)" ] && ok || fail "srun rank 1 log"
[ "$(sort -u "$T/parent.$ID6")" = slurmstepd ] && ok || fail "srun job's ranks started by: $(cat "$T/parent.$ID6")"

finish slurm_test || { echo "--- coordinator log"; tail -30 "$T/coordinator.log"; false; }
