#!/usr/bin/env bash
# bench-rootless.sh: tungate's rootless uplink against slirp4netns and
# pasta, and against tungate's own root TUN-to-TUN gateway, with the same
# commands for every system in one run, systems alternated within each
# round (issue 12's numbers; results go to BENCHMARKS.md).
#
#   sudo scripts/bench-rootless.sh [ROUNDS]      (default 1 round)
#
# Run as root: the rootless systems run as nobody (setpriv) in a private
# mount namespace whose /dev/net/tun is 0666, as distributions ship it; the
# root gateway runs as root between two namespaces. Needs iperf3, socat,
# slirp4netns and pasta (scripts/bench-deps.sh installs them).
#
# Measured:
#   tcp_up_65520 / tcp_up_1500  container -> host TCP, one flow (iperf3 -t T),
#                               Gbit/s at the receiver, with the container's
#                               MTU 65520 and 1500
#   udp64                       container -> host UDP, 64-byte payloads:
#                               floodgen udpsend in the container (sendmmsg
#                               batches, BENCH_UDP_CONNS source ports, T
#                               seconds), floodgen udprecv on the host
#                               (recvmmsg); datagrams per second received
#                               (udp64_pps) and sent (udp64_sent_pps: below
#                               it, the system in between is the limit).
#                               Each round starts with system=direct: the
#                               same pair over the host's loopback, nothing
#                               in between (the generator's ceiling).
#                               iperf3 sends one datagram per system call
#                               and tops out near 60 k/s here, below every
#                               system; BENCH_UDP_IPERF3=1 adds its figure
#                               as udp64_iperf3_pps
#   fwd_tcp                     host -> container TCP through a port forward,
#                               at each MTU of BENCH_MTUS
#                               (tungate: [[nat.dnat]], source kept;
#                               slirp4netns: add_hostfwd on its API socket;
#                               pasta: -t), Gbit/s; and the CPU seconds the
#                               system in between (tungate's processes,
#                               slirp4netns, passt, the root gateway) used
#                               during it, and per gigabyte forwarded
#   rss_10k                     tungate only: RSS of the gateway process with
#                               10,000 idle TCP flows through the uplink (MB)
#   goroutines_udp              tungate only: goroutines with 0 and with
#                               1,000 UDP flows (from a SIGQUIT dump)
#
# At the end of the rounds, "# sum" and "# ratio" lines: per measure and
# MTU, each system's sum over the rounds every system has a figure for,
# and its ratio to slirp4netns (tungate's also to tungate_base), the sums'
# ratio first, then each round's; and fwd_tcp's CPU seconds per gigabyte
# over all rounds. The sums' ratio is the figure BENCHMARKS.md reports.
#
# A subset, for measuring one change (environment variables):
#   BENCH_CASES="fwd_tcp"       cases among tcp_up udp64 fwd_tcp budgets
#                               (default all)
#   BENCH_SYSTEMS="tungate slirp4netns"
#                               systems, in the order they alternate
#                               (default tungate slirp4netns pasta rootgw)
#   BENCH_MTUS="65520"          container MTUs (default 65520 1500)
#   BENCH_BASE=COMMIT           also build COMMIT as system tungate_base
#                               (the same uplink setup): old and new
#                               binaries alternated in one run
#   BENCH_UDP_CONNS=1           udp64: sender sockets (source ports), each
#                               its own endpoint socket in the uplink
#   BENCH_NOROTATE=1            run the systems in the order given in
#                               every round (by default each round starts
#                               one system later, see order)
#   BENCH_NSTAT=1               fwd_tcp: print the container's TCP
#                               counters after each run (to stderr)
#   BENCH_PROFILE=DIR           tungate writes a CPU profile of each run to
#                               DIR/SYSTEM-rROUND-mtuMTU.pprof
# e.g. BENCH_CASES=fwd_tcp BENCH_MTUS=65520 BENCH_BASE=1cdc590 \
#      BENCH_SYSTEMS="tungate_base tungate slirp4netns" scripts/bench-rootless.sh 4
set -u
ROUNDS=${1:-1}
T=${BENCH_SECONDS:-5}
CASES=${BENCH_CASES:-tcp_up udp64 fwd_tcp budgets}
MTUS=${BENCH_MTUS:-65520 1500}
has_case() { case " $CASES " in *" $1 "*) return 0 ;; esac; return 1; }
ROOT=${TUNGATE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
[ "$(id -u)" = 0 ] || { echo "bench-rootless: run as root (the rootless systems run as nobody)" >&2; exit 1; }
"$ROOT/scripts/bench-deps.sh" || exit 1
export PATH=/usr/local/go/bin:$PATH
W=$(mktemp -d /tmp/tg-bench-XXXXXX)
chmod 755 "$W"
mkdir -p "$W/dev" && chown nobody "$W" "$W/dev"
BIN=$W/tungate
(cd "$ROOT" && go build -o "$BIN" ./cmd/tungate) || exit 1
chmod 755 "$BIN"
# The udp64 generator and counter, the same binary for every system.
FG=$W/floodgen
(cd "$ROOT" && go build -o "$FG" ./scripts/floodgen) || exit 1
chmod 755 "$FG"
UDPCONNS=${BENCH_UDP_CONNS:-1}
BASEBIN=$W/tungate_base
if [ -n "${BENCH_BASE:-}" ]; then
	mkdir "$W/base" && (cd "$ROOT" && git archive "$BENCH_BASE") | tar -x -C "$W/base" || exit 1
	(cd "$W/base" && go build -o "$BASEBIN" ./cmd/tungate) || exit 1
	chmod 755 "$BASEBIN"
fi
if [ -n "${BENCH_PROFILE:-}" ]; then
	mkdir -p "$BENCH_PROFILE" && mkdir -p "$W/prof" && chown nobody "$W/prof"
fi
NS=tgb$$
HOSTIP=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
GWIP=$(ip -4 route show default | awk '{print $3; exit}')
# Ports of this run's own (a benchmark of someone else may use the usual ones).
FWD=$((20000 + $$ % 20000))
SINK=$((FWD + 1))
PIDS=()

cleanup() {
	stop_system
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	ip netns del ${NS}c 2>/dev/null
	ip netns del ${NS}s 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT

# The shim: a private mount namespace where /dev/net/tun is 0666, then
# nobody.
cat > "$W/shim.sh" <<'EOF'
set -e
mount -t tmpfs -o mode=755 tungate-dev "$1"
mknod -m 666 "$1/tun" c 10 200
mount --bind "$1/tun" /dev/net/tun
shift
exec setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"
EOF
asnobody() { unshare -m -- sh "$W/shim.sh" "$W/dev" "$@"; }
# nobody_exec: the same, replacing the calling (sub)shell, so that
# `(nobody_exec CMD) &` leaves $! the pid of CMD itself.
nobody_exec() { exec unshare -m -- sh "$W/shim.sh" "$W/dev" "$@"; }

# waitfile FILE SECONDS: wait for FILE to exist (non-empty).
waitfile() {
	local i
	for i in $(seq $(($2 * 20))); do { [ -s "$1" ] || [ -S "$1" ]; } && return 0; sleep 0.05; done
	echo "bench-rootless: $1 did not appear" >&2
	return 1
}

# The holder: a process in the container's namespaces whose pid lets
# every measurement enter them (nsenter) the same way for each system.
# pasta starts the command in a pid namespace of its own, so the holder
# is found by its unique command line, not by what $$ says inside.
MARK="99999.$$"
HOLDER="exec sleep $MARK"
# waitholder: write the holder's host pid to holder.pid.
waitholder() {
	local i p
	for i in $(seq 400); do
		p=$(pgrep -n -f "^sleep $MARK\$") && { echo "$p" > "$W/holder.pid"; return 0; }
		sleep 0.05
	done
	echo "bench-rootless: the holder did not start" >&2
	return 1
}

tungate_conf() { # MTU
	cat > "$W/tg.toml" <<EOF
[admin]
socket = "$W/tg.sock"
metrics = ""
[[interface]]
name = "lan"
addresses = ["10.0.2.1/24", "fd00::1/64"]
mtu = $1
[namespace]
interface = "lan"
addresses = ["10.0.2.100/24", "fd00::100/64"]
[[interface]]
name = "wan"
kind = "uplink"
mtu = 65520
allow_host_loopback = true
host_loopback = ["10.0.2.2", "fd00::2"]
[[route]]
to = "0.0.0.0/0"
interface = "wan"
[[nat.dnat]]
in = "wan"
proto = "tcp"
dport = $FWD
to = "10.0.2.100:5201"
[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { in = "lan", ct_state = ["new"], action = "accept" },
  { in = "wan", ct_status = ["dnat"], action = "accept" },
]
EOF
	chmod 644 "$W/tg.toml"
}

SYS=""
SYSPID=""
start_system() { # NAME MTU
	SYS=$1
	rm -f "$W/holder.pid" "$W/slirp.sock"
	case $1 in
	tungate | tungate_base)
		tungate_conf "$2"
		local bin=$BIN prof=""
		[ "$1" = tungate_base ] && bin=$BASEBIN
		[ -n "${BENCH_PROFILE:-}" ] && prof=$W/prof/$1-r${ROUND:-0}-mtu$2.pprof
		(TUNGATE_CPUPROFILE=$prof GOTRACEBACK=all nobody_exec "$bin" run -c "$W/tg.toml" -- sh -c "$HOLDER" >"$W/tungate.log" 2>&1) &
		SYSPID=$!
		TARGET=10.0.2.2
		;;
	slirp4netns)
		(nobody_exec unshare -rn -- sh -c "$HOLDER") &
		SYSPID=$!
		waitholder || return 1
		(nobody_exec slirp4netns --configure --mtu="$2" --api-socket "$W/slirp.sock" "$(cat "$W/holder.pid")" tap0 >"$W/slirp.log" 2>&1) &
		SLIRPPID=$!
		waitfile "$W/slirp.sock" 10 || return 1
		# slirp4netns's own port forwarding, through its API socket.
		echo '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0","host_port":'$FWD',"guest_port":5201}}' |
			socat - UNIX-CONNECT:"$W/slirp.sock" >/dev/null
		TARGET=10.0.2.2
		;;
	pasta)
		(nobody_exec pasta --config-net --mtu "$2" -t $FWD:5201 -u none -T none -U none -- sh -c "$HOLDER" >"$W/pasta.log" 2>&1) &
		SYSPID=$!
		TARGET=$GWIP # pasta maps its gateway address to the host's loopback
		;;
	rootgw)
		ip netns add ${NS}c && ip netns add ${NS}s
		cat > "$W/gw.toml" <<EOF
