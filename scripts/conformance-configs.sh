#!/bin/bash
# Writes the gateway config of every conformance group (conformance/run.sh
# and conformance/ftp/run.sh) into OUTDIR as <suite>-<group>.toml, without
# namespaces or root: the config fuzzer's seed corpus
# (gateway/testdata/conformance/) is regenerated with
#   scripts/conformance-configs.sh gateway/testdata/conformance
set -eu
out=${1:?usage: $0 OUTDIR}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
for suite in run ftp/run; do
	f=$root/conformance/$suite.sh
	name=$(dirname "$suite" | sed 's/^\.$/main/')
	# Only the functions that make the config; sourcing the scripts would
	# run the suite.
	eval "$(sed -n '/^gw_base_toml()/,/^}/p' "$root/conformance/lib.sh")"
	eval "$(sed -n '/^group_conf()/,/^}/p; /^gw_config()/,/^}/p' "$f")"
	groups=$(sed -n '/^group_conf()/,/^}/p' "$f" | sed -nE 's/^  ([a-z0-9]+)\).*/\1/p')
	for g in $groups; do
		unset LAN_MTU WAN_MTU
		WORKDIR=/run/tungate-conformance
		group_conf "$g"
		WORKDIR=$out gw_config "$g"
		# gw_config names the file after the group only.
		sed -i "s|$out/admin.sock|/run/tungate-conformance/admin.sock|" "$out/gw-$g.toml"
		mv "$out/gw-$g.toml" "$out/$name-$g.toml"
	done
done
