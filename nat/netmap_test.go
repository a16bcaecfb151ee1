package nat

import (
	"net/netip"
	"testing"

	"tungate/packet"
)

func TestNPTv6RFC6296Example(t *testing.T) {
	// RFC 6296 section 3.5's example: fd01:203:405:1::1234 inside
	// fd01:203:405::/48 is 2001:db8:1:d550::1234 outside 2001:db8:1::/48.
	in := netip.MustParsePrefix("fd01:203:405::/48")
	out := netip.MustParsePrefix("2001:db8:1::/48")
	a := addr("fd01:203:405:1::1234")
	got, ok := mapPrefix(a, 6, in, out)
	if !ok || got.NetIP(6) != netip.MustParseAddr("2001:db8:1:d550::1234") {
		t.Fatalf("got %v ok=%v", got.NetIP(6), ok)
	}
	back, ok := mapPrefix(got, 6, out, in)
	if !ok || back != a {
		t.Fatalf("back %v", back.NetIP(6))
	}
}

func TestNPTv6Neutral(t *testing.T) {
	for _, tc := range []struct{ from, to, a string }{
		{"fd00:1::/48", "2001:db8:77::/48", "fd00:1:0:5::abcd"},
		{"fd00::/32", "2001:db8::/32", "fd00:0:1:2:3:4:5:6"},
		{"fd00:1:2:300::/56", "2001:db8:5:600::/56", "fd00:1:2:3ab::1"},
		{"fd00:1:2:3::/64", "2001:db8:5:6::/64", "fd00:1:2:3:ffff:ffff:0:1"},
		{"fd00:1:2:3::/60", "2001:db8:5:a0::/60", "fd00:1:2:7:1:2:3:4"},
		{"fd00:1::/44", "2001:db8:70::/44", "fd00:1:f:1234::9"},
	} {
		from, to := netip.MustParsePrefix(tc.from), netip.MustParsePrefix(tc.to)
		a := addr(tc.a)
		m, ok := mapPrefix(a, 6, from, to)
		if !ok {
			t.Fatalf("%s: not translated", tc.a)
		}
		// Checksum-neutral: rewriting a to m adds (one's complement) zero.
		if d := packet.ChecksumDelta(a[:], m[:]); d != 0 && d != 0xffff {
			t.Fatalf("%s -> %v: checksum delta %#x", tc.a, m.NetIP(6), d)
		}
		if !to.Contains(m.NetIP(6)) {
			t.Fatalf("%s -> %v outside %s", tc.a, m.NetIP(6), tc.to)
		}
		back, ok := mapPrefix(m, 6, to, from)
		if !ok || back != a {
			t.Fatalf("%s -> %v -> %v", tc.a, m.NetIP(6), back.NetIP(6))
		}
	}
	// RFC 6296: a subnet word of 0xFFFF is not translated.
	if _, ok := mapPrefix(addr("fd00:1:0:ffff::1"), 6, netip.MustParsePrefix("fd00:1::/48"), netip.MustParsePrefix("2001:db8:77::/48")); ok {
		t.Fatal("0xFFFF subnet translated")
	}
	if _, ok := mapPrefix(addr("fd00:1:2:3:ffff:ffff:ffff:ffff"), 6, netip.MustParsePrefix("fd00:1:2:3::/64"), netip.MustParsePrefix("2001:db8:5:6::/64")); ok {
		t.Fatal("all-ones interface identifier translated")
	}
}

const netmapConf = `
[[nat.netmap]]
out = "wan"
from = "10.10.0.0/24"
to = "198.18.5.0/24"

[[nat.netmap]]
out = "wan"
from = "fd10::/48"
to = "2001:db8:5::/48"

[[nat.masquerade]]
out = "wan"
`

func TestNetmap(t *testing.T) {
	r := newRig(t, netmapConf)
	s := r.must(tcp("10.10.0.7:1234", "203.0.113.1:80", packet.TCPSyn, 1, 0), lan, wan)
	expectAddrs(t, "netmap v4 out", s.v, "198.18.5.7:1234", "203.0.113.1:80")
	s = r.must(udp("203.0.113.1:53", "198.18.5.9:999", "in"), wan, lan)
	expectAddrs(t, "netmap v4 in", s.v, "203.0.113.1:53", "10.10.0.9:999")
	back := r.must(udp("10.10.0.9:999", "203.0.113.1:53", "out"), lan, wan)
	expectAddrs(t, "netmap v4 reply", back.v, "198.18.5.9:999", "203.0.113.1:53")

	// NPTv6: the transport checksum is not touched at all.
	p := udp("[fd10::1:2]:1234", "[2001:db8:2::1]:53", "query")
	orig := verify(t, p.bytes())
	s = r.must(p, lan, wan)
	if s.v.l4sum != orig.l4sum {
		t.Fatalf("checksum changed %#x -> %#x: not neutral", orig.l4sum, s.v.l4sum)
	}
	want, _ := mapPrefix(addr("fd10::1:2"), 6, netip.MustParsePrefix("fd10::/48"), netip.MustParsePrefix("2001:db8:5::/48"))
	if s.v.src.Addr() != want.NetIP(6) || s.v.src.Port() != 1234 {
		t.Fatalf("npt out %v, want %v", s.v.src, want.NetIP(6))
	}
	rp := udp(s.v.dst.String(), s.v.src.String(), "answer")
	rorig := verify(t, rp.bytes())
	s = r.must(rp, wan, lan)
	expectAddrs(t, "npt reply", s.v, "[2001:db8:2::1]:53", "[fd10::1:2]:1234")
	if s.v.l4sum != rorig.l4sum {
		t.Fatal("reply checksum changed")
	}
	// Inbound to the mapped prefix.
	in := tcp("[2001:db8:2::1]:5555", "["+want.NetIP(6).String()+"]:22", packet.TCPSyn, 1, 0)
	iorig := verify(t, in.bytes())
	s = r.must(in, wan, lan)
	expectAddrs(t, "npt in", s.v, "[2001:db8:2::1]:5555", "[fd10::1:2]:22")
	if s.v.l4sum != iorig.l4sum {
		t.Fatal("inbound checksum changed")
	}
	if st := r.e.Stats(); st.Netmap != 4 || st.SNAT != 0 {
		t.Fatalf("stats %+v", st)
	}
}
