package nat

import (
	"fmt"
	"testing"

	"tungate/packet"
)

// PortUse reports per rule, family and protocol the ports held on the
// rule's addresses against the ports it gives out, following mappings as
// they are made and freed; an snat pool sums its addresses.
func TestPortUse(t *testing.T) {
	r := newRig(t, `
[[nat.snat]]
out = "wan"
src = "10.10.0.128/25"
proto = "udp"
to = "198.18.0.10-198.18.0.13"
ports = "30000-30009"

[[nat.masquerade]]
out = "wan"
ports = "20000-20099"
`)
	find := func(rule string, fam, proto uint8) *PortUse {
		t.Helper()
		for _, u := range r.e.PortUse(nil) {
			if u.Rule == rule && u.Family == fam && u.Proto == proto {
				return &u
			}
		}
		return nil
	}
	var v4 []step
	for h := 2; h < 5; h++ {
		v4 = append(v4, r.must(udp(fmt.Sprintf("10.10.0.%d:5000", h), "203.0.113.1:53", "q"), lan, wan))
	}
	r.must(udp("[fd10::2]:5000", "[2001:db8:9::1]:53", "q"), lan, wan)
	for h := 130; h < 140; h++ {
		r.must(udp(fmt.Sprintf("10.10.0.%d:5000", h), "203.0.113.1:53", "q"), lan, wan)
	}
	masq := "nat.masquerade[0]"
	for _, c := range []struct {
		rule        string
		fam, proto  uint8
		used, total uint64
	}{
		{masq, 4, packet.ProtoUDP, 3, 100},
		{masq, 4, packet.ProtoTCP, 0, 100},
		{masq, 6, packet.ProtoUDP, 1, 100},
		{"nat.snat[0]", 4, packet.ProtoUDP, 10, 40},
	} {
		u := find(c.rule, c.fam, c.proto)
		if u == nil {
			t.Fatalf("no port use for %s family %d proto %d in %+v", c.rule, c.fam, c.proto, r.e.PortUse(nil))
		}
		if u.Used != c.used || u.Capacity != c.total || u.Out != "wan" || u.Masquerade != (c.rule == masq) {
			t.Errorf("%s family %d proto %d: %+v, want %d of %d on wan", c.rule, c.fam, c.proto, *u, c.used, c.total)
		}
	}
	if u := find("nat.snat[0]", 4, packet.ProtoTCP); u != nil {
		t.Errorf("a udp-only rule reports TCP: %+v", *u)
	}
	if u := find("nat.snat[0]", 6, packet.ProtoUDP); u != nil {
		t.Errorf("a rule with IPv4 sources and pool reports IPv6: %+v", *u)
	}
	if u := find(masq, 4, packet.ProtoICMP); u != nil {
		t.Errorf("ICMP reported before any echo: %+v", *u)
	}
	r.must(echo("10.10.0.2", "203.0.113.1", 7, false), lan, wan)
	if u := find(masq, 4, packet.ProtoICMP); u == nil || u.Used != 1 || u.Capacity != 65536 {
		t.Errorf("ICMP after one echo: %+v, want 1 of 65536", u)
	}
	// Connections end: their ports are given back.
	for _, s := range v4 {
		r.tbl.Delete(s.res.Conn)
	}
	if u := find(masq, 4, packet.ProtoUDP); u.Used != 0 {
		t.Errorf("after the connections ended: %d ports used, want 0", u.Used)
	}
	buf := make([]PortUse, 0, 16)
	if a := testing.AllocsPerRun(20, func() { buf = r.e.PortUse(buf[:0]) }); a != 0 {
		t.Errorf("PortUse into a buffer allocates %.0f times", a)
	}
}
