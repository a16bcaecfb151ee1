#!/bin/bash
# Differential conformance cases for the FTP and TFTP helpers: tungate
# against Linux netfilter (nf_conntrack_ftp + nf_nat_ftp, nf_conntrack_tftp +
# nf_nat_tftp), black box, real packets. Same topology and addresses as
# ../run.sh (which this copies the setup from) and the shared sample.
#
#   run.sh kernel         Linux netfilter as the reference (veth + nftables,
#                         "ct helper" objects assigned by port in prerouting)
#                         in a router namespace ${H}r
#   run.sh gateway BIN    BIN run -c gw.toml inside a namespace ${H}g of its
#                         own ([helpers.ftp] ports = [21], [helpers.tftp]);
#                         ct list / ct expect via the admin socket
#
# Every group starts from fresh namespaces (and a fresh gateway).
#
# Env: SUITE_GROUPS="ftp strict" runs some groups; CASES="F01 F05" runs some
# cases (their groups only); CT_VERBOSE=1 prints the ct tables on failures;
# GW_LOG=debug sets the gateway's log level (default info); H names the
# namespaces (default cf$$); WORKDIR keeps configs, logs and the final ct /
# expect tables per group (default /tmp/conformance-$H). Needs root,
# python3-scapy, nftables, conntrack (kernel mode). Exit 0 only if every case
# passed.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
SHARED=${CONF_SHARED:-$(cd "$HERE/../../../shared/conformance" 2>/dev/null && pwd)}
[ -n "$SHARED" ] && [ -f "$SHARED/probe.py" ] || SHARED=/work/shared/conformance
[ -f "$SHARED/probe.py" ] || { echo "probe.py not found: set CONF_SHARED" >&2; exit 2; }
export CONF_SHARED=$SHARED
H=${H:-cf$$}
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
#   GW_NAT      the gateway's [nat] part (masquerade by default)
#   GW_PRE      gateway forward rules before the accepts (helper statements)
#   GW_NEW      the gateway's "new from lan" rule(s)
#   GW_HELPERS  the gateway's [helpers] part
#   K_HELPER    kernel prerouting rules assigning helpers
#   K_NEW       the kernel's "new from lan" rule(s)
#   K_POST      kernel nat postrouting chain body
#   K_PRE       kernel nat prerouting chain body (port forwards)
#   K_FWD/GW_FWD  extra forward accepts before the "new from lan" ones
group_conf() {
  GW_NAT='[[nat.masquerade]]
out = "wan"'
  GW_PRE=''
  GW_NEW='{ in = "lan", ct_state = ["new"], action = "accept" },'
  GW_HELPERS='[helpers.ftp]
ports = [21]

[helpers.tftp]
ports = [69]'
  K_HELPER='tcp dport 21 ct helper set "ftp-std"
    udp dport 69 ct helper set "tftp-std"'
  K_NEW='iifname "lan" ct state new accept'
  K_POST='oifname "wan" masquerade'
  K_PRE=''
  K_FWD=''
  GW_FWD=''
  case $1 in
  ftp) ;;   # the README's config with the helpers on their standard ports
  strict)   # new from lan only to the control ports (and UDP): data
            # connections pass only as RELATED; a rule assigns ftp to 2121
    GW_PRE='{ in = "lan", proto = "tcp", dport = 2121, ct_state = ["new"], helper = "ftp" },'
    GW_NEW='{ in = "lan", proto = "tcp", dport = [21, 2121], ct_state = ["new"], action = "accept" },
  { in = "lan", proto = "udp", ct_state = ["new"], action = "accept" },'
    K_HELPER='tcp dport 21 ct helper set "ftp-std"
    iifname "lan" tcp dport 2121 ct helper set "ftp-std"
    udp dport 69 ct helper set "tftp-std"'
    K_NEW='iifname "lan" ct state new tcp dport { 21, 2121 } accept
    iifname "lan" ct state new meta l4proto udp accept' ;;
  nonat)    # plain routing: nothing to rewrite, expectations still made
    GW_NAT=''
    K_POST='' ;;
  dnat)     # port forwards to an FTP server on the lan: 198.18.0.1:21 and
            # :2121 -> 10.10.0.2:21, [2001:db8:1::1]:21 -> [fd10::2]:21; new
            # from the wan only to port 21 with ct status dnat
    GW_NAT='[[nat.masquerade]]
out = "wan"

[[nat.dnat]]
in = "wan"
proto = "tcp"
dst = "198.18.0.1"
dport = 21
to = "10.10.0.2:21"

[[nat.dnat]]
in = "wan"
proto = "tcp"
dst = "198.18.0.1"
dport = 2121
to = "10.10.0.2:21"

