#!/bin/sh
# Reload of 10,000 rules while forwarding a fixed rate (issue 11): runs
# gateway's TestReload10kRulesNoLoss at half the measured maximum with a
# TUN-sized input queue and with a deep one, ROUNDS times each, and prints
# its measurement lines. Usage: scripts/reload-rate.sh [ROUNDS]
# The end-to-end method (kernel TUNs, paced sender outside the gateway's
# process, steady phase first) is scripts/reload-rate-tun.sh.
set -u
rounds=${1:-3}
export PATH=/usr/local/go/bin:$PATH
cd "$(git rev-parse --show-toplevel)"
go test -c -o /tmp/reload-rate.test ./gateway/ || exit 1
i=0
while [ "$i" -lt "$rounds" ]; do
	for q in 1024 32768; do
		( cd gateway && TUNGATE_RELOAD_QUEUE=$q TUNGATE_RELOAD_RATE_FRACTION=${FRACTION:-0.5} \
			nice /tmp/reload-rate.test -test.run '^TestReload10kRulesNoLoss$' -test.v ) | grep -E 'reload_rate_test.go|^(ok|FAIL|PASS)'
	done
	i=$((i + 1))
done
