#!/bin/bash
# Differential conformance suite: tungate against Linux netfilter, black box,
# real packets. Adapted from ../shared/conformance/run.sh (same namespace
# layout, same addresses, same probe), extended with groups of cases that
# each run against their own configuration.
#
#   run.sh kernel         Linux netfilter as the reference (veth + nftables),
#                         in a router namespace ${H}r
#   run.sh gateway BIN    BIN run -c gw.toml inside a namespace ${H}g of its
#                         own; the TUNs tglan and tgwan it creates are moved
#                         into the client and server namespaces; ct list via
#                         BIN ct list --socket SOCK
#
# Every group starts from fresh namespaces (and a fresh gateway), so one
# group's connection table never leaks into the next.
#
# Env: SUITE_GROUPS="base dnat" runs some groups; CASES="T01 U04" runs some cases
# (their groups only); CT_VERBOSE=1 explains failures; GW_LOG=debug sets the
# gateway's log level (default info); CONFIG_EXTRA is TOML appended to every
# gateway config; KERNEL_EXTRA_NFT is nft text loaded after the kernel
# ruleset; H names the namespaces (default cm$$, so parallel runs and other
# test suites on the machine do not collide); WORKDIR keeps configs and logs
# (default /tmp/conformance-$H; kept after the run). Needs root,
# python3-scapy, nftables, conntrack (kernel mode). Exit 0 only if every case
# passed.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
SHARED=${CONF_SHARED:-$(cd "$HERE/../../shared/conformance" 2>/dev/null && pwd)}
[ -n "$SHARED" ] && [ -f "$SHARED/probe.py" ] || {
  echo "probe.py not found: set CONF_SHARED to ../shared/conformance" >&2; exit 2; }
export CONF_SHARED=$SHARED
H=${H:-cm$$}
CNS=${H}c SNS=${H}s RNS=${H}r GNS=${H}g
WORKDIR=${WORKDIR:-/tmp/conformance-$H}
PY=/usr/bin/python3
MODE=${1:-}
[ "$MODE" = kernel ] || [ "$MODE" = gateway -a -n "${2:-}" ] || {
  echo "usage: $0 kernel | $0 gateway BIN" >&2; exit 2; }
BIN=
if [ "$MODE" = gateway ]; then
  BIN=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
  [ -x "$BIN" ] || { echo "$2: not executable" >&2; exit 2; }
fi
GWPID=
SUITEPID=

ns_teardown() {
  if [ -n "$GWPID" ]; then
    kill $GWPID 2>/dev/null
    for i in $(seq 50); do kill -0 $GWPID 2>/dev/null || break; sleep 0.1; done
    kill -9 $GWPID 2>/dev/null
    wait $GWPID 2>/dev/null
  fi
  GWPID=
  for n in $CNS $SNS $RNS $GNS; do
    for p in $(ip netns pids $n 2>/dev/null); do kill $p 2>/dev/null; done
    ip netns del $n 2>/dev/null
  done
  return 0
}
trap 'ns_teardown' EXIT
trap '[ -n "$SUITEPID" ] && kill $SUITEPID 2>/dev/null; exit 130' INT TERM

QUIET='table inet quiet {
  chain in  { type filter hook input priority 0; policy drop; }
  chain out { type filter hook output priority 0; policy drop; }
}'

# ---------------------------------------------------------------- groups
# group_conf G sets, for group G:
#   WAN_MTU      MTU of the wan link (gateway [[interface]] mtu, kernel link)
#   LAN_MTU      MTU of the lan link
#   GW_NAT       the gateway's [nat] part (masquerade by default)
#   GW_FWD       extra gateway forward rules, before "lan new accept"
#   GW_EXTRA     extra gateway TOML (conntrack settings, ...)
#   K_PRE        kernel nat prerouting chain body
#   K_FWD        extra kernel forward rules, before "lan new accept"
#   K_POST       kernel nat postrouting chain body
#   K_SYSCTL     kernel sysctls for the router namespace
group_conf() {
  WAN_MTU=1500
  LAN_MTU=1500
  GW_NAT='[[nat.masquerade]]
out = "wan"'
  GW_FWD=''
  GW_EXTRA=''
  K_PRE=''
  K_FWD=''
  K_POST='oifname "wan" masquerade'
  K_SYSCTL=''
  case $1 in
  base) ;;
  mtu)     # a narrower WAN link: fragmentation needed / packet too big
    WAN_MTU=1400 ;;
  mtulan)  # a narrower LAN link: ICMP errors about replies, NAT undone
    LAN_MTU=1280 ;;
  dnat)    # port forwards from the WAN to the client
    GW_NAT='[[nat.masquerade]]
