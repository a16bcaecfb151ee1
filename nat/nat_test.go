package nat

import (
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"tungate/conntrack"
	"tungate/packet"
)

const masqConf = `
[[nat.masquerade]]
out = "wan"
src = ["10.10.0.0/24", "fd10::/64"]
`

func TestMasqueradeEveryProtocol(t *testing.T) {
	for _, tc := range []struct {
		name                string
		out                 pkt
		ext                 string // expected translated source
		reply               func(v view) pkt
		wantReplySrc, wantD string
	}{
		{
			name: "tcp4", out: tcp("10.10.0.2:40000", "203.0.113.5:80", packet.TCPSyn, 1000, 0),
			ext:          "198.18.0.1:40000",
			reply:        func(v view) pkt { return tcp(v.dst.String(), v.src.String(), packet.TCPSyn|packet.TCPAck, 5000, 1001) },
			wantReplySrc: "203.0.113.5:80", wantD: "10.10.0.2:40000",
		},
		{
			name: "tcp6", out: tcp("[fd10::2]:40000", "[2001:db8:2::5]:80", packet.TCPSyn, 1000, 0),
			ext:          "[2001:db8:1::1]:40000",
			reply:        func(v view) pkt { return tcp(v.dst.String(), v.src.String(), packet.TCPSyn|packet.TCPAck, 5000, 1001) },
			wantReplySrc: "[2001:db8:2::5]:80", wantD: "[fd10::2]:40000",
		},
		{
			name: "udp4", out: udp("10.10.0.2:40000", "203.0.113.5:53", "query"),
			ext:          "198.18.0.1:40000",
			reply:        func(v view) pkt { return udp(v.dst.String(), v.src.String(), "answer!") },
			wantReplySrc: "203.0.113.5:53", wantD: "10.10.0.2:40000",
		},
		{
			name: "udp6", out: udp("[fd10::2]:40000", "[2001:db8:2::5]:53", "query"),
			ext:          "[2001:db8:1::1]:40000",
			reply:        func(v view) pkt { return udp(v.dst.String(), v.src.String(), "answer!") },
			wantReplySrc: "[2001:db8:2::5]:53", wantD: "[fd10::2]:40000",
		},
		{
			name: "icmp4", out: echo("10.10.0.2", "203.0.113.5", 77, false),
			ext:          "198.18.0.1:77",
			reply:        func(v view) pkt { return echo(v.dst.Addr().String(), v.src.Addr().String(), v.src.Port(), true) },
			wantReplySrc: "203.0.113.5:77", wantD: "10.10.0.2:77",
		},
		{
			name: "icmp6", out: echo("fd10::2", "2001:db8:2::5", 77, false),
			ext:          "[2001:db8:1::1]:77",
			reply:        func(v view) pkt { return echo(v.dst.Addr().String(), v.src.Addr().String(), v.src.Port(), true) },
			wantReplySrc: "[2001:db8:2::5]:77", wantD: "[fd10::2]:77",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, masqConf)
			s := r.must(tc.out, lan, wan)
			if s.v.src != ap(tc.ext) || s.v.dst.Addr() != tc.out.dst.Addr() {
				t.Fatalf("left as %v -> %v, want %s -> %v", s.v.src, s.v.dst, tc.ext, tc.out.dst)
			}
			c := s.res.Conn
			if st := c.Status(); st&conntrack.StatusSrcNAT == 0 || st&conntrack.StatusSrcNATDone == 0 || st&conntrack.StatusDstNAT != 0 {
				t.Fatalf("status %#x", st)
			}
			rp := r.must(tc.reply(s.v), wan, lan)
			if rp.res.Conn != c || rp.res.Dir != conntrack.DirReply {
				t.Fatalf("reply not found as the connection's reply")
			}
			expectAddrs(t, "reply", rp.v, tc.wantReplySrc, tc.wantD)
			// A second host with the same port gets the next one.
			second := tc.out
			if second.src.Addr().Is4() {
				second.src = ap("10.10.0.3:" + fmt.Sprint(second.src.Port()))
			} else {
				second.src = ap("[fd10::3]:" + fmt.Sprint(second.src.Port()))
			}
			// Ports keep their parity (RFC 4787 REQ-4); identifiers need not.
			step := uint16(2)
			if tc.out.proto == packet.ProtoICMP || tc.out.proto == packet.ProtoICMPv6 {
				step = 1
			}
			s2 := r.must(second, lan, wan)
			if s2.v.src.Addr() != ap(tc.ext).Addr() || s2.v.src.Port() != ap(tc.ext).Port()+step {
				t.Fatalf("second host left as %v, want port %d", s2.v.src, ap(tc.ext).Port()+step)
			}
		})
	}
}

