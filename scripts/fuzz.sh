#!/bin/sh
# Runs every native Go fuzz target in the module, one after another, each for
# FUZZTIME. Targets are found by grepping for "func FuzzX(" in test files, so a
# new target is picked up without editing this script or the Makefile.
#
# usage: scripts/fuzz.sh [FUZZTIME] [PARALLEL] [LOGDIR]
#   FUZZTIME  go test -fuzztime value (30s, 5m, 1000000x); default 30s
#   PARALLEL  fuzzing workers per target; default: go's (GOMAXPROCS)
#   LOGDIR    when set, each target's output goes to LOGDIR/<pkg>.<Target>.log
#             as well as the terminal
# FUZZ_ONLY, when set, is an extended regexp a target's name must match.
set -eu
fuzztime=${1:-30s}
parallel=${2:-}
logdir=${3:-}
GO=${GO:-go}
cd "$(dirname "$0")/.."
[ -z "$logdir" ] || mkdir -p "$logdir"

# One "dir name" line per target, sorted so runs are comparable.
targets=$(grep -rE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(' . |
	sed -E 's|^\./(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*|\1 \2|' |
	sort)
[ -n "$targets" ] || { echo "no fuzz targets found" >&2; exit 1; }

failed=""
echo "$targets" | {
	while read -r dir name; do
		if [ -n "${FUZZ_ONLY:-}" ] && ! echo "$name" | grep -Eq "$FUZZ_ONLY"; then
			continue
		fi
		echo "=== $name ./$dir/ (fuzztime $fuzztime)"
		set -- test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime"
		[ -z "$parallel" ] || set -- "$@" -parallel "$parallel"
		set -- "$@" "./$dir/"
		if [ -n "$logdir" ]; then
			log="$logdir/$(echo "$dir" | tr / .).$name.log"
			if ! "$GO" "$@" 2>&1 | tee "$log"; then failed="$failed $name"; fi
			# tee hides go's status; the log's last lines say PASS or FAIL.
			tail -n 3 "$log" | grep -q '^ok' || failed="$failed $name"
		else
			"$GO" "$@" || failed="$failed $name"
		fi
	done
	if [ -n "$failed" ]; then
		echo "fuzz targets failed:$failed" >&2
		exit 1
	fi
}