out = "wan"

[[nat.dnat]]
in = "wan"
proto = "tcp"
dst = "198.18.0.1"
dport = 8080
to = "10.10.0.2:80"

[[nat.dnat]]
in = "wan"
proto = "udp"
dst = "198.18.0.1"
dport = 5353
to = "10.10.0.2"

[[nat.dnat]]
in = "wan"
proto = "tcp"
dst = "2001:db8:1::1"
dport = 8080
to = "[fd10::2]:80"'
    GW_FWD='{ in = "wan", ct_status = ["dnat"], action = "accept" },'
    K_PRE='iifname "wan" ip daddr 198.18.0.1 tcp dport 8080 dnat ip to 10.10.0.2:80
    iifname "wan" ip daddr 198.18.0.1 udp dport 5353 dnat ip to 10.10.0.2
    iifname "wan" ip6 daddr 2001:db8:1::1 tcp dport 8080 dnat ip6 to [fd10::2]:80'
    K_FWD='iifname "wan" ct status dnat accept' ;;
  snat)    # source NAT to a fixed address instead of masquerade
    GW_NAT='[[nat.snat]]
out = "wan"
to = "198.18.0.10"'
    K_POST='oifname "wan" ip version 4 snat ip to 198.18.0.10' ;;
  loose0)  # no pick-up of connections in progress
    GW_EXTRA='[conntrack]
tcp_loose = false'
    K_SYSCTL='net.netfilter.nf_conntrack_tcp_loose=0' ;;
  liberal) # no TCP window checks
    GW_EXTRA='[conntrack]
tcp_liberal = true'
    K_SYSCTL='net.netfilter.nf_conntrack_tcp_be_liberal=1' ;;
  timeouts) # short timeouts, to watch entries expire
    GW_EXTRA='[conntrack.timeouts]
udp = "3s"
udp_dns = "3s"
udp_stream = "3s"
icmp = "3s"
icmpv6 = "3s"
tcp_syn_sent = "3s"
tcp_time_wait = "3s"'
    K_SYSCTL='net.netfilter.nf_conntrack_udp_timeout=3 net.netfilter.nf_conntrack_udp_timeout_stream=3
      net.netfilter.nf_conntrack_icmp_timeout=3 net.netfilter.nf_conntrack_icmpv6_timeout=3
      net.netfilter.nf_conntrack_tcp_timeout_syn_sent=3 net.netfilter.nf_conntrack_tcp_timeout_time_wait=3' ;;
  reject)  # reject rules: TCP reset and ICMP port unreachable
    GW_FWD='{ dst = ["198.18.0.3"], proto = "tcp", action = "reject", reject_with = "tcp-reset" },
  { dst = ["198.18.0.3"], action = "reject", reject_with = "icmp-port-unreachable" },
  { dst = ["2001:db8:1::3"], action = "reject", reject_with = "icmpv6-admin-prohibited" },
  { dst = ["198.18.0.4", "2001:db8:1::4"], action = "reject" },
  { dst = ["198.18.0.5"], proto = "tcp", action = "reject" },'
    K_FWD='ip daddr 198.18.0.3 meta l4proto tcp reject with tcp reset
    ip daddr 198.18.0.3 reject with icmp type port-unreachable
    ip6 daddr 2001:db8:1::3 reject with icmpv6 type admin-prohibited
    ip daddr 198.18.0.4 reject
    ip6 daddr 2001:db8:1::4 reject
    ip daddr 198.18.0.5 meta l4proto tcp reject' ;;
  *) echo "unknown group $1" >&2; return 1 ;;
  esac
}

# ---------------------------------------------------------------- setups
endpoints() {   # addresses the probes play, with the end-host kernels silenced
  local cif=$1 sif=$2
  ip -n $CNS -6 addr add fd10::2/64 dev $cif nodad
  ip -n $CNS -6 route add default via fd10::1 dev $cif
  ip -n $SNS addr add 198.18.0.3/24 dev $sif
  ip -n $SNS -6 addr add 2001:db8:1::2/64 dev $sif nodad
  ip -n $SNS -6 route add fd10::/64 via 2001:db8:1::1 dev $sif
  echo "$QUIET" | ip netns exec $CNS nft -f -
  echo "$QUIET" | ip netns exec $SNS nft -f -
}

