# shellcheck shell=bash
# A Slurm cluster of the test's own: munged, slurmctld and slurmd(s) started
# in $T/munge and $T/slurm with their own key, slurm.conf and ports
# (SLURM_CONF, exported, points every Slurm command at them), stopped on exit
# (jobs cancelled first). Source it after lib.sh and lib_init.
#
#   slurm_require           dies unless munge, Slurm (slurm-wlm) and mpirun are
#                           installed (scripts/setup.sh): a failure, not a skip.
#   slurm_start_munge       munged with a fresh key on $T/munge/munge.sock (a
#                           Unix socket: every network namespace reaches it).
#   slurm_write_conf CTLD_NAME CTLD_ADDR CTLD_PORT SLURMD_PORT [LINE...]
#                           $SLURM_CONF: slurmctld on CTLD_NAME (its hostname)
#                           at CTLD_ADDR:CTLD_PORT, slurmds on SLURMD_PORT, a
#                           spool dir and pid file per node ($T/slurm/spool/NODE),
#                           then each LINE (NodeName=..., more settings); one
#                           partition "debug" of all nodes.
#   slurm_start_ctld        slurmctld, log $T/slurm/slurmctld.log.
#   slurm_start_slurmd [-N NODE]
#                           a slurmd in this namespace, log $T/slurm/slurmd.log.
#   slurm_wait_idle N       waits until N nodes are idle; dies naming what Slurm says.
#   slurm_stop              cancels the jobs, stops the daemons (on exit).

SLURM_DAEMON_PIDS=()

slurm_require() {
  local b
  for b in munged slurmctld slurmd sbatch scontrol scancel sinfo squeue mpirun; do
    command -v "$b" >/dev/null ||
      die "$b not found: this test needs Slurm (slurm-wlm) and munge, as scripts/setup.sh installs them"
  done
}

slurm_start_munge() {
  on_exit slurm_stop
  mkdir -p "$T/munge" "$T/slurm/state" "$T/slurm/spool"
  chmod 700 "$T/munge"
  head -c 1024 /dev/urandom >"$T/munge/munge.key"
  chmod 400 "$T/munge/munge.key"
  munged -F -f --socket="$T/munge/munge.sock" --key-file="$T/munge/munge.key" \
    --pid-file="$T/munge/munged.pid" --seed-file="$T/munge/seed" --log-file="$T/munge/munged.log" \
    >"$T/munge/out" 2>&1 &
  SLURM_DAEMON_PIDS+=($!)
  for _ in $(seq 1 50); do [ -S "$T/munge/munge.sock" ] && break; sleep 0.1; done
  [ -S "$T/munge/munge.sock" ] || die "munged did not start: $(cat "$T/munge/out")"
}

slurm_write_conf() {
  local name=$1 addr=$2 ctld_port=$3 slurmd_port=$4
  shift 4
  export SLURM_CONF="$T/slurm/slurm.conf"
  {
    cat <<CONF
ClusterName=distilltest
SlurmctldHost=$name($addr)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/munge/munge.sock
StateSaveLocation=$T/slurm/state
SlurmdSpoolDir=$T/slurm/spool/%n
SlurmctldPidFile=$T/slurm/slurmctld.pid
SlurmdPidFile=$T/slurm/spool/slurmd.%n.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
KillWait=3
MinJobAge=600
SchedulerParameters=sched_min_interval=100000
# More CPUs than the machine has (config_overrides), so the tests' jobs fit.
SlurmdParameters=config_overrides
CONF
    printf '%s\n' "$@"
    echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
  } >"$SLURM_CONF"
}

slurm_start_ctld() {
  slurmctld -D -i -f "$SLURM_CONF" >"$T/slurm/slurmctld.log" 2>&1 &
  SLURM_DAEMON_PIDS+=($!)
}

slurm_start_slurmd() {
  slurmd -D -f "$SLURM_CONF" "$@" >>"$T/slurm/slurmd.log" 2>&1 &
  SLURM_DAEMON_PIDS+=($!)
}

slurm_wait_idle() {
  local n=$1
  for _ in $(seq 1 100); do
    [ "$(sinfo -h -N -t idle -o %N 2>/dev/null | wc -l)" -ge "$n" ] && return 0
    sleep 0.2
  done
  die "Slurm did not come up ($n nodes idle): $(sinfo -N 2>&1; for f in "$T/slurm"/*.log; do echo "== $f"; tail -n 5 "$f"; done)"
}

slurm_stop() {
  [ -n "${COORD_PID:-}" ] && kill -9 "$COORD_PID" 2>/dev/null && wait "$COORD_PID" 2>/dev/null
  if [ -f "${SLURM_CONF:-}" ]; then
    scancel --user="$(id -un)" 2>/dev/null
    for _ in $(seq 1 100); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.1; done
  fi
  local p
  for p in "${SLURM_DAEMON_PIDS[@]+"${SLURM_DAEMON_PIDS[@]}"}"; do kill "$p" 2>/dev/null; done
  for p in "${SLURM_DAEMON_PIDS[@]+"${SLURM_DAEMON_PIDS[@]}"}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
  done
  SLURM_DAEMON_PIDS=()
  # Anything still running from this test (a job step Slurm lost track of).
  for p in $(pgrep -f "$T/"); do kill -9 "$p" 2>/dev/null; done
  return 0
}
