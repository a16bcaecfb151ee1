# Setup shared by run.sh and ftp/run.sh (sourced, not run): arguments,
# namespaces, the kernel router and the gateway, and the group loop. The
# sourcing script sets H_DEFAULT (its namespace prefix) before sourcing, and
# defines:
#   group_conf G     its per-group variables (set WAN_MTU/LAN_MTU to resize links)
#   kernel_ruleset   prints the router namespace's nft ruleset
#   kernel_extra     after the ruleset: sysctls, more nft, more ARGS
#   gw_config G      writes $WORKDIR/gw-G.toml (gw_base_toml, then its own part)
#   gateway_extra    after the gateway is up: more ARGS
#   group_dump G     saves the final tables of group G into $WORKDIR
# then calls run_suite CASES.PY.
set -u
LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SHARED=${CONF_SHARED:-$(cd "$LIB/../../shared/conformance" 2>/dev/null && pwd)}
[ -n "$SHARED" ] && [ -f "$SHARED/probe.py" ] || SHARED=/work/shared/conformance
[ -f "$SHARED/probe.py" ] || {
  echo "probe.py not found: set CONF_SHARED to ../shared/conformance" >&2; exit 2; }
export CONF_SHARED=$SHARED
H=${H:-$H_DEFAULT}
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

end_links() {   # the client's and server's ends of the links, addressed and up
  ip -n $CNS addr add 10.10.0.2/24 dev tglan; ip -n $CNS link set tglan up
  ip -n $CNS route add default via 10.10.0.1 dev tglan
  ip -n $SNS addr add 198.18.0.2/24 dev tgwan; ip -n $SNS link set tgwan up
  endpoints tglan tgwan
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
  # burst 1000 per destination) never limits a run of these suites either
  ip netns exec $RNS sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
    net.ipv4.icmp_ratelimit=0 net.ipv6.icmp.ratelimit=0
  ip -n $RNS addr add 10.10.0.1/24 dev lan; ip -n $RNS -6 addr add fd10::1/64 dev lan nodad
  ip -n $RNS addr add 198.18.0.1/24 dev wan; ip -n $RNS -6 addr add 2001:db8:1::1/64 dev wan nodad
  if [ -n "${WAN_MTU:-}" ]; then
    ip -n $RNS link set wan mtu $WAN_MTU
    ip -n $SNS link set tgwan mtu $WAN_MTU
  fi
  if [ -n "${LAN_MTU:-}" ]; then
    ip -n $RNS link set lan mtu $LAN_MTU
    ip -n $CNS link set tglan mtu $LAN_MTU
  fi
  ip -n $RNS link set lan up; ip -n $RNS link set wan up
  end_links
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
  kernel_ruleset | ip netns exec $RNS nft -f - || return 1
  CT="ip netns exec $RNS conntrack -L"
  ARGS=(--cmac $LMAC --smac $WMAC)
  kernel_extra
}

gw_base_toml() {   # the gateway config's log, admin socket, interfaces and routes
  local lanmtu= wanmtu=
  [ -n "${LAN_MTU:-}" ] && lanmtu=$'\n'"mtu = $LAN_MTU"
  [ -n "${WAN_MTU:-}" ] && wanmtu=$'\n'"mtu = $WAN_MTU"
  cat <<TOML
[log]
level = "${GW_LOG:-info}"

[admin]
socket = "$WORKDIR/admin.sock"
metrics = ""

[[interface]]
name = "lan"
tun = "tglan"
addresses = ["10.10.0.1/24", "fd10::1/64"]$lanmtu

[[interface]]
name = "wan"
tun = "tgwan"
addresses = ["198.18.0.1/24", "2001:db8:1::1/64"]$wanmtu

[[route]]
to = "10.10.0.0/24"
interface = "lan"
[[route]]
to = "0.0.0.0/0"
interface = "wan"
[[route]]
to = "::/0"
interface = "wan"
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
  [ -n "${WAN_MTU:-}" ] && ip -n $SNS link set tgwan mtu $WAN_MTU
  [ -n "${LAN_MTU:-}" ] && ip -n $CNS link set tglan mtu $LAN_MTU
  end_links
  for i in $(seq 50); do [ -S $WORKDIR/admin.sock ] && break; sleep 0.05; done
  CT="$BIN ct list --socket $WORKDIR/admin.sock"
  ARGS=()
  gateway_extra
  sleep 0.2
  return 0
}

# ---------------------------------------------------------------- main
run_suite() {   # run_suite CASES.PY: every group, each from fresh namespaces
  local cases=$1
  mkdir -p $WORKDIR
  ALLGROUPS=$($PY "$cases" --list-groups ${CASES:+--cases $CASES}) || exit 2
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
    timeout -k 3 400 $PY "$cases" --target $MODE --group $g --cns $CNS --sns $SNS \
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
      # counters (drop reasons), for explaining failures
      timeout 5 "$BIN" stats --socket $WORKDIR/admin.sock > $WORKDIR/stats-$g.txt 2>&1
    fi
    group_dump $g
    ns_teardown
  done
  echo "TOTAL: $TOTP passed, $TOTF failed (logs in $WORKDIR)" | tee -a $WORKDIR/suite.out
  [ $TOTF = 0 ]
}