[admin]
socket = "$W/gw.sock"
metrics = ""
[[interface]]
name = "lan"
tun = "${NS}l"
addresses = ["10.10.0.1/24"]
mtu = $2
[[interface]]
name = "wan"
tun = "${NS}w"
addresses = ["198.18.0.1/24"]
mtu = $2
[[route]]
to = "0.0.0.0/0"
interface = "wan"
[[nat.masquerade]]
out = "wan"
src = ["10.10.0.0/24"]
[[nat.dnat]]
in = "wan"
proto = "tcp"
dport = $FWD
to = "10.10.0.2:5201"
[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { in = "lan", ct_state = ["new"], action = "accept" },
  { in = "wan", ct_status = ["dnat"], action = "accept" },
]
EOF
		(exec "$BIN" run -c "$W/gw.toml" >"$W/gw.log" 2>&1) &
		SYSPID=$!
		local i
		for i in $(seq 100); do ip link show ${NS}w >/dev/null 2>&1 && ip link show ${NS}l >/dev/null 2>&1 && break; sleep 0.05; done
		ip link set ${NS}l netns ${NS}c && ip link set ${NS}w netns ${NS}s
		ip -n ${NS}c addr add 10.10.0.2/24 dev ${NS}l && ip -n ${NS}c link set ${NS}l up && ip -n ${NS}c link set lo up
		ip -n ${NS}c route add default via 10.10.0.1
		ip -n ${NS}s addr add 198.18.0.2/24 dev ${NS}w && ip -n ${NS}s link set ${NS}w up && ip -n ${NS}s link set lo up
		TARGET=198.18.0.2
		return 0
		;;
	esac
	waitholder
}

