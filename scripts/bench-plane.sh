#!/bin/sh
# Forwarding benchmarks of two trees in one run, alternating, so a loaded
# machine hurts both alike: the reload plane (issue 11) against the commit
# before it. Usage: scripts/bench-plane.sh [BASE_COMMIT] [ROUNDS]
# Prints one line per benchmark and round, tagged base or head.
set -eu
base=${1:-801717d}
rounds=${2:-3}
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git -C "$root" archive "$base" | tar -x -C "$tmp"
export PATH=/usr/local/go/bin:$PATH
bench='^(BenchmarkForward|BenchmarkForwardNAT|BenchmarkForwardBatch)$'
( cd "$tmp" && go test -c -o "$tmp/base.test" ./gateway/ )
( cd "$root" && go test -c -o "$tmp/head.test" ./gateway/ )
i=0
while [ "$i" -lt "$rounds" ]; do
	for tree in base head; do
		( cd "$root/gateway" && nice "$tmp/$tree.test" -test.run '^$' -test.bench "$bench" -test.benchtime 2s -test.benchmem ) |
			grep '^Benchmark' | sed "s/^/$tree /"
	done
	i=$((i + 1))
done
