# Shared by scripts/flood-*.sh, soak.sh and bench-*.sh (sourced, not run):
# a client and a server namespace with a TUN-to-TUN forwarder between them,
# either tungate or the bare copy loop (../shared/bench/tuncopy), addressed
# like ../shared/bench/versus.sh (client 10.10.0.2, server 198.18.0.2).
#
# Set before sourcing: ID (a short unique prefix, default fl$$), HERE (the
# repository root). Provides: fl_up_gw CONFIG, fl_up_copy, fl_down, fl_gw_config
# [CONNTRACK_KEYS] [MASQ_KEYS] [METRICS_ADDR], fl_ctl ARGS (tungate admin
# command), fl_rss (gateway VmRSS, kB), fl_cpu (gateway user+sys ticks),
# fl_rx NS DEV (kernel rx_packets), fl_py (python3 for JSON).

ID=${ID:-fl$$}
ID=${ID:0:9}
HERE=${HERE:?}
SHARED=${SHARED:-$HERE/../shared}
# BIN given: that gateway binary; not given: bin/tungate, built now from
# this tree (so a figure is never taken on a stale binary).
FL_BUILD_BIN=${BIN:+no}
BIN=${BIN:-$HERE/bin/tungate}
export PATH=$PATH:/usr/local/go/bin
COPY=${COPY:-/tmp/tuncopy}
FL_C=${ID}c FL_S=${ID}s FL_L=${ID}l FL_W=${ID}w
FL_DIR=$(mktemp -d /tmp/tungate-flood-XXXXXX)
FL_PID=
FL_KIND=

fl_py() { python3 -c "$@"; }

fl_build() {
  if [ "$FL_BUILD_BIN" != no ]; then (cd $HERE && go build -o "$BIN" ./cmd/tungate) || exit 1; fi
  if [ ! -x "$COPY" ]; then (cd $SHARED/bench/tuncopy && go build -o "$COPY" .) || exit 1; fi
  if [ ! -x "$FL_DIR/floodgen" ]; then (cd $HERE && go build -o "$FL_DIR/floodgen" ./scripts/floodgen) || exit 1; fi
}

fl_down() {
  if [ -n "$FL_PID" ]; then
    if [ "$FL_KIND" = copy ]; then kill -INT $FL_PID 2>/dev/null; else kill -TERM $FL_PID 2>/dev/null; fi
    for i in $(seq 50); do kill -0 $FL_PID 2>/dev/null || break; sleep 0.1; done
    kill -KILL $FL_PID 2>/dev/null; wait $FL_PID 2>/dev/null
  fi
  FL_PID=
  for n in $FL_C $FL_S; do
    for p in $(ip netns pids $n 2>/dev/null); do kill -KILL $p 2>/dev/null; done
    ip netns del $n 2>/dev/null
  done
  ip link del $FL_L 2>/dev/null; ip link del $FL_W 2>/dev/null
  return 0
}

fl_cleanup() { fl_down; rm -rf "$FL_DIR"; }

# fl_gw_config [CONNTRACK_KEYS] [MASQ_KEYS] [METRICS_ADDR] [EXTRA]: the
# conformance gateway (masquerade on wan, stateful forward policy) in
# $FL_DIR/gw.toml.
fl_gw_config() {
  cat >$FL_DIR/gw.toml <<EOF
[log]
level = "info"

[admin]
socket = "$FL_DIR/admin.sock"
metrics = "${3:-}"

[conntrack]
${1:-}

[[interface]]
name = "lan"
tun = "$FL_L"
addresses = ["10.10.0.1/24", "fd10::1/64"]

[[interface]]
name = "wan"
tun = "$FL_W"
addresses = ["198.18.0.1/24", "2001:db8:1::1/64"]

[[route]]
to = "10.10.0.0/16"
interface = "lan"
[[route]]
to = "fd10::/64"
interface = "lan"
[[route]]
to = "0.0.0.0/0"
interface = "wan"
[[route]]
to = "::/0"
interface = "wan"

[[nat.masquerade]]
out = "wan"
${2:-}

[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { ct_state = ["invalid"], action = "drop" },
  { in = "lan", ct_state = ["new"], action = "accept" },
]
${4:-}
EOF
}