stop_system() {
	[ -n "$SYS" ] || return 0
	# SIGKILL: in pasta's pid namespace the holder is init, which ignores
	# other signals it has no handler for.
	[ -s "$W/holder.pid" ] && kill -9 "$(cat "$W/holder.pid")" 2>/dev/null
	[ -n "${SLIRPPID:-}" ] && kill "$SLIRPPID" 2>/dev/null
	[ -n "$SYSPID" ] && kill "$SYSPID" 2>/dev/null
	[ -n "$SYSPID" ] && wait "$SYSPID" 2>/dev/null
	if [ -n "${BENCH_PROFILE:-}" ] && ls "$W/prof/"*.pprof >/dev/null 2>&1; then
		mv "$W/prof/"*.pprof "$BENCH_PROFILE/"
	fi
	if [ "$SYS" = rootgw ]; then
		ip netns del ${NS}c 2>/dev/null
		ip netns del ${NS}s 2>/dev/null
	fi
	SYS="" SYSPID="" SLIRPPID=""
}

# inside CMD...: run in the container, the same way for every system.
inside() {
	if [ "$SYS" = rootgw ]; then
		ip netns exec ${NS}c "$@"
	else
		asnobody nsenter -t "$(cat "$W/holder.pid")" -U -n --preserve-credentials -- "$@"
	fi
}
# inside_exec: inside, replacing the calling subshell (for `( ) &`).
inside_exec() {
	if [ "$SYS" = rootgw ]; then
		exec ip netns exec ${NS}c "$@"
	else
		nobody_exec nsenter -t "$(cat "$W/holder.pid")" -U -n --preserve-credentials -- "$@"
	fi
}
# server_exec CMD...: exec where the host-side server lives.
server_exec() {
	if [ "$SYS" = rootgw ]; then exec ip netns exec ${NS}s "$@"; else exec "$@"; fi
}
# server CMD...: run where the host-side server lives.
server() {
	if [ "$SYS" = rootgw ]; then ip netns exec ${NS}s "$@"; else "$@"; fi
}

