#!/bin/bash
# scripts/flood-syn.sh [SECONDS] [ROUNDS] — SYN flood, issue 14 (root).
#
# An established iperf3 TCP flow client → server through tungate
# (masquerade, stateful policy, [conntrack] max = $MAX) and through the bare
# copy loop (../shared/bench/tuncopy), each without and with a SYN flood:
# hping3 from the client namespace, random sources, to 198.18.0.3:80 (an
# address nobody answers, so every SYN stays a half-open entry), one SYN
# every $INTERVAL (u50: 20,000 a second). The iperf3 connection is made
# after the flood started, so it is also a new legitimate connection under
# flood. Prints each measurement, the gateway's conntrack counters and
# memory under flood, and
#   ratio = (gateway flood / gateway no flood) / (copy flood / copy no flood)
# (goal >= 0.95). ROUNDS alternates the order (copy first, then gateway
# first). Env: BIN (default: bin/tungate built from this tree), MAX (16384), TXQLEN (both
# forwarders' device queue length; default the TUN's 500),
# INTERVAL (u50), SHARED (../shared); FLOODER=floodgen sends the SYNs
# with scripts/floodgen instead, paced at RATE (20000) a second exactly
# (hping3's usleep pacing falls short on a loaded machine). BASE=BINARY
# also measures that second tungate binary (e.g. one built from an older
# commit) in every round, as "base", with its own ratio against the same
# round's copy loop. Each round also prints the SYN rate every system
# met and flags a spread above 5 % (a loaded sender falls short most for
# the forwarder that takes the most CPU).
set -u
HERE=$(cd $(dirname $0)/.. && pwd)
T=${1:-8}; ROUNDS=${2:-1}
MAX=${MAX:-16384}; INTERVAL=${INTERVAL:-u50}
FLOODER=${FLOODER:-hping3}; RATE=${RATE:-20000}
BASE=${BASE:-}
ID=fs$$
. $HERE/scripts/flood-lib.sh
trap fl_cleanup EXIT
fl_build
command -v hping3 >/dev/null && command -v iperf3 >/dev/null || { echo "needs hping3 and iperf3 (scripts/test-deps.sh)"; exit 1; }
fl_gw_config "max = $MAX"
[ $FLOODER = floodgen ] && INTERVAL="1/$RATE s (floodgen)"
echo "flood-syn: $T s per measurement, $ROUNDS round(s), max $MAX, one SYN every $INTERVAL, txqueuelen ${TXQLEN:-TUN default}, load avg $(fl_load), commit $(cd $HERE && git rev-parse --short HEAD)${BASE:+, base binary $BASE}"

# flood_on / flood_off: hping3 in the client namespace; flood_off prints
# SYNs sent and their rate.
flood_on() {
  if [ $FLOODER = floodgen ]; then
    ip netns exec $FL_C $FL_DIR/floodgen syn -i $FL_L -src 0.0.0.0/0 -dst 198.18.0.3 -dport 80 -rate $RATE -d 1h >$FL_DIR/hping.out 2>&1 &
  else
    ip netns exec $FL_C hping3 -S -p 80 --rand-source -i $INTERVAL 198.18.0.3 >$FL_DIR/hping.out 2>&1 &
  fi
  FLOOD=$! FLOOD_T0=$(date +%s.%N)
  sleep 1
}
flood_off() {
  kill -INT $FLOOD; wait $FLOOD 2>/dev/null
  local n
  if [ $FLOODER = floodgen ]; then
    n=$(fl_py "import json; print(json.load(open('$FL_DIR/hping.out'))['sent'])")
  else
    n=$(grep -o '[0-9]* packets transmitted' $FL_DIR/hping.out | cut -d' ' -f1)
  fi
  fl_py "print('%d SYNs, %.0f/s' % ($n, $n/($(date +%s.%N)-$FLOOD_T0)))"
}

measure() {  # measure copy|gw|base → sets NO and FL (Gbit/s)
  local bin=$BIN
  [ $1 = base ] && BIN=$BASE
  if [ $1 = copy ]; then fl_up_copy; else fl_up_gw; fi
  NO=$(fl_iperf $T)
  if [ $1 != copy ]; then
    local rss0=$(fl_rss)
    fl_ctl ct stats -o json >$FL_DIR/ct0.json
  fi
  flood_on
  FL=$(fl_iperf $T)
  local syn=$(flood_off)
  local extra=
  if [ $1 != copy ]; then
    local rss1=$(fl_rss)
    fl_ctl ct stats -o json >$FL_DIR/ct1.json
    extra=$(fl_py "
import json
a, b = json.load(open('$FL_DIR/ct0.json')), json.load(open('$FL_DIR/ct1.json'))
print('entries %d/%d, early_drop +%d, drop +%d, insert +%d; RSS %d -> %d kB (%+d kB; max x 1 KiB = %d kB)' % (
    b['entries'], b['max'], b['early_drop']-a['early_drop'], b['drop']-a['drop'], b['insert']-a['insert'],
    $rss0, $rss1, $rss1-$rss0, b['max']))")
  fi
  echo "  $1: no flood $NO Gbit/s, flood $FL Gbit/s ($syn) $extra"
  SR=$(echo "$syn" | sed -n 's/.*, \([0-9]*\)\/s$/\1/p')
  fl_down
  BIN=$bin
}

ratios=() bratios=()
for r in $(seq $ROUNDS); do
  if [ $((r % 2)) = 1 ]; then order="copy gw ${BASE:+base}"; else order="${BASE:+base} gw copy"; fi
  for k in $order; do
    measure $k
    case $k in copy) CN=$NO CF=$FL CS=$SR ;; gw) GN=$NO GF=$FL GS=$SR ;; base) BN=$NO BF=$FL BS=$SR ;; esac
  done
  # The ratio compares like with like only if every system met the same
  # flood: a forwarder that takes more CPU slows a loaded sender, and
  # then meets a lighter flood than the copy loop did.
  fl_py "
r = {k: v for k, v in (('copy', '${CS:-}'), ('gw', '${GS:-}'), ('base', '${BS:-}' if '$BASE' else '')) if v}
if r:
    lo, hi = min(map(int, r.values())), max(map(int, r.values()))
    print('round $r: flood rates %s SYN/s, spread %.1f %%%s' % (', '.join('%s %s' % kv for kv in r.items()), 100.0 * (hi - lo) / hi if hi else 0,
          ' (UNEQUAL: more than 5 %; the ratio is not like for like)' if hi and (hi - lo) > 0.05 * hi else ''))"
  if [ -n "$BASE" ]; then
    bratio=$(fl_py "print('%.3f' % (($BF/$BN)/($CF/$CN)) if $BN and $CN and $CF else 'n/a')")
    echo "round $r: base keeps $(fl_py "print('%.3f' % ($BF/$BN) if $BN else 'n/a')") of its throughput under flood; base ratio $bratio"
    bratios+=($bratio)
  fi
  ratio=$(fl_py "print('%.3f' % (($GF/$GN)/($CF/$CN)) if $GN and $CN and $CF else 'n/a')")
  echo "round $r: gateway keeps $(fl_py "print('%.3f' % ($GF/$GN) if $GN else 'n/a')") of its throughput under flood, the copy loop $(fl_py "print('%.3f' % ($CF/$CN) if $CN else 'n/a')"); ratio $ratio (goal >= 0.95)"
  ratios+=($ratio)
done
echo "ratios: ${ratios[*]}${BASE:+; base ratios: ${bratios[*]}} (load avg now $(fl_load))"
