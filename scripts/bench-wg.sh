#!/bin/bash
# bench-wg.sh [seconds] [rounds]
#
# WireGuard VPN edge throughput, tungate against the kernel, in one run:
# a Debian wireguard-go peer in a client namespace sends iperf3 traffic
# (TCP one flow, UDP with 64-byte payloads) to a server on the WAN side
#
#   tungate:  client wg-go ==UDP==> tungate (wireguard interface, masquerade,
#             stateful rules) --TUN--> server
#   kernel:   client wg-go ==UDP==> Debian wireguard-go --TUN--> kernel
#             forwarding + nftables masquerade and stateful rules --veth--> server
#
# Both stacks are built once, in namespaces of their own with the same
# addresses and keys; the rounds alternate tungate and kernel so a busy
# machine disturbs both alike. tungate runs with TUNGATE_CPUPROFILE: the
# profile of its rounds is summarised at the end (go tool pprof -top).
# Needs root, wireguard-go, wg, iperf3, nft, python3; builds ./cmd/tungate
# unless TUNGATE_BIN is set.
set -eu
T=${1:-5}
ROUNDS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH=/usr/local/go/bin:$PATH
W=$(mktemp -d /tmp/bench-wg.XXXXXX)
chmod 755 "$W"
BIN=${TUNGATE_BIN:-$W/tungate}
[ -n "${TUNGATE_BIN:-}" ] || (cd "$ROOT" && go build -o "$BIN" ./cmd/tungate)
P=bw$(printf %04x $(($$ & 0xffff)))  # unique per run: namespaces, devices, UAPI sockets
NS="${P}tc ${P}tg ${P}ts ${P}kc ${P}kg ${P}ks"
TGPID=