# iperf3 JSON -> receiver Gbit/s, or datagrams/s received for UDP.
gbps() { python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.2f" % (d["end"]["sum_received"]["bits_per_second"]/1e9))' 2>/dev/null || echo fail; }
udp_pps() { python3 -c '
import json,sys
d=json.load(sys.stdin)["end"]["sum"]
print("%.0f" % ((d["packets"]-d["lost_packets"])/d["seconds"]))' 2>/dev/null || echo fail; }

tcp_up() { # -> Gbit/s, container -> host
	local bind=127.0.0.1
	[ "$SYS" = rootgw ] && bind=198.18.0.2
	(server_exec iperf3 -s -1 -B $bind -p $SINK >/dev/null 2>&1) &
	local sp=$!
	sleep 0.3
	inside iperf3 -c "$TARGET" -p $SINK -t "$T" -J 2>/dev/null | gbps
	kill $sp 2>/dev/null; wait $sp 2>/dev/null
}

# floodgen JSON -> its pps.
fg_pps() { python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["pps"])' 2>/dev/null || echo fail; }

# helper_pids: the processes of the system in between (what udp64's CPU
# figure charges): tungate's gateway and namespace helper, slirp4netns,
# pasta, the root gateway.
helper_pids() {
	case $SYS in
	tungate) pgrep -u nobody -f "$BIN run -c $W/tg.toml" ;;
	tungate_base) pgrep -u nobody -f "$BASEBIN run -c $W/tg.toml" ;;
	slirp4netns) echo "$SLIRPPID" ;;
	pasta) pgrep -u nobody "^passt" ;;
	rootgw) echo "$SYSPID" ;;
	esac
}
# cpu_ticks PID...: user+system clock ticks of the processes (all threads).
cpu_ticks() {
	local t=0 p
	for p in "$@"; do
		[ -r /proc/$p/stat ] && t=$((t + $(sed 's/.*) //' /proc/$p/stat | awk '{print $12 + $13}')))
	done
	echo $t
}

