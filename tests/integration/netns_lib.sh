# shellcheck shell=bash
# Hosts made on this machine with network namespaces, for the integration
# tests that need more than one host (multihost_test: mpirun over ssh;
# multihost_slurm_test: one slurmd per host). Source it after lib.sh and lib_init; needs root and
# iproute2 (scripts/setup.sh), and sshd for netns_start_sshd.
#
#   netns_create N       N hosts: namespaces NETNS_NAMES[i], addresses
#                        NETNS_ADDRS[i] (i = 0..N-1) on a /24 of 10.77.X.0
#                        whose .1 (NETNS_GATEWAY) is this (the root)
#                        namespace, all on one bridge (in a namespace of its
#                        own, NETNS_SWITCH); NETNS_SUBNET is the /24 (CIDR).
#                        Dies with a clear message when a namespace cannot
#                        be made. Everything is removed on exit (on_exit).
#   netns_exec I CMD...  runs CMD inside host I (foreground).
#   netns_daemon I LOG CMD...
#                        starts CMD inside host I in the background, with
#                        hostname NETNS_NAMES[I], output to LOG; it is killed
#                        on exit with everything else in the namespace.
#   netns_start_sshd I   an sshd of host I's own on NETNS_ADDRS[I]:22 (root
#                        login by the key NETNS_SSH_KEY only, no PAM); waits
#                        until it accepts a login. NETNS_SSH is the ssh
#                        command line that logs in (for mpirun's rsh agent).
#   netns_kill_host I    a host that dies: SIGKILL to every process in it.
#
# Hosts share this machine's file system and users; the network (hence the
# processes each address reaches) and, for what netns_daemon starts, the
# hostname are their own.

NETNS_NAMES=()
NETNS_ADDRS=()
NETNS_SWITCH=
NETNS_GATEWAY=
NETNS_SUBNET=
NETNS_SSH_KEY=
NETNS_SSH=

# netns_free_octet: a third octet X with no 10.77.X.0/24 address on this
# machine yet (tests of several engineers may run at once).
netns_free_octet() {
  local used x
  used=$(ip -4 -o addr show | grep -o ' 10\.77\.[0-9]*\.' | cut -d. -f3 | sort -u)
  for _ in $(seq 1 50); do
    x=$((RANDOM % 250 + 1))
    grep -qx "$x" <<<"$used" || { echo "$x"; return 0; }
  done
  return 1
}

netns_create() {
  local n=$1 id x i
  [ "$(id -u)" -eq 0 ] || die "netns: must run as root to create network namespaces"
  command -v ip >/dev/null || die "netns: ip (iproute2) not found; run scripts/setup.sh"
  # Short and unique per run: interface names have at most 15 characters.
  id=$(printf '%x' $(($$ % 65536)))
  x=$(netns_free_octet) || die "netns: no free 10.77.X.0/24 subnet"
  NETNS_SUBNET="10.77.$x.0/24"
  NETNS_GATEWAY="10.77.$x.1"
  on_exit netns_teardown
  # The bridge lives in a namespace of its own: in this one, Docker's
  # FORWARD policy DROP (with bridge-nf-call-iptables) drops host-to-host
  # traffic, and the test leaves this namespace's firewall alone.
  NETNS_SWITCH="d${id}sw"
  ip netns add "$NETNS_SWITCH" || die "netns: cannot create network namespace $NETNS_SWITCH (ip netns add)"
  ip -n "$NETNS_SWITCH" link add br0 type bridge && ip -n "$NETNS_SWITCH" link set br0 up ||
    die "netns: cannot create a bridge (ip link add type bridge)"
  netns_wire "dv${id}g" "$NETNS_GATEWAY"  # this namespace: the gateway
  for i in $(seq 0 $((n - 1))); do
    NETNS_NAMES+=("d${id}h$i")
    ip netns add "${NETNS_NAMES[$i]}" || die "netns: cannot create network namespace ${NETNS_NAMES[$i]}"
    ip -n "${NETNS_NAMES[$i]}" link set lo up || die "netns: no loopback in ${NETNS_NAMES[$i]}"
    NETNS_ADDRS+=("10.77.$x.$((i + 2))")
    netns_wire "dv${id}h$i" "${NETNS_ADDRS[$i]}" "${NETNS_NAMES[$i]}"
  done
}

# netns_wire NAME ADDR [NS]: a veth from the switch's bridge to namespace NS
# (default: this one), called eth0 there (NAME here), with ADDR/24.
netns_wire() {
  local name=$1 addr=$2 ns=${3:-} dev=$1
  ip link add "$name" type veth peer name "${name}p" || die "netns: cannot create veth $name"
  ip link set "${name}p" netns "$NETNS_SWITCH" &&
    ip -n "$NETNS_SWITCH" link set "${name}p" master br0 &&
    ip -n "$NETNS_SWITCH" link set "${name}p" up || die "netns: cannot attach $name to the bridge"
  local in=(ip)
  if [ -n "$ns" ]; then
    ip link set "$name" netns "$ns" && ip -n "$ns" link set "$name" name eth0 || die "netns: veth into $ns"
    in=(ip -n "$ns")
    dev=eth0
  fi
  "${in[@]}" addr add "$addr/24" dev "$dev" && "${in[@]}" link set "$dev" up ||
    die "netns: cannot address $dev${ns:+ in $ns}"
}

netns_exec() {
  local i=$1
  shift
  ip netns exec "${NETNS_NAMES[$i]}" "$@"
}

