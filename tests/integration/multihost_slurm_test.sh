#!/usr/bin/env bash
# More than one host under Slurm: four hosts made on this machine with
# network namespaces (netns_lib.sh), each with a slurmd of its own (`slurmd -N
# HOST`, NodeAddr its address, 2 CPUs); munged and slurmctld in this (the
# root) namespace (slurm_lib.sh). The real coordinator, also here, runs with
# --launcher slurm and --slurm-sbatch-args=--ntasks-per-node=2: each attempt
# one allocation over two nodes, in which mpirun (deploy/slurm/distill.sbatch)
# starts its daemon on the second node with srun, through that node's slurmd
# (no ssh).
#   1. a distill job, 2 student + 2 teacher ranks: the students run on host 0,
#      the teacher stages on host 1 (Note [Rank placement]); SUCCEEDED, model
#      written, the Slurm job COMPLETED on both nodes;
#   2. a longer such job; host 1 dies mid-run (every process in its namespace
#      killed, slurmd too): attempt 1 fails HOST_LOST naming the node and its
#      ranks (the teacher stages), named by mpirun's message; the node is
#      marked down (Note [Lost hosts]) and attempt 2 is submitted with
#      --exclude of it, runs on two of the other hosts (students on one,
#      teachers on the other), resumes from its checkpoint and succeeds;
#   3. another such job; the host of its students dies, which is the batch
#      host (mpirun dies with it and says nothing): Slurm ends the job
#      NODE_FAIL, not requeued (--no-requeue); attempt 1 fails HOST_LOST naming
#      that node and the student ranks, and attempt 2 runs on the two hosts
#      left, excluding both dead ones, resumes and succeeds.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/netns_lib.sh"
source "$(dirname "$0")/slurm_lib.sh"
CTL="${DISTILL_CTL_BIN:?}"
: "${DISTILL_COORDINATOR_BIN:?}"
slurm_require
lib_init multihost_slurm

# --- the hosts and the cluster ------------------------------------------------
slurm_start_munge  # first, so that on exit the jobs end before the hosts go
netns_create 4
N0=${NETNS_NAMES[0]} N1=${NETNS_NAMES[1]} P=${NETNS_NAMES[0]%h0}  # the nodes' prefix
H0=${NETNS_ADDRS[0]} H1=${NETNS_ADDRS[1]}
read -r CTLD_PORT SLURMD_PORT < <(free_ports 2)
NODES=()
for i in 0 1 2 3; do
  NODES+=("NodeName=${NETNS_NAMES[$i]} NodeAddr=${NETNS_ADDRS[$i]} CPUs=2 RealMemory=1000 State=UNKNOWN")
done
# SlurmdTimeout: a dead node is DOWN (and its jobs done completing) ~25 s
# after it died, not the default 300 s.
slurm_write_conf "$(hostname -s)" "$NETNS_GATEWAY" "$CTLD_PORT" "$SLURMD_PORT" SlurmdTimeout=5 "${NODES[@]}"
slurm_start_ctld
# Each slurmd in its host's namespace, with its hostname (netns_daemon):
# mpirun tells its own node from the others by hostname.
for i in 0 1 2 3; do
  netns_daemon "$i" "$T/slurm/slurmd$i.log" slurmd -D -f "$SLURM_CONF" -N "${NETNS_NAMES[$i]}"
done
slurm_wait_idle 4

# --- the jobs -----------------------------------------------------------------
multihost_job_files

# Open MPI's daemons and ranks talk over the bridge (each host has no other
# interface but loopback); the variables reach mpirun through sbatch.
export OMPI_MCA_oob_tcp_if_include="$NETNS_SUBNET" OMPI_MCA_btl_tcp_if_include="$NETNS_SUBNET"
start_coordinator_at 0 --listen "$NETNS_GATEWAY:0" --launcher slurm --slurm-sbatch-args=--ntasks-per-node=2 \
  --worker-bin "$T/worker.sh" --max-retries 2 --retry-backoff 0.5s --host-down-for 10m || die "coordinator"