udp64() { # -> "RECEIVED udp64_sent_pps=SENT udp64_cpu_us_per_pkt=US" (datagrams/s)
	local bind=127.0.0.1 target=${TARGET:-}
	[ "$SYS" = rootgw ] && bind=198.18.0.2
	[ "$SYS" = direct ] && target=127.0.0.1
	rm -f "$W/udprecv.json"
	(server_exec "$FG" udprecv -listen $bind:$SINK -idle 2s -d $((T + 20))s >"$W/udprecv.json" 2>/dev/null) &
	local sp=$! sent pids t0 t1
	sleep 0.3
	pids=$(helper_pids)
	t0=$(cpu_ticks $pids)
	if [ "$SYS" = direct ]; then
		sent=$(asnobody "$FG" udpsend -dst $target:$SINK -size 64 -conns "$UDPCONNS" -d "${T}s" 2>/dev/null | fg_pps)
	else
		sent=$(inside "$FG" udpsend -dst $target:$SINK -size 64 -conns "$UDPCONNS" -d "${T}s" 2>/dev/null | fg_pps)
	fi
	t1=$(cpu_ticks $pids)
	wait $sp 2>/dev/null
	# The helper's CPU time per datagram received: what the system in
	# between costs, which the load of others changes less than its rate.
	python3 - "$W/udprecv.json" "$sent" $((t1 - t0)) "$(getconf CLK_TCK)" "$SYS" <<'EOF'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception:
    print("fail udp64_sent_pps=%s" % sys.argv[2]); sys.exit()
out = "%.0f udp64_sent_pps=%s" % (r["pps"], sys.argv[2])
if sys.argv[5] != "direct" and r["packets"] > 0:
    cpu = int(sys.argv[3]) / int(sys.argv[4])
    out += " udp64_helper_cpu_s=%.2f udp64_cpu_us_per_pkt=%.2f" % (cpu, cpu * 1e6 / r["packets"])
print(out)
EOF
}

udp64_iperf3() { # -> datagrams/s received, iperf3 as the generator
	local bind=127.0.0.1
	[ "$SYS" = rootgw ] && bind=198.18.0.2
	(server_exec iperf3 -s -1 -B $bind -p $SINK >/dev/null 2>&1) &
	local sp=$!
	sleep 0.3
	inside iperf3 -c "$TARGET" -p $SINK -u -l 64 -b 0 -t "$T" -J 2>/dev/null | udp_pps
	kill $sp 2>/dev/null; wait $sp 2>/dev/null
}

fwd_tcp() { # -> "GBPS fwd_tcp_cpu_s=S fwd_tcp_cpu_s_per_gb=C", host -> container through the port forward
	(inside_exec iperf3 -s -1 -p 5201 >/dev/null 2>&1) &
	local sp=$! i pids t0 t1 g
	# Until the server listens (a fixed pause lost runs on a loaded host).
	for i in $(seq 100); do
		inside ss -Hltn 'sport = :5201' 2>/dev/null | grep -q . && break
		sleep 0.05
	done
	pids=$(helper_pids)
	t0=$(cpu_ticks $pids)
	if [ "$SYS" = rootgw ]; then
		g=$(ip netns exec ${NS}s iperf3 -c 198.18.0.1 -p $FWD -t "$T" -J 2>/dev/null | gbps)
	else
		g=$(iperf3 -c "$HOSTIP" -p $FWD -t "$T" -J 2>/dev/null | gbps)
	fi
	t1=$(cpu_ticks $pids)
	kill $sp 2>/dev/null; wait $sp 2>/dev/null
	# BENCH_NSTAT=1: the container's TCP counters after the run (its
	# namespace is new for each system, so they count this run only):
	# what the receiver had to repair (duplicates, out of order) or
	# squeeze (collapsed, pruned). Printed to stderr.
	[ -n "${BENCH_NSTAT:-}" ] && echo "round=${ROUND:-0} system=$SYS nstat" $(inside nstat -asz TcpInSegs TcpExtTCPOFOQueue \
		TcpExtTCPDSACKOldSent TcpExtTCPRcvCollapsed TcpExtTCPRcvPruned TcpExtTCPRcvQDrop TcpExtTCPBacklogDrop 2>/dev/null |
		awk '!/^#/ {printf "%s=%s ", $1, $2}') >&2
	# The helper's CPU seconds per gigabyte forwarded: what the system in
	# between costs per byte, which the load of others changes less than
	# the rate (the rate is what the goal is about).
	python3 - "$g" $((t1 - t0)) "$(getconf CLK_TCK)" "$T" <<'EOF'
import sys
g, ticks, hz, t = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
cpu = ticks / hz
try:
    gb = float(g) * t / 8
except ValueError:
    gb = 0
out = "%s fwd_tcp_cpu_s=%.2f" % (g, cpu)
if gb > 0:
    out += " fwd_tcp_cpu_s_per_gb=%.3f" % (cpu / gb)
print(out)
EOF
}

