#!/bin/bash
# scripts/soak.sh [MINUTES] [SAMPLE_SECONDS] — soak, issue 14 (root; `make soak`).
#
# Mixed traffic through tungate (masquerade, stateful policy) between a
# client and a server namespace for MINUTES (default 30):
#   - TCP: HTTP requests in a loop (a new connection each, small and 1 MiB
#     bodies), and a 2 s iperf3 run at 100 Mbit/s every 30 s;
#   - UDP: DNS-like one-datagram flows, 200 a second, a new source port each
#     (hping3), so the table keeps turning over;
#   - ICMP: ping over IPv4 and IPv6, 5 a second each.
# Every SAMPLE_SECONDS (default 10) it samples from the gateway's /metrics
# its RSS, goroutines, open fds, conntrack entries and forwarded packets,
# the HTTP loop's latest request time and the Go heap in use (to tell the
# heap's growth from the runtime's), and from /proc its RSS split into
# anonymous memory and file pages (the binary's code, resident as it runs
# for the first time: part of RSS, bounded by the binary's size), and
# prints them as a table, with kept_kB: heap memory the Go runtime has
# freed but not yet returned to the OS (heap idle − released), which RSS
# includes and which rises and falls with the collector's cycle. After the
# warm-up (the first fifth of the run, at least 180 s: TCP TIME_WAIT
# entries live 120 s) it checks: RSS at the end within 5 % of the first
# sample after warm-up; goroutines and fds without a trend (the median of
# the last third of the samples no higher than the first third's, the
# spread at most 6 for what a scrape or request has in flight). Exit
# status 1 when a check fails. Latency: the HTTP loop's small request
# must not drift (the last third's median within 1.5 × the first
# third's + 2 ms).
# Env: BIN (default: bin/tungate built from this tree), WARMUP (seconds),
# HEAPPROFILE=DIR: the gateway writes a heap profile there every 5 minutes
# (TUNGATE_HEAPPROFILE); `go tool pprof -top -base DIR/heap-A.pb.gz
# DIR/heap-B.pb.gz` then shows what grew between two of them.
set -u
HERE=$(cd $(dirname $0)/.. && pwd)
MIN=${1:-30}; STEP=${2:-10}
DUR=$((MIN * 60))
WARM=${WARMUP:-$((DUR / 5 < 180 ? 180 : DUR / 5))}
[ $WARM -ge $DUR ] && WARM=$((DUR / 2))
ID=sk$$
. $HERE/scripts/flood-lib.sh
trap 'kill $(jobs -p) 2>/dev/null; fl_cleanup' EXIT
fl_build
for c in hping3 iperf3 curl ping; do command -v $c >/dev/null || { echo "needs $c (scripts/test-deps.sh)"; exit 1; }; done
PORT=$((19000 + $$ % 1000))
fl_gw_config "" "" "127.0.0.1:$PORT"
[ -n "${HEAPPROFILE:-}" ] && export TUNGATE_HEAPPROFILE=$HEAPPROFILE
fl_up_gw
echo "soak: $MIN min, sample every $STEP s, warm-up $WARM s, load avg $(fl_load), commit $(cd $HERE && git rev-parse --short HEAD)"

WWW=$FL_DIR/www; mkdir -p $WWW; head -c 1048576 /dev/urandom >$WWW/big.bin; echo hi >$WWW/small.txt
ip netns exec $FL_S python3 -m http.server 8080 --bind 198.18.0.2 --directory $WWW >/dev/null 2>&1 &
for i in $(seq 50); do ip netns exec $FL_C curl -s -o /dev/null --max-time 1 http://198.18.0.2:8080/small.txt && break; sleep 0.2; done

