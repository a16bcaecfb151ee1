#!/bin/bash
# scripts/bench-metrics.sh [ROUNDS] [BENCHTIME] — metrics on vs off, issue 11.
#
# 1. BenchmarkForwardMetrics (./gateway/) off and on, alternated ROUNDS
#    times (default 6) from one compiled test binary: batches of 64
#    established TCP segments through the worker loop, "on" serving
#    /metrics and scraped once a second. Prints the medians and on/off.
# 2. As root, the whole gateway: iperf3 TCP through tungate (masquerade,
#    stateful policy) with metrics = "" and with metrics on and scraped
#    once a second, alternated ROUNDS/2 times (at least 1), T=5 s each.
# Goal: on within 5 % of off.
set -u
HERE=$(cd $(dirname $0)/.. && pwd)
ROUNDS=${1:-6}; BT=${2:-3s}
cd $HERE
TB=$(mktemp -d /tmp/tungate-bm-XXXXXX)
# KEEP=DIR keeps the raw benchmark lines (bench.txt, for benchstat) and the
# whole-gateway figures (gw.txt).
keep() { [ -z "${KEEP:-}" ] || { mkdir -p "$KEEP"; cp $TB/*.txt "$KEEP/" 2>/dev/null; }; }
trap 'keep; rm -rf $TB' EXIT
go test -c -o $TB/gw.test ./gateway/ || exit 1
echo "bench-metrics: $ROUNDS rounds, benchtime $BT, load avg $(cut -d' ' -f1 /proc/loadavg), commit $(git rev-parse --short HEAD)"
for r in $(seq $ROUNDS); do
  for m in off on; do
    (cd gateway && nice $TB/gw.test -test.run '^$' -test.bench "^BenchmarkForwardMetrics/$m\$" -test.benchtime $BT) | grep '^BenchmarkForwardMetrics' >>$TB/bench.txt
  done
done
python3 - $TB/bench.txt <<'EOF'
import sys, re, statistics
vals = {}
for l in open(sys.argv[1]):
    m = re.match(r'BenchmarkForwardMetrics/(\w+)', l)
    for v, unit in re.findall(r'([\d.]+) (ns/pkt|cpu-ns/pkt|thread-cpu-ns/pkt)', l):
        vals.setdefault((m.group(1), unit), []).append(float(v))
for unit in ('ns/pkt', 'cpu-ns/pkt', 'thread-cpu-ns/pkt'):
    off, on = vals.get(('off', unit), []), vals.get(('on', unit), [])
    if off and on:
        mo, mn = statistics.median(off), statistics.median(on)
        print('%-18s off %7.1f  on %7.1f  on/off %.3f   (off %s; on %s)' % (unit, mo, mn, mn / mo,
              ' '.join('%.0f' % v for v in off), ' '.join('%.0f' % v for v in on)))
EOF

[ "$(id -u)" = 0 ] || { echo "(not root: whole-gateway part skipped)"; exit 0; }
ID=bm$$
. $HERE/scripts/flood-lib.sh
trap 'keep; rm -rf $TB; fl_cleanup' EXIT
fl_build
PORT=$((19000 + $$ % 1000))
GR=$((ROUNDS / 2)); [ $GR -lt 1 ] && GR=1
for r in $(seq $GR); do
  for m in off on; do
    if [ $m = on ]; then fl_gw_config "" "" "127.0.0.1:$PORT"; else fl_gw_config; fi
    fl_up_gw
    if [ $m = on ]; then
      ( while :; do curl -s --max-time 2 -o /dev/null http://127.0.0.1:$PORT/metrics; sleep 1; done ) & SCR=$!
    fi
    v=$(fl_iperf 5)
    [ $m = on ] && { kill $SCR; wait $SCR 2>/dev/null; }
    fl_down
    echo "  gateway iperf3, metrics $m: $v Gbit/s"
    echo "$m $v" >>$TB/gw.txt
  done
done
python3 - $TB/gw.txt <<'EOF'
import sys, statistics
v = {}
for l in open(sys.argv[1]):
    m, x = l.split(); v.setdefault(m, []).append(float(x))
off, on = statistics.median(v['off']), statistics.median(v['on'])
print('whole gateway iperf3 (median): off %.2f, on %.2f Gbit/s, on/off %.3f' % (off, on, on / off if off else 0))
EOF