rss_mb() { awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/"$1"/status; }

# The tungate gateway process (not the namespace helper): the one whose
# command line is "run -c".
tungate_pid() { pgrep -o -u nobody -f "$BIN run -c $W/tg.toml"; }

idle_10k() { # tungate only: RSS with 10,000 idle TCP flows through the uplink
	python3 - "$W/hold.port" <<'EOF' &
import socket, sys, resource, select
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(4096)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
held = []
while True:
    c, _ = s.accept(); held.append(c)
EOF
	local hp=$!
	waitfile "$W/hold.port" 10
	local gp; gp=$(tungate_pid)
	local before; before=$(rss_mb "$gp")
	(inside_exec python3 - "$(cat "$W/hold.port")" "$W/held.done") <<'EOF' &
import socket, sys, resource, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
conns = []
for i in range(10000):
    c = socket.create_connection(("10.0.2.2", int(sys.argv[1])), timeout=10)
    conns.append(c)
open(sys.argv[2], "w").write("ok")
time.sleep(100000)
EOF
	local cp=$!
	waitfile "$W/held.done" 300 || { kill $hp $cp; echo "fail"; return; }
	sleep 2 # let the stacks settle (RSS is read once)
	echo "$before $(rss_mb "$gp")"
	kill $cp $hp 2>/dev/null; wait $cp $hp 2>/dev/null
	rm -f "$W/hold.port" "$W/held.done"
}

goroutines_udp() { # tungate only: goroutine count (SIGQUIT dump) after N UDP flows
	local n=$1
	python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", int(sys.argv[1])))
import time; time.sleep(100000)' "$SINK" &
	local sink=$!
	sleep 0.3
	inside python3 -c '
import socket, sys, time
socks = []
for i in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x", ("10.0.2.2", int(sys.argv[2]))); socks.append(s)
time.sleep(2)' "$n" "$SINK"
	local gp; gp=$(tungate_pid)
	kill -QUIT "$gp"
	sleep 1
	kill $sink 2>/dev/null; wait $sink 2>/dev/null
	grep -cE '^goroutine [0-9]+ ' "$W/tungate.log"
}

# say LINE: print a result line and keep it for the summary.
say() { echo "$1"; echo "$1" >>"$W/results"; }

