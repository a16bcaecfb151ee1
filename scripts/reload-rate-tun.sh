#!/bin/bash
# scripts/reload-rate-tun.sh [SECONDS] [ROUNDS] — reload of 10,000 rules while
# forwarding a fixed rate of half the measured maximum, end to end (issue 11,
# root): real kernel TUNs between a client and a server namespace
# (scripts/flood-lib.sh), tungate between them with masquerade and a
# stateful forward chain, a paced UDP sender (floodgen udpflows -flows 64)
# writing onto the client's TUN.
#
# 1. The maximum: the sender unpaced for 2 s; what reaches the server's
#    UDP stack per second is what the gateway forwards (the client TUN's
#    tx_dropped says the sender offered more).
# 2. Per round, at FRACTION (0.5) of it, each phase a separate sender run
#    after a 1 s warm-up run: "steady" without reloads for SECONDS, then
#    "reload": 1 s, `tungate reload` to the NRULES-rule config, 1 s,
#    reload back to the small one, 1 s (as long as the reloads take). Counted at both ends: sent (the sender's
#    successful writes), received (the server namespace's Udp InDatagrams
#    + NoPorts + InErrors), and where the difference went: the client
#    TUN's tx_dropped (the TUN queue, TXQLEN long, overflowed while the
#    gateway did not read) and the gateway's drop counters.
# The sender never bursts more than MAXLAG packets late (floodgen -maxlag):
# when it was descheduled longer, it skips those packets (counted as
# "skipped", not sent, not lost) rather than flooding the queue with them,
# so a stall of the sender is not charged to the gateway.
# Also printed: how long the gateway's threads waited on run queues per
# phase (/proc/PID/task/*/schedstat): loss with long waits and no reload is
# the machine's load, not the gateway. GCTRACE=1 leaves the
# gateway's GC trace in its log ($FL_DIR/gw.log; KEEP=1 keeps $FL_DIR).
# Env: BIN, FRACTION, NRULES, TXQLEN (default 1024), MAXLAG (default 256),
# RATE (skip the measurement, use this rate).
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

udp_in() { ip netns exec $FL_S awk '/^Udp: [0-9]/ {print $2 + $3 + $4; exit}' /proc/net/snmp; }
txdrop() { ip netns exec $FL_C cat /sys/class/net/$FL_L/statistics/tx_dropped; }
gwdrops() { fl_ctl stats | awk '/^drop/ {s += $2} END {print s + 0}'; }
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
  local r0 d0 g0 w0 j t0 out
  r0=$(udp_in); d0=$(txdrop); g0=$(gwdrops); w0=$(runwait)
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
  local sent got qd gd
  sent=$(field "$j" sent); got=$(( $(udp_in) - r0 )); qd=$(( $(txdrop) - d0 )); gd=$(( $(gwdrops) - g0 ))
  echo "  $1: sent $sent in $(field "$j" seconds | cut -c1-4) s at $(field "$j" pps | cut -d. -f1) pkt/s (skipped $(field "$j" skipped) in $(field "$j" lag_resets) sender stalls, send errors $(field "$j" send_errors)), received $got, lost $((sent - got)) ($(fl_py "print('%.2f' % (100.0 * ($sent - $got) / max($sent, 1)))") %; client TUN queue $qd, gateway drops $gd); gateway threads waited $(ms $w0 $(runwait)) on run queues$( [ $2 = 1 ] && echo "; reloads: $(paste -sd, $FL_DIR/reloads)")"
}
for r in $(seq $ROUNDS); do
  echo "round $r (load avg $(fl_load)):"
  phase steady 0
  phase reload 1
done
rules=$(fl_ctl rules | grep -c '^  \[')
echo "running rules at the end: $rules; reload errors: $(cat $FL_DIR/reload.err 2>/dev/null | head -3)"