func TestUDP4ZeroChecksumStaysZero(t *testing.T) {
	r := newRig(t, masqConf)
	p := udp("10.10.0.2:40000", "203.0.113.5:53", "query")
	p.noUDPSum = true
	s := r.must(p, lan, wan)
	if s.v.l4sum != 0 || s.v.src != ap("198.18.0.1:40000") {
		t.Fatalf("checksum %#x src %v", s.v.l4sum, s.v.src)
	}
	rp := udp("203.0.113.5:53", "198.18.0.1:40000", "answer")
	rp.noUDPSum = true
	s = r.must(rp, wan, lan)
	if s.v.l4sum != 0 || s.v.dst != ap("10.10.0.2:40000") {
		t.Fatalf("reply checksum %#x dst %v", s.v.l4sum, s.v.dst)
	}
}

func TestTCPFlowBothWays(t *testing.T) {
	r := newRig(t, masqConf)
	v := r.tcpOpen("10.10.0.2:40000", "203.0.113.5:80", lan, wan)
	if v.src != ap("198.18.0.1:40000") {
		t.Fatalf("src %v", v.src)
	}
	d := tcp("10.10.0.2:40000", "203.0.113.5:80", packet.TCPAck|packet.TCPPsh, 1001, 5001)
	d.payload = []byte("GET / HTTP/1.0\r\n\r\n")
	s := r.must(d, lan, wan)
	expectAddrs(t, "data", s.v, "198.18.0.1:40000", "203.0.113.5:80")
	if s.res.Info != conntrack.Established {
		t.Fatalf("info %v", s.res.Info)
	}
	back := tcp("203.0.113.5:80", "198.18.0.1:40000", packet.TCPAck|packet.TCPPsh, 5001, 1019)
	back.payload = []byte("HTTP/1.0 200 OK\r\n\r\n")
	s = r.must(back, wan, lan)
	expectAddrs(t, "reply data", s.v, "203.0.113.5:80", "10.10.0.2:40000")
}

func TestEchoIdentifiersTranslated(t *testing.T) {
	r := newRig(t, masqConf)
	a := r.must(echo("10.10.0.2", "203.0.113.5", 7, false), lan, wan)
	b := r.must(echo("10.10.0.3", "203.0.113.5", 7, false), lan, wan)
	if a.v.src != ap("198.18.0.1:7") || b.v.src != ap("198.18.0.1:8") {
		t.Fatalf("ids: %v %v", a.v.src, b.v.src)
	}
	rb := r.must(echo("203.0.113.5", "198.18.0.1", 8, true), wan, lan)
	expectAddrs(t, "reply to b", rb.v, "203.0.113.5:7", "10.10.0.3:7")
	ra := r.must(echo("203.0.113.5", "198.18.0.1", 7, true), wan, lan)
	expectAddrs(t, "reply to a", ra.v, "203.0.113.5:7", "10.10.0.2:7")
	// IPv6 the same.
	a6 := r.must(echo("fd10::2", "2001:db8:2::5", 9, false), lan, wan)
	b6 := r.must(echo("fd10::3", "2001:db8:2::5", 9, false), lan, wan)
	if a6.v.src != ap("[2001:db8:1::1]:9") || b6.v.src != ap("[2001:db8:1::1]:10") {
		t.Fatalf("v6 ids: %v %v", a6.v.src, b6.v.src)
	}
	rb6 := r.must(echo("2001:db8:2::5", "2001:db8:1::1", 10, true), wan, lan)
	expectAddrs(t, "v6 reply to b", rb6.v, "[2001:db8:2::5]:9", "[fd10::3]:9")
}

func TestEndpointIndependentMapping(t *testing.T) {
	r := newRig(t, masqConf)
	a := r.must(udp("10.10.0.2:5000", "203.0.113.5:3478", "stun"), lan, wan)
	// Another host takes port 5001 meanwhile.
	r.must(udp("10.10.0.3:5001", "203.0.113.5:3478", "stun"), lan, wan)
	b := r.must(udp("10.10.0.2:5000", "203.0.113.99:4000", "peer"), lan, wan)
	c := r.must(tcp("10.10.0.2:5000", "203.0.113.99:80", packet.TCPSyn, 1, 0), lan, wan)
	if a.v.src != ap("198.18.0.1:5000") || b.v.src != a.v.src {
		t.Fatalf("EIM broken: %v then %v", a.v.src, b.v.src)
	}
	if c.v.src != ap("198.18.0.1:5000") {
		t.Fatalf("tcp %v (its own port space)", c.v.src)
	}
	if st := r.e.Stats(); st.Mappings != 3 {
		t.Fatalf("mappings %d, want 3 (two UDP, one TCP)", st.Mappings)
	}
}

