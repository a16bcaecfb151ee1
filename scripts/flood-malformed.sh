#!/bin/bash
# scripts/flood-malformed.sh [SECONDS] — malformed packet storm, issue 14 (root).
#
# floodgen writes every class of malformed packet (31 classes, IPv4 and
# IPv6: what the decoder rejects, martian sources, bad IPv4 options, bad
# transport checksums) round-robin onto the LAN TUN as fast as it can for
# SECONDS (default 5), into tungate (masquerade, stateful policy). Reports
# what the gateway read, what it forwarded (must be 0) and what reached the
# WAN side's device (must be 0), its drops by reason, and its CPU time per
# packet; then the same for as many valid one-packet UDP flows (the cost
# of a packet the gateway does work on) for comparison.
set -u
HERE=$(cd $(dirname $0)/.. && pwd)
T=${1:-5}
ID=fm$$
. $HERE/scripts/flood-lib.sh
trap fl_cleanup EXIT
fl_build
fl_gw_config "max = 32768"
fl_up_gw
echo "flood-malformed: $T s, load avg $(fl_load), commit $(cd $HERE && git rev-parse --short HEAD)"

# run MODE ARGS...: one storm; prints its figures.
run() {
  local mode=$1; shift
  fl_ctl stats -o json >$FL_DIR/s0.json
  local cpu0=$(fl_cpu) wan0=$(fl_rx $FL_S $FL_W)
  ip netns exec $FL_C $FL_DIR/floodgen $mode -i $FL_L -d ${T}s "$@" >$FL_DIR/gen.json
  # wait until the gateway has read what reached it
  local last=-1 now
  for i in $(seq 50); do
    now=$(fl_ctl stats -o json | fl_py 'import json,sys; print(json.load(sys.stdin)["received"])')
    [ "$now" = "$last" ] && break
    last=$now; sleep 0.2
  done
  local cpu1=$(fl_cpu) wan1=$(fl_rx $FL_S $FL_W)
  fl_ctl stats -o json >$FL_DIR/s1.json
  fl_py "
import json
g = json.load(open('$FL_DIR/gen.json'))
a, b = json.load(open('$FL_DIR/s0.json')), json.load(open('$FL_DIR/s1.json'))
d = {k: b[k] - a.get(k, 0) for k in b}
rec = d['received']
cpu = ($cpu1 - $cpu0) / 100.0
drops = {k[5:]: v for k, v in d.items() if k.startswith('drop_') and v}
print('$mode: sent %d (%.0f/s, %d classes), gateway read %d, forwarded %d, WAN side received %d' % (
    g['sent'], g['pps'], len(g.get('classes') or {}), rec, d['forwarded'], $wan1 - $wan0))
print('  drops by reason: %s' % drops)
print('  gateway CPU %.2f s = %.0f ns per packet read' % (cpu, cpu * 1e9 / rec if rec else 0))"
}
run malformed
run udpflows -src 10.10.0.0/16 -dst 198.18.0.2 -dport 10000 -dports 1000
echo "load avg now $(fl_load)"