[[nat.dnat]]
in = "wan"
proto = "tcp"
dst = "2001:db8:1::1"
dport = 21
to = "[fd10::2]:21"'
    GW_FWD='{ in = "wan", proto = "tcp", dport = 21, ct_status = ["dnat"], ct_state = ["new"], action = "accept" },'
    K_PRE='iifname "wan" ip daddr 198.18.0.1 tcp dport 21 dnat ip to 10.10.0.2:21
    iifname "wan" ip daddr 198.18.0.1 tcp dport 2121 dnat ip to 10.10.0.2:21
    iifname "wan" ip6 daddr 2001:db8:1::1 tcp dport 21 dnat ip6 to [fd10::2]:21'
    K_FWD='iifname "wan" tcp dport 21 ct status dnat ct state new accept' ;;
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
  ip netns exec $RNS sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
    net.ipv4.icmp_ratelimit=0 net.ipv6.icmp.ratelimit=0
  ip -n $RNS addr add 10.10.0.1/24 dev lan; ip -n $RNS -6 addr add fd10::1/64 dev lan nodad
  ip -n $RNS addr add 198.18.0.1/24 dev wan; ip -n $RNS -6 addr add 2001:db8:1::1/64 dev wan nodad
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
  ip netns exec $RNS nft -f - <<NFT || return 1
table inet gw {
  ct helper ftp-std { type "ftp" protocol tcp; }
  ct helper tftp-std { type "tftp" protocol udp; }
  chain nat_pre {
    type nat hook prerouting priority -100;
    $K_PRE
  }
  chain pre_helper {
    type filter hook prerouting priority 0;
    $K_HELPER
  }
  chain filter_fwd {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    ct state invalid drop
    $K_FWD
    $K_NEW
  }
  chain nat_post {
    type nat hook postrouting priority 100;
    $K_POST
  }
}
NFT
  CT="ip netns exec $RNS conntrack -L"
  CTX="ip netns exec $RNS conntrack -L expect; ip netns exec $RNS conntrack -L expect -f ipv6"
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

[[interface]]
name = "wan"
tun = "tgwan"
addresses = ["198.18.0.1/24", "2001:db8:1::1/64"]

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

$GW_HELPERS

[filter.forward]
policy = "drop"
rules = [
  $GW_PRE
  { ct_state = ["established", "related"], action = "accept" },
  { ct_state = ["invalid"], action = "drop" },
  $GW_FWD
  $GW_NEW
]
TOML
}

gateway_setup() {   # gateway_setup GROUP
  ns_teardown
  for n in $CNS $SNS $GNS; do ip netns add $n; ip -n $n link set lo up; done
  gw_config $1
  rm -f $WORKDIR/admin.sock
  local log=$WORKDIR/gw-$1.log
  ip netns exec $GNS "$BIN" run -c $WORKDIR/gw-$1.toml >$log 2>&1 &
  GWPID=$!
  for i in $(seq 100); do
    ip -n $GNS link show tglan >/dev/null 2>&1 && ip -n $GNS link show tgwan >/dev/null 2>&1 && break
    kill -0 $GWPID 2>/dev/null || { echo "gateway exited: $(tail -3 $log)"; return 1; }
    sleep 0.05
  done
  ip -n $GNS link show tgwan >/dev/null 2>&1 || { echo "no TUNs after 5 s"; return 1; }
  ip -n $GNS link set tglan netns $CNS; ip -n $GNS link set tgwan netns $SNS
  ip -n $CNS addr add 10.10.0.2/24 dev tglan; ip -n $CNS link set tglan up
  ip -n $CNS route add default via 10.10.0.1 dev tglan
  ip -n $SNS addr add 198.18.0.2/24 dev tgwan; ip -n $SNS link set tgwan up
  endpoints tglan tgwan
  for i in $(seq 50); do [ -S $WORKDIR/admin.sock ] && break; sleep 0.05; done
  CT="$BIN ct list --socket $WORKDIR/admin.sock"
  CTX="$BIN ct expect --socket $WORKDIR/admin.sock"
  ARGS=()
  sleep 0.2
  return 0
}

# ---------------------------------------------------------------- main
mkdir -p $WORKDIR
ALLGROUPS=$($PY "$HERE/cases_ftp.py" --list-groups ${CASES:+--cases $CASES}) || exit 2
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
  timeout -k 3 400 $PY "$HERE/cases_ftp.py" --target $MODE --group $g --cns $CNS --sns $SNS \
    --cif tglan --sif tgwan "${ARGS[@]}" --ct "$CT" --ctx "$CTX" ${CASES:+--cases $CASES} >$out 2>&1 &
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
    timeout 5 "$BIN" stats --socket $WORKDIR/admin.sock > $WORKDIR/stats-$g.txt 2>&1
  fi
  timeout 5 $CT > $WORKDIR/ct-$g.txt 2>&1
  timeout 5 sh -c "$CTX" > $WORKDIR/expect-$g.txt 2>&1
  ns_teardown
done
echo "TOTAL: $TOTP passed, $TOTF failed (logs in $WORKDIR)" | tee -a $WORKDIR/suite.out
[ $TOTF = 0 ]