func TestAddressPortDependentMapping(t *testing.T) {
	r := newRig(t, `
[[nat.masquerade]]
out = "wan"
mapping = "address-port-dependent"
`)
	a := r.must(udp("10.10.0.2:5000", "203.0.113.5:3478", "x"), lan, wan)
	b := r.must(udp("10.10.0.2:5000", "203.0.113.99:4000", "x"), lan, wan)
	c := r.must(udp("10.10.0.2:5000", "203.0.113.5:3478", "again"), lan, wan)
	if a.v.src != ap("198.18.0.1:5000") || b.v.src != ap("198.18.0.1:5002") || c.v.src != a.v.src {
		t.Fatalf("APDM: %v %v %v", a.v.src, b.v.src, c.v.src)
	}
}

func TestFiltering(t *testing.T) {
	for _, eif := range []bool{false, true} {
		t.Run(fmt.Sprint("eif=", eif), func(t *testing.T) {
			conf := masqConf
			if eif {
				conf += `filtering = "endpoint-independent"` + "\n"
			}
			r := newRig(t, conf)
			out := r.must(udp("10.10.0.2:5000", "203.0.113.5:3478", "stun"), lan, wan)
			master := out.res.Conn
			// A stranger writes to the mapping.
			s := r.pass(udp("192.0.2.9:7777", "198.18.0.1:5000", "hello").bytes(), wan, lan)
			if !s.ok {
				t.Fatal("stranger's packet dropped by NAT (filtering is the filter's job)")
			}
			c := s.res.Conn
			if !eif {
				if s.res.Info != conntrack.New || c.Status()&conntrack.StatusNATMask != 0 {
					t.Fatalf("APDF: info %v status %#x", s.res.Info, c.Status())
				}
				expectAddrs(t, "stranger", s.v, "192.0.2.9:7777", "198.18.0.1:5000")
				r.tbl.Delete(c)
			} else {
				if s.res.Info != conntrack.Related || c.Master() != master || c.Status()&conntrack.StatusExpected == 0 {
					t.Fatalf("EIF: info %v master %p status %#x", s.res.Info, c.Master(), c.Status())
				}
				expectAddrs(t, "admitted", s.v, "192.0.2.9:7777", "10.10.0.2:5000")
				back := r.must(udp("10.10.0.2:5000", "192.0.2.9:7777", "hi"), lan, wan)
				expectAddrs(t, "answer", back.v, "198.18.0.1:5000", "192.0.2.9:7777")
				if st := r.e.Stats(); st.EIFAdmitted != 1 {
					t.Fatalf("stats %+v", st)
				}
			}
			// The stranger never moved the mapping.
			again := r.must(udp("10.10.0.2:5000", "203.0.113.77:1", "x"), lan, wan)
			if again.v.src != ap("198.18.0.1:5000") {
				t.Fatalf("mapping moved to %v", again.v.src)
			}
		})
	}
}

func TestPortForwards(t *testing.T) {
	r := newRig(t, masqConf+`
[[nat.dnat]]
proto = "tcp"
dport = 8080
to = "10.10.0.2:80"

[[nat.dnat]]
in = "wan"
proto = "tcp"
dport = "8000-8009"
to = "10.10.0.3:9000-9009"

[[nat.dnat]]
proto = "udp"
dport = 5353
to = ["10.10.0.4:53", "10.10.0.5:53", "[fd10::53]:53"]

[[nat.dnat]]
proto = "tcp"
dport = 8443
to = "[fd10::2]:443"
`)
	v := r.tcpOpen("203.0.113.7:5000", "198.18.0.1:8080", wan, lan)
	expectAddrs(t, "forward", v, "203.0.113.7:5000", "10.10.0.2:80") // the server sees the real client
	v = r.tcpOpen("203.0.113.7:5001", "198.18.0.1:8005", wan, lan)
	expectAddrs(t, "range", v, "203.0.113.7:5001", "10.10.0.3:9005")
	v = r.tcpOpen("203.0.113.7:5002", "198.18.0.1:8009", wan, lan)
	expectAddrs(t, "range end", v, "203.0.113.7:5002", "10.10.0.3:9009")
	var got []string
	for i := range 3 {
		s := r.must(udp(fmt.Sprintf("203.0.113.8:%d", 6000+i), "198.18.0.1:5353", "q"), wan, lan)
		got = append(got, s.v.dst.String())
	}
	if fmt.Sprint(got) != "[10.10.0.4:53 10.10.0.5:53 10.10.0.4:53]" {
		t.Fatalf("round robin %v", got)
	}
	s6 := r.must(udp("[2001:db8:2::8]:6000", "[2001:db8:1::1]:5353", "q"), wan, lan)
	expectAddrs(t, "v6 target of the list", s6.v, "[2001:db8:2::8]:6000", "[fd10::53]:53")
	v = r.tcpOpen("[2001:db8:2::7]:5000", "[2001:db8:1::1]:8443", wan, lan)
	expectAddrs(t, "v6 forward", v, "[2001:db8:2::7]:5000", "[fd10::2]:443")
	// The range forward is only for the WAN side.
	s := r.must(tcp("10.10.0.9:5000", "198.18.0.1:8005", packet.TCPSyn, 1, 0), lan, wan)
	expectAddrs(t, "not forwarded from lan", s.v, "198.18.0.1:5000", "198.18.0.1:8005")
	if st := r.e.Stats(); st.DNAT != 8 {
		t.Fatalf("DNAT count %d", st.DNAT)
	}
	// A forwarded port is never a mapping's external port.
	m := r.must(tcp("10.10.0.9:8080", "203.0.113.5:80", packet.TCPSyn, 1, 0), lan, wan)
	if m.v.src.Port() == 8080 {
		t.Fatal("mapping took the forwarded port 8080")
	}
	if r.e.PortAvailable(packet.ProtoTCP, addr("198.18.0.1"), 8080) || r.e.PortAvailable(packet.ProtoTCP, addr("198.18.0.1"), 8003) {
		t.Fatal("forwarded ports reported available")
	}
	if !r.e.PortAvailable(packet.ProtoUDP, addr("198.18.0.1"), 8080) {
		t.Fatal("udp/8080 is not forwarded")
	}
}

