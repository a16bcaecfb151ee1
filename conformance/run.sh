#!/bin/bash
# Differential conformance suite: tungate against Linux netfilter, black box,
# real packets. Adapted from ../shared/conformance/run.sh (same namespace
# layout, same addresses, same probe), extended with groups of cases that
# each run against their own configuration.
#
#   run.sh kernel         Linux netfilter as the reference (veth + nftables),
#                         in a router namespace ${H}r
#   run.sh gateway BIN    BIN run -c gw.toml inside a namespace ${H}g of its
#                         own; the TUNs tglan and tgwan it creates are moved
#                         into the client and server namespaces; ct list via
#                         BIN ct list --socket SOCK
#
# Every group starts from fresh namespaces (and a fresh gateway), so one
# group's connection table never leaks into the next.
#
# Env: SUITE_GROUPS="base dnat" runs some groups; CASES="T01 U04" runs some cases
# (their groups only); CT_VERBOSE=1 explains failures; GW_LOG=debug sets the
# gateway's log level (default info); CONFIG_EXTRA is TOML appended to every
# gateway config; KERNEL_EXTRA_NFT is nft text loaded after the kernel
# ruleset; H names the namespaces (default cm$$, so parallel runs and other
# test suites on the machine do not collide); WORKDIR keeps configs and logs
# (default /tmp/conformance-$H; kept after the run). Needs root,
# python3-scapy, nftables, conntrack (kernel mode). Exit 0 only if every case
# passed.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
H_DEFAULT=cm$$
. "$HERE/lib.sh"   # arguments, namespaces, kernel and gateway setup, the group loop

# ---------------------------------------------------------------- groups
# group_conf G sets, for group G:
#   WAN_MTU      MTU of the wan link (gateway [[interface]] mtu, kernel link)
#   LAN_MTU      MTU of the lan link
#   GW_NAT       the gateway's [nat] part (masquerade by default)
#   GW_FWD       extra gateway forward rules, before "lan new accept"
#   GW_EXTRA     extra gateway TOML (conntrack settings, ...)
#   K_PRE        kernel nat prerouting chain body
#   K_FWD        extra kernel forward rules, before "lan new accept"
#   K_POST       kernel nat postrouting chain body
#   K_SYSCTL     kernel sysctls for the router namespace
group_conf() {
  WAN_MTU=1500
  LAN_MTU=1500
  GW_NAT='[[nat.masquerade]]
out = "wan"'
  GW_FWD=''
  GW_EXTRA=''
  K_PRE=''
  K_FWD=''
  K_POST='oifname "wan" masquerade'
  K_SYSCTL=''
  case $1 in
  base) ;;
  mtu)     # a narrower WAN link: fragmentation needed / packet too big
    WAN_MTU=1400 ;;
  mtulan)  # a narrower LAN link: ICMP errors about replies, NAT undone
    LAN_MTU=1280 ;;
  dnat)    # port forwards from the WAN to the client
    GW_NAT='[[nat.masquerade]]
out = "wan"

[[nat.dnat]]
in = "wan"
proto = "tcp"
dst = "198.18.0.1"
dport = 8080
to = "10.10.0.2:80"

[[nat.dnat]]
in = "wan"
proto = "udp"
dst = "198.18.0.1"
dport = 5353
to = "10.10.0.2"

[[nat.dnat]]
in = "wan"
proto = "tcp"
dst = "2001:db8:1::1"
dport = 8080
to = "[fd10::2]:80"'
    GW_FWD='{ in = "wan", ct_status = ["dnat"], action = "accept" },'
    K_PRE='iifname "wan" ip daddr 198.18.0.1 tcp dport 8080 dnat ip to 10.10.0.2:80
    iifname "wan" ip daddr 198.18.0.1 udp dport 5353 dnat ip to 10.10.0.2
    iifname "wan" ip6 daddr 2001:db8:1::1 tcp dport 8080 dnat ip6 to [fd10::2]:80'
    K_FWD='iifname "wan" ct status dnat accept' ;;
  snat)    # source NAT to a fixed address instead of masquerade
    GW_NAT='[[nat.snat]]
