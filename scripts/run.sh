#!/bin/sh
# make run: tungate in command mode on a rootless config, no root needed.
# On a terminal it starts a shell whose only network is tungate; otherwise
# (CI, a pipe) it runs a short demo inside and exits with its status.
#   scripts/run.sh BIN CONFIG
set -eu
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
cfg=$2
if [ -t 0 ]; then
	cat <<MSG
A shell in its own network namespace whose only network is tungate
(container 10.0.2.100 and fd00::100, gateway 10.0.2.1 and fd00::1; the
host's loopback is 10.0.2.2, its resolver 10.0.2.3). Try:
  ping -c1 10.0.2.1          curl http://10.0.2.2:PORT/  (a server on the host's 127.0.0.1)
  $bin ct list -c $cfg
Leave with exit.
MSG
	exec "$bin" run -c "$cfg" -- "${SHELL:-/bin/sh}"
fi
# The demo: a web server on the host's loopback, reached from inside
# through the uplink, then the connection table that saw it.
dir=$(mktemp -d)
trap 'kill $srv 2>/dev/null; rm -rf "$dir"' EXIT
echo "hello through tungate" >"$dir/index.html"
port=$((20000 + $$ % 10000))
python3 -m http.server --bind 127.0.0.1 --directory "$dir" "$port" >/dev/null 2>&1 &
srv=$!
"$bin" run -c "$cfg" -- sh -c '
	set -e
	i=0; until curl -s -o /dev/null "http://10.0.2.2:$2/" || [ $i -ge 20 ]; do i=$((i+1)); sleep 0.2; done
	echo "# ip -br addr";              ip -br addr
	echo "# ping -c1 10.0.2.1";         ping -c1 -W2 10.0.2.1 | sed -n 2p
	echo "# curl http://10.0.2.2:$2/";  curl -sS --max-time 10 "http://10.0.2.2:$2/"
	echo "# tungate ct list";           "$0" ct list -c "$1"
' "$bin" "$cfg" "$port"