func TestHairpinPortForward(t *testing.T) {
	r := newRig(t, masqConf+`
[[nat.dnat]]
proto = "tcp"
dport = 8080
to = "10.10.0.2:80"
`)
	// The client's mapping, made by an ordinary outbound flow.
	out := r.must(tcp("10.10.0.9:41000", "203.0.113.5:80", packet.TCPSyn, 1, 0), lan, wan)
	if out.v.src != ap("198.18.0.1:41000") {
		t.Fatalf("mapping %v", out.v.src)
	}
	syn := r.must(tcp("10.10.0.9:41000", "198.18.0.1:8080", packet.TCPSyn, 1000, 0), lan, lan)
	expectAddrs(t, "hairpinned SYN", syn.v, "198.18.0.1:41000", "10.10.0.2:80")
	sa := r.must(tcp("10.10.0.2:80", "198.18.0.1:41000", packet.TCPSyn|packet.TCPAck, 5000, 1001), lan, lan)
	expectAddrs(t, "hairpinned SYN-ACK", sa.v, "198.18.0.1:8080", "10.10.0.9:41000")
	if st := r.e.Stats(); st.Hairpin != 1 || st.Mappings != 1 {
		t.Fatalf("stats %+v", st)
	}
	// From the LAN's own gateway address too (the default dst is all of
	// the gateway's addresses); IPv6 hairpin without a prior mapping.
	r2 := newRig(t, masqConf+`
[[nat.dnat]]
proto = "tcp"
dport = 8443
to = "[fd10::2]:443"
`)
	s6 := r2.must(tcp("[fd10::9]:41000", "[2001:db8:1::1]:8443", packet.TCPSyn, 1000, 0), lan, lan)
	expectAddrs(t, "v6 hairpin", s6.v, "[2001:db8:1::1]:41000", "[fd10::2]:443")
}

func TestHairpinEndpointIndependentMappings(t *testing.T) {
	r := newRig(t, masqConf)
	a := r.must(udp("10.10.0.2:5000", "203.0.113.5:3478", "stun"), lan, wan)
	b := r.must(udp("10.10.0.3:5000", "203.0.113.5:3478", "stun"), lan, wan)
	if a.v.src != ap("198.18.0.1:5000") || b.v.src != ap("198.18.0.1:5002") {
		t.Fatalf("mappings %v %v", a.v.src, b.v.src)
	}
	// A reaches B through the mapping the STUN server showed B.
	ab := r.must(udp("10.10.0.2:5000", "198.18.0.1:5002", "hi B"), lan, lan)
	expectAddrs(t, "A to B", ab.v, "198.18.0.1:5000", "10.10.0.3:5000")
	// B answers to A's mapping: the same connection, reply direction.
	ba := r.must(udp("10.10.0.3:5000", "198.18.0.1:5000", "hi A"), lan, lan)
	if ba.res.Conn != ab.res.Conn || ba.res.Dir != conntrack.DirReply {
		t.Fatal("B's answer is not the hairpin connection's reply")
	}
	expectAddrs(t, "B to A", ba.v, "198.18.0.1:5002", "10.10.0.2:5000")
	// B talking first to A's mapping works the same.
	c := r.must(udp("10.10.0.4:6000", "203.0.113.5:3478", "stun"), lan, wan)
	ca := r.must(udp("10.10.0.4:6000", "198.18.0.1:5000", "hello"), lan, lan)
	expectAddrs(t, "C to A", ca.v, c.v.src.String(), "10.10.0.2:5000")
	// From outside, APDF: the mapping is not reachable for a stranger.
	s := r.pass(udp("192.0.2.1:1", "198.18.0.1:5002", "x").bytes(), wan, lan)
	if s.res.Conn == nil || s.res.Conn.Status()&conntrack.StatusDstNAT != 0 {
		t.Fatal("stranger reached a mapping under APDF")
	}
}