# fl_wire ROUTE_BACK: the devices into the namespaces, addressed.
fl_wire() {
  for i in $(seq 200); do ip link show $FL_W >/dev/null 2>&1 && ip link show $FL_L >/dev/null 2>&1 && break; sleep 0.05; done
  ip link set $FL_L netns $FL_C; ip link set $FL_W netns $FL_S
  ip -n $FL_C addr add 10.10.0.2/24 dev $FL_L; ip -n $FL_C -6 addr add fd10::2/64 dev $FL_L nodad
  # TXQLEN: the devices' queue length for both forwarders alike (default:
  # the TUN's own, 500), to see how much of a flood's damage is queue
  # overflow while the reader waits for the CPU.
  if [ -n "${TXQLEN:-}" ]; then
    ip -n $FL_C link set $FL_L txqueuelen $TXQLEN; ip -n $FL_S link set $FL_W txqueuelen $TXQLEN
  fi
  ip -n $FL_C link set $FL_L up
  ip -n $FL_C route add default via 10.10.0.1 dev $FL_L; ip -n $FL_C -6 route add default via fd10::1 dev $FL_L
  ip -n $FL_S addr add 198.18.0.2/24 dev $FL_W; ip -n $FL_S -6 addr add 2001:db8:1::2/64 dev $FL_W nodad
  ip -n $FL_S link set $FL_W up
  if [ "$1" = 1 ]; then
    ip -n $FL_S route add 10.10.0.0/16 dev $FL_W; ip -n $FL_S -6 route add fd10::/64 dev $FL_W
  fi
  # the server answers nothing the flood sends to 198.18.0.3 (no ICMP)
  ip netns exec $FL_S sysctl -qw net.ipv4.icmp_ratelimit=1000
  sleep 0.3
}

fl_netns() { for n in $FL_C $FL_S; do ip netns add $n; ip -n $n link set lo up; done; }

# fl_up_gw: tungate on $FL_DIR/gw.toml between the namespaces.
# fl_up_gw [CONFIG]: the gateway (on $FL_DIR/gw.toml by default).
fl_up_gw() {
  fl_down; fl_netns
  $BIN run -c ${1:-$FL_DIR/gw.toml} >>$FL_DIR/gw.log 2>&1 & FL_PID=$! FL_KIND=gw
  for i in $(seq 200); do [ -S $FL_DIR/admin.sock ] && break; sleep 0.05; done
  fl_wire 0
}

# fl_up_copy: the bare copy loop between the namespaces.
fl_up_copy() {
  fl_down; fl_netns
  $COPY -a $FL_L -b $FL_W >>$FL_DIR/copy.log 2>&1 & FL_PID=$! FL_KIND=copy
  fl_wire 1
}

fl_ctl() { $BIN "$@" --socket $FL_DIR/admin.sock; }
fl_rss() { awk '/^VmRSS:/ {print $2}' /proc/$FL_PID/status; }
fl_cpu() { awk '{ sub(/^.*\) /, ""); split($0, f, " "); print f[12] + f[13] }' /proc/$FL_PID/stat; }
fl_rx() { ip netns exec $1 cat /sys/class/net/$2/statistics/rx_packets; }
fl_load() { cut -d' ' -f1 /proc/loadavg; }

# fl_iperf SECONDS [ARGS]: one iperf3 TCP run client → server; prints
# Gbit/s received (0 when it failed).
fl_iperf() {
  local t=$1; shift
  ip netns exec $FL_S iperf3 -s -1 -B 198.18.0.2 >/dev/null 2>&1 &
  local sp=$!
  sleep 0.3
  ip netns exec $FL_C iperf3 -c 198.18.0.2 -t $t -J "$@" 2>/dev/null | fl_py '
import json, sys
try:
    print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9, 3))
except Exception:
    print(0)'
  kill $sp 2>/dev/null; wait $sp 2>/dev/null
  return 0
}