kernel_setup() {
  ns_teardown
  for n in $CNS $SNS $RNS; do ip netns add $n; ip -n $n link set lo up; done
  ip link add tglan netns $CNS type veth peer name lan netns $RNS
  ip link add tgwan netns $SNS type veth peer name wan netns $RNS
  for n in $CNS $SNS $RNS; do
    ip netns exec $n sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
      net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  done
  # no ICMP rate limits in the reference: tungate's default bucket (1000/s,
  # burst 1000 per destination) never limits a run of this suite either
  ip netns exec $RNS sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
    net.ipv4.icmp_ratelimit=0 net.ipv6.icmp.ratelimit=0
  ip -n $RNS addr add 10.10.0.1/24 dev lan; ip -n $RNS -6 addr add fd10::1/64 dev lan nodad
  ip -n $RNS addr add 198.18.0.1/24 dev wan; ip -n $RNS -6 addr add 2001:db8:1::1/64 dev wan nodad
  ip -n $RNS link set wan mtu $WAN_MTU
  ip -n $SNS link set tgwan mtu $WAN_MTU
  ip -n $RNS link set lan mtu $LAN_MTU
  ip -n $CNS link set tglan mtu $LAN_MTU
  ip -n $RNS link set lan up; ip -n $RNS link set wan up
  ip -n $CNS addr add 10.10.0.2/24 dev tglan; ip -n $CNS link set tglan up
  ip -n $CNS route add default via 10.10.0.1 dev tglan
  ip -n $SNS addr add 198.18.0.2/24 dev tgwan; ip -n $SNS link set tgwan up
  endpoints tglan tgwan
  mac() { ip netns exec $1 cat /sys/class/net/$2/address; }
  CMAC=$(mac $CNS tglan) SMAC=$(mac $SNS tgwan)
  LMAC=$(mac $RNS lan) WMAC=$(mac $RNS wan)
  # static neighbours: the silenced end hosts answer no ARP/NDP
  for a in 10.10.0.2 10.10.0.3 fd10::2 fd10::3; do
    ip -n $RNS neigh replace $a lladdr $CMAC dev lan nud permanent
  done
  for a in 198.18.0.2 198.18.0.3 198.18.0.4 2001:db8:1::2 2001:db8:1::3; do
    ip -n $RNS neigh replace $a lladdr $SMAC dev wan nud permanent
  done
  # the sysctls exist once nf_conntrack is loaded in the namespace
  ip netns exec $RNS nft -f - <<NFT || return 1
table inet gw {
  chain nat_pre {
    type nat hook prerouting priority -100;
    $K_PRE
  }
  chain filter_fwd {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    ct state invalid drop
    $K_FWD
    iifname "lan" ct state new accept
  }
  chain nat_post {
    type nat hook postrouting priority 100;
    $K_POST
  }
}
NFT
  [ -n "$K_SYSCTL" ] && { ip netns exec $RNS sysctl -qw $K_SYSCTL || return 1; }
  if [ -n "${KERNEL_EXTRA_NFT:-}" ]; then
    echo "$KERNEL_EXTRA_NFT" | ip netns exec $RNS nft -f - || return 1
  fi
  CT="ip netns exec $RNS conntrack -L"
  ARGS=(--cmac $LMAC --smac $WMAC)
  return 0
}

gw_config() {   # writes $WORKDIR/gw-$1.toml for group $1
  cat > $WORKDIR/gw-$1.toml <<TOML
[log]
level = "${GW_LOG:-info}"

[admin]
socket = "$WORKDIR/admin.sock"
metrics = ""

[[interface]]
name = "lan"
tun = "tglan"
addresses = ["10.10.0.1/24", "fd10::1/64"]
mtu = $LAN_MTU

[[interface]]
name = "wan"
tun = "tgwan"
addresses = ["198.18.0.1/24", "2001:db8:1::1/64"]
mtu = $WAN_MTU

[[route]]
to = "10.10.0.0/24"
interface = "lan"
[[route]]
to = "0.0.0.0/0"
interface = "wan"
[[route]]
to = "::/0"
interface = "wan"

$GW_NAT

[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { ct_state = ["invalid"], action = "drop" },
  $GW_FWD
  { in = "lan", ct_state = ["new"], action = "accept" },
]

$GW_EXTRA

${CONFIG_EXTRA:-}
TOML
}

