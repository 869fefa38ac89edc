#!/usr/bin/env bash
# The multi-host test bed: one network namespace per host, each joined by a veth pair to a
# bridge that lives in a namespace of its own, so the machine's own network is never touched.
# Every link is shaped in both directions by tc: tbf for the rate, netem for delay, jitter and
# loss where the kernel has sch_netem. Without netem, loss comes from nftables (`nft`, a
# random drop at the bridge, both directions of each link) and the links get no added delay:
# test/multihost/relay.mjs adds delay and jitter at the application level instead.
# Needs root and `ip`/`tc` (and `nft` for loss without netem). Used by
# test/multihost/testbed.ts and by people:
#
#   scripts/testbed.sh up [--id ID] [--rate 1gbit] [--delay 0.2ms] HOST...   # prints "HOST NAMESPACE ADDRESS"
#   scripts/testbed.sh run ID HOST CMD...        # runs CMD inside HOST (ip netns exec)
#   scripts/testbed.sh cut ID HOST in|out|both   # drops every packet to (in) / from (out) HOST
#   scripts/testbed.sh heal ID HOST              # restores HOST's link shaping
#   scripts/testbed.sh shape ID HOST RATE [DELAY [JITTER [LOSS%]]]
#   scripts/testbed.sh counters ID HOST          # "RX TX": bytes HOST received and sent on its link
#   scripts/testbed.sh drops ID HOST             # packets dropped on HOST's link (netem/tbf, nftables), both ways
#   scripts/testbed.sh down [ID]                 # kills every process in the bed's namespaces, removes them
#   scripts/testbed.sh sweep                     # removes the beds of owners that are no longer running
#   scripts/testbed.sh netem                     # exits 0 when the kernel has sch_netem
#   scripts/testbed.sh nft                       # exits 0 when nftables can drop packets at random here
#
# Names: namespaces are "dcetb-ID-HOST" (the bridge's is "dcetb-ID-br"); ID is the PID of the
# bed's owner (default: the calling shell), so `sweep` and every `up` remove the leftovers of
# owners that died without `down`. Addresses are 10.77.N.(2+i)/24 with N from the ID; the
# subnet exists only inside the bed's bridge, so two beds never see each other.
# Bounded: nothing here loops over more than the bed's hosts and namespaces.
set -euo pipefail

PREFIX=dcetb
STATE_ROOT="${TMPDIR:-/tmp}/dcetb-state"

die() { echo "testbed: $*" >&2; exit 2; }
ns_of() { echo "$PREFIX-$1-$2"; }
bridge_ns() { echo "$PREFIX-$1-br"; }

have_netem() {
  local probe="$PREFIX-$$-probe" ok=1
  ip netns add "$probe"
  ip -n "$probe" link set lo up
  if tc -n "$probe" qdisc add dev lo root netem delay 1ms >/dev/null 2>&1; then ok=0; fi
  ip netns del "$probe"
  return $ok
}

# nftables can drop at random (numgen) inside a namespace: the fallback for loss without netem.
have_nft() {
  command -v nft >/dev/null 2>&1 || return 1
  local probe="$PREFIX-$$-nftprobe" ok=1
  ip netns add "$probe"
  if nft_loss "$probe" v-probe 1 >/dev/null 2>&1; then ok=0; fi
  ip netns del "$probe"
  return $ok
}

# Drops LOSS% of the packets the bridge in namespace NS forwards from bridge port DEV and LOSS%
# of those it forwards to DEV: both directions of one host's link, on the wire. (Not in the
# host's own namespace: a packet its output hook drops fails the send with EPERM, which a lost
# packet never does.) One table per port, "dcetb-DEV" (bridge family); LOSS 0 removes it. The
# draw is per packet, in 1/10000ths, so LOSS may have two decimals (0.25).
nft_loss() {
  local ns=$1 dev=$2 loss=$3 per10k
  ip netns exec "$ns" nft delete table bridge "dcetb-$dev" >/dev/null 2>&1 || true
  per10k=$(awk -v l="$loss" 'BEGIN { printf "%d", l * 100 + 0.5 }')
  [ "$per10k" -gt 0 ] || return 0
  ip netns exec "$ns" nft -f - <<EOF
table bridge dcetb-$dev {
  chain forward {
    type filter hook forward priority 0; policy accept;
    iifname "$dev" numgen random mod 10000 < $per10k counter drop
    oifname "$dev" numgen random mod 10000 < $per10k counter drop
  }
}
EOF
}

