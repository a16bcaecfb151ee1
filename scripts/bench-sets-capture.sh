#!/usr/bin/env bash
# Before/after figures for runtime sets and capture, in one run: builds the
# rules and gateway test binaries of BASE (default: the commit before the
# runtime-set work) and of the working tree, then runs their benchmarks
# alternately, ROUNDS times, so both see the same machine load.
#
#   scripts/bench-sets-capture.sh [BASE] [ROUNDS]
#
# Compared: BenchmarkSet100k (a rule matching @set of 100,000 prefixes,
# whole Eval) and BenchmarkForwardBatch (64-segment batches through the
# worker's loop: read, pipeline, write), old vs new; new only:
# BenchmarkSetMatch (the set lookup, plain table vs live table) and
# BenchmarkCapture (no capture vs the input link captured).
set -euo pipefail
BASE=${1:-801717d}
ROUNDS=${2:-5}
GO=${GO:-go}
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/old"
git -C "$root" archive "$BASE" | tar -x -C "$tmp/old"
for pkg in rules gateway; do
  (cd "$tmp/old" && $GO test -c -o "$tmp/old.$pkg.test" ./$pkg)
  (cd "$root" && $GO test -c -o "$tmp/new.$pkg.test" ./$pkg)
done
echo "# base $BASE, new $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet || echo +dirty), load $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$ROUNDS"); do
  for v in old new; do
    (cd "$root/rules" && nice "$tmp/$v.rules.test" -test.run '^$' -test.bench 'Set100k/v4' -test.benchtime 500000x) \
      | grep '^Benchmark' | sed "s/^/$v /"
    (cd "$root/gateway" && nice "$tmp/$v.gateway.test" -test.run '^$' -test.bench 'ForwardBatch$' -test.benchtime 20000x) \
      | grep '^Benchmark' | sed "s/^/$v /"
  done
  (cd "$root/rules" && nice "$tmp/new.rules.test" -test.run '^$' -test.bench 'SetMatch' -test.benchtime 1000000x) \
    | grep '^Benchmark' | sed 's/^/new /'
  (cd "$root/gateway" && nice "$tmp/new.gateway.test" -test.run '^$' -test.bench 'Capture' -test.benchtime 20000x) \
    | grep '^Benchmark' | sed 's/^/new /'
done
