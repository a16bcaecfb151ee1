#!/usr/bin/env bash
# Installs what the end-to-end tests, the conformance sample and the demo
# drive (ip, ping, curl, scapy, nft, conntrack, iperf3, vsftpd, setpriv,
# nsenter, ss, useradd, the reference WireGuard peer wireguard-go and wg,
# hping3 for floods, tcpdump to read captures, ...) when any of it is missing. Only root can install, and
# only root runs those tests, so for anyone else this does nothing.
# The container tests (e2e/container_test.go) run rootless podman and
# rootlesskit: podman with runc (crun refuses this host's hybrid cgroups),
# uidmap's newuidmap/newgidmap, and a static busybox as the container's
# root filesystem (podman run --rootfs: no registry). Those come without
# their recommends (buildah, fuse-overlayfs, slirp4netns, ...), which
# the tests do not use.
set -u
[ "$(id -u)" = 0 ] || exit 0
PACKAGES="tcpdump iproute2 iputils-ping curl python3-scapy nftables conntrack iperf3 vsftpd util-linux procps passwd wireguard-go wireguard-tools hping3"
missing=()
for cmd in tcpdump ip ss ping curl nft conntrack iperf3 vsftpd setpriv unshare nsenter ps sysctl useradd wireguard-go wg hping3; do
  command -v $cmd >/dev/null 2>&1 || missing+=($cmd)
done
/usr/bin/python3 -c 'import scapy' >/dev/null 2>&1 || missing+=(scapy)
CONTAINER_PACKAGES="podman runc rootlesskit uidmap busybox-static"
cmissing=()
for cmd in podman runc rootlesskit rootlessctl newuidmap newgidmap; do
  command -v $cmd >/dev/null 2>&1 || cmissing+=($cmd)
done
# The package busybox (dynamic) provides /bin/busybox too; a rootfs needs the static one.
dpkg-query -W -f '${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || cmissing+=(busybox-static)
[ ${#missing[@]} = 0 ] && [ ${#cmissing[@]} = 0 ] && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null || { echo "test-deps: apt-get update failed" >&2; exit 1; }
if [ ${#missing[@]} != 0 ]; then
  echo "test-deps: missing ${missing[*]}; installing $PACKAGES"
  apt-get install -y -q $PACKAGES >/dev/null || { echo "test-deps: apt-get install $PACKAGES failed" >&2; exit 1; }
fi
if [ ${#cmissing[@]} != 0 ]; then
  echo "test-deps: missing ${cmissing[*]}; installing $CONTAINER_PACKAGES"
  apt-get install -y -q --no-install-recommends $CONTAINER_PACKAGES >/dev/null ||
    { echo "test-deps: apt-get install $CONTAINER_PACKAGES failed" >&2; exit 1; }
fi
echo "test-deps: installed"
