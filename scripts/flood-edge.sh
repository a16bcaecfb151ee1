#!/bin/sh
# Floods at the edge (issue 14): what a flood arriving through the rootless
# uplink's port forwards or at and through a WireGuard interface costs the
# traffic that is not flooding, in one run. Root; runs the two end-to-end
# tests that build the topologies (e2e/edgeflood_test.go,
# e2e/wgflood_test.go) with longer iperf3 runs and prints their figures:
#
#   uplink: an established iperf3 flow through a port forward, alone, under
#     a connection flood (floodgen connect, 2 x 2,000 connections/s from one
#     client) at a reference listener that resets every connection (the
#     flood's own cost to the machine), and under the same flood at two
#     port forwards; the ratio forwards / reference; GET latency through a
#     forward from other clients (IPv4, IPv6) alone and under the flood;
#     the gateway's descriptors and RSS.
#   wireguard: a peer that is not flooding (bob): iperf3 and TCP connect
#     time through his tunnel alone, under garbage (20,000 datagrams/s) and
#     valid-mac1 handshake initiations (5,000/s) at the listen port, and
#     under another peer's SYN + UDP-flow flood through her tunnel; ratios.
#
# usage: sudo scripts/flood-edge.sh [SECONDS_PER_IPERF3_RUN]   (default 10)
set -eu
HERE=$(cd "$(dirname "$0")/.." && pwd)
SECS=${1:-10}
export PATH=$PATH:/usr/local/go/bin
cd "$HERE"
OUT=$(mktemp /tmp/tungate-flood-edge-XXXXXX)
trap 'rm -f "$OUT"' EXIT
echo "commit $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty'), load avg $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores, $SECS s per iperf3 run"
rc=0
EDGE_SECS=$SECS nice go test -count=1 -timeout 15m -run '^(TestUplinkForwardFlood|TestWireGuardFlood)$' -v ./e2e/ >"$OUT" 2>&1 || rc=$?
grep -o 'FIGURE .*' "$OUT" | sed 's/^FIGURE //'
if [ $rc -ne 0 ]; then
  grep -E '^(---|===|FAIL|ok)|_test.go' "$OUT" | grep -v FIGURE >&2
  echo "flood-edge: the tests failed (exit $rc)" >&2
  exit $rc
fi
echo "load avg after: $(cut -d' ' -f1-3 /proc/loadavg)"
