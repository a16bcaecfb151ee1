#!/usr/bin/env bash
# demo.sh [BIN]: tungate as a masquerading gateway between a client and a
# server network namespace. Shows HTTP (curl) and ping over IPv4 and IPv6
# through it, FTP through NAT, and its connection table. Needs root; every
# namespace, device and file it makes is removed on exit, failure included.
#
#   client ns                 tungate                  server ns
#   10.10.0.2, fd10::2  --  lan | wan  --  198.18.0.2, 2001:db8:1::2
#                    10.10.0.1  198.18.0.1 (masquerade)
set -euo pipefail
BIN=$(readlink -f "${1:-bin/tungate}")
HERE=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" = 0 ] || { echo "demo.sh: needs root (network namespaces, TUN devices)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "demo.sh: no gateway binary at $BIN (make build)" >&2; exit 1; }
"$HERE/test-deps.sh"

P=tgd$(printf %04x $(($$ & 0xffff)))    # unique per run, short enough for a device name
CNS=${P}c SNS=${P}s LAN=${P}l WAN=${P}w
WORK=$(mktemp -d /tmp/tungate-demo-XXXXXX)
chmod 755 "$WORK"
GWPID=

cleanup() {
  local rc=$?
  set +e
  if [ -n "$GWPID" ]; then kill "$GWPID" 2>/dev/null; wait "$GWPID" 2>/dev/null; fi
  for ns in $CNS $SNS; do
    for p in $(ip netns pids $ns 2>/dev/null); do kill $p 2>/dev/null; done
    ip netns del $ns 2>/dev/null
  done
  ip link del $LAN 2>/dev/null
  ip link del $WAN 2>/dev/null
  if [ $rc != 0 ]; then
    echo
    echo "demo FAILED (exit $rc); gateway log:"
    cat "$WORK/gw.log" 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n== %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
# wait_for SECONDS WHAT CMD...: poll CMD until it succeeds or time runs out.
wait_for() {
  local secs=$1 what=$2 i; shift 2
  for ((i = 0; i < secs * 20; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    if [ -n "$GWPID" ] && ! kill -0 "$GWPID" 2>/dev/null; then echo "gateway exited"; return 1; fi
    sleep 0.05
  done
  echo "timed out after ${secs}s waiting for $what"
  return 1
}

step "config: configs/masquerade.toml with this run's device names and socket"
sed -e "s|^tun = \"tglan\"|tun = \"$LAN\"|" -e "s|^tun = \"tgwan\"|tun = \"$WAN\"|" \
    -e "s|^socket = .*|socket = \"$WORK/admin.sock\"|" "$HERE/../configs/masquerade.toml" > "$WORK/gw.toml"
grep -q "tun = \"$LAN\"" "$WORK/gw.toml" && grep -q "tun = \"$WAN\"" "$WORK/gw.toml" &&
  grep -q "$WORK/admin.sock" "$WORK/gw.toml" || { echo "configs/masquerade.toml changed shape: fix demo.sh"; exit 1; }
cat "$WORK/gw.toml"
show "$BIN" check -c "$WORK/gw.toml"

step "namespaces $CNS (client) and $SNS (server); gateway with TUNs $LAN and $WAN"
for ns in $CNS $SNS; do ip netns add $ns; ip -n $ns link set lo up; done
"$BIN" run -c "$WORK/gw.toml" >"$WORK/gw.log" 2>&1 &
GWPID=$!
wait_for 10 "the gateway's TUN devices and admin socket" \
  sh -c "ip link show $LAN && ip link show $WAN && test -S $WORK/admin.sock"
echo "gateway pid $GWPID is up"
ip link set $LAN netns $CNS
ip link set $WAN netns $SNS
ip -n $CNS addr add 10.10.0.2/24 dev $LAN
ip -n $CNS -6 addr add fd10::2/64 dev $LAN nodad
ip -n $CNS link set $LAN up
ip -n $CNS route add default via 10.10.0.1 dev $LAN
ip -n $CNS -6 route add default via fd10::1 dev $LAN
ip -n $SNS addr add 198.18.0.2/24 dev $WAN
ip -n $SNS -6 addr add 2001:db8:1::2/64 dev $WAN nodad
ip -n $SNS link set $WAN up
echo "the server has no route back to 10.10.0.0/24: replies reach the client only through masquerade"

step "HTTP server in $SNS (scripts/peer-httpd.py: /peer answers the client address it sees)"
mkdir -p "$WORK/www"
echo "hello through tungate" > "$WORK/www/hello.txt"
ip netns exec $SNS python3 "$HERE/peer-httpd.py" 8080 "$WORK/www" "$WORK/http.ready" 2>"$WORK/http.log" &
wait_for 10 "the HTTP server" test -e "$WORK/http.ready"

C="ip netns exec $CNS"
step "curl and ping from the client, IPv4"
show $C curl -sS --max-time 10 http://198.18.0.2:8080/hello.txt
printf 'server saw the client as: '; $C curl -sS --max-time 10 http://198.18.0.2:8080/peer
show $C ping -c 3 -i 0.2 -W 2 198.18.0.2

step "curl and ping from the client, IPv6"
show $C curl -sS -g --max-time 10 'http://[2001:db8:1::2]:8080/hello.txt'
printf 'server saw the client as: '; $C curl -sS -g --max-time 10 'http://[2001:db8:1::2]:8080/peer'
show $C ping -c 3 -i 0.2 -W 2 2001:db8:1::2

step "ping the gateway itself"
show $C ping -c 2 -i 0.2 -W 2 10.10.0.1
show $C ping -c 2 -i 0.2 -W 2 fd10::1

# ---- FTP step ---------------------------------------------------------
# vsftpd in the server namespace; the FTP helper ([helpers.ftp]) rewrites
# PORT/EPRT to the masquerade address and lets the server's data connection
# in as RELATED, so active mode works through NAT; passive needs no help.
step "FTP through NAT (vsftpd in $SNS)"
mkdir -p "$WORK/ftp/pub" "$WORK/ftp/empty"
chmod 755 "$WORK/ftp" "$WORK/ftp/pub" "$WORK/ftp/empty"
head -c 1048576 /dev/urandom > "$WORK/ftp/pub/file.bin"
cat > "$WORK/ftp/vsftpd.conf" <<CONF
listen=YES
listen_address=198.18.0.2
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root=$WORK/ftp/pub
local_enable=NO
write_enable=NO
pasv_enable=YES
port_enable=YES
connect_from_port_20=NO
secure_chroot_dir=$WORK/ftp/empty
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
CONF
ip netns exec $SNS vsftpd "$WORK/ftp/vsftpd.conf" >"$WORK/ftp/vsftpd.log" 2>&1 &
wait_for 10 "vsftpd" sh -c "ip netns exec $SNS ss -Hltn 'sport = :21' | grep -q 198.18.0.2"
want=$(sha256sum <"$WORK/ftp/pub/file.bin")
for mode in "--ftp-pasv" "-P -"; do
  show $C curl -sS --max-time 20 $mode -o "$WORK/ftp/got" ftp://198.18.0.2/file.bin
  [ "$(sha256sum <"$WORK/ftp/got")" = "$want" ] || { echo "FTP download ($mode) corrupted"; exit 1; }
  echo "1 MiB downloaded intact ($mode)"
done
# ---- end of FTP step --------------------------------------------------

step "the gateway's connection table (conntrack -L format)"
show "$BIN" ct list --socket "$WORK/admin.sock"
show "$BIN" ct stats --socket "$WORK/admin.sock"

step "demo passed"
