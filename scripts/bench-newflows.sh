#!/bin/bash
# scripts/bench-newflows.sh [SECONDS] [ROUNDS] — new flows per second, issue 14 (root).
#
# One-packet UDP flows (floodgen udpflows: every datagram a new source
# address in 10.10.0.0/16 and port, to one of 1,000 server ports, 46-byte
# datagrams, as fast as the sender goes) written onto the client's device; counted where they arrive, the
# server namespace's device (kernel rx_packets), over the sending window:
#   - through tungate: masquerade + the stateful rule set, [conntrack] max
#     $MAX (default 32768: below the 64,512 ports masquerade has, so the
#     full table's early drop, not port exhaustion, makes room);
#   - through the bare copy loop (../shared/bench/tuncopy), the same packets;
#   - through Linux netfilter (../shared/bench/kernel-ref.sh: nftables
#     masquerade, conntrack, stateful forward policy, between veths; its
#     table max is the host's nf_conntrack_max, which a child namespace
#     cannot change, and its masquerade keeps source ports, reusing them
#     towards the 1,000 server ports, so it needs no early drop until its
#     table fills). The sender writes the kernel's packets into a veth, so
#     the router's work runs on the sender's CPU: the kernel's rate is
#     bounded by one core, the TUN forwarders' by a TUN queue and two.
# Prints each rate and tungate / copy loop (goal >= 0.8), and each TUN
# forwarder's process CPU time per flow delivered: their ratio is what the
# rate ratio becomes when both are CPU-bound, and it is steadier than the
# rates on a loaded machine (the kernel's work is not a process's, so it
# has none). ROUNDS alternates the order. Env: BIN, MAX, SHARED;
# BASE=BINARY also runs that second tungate binary (e.g. one built from an
# older commit) on the same config in every round, as "base", and prints
# base / copy loop beside tungate / copy loop; SYSTEMS limits what runs
# (default "copy gw kernel", plus base when BASE is set); PROFILE=DIR
# writes a CPU profile of each tungate run to DIR (TUNGATE_CPUPROFILE);
# WARMUP=SECONDS sends flows for that long before each measurement, not
# counted (every system alike): the gateway's table is then full when the
# measurement starts, so it measures the steady state (every flow an early
# drop) rather than also the first max flows' allocation of entries.
set -u
HERE=$(cd $(dirname $0)/.. && pwd)
T=${1:-5}; ROUNDS=${2:-1}
MAX=${MAX:-32768}
BASE=${BASE:-}
SYSTEMS=${SYSTEMS:-copy gw ${BASE:+base }kernel}
PROFILE=${PROFILE:-}
WARMUP=${WARMUP:-0}
[ -n "$PROFILE" ] && mkdir -p "$PROFILE"
ID=nf$$
. $HERE/scripts/flood-lib.sh
K=${ID:0:6}k
kdown() { for n in ${K}c ${K}r ${K}s; do ip netns del $n 2>/dev/null; done; return 0; }
trap 'fl_cleanup; kdown' EXIT
fl_build
fl_gw_config "max = $MAX"
echo "bench-newflows: $T s per measurement (after ${WARMUP} s of warm-up), $ROUNDS round(s), gateway max $MAX, load avg $(fl_load), commit $(cd $HERE && git rev-parse --short HEAD)${BASE:+, base binary $BASE}; systems: $SYSTEMS"

# flows NS DEV RXNS RXDEV [DMAC]: send for T s, print "delivered_pps sent_pps".
flows() {
  local dmac=${5:-}
  local rx0=$(fl_rx $3 $4)
  local out=$(ip netns exec $1 $FL_DIR/floodgen udpflows -i $2 -src 10.10.0.0/16 -dst 198.18.0.2 -dport 10000 -dports 1000 -d ${T}s ${dmac:+-dmac $dmac})
  sleep 0.5 # what is queued drains
  local rx1=$(fl_rx $3 $4)
  fl_py "
import json
r = json.loads('''$out''')
print('%d %d' % (($rx1 - $rx0) / r['seconds'], r['pps']))"
}