func TestHairpinNeedsSameSideWithoutExternal(t *testing.T) {
	// No snat rules: no interface is external. A forward from lan2 to lan
	// keeps the client's address; from lan to lan it is hairpinned.
	r := newRig(t, `
[[nat.dnat]]
proto = "tcp"
dport = 8080
to = "10.10.0.2:80"
`)
	s := r.must(tcp("10.20.0.9:41000", "10.20.0.1:8080", packet.TCPSyn, 1, 0), lan2, lan)
	expectAddrs(t, "routed", s.v, "10.20.0.9:41000", "10.10.0.2:80")
	s = r.must(tcp("10.10.0.9:41000", "10.10.0.1:8080", packet.TCPSyn, 1, 0), lan, lan)
	expectAddrs(t, "hairpin", s.v, "10.10.0.1:41000", "10.10.0.2:80")
}

func TestSNATPairedRange(t *testing.T) {
	r := newRig(t, `
[[nat.snat]]
out = "wan"
to = "198.18.0.10-198.18.0.20"
ports = "20000-20099"
`)
	ext := map[string]string{}
	for h := 2; h < 40; h++ {
		for p := 0; p < 3; p++ {
			src := fmt.Sprintf("10.10.0.%d:%d", h, 1000+p)
			s := r.must(udp(src, fmt.Sprintf("203.0.113.%d:53", p+1), "q"), lan, wan)
			a := s.v.src.Addr()
			if a.Compare(ap("198.18.0.10").Addr()) < 0 || a.Compare(ap("198.18.0.20").Addr()) > 0 {
				t.Fatalf("address %v outside the pool", a)
			}
			if p := s.v.src.Port(); p < 20000 || p > 20099 {
				t.Fatalf("port %d outside the range", p)
			}
			host := fmt.Sprint(h)
			if prev, ok := ext[host]; ok && prev != a.String() {
				t.Fatalf("host %s got %s and %s: not paired", host, prev, a)
			}
			ext[host] = a.String()
		}
	}
	seen := map[string]bool{}
	for _, a := range ext {
		seen[a] = true
	}
	if len(seen) < 4 {
		t.Fatalf("38 hosts on only %d pool addresses", len(seen))
	}
	// An IPv6 packet does not match an IPv4 pool.
	s := r.must(udp("[fd10::2]:1000", "[2001:db8:2::1]:53", "q"), lan, wan)
	expectAddrs(t, "v6 untouched", s.v, "[fd10::2]:1000", "[2001:db8:2::1]:53")
}

func TestRuleOrder(t *testing.T) {
	r := newRig(t, `
[[nat.masquerade]]
out = "wan"

[[nat.snat]]
out = "wan"
src = "10.10.0.128/25"
to = "198.18.0.50"

[[nat.snat]]
out = "wan"
proto = "udp"
dport = 53
to = "198.18.0.53"
`)
	s := r.must(udp("10.10.0.200:1000", "203.0.113.1:53", "q"), lan, wan)
	if s.v.src.Addr() != ap("198.18.0.50").Addr() {
		t.Fatalf("first snat rule should win: %v", s.v.src)
	}
	s = r.must(udp("10.10.0.2:1000", "203.0.113.1:53", "q"), lan, wan)
	if s.v.src.Addr() != ap("198.18.0.53").Addr() {
		t.Fatalf("second snat rule should win over masquerade: %v", s.v.src)
	}
	s = r.must(udp("10.10.0.2:1000", "203.0.113.1:54", "q"), lan, wan)
	if s.v.src.Addr() != ap("198.18.0.1").Addr() {
		t.Fatalf("masquerade: %v", s.v.src)
	}
}

