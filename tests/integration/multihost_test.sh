#!/usr/bin/env bash
# More than one host: three hosts made on this machine with network namespaces
# (netns_lib.sh: a bridge, a veth and an address each, each its own sshd).
# The real coordinator, in the root namespace, launches through its hosts file
# (2 slots per host): mpirun over ssh (--mpirun-arg), ranks report back over
# the bridge.
#   1. a distill job, 2 student + 2 teacher ranks: the students run on host 0,
#      the teacher stages on host 1 (Note [Rank placement]); SUCCEEDED, model
#      written;
#   2. a longer such job; host 1 dies mid-run (every process in its namespace
#      killed, sshd too): attempt 1 fails HOST_LOST naming the host and its
#      ranks (the teacher stages); host 1 is marked down (Note [Lost hosts]);
#      the retry runs on hosts 0 and 2, resumes from its checkpoint, succeeds.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/netns_lib.sh"
CTL="${DISTILL_CTL_BIN:?}"
lib_init multihost
on_exit stop_coordinator_and_jobs

netns_create 3
for i in 0 1 2; do netns_start_sshd "$i"; done
H0=${NETNS_ADDRS[0]} H1=${NETNS_ADDRS[1]} H2=${NETNS_ADDRS[2]}
printf '%s slots=2\n' "$H0" "$H1" "$H2" >"$T/hosts"

multihost_job_files

# mpirun over ssh with the hosts' key, daemons and ranks talking over the
# bridge's subnet only (not loopback, not this machine's other interfaces).
MPIRUN_ARGS=()
mpirun_arg() { MPIRUN_ARGS+=(--mpirun-arg "$1"); }
for a in --mca plm_rsh_agent "$NETNS_SSH" --mca plm_rsh_no_tree_spawn 1 \
  --mca oob_tcp_if_include "$NETNS_SUBNET" --mca btl_tcp_if_include "$NETNS_SUBNET" \
  -x OMP_NUM_THREADS=1; do
  mpirun_arg "$a"
done
start_coordinator_at 0 --listen "$NETNS_GATEWAY:0" --hosts-file "$T/hosts" --worker-bin "$T/worker.sh" \
  --max-retries 2 --retry-backoff 0.5s --host-down-for 10m "${MPIRUN_ARGS[@]}" || die "coordinator"
export DISTILL_COORDINATOR="$NETNS_GATEWAY:$PORT"
rank_log() { echo "$T/var/jobs/$1/attempt-$2/logs/1/rank.$3/stdout"; }  # rank_log JOB ATTEMPT RANK

# 1. students on host 0, teachers on host 1, to success
spec spans 6 0
"$CTL" submit "$T/spans.yaml" --watch >"$T/spans.txt" 2>&1 || fail "2+2 over two hosts: $(tail -5 "$T/spans.txt") $(tail -5 "$T/var/jobs"/*/attempt-1/mpirun.log)"
ID1=$(head -n 1 "$T/spans.txt")
[ -f "$T/out/spans/model/model.safetensors" ] && ok || fail "spans: no model written"
[ "$(where "$ID1" 1 0) $(where "$ID1" 1 1)" = "$H0 $H0" ] && ok \
  || fail "students on host 0 ($H0): '$(where "$ID1" 1 0)' '$(where "$ID1" 1 1)'"
[ "$(where "$ID1" 1 2) $(where "$ID1" 1 3)" = "$H1 $H1" ] && ok \
  || fail "teacher stages on host 1 ($H1): '$(where "$ID1" 1 2)' '$(where "$ID1" 1 3)'"
[ "$(field "$ID1" hosts)" = "['$H0:2', '$H1:2']" ] && ok || fail "spans: job hosts $(field "$ID1" hosts)"
grep -q "step 6/6" "$(rank_log "$ID1" 1 0)" && ok || fail "spans: rank 0 log $(tail -3 "$(rank_log "$ID1" 1 0)")"

# 2. host 1 dies mid-run: the attempt fails naming it, the retry runs on hosts 0 and 2
spec dies 400 10
"$CTL" submit "$T/dies.yaml" >"$T/dies.txt" 2>&1 || die "submit: $(cat "$T/dies.txt")"
ID2=$(head -n 1 "$T/dies.txt")
wait_log "$(rank_log "$ID2" 1 0)" "^step 15/" 90 || fail "dies: no step 15: $(tail -3 "$(rank_log "$ID2" 1 0)")"
[ "$(where "$ID2" 1 2)" = "$H1" ] && ok || fail "dies: teacher stage 0 not on host 1: '$(where "$ID2" 1 2)'"
killed_at=$SECONDS
netns_kill_host 1
"$CTL" watch "$ID2" >"$T/dies_watch.txt" 2>&1 && ok || fail "dies: not retried to success: $(tail -5 "$T/dies_watch.txt")"
echo "host 1 killed: the job ended $((SECONDS - killed_at)) s later"
grep -q "attempt 1 failed: HOST_LOST: host $H1 (rank 2 (teacher stage 0), rank 3 (teacher stage 1)) lost contact with its daemon" \
  "$T/dies_watch.txt" && ok || fail "dies: failure names host and ranks: $(grep -i fail "$T/dies_watch.txt")"
grep -q "host $H1 is down (lost by job $ID2 attempt 1)" "$T/coordinator.log" && ok \
  || fail "dies: host marked down: $(grep host "$T/coordinator.log")"
[ "$(field "$ID2" attempt)" = 2 ] && ok || fail "dies: attempt $(field "$ID2" attempt)"
[ "$(field "$ID2" hosts)" = "['$H0:2', '$H2:2']" ] && ok || fail "dies: retry hosts $(field "$ID2" hosts)"
[ "$(where "$ID2" 2 0) $(where "$ID2" 2 1) $(where "$ID2" 2 2) $(where "$ID2" 2 3)" = "$H0 $H0 $H2 $H2" ] && ok \
  || fail "dies: retry placement: $(for r in 0 1 2 3; do where "$ID2" 2 $r; done)"
grep -q "resumed from checkpoint at step" "$(rank_log "$ID2" 2 0)" && ok \
  || fail "dies: retry resumed: $(head -3 "$(rank_log "$ID2" 2 0)")"
[ -f "$T/out/dies/model/model.safetensors" ] && ok || fail "dies: no model written"

finish multihost_test || { echo "--- coordinator log"; tail -30 "$T/coordinator.log"; false; }