export DISTILL_COORDINATOR="$NETNS_GATEWAY:$PORT"
attempt_dir() { echo "$T/var/jobs/$1/attempt-$2"; }  # attempt_dir JOB ATTEMPT
rank_log() { echo "$(attempt_dir "$1" "$2")/logs/1/rank.$3/stdout"; }  # rank_log JOB ATTEMPT RANK
slurm_field() {  # slurm_field JOB ATTEMPT KEY: the attempt's Slurm job's KEY
  scontrol show job -o "$(cat "$(attempt_dir "$1" "$2")/slurm_job_id")" | tr ' ' '\n' | sed -n "s/^$3=//p"
}
nodes() {  # nodes JOB ATTEMPT KEY: the node list KEY, expanded, sorted, on one line
  local list
  list=$(slurm_field "$@")
  [ "$list" = "(null)" ] || scontrol show hostnames "$list" | sort | xargs
}
host_index() {  # host_index ADDRESS: i with NETNS_ADDRS[i] = ADDRESS
  local i
  for i in "${!NETNS_ADDRS[@]}"; do [ "${NETNS_ADDRS[$i]}" = "$1" ] && echo "$i"; done
}
placed() {  # placed JOB ATTEMPT DEAD_ADDRESS...: students on one host, teachers on another, none dead
  local s0 s1 t0 t1 dead
  s0=$(where "$1" "$2" 0) s1=$(where "$1" "$2" 1) t0=$(where "$1" "$2" 2) t1=$(where "$1" "$2" 3)
  [ -n "$s0" ] && [ "$s0" = "$s1" ] && [ -n "$t0" ] && [ "$t0" = "$t1" ] && [ "$s0" != "$t0" ] || return 1
  for dead in "${@:3}"; do [ "$s0" != "$dead" ] && [ "$t0" != "$dead" ] || return 1; done
}

# 1. students on host 0, teachers on host 1, to success
spec spans 6 0
"$CTL" submit "$T/spans.yaml" --watch >"$T/spans.txt" 2>&1 ||
  fail "2+2 over two nodes: $(tail -5 "$T/spans.txt") $(tail -15 "$T/var/jobs"/*/attempt-1/slurm.out)"
ID1=$(head -n 1 "$T/spans.txt")
[ -f "$T/out/spans/model/model.safetensors" ] && ok || fail "spans: no model written"
[ "$(where "$ID1" 1 0) $(where "$ID1" 1 1)" = "$H0 $H0" ] && ok \
  || fail "students on host 0 ($H0): '$(where "$ID1" 1 0)' '$(where "$ID1" 1 1)'"
[ "$(where "$ID1" 1 2) $(where "$ID1" 1 3)" = "$H1 $H1" ] && ok \
  || fail "teacher stages on host 1 ($H1): '$(where "$ID1" 1 2)' '$(where "$ID1" 1 3)'"
[ "$(slurm_field "$ID1" 1 JobState) $(slurm_field "$ID1" 1 NodeList)" = "COMPLETED ${P}h[0-1]" ] && ok \
  || fail "spans: Slurm job $(slurm_field "$ID1" 1 JobState) on $(slurm_field "$ID1" 1 NodeList)"
