#!/usr/bin/env bash
# versus.sh [BIN] [SECONDS]: ../shared/bench/versus.sh with the conformance
# configuration (masquerade on wan, stateful forward policy): iperf3 TCP bulk
# and UDP 64-byte through the gateway and through the bare TUN copy loop in
# one run, and their ratio. Needs root and iperf3. SHARED=path/to/shared.
set -euo pipefail
BIN=$(readlink -f "${1:-bin/tungate}")
T=${2:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
SHARED=${SHARED:-$HERE/../../shared}
[ "$(id -u)" = 0 ] || { echo "versus.sh: needs root" >&2; exit 1; }
"$HERE/test-deps.sh"
WORK=$(mktemp -d /tmp/tungate-versus-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cat > "$WORK/gw.toml" <<TOML
[log]
level = "warn"

[admin]
socket = "$WORK/admin.sock"
metrics = ""

[[interface]]
name = "lan"
tun = "tglan"
addresses = ["10.10.0.1/24"]

[[interface]]
name = "wan"
tun = "tgwan"
addresses = ["198.18.0.1/24"]

[[route]]
to = "10.10.0.0/24"
interface = "lan"
[[route]]
to = "0.0.0.0/0"
interface = "wan"

[[nat.masquerade]]
out = "wan"

[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { ct_state = ["invalid"], action = "drop" },
  { in = "lan", ct_state = ["new"], action = "accept" },
]
TOML
bash "$SHARED/bench/versus.sh" "$BIN" "$WORK/gw.toml" "$T"
