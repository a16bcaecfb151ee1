package main

import (
	"net/netip"
	"strings"
	"testing"

	"tungate/packet"
)

// TestMalformedClasses: every class the decoder does not refuse itself is
// one a later check of the gateway drops (martian sources, IPv4 options,
// transport checksums), so the storm holds nothing forwardable by mistake.
func TestMalformedClasses(t *testing.T) {
	later := []string{"martian", "options", "checksum"}
	seen := map[string]bool{}
	for _, c := range malformed("10.10.0.2", "198.18.0.2", "fd10::2", "2001:db8:1::2") {
		if seen[c.name] {
			t.Errorf("class %s twice", c.name)
		}
		seen[c.name] = true
		var p packet.Parsed
		err := p.Decode(c.b)
		isLater := false
		for _, l := range later {
			isLater = isLater || strings.Contains(c.name, l)
		}
		if err == nil && !isLater {
			t.Errorf("%s: the decoder accepts it (%x)", c.name, c.b)
		}
		if err != nil && isLater && !strings.Contains(c.name, "header-checksum") {
			t.Errorf("%s: the decoder refuses it (%v); it is meant for a later check", c.name, err)
		}
	}
}

// TestSYNSums: the SYNs floodgen sends decode, are SYNs from inside the
// prefix, and carry right checksums (packet's own verification).
func TestSYNSums(t *testing.T) {
	for _, c := range []struct{ src, dst string }{{"10.10.0.0/16", "198.18.0.3"}, {"fd10::/64", "2001:db8:1::3"}, {"0.0.0.0/0", "198.18.0.3"}} {
		s := &sender{fd: -1}
		var got [][]byte
		s.capture = func(b []byte) { got = append(got, append([]byte(nil), b...)) }
		pfx := netip.MustParsePrefix(c.src)
		s.sendSYN(pfx, netip.MustParseAddr(c.dst), 80, 0, 0, 50)
		if len(got) != 50 {
			t.Fatalf("%s: %d packets", c.src, len(got))
		}
		for _, b := range got {
			var p packet.Parsed
			if err := p.Decode(b); err != nil {
				t.Fatalf("%s: %v", c.src, err)
			}
			if !pfx.Contains(p.SrcIP()) || p.TCPFlags != 0x02 || p.DstPort != 80 {
				t.Errorf("%s: src %v flags %#x dport %d", c.src, p.SrcIP(), p.TCPFlags, p.DstPort)
			}
			if !p.L4ChecksumValid() {
				t.Errorf("%s: bad TCP checksum", c.src)
			}
		}
	}
}