out = "wan"
to = "198.18.0.10"'
    K_POST='oifname "wan" ip version 4 snat ip to 198.18.0.10' ;;
  loose0)  # no pick-up of connections in progress
    GW_EXTRA='[conntrack]
tcp_loose = false'
    K_SYSCTL='net.netfilter.nf_conntrack_tcp_loose=0' ;;
  liberal) # no TCP window checks
    GW_EXTRA='[conntrack]
tcp_liberal = true'
    K_SYSCTL='net.netfilter.nf_conntrack_tcp_be_liberal=1' ;;
  timeouts) # short timeouts, to watch entries expire
    GW_EXTRA='[conntrack.timeouts]
udp = "3s"
udp_dns = "3s"
udp_stream = "3s"
icmp = "3s"
icmpv6 = "3s"
tcp_syn_sent = "3s"
tcp_time_wait = "3s"'
    K_SYSCTL='net.netfilter.nf_conntrack_udp_timeout=3 net.netfilter.nf_conntrack_udp_timeout_stream=3
      net.netfilter.nf_conntrack_icmp_timeout=3 net.netfilter.nf_conntrack_icmpv6_timeout=3
      net.netfilter.nf_conntrack_tcp_timeout_syn_sent=3 net.netfilter.nf_conntrack_tcp_timeout_time_wait=3' ;;
  reject)  # reject rules: TCP reset and ICMP port unreachable
    GW_FWD='{ dst = ["198.18.0.3"], proto = "tcp", action = "reject", reject_with = "tcp-reset" },
  { dst = ["198.18.0.3"], action = "reject", reject_with = "icmp-port-unreachable" },
  { dst = ["2001:db8:1::3"], action = "reject", reject_with = "icmpv6-admin-prohibited" },
  { dst = ["198.18.0.4", "2001:db8:1::4"], action = "reject" },
  { dst = ["198.18.0.5"], proto = "tcp", action = "reject" },'
    K_FWD='ip daddr 198.18.0.3 meta l4proto tcp reject with tcp reset
    ip daddr 198.18.0.3 reject with icmp type port-unreachable
    ip6 daddr 2001:db8:1::3 reject with icmpv6 type admin-prohibited
    ip daddr 198.18.0.4 reject
    ip6 daddr 2001:db8:1::4 reject
    ip daddr 198.18.0.5 meta l4proto tcp reject' ;;
  *) echo "unknown group $1" >&2; return 1 ;;
  esac
}

# ---------------------------------------------------------------- setups
kernel_ruleset() {   # the router's ruleset for the current group
  cat <<NFT
table inet gw {
  chain nat_pre {
    type nat hook prerouting priority -100;
    $K_PRE
  }
  chain filter_fwd {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    ct state invalid drop
    $K_FWD
    iifname "lan" ct state new accept
  }
  chain nat_post {
    type nat hook postrouting priority 100;
    $K_POST
  }
}
NFT
}

kernel_extra() {   # the sysctls exist once nf_conntrack is loaded in the namespace
  [ -n "$K_SYSCTL" ] && { ip netns exec $RNS sysctl -qw $K_SYSCTL || return 1; }
  if [ -n "${KERNEL_EXTRA_NFT:-}" ]; then
    echo "$KERNEL_EXTRA_NFT" | ip netns exec $RNS nft -f - || return 1
  fi
  return 0
}

gw_config() {   # writes $WORKDIR/gw-$1.toml for group $1
  { gw_base_toml; cat <<TOML

$GW_NAT

[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { ct_state = ["invalid"], action = "drop" },
  $GW_FWD
  { in = "lan", ct_state = ["new"], action = "accept" },
]

$GW_EXTRA

${CONFIG_EXTRA:-}
TOML
  } > $WORKDIR/gw-$1.toml
}

gateway_extra() { :; }

group_dump() {   # the final table, for explaining failures
  if [ "$MODE" = gateway ]; then
    timeout 5 "$BIN" ct list --socket $WORKDIR/admin.sock > $WORKDIR/ct-$1.txt 2>&1
  else
    ip netns exec $RNS conntrack -L > $WORKDIR/ct-$1.txt 2>/dev/null
  fi
}

# ---------------------------------------------------------------- main
run_suite "$HERE/cases_more.py"