netns_daemon() {
  local i=$1 log=$2
  shift 2
  # Its own hostname too (a UTS namespace): Open MPI names shared-memory
  # segments and session directories by hostname, so hosts sharing one
  # collide (ranks crash in the vader BTL). Only the network namespace is
  # entered (nsenter, not `ip netns exec`, which mounts a sysfs of its own
  # over /sys and so hides /sys/fs/cgroup, without which slurmd won't start).
  nsenter --net="/run/netns/${NETNS_NAMES[$i]}" unshare --uts sh -c 'hostname "$0" && exec "$@"' \
    "${NETNS_NAMES[$i]}" "$@" >>"$log" 2>&1 </dev/null &
  disown
}

# netns_pids I: the processes inside host I.
netns_pids() { ip netns pids "${NETNS_NAMES[$1]}" 2>/dev/null; }

netns_kill_host() {
  local pids
  for _ in 1 2 3 4 5; do  # a dying sshd may still fork: repeat until empty
    pids=$(netns_pids "$1")
    [ -z "$pids" ] && return 0
    # shellcheck disable=SC2086  # one kill for all: they die microseconds apart
    kill -9 $pids 2>/dev/null
    sleep 0.1
  done
}

# netns_ssh_key: the client key pair, made once ($T/netns_ssh/id).
netns_ssh_key() {
  [ -n "$NETNS_SSH_KEY" ] && return 0
  mkdir -p "$T/netns_ssh" && chmod 700 "$T/netns_ssh"
  ssh-keygen -q -t ed25519 -N '' -f "$T/netns_ssh/id" || die "netns: ssh-keygen failed"
  cp "$T/netns_ssh/id.pub" "$T/netns_ssh/authorized_keys"
  NETNS_SSH_KEY="$T/netns_ssh/id"
  NETNS_SSH="ssh -i $NETNS_SSH_KEY -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
  NETNS_SSH+=" -o LogLevel=ERROR -o BatchMode=yes -o ConnectTimeout=5"
}

netns_start_sshd() {
  local i=$1 dir="$T/netns_ssh" addr="${NETNS_ADDRS[$1]}"
  [ -x /usr/sbin/sshd ] || die "netns: /usr/sbin/sshd not found; run scripts/setup.sh"
  netns_ssh_key
  ssh-keygen -q -t ed25519 -N '' -f "$dir/host$i" || die "netns: ssh-keygen (host key) failed"
  cat >"$dir/sshd$i.conf" <<CONF
ListenAddress $addr
Port 22
HostKey $dir/host$i
PidFile $dir/sshd$i.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
CONF
  mkdir -p /run/sshd  # sshd's privilege separation directory
  netns_daemon "$i" "$dir/sshd$i.log" /usr/sbin/sshd -D -e -f "$dir/sshd$i.conf"
  for _ in $(seq 1 50); do
    $NETNS_SSH "root@$addr" true 2>/dev/null && return 0
    sleep 0.1
  done
  die "netns: sshd on ${NETNS_NAMES[$i]} ($addr) does not accept a login: $(tail -3 "$dir/sshd$i.log")"
}

# netns_teardown: every process in the hosts killed, namespaces, veths and
# the bridge deleted (on_exit; safe to run twice).
netns_teardown() {
  local i
  for i in "${!NETNS_NAMES[@]}"; do
    netns_kill_host "$i"
    ip netns del "${NETNS_NAMES[$i]}" 2>/dev/null
  done
  # Deleting a namespace deletes its ends of the veths, and so their peers.
  [ -n "$NETNS_SWITCH" ] && ip netns del "$NETNS_SWITCH" 2>/dev/null
  NETNS_NAMES=()
  NETNS_SWITCH=
  return 0
}

# multihost_job_files: what both multi-host tests run (multihost_test.sh,
# multihost_slurm_test.sh): a tiny student and teacher, data under $T;
# `spec NAME STEPS CHECKPOINT_EVERY` writes $T/NAME.yaml, a distill job of 2
# students and 2 teacher stages; $T/worker.sh is the worker through a wrapper
# that records each rank's address (hence its host), read back with
# `where JOB ATTEMPT RANK`.
multihost_job_files() {
  write_tiny_config "$T/student.json"
  write_tiny_config "$T/teacher.json"
  write_text "$T/text.txt" 40
  tokenize_bytes "$T/text.txt" "$T/train.bin" || die "tokenize failed"
  "$W" init --config "$T/teacher.json" --out "$T/teacher0" --seed 1 >/dev/null || die "init teacher"
  spec() {  # spec NAME STEPS CHECKPOINT_EVERY
    cat >"$T/$1.yaml" <<YAML
type: distill
name: $1
teacher: {model: teacher0, ranks: 2}
student: {init: student.json, ranks: 2}
data: {train: train.bin, seq_len: 16}
train: {steps: $2, micro_batch: 2, lr: 0.01, log_every: 1, threads: 1}
checkpoint: {every: $3}
runtime: {timeout_s: 20}
output: out/$1
YAML
  }

  # The worker, through a wrapper that records where each rank runs: its
  # address (hence its host) in $T/where/JOB.ATTEMPT.RANK.
  mkdir -p "$T/where"
  cat >"$T/worker.sh" <<SH
#!/bin/bash
ip -4 -o addr show dev eth0 2>/dev/null | awk '{print \$4}' | cut -d/ -f1 \
  >"$T/where/\$DISTILL_JOB_ID.\$DISTILL_ATTEMPT.\$OMPI_COMM_WORLD_RANK"
exec "$W" "\$@"
SH
  chmod +x "$T/worker.sh"
  where() { cat "$T/where/$1.$2.$3" 2>/dev/null; }  # where JOB ATTEMPT RANK
}
