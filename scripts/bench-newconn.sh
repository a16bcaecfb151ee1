#!/bin/sh
# The cost of a new connection (issue 14) against a base commit, in one
# run: conntrack's NewConn and EarlyDrop, NAT's NATNewConn and
# NATEstablished4 (the per-packet path, for no regression), and the
# gateway's ForwardNewFlows (one-packet UDP flows through masquerade + the
# stateful rules into a full table: what scripts/bench-newflows.sh
# measures, without the TUNs), ForwardNewFlowsBatch (the same in batches
# of 64 through the worker's loop) and ForwardBatch, of both trees
# alternating
# ROUNDS times, then benchstat of the two. Usage:
#   scripts/bench-newconn.sh [BASE] [ROUNDS]
# Writes $OUT/base.txt and $OUT/head.txt (OUT defaults to a temp dir).
# Run it niced on a loaded machine; the benchmarks report cpu-ns/op (the
# process's CPU time per op) beside the wall-clock ns/op, which is what
# to compare when other work shares the cores.
set -eu
base=${1:-c155b58}
rounds=${2:-6}
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
out=${OUT:-$tmp/out}
mkdir -p "$out" "$tmp/src"
git -C "$root" archive "$base" | tar -x -C "$tmp/src"
export PATH=/usr/local/go/bin:$PATH
echo "bench-newconn: base $base, head $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- . || echo ' (with changes)'), $rounds rounds, load avg $(cut -d' ' -f1-3 /proc/loadavg)"
for tree in base head; do
	dir=$root
	[ "$tree" = base ] && dir=$tmp/src
	for pkg in conntrack nat gateway; do
		( cd "$dir" && go test -c -o "$tmp/$tree.$pkg.test" "./$pkg/" )
	done
done
: >"$out/base.txt"
: >"$out/head.txt"
i=0
while [ "$i" -lt "$rounds" ]; do
	# Alternate which tree goes first.
	order="base head"
	[ $((i % 2)) = 1 ] && order="head base"
	for tree in $order; do
		( cd "$root/conntrack" && nice "$tmp/$tree.conntrack.test" -test.run '^$' \
			-test.bench '^Benchmark(NewConn|EarlyDrop)$' -test.benchmem ) | grep '^Benchmark' >>"$out/$tree.txt"
		( cd "$root/nat" && nice "$tmp/$tree.nat.test" -test.run '^$' \
			-test.bench '^Benchmark(NATEstablished4|NATNewConn)$' -test.benchmem ) | grep '^Benchmark' >>"$out/$tree.txt"
		( cd "$root/gateway" && nice "$tmp/$tree.gateway.test" -test.run '^$' \
			-test.bench '^Benchmark(ForwardNewFlows|ForwardNewFlowsBatch|ForwardBatch)$' -test.benchtime 200000x -test.benchmem ) | grep '^Benchmark' >>"$out/$tree.txt"
	done
	i=$((i + 1))
done
echo "load avg now $(cut -d' ' -f1-3 /proc/loadavg); results in $out"
( cd "$root" && go run golang.org/x/perf/cmd/benchstat@latest "$out/base.txt" "$out/head.txt" ) || true