# Applies RATE/DELAY/JITTER/LOSS to one device's egress: netem (root) then tbf (its child), or tbf alone.
apply_shape() {
  local ns=$1 dev=$2 rate=$3 delay=$4 jitter=$5 loss=$6 netem=$7
  tc -n "$ns" qdisc del dev "$dev" root >/dev/null 2>&1 || true
  if [ "$netem" = 1 ]; then
    local args=(delay "$delay")
    [ "$jitter" != 0 ] && args+=("$jitter" distribution normal)
    [ "$loss" != 0 ] && args+=(loss "$loss%")
    tc -n "$ns" qdisc add dev "$dev" root handle 1: netem "${args[@]}" limit 100000
    tc -n "$ns" qdisc add dev "$dev" parent 1:1 handle 2: tbf rate "$rate" burst 512kb latency 100ms
  else
    tc -n "$ns" qdisc add dev "$dev" root handle 1: tbf rate "$rate" burst 512kb latency 100ms
  fi
}

# Shapes both directions of HOST's link from its state file.
shape_host() {
  local id=$1 host=$2
  # shellcheck disable=SC1090
  . "$STATE_ROOT/$id/$host"
  apply_shape "$(ns_of "$id" "$host")" eth0 "$RATE" "$DELAY" "$JITTER" "$LOSS" "$NETEM"
  apply_shape "$(bridge_ns "$id")" "v-$host" "$RATE" "$DELAY" "$JITTER" "$LOSS" "$NETEM"
  # Without netem, loss is nftables' (at the bridge, both directions of the host's port).
  if [ "$NETEM" != 1 ]; then nft_loss "$(bridge_ns "$id")" "v-$host" "$LOSS"; fi
}

write_state() {
  local id=$1 host=$2 rate=$3 delay=$4 jitter=$5 loss=$6 netem=$7
  printf 'RATE=%q\nDELAY=%q\nJITTER=%q\nLOSS=%q\nNETEM=%q\n' "$rate" "$delay" "$jitter" "$loss" "$netem" >"$STATE_ROOT/$id/$host"
}

namespaces_of() { ip netns list | awk '{print $1}' | grep -E "^$PREFIX-$1-" || true; }

down() {
  local id=$1 ns pids
  for ns in $(namespaces_of "$id"); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    # shellcheck disable=SC2086
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "${STATE_ROOT:?}/$id"
}

sweep() {
  local id
  for id in $(ip netns list | awk '{print $1}' | sed -nE "s/^$PREFIX-([0-9]+)-.*/\1/p" | sort -u); do
    kill -0 "$id" 2>/dev/null || down "$id"
  done
}