down() {
	set +e
	[ -n "$TGPID" ] && kill "$TGPID" 2>/dev/null && wait "$TGPID" 2>/dev/null
	for n in $NS; do
		for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
		ip netns del "$n" 2>/dev/null
	done
	rm -f /var/run/wireguard/${P}*.sock
	[ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap down EXIT

for n in $NS; do ip netns add "$n"; ip -n "$n" link set lo up; done
umask 077
wg genkey >"$W/gw.key"; wg genkey >"$W/peer.key"
umask 022
GWPUB=$(wg pubkey <"$W/gw.key"); PEERPUB=$(wg pubkey <"$W/peer.key")

# client STACK: the peer's wireguard-go and its veth to the gateway namespace.
client() {
	local c=${P}${1}c g=${P}${1}g ifc=${P}${1}p
	ip -n "$g" link add va type veth peer name va netns "$c"
	ip -n "$g" addr add 192.0.2.1/24 dev va; ip -n "$g" link set va up
	ip -n "$c" addr add 192.0.2.2/24 dev va; ip -n "$c" link set va up
	WG_PROCESS_FOREGROUND=1 ip netns exec "$c" wireguard-go "$ifc" >"$W/$ifc.log" 2>&1 &
	for _ in $(seq 100); do wg show "$ifc" >/dev/null 2>&1 && break; sleep 0.1; done
	wg set "$ifc" private-key "$W/peer.key" peer "$GWPUB" endpoint 192.0.2.1:51820 allowed-ips 0.0.0.0/0
	ip -n "$c" addr add 10.20.0.2/32 dev "$ifc"
	ip -n "$c" link set "$ifc" mtu 1420 up
	ip -n "$c" route add default dev "$ifc"
}

# The tungate stack.
cat >"$W/gw.toml" <<EOF
[log]
level = "warn"

[admin]
socket = "$W/admin.sock"
metrics = ""

[[interface]]
name = "wan"
tun = "${P}w"
addresses = ["198.18.0.1/24"]

[[interface]]
name = "${P}v"
kind = "wireguard"
private_key_file = "$W/gw.key"
listen_port = 51820
addresses = ["10.20.0.1/24"]

[[interface.peer]]
name = "peer"
public_key = "$PEERPUB"
allowed_ips = ["10.20.0.2/32"]

[[route]]
to = "10.20.0.0/24"
interface = "${P}v"
[[route]]
to = "0.0.0.0/0"
interface = "wan"

[[nat.masquerade]]
out = "wan"
src = ["10.20.0.0/24"]

[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { ct_state = ["invalid"], action = "drop" },
  { in = "${P}v", ct_state = ["new"], action = "accept" },
]
EOF
TUNGATE_CPUPROFILE=$W/tungate.prof ip netns exec ${P}tg "$BIN" run -c "$W/gw.toml" >"$W/tungate.log" 2>&1 &
TGPID=$!
for _ in $(seq 100); do ip -n ${P}tg link show ${P}w >/dev/null 2>&1 && break; sleep 0.1; done
ip -n ${P}tg link set ${P}w netns ${P}ts
ip -n ${P}ts addr add 198.18.0.2/24 dev ${P}w; ip -n ${P}ts link set ${P}w up
client t

# The kernel stack: Debian wireguard-go's TUN, forwarding, nftables.
WG_PROCESS_FOREGROUND=1 ip netns exec ${P}kg wireguard-go ${P}k >"$W/wgk.log" 2>&1 &
for _ in $(seq 100); do wg show ${P}k >/dev/null 2>&1 && break; sleep 0.1; done
wg set ${P}k private-key "$W/gw.key" listen-port 51820 peer "$PEERPUB" allowed-ips 10.20.0.2/32
ip -n ${P}kg addr add 10.20.0.1/24 dev ${P}k; ip -n ${P}kg link set ${P}k mtu 1420 up
ip -n ${P}kg link add vw type veth peer name vw netns ${P}ks
ip -n ${P}kg addr add 198.18.0.1/24 dev vw; ip -n ${P}kg link set vw up
ip -n ${P}ks addr add 198.18.0.2/24 dev vw; ip -n ${P}ks link set vw up
ip netns exec ${P}kg sysctl -qw net.ipv4.ip_forward=1
ip netns exec ${P}kg nft -f - <<EOF
table inet edge {
	chain forward {
		type filter hook forward priority 0; policy drop;
		ct state established,related accept
		ct state invalid drop
		iifname "${P}k" ct state new accept
	}
	chain postrouting {
		type nat hook postrouting priority 100;
		oifname "vw" ip saddr 10.20.0.0/24 masquerade
	}
}
EOF
client k

for s in t k; do
	ok=
	for _ in $(seq 50); do
		ip netns exec ${P}${s}c ping -c1 -W1 198.18.0.2 >/dev/null 2>&1 && { ok=1; break; }
	done
	[ -n "$ok" ] || { echo "stack $s: no ping through the tunnel" >&2; exit 1; }
done

# measure STACK: TCP Gbit/s and UDP-64 received packets/s.
measure() {
	local c=${P}${1}c s=${P}${1}s
	ip netns exec "$s" iperf3 -s -D -1 -p 5201; sleep 0.3
	local tcp udp
	tcp=$(ip netns exec "$c" iperf3 -c 198.18.0.2 -p 5201 -t "$T" -J |
		python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9,3))')
	ip netns exec "$s" iperf3 -s -D -1 -p 5201; sleep 0.3
	udp=$(ip netns exec "$c" iperf3 -c 198.18.0.2 -p 5201 -u -b 0 -l 64 -t "$T" -J |
		python3 -c 'import json,sys; s=json.load(sys.stdin)["end"]["sum"]; print(int((s["packets"]-s["lost_packets"])/s["seconds"]))')
	echo "$tcp $udp"
}

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-6s %-8s %12s %14s\n" round stack tcp_gbit udp64_pps
TT= TU= KT= KU=
for r in $(seq "$ROUNDS"); do
	for s in t k; do
		read -r tcp udp < <(measure $s)
		name=tungate; [ $s = k ] && name=kernel
		printf "%-6s %-8s %12s %14s\n" "$r" "$name" "$tcp" "$udp"
		if [ $s = t ]; then TT="$TT $tcp"; TU="$TU $udp"; else KT="$KT $tcp"; KU="$KU $udp"; fi
	done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$TT" "$TU" "$KT" "$KU" <<'EOF'
import statistics, sys
tt, tu, kt, ku = ([float(x) for x in a.split()] for a in sys.argv[1:])
m = statistics.median
print("median tungate: tcp %.3f Gbit/s, udp64 %d pkt/s" % (m(tt), m(tu)))
print("median kernel : tcp %.3f Gbit/s, udp64 %d pkt/s" % (m(kt), m(ku)))
print("ratio tungate/kernel: tcp %.2fx, udp64 %.2fx" % (m(tt) / m(kt), m(tu) / m(ku)))
EOF

kill "$TGPID"; wait "$TGPID" 2>/dev/null || true; TGPID=
if [ -s "$W/tungate.prof" ]; then
	echo "--- tungate CPU profile (all rounds), top by cumulative time"
	go tool pprof -top -cum -nodecount=40 "$BIN" "$W/tungate.prof" 2>/dev/null | sed -n '1,50p'
	echo "--- top by flat time"
	go tool pprof -top -nodecount=25 "$BIN" "$W/tungate.prof" 2>/dev/null | sed -n '1,35p'
	if [ -n "${PROFILE_OUT:-}" ]; then cp "$W/tungate.prof" "$PROFILE_OUT"; fi
fi