# summary: per measure and MTU, each system's sum over the rounds and its
# ratio to slirp4netns (and tungate's to tungate_base): the ratio of the
# sums is the figure reported, with the per-round ratios beside it.
summary() {
	[ -s "$W/results" ] || return 0
	python3 - "$W/results" "$T" <<'EOF'
import re, sys
T = float(sys.argv[2])
vals = {}   # (measure, mtu) -> system -> {round: value}
cpu = {}    # mtu -> system -> [cpu seconds summed, Gbit/s summed]
for line in open(sys.argv[1]):
    kv = dict(re.findall(r"(\w+)=(\S+)", line))
    if "system" not in kv:
        continue
    r, s, mtu = kv["round"], kv["system"], kv.get("mtu", "-")
    for k in ("tcp_up_gbps", "udp64_pps", "udp64_iperf3_pps", "fwd_tcp_gbps"):
        if k not in kv:
            continue
        try:
            v = float(kv[k])
        except ValueError:
            continue  # a failed run counts in no sum
        vals.setdefault((k, mtu), {}).setdefault(s, {})[r] = v
        if k == "fwd_tcp_gbps" and "fwd_tcp_cpu_s" in kv:
            c = cpu.setdefault(mtu, {}).setdefault(s, [0.0, 0.0])
            c[0] += float(kv["fwd_tcp_cpu_s"]); c[1] += v
for (k, mtu), bys in vals.items():
    # Only rounds every system has a figure for, so the sums compare.
    rounds = sorted(set.intersection(*(set(d) for d in bys.values())), key=int)
    sums = {s: sum(d[r] for r in rounds) for s, d in bys.items()}
    print("# sum %s mtu=%s rounds=%d: %s" % (k, mtu, len(rounds),
          " ".join("%s=%.2f" % (s, v) for s, v in sums.items())))
    for a, b in [(s, "slirp4netns") for s in bys if s != "slirp4netns"] + [("tungate", "tungate_base")]:
        if a in sums and b in sums and sums[b] > 0 and a != b:
            per = " ".join("%.2f" % (bys[a][r] / bys[b][r]) if bys[b][r] > 0 else "-" for r in rounds)
            print("# ratio %s mtu=%s %s/%s=%.2f (rounds: %s)" % (k, mtu, a, b, sums[a] / sums[b], per))
for mtu, bys in cpu.items():
    print("# fwd_tcp cpu_s_per_gb mtu=%s: %s" % (mtu, " ".join(
        "%s=%.3f" % (s, c[0] / (c[1] * T / 8)) for s, c in bys.items() if c[1] > 0)))
EOF
}

echo "# bench-rootless: $(date -u +%FT%TZ) commit $(cd "$ROOT" && git rev-parse --short HEAD) load $(cut -d' ' -f1-3 /proc/loadavg) T=${T}s rounds=$ROUNDS"
echo "# $(slirp4netns --version | head -1); pasta $(dpkg-query -W -f '${Version}' passt 2>/dev/null); $(iperf3 --version | head -1)"
SYSTEMS=${BENCH_SYSTEMS:-tungate slirp4netns pasta rootgw}
# order ROUND: the systems for a round, rotated by one each round (round 1
# in the order given), so no system always runs first or last in a round:
# a load that changes within rounds (another's build, a fuzzer's phases)
# then favours none of them.
order() {
	local a=($SYSTEMS) n i
	n=${#a[@]}
	if [ -n "${BENCH_NOROTATE:-}" ]; then echo "${a[@]}"; return; fi
	for i in $(seq 0 $((n - 1))); do echo -n "${a[$(((i + $1 - 1) % n))]} "; done
}
for r in $(seq "$ROUNDS"); do
	ROUND=$r
	if has_case udp64; then
		SYS=direct
		say "round=$r system=direct udp64_pps=$(udp64)"
		SYS=""
	fi
	for mtu in $MTUS; do
		for s in $(order "$r"); do
			if ! start_system $s $mtu; then say "round=$r $s mtu=$mtu: failed to start"; stop_system; continue; fi
			has_case tcp_up && say "round=$r system=$s mtu=$mtu tcp_up_gbps=$(tcp_up)"
			if [ $mtu = 65520 ]; then
				has_case udp64 && say "round=$r system=$s mtu=$mtu udp64_pps=$(udp64) conns=$UDPCONNS"
				has_case udp64 && [ -n "${BENCH_UDP_IPERF3:-}" ] && say "round=$r system=$s mtu=$mtu udp64_iperf3_pps=$(udp64_iperf3)"
			fi
			has_case fwd_tcp && say "round=$r system=$s mtu=$mtu fwd_tcp_gbps=$(fwd_tcp) load=$(cut -d' ' -f1 /proc/loadavg)"
			stop_system
		done
	done
done
summary
if ! has_case budgets; then
	echo "# done $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
	exit 0
fi
# tungate's own budgets.
start_system tungate 65520
echo "tungate rss_mb_before_after_10k_idle_tcp=$(idle_10k | tr ' ' '/')"
stop_system
start_system tungate 65520
g0=$(goroutines_udp 0)
stop_system
start_system tungate 65520
g1=$(goroutines_udp 1000)
stop_system
echo "tungate goroutines_0_udp_flows=$g0 goroutines_1000_udp_flows=$g1"
echo "# done $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