up() {
  local id=$PPID rate=1gbit delay=0.2ms hosts=()
  while [ $# -gt 0 ]; do
    case $1 in
      --id) id=$2; shift 2 ;;
      --rate) rate=$2; shift 2 ;;
      --delay) delay=$2; shift 2 ;;
      -*) die "unknown option $1" ;;
      *) hosts+=("$1"); shift ;;
    esac
  done
  [ ${#hosts[@]} -ge 1 ] || die "up needs at least one host name"
  [ ${#hosts[@]} -le 60 ] || die "at most 60 hosts"
  [[ $id =~ ^[0-9]+$ ]] || die "--id must be a PID"
  local host
  for host in "${hosts[@]}"; do
    [[ $host =~ ^[a-z][a-z0-9]{0,9}$ ]] && [ "$host" != br ] || die "host names are [a-z][a-z0-9]{0,9} and not br, got $host"
  done
  sweep
  [ -z "$(namespaces_of "$id")" ] || die "a bed with id $id exists; run: $0 down $id"
  local netem=0; have_netem && netem=1
  [ $netem = 1 ] || echo "testbed: the kernel has no sch_netem: links get a rate and no added delay or jitter (loss comes from nftables)" >&2
  local subnet="10.77.$((id % 250 + 1))" br i=0 ns
  br=$(bridge_ns "$id")
  mkdir -p "$STATE_ROOT/$id"
  trap 'down "$id"' ERR
  ip netns add "$br"
  ip -n "$br" link set lo up
  ip -n "$br" link add br0 type bridge
  ip -n "$br" link set br0 up
  for host in "${hosts[@]}"; do
    ns=$(ns_of "$id" "$host")
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$br" link add "v-$host" type veth peer name eth0 netns "$ns"
    ip -n "$br" link set "v-$host" master br0 up
    ip -n "$ns" addr add "$subnet.$((i + 2))/24" dev eth0
    ip -n "$ns" link set eth0 up
    write_state "$id" "$host" "$rate" "$delay" 0 0 "$netem"
    shape_host "$id" "$host"
    echo "$host $ns $subnet.$((i + 2))"
    i=$((i + 1))
  done
  trap - ERR
}

# Replaces HOST's shaping in one or both directions with a queue of length 0: every packet dropped.
# "in" drops at the bridge (packets the host would receive), "out" at the host's own interface.
cut() {
  local id=$1 host=$2 dir=$3
  [ -f "$STATE_ROOT/$id/$host" ] || die "no host $host in bed $id"
  case $dir in
    in | out | both) ;;
    *) die "cut direction is in, out or both, got $dir" ;;
  esac
  if [ "$dir" != out ]; then tc -n "$(bridge_ns "$id")" qdisc replace dev "v-$host" root pfifo limit 0; fi
  if [ "$dir" != in ]; then tc -n "$(ns_of "$id" "$host")" qdisc replace dev eth0 root pfifo limit 0; fi
}

cmd=${1:-}
[ -n "$cmd" ] || die "usage: $0 up|down|sweep|run|cut|heal|shape|counters|drops|netem|nft ..."
shift
case $cmd in
  up) up "$@" ;;
  down) down "${1:-$PPID}" ;;
  sweep) sweep ;;
  netem) have_netem ;;
  nft) have_nft ;;
  run)
    [ $# -ge 3 ] || die "run ID HOST CMD..."
    ns=$(ns_of "$1" "$2"); shift 2
    exec ip netns exec "$ns" "$@" ;;
  cut) [ $# -eq 3 ] || die "cut ID HOST in|out|both"; cut "$@" ;;
  heal) [ $# -eq 2 ] || die "heal ID HOST"; shape_host "$1" "$2" ;;
  shape)
    [ $# -ge 3 ] || die "shape ID HOST RATE [DELAY [JITTER [LOSS%]]]"
    [ -f "$STATE_ROOT/$1/$2" ] || die "no host $2 in bed $1"
    # shellcheck disable=SC1090
    . "$STATE_ROOT/$1/$2"
    [[ ${6:-0} =~ ^[0-9]+(\.[0-9]{1,2})?$ ]] && awk -v l="${6:-0}" 'BEGIN { exit !(l <= 100) }' ||
      die "LOSS% is 0-100 with at most two decimals, got ${6:-0}"
    if [ "$NETEM" != 1 ]; then
      [ "${5:-0}" = 0 ] || die "jitter needs sch_netem, which this kernel lacks; test/multihost/relay.mjs adds delay and jitter at the application level"
      [ "${6:-0}" = 0 ] || have_nft || die "loss needs sch_netem or nftables (nft), and this machine has neither"
    fi
    write_state "$1" "$2" "$3" "${4:-$DELAY}" "${5:-0}" "${6:-0}" "$NETEM"
    shape_host "$1" "$2" ;;
  counters)
    [ $# -eq 2 ] || die "counters ID HOST"
    # The bridge-side end: what it transmits the host receives, and the reverse.
    d=/sys/class/net/v-$2/statistics
    ip netns exec "$(bridge_ns "$1")" sh -c "echo \$(cat $d/tx_bytes) \$(cat $d/rx_bytes)" ;;
  drops)
    [ $# -eq 2 ] || die "drops ID HOST"
    [ -f "$STATE_ROOT/$1/$2" ] || die "no host $2 in bed $1"
    {
      tc -s -n "$(ns_of "$1" "$2")" qdisc show dev eth0
      tc -s -n "$(bridge_ns "$1")" qdisc show dev "v-$2"
      ip netns exec "$(bridge_ns "$1")" nft list table bridge "dcetb-v-$2" 2>/dev/null || true
    } | awk '{ for (i = 1; i < NF; i++) if ($i == "dropped") d += $(i + 1) + 0; else if ($i == "packets" && $(NF) == "drop") d += $(i + 1) } END { print d + 0 }' ;;
  *) die "unknown command $cmd" ;;
esac