gateway_setup() {   # gateway_setup GROUP
  ns_teardown
  for n in $CNS $SNS $GNS; do ip netns add $n; ip -n $n link set lo up; done
  gw_config $1
  rm -f $WORKDIR/admin.sock
  local log=$WORKDIR/gw-$1.log t0=$(date +%s.%N)
  ip netns exec $GNS "$BIN" run -c $WORKDIR/gw-$1.toml >$log 2>&1 &
  GWPID=$!
  for i in $(seq 100); do
    ip -n $GNS link show tglan >/dev/null 2>&1 && ip -n $GNS link show tgwan >/dev/null 2>&1 && break
    kill -0 $GWPID 2>/dev/null || { echo "gateway exited: $(tail -3 $log)"; return 1; }
    sleep 0.05
  done
  ip -n $GNS link show tgwan >/dev/null 2>&1 || { echo "no TUNs after 5 s"; return 1; }
  echo "  (gateway TUNs up after $(awk "BEGIN{printf \"%.2f\", $(date +%s.%N) - $t0}") s)"
  ip -n $GNS link set tglan netns $CNS; ip -n $GNS link set tgwan netns $SNS
  ip -n $CNS addr add 10.10.0.2/24 dev tglan; ip -n $CNS link set tglan up
  ip -n $CNS route add default via 10.10.0.1 dev tglan
  ip -n $SNS link set tgwan mtu $WAN_MTU
  ip -n $CNS link set tglan mtu $LAN_MTU
  ip -n $SNS addr add 198.18.0.2/24 dev tgwan; ip -n $SNS link set tgwan up
  endpoints tglan tgwan
  for i in $(seq 50); do [ -S $WORKDIR/admin.sock ] && break; sleep 0.05; done
  CT="$BIN ct list --socket $WORKDIR/admin.sock"
  ARGS=()
  sleep 0.2
  return 0
}

# ---------------------------------------------------------------- main
mkdir -p $WORKDIR
ALLGROUPS=$($PY "$HERE/cases_more.py" --list-groups ${CASES:+--cases $CASES}) || exit 2
GROUPS_RUN=${SUITE_GROUPS:-$ALLGROUPS}
TOTP=0 TOTF=0
: > $WORKDIR/suite.out
for g in $GROUPS_RUN; do
  echo "$ALLGROUPS" | grep -qw "$g" || continue
  group_conf $g || exit 2
  echo "== group $g ($MODE)" | tee -a $WORKDIR/suite.out
  if [ "$MODE" = kernel ]; then
    kernel_setup || { echo "kernel setup failed for $g"; TOTF=$((TOTF+1)); continue; }
  else
    gateway_setup $g || { echo "gateway did not start for $g"; TOTF=$((TOTF+1)); continue; }
  fi
  out=$WORKDIR/group-$g.out
  : > $out
  timeout -k 3 400 $PY "$HERE/cases_more.py" --target $MODE --group $g --cns $CNS --sns $SNS \
    --cif tglan --sif tgwan "${ARGS[@]}" --ct "$CT" ${CASES:+--cases $CASES} >$out 2>&1 &
  SUITEPID=$!
  tail -s 0.1 -n +1 -f --pid=$SUITEPID $out &
  TAILPID=$!
  wait $SUITEPID; rc=$?
  SUITEPID=
  wait $TAILPID
  cat $out >> $WORKDIR/suite.out
  last=$(tail -1 $out)
  if echo "$last" | grep -Eq '^[0-9]+ passed, [0-9]+ failed$'; then
    TOTP=$((TOTP + $(echo "$last" | cut -d' ' -f1)))
    TOTF=$((TOTF + $(echo "$last" | cut -d' ' -f3)))
  else
    [ $rc = 124 ] && echo "group $g timed out"
    echo "group $g did not finish (rc=$rc)"
    TOTF=$((TOTF+1))
  fi
  if [ "$MODE" = gateway ]; then
    kill -0 $GWPID 2>/dev/null || echo "  gateway died during group $g: $(tail -3 $WORKDIR/gw-$g.log)"
    # counters (drop reasons) and the final table, for explaining failures
    timeout 5 "$BIN" stats --socket $WORKDIR/admin.sock > $WORKDIR/stats-$g.txt 2>&1
    timeout 5 "$BIN" ct list --socket $WORKDIR/admin.sock > $WORKDIR/ct-$g.txt 2>&1
  else
    ip netns exec $RNS conntrack -L > $WORKDIR/ct-$g.txt 2>/dev/null
  fi
  ns_teardown
done
echo "TOTAL: $TOTP passed, $TOTF failed (logs in $WORKDIR)" | tee -a $WORKDIR/suite.out
[ $TOTF = 0 ]
