#!/bin/sh
# Memory per NATed entry (issue 14) against a base commit, in one run:
# the conntrack and NAT per-packet and new-connection benchmarks of both
# trees alternating (ROUNDS rounds, output in benchstat's format per tree),
# then BenchmarkRSSPerNATFlow of each (a million masqueraded UDP flows,
# RSS and live heap per flow). Usage: scripts/bench-mem.sh [BASE] [ROUNDS]
# Writes $OUT/base.txt and $OUT/head.txt (OUT defaults to a temp dir,
# printed at the end); compare with
# go run golang.org/x/perf/cmd/benchstat@latest base.txt head.txt
set -eu
base=${1:-3dd9da5}
rounds=${2:-5}
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
out=${OUT:-$tmp/out}
mkdir -p "$out" "$tmp/src"
git -C "$root" archive "$base" | tar -x -C "$tmp/src"
export PATH=/usr/local/go/bin:$PATH
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
	for tree in base head; do
		( cd "$root/conntrack" && nice "$tmp/$tree.conntrack.test" -test.run '^$' \
			-test.bench '^Benchmark(EstablishedUDP|NewConn)$' -test.benchmem ) | grep '^Benchmark' >>"$out/$tree.txt"
		( cd "$root/nat" && nice "$tmp/$tree.nat.test" -test.run '^$' \
			-test.bench '^Benchmark(NATEstablished4|NATNewConn)$' -test.benchmem ) | grep '^Benchmark' >>"$out/$tree.txt"
	done
	i=$((i + 1))
done
for tree in base head; do
	echo "$tree RSSPerNATFlow:"
	( cd "$root/gateway" && nice "$tmp/$tree.gateway.test" -test.run '^$' -test.bench '^BenchmarkRSSPerNATFlow$' -test.benchtime 1x ) | grep '^Benchmark'
done
echo "results in $out"