func TestPortExhaustion(t *testing.T) {
	r := newRig(t, `
[[nat.snat]]
out = "wan"
to = "198.18.0.9"
ports = "6000-6002"
`)
	var conns []*conntrack.Conn
	seen := map[uint16]bool{}
	for i := range 3 {
		s := r.must(udp(fmt.Sprintf("10.10.0.%d:7000", i+2), "203.0.113.1:53", "q"), lan, wan)
		if seen[s.v.src.Port()] {
			t.Fatalf("port %d given twice", s.v.src.Port())
		}
		seen[s.v.src.Port()] = true
		conns = append(conns, s.res.Conn)
	}
	s := r.pass(udp("10.10.0.9:7000", "203.0.113.1:53", "q").bytes(), lan, wan)
	if s.ok {
		t.Fatalf("fourth flow got %v from a full range", s.v.src)
	}
	st := r.e.Stats()
	if st.PortExhausted != 1 || st.Mappings != 3 {
		t.Fatalf("stats %+v", st)
	}
	// A known endpoint still works (its mapping exists).
	r.must(udp("10.10.0.2:7000", "203.0.113.2:53", "q"), lan, wan)
	r.tbl.Delete(conns[1])
	s = r.pass(udp("10.10.0.9:7000", "203.0.113.1:53", "q").bytes(), lan, wan)
	if !s.ok {
		t.Fatal("freed port not reused")
	}
}

func TestRandomAllocation(t *testing.T) {
	r := newRig(t, `
[[nat.masquerade]]
out = "wan"
random = true
ports = "10000-60000"
`)
	same := 0
	var first uint16
	for i := range 20 {
		s := r.must(udp(fmt.Sprintf("10.10.0.%d:30000", i+2), "203.0.113.1:53", "q"), lan, wan)
		p := s.v.src.Port()
		if p < 10000 || p > 60000 {
			t.Fatalf("port %d out of range", p)
		}
		if p == 30000 {
			same++
		}
		if i == 0 {
			first = p
			// Still endpoint-independent.
			s2 := r.must(udp("10.10.0.2:30000", "203.0.113.99:1", "q"), lan, wan)
			if s2.v.src.Port() != p {
				t.Fatalf("random mapping not endpoint-independent: %d then %d", p, s2.v.src.Port())
			}
		}
	}
	if same > 2 {
		t.Fatalf("random allocation kept the port %d times of 20 (first %d)", same, first)
	}
}

func TestClashResolvedByNextPort(t *testing.T) {
	r := newRig(t, masqConf)
	// A connection NAT did not make holds 203.0.113.1:53 <-> 198.18.0.1:40000
	// (not marked local: a local one would yield, see holepunch_test.go).
	in := r.must(udp("203.0.113.1:53", "198.18.0.1:40000", "x"), wan, -1)
	if in.res.Conn.Status()&conntrack.StatusNATMask != 0 {
		t.Fatal("local connection NATed")
	}
	s := r.must(udp("10.10.0.2:40000", "203.0.113.1:53", "q"), lan, wan)
	if s.v.src != ap("198.18.0.1:40002") {
		t.Fatalf("got %v, want the next even port 40002", s.v.src)
	}
	if st := r.e.Stats(); st.Clash != 0 {
		t.Fatalf("clash counted: %+v", st)
	}
	// The mapping is endpoint-independent: the same port elsewhere.
	s = r.must(udp("10.10.0.2:40000", "203.0.113.2:53", "q"), lan, wan)
	if s.v.src != ap("198.18.0.1:40002") {
		t.Fatalf("got %v", s.v.src)
	}
}

func TestMappingReleasedOnDestroy(t *testing.T) {
	r := newRig(t, masqConf)
	a := r.must(udp("10.10.0.2:5000", "203.0.113.5:1", "q"), lan, wan)
	b := r.must(udp("10.10.0.2:5000", "203.0.113.6:1", "q"), lan, wan)
	g := addr("198.18.0.1")
	if r.e.PortAvailable(packet.ProtoUDP, g, 5000) {
		t.Fatal("held port reported available")
	}
	r.tbl.Delete(a.res.Conn)
	if r.e.PortAvailable(packet.ProtoUDP, g, 5000) || r.e.Stats().Mappings != 1 {
		t.Fatal("mapping freed while still used")
	}
	r.tbl.Delete(b.res.Conn)
	if !r.e.PortAvailable(packet.ProtoUDP, g, 5000) || r.e.Stats().Mappings != 0 {
		t.Fatalf("mapping not freed: %+v", r.e.Stats())
	}
	// A connection whose packet is dropped after NAT decided releases too.
	var p packet.Parsed
	if err := p.Decode(udp("10.10.0.3:5001", "203.0.113.5:1", "q").bytes()); err != nil {
		t.Fatal(err)
	}
	var res conntrack.Result
	r.tbl.In(&p, r.tbl.Now(), &res)
	r.e.Prerouting(&p, &res, lan)
	if !r.e.Postrouting(&p, &res, lan, wan) || r.e.PortAvailable(packet.ProtoUDP, g, 5001) {
		t.Fatal("no mapping for the unconfirmed connection")
	}
	r.tbl.Delete(res.Conn)
	if !r.e.PortAvailable(packet.ProtoUDP, g, 5001) || r.e.Stats().Mappings != 0 {
		t.Fatal("unconfirmed connection's mapping not released")
	}
}

