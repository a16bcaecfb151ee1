package rules

import (
	"strings"

	"tungate/conntrack"
	"tungate/packet"
)

// name tables for the rule language. Slices, not maps, keep the order used
// for suggestions and Dump stable.

type namedByte struct {
	name string
	v    uint8
}

// protoNames are the protocol names accepted by proto=, as in
// /etc/protocols (nftables reads the same file).
var protoNames = []namedByte{
	{"hopopt", 0},
	{"icmp", packet.ProtoICMP},
	{"igmp", 2},
	{"ipip", 4},
	{"ipencap", 4},
	{"tcp", packet.ProtoTCP},
	{"egp", 8},
	{"udp", packet.ProtoUDP},
	{"ipv6", 41},
	{"rsvp", 46},
	{"gre", packet.ProtoGRE},
	{"esp", packet.ProtoESP},
	{"ah", packet.ProtoAH},
	{"icmpv6", packet.ProtoICMPv6},
	{"ipv6-icmp", packet.ProtoICMPv6},
	{"ospf", 89},
	{"pim", 103},
	{"vrrp", 112},
	{"l2tp", 115},
	{"sctp", packet.ProtoSCTP},
	{"udplite", 136},
}

// icmpNames are ICMP (RFC 792 and successors) type names, nft's spelling.
var icmpNames = []namedByte{
	{"echo-reply", 0},
	{"destination-unreachable", 3},
	{"source-quench", 4},
	{"redirect", 5},
	{"echo-request", 8},
	{"router-advertisement", 9},
	{"router-solicitation", 10},
	{"time-exceeded", 11},
	{"parameter-problem", 12},
	{"timestamp-request", 13},
	{"timestamp-reply", 14},
	{"info-request", 15},
	{"info-reply", 16},
	{"address-mask-request", 17},
	{"address-mask-reply", 18},
}

// icmpv6Names are ICMPv6 (RFC 4443, 4861, 3810) type names, nft's spelling.
var icmpv6Names = []namedByte{
	{"destination-unreachable", 1},
	{"packet-too-big", 2},
	{"time-exceeded", 3},
	{"parameter-problem", 4},
	{"echo-request", 128},
	{"echo-reply", 129},
	{"mld-listener-query", 130},
	{"mld-listener-report", 131},
	{"mld-listener-done", 132},
	{"mld-listener-reduction", 132},
	{"nd-router-solicit", 133},
	{"nd-router-advert", 134},
	{"nd-neighbor-solicit", 135},
	{"nd-neighbor-advert", 136},
	{"nd-redirect", 137},
	{"router-renumbering", 138},
	{"ind-neighbor-solicit", 141},
	{"ind-neighbor-advert", 142},
	{"mld2-listener-report", 143},
}

func lookupByte(tab []namedByte, name string) (uint8, bool) {
	for _, e := range tab {
		if e.name == name {
			return e.v, true
		}
	}
	return 0, false
}

func byteNames(tab []namedByte) []string {
	s := make([]string, len(tab))
	for i, e := range tab {
		s[i] = e.name
	}
	return s
}

type namedState struct {
	name string
	v    conntrack.State
}

// stateNames are the ct_state values, in nft's order.
var stateNames = []namedState{
	{"invalid", conntrack.StateInvalid},
	{"established", conntrack.StateEstablished},
	{"related", conntrack.StateRelated},
	{"new", conntrack.StateNew},
	{"untracked", conntrack.StateUntracked},
}

type namedStatus struct {
	name string
	v    conntrack.Status
}

// statusNames are the ct_status values; nft spells seen-reply with a dash,
// and both spellings are accepted.
var statusNames = []namedStatus{
	{"expected", conntrack.StatusExpected},
	{"seen_reply", conntrack.StatusSeenReply},
	{"seen-reply", conntrack.StatusSeenReply},
	{"assured", conntrack.StatusAssured},
	{"confirmed", conntrack.StatusConfirmed},
	{"snat", conntrack.StatusSrcNAT},
	{"dnat", conntrack.StatusDstNAT},
	{"dying", conntrack.StatusDying},
}

// tcpFlagNames are the tcp_flags names, in header bit order.
var tcpFlagNames = []namedByte{
	{"fin", packet.TCPFin},
	{"syn", packet.TCPSyn},
	{"rst", packet.TCPRst},
	{"psh", packet.TCPPsh},
	{"ack", packet.TCPAck},
	{"urg", packet.TCPUrg},
	{"ece", packet.TCPEce},
	{"cwr", packet.TCPCwr},
}

type namedReject struct {
	name string
	v    RejectKind
	// family is the IP version the reject implies (0: none).
	family uint8
	// nft is the nft spelling for Dump.
	nft string
}

var rejectNames = []namedReject{
	{"tcp-reset", RejectTCPReset, 0, "tcp reset"},
	{"icmp-port-unreachable", RejectICMPPortUnreachable, 4, "icmp type port-unreachable"},
	{"icmp-host-unreachable", RejectICMPHostUnreachable, 4, "icmp type host-unreachable"},
	{"icmp-admin-prohibited", RejectICMPAdminProhibited, 4, "icmp type admin-prohibited"},
	{"icmpv6-port-unreachable", RejectICMPv6PortUnreachable, 6, "icmpv6 type port-unreachable"},
	{"icmpv6-addr-unreachable", RejectICMPv6AddrUnreachable, 6, "icmpv6 type addr-unreachable"},
	{"icmpv6-admin-prohibited", RejectICMPv6AdminProhibited, 6, "icmpv6 type admin-prohibited"},
}

// String returns the reject_with spelling ("default" for RejectDefault).
func (k RejectKind) String() string {
	for _, e := range rejectNames {
		if e.v == k {
			return e.name
		}
	}
	return "default"
}

// String returns accept, drop or reject.
func (v Verdict) String() string {
	switch v {
	case Accept:
		return "accept"
	case Drop:
		return "drop"
	case Reject:
		return "reject"
	case SynProxy:
		return "synproxy"
	}
	return "unknown"
}

// String returns the hook name as nft spells it.
func (h Hook) String() string {
	switch h {
	case HookPrerouting:
		return "prerouting"
	case HookInput:
		return "input"
	case HookForward:
		return "forward"
	case HookOutput:
		return "output"
	}
	return "unknown"
}

// tcpFlagsString names the set flags ("syn,ack"), for log lines.
func tcpFlagsString(f uint8) string {
	var parts []string
	for _, e := range tcpFlagNames {
		if f&e.v != 0 {
			parts = append(parts, e.name)
		}
	}
	return strings.Join(parts, ",")
}

// stateString names a ct_state bit set.
func stateString(s conntrack.State) string {
	var parts []string
	for _, e := range stateNames {
		if s&e.v != 0 {
			parts = append(parts, e.name)
		}
	}
	return strings.Join(parts, ",")
}

// statusString names the ct_status bits rules can match.
func statusString(s conntrack.Status) string {
	var parts []string
	for _, e := range statusNames {
		if s&e.v != 0 && e.name != "seen-reply" {
			parts = append(parts, e.name)
		}
	}
	return strings.Join(parts, ",")
}