[ "$(cat "$(attempt_dir "$ID1" 1)/hostfile" 2>/dev/null)" = "$N0 slots=2
$N1 slots=2" ] && ok || fail "spans: allocation written: $(cat "$(attempt_dir "$ID1" 1)/hostfile")"
grep -q "step 6/6" "$(rank_log "$ID1" 1 0)" && ok || fail "spans: rank 0 log $(tail -3 "$(rank_log "$ID1" 1 0)")"

# 2. host 1 dies mid-run: the attempt fails naming it, the retry runs on two of the others
spec dies 400 10
"$CTL" submit "$T/dies.yaml" >"$T/dies.txt" 2>&1 || die "submit: $(cat "$T/dies.txt")"
ID2=$(head -n 1 "$T/dies.txt")
wait_log "$(rank_log "$ID2" 1 0)" "^step 15/" 90 || fail "dies: no step 15: $(tail -3 "$(rank_log "$ID2" 1 0)")"
[ "$(where "$ID2" 1 2)" = "$H1" ] && ok || fail "dies: teacher stage 0 not on host 1: '$(where "$ID2" 1 2)'"
killed_at=$SECONDS
netns_kill_host 1
"$CTL" watch "$ID2" >"$T/dies_watch.txt" 2>&1 && ok || fail "dies: not retried to success: $(tail -5 "$T/dies_watch.txt")"
echo "host 1 killed: the job ended $((SECONDS - killed_at)) s later"
grep -q "attempt 1 failed: HOST_LOST: host $N1 (rank 2 (teacher stage 0), rank 3 (teacher stage 1)) lost contact with its daemon (Slurm job [0-9]* FAILED" \
  "$T/dies_watch.txt" && ok || fail "dies: failure names node and ranks: $(grep -i fail "$T/dies_watch.txt")"
grep -q "host $N1 is down (lost by job $ID2 attempt 1)" "$T/coordinator.log" && ok \
  || fail "dies: node marked down: $(grep host "$T/coordinator.log")"
[ "$(sinfo -h -n "$N1" -o %t)" = "down*" ] && ok || fail "dies: Slurm's view of $N1: $(sinfo -h -n "$N1" -o %t)"
[ "$(field "$ID2" attempt)" = 2 ] && ok || fail "dies: attempt $(field "$ID2" attempt)"
[ "$(nodes "$ID2" 2 ExcNodeList)" = "$N1" ] && ok || fail "dies: attempt 2 excluded '$(nodes "$ID2" 2 ExcNodeList)'"
placed "$ID2" 2 "$H1" && ok || fail "dies: retry placement: $(for r in 0 1 2 3; do where "$ID2" 2 $r; done)"
grep -q "resumed from checkpoint at step" "$(rank_log "$ID2" 2 0)" && ok \
  || fail "dies: retry resumed: $(head -3 "$(rank_log "$ID2" 2 0)")"
[ -f "$T/out/dies/model/model.safetensors" ] && ok || fail "dies: no model written"

# 3. the students' host dies, which is the batch host (mpirun's): Slurm says NODE_FAIL
spec batchhost 600 10
"$CTL" submit "$T/batchhost.yaml" >"$T/batchhost.txt" 2>&1 || die "submit: $(cat "$T/batchhost.txt")"
ID3=$(head -n 1 "$T/batchhost.txt")
wait_log "$(rank_log "$ID3" 1 0)" "^step 15/" 90 || fail "batchhost: no step 15: $(tail -3 "$(rank_log "$ID3" 1 0)")"
placed "$ID3" 1 "$H1" || fail "batchhost: placement: $(for r in 0 1 2 3; do where "$ID3" 1 $r; done)"
B=$(host_index "$(where "$ID3" 1 0)")  # the batch host runs rank 0
[ "$(slurm_field "$ID3" 1 BatchHost)" = "${NETNS_NAMES[$B]}" ] && ok \
  || fail "batchhost: batch host $(slurm_field "$ID3" 1 BatchHost), rank 0 on ${NETNS_NAMES[$B]}"
killed_at=$SECONDS
netns_kill_host "$B"
"$CTL" watch "$ID3" >"$T/batchhost_watch.txt" 2>&1 && ok \
  || fail "batchhost: not retried to success: $(tail -5 "$T/batchhost_watch.txt")"
echo "host $B killed: the job ended $((SECONDS - killed_at)) s later"
grep -q "attempt 1 failed: HOST_LOST: host ${NETNS_NAMES[$B]} (rank 0 (student 0), rank 1 (student 1)) went down (Slurm: NODE_FAIL) (Slurm job [0-9]* NODE_FAIL" \
  "$T/batchhost_watch.txt" && ok || fail "batchhost: failure names node and ranks: $(grep -i fail "$T/batchhost_watch.txt")"
[ "$(slurm_field "$ID3" 1 JobState) $(slurm_field "$ID3" 1 Restarts)" = "NODE_FAIL 0" ] && ok \
  || fail "batchhost: attempt 1's Slurm job $(slurm_field "$ID3" 1 JobState), restarts $(slurm_field "$ID3" 1 Restarts)"
[ "$(nodes "$ID3" 2 ExcNodeList)" = "$(printf '%s\n' "$N1" "${NETNS_NAMES[$B]}" | sort | xargs)" ] && ok \
  || fail "batchhost: attempt 2 excluded '$(nodes "$ID3" 2 ExcNodeList)'"
placed "$ID3" 2 "$H1" "${NETNS_ADDRS[$B]}" && ok \
  || fail "batchhost: retry placement: $(for r in 0 1 2 3; do where "$ID3" 2 $r; done)"
grep -q "resumed from checkpoint at step" "$(rank_log "$ID3" 2 0)" && ok \
  || fail "batchhost: retry resumed: $(head -3 "$(rank_log "$ID3" 2 0)")"

finish multihost_slurm_test || { echo "--- coordinator log"; tail -30 "$T/coordinator.log"; false; }