func TestMasqueradeNeedsAddress(t *testing.T) {
	r := newRig(t, `
[[nat.masquerade]]
out = "lan2"
`)
	s := r.pass(udp("[fd10::2]:1", "[2001:db8::1]:2", "q").bytes(), lan, lan2)
	if s.ok || r.e.Stats().NoAddress != 1 {
		t.Fatalf("masquerade without an IPv6 address: ok=%v stats %+v", s.ok, r.e.Stats())
	}
}

func TestIsExternal(t *testing.T) {
	r := newRig(t, masqConf)
	if r.e.IsExternal(lan) || !r.e.IsExternal(wan) || r.e.IsExternal(lan2) || r.e.IsExternal(-1) || r.e.IsExternal(9) {
		t.Fatal("IsExternal wrong")
	}
	r = newRig(t, `
[[nat.snat]]
to = "198.18.0.30"
`)
	if !r.e.IsExternal(wan) || r.e.IsExternal(lan) {
		t.Fatal("snat without out: the interface owning the pool is external")
	}
}

func TestGenericProtocolAddressOnly(t *testing.T) {
	r := newRig(t, masqConf)
	p := pkt{proto: packet.ProtoGRE, src: ap("10.10.0.2"), dst: ap("203.0.113.9"), payload: []byte{0, 0, 0x08, 0, 1, 2, 3, 4}}
	s := r.must(p, lan, wan)
	expectAddrs(t, "gre", s.v, "198.18.0.1", "203.0.113.9")
	back := pkt{proto: packet.ProtoGRE, src: ap("203.0.113.9"), dst: ap("198.18.0.1"), payload: []byte{0, 0, 0x08, 0, 1, 2, 3, 4}}
	s = r.must(back, wan, lan)
	expectAddrs(t, "gre back", s.v, "203.0.113.9", "10.10.0.2")
	// A second host to the same peer would share the reply tuple: dropped,
	// never merged.
	p.src = ap("10.10.0.3")
	if s := r.pass(p.bytes(), lan, wan); s.ok || r.e.Stats().Clash != 1 {
		t.Fatalf("clash not refused: %+v", r.e.Stats())
	}
}

