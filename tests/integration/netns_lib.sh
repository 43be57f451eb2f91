# Hosts made on this machine with network namespaces, for the integration
# tests that need more than one host (mpirun over ssh; Slurm, one slurmd per
# host, can reuse it). Source it after lib.sh and lib_init; needs root and
# iproute2 (scripts/setup.sh), and sshd for netns_start_sshd.
#
#   netns_create N       N hosts: namespaces NETNS_NAMES[i], addresses
#                        NETNS_ADDRS[i] (i = 0..N-1) on a /24 of 10.77.X.0
#                        whose .1 (NETNS_GATEWAY) is this (the root)
#                        namespace, on a bridge; NETNS_SUBNET is the /24 (CIDR).
#                        Dies with a clear message when a namespace cannot
#                        be made. Everything is removed on exit (on_exit).
#   netns_exec I CMD...  runs CMD inside host I (foreground).
#   netns_daemon I LOG CMD...
#                        starts CMD inside host I in the background, output
#                        to LOG; it is killed on exit with everything else
#                        in the namespace.
#   netns_start_sshd I   an sshd of host I's own on NETNS_ADDRS[I]:22 (root
#                        login by the key NETNS_SSH_KEY only, no PAM); waits
#                        until it accepts a login. NETNS_SSH is the ssh
#                        command line that logs in (for mpirun's rsh agent).
#   netns_kill_host I    a host that dies: SIGKILL to every process in it.
#
# Hosts share this machine's file system and users; only the network (and
# hence the processes each address reaches) is their own.

NETNS_NAMES=()
NETNS_ADDRS=()
NETNS_VETHS=()
NETNS_BRIDGE=
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
  NETNS_BRIDGE="dbr$id"
  on_exit netns_teardown
  ip link add "$NETNS_BRIDGE" type bridge ||
    die "netns: cannot create a bridge (ip link add type bridge): namespaces unsupported here?"
  ip addr add "$NETNS_GATEWAY/24" dev "$NETNS_BRIDGE" || die "netns: cannot address the bridge"
  ip link set "$NETNS_BRIDGE" up || die "netns: cannot bring the bridge up"
  for i in $(seq 0 $((n - 1))); do
    local ns="d${id}h$i" veth="dv${id}h$i" addr="10.77.$x.$((i + 2))"
    ip netns add "$ns" || die "netns: cannot create network namespace $ns (ip netns add)"
    NETNS_NAMES+=("$ns")
    ip link add "$veth" type veth peer name "dp${id}h$i" || die "netns: cannot create veth $veth"
    NETNS_VETHS+=("$veth")
    ip link set "dp${id}h$i" netns "$ns" || die "netns: cannot move a veth into $ns"
    ip link set "$veth" master "$NETNS_BRIDGE" && ip link set "$veth" up || die "netns: bridge $veth"
    ip netns exec "$ns" ip link set "dp${id}h$i" name eth0 &&
      ip netns exec "$ns" ip addr add "$addr/24" dev eth0 &&
      ip netns exec "$ns" ip link set eth0 up &&
      ip netns exec "$ns" ip link set lo up || die "netns: cannot configure $ns's interfaces"
    NETNS_ADDRS+=("$addr")
  done
}

netns_exec() {
  local i=$1
  shift
  ip netns exec "${NETNS_NAMES[$i]}" "$@"
}

netns_daemon() {
  local i=$1 log=$2
  shift 2
  ip netns exec "${NETNS_NAMES[$i]}" "$@" >>"$log" 2>&1 </dev/null &
  disown
}

# netns_pids I: the processes inside host I.
netns_pids() { ip netns pids "${NETNS_NAMES[$1]}" 2>/dev/null; }

netns_kill_host() {
  local p
  for _ in 1 2 3; do  # a dying sshd may still fork: repeat until empty
    for p in $(netns_pids "$1"); do kill -9 "$p" 2>/dev/null; done
    [ -z "$(netns_pids "$1")" ] && return 0
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
  for i in "${NETNS_VETHS[@]+"${NETNS_VETHS[@]}"}"; do ip link del "$i" 2>/dev/null; done
  [ -n "$NETNS_BRIDGE" ] && ip link del "$NETNS_BRIDGE" 2>/dev/null
  NETNS_NAMES=()
  NETNS_VETHS=()
  NETNS_BRIDGE=
  return 0
}
