#!/bin/bash
# scripts/reload-rate-tun.sh [SECONDS] [ROUNDS] — reload of 10,000 rules while
# forwarding a fixed rate of half the measured maximum, end to end (issue 11,
# root): real kernel TUNs between a client and a server namespace
# (scripts/flood-lib.sh), tungate between them with masquerade and a
# stateful forward chain, a paced UDP sender (floodgen udpflows -flows 64)
# writing onto the client's TUN.
#
# 1. The maximum: the sender unpaced for 2 s; the datagrams that reach the
#    server per second (counted as below) are what the gateway forwards (the client TUN's
#    tx_dropped says the sender offered more).
# 2. Per round, at FRACTION (0.5) of it, each phase a separate sender run
#    after a 1 s warm-up run: "steady" without reloads for SECONDS, then
#    "reload": 1 s, `tungate reload` to the NRULES-rule config, 1 s,
#    reload back to the small one, 1 s (as long as the reloads take).
#    Counted at both ends: sent (the sender's successful writes) and
#    received (datagrams that reached the server namespace's IP layer,
#    see below); where the difference went: the client TUN's tx_dropped
#    (its queue, TXQLEN long, overflowed while the gateway did not read),
#    the gateway's drop counters, the server TUN's rx_dropped + rx_errors,
#    the server's IP and UDP discards (InHdrErrors, InAddrErrors,
#    InUnknownProtos, InDiscards, UDP InErrors: the last includes
#    RcvbufErrors and InCsumErrors), and what none of them counts
#    ("unaccounted"), so sent = received + each counted loss + unaccounted.
#    Also printed: how many the client TUN took (tx_packets: the sender's
#    writes that left it), what the gateway read and wrote, its drops by
#    reason. The namespaces' own packets pass too (the client's IPv6
#    router and neighbour solicitations, which the gateway drops as
#    martians): they make "gateway drops" and "client TUN took" a few
#    higher and so "unaccounted" a few below zero.
# Received is counted in datagrams, not in the kernel's packets: the
# gateway writes a batch to its TUN with GRO (wireguard-go's tun coalesces
# UDP datagrams of one flow that sit next to each other in a batch into one
# UDP GSO packet, the kernel having USO), and the server's IP and UDP
# counters (InReceives, InDatagrams, NoPorts) and the TUN's rx_packets
# count such a packet once, however many datagrams it carries. Every flood
# datagram is 46 bytes (IPv4 20 + UDP 8 + 18 bytes of payload) and a
# packet of k merged datagrams is 28 + 18k, so the datagrams are
# (IpExt InOctets - 28 * Ip InReceives) / 18 (the script checks that it
# divides); "merged" is how many more datagrams than packets that is. The
# more the gateway falls behind (a reload), the bigger its batches and the
# more it merges: counted in packets, that looked like loss (issue 11).
# The sender never bursts more than MAXLAG packets late (floodgen -maxlag):
# when it was descheduled longer, it skips those packets (counted as
# "skipped", not sent, not lost) rather than flooding the queue with them,
# so a stall of the sender is not charged to the gateway.
# Also printed: how long the gateway's threads waited on run queues per
# phase (/proc/PID/task/*/schedstat): loss with long waits and no reload is
# the machine's load, not the gateway. GCTRACE=1 leaves the
# gateway's GC trace in its log ($FL_DIR/gw.log; KEEP=1 keeps $FL_DIR).
# 3. Then, for reference, a "copy" phase: the same sender at the same rate
#    through the bare copy loop instead of the gateway.
# Env: BIN, FRACTION, NRULES, TXQLEN (default 1024), MAXLAG (default 256),
# RATE (skip the measurement, use this rate), COPYREF (default 1).
set -u
HERE=$(cd $(dirname $0)/.. && pwd)
T=${1:-6}; ROUNDS=${2:-2}
FRACTION=${FRACTION:-0.5}; NRULES=${NRULES:-10000}; MAXLAG=${MAXLAG:-256}
export TXQLEN=${TXQLEN:-1024}
ID=rr$$
. $HERE/scripts/flood-lib.sh
trap 'kill $(jobs -p) 2>/dev/null; if [ -n "${KEEP:-}" ]; then fl_down; echo "kept $FL_DIR"; else fl_cleanup; fi' EXIT
fl_build
fl_gw_config "" 'src = ["10.10.0.0/24"]'
cp $FL_DIR/gw.toml $FL_DIR/small.toml
fl_py "
import sys
src = open('$FL_DIR/small.toml').read()
anchor = '{ ct_state = [\"established\", \"related\"], action = \"accept\" },\n'
rules = ''.join('  { src = [\"10.%d.%d.0/24\"], proto = \"tcp\", dport = %d, action = \"accept\" },\n' % (100 + i // 256 % 100, i % 256, 1000 + i % 5000) for i in range($NRULES))
assert anchor in src
open('$FL_DIR/big.toml', 'w').write(src.replace(anchor, anchor + rules, 1))
"
# GCTRACE=1: the gateway (only) runs with GODEBUG=gctrace=1.
if [ -n "${GCTRACE:-}" ]; then export GODEBUG=gctrace=1; fi
fl_up_gw
unset GODEBUG
echo "reload-rate-tun: $T s per phase, $ROUNDS round(s), $NRULES rules, fraction $FRACTION, txqueuelen $TXQLEN, maxlag $MAXLAG, load avg $(fl_load), commit $(cd $HERE && git rev-parse --short HEAD)"

# srv: the server namespace's counters, one "name value" a line: IP and
# UDP MIBs (/proc/net/snmp, /proc/net/netstat) and its TUN's statistics.
srv() {
  ip netns exec $FL_S awk '
    /^(Ip|Udp|IpExt): [A-Za-z]/ {split($0, h); getline; split($0, v); for (i = 2; i in h; i++) print h[1] h[i], v[i]}
  ' /proc/net/snmp /proc/net/netstat
  for f in rx_packets rx_dropped rx_errors; do echo "tun:$f $(ip netns exec $FL_S cat /sys/class/net/$FL_W/statistics/$f)"; done
}
# udp_in: datagrams that reached the server's IP layer (see the header).
udp_in() { srv | awk '$1 == "Ip:InReceives" {p = $2} $1 == "IpExt:InOctets" {o = $2} END {printf "%d", (o - 28 * p) / 18}'; }
ctun() { ip netns exec $FL_C cat /sys/class/net/$FL_L/statistics/$1; }
txdrop() { ctun tx_dropped; }
gwstats() { if [ "$FL_KIND" = gw ]; then fl_ctl stats; fi; }
gwdrops() { gwstats | awk '/^drop/ {s += $2} END {print s + 0}'; }
# snap FILE: every counter the attribution uses, "name value" a line.
snap() {
  { srv; echo "c:tx_packets $(ctun tx_packets)"; echo "c:tx_dropped $(ctun tx_dropped)"
    gwstats | awk '/^drop/ {d += $2; print "gwd:" $1, $2} /^(received|sent) / {print "gw:" $1, $2} END {print "gw:drops", d + 0}'; } >$1
}
# attribute SENT BEFORE AFTER: the phase's line of where every packet went.
attribute() {
  fl_py "
import sys
def rd(f): return {l.split()[0]: int(l.split()[1]) for l in open(f) if len(l.split()) == 2}
a, b = rd('$2'), rd('$3')
d = lambda k: b.get(k, 0) - a.get(k, 0)
sent = $1
pk, octets = d('Ip:InReceives'), d('IpExt:InOctets')
dg, rem = divmod(octets - 28 * pk, 18)
q, gw, tun = d('c:tx_dropped'), d('gw:drops'), d('tun:rx_dropped') + d('tun:rx_errors')
ip = sum(d('Ip:' + k) for k in ('InHdrErrors', 'InAddrErrors', 'InUnknownProtos', 'InDiscards'))
udp = d('Udp:InErrors')
# datagrams the UDP layer counted: delivered or dropped there
got = dg - ip - udp
un = sent - got - q - gw - tun - ip - udp
print('sent %d = received %d + client TUN queue %d + gateway drops %d + server TUN rx drops/errors %d + server IP discards %d + server UDP errors %d + unaccounted %d (%.2f %%)' % (sent, got, q, gw, tun, ip, udp, un, 100.0 * un / max(sent, 1)))
why = ', '.join('%s %d' % (k[4:], d(k)) for k in sorted(b) if k.startswith('gwd:') and d(k))
print('      [client TUN took %d; gateway read %s, wrote %s%s; server got %d packets (TUN rx_packets %d) carrying %d datagrams: %d merged by GRO%s; UDP RcvbufErrors %d, InCsumErrors %d]' % (
    d('c:tx_packets'), d('gw:received') if 'gw:received' in b else '-', d('gw:sent') if 'gw:sent' in b else '-', ' (drops: ' + why + ')' if why else '',
    pk, d('tun:rx_packets'), dg, dg - pk, '' if rem == 0 else ' (octets do not divide: %d left, packets other than the flood arrived)' % rem,
    d('Udp:RcvbufErrors'), d('Udp:InCsumErrors')))
"
}
# settled: wait until the server's count stops moving (everything queued
# has arrived), at most 5 s.
settled() {
  local a b
  a=$(udp_in)
  for i in $(seq 50); do sleep 0.1; b=$(udp_in); [ "$a" = "$b" ] && break; a=$b; done
}
send() { # RATE SECONDS: one sender run; prints its JSON
  ip netns exec $FL_C $FL_DIR/floodgen udpflows -i $FL_L -src 10.10.0.2/32 -dst 198.18.0.2 -dport 9 -flows 64 \
    -rate $1 -maxlag $MAXLAG -d ${2}s
}
field() { fl_py "import json,sys; print(json.loads(sys.argv[1]).get('$2', 0))" "$1"; }

# The maximum.
if [ -z "${RATE:-}" ]; then
  send 0 1 >/dev/null; settled
  r0=$(udp_in); d0=$(txdrop)
  j=$(send 0 2); settled
  got=$(( $(udp_in) - r0 )); dropped=$(( $(txdrop) - d0 ))
  secs=$(field "$j" seconds)
  max=$(fl_py "print(int($got / $secs))")
  echo "maximum: $max pkt/s forwarded (sender offered $(field "$j" pps | cut -d. -f1) pkt/s, $dropped dropped at the client TUN's queue$( [ $dropped = 0 ] && echo ': the sender, not the gateway, was the limit'))"
  RATE=$(fl_py "print(int($max * $FRACTION))")
fi
echo "rate: $RATE pkt/s"

# runwait: nanoseconds the gateway's threads spent waiting on a run queue
# (schedstat's second field, summed over its threads): how long the
# scheduler kept it from reading.
runwait() { cat /proc/$FL_PID/task/*/schedstat 2>/dev/null | awk '{s += $2} END {printf "%.0f", s}'; }
ms() { fl_py "print('%.0f ms' % (($2 - $1) / 1e6))"; }

phase() { # NAME RELOAD(0/1)
  send $RATE 1 >/dev/null; settled # warm-up
  local w0 j t0 out
  snap $FL_DIR/before; w0=$(runwait)
  rm -f $FL_DIR/reloads
  if [ $2 = 1 ]; then
    # The sender runs until both reloads are done (under load a reload
    # takes seconds): 1 s, reload to NRULES, 1 s, reload back, 1 s.
    out=$FL_DIR/send.json
    ip netns exec $FL_C $FL_DIR/floodgen udpflows -i $FL_L -src 10.10.0.2/32 -dst 198.18.0.2 -dport 9 -flows 64 \
      -rate $RATE -maxlag $MAXLAG -d 600s >$out & S=$!
    sleep 1
    cp $FL_DIR/big.toml $FL_DIR/gw.toml; t0=$(date +%s.%N)
    fl_ctl reload >/dev/null 2>>$FL_DIR/reload.err; echo "to $NRULES $(fl_py "import time; print('%.2f s' % (time.time() - $t0))")" >>$FL_DIR/reloads
    sleep 1
    cp $FL_DIR/small.toml $FL_DIR/gw.toml; t0=$(date +%s.%N)
    fl_ctl reload >/dev/null 2>>$FL_DIR/reload.err; echo "back $(fl_py "import time; print('%.2f s' % (time.time() - $t0))")" >>$FL_DIR/reloads
    sleep 1
    kill -TERM $S; wait $S
    j=$(cat $out)
  else
    j=$(send $RATE $T)
  fi
  settled
  local w1 sent
  snap $FL_DIR/after; w1=$(runwait)
  sent=$(field "$j" sent)
  echo "  $1: sent $sent in $(field "$j" seconds | cut -c1-4) s at $(field "$j" pps | cut -d. -f1) pkt/s (skipped $(field "$j" skipped) in $(field "$j" lag_resets) sender stalls, send errors $(field "$j" send_errors)); gateway threads waited $(ms $w0 $w1) on run queues$( [ $2 = 1 ] && echo "; reloads: $(paste -sd, $FL_DIR/reloads)")"
  echo "    $(attribute $sent $FL_DIR/before $FL_DIR/after)"
}
for r in $(seq $ROUNDS); do
  echo "round $r (load avg $(fl_load)):"
  phase steady 0
  phase reload 1
done
rules=$(fl_ctl rules | grep -c '^  \[')
echo "running rules at the end: $rules; reload errors: $(cat $FL_DIR/reload.err 2>/dev/null | head -3)"
# The reference (COPYREF=0 leaves it out): the bare copy loop
# (../shared/bench/tuncopy, wireguard-go's tun with GRO as in tungate)
# between the same namespaces, the same sender at the same rate, no
# reload: what the kernel and the machine lose with no gateway in the way.
if [ "${COPYREF:-1}" = 1 ]; then
  fl_up_copy
  echo "reference, the copy loop (load avg $(fl_load)):"
  phase copy 0
fi