func TestExhaustionLoggedRateLimited(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	tbl, err := conntrack.NewTable(conntrack.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(decodeConfig(t, `
[[nat.snat]]
out = "wan"
to = "198.18.0.9"
ports = "6000-6000"
`), testIfaces, tbl, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, tbl: tbl, e: e}
	r.must(udp("10.10.0.2:7000", "203.0.113.1:53", "q"), lan, wan)
	for i := range 5 {
		if s := r.pass(udp(fmt.Sprintf("10.10.0.%d:7000", i+3), "203.0.113.1:53", "q").bytes(), lan, wan); s.ok {
			t.Fatal("no port, yet forwarded")
		}
	}
	if st := e.Stats(); st.PortExhausted != 5 {
		t.Fatalf("stats %+v", st)
	}
	l := logs.All()
	if len(l) != 1 || !strings.Contains(l[0].Message, "exhausted") || l[0].ContextMap()["rule"] != "nat.snat[0]" {
		t.Fatalf("log lines %+v", l)
	}
}

func TestConfirmClashIsNotMerged(t *testing.T) {
	// Two packets of one new flow race through two readers: both get a
	// connection and the same mapping; the second confirm fails and its
	// connection dies, leaving the mapping to the first.
	r := newRig(t, masqConf)
	b1 := udp("10.10.0.2:5000", "203.0.113.5:53", "q").bytes()
	b2 := udp("10.10.0.2:5000", "203.0.113.5:53", "q").bytes()
	var p1, p2 packet.Parsed
	if p1.Decode(b1) != nil || p2.Decode(b2) != nil {
		t.Fatal("decode")
	}
	var r1, r2 conntrack.Result
	now := r.tbl.Now()
	r.tbl.In(&p1, now, &r1)
	r.tbl.In(&p2, now, &r2)
	if r1.Conn == r2.Conn {
		t.Fatal("setup: one connection")
	}
	for _, x := range []struct {
		p   *packet.Parsed
		res *conntrack.Result
	}{{&p1, &r1}, {&p2, &r2}} {
		r.e.Prerouting(x.p, x.res, lan)
		if !r.e.Postrouting(x.p, x.res, lan, wan) {
			t.Fatal("dropped")
		}
	}
	if *r1.Conn.Tuple(conntrack.DirReply) != *r2.Conn.Tuple(conntrack.DirReply) {
		t.Fatal("one endpoint, one destination: the same translation")
	}
	if err := r.tbl.Confirm(r1.Conn, now); err != nil {
		t.Fatal(err)
	}
	if err := r.tbl.Confirm(r2.Conn, now); err == nil {
		t.Fatal("second confirm merged")
	}
	r.tbl.Delete(r2.Conn)
	if st := r.e.Stats(); st.Mappings != 1 {
		t.Fatalf("stats %+v", st)
	}
	rp := r.must(udp("203.0.113.5:53", "198.18.0.1:5000", "a"), wan, lan)
	if rp.res.Conn != r1.Conn {
		t.Fatal("reply not on the confirmed connection")
	}
	expectAddrs(t, "reply", rp.v, "203.0.113.5:53", "10.10.0.2:5000")
}

// TestExplicitForwardDestinations uses forwards with dst given, per family,
// and a target without a port.
func TestExplicitForwardDestinations(t *testing.T) {
	r := newRig(t, `
[[nat.masquerade]]
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
to = "[fd10::2]:80"
`)
	v := r.tcpOpen("203.0.113.7:5000", "198.18.0.1:8080", wan, lan)
	expectAddrs(t, "tcp forward", v, "203.0.113.7:5000", "10.10.0.2:80")
	s := r.must(udp("203.0.113.7:5001", "198.18.0.1:5353", "q"), wan, lan)
	expectAddrs(t, "udp forward, port kept", s.v, "203.0.113.7:5001", "10.10.0.2:5353")
	s = r.must(udp("10.10.0.2:5353", "203.0.113.7:5001", "a"), lan, wan)
	expectAddrs(t, "udp reply", s.v, "198.18.0.1:5353", "203.0.113.7:5001")
	v = r.tcpOpen("[2001:db8:2::7]:5000", "[2001:db8:1::1]:8080", wan, lan)
	expectAddrs(t, "v6 forward", v, "[2001:db8:2::7]:5000", "[fd10::2]:80")
	// Outbound is still masqueraded; the forwarded port is never a mapping.
	s = r.must(udp("10.10.0.3:5353", "203.0.113.9:53", "q"), lan, wan)
	if s.v.src.Addr() != ap("198.18.0.1").Addr() || s.v.src.Port() == 5353 {
		t.Fatalf("outbound %v", s.v.src)
	}
}

// TestBindingPoolDestinationLink: a connection admitted through an EIF
// mapping holds it through its binding's destination link, allocated on
// first use; when the connection dies the binding goes back to the pool
// with no owner and a detached link (nothing keeps the dead connection or
// the mapping), and the next admitted connection reuses both.
func TestBindingPoolDestinationLink(t *testing.T) {
	r := newRig(t, masqConf+`filtering = "endpoint-independent"`+"\n")
	r.must(udp("10.10.0.2:5000", "203.0.113.5:3478", "stun"), lan, wan)
	s := r.pass(udp("192.0.2.9:7777", "198.18.0.1:5000", "hello").bytes(), wan, lan)
	if !s.ok || s.res.Info != conntrack.Related {
		t.Fatalf("stranger not admitted: ok %v info %v", s.ok, s.res.Info)
	}
	b := bindingOf(s.res.Conn)
	if b == nil || b.owner() != s.res.Conn || b.dst == nil || b.dst.m == nil || b.src.m != nil {
		t.Fatalf("admitted connection's binding %+v", b)
	}
	dl := b.dst
	r.tbl.Delete(s.res.Conn)
	r.e.mu.Lock()
	pooled := len(r.e.freeBinds) > 0 && r.e.freeBinds[len(r.e.freeBinds)-1] == b
	clean := b.owner() == nil && b.dst == dl && dl.m == nil && dl.c == nil && dl.prev == nil && dl.next == nil
	r.e.mu.Unlock()
	if !pooled || !clean {
		t.Fatalf("after delete: pooled %v, clean %v (%+v, dst %+v)", pooled, clean, b, *dl)
	}
	if st := r.e.Stats(); st.Mappings != 1 {
		t.Fatalf("mappings %d, want 1 (the outbound flow's)", st.Mappings)
	}
	s2 := r.pass(udp("192.0.2.10:7777", "198.18.0.1:5000", "hello").bytes(), wan, lan)
	if !s2.ok || bindingOf(s2.res.Conn) != b || b.dst != dl || dl.m == nil {
		t.Fatalf("second stranger: ok %v, binding reused %v, link reused %v", s2.ok, bindingOf(s2.res.Conn) == b, b.dst == dl)
	}
}
