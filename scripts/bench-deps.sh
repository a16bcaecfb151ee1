#!/usr/bin/env bash
# Installs what scripts/bench-rootless.sh compares tungate with:
# slirp4netns and pasta (Debian's passt package), plus iperf3, socat and
# curl, when missing. Only root can install; for anyone else this says
# what is missing and does nothing.
set -u
PACKAGES="slirp4netns passt iperf3 socat curl python3 util-linux iproute2"
missing=()
for cmd in slirp4netns pasta iperf3 socat curl python3 unshare nsenter ip; do
  command -v $cmd >/dev/null 2>&1 || missing+=($cmd)
done
[ ${#missing[@]} = 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "bench-deps: missing ${missing[*]}; as root: apt-get install $PACKAGES" >&2
  exit 0
fi
echo "bench-deps: missing ${missing[*]}; installing $PACKAGES"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null || { echo "bench-deps: apt-get update failed" >&2; exit 1; }
apt-get install -y -q $PACKAGES >/dev/null || { echo "bench-deps: apt-get install $PACKAGES failed" >&2; exit 1; }
echo "bench-deps: installed"
