#!/bin/bash
# scripts/bench-ctlist.sh [SECONDS] [ROUNDS] — forwarding during `ct list` of a full table, issue 11 (root).
#
# Fills tungate's table ([conntrack] max $MAX, default 262144; UDP timeout
# 1 h so nothing expires) with one-packet UDP flows (floodgen udpflows from
# 10.10.0.0/16), then measures an iperf3 TCP flow client → server
# (masqueraded) for SECONDS without any listing, with `tungate ct list` run
# back to back for the whole time (output to /dev/null), and with
# `ct list -o json` the same way; ROUNDS times, alternating. Prints each
# rate, the lists' count and time each, and with/without (goal >= 0.8).
# Env: BIN, MAX.
set -u
HERE=$(cd $(dirname $0)/.. && pwd)
T=${1:-8}; ROUNDS=${2:-1}
MAX=${MAX:-262144}
ID=cl$$
. $HERE/scripts/flood-lib.sh
trap 'kill $(jobs -p) 2>/dev/null; fl_cleanup' EXIT
fl_build
fl_gw_config "max = $MAX
[conntrack.timeouts]
udp = \"1h\"
udp_stream = \"1h\"" 'src = ["10.10.0.2/32"]'
fl_up_gw
echo "bench-ctlist: $T s per measurement, $ROUNDS round(s), max $MAX, load avg $(fl_load), commit $(cd $HERE && git rev-parse --short HEAD)"

entries() { fl_ctl ct stats -o json | fl_py 'import json,sys; print(json.load(sys.stdin)["entries"])'; }
for try in 1 2 3 4; do
  ip netns exec $FL_C $FL_DIR/floodgen udpflows -i $FL_L -src 10.10.0.0/16 -dst 198.18.0.2 -dport 10000 -dports 1000 \
    -n $((MAX * 5 / 4)) -rate 60000 >/dev/null
  sleep 1
  n=$(entries)
  [ $n -ge $((MAX * 98 / 100)) ] && break
done
echo "table: $n of $MAX entries; gateway RSS $(fl_rss) kB"

# lister MODE: `ct list` back to back until killed; each run's seconds to a file.
lister() {
  while :; do
    local t0=$(date +%s.%N)
    fl_ctl ct list $1 >/dev/null 2>&1
    echo "$t0 $(date +%s.%N)" >>$FL_DIR/lists.$2
  done
}

for r in $(seq $ROUNDS); do
  for mode in none text json; do
    rm -f $FL_DIR/lists.$mode
    case $mode in
      none) v=$(fl_iperf $T) ;;
      text) lister "" text & L=$!; sleep 0.5; v=$(fl_iperf $T); kill $L; wait $L 2>/dev/null ;;
      json) lister "-o json" json & L=$!; sleep 0.5; v=$(fl_iperf $T); kill $L; wait $L 2>/dev/null ;;
    esac
    lists=
    if [ -f $FL_DIR/lists.$mode ]; then
      lists=$(fl_py "
ts = [tuple(map(float, l.split())) for l in open('$FL_DIR/lists.$mode')]
print('(%d lists, %.2f s each)' % (len(ts), sum(b - a for a, b in ts) / len(ts)))")
    fi
    echo "  round $r, ct list $mode: $v Gbit/s $lists"
    eval "V_$mode=$v"
  done
  echo "round $r: with text list / without $(fl_py "print('%.3f' % ($V_text/$V_none) if $V_none else 'n/a')"), with json list / without $(fl_py "print('%.3f' % ($V_json/$V_none) if $V_none else 'n/a')") (goal >= 0.8)"
done
echo "table at the end: $(entries) entries; load avg now $(fl_load)"
