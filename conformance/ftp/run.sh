#!/bin/bash
# Differential conformance cases for the FTP and TFTP helpers: tungate
# against Linux netfilter (nf_conntrack_ftp + nf_nat_ftp, nf_conntrack_tftp +
# nf_nat_tftp), black box, real packets. Same topology and addresses as
# ../run.sh, whose setup (../lib.sh) this shares, and the shared sample.
#
#   run.sh kernel         Linux netfilter as the reference (veth + nftables,
#                         "ct helper" objects assigned by port in prerouting)
#                         in a router namespace ${H}r
#   run.sh gateway BIN    BIN run -c gw.toml inside a namespace ${H}g of its
#                         own ([helpers.ftp] ports = [21], [helpers.tftp]);
#                         ct list / ct expect via the admin socket
#
# Every group starts from fresh namespaces (and a fresh gateway).
#
# Env: SUITE_GROUPS="ftp strict" runs some groups; CASES="F01 F05" runs some
# cases (their groups only); CT_VERBOSE=1 prints the ct tables on failures;
# GW_LOG=debug sets the gateway's log level (default info); H names the
# namespaces (default cf$$); WORKDIR keeps configs, logs and the final ct /
# expect tables per group (default /tmp/conformance-$H). Needs root,
# python3-scapy, nftables, conntrack (kernel mode). Exit 0 only if every case
# passed.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
H_DEFAULT=cf$$
. "$HERE/../lib.sh"   # arguments, namespaces, kernel and gateway setup, the group loop

# ---------------------------------------------------------------- groups
# group_conf G sets, for group G:
#   GW_NAT      the gateway's [nat] part (masquerade by default)
#   GW_PRE      gateway forward rules before the accepts (helper statements)
#   GW_NEW      the gateway's "new from lan" rule(s)
#   GW_HELPERS  the gateway's [helpers] part
#   K_HELPER    kernel prerouting rules assigning helpers
#   K_NEW       the kernel's "new from lan" rule(s)
#   K_POST      kernel nat postrouting chain body
#   K_PRE       kernel nat prerouting chain body (port forwards)
#   K_FWD/GW_FWD  extra forward accepts before the "new from lan" ones
group_conf() {
  GW_NAT='[[nat.masquerade]]
out = "wan"'
  GW_PRE=''
  GW_NEW='{ in = "lan", ct_state = ["new"], action = "accept" },'
  GW_HELPERS='[helpers.ftp]
ports = [21]

[helpers.tftp]
ports = [69]'
  K_HELPER='tcp dport 21 ct helper set "ftp-std"
    udp dport 69 ct helper set "tftp-std"'
  K_NEW='iifname "lan" ct state new accept'
  K_POST='oifname "wan" masquerade'
  K_PRE=''
  K_FWD=''
  GW_FWD=''
  case $1 in
  ftp) ;;   # the README's config with the helpers on their standard ports
  strict)   # new from lan only to the control ports (and UDP): data
            # connections pass only as RELATED; a rule assigns ftp to 2121
    GW_PRE='{ in = "lan", proto = "tcp", dport = 2121, ct_state = ["new"], helper = "ftp" },'
    GW_NEW='{ in = "lan", proto = "tcp", dport = [21, 2121], ct_state = ["new"], action = "accept" },
  { in = "lan", proto = "udp", ct_state = ["new"], action = "accept" },'
    K_HELPER='tcp dport 21 ct helper set "ftp-std"
    iifname "lan" tcp dport 2121 ct helper set "ftp-std"
    udp dport 69 ct helper set "tftp-std"'
    K_NEW='iifname "lan" ct state new tcp dport { 21, 2121 } accept
    iifname "lan" ct state new meta l4proto udp accept' ;;
  nonat)    # plain routing: nothing to rewrite, expectations still made
    GW_NAT=''
    K_POST='' ;;
  dnat)     # port forwards to an FTP server on the lan: 198.18.0.1:21 and
            # :2121 -> 10.10.0.2:21, [2001:db8:1::1]:21 -> [fd10::2]:21; new
            # from the wan only to port 21 with ct status dnat
    GW_NAT='[[nat.masquerade]]
out = "wan"

[[nat.dnat]]
in = "wan"
proto = "tcp"
dst = "198.18.0.1"
dport = 21
to = "10.10.0.2:21"

[[nat.dnat]]
in = "wan"
proto = "tcp"
dst = "198.18.0.1"
dport = 2121
to = "10.10.0.2:21"

[[nat.dnat]]
in = "wan"
proto = "tcp"
dst = "2001:db8:1::1"
dport = 21
to = "[fd10::2]:21"'
    GW_FWD='{ in = "wan", proto = "tcp", dport = 21, ct_status = ["dnat"], ct_state = ["new"], action = "accept" },'
    K_PRE='iifname "wan" ip daddr 198.18.0.1 tcp dport 21 dnat ip to 10.10.0.2:21
    iifname "wan" ip daddr 198.18.0.1 tcp dport 2121 dnat ip to 10.10.0.2:21
    iifname "wan" ip6 daddr 2001:db8:1::1 tcp dport 21 dnat ip6 to [fd10::2]:21'
    K_FWD='iifname "wan" tcp dport 21 ct status dnat ct state new accept' ;;
  *) echo "unknown group $1" >&2; return 1 ;;
  esac
}

# ---------------------------------------------------------------- setups
kernel_ruleset() {   # the router's ruleset for the current group
  cat <<NFT
table inet gw {
  ct helper ftp-std { type "ftp" protocol tcp; }
  ct helper tftp-std { type "tftp" protocol udp; }
  chain nat_pre {
    type nat hook prerouting priority -100;
    $K_PRE
  }
  chain pre_helper {
    type filter hook prerouting priority 0;
    $K_HELPER
  }
  chain filter_fwd {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    ct state invalid drop
    $K_FWD
    $K_NEW
  }
  chain nat_post {
    type nat hook postrouting priority 100;
    $K_POST
  }
}
NFT
}

kernel_extra() {   # the cases read the expectation table too
  CTX="ip netns exec $RNS conntrack -L expect; ip netns exec $RNS conntrack -L expect -f ipv6"
  ARGS+=(--ctx "$CTX")
}

gw_config() {   # writes $WORKDIR/gw-$1.toml for group $1
  { gw_base_toml; cat <<TOML

$GW_NAT

$GW_HELPERS

[filter.forward]
policy = "drop"
rules = [
  $GW_PRE
  { ct_state = ["established", "related"], action = "accept" },
  { ct_state = ["invalid"], action = "drop" },
  $GW_FWD
  $GW_NEW
]
TOML
  } > $WORKDIR/gw-$1.toml
}

gateway_extra() {
  CTX="$BIN ct expect --socket $WORKDIR/admin.sock"
  ARGS+=(--ctx "$CTX")
}

group_dump() {   # the final ct and expect tables
  timeout 5 $CT > $WORKDIR/ct-$1.txt 2>&1
  timeout 5 sh -c "$CTX" > $WORKDIR/expect-$1.txt 2>&1
}

# ---------------------------------------------------------------- main
run_suite "$HERE/cases_ftp.py"
