package nat

import (
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"tungate/conntrack"
	"tungate/packet"
)

const fwdConf = masqConf + `
[[nat.dnat]]
proto = "udp"
dport = 8080
to = "10.10.0.2:80"

[[nat.dnat]]
proto = "udp"
dport = 8080
to = "[fd10::2]:80"
`

// quotedView reads the packet an ICMP error quotes.
func quotedView(t *testing.T, b []byte) view {
	t.Helper()
	v, err := verifyErr(quoteOf(t, b), true)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestICMPErrorFromOutside(t *testing.T) {
	for _, tc := range []struct {
		name            string
		flow            pkt
		router, routed  string // error source; where it goes after NAT
		wantIn, wantOut string // quoted src, dst after NAT
		cut             bool   // quote only the IP header and 8 bytes
	}{
		{"udp4", udp("10.10.0.2:40000", "203.0.113.5:53", "query"), "192.0.2.1", "10.10.0.2", "10.10.0.2:40000", "203.0.113.5:53", false},
		{"tcp4 cut", tcp("10.10.0.2:40000", "203.0.113.5:80", packet.TCPSyn, 1, 0), "192.0.2.1", "10.10.0.2", "10.10.0.2:40000", "203.0.113.5:80", true},
		{"echo4", echo("10.10.0.2", "203.0.113.5", 99, false), "192.0.2.1", "10.10.0.2", "10.10.0.2:99", "203.0.113.5:99", false},
		{"udp6", udp("[fd10::2]:40000", "[2001:db8:2::5]:53", "query"), "2001:db8:ff::1", "fd10::2", "[fd10::2]:40000", "[2001:db8:2::5]:53", false},
		{"tcp6 cut", tcp("[fd10::2]:40000", "[2001:db8:2::5]:80", packet.TCPSyn, 1, 0), "2001:db8:ff::1", "fd10::2", "[fd10::2]:40000", "[2001:db8:2::5]:80", true},
		{"echo6", echo("fd10::2", "2001:db8:2::5", 99, false), "2001:db8:ff::1", "fd10::2", "[fd10::2]:99", "[2001:db8:2::5]:99", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, masqConf)
			// Another host first, so the flow's port/id is translated.
			other := tc.flow
			if other.src.Addr().Is4() {
				other.src = ap("10.10.0.77:" + itoa(other.src.Port()))
			} else {
				other.src = ap("[fd10::77]:" + itoa(other.src.Port()))
			}
			r.must(other, lan, wan)
			s := r.must(tc.flow, lan, wan)
			if s.v.src.Port() == tc.flow.src.Port() {
				t.Fatal("setup: port not translated")
			}
			q := s.b
			if tc.cut {
				q = q[:len(q)-len(tc.flow.payload)-12] // IP header + 8 bytes of TCP
			}
			errp := icmpErr(tc.router, s.v.src.Addr().String(), q)
			e := r.pass(errp.bytes(), wan, lan)
			if !e.ok || e.res.Info != conntrack.RelatedReply || e.res.Conn != s.res.Conn {
				t.Fatalf("error not forwarded as RELATED_REPLY: ok=%v info %v", e.ok, e.res.Info)
			}
			if e.v.src.Addr() != ap(tc.router).Addr() || e.v.dst.Addr() != ap(tc.routed).Addr() {
				t.Fatalf("outer %v -> %v", e.v.src, e.v.dst)
			}
			expectAddrs(t, "quoted", quotedView(t, e.b), tc.wantIn, tc.wantOut)
			if st := r.e.Stats(); st.ICMPErrors != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func itoa(v uint16) string { return string(appendUint(nil, uint64(v))) }

func appendUint(b []byte, v uint64) []byte {
	if v >= 10 {
		b = appendUint(b, v/10)
	}
	return append(b, byte('0'+v%10))
}

func TestICMPErrorFromInsideAboutForward(t *testing.T) {
	for _, tc := range []struct {
		name                     string
		client, gw, server       string
		serverAddr, clientAddr   string
		wantOuterSrc, wantQuoted string
	}{
		{"v4", "203.0.113.7:5000", "198.18.0.1:8080", "10.10.0.2:80", "10.10.0.2", "203.0.113.7", "198.18.0.1", "198.18.0.1:8080"},
		{"v6", "[2001:db8:2::7]:5000", "[2001:db8:1::1]:8080", "[fd10::2]:80", "fd10::2", "2001:db8:2::7", "2001:db8:1::1", "[2001:db8:1::1]:8080"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, fwdConf)
			s := r.must(udp(tc.client, tc.gw, "hello"), wan, lan)
			expectAddrs(t, "forward", s.v, tc.client, tc.server)
			// The server says port unreachable about what it got.
			e := r.pass(icmpErr(tc.serverAddr, tc.clientAddr, s.b).bytes(), lan, wan)
			if !e.ok || e.res.Info != conntrack.RelatedReply {
				t.Fatalf("not forwarded: %v", e.res.Info)
			}
			if e.v.src.Addr() != ap(tc.wantOuterSrc).Addr() || e.v.dst.Addr() != ap(tc.clientAddr).Addr() {
				t.Fatalf("outer %v -> %v", e.v.src, e.v.dst)
			}
			expectAddrs(t, "quoted", quotedView(t, e.b), tc.client, tc.wantQuoted)
		})
	}
}

func TestBadICMPErrorsDropped(t *testing.T) {
	off := false
	for _, tc := range []struct {
		name  string
		spoil func(b []byte)
	}{
		{"icmp checksum", func(b []byte) { b[22] ^= 0x55 }},
		{"quoted ip checksum", func(b []byte) {
			b[28+10] ^= 0x55 // quoted IPv4 header checksum
			binary.BigEndian.PutUint16(b[22:], 0)
			binary.BigEndian.PutUint16(b[22:], ^checksum.Checksum(b[20:], 0))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Conntrack's own checksum check off, so NAT's is the one tested.
			r := newRigCT(t, masqConf, conntrack.Config{Checksum: &off})
			r.must(udp("10.10.0.77:40000", "203.0.113.5:53", "q"), lan, wan)
			s := r.must(udp("10.10.0.2:40000", "203.0.113.5:53", "query"), lan, wan)
			b := icmpErr("192.0.2.1", "198.18.0.1", s.b).bytes()
			tc.spoil(b)
			e := r.pass(b, wan, lan)
			if e.ok || !e.res.Drop || r.e.Stats().BadICMPErrors != 1 {
				t.Fatalf("bad error not dropped: ok=%v drop=%v stats %+v", e.ok, e.res.Drop, r.e.Stats())
			}
			if s.res.Conn.Status()&conntrack.StatusDying != 0 {
				t.Fatal("the connection the error was about died")
			}
		})
	}
	// Postrouting side: the DNATed flow's server sends a spoilt error.
	r := newRigCT(t, fwdConf, conntrack.Config{Checksum: &off})
	s := r.must(udp("203.0.113.7:5000", "198.18.0.1:8080", "hello"), wan, lan)
	b := icmpErr("10.10.0.2", "203.0.113.7", s.b).bytes()
	b[22] ^= 0x55
	if e := r.pass(b, lan, wan); e.ok || r.e.Stats().BadICMPErrors != 1 {
		t.Fatal("spoilt error from inside forwarded")
	}
}

func TestLocalICMPError(t *testing.T) {
	r := newRig(t, fwdConf)
	r.must(udp("10.10.0.77:40000", "203.0.113.5:53", "q"), lan, wan)
	s := r.must(udp("10.10.0.2:40000", "203.0.113.5:53", "query"), lan, wan)
	c := s.res.Conn
	// A reply the gateway cannot deliver (too big, say): it was already
	// translated to the LAN host when the gateway quotes it.
	rp := r.must(udp("203.0.113.5:53", "198.18.0.1:40002", "answer"), wan, lan)
	expectAddrs(t, "reply", rp.v, "203.0.113.5:53", "10.10.0.2:40000")
	gen := icmpErr("10.10.0.1", "203.0.113.5", rp.b).bytes()
	var p packet.Parsed
	if err := p.Decode(gen); err != nil {
		t.Fatal(err)
	}
	r.e.LocalICMPError(&p, c, conntrack.DirReply)
	v := verify(t, p.Bytes())
	if v.src.Addr() != ap("198.18.0.1").Addr() || v.dst.Addr() != ap("203.0.113.5").Addr() {
		t.Fatalf("outer %v -> %v", v.src, v.dst)
	}
	expectAddrs(t, "quoted as sent", quotedView(t, p.Bytes()), "203.0.113.5:53", "198.18.0.1:40002")

	// Time exceeded for a forwarded packet, quoted after DNAT.
	f := r.must(udp("203.0.113.7:5000", "198.18.0.1:8080", "hello"), wan, lan)
	gen = icmpErr("198.18.0.1", "203.0.113.7", f.b).bytes()
	if err := p.Decode(gen); err != nil {
		t.Fatal(err)
	}
	r.e.LocalICMPError(&p, f.res.Conn, conntrack.DirOriginal)
	v = verify(t, p.Bytes())
	if v.src.Addr() != ap("198.18.0.1").Addr() || v.dst.Addr() != ap("203.0.113.7").Addr() {
		t.Fatalf("outer %v -> %v", v.src, v.dst)
	}
	expectAddrs(t, "quoted forward", quotedView(t, p.Bytes()), "203.0.113.7:5000", "198.18.0.1:8080")

	// A masqueraded client's packet quoted after SNAT: the error goes to the
	// client, quoting what the client sent; its source stays the gateway's.
	gen = icmpErr("10.10.0.1", "198.18.0.1", s.b).bytes()
	if err := p.Decode(gen); err != nil {
		t.Fatal(err)
	}
	r.e.LocalICMPError(&p, c, conntrack.DirOriginal)
	v = verify(t, p.Bytes())
	if v.src.Addr() != ap("10.10.0.1").Addr() || v.dst.Addr() != ap("10.10.0.2").Addr() {
		t.Fatalf("outer %v -> %v", v.src, v.dst)
	}
	expectAddrs(t, "quoted client packet", quotedView(t, p.Bytes()), "10.10.0.2:40000", "203.0.113.5:53")

	// IPv6, echo.
	e6 := r.must(echo("fd10::2", "2001:db8:2::5", 5, false), lan, wan)
	gen = icmpErr("fd10::1", "2001:db8:1::1", e6.b).bytes()
	if err := p.Decode(gen); err != nil {
		t.Fatal(err)
	}
	r.e.LocalICMPError(&p, e6.res.Conn, conntrack.DirOriginal)
	v = verify(t, p.Bytes())
	if v.dst.Addr() != ap("fd10::2").Addr() {
		t.Fatalf("outer dst %v", v.dst)
	}
	expectAddrs(t, "quoted echo", quotedView(t, p.Bytes()), "[fd10::2]:5", "[2001:db8:2::5]:5")
}

func TestICMPErrorFromInsideAboutReply(t *testing.T) {
	// The masqueraded host refuses a reply: its error leaves with the
	// gateway's address, quoting the reply as the remote sent it.
	r := newRig(t, masqConf)
	r.must(udp("10.10.0.77:40000", "203.0.113.5:53", "q"), lan, wan)
	s := r.must(udp("10.10.0.2:40000", "203.0.113.5:53", "query"), lan, wan)
	rp := r.must(udp("203.0.113.5:53", s.v.src.String(), "answer"), wan, lan)
	e := r.pass(icmpErr("10.10.0.2", "203.0.113.5", rp.b).bytes(), lan, wan)
	if !e.ok || e.res.Info != conntrack.Related {
		t.Fatalf("not forwarded as RELATED: %v", e.res.Info)
	}
	if e.v.src.Addr() != ap("198.18.0.1").Addr() || e.v.dst.Addr() != ap("203.0.113.5").Addr() {
		t.Fatalf("outer %v -> %v", e.v.src, e.v.dst)
	}
	expectAddrs(t, "quoted", quotedView(t, e.b), "203.0.113.5:53", s.v.src.String())
}

func TestICMPErrorAboutHairpin(t *testing.T) {
	r := newRig(t, fwdConf)
	r.must(udp("10.10.0.9:41000", "203.0.113.5:53", "q"), lan, wan)
	h := r.must(udp("10.10.0.9:41000", "198.18.0.1:8080", "hi"), lan, lan)
	expectAddrs(t, "hairpin", h.v, "198.18.0.1:41000", "10.10.0.2:80")
	// The server answers what it got with port unreachable, to the
	// gateway's address it saw as the client.
	e := r.pass(icmpErr("10.10.0.2", "198.18.0.1", h.b).bytes(), lan, lan)
	if !e.ok || e.res.Info != conntrack.RelatedReply {
		t.Fatalf("not forwarded: %v", e.res.Info)
	}
	if e.v.src.Addr() != ap("198.18.0.1").Addr() || e.v.dst.Addr() != ap("10.10.0.9").Addr() {
		t.Fatalf("outer %v -> %v", e.v.src, e.v.dst)
	}
	expectAddrs(t, "quoted", quotedView(t, e.b), "10.10.0.9:41000", "198.18.0.1:8080")
}

func TestICMPErrorFromOutsideAboutForwardReply(t *testing.T) {
	// A router on the WAN refuses the server's reply to a forwarded
	// client: the error reaches the server, quoting the reply as it sent it.
	r := newRig(t, fwdConf)
	s := r.must(udp("203.0.113.7:5000", "198.18.0.1:8080", "hello"), wan, lan)
	rp := r.must(udp("10.10.0.2:80", "203.0.113.7:5000", "answer"), lan, wan)
	expectAddrs(t, "reply", rp.v, "198.18.0.1:8080", "203.0.113.7:5000")
	e := r.pass(icmpErr("192.0.2.1", "198.18.0.1", rp.b).bytes(), wan, lan)
	if !e.ok || e.res.Info != conntrack.Related || e.res.Conn != s.res.Conn {
		t.Fatalf("not forwarded as RELATED: %v", e.res.Info)
	}
	if e.v.src.Addr() != ap("192.0.2.1").Addr() || e.v.dst.Addr() != ap("10.10.0.2").Addr() {
		t.Fatalf("outer %v -> %v", e.v.src, e.v.dst)
	}
	expectAddrs(t, "quoted", quotedView(t, e.b), "10.10.0.2:80", "203.0.113.7:5000")
}