# traffic generators, all in the background until the end
# The HTTP loop starts a pair of requests every 0.5 s on a fixed schedule
# (at once when one ran late), not "as fast as it goes": its TIME_WAIT
# entries, and so the table and the heap, then do not grow when the
# machine gets quieter during the run (a soak at load 12 whose last ten
# minutes were idle failed its RSS check with 40 % more entries at the end).
( next=$(date +%s%N)
  while :; do
    t=$(ip netns exec $FL_C curl -s -o /dev/null -w '%{time_total}' --max-time 10 http://198.18.0.2:8080/small.txt) || t=fail
    echo "$t" >$FL_DIR/http.last
    ip netns exec $FL_C curl -s -o /dev/null --max-time 10 http://198.18.0.2:8080/big.bin || echo fail >>$FL_DIR/http.fail
    next=$((next + 500000000)); d=$((next - $(date +%s%N)))
    if [ $d -gt 0 ]; then sleep $(printf '0.%09d' $d); else next=$(date +%s%N); fi
  done ) &
( while :; do
    ip netns exec $FL_S iperf3 -s -1 -B 198.18.0.2 >/dev/null 2>&1 & s=$!; sleep 0.3
    ip netns exec $FL_C iperf3 -c 198.18.0.2 -t 2 -b 100M >/dev/null 2>&1 || echo fail >>$FL_DIR/iperf.fail
    kill $s 2>/dev/null; wait $s 2>/dev/null; sleep 28
  done ) &
ip netns exec $FL_C hping3 -2 -p 53 -s 1024 -d 40 -i u5000 198.18.0.2 >/dev/null 2>&1 &
ip netns exec $FL_C ping -q -i 0.2 198.18.0.2 >/dev/null 2>&1 &
ip netns exec $FL_C ping -6 -q -i 0.2 2001:db8:1::2 >/dev/null 2>&1 &

metric() { grep "^$1 " $FL_DIR/m.txt | awk '{printf "%d", $2}'; }
printf "%6s %10s %10s %4s %8s %12s %8s %10s %9s %9s %9s\n" t_s rss_kB goroutines fds ct forwarded http_s heap_kB anon_kB file_kB kept_kB | tee $FL_DIR/samples
t0=$(date +%s)
while :; do
  now=$(( $(date +%s) - t0 ))
  curl -s --max-time 5 http://127.0.0.1:$PORT/metrics >$FL_DIR/m.txt
  printf "%6d %10d %10d %4d %8d %12d %8s %10d %9d %9d %9d\n" $now $(( $(metric process_resident_memory_bytes) / 1024 )) \
    $(metric go_goroutines) $(metric process_open_fds) $(metric tungate_conntrack_entries) \
    $(metric tungate_forwarded_packets_total) "$(h=$(cat $FL_DIR/http.last 2>/dev/null); echo ${h:--})" $(( $(metric go_memstats_heap_inuse_bytes) / 1024 )) \
    $(awk '/^RssAnon:/ {print $2}' /proc/$FL_PID/status) $(awk '/^RssFile:/ {print $2}' /proc/$FL_PID/status) \
    $(( ($(metric go_memstats_heap_idle_bytes) - $(metric go_memstats_heap_released_bytes)) / 1024 )) | tee -a $FL_DIR/samples
  [ $now -ge $DUR ] && break
  sleep $STEP
done
kill -0 $FL_PID 2>/dev/null || { echo "FAIL: the gateway died"; exit 1; }
echo "http big-file failures: $(cat $FL_DIR/http.fail 2>/dev/null | wc -l), iperf3 failures: $(cat $FL_DIR/iperf.fail 2>/dev/null | wc -l)"
python3 - $FL_DIR/samples $WARM <<'EOF'
import sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
warm = int(sys.argv[2])
after = [r for r in rows if int(r[0]) >= warm]
if len(after) < 2:
    print("FAIL: fewer than two samples after warm-up"); sys.exit(1)
rss0, rss1 = int(after[0][1]), int(after[-1][1])
rssmax = max(int(r[1]) for r in after)
gs = [int(r[2]) for r in after]; fds = [int(r[3]) for r in after]
growth = (rss1 - rss0) / rss0 * 100
ok = True
print("after warm-up (%d samples): RSS %d -> %d kB (%+.1f %%, peak %d), goroutines %d-%d, fds %d-%d"
      % (len(after), rss0, rss1, growth, rssmax, min(gs), max(gs), min(fds), max(fds)))
if len(after[0]) >= 10:
    print("  of which anonymous %d -> %d kB, file pages (the binary) %d -> %d kB; Go heap in use %d -> %d kB"
          % (int(after[0][8]), int(after[-1][8]), int(after[0][9]), int(after[-1][9]), int(after[0][7]), int(after[-1][7])))
if len(after[0]) >= 11:
    print("  freed heap not yet returned to the OS %d -> %d kB (range %d-%d)"
          % (int(after[0][10]), int(after[-1][10]), min(int(r[10]) for r in after), max(int(r[10]) for r in after)))
if growth > 5:
    print("FAIL: RSS grew more than 5 %"); ok = False
# Goroutines and fds: a leak is a trend, so the last third's median must
# not exceed the first third's (after warm-up); the spread allows the few
# short-lived goroutines of a scrape or an admin request in flight.
def third(v, i):
    n = max(1, len(v) // 3)
    part = sorted(v[:n] if i == 0 else v[-n:])
    return part[len(part) // 2]
for name, v in (("goroutines", gs), ("open fds", fds)):
    if third(v, 1) > third(v, 0) or max(v) - min(v) > 6:
        print("FAIL: %s not constant (first third median %d, last third median %d, range %d-%d)"
              % (name, third(v, 0), third(v, 1), min(v), max(v)))
        ok = False
# Latency: the small request's time (column http_s, one request every
# 0.5 s, the latest at each sample) must not drift: the last third's
# median within 1.5 x the first third's + 2 ms (one sample is one request,
# so single spikes of a loaded machine are left to the medians).
lat = [float(r[6]) for r in after if r[6] not in ("-", "fail")]
if len(lat) >= 3:
    n = len(lat) // 3
    l0, l1 = sorted(lat[:n])[n // 2], sorted(lat[-n:])[n // 2]
    print("HTTP request time: first third median %.1f ms, last third median %.1f ms, max %.1f ms"
          % (l0 * 1e3, l1 * 1e3, max(lat) * 1e3))
    if l1 > 1.5 * l0 + 0.002:
        print("FAIL: request time drifted up"); ok = False
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
EOF
