package rules

import (
	"fmt"
	"testing"

	"tungate/conntrack"
	"tungate/packet"
)

// TestMatches runs every match, positive, negated and as lists, over both
// families: a one-rule forward chain with policy drop accepts exactly the
// packets the rule matches.
func TestMatches(t *testing.T) {
	est := newCtx()
	with := func(f func(*ctx)) ctx {
		c := newCtx()
		f(&c)
		return c
	}
	const (
		v4a, v4b = "10.0.0.1", "192.0.2.7"
		v6a, v6b = "fd00::1", "2001:db8::7"
	)
	syn := uint8(packet.TCPSyn)
	synack := uint8(packet.TCPSyn | packet.TCPAck)
	cases := []struct {
		name string
		rule string
		p    pkt
		c    ctx
		want bool
	}{
		{"family ip v4", `family = "ip"`, tcp4(v4a, v4b, 1, 80, syn), est, true},
		{"family ip v6", `family = "ip"`, tcp4(v6a, v6b, 1, 80, syn), est, false},
		{"family ip6 v6", `family = "ip6"`, tcp4(v6a, v6b, 1, 80, syn), est, true},
		{"family !ip v6", `family = "!ip"`, tcp4(v6a, v6b, 1, 80, syn), est, true},
		{"family !ip v4", `family = "!ip"`, tcp4(v4a, v4b, 1, 80, syn), est, false},
		{"family list", `family = ["ip", "ip6"]`, udp(v6a, v6b, 1, 53), est, true},

		{"in lan", `in = "lan"`, udp(v4a, v4b, 1, 53), est, true},
		{"in wan", `in = "wan"`, udp(v4a, v4b, 1, 53), est, false},
		{"in !lan from wan", `in = "!lan"`, udp(v6a, v6b, 1, 53), with(func(c *ctx) { c.in = 1 }), true},
		{"in !lan from lan", `in = "!lan"`, udp(v6a, v6b, 1, 53), est, false},
		{"in list", `in = ["wan", "dmz"]`, udp(v4a, v4b, 1, 53), with(func(c *ctx) { c.in = 2 }), true},
		{"in negated list hit", `in = ["!lan", "!dmz"]`, udp(v4a, v4b, 1, 53), with(func(c *ctx) { c.in = 2 }), false},
		{"in negated list miss", `in = ["!lan", "!dmz"]`, udp(v4a, v4b, 1, 53), with(func(c *ctx) { c.in = 1 }), true},
		{"in none vs positive", `in = "lan"`, udp(v4a, v4b, 1, 53), with(func(c *ctx) { c.in = -1 }), false},
		{"in none vs negated", `in = "!lan"`, udp(v4a, v4b, 1, 53), with(func(c *ctx) { c.in = -1 }), true},
		{"out wan", `out = "wan"`, udp(v6a, v6b, 1, 53), est, true},
		{"out !wan", `out = "!wan"`, udp(v6a, v6b, 1, 53), est, false},
		{"out unknown", `out = "wan"`, udp(v6a, v6b, 1, 53), with(func(c *ctx) { c.out = -1 }), false},

		{"src cidr v4", `src = "10.0.0.0/8"`, udp(v4a, v4b, 1, 53), est, true},
		{"src cidr v4 miss", `src = "10.0.0.0/8"`, udp(v4b, v4a, 1, 53), est, false},
		{"src v4 cidr vs v6", `src = "0.0.0.0/0"`, udp(v6a, v6b, 1, 53), est, false},
		{"src v6 any vs v4", `src = "::/0"`, udp(v4a, v4b, 1, 53), est, false},
		{"src cidr v6", `src = "fd00::/8"`, udp(v6a, v6b, 1, 53), est, true},
		{"src cidr v6 /127", `src = "fd00::/127"`, udp(v6a, v6b, 1, 53), est, true},
		{"src cidr v6 /128 miss", `src = "fd00::2/128"`, udp(v6a, v6b, 1, 53), est, false},
		{"src host", `src = "10.0.0.1"`, udp(v4a, v4b, 1, 53), est, true},
		{"src !cidr", `src = "!10.0.0.0/8"`, udp(v4a, v4b, 1, 53), est, false},
		{"src !cidr other", `src = "!10.0.0.0/8"`, udp(v4b, v4a, 1, 53), est, true},
		{"src mixed list", `src = ["192.0.2.0/24", "fd00::/16"]`, udp(v6a, v6b, 1, 53), est, true},
		{"src pos and neg", `src = ["10.0.0.0/8", "!10.0.0.0/24"]`, udp(v4a, v4b, 1, 53), est, false},
		{"src pos and neg 2", `src = ["10.0.0.0/8", "!10.0.1.0/24"]`, udp(v4a, v4b, 1, 53), est, true},
		{"src negated list", `src = ["!10.0.0.0/8", "!fd00::/8"]`, udp(v6a, v6b, 1, 53), est, false},
		{"src negated list miss", `src = ["!10.0.0.0/8", "!fd00::/8"]`, udp(v6b, v6a, 1, 53), est, true},
		{"src set v4", `src = "@mixed"`, udp(v4a, v4b, 1, 53), est, true},
		{"src set v6", `src = "@mixed"`, udp(v6a, v6b, 1, 53), est, true},
		{"src set miss", `src = "@mixed"`, udp(v4b, v4a, 1, 53), est, false},
		{"src !set", `src = "!@mixed"`, udp(v6a, v6b, 1, 53), est, false},
		{"src !set miss", `src = "!@mixed"`, udp(v6b, v6a, 1, 53), est, true},
		{"src many literals", `src = ["1.0.0.0/8", "2.0.0.0/8", "3.0.0.0/8", "4.0.0.0/8", "5.0.0.0/8", "6.0.0.0/8", "7.0.0.0/8", "8.0.0.0/8", "10.0.0.1", "fd00::/8"]`, udp(v6a, v6b, 1, 53), est, true},
		{"dst cidr", `dst = "192.0.2.0/24"`, udp(v4a, v4b, 1, 53), est, true},
		{"dst cidr v6", `dst = "2001:db8::/32"`, udp(v6a, v6b, 1, 53), est, true},
		{"dst !cidr v6", `dst = "!2001:db8::/32"`, udp(v6a, v6b, 1, 53), est, false},

		{"proto tcp", `proto = "tcp"`, tcp4(v4a, v4b, 1, 80, syn), est, true},
		{"proto tcp vs udp", `proto = "tcp"`, udp(v6a, v6b, 1, 80), est, false},
		{"proto number", `proto = 17`, udp(v6a, v6b, 1, 80), est, true},
		{"proto number string", `proto = "17"`, udp(v4a, v4b, 1, 80), est, true},
		{"proto !tcp", `proto = "!tcp"`, udp(v4a, v4b, 1, 80), est, true},
		{"proto list", `proto = ["tcp", "udp"]`, udp(v4a, v4b, 1, 80), est, true},
		{"proto icmpv6", `proto = "icmpv6"`, icmp(v6a, v6b, 128, 0), est, true},
		{"proto icmp vs icmpv6", `proto = "icmp"`, icmp(v6a, v6b, 128, 0), est, false},

		{"dport int", `dport = 80`, tcp4(v4a, v4b, 1, 80, syn), est, true},
		{"dport string", `dport = "80"`, tcp4(v6a, v6b, 1, 80, syn), est, true},
		{"dport range", `dport = "1024-65535"`, udp(v6a, v6b, 1, 5353), est, true},
		{"dport range miss", `dport = "1024-65535"`, udp(v6a, v6b, 1, 53), est, false},
		{"dport !53", `dport = "!53"`, udp(v4a, v4b, 1, 53), est, false},
		{"dport !53 other", `dport = "!53"`, udp(v4a, v4b, 1, 54), est, true},
		{"dport mixed list", `dport = [22, "443", "8000-8080"]`, tcp4(v4a, v4b, 1, 8008, syn), est, true},
		{"dport mixed list miss", `dport = [22, "443", "8000-8080"]`, tcp4(v4a, v4b, 1, 8081, syn), est, false},
		{"dport negated list", `dport = ["!53", "!123"]`, udp(v6a, v6b, 1, 123), est, false},
		{"dport range minus hole", `dport = ["1000-2000", "!1500"]`, udp(v6a, v6b, 1, 1500), est, false},
		{"dport range minus hole 2", `dport = ["1000-2000", "!1500"]`, udp(v6a, v6b, 1, 1501), est, true},
		{"dport on icmp", `dport = "!53"`, icmp(v4a, v4b, 8, 0), est, false},
		{"dport on fragment", `dport = "!53"`, pkt{src: v4a, dst: v4b, proto: packet.ProtoUDP, nonFirstFrag: true}, est, false},
		{"dport on v6 fragment", `dport = "!53"`, pkt{src: v6a, dst: v6b, proto: packet.ProtoUDP, nonFirstFrag: true}, est, false},
		{"sport", `sport = "1024-65535"`, tcp4(v6a, v6b, 40000, 22, syn), est, true},
		{"sport miss", `sport = "1024-65535"`, tcp4(v6a, v6b, 1000, 22, syn), est, false},
		{"dport with proto", `proto = "udp"
dport = 53`, tcp4(v4a, v4b, 1, 53, syn), est, false},

		{"icmp echo-request", `proto = "icmp"
icmp_type = "echo-request"`, icmp(v4a, v4b, 8, 0), est, true},
		{"icmp echo-request vs reply", `proto = "icmp"
icmp_type = "echo-request"`, icmp(v4a, v4b, 0, 0), est, false},
		{"icmpv6 echo-request", `proto = "icmpv6"
icmp_type = "echo-request"`, icmp(v6a, v6b, 128, 0), est, true},
		{"icmpv6 echo-request vs type 8", `proto = "icmpv6"
icmp_type = "echo-request"`, icmp(v6a, v6b, 8, 0), est, false},
		{"icmp echo-request vs v6", `proto = "icmp"
icmp_type = "echo-request"`, icmp(v6a, v6b, 128, 0), est, false},
		{"icmp type number", `proto = "icmp"
icmp_type = 3`, icmp(v4a, v4b, 3, 1), est, true},
		{"icmp type negated", `proto = "icmpv6"
icmp_type = "!echo-request"`, icmp(v6a, v6b, 129, 0), est, true},
		{"icmp type list", `proto = "icmpv6"
icmp_type = ["nd-neighbor-solicit", "nd-neighbor-advert"]`, icmp(v6a, v6b, 136, 0), est, true},
		{"icmp code", `proto = "icmp"
icmp_type = "destination-unreachable"
icmp_code = 3`, icmp(v4a, v4b, 3, 3), est, true},
		{"icmp code miss", `proto = "icmp"
icmp_code = 3`, icmp(v4a, v4b, 3, 1), est, false},
		{"icmpv6 code negated", `proto = "icmpv6"
icmp_code = "!0"`, icmp(v6a, v6b, 1, 4), est, true},

		{"tcp_flags syn", `tcp_flags = "syn,!ack"`, tcp4(v4a, v4b, 1, 80, syn), est, true},
		{"tcp_flags synack", `tcp_flags = "syn,!ack"`, tcp4(v6a, v6b, 1, 80, synack), est, false},
		{"tcp_flags list", `tcp_flags = ["syn,!ack", "fin"]`, tcp4(v6a, v6b, 1, 80, packet.TCPFin|packet.TCPAck), est, true},
		{"tcp_flags on udp", `tcp_flags = "!syn"`, udp(v4a, v4b, 1, 80), est, false},

		{"ct_state established", `ct_state = "established"`, udp(v4a, v4b, 1, 53), est, true},
		{"ct_state reply is established", `ct_state = "established"`, udp(v4a, v4b, 1, 53), with(func(c *ctx) { c.info = conntrack.EstablishedReply }), true},
		{"ct_state new", `ct_state = "new"`, udp(v4a, v4b, 1, 53), est, false},
		{"ct_state list", `ct_state = ["established", "related"]`, udp(v6a, v6b, 1, 53), with(func(c *ctx) { c.info = conntrack.RelatedReply }), true},
		{"ct_state invalid", `ct_state = "invalid"`, udp(v6a, v6b, 1, 53), with(func(c *ctx) { c.info = conntrack.Invalid }), true},
		{"ct_state untracked", `ct_state = "untracked"`, udp(v6a, v6b, 1, 53), with(func(c *ctx) { c.info = conntrack.Untracked }), true},
		{"ct_state !new", `ct_state = "!new"`, udp(v6a, v6b, 1, 53), with(func(c *ctx) { c.info = conntrack.New }), false},
		{"ct_state negated list", `ct_state = ["!new", "!invalid"]`, udp(v6a, v6b, 1, 53), est, true},

		{"ct_status assured", `ct_status = "assured"`, udp(v4a, v4b, 1, 53), with(func(c *ctx) { c.status = conntrack.StatusAssured }), true},
		{"ct_status assured miss", `ct_status = "assured"`, udp(v4a, v4b, 1, 53), est, false},
		{"ct_status list any", `ct_status = ["snat", "dnat"]`, udp(v6a, v6b, 1, 53), with(func(c *ctx) { c.status = conntrack.StatusDstNAT }), true},
		{"ct_status negated", `ct_status = "!seen_reply"`, udp(v6a, v6b, 1, 53), with(func(c *ctx) { c.status = conntrack.StatusSeenReply }), false},
		{"ct_status negated miss", `ct_status = "!seen_reply"`, udp(v6a, v6b, 1, 53), est, true},
		{"ct_status expected", `ct_status = "expected"`, udp(v6a, v6b, 1, 53), with(func(c *ctx) { c.status = conntrack.StatusExpected }), true},
		{"ct_status no conn", `ct_status = "!assured"`, udp(v6a, v6b, 1, 53), with(func(c *ctx) { c.info = conntrack.Invalid }), false},

		{"ct_direction original", `ct_direction = "original"`, udp(v4a, v4b, 1, 53), est, true},
		{"ct_direction reply", `ct_direction = "reply"`, udp(v4a, v4b, 1, 53), with(func(c *ctx) { c.info = conntrack.EstablishedReply }), true},
		{"ct_direction reply miss", `ct_direction = "reply"`, udp(v4a, v4b, 1, 53), est, false},
		{"ct_direction no conn", `ct_direction = "original"`, udp(v4a, v4b, 1, 53), with(func(c *ctx) { c.info = conntrack.Untracked }), false},

		{"ct_helper", `ct_helper = "ftp"`, tcp4(v4a, v4b, 1, 21, 0), with(func(c *ctx) { c.helper = "ftp" }), true},
		{"ct_helper none", `ct_helper = "ftp"`, tcp4(v4a, v4b, 1, 21, 0), est, false},
		{"ct_helper negated", `ct_helper = "!ftp"`, tcp4(v6a, v6b, 1, 21, 0), est, true},
		{"ct_helper negated hit", `ct_helper = "!ftp"`, tcp4(v6a, v6b, 1, 21, 0), with(func(c *ctx) { c.helper = "ftp" }), false},

		{"mark", `mark = 5`, udp(v4a, v4b, 1, 53), with(func(c *ctx) { c.mark = 5 }), true},
		{"mark hex", `mark = "0x10"`, udp(v4a, v4b, 1, 53), with(func(c *ctx) { c.mark = 16 }), true},
		{"mark miss", `mark = 5`, udp(v4a, v4b, 1, 53), est, false},
		{"mark negated", `mark = "!5"`, udp(v6a, v6b, 1, 53), est, true},
		{"mark list", `mark = [1, 2, 3]`, udp(v6a, v6b, 1, 53), with(func(c *ctx) { c.mark = 3 }), true},
		{"ct_mark", `ct_mark = 7`, udp(v6a, v6b, 1, 53), with(func(c *ctx) { c.ctMark = 7 }), true},
		{"ct_mark miss", `ct_mark = 7`, udp(v6a, v6b, 1, 53), est, false},
		{"ct_mark no conn", `ct_mark = "!7"`, udp(v6a, v6b, 1, 53), with(func(c *ctx) { c.info = conntrack.Invalid }), false},

		// 20 (IPv4) + 8 (UDP) + 100 = 128; 40 (IPv6) + 8 + 100 = 148.
		{"length range v4", `length = "100-200"`, pkt{src: v4a, dst: v4b, proto: packet.ProtoUDP, payload: 100}, est, true},
		{"length range v6", `length = "100-140"`, pkt{src: v6a, dst: v6b, proto: packet.ProtoUDP, payload: 100}, est, false},
		{"length exact", `length = 148`, pkt{src: v6a, dst: v6b, proto: packet.ProtoUDP, payload: 100}, est, true},
		{"length negated", `length = "!0-100"`, pkt{src: v4a, dst: v4b, proto: packet.ProtoUDP, payload: 100}, est, true},

		{"all ANDed", `in = "lan"
out = "wan"
src = "10.0.0.0/8"
dst = "192.0.2.0/24"
proto = "tcp"
dport = 443
tcp_flags = "syn,!ack"
ct_state = "new"`, tcp4(v4a, v4b, 1000, 443, syn), with(func(c *ctx) { c.info = conntrack.New }), true},
		{"all ANDed one off", `in = "lan"
out = "wan"
src = "10.0.0.0/8"
dst = "192.0.2.0/24"
proto = "tcp"
dport = 443
ct_state = "new"`, tcp4(v4a, v4b, 1000, 444, syn), with(func(c *ctx) { c.info = conntrack.New }), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := fmt.Sprintf(`
[sets]
mixed = ["10.0.0.0/24", "fd00::/64"]
[filter.forward]
policy = "drop"
[[filter.forward.rules]]
%s
action = "accept"
`, tc.rule)
			rs := mustCompile(t, src)
			pk := tc.c.packet(decode(t, tc.p))
			d := rs.Eval(HookForward, pk)
			if got := d.Verdict == Accept; got != tc.want {
				t.Errorf("rule {%s} on %+v: matched %v, want %v", tc.rule, tc.p, got, tc.want)
			}
			n := rs.Counters("filter.forward")[0].Packets
			if (n == 1) != tc.want {
				t.Errorf("counter = %d, want match %v", n, tc.want)
			}
		})
	}
}
