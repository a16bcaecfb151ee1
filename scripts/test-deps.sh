#!/usr/bin/env bash
# Installs what the end-to-end tests, the conformance sample and the demo
# drive (ip, ping, curl, scapy, nft, conntrack, iperf3, vsftpd, setpriv,
# nsenter, ss, useradd, the reference WireGuard peer wireguard-go and wg,
# hping3 for floods, tcpdump to read captures, ...) when any of it is missing. Only root can install, and
# only root runs those tests, so for anyone else this does nothing.
set -u
[ "$(id -u)" = 0 ] || exit 0
PACKAGES="tcpdump iproute2 iputils-ping curl python3-scapy nftables conntrack iperf3 vsftpd util-linux procps passwd wireguard-go wireguard-tools hping3"
missing=()
for cmd in tcpdump ip ss ping curl nft conntrack iperf3 vsftpd setpriv unshare nsenter ps sysctl useradd wireguard-go wg hping3; do
  command -v $cmd >/dev/null 2>&1 || missing+=($cmd)
done
/usr/bin/python3 -c 'import scapy' >/dev/null 2>&1 || missing+=(scapy)
[ ${#missing[@]} = 0 ] && exit 0
echo "test-deps: missing ${missing[*]}; installing $PACKAGES"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null || { echo "test-deps: apt-get update failed" >&2; exit 1; }
apt-get install -y -q $PACKAGES >/dev/null || { echo "test-deps: apt-get install $PACKAGES failed" >&2; exit 1; }
echo "test-deps: installed"