# warm NS DEV [DMAC]: WARMUP seconds of flows like the measured ones, not counted.
warm() {
  [ "$WARMUP" = 0 ] && return
  # Flows numbered from 1<<24: none is one the measurement (from 0) sends.
  ip netns exec $1 $FL_DIR/floodgen udpflows -i $2 -src 10.10.0.0/16 -dst 198.18.0.2 -dport 10000 -dports 1000 -first 16777216 -d ${WARMUP}s ${3:+-dmac $3} >/dev/null
  sleep 0.5
}

measure() {
  case $1 in
  copy)
    fl_up_copy
    warm $FL_C $FL_L
    local c0=$(fl_cpu)
    read D S < <(flows $FL_C $FL_L $FL_S $FL_W)
    CPU=$(fl_py "print('%.2f' % (($(fl_cpu) - $c0) * 1e4 / ($D * $T)) if $D else 0)")
    EXTRA="(forwarder CPU $CPU µs per flow delivered)"
    fl_down ;;
  gw|base)
    local bin=$BIN
    [ $1 = base ] && BIN=$BASE
    if [ -n "$PROFILE" ]; then export TUNGATE_CPUPROFILE=$PROFILE/$1-r$r.pprof; fi
    fl_up_gw
    unset TUNGATE_CPUPROFILE
    warm $FL_C $FL_L
    local c0=$(fl_cpu)
    read D S < <(flows $FL_C $FL_L $FL_S $FL_W)
    CPU=$(fl_py "print('%.2f' % (($(fl_cpu) - $c0) * 1e4 / ($D * $T)) if $D else 0)")
    local st=$(fl_ctl ct stats -o json)
    local nat=$(fl_ctl stats -o json)
    EXTRA=$(fl_py "
import json
c, s = json.loads('''$st'''), json.loads('''$nat''')
print('(forwarder CPU $CPU µs per flow delivered; table %d/%d, early_drop %d, nat exhausted %d, drops %s)' % (c['entries'], c['max'], c['early_drop'], s['nat_port_exhausted'],
  {k[5:]: v for k, v in s.items() if k.startswith('drop_') and v}))")
    fl_down
    BIN=$bin ;;
  kernel)
    kdown
    P=$K bash $SHARED/bench/kernel-ref.sh >/dev/null || { echo "kernel-ref.sh failed"; D=0 S=0; return; }
    ip netns exec ${K}r sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.${K}vr1.rp_filter=0
    ip netns exec ${K}s sysctl -qw net.ipv4.icmp_ratelimit=1000
    local mac=$(ip netns exec ${K}r cat /sys/class/net/${K}vr1/address)
    warm ${K}c ${K}vc $mac
    read D S < <(flows ${K}c ${K}vc ${K}s ${K}vs $mac)
    EXTRA="(conntrack -S: $(ip netns exec ${K}r conntrack -S 2>/dev/null | awk '{for (i = 1; i <= NF; i++) { split($i, a, "="); if (a[1] == "insert" || a[1] == "drop" || a[1] == "early_drop") s[a[1]] += a[2] } } END { for (k in s) printf "%s=%d ", k, s[k] }')entries=$(ip netns exec ${K}r conntrack -C 2>/dev/null))"
    kdown ;;
  esac
}

ratio() { fl_py "print('%.3f' % ($1/$2) if $1 and $2 else 'n/a')"; }
for r in $(seq $ROUNDS); do
  order=$SYSTEMS
  if [ $((r % 2)) = 0 ]; then order=$(echo $SYSTEMS | tr ' ' '\n' | tac | tr '\n' ' '); fi
  R_copy=0 R_gw=0 R_base=0 R_kernel=0 C_copy=0 C_gw=0 C_base=0
  for k in $order; do
    EXTRA=
    measure $k
    echo "  $k: $D flows/s delivered (sender $S/s) $EXTRA"
    eval "R_$k=$D"
    [ $k = kernel ] || eval "C_$k=$CPU"
  done
  echo "round $r: tungate/copy loop $(ratio $R_gw $R_copy) (goal >= 0.8), netfilter/copy loop $(ratio $R_kernel $R_copy); CPU per flow copy/tungate $(ratio $C_copy $C_gw) (what the rate ratio becomes when both are CPU-bound)${BASE:+; base: base/copy loop $(ratio $R_base $R_copy), CPU per flow copy/base $(ratio $C_copy $C_base)}"
done
echo "load avg now $(fl_load)"
