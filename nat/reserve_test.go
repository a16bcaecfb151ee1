package nat

import (
	"net/netip"
	"testing"

	"tungate/packet"
)

func TestPortSetReserved(t *testing.T) {
	var s portSet
	s.take(4000) // a mapping's
	want := new([1024]uint64)
	for _, p := range []uint16{4000, 5000} {
		want[p>>6] |= 1 << (p & 63)
	}
	taken := s.setReserved(want, nil)
	if len(taken) != 1 || taken[0] != 4000 {
		t.Fatalf("taken %v, want [4000] (the mapping's port)", taken)
	}
	if !s.has(5000) || !s.has(4000) || s.held != 2 {
		t.Fatalf("reserved ports not held: 4000 %v 5000 %v held %d", s.has(4000), s.has(5000), s.held)
	}
	// The mapping lets go: the forward still holds the port.
	s.release(4000)
	if !s.has(4000) {
		t.Fatal("a reserved port was freed by the mapping that held it before")
	}
	// A mapping's release of a port nobody reserves frees it.
	s.take(6000)
	s.release(6000)
	if s.has(6000) {
		t.Fatal("6000 still held")
	}
	// The forwards go away: both ports free.
	s.setReserved(nil, nil)
	if s.has(4000) || s.has(5000) || s.held != 0 {
		t.Fatalf("unreserved ports still held: 4000 %v 5000 %v held %d", s.has(4000), s.has(5000), s.held)
	}
	// Reserved while a mapping holds it, unreserved before the mapping
	// lets go: held until the mapping does.
	s.take(7000)
	want = new([1024]uint64)
	want[7000>>6] |= 1 << (7000 & 63)
	s.setReserved(want, nil)
	s.setReserved(nil, nil)
	if !s.has(7000) {
		t.Fatal("the mapping's port was freed with the reservation")
	}
	s.release(7000)
	if s.has(7000) || s.held != 0 {
		t.Fatalf("7000 held after its mapping let go (held %d)", s.held)
	}
}

// TestReloadReservesForwardPorts: a [[nat.dnat]] forward a reload adds
// reserves its port in the port sets made before the reload, as one in the
// first config does; a mapping holding it keeps its connection but is not
// reused; a forward removed frees its port.
func TestReloadReservesForwardPorts(t *testing.T) {
	for _, fam := range []struct {
		name, lan1, lan2, lan3, remote, remote2, stranger, ext, to string
	}{
		{"v4", "10.10.0.2", "10.10.0.3", "10.10.0.4", "203.0.113.1", "203.0.113.2", "192.0.2.9", "198.18.0.1", "10.10.0.9"},
		{"v6", "fd10::2", "fd10::3", "fd10::4", "2001:db8:9::1", "2001:db8:9::2", "2001:db8:7::9", "2001:db8:1::1", "fd10::9"},
	} {
		t.Run(fam.name, func(t *testing.T) {
			hp := func(a string, p int) string { return netip.AddrPortFrom(netip.MustParseAddr(a), uint16(p)).String() }
			const base = `
[[nat.masquerade]]
out = "wan"
`
			r := newRig(t, base)
			// A mapping on port 4000, before any forward.
			a := r.must(udp(hp(fam.lan1, 4000), hp(fam.remote, 53), "q"), lan, wan)
			if a.v.src != ap(hp(fam.ext, 4000)) {
				t.Fatalf("first mapping %v, want port 4000 preserved", a.v.src)
			}
			reload := func(text string) {
				t.Helper()
				p, err := r.e.Prepare(decodeConfig(t, text), testIfaces)
				if err != nil {
					t.Fatal(err)
				}
				p.Apply()
			}
			reload(base + `
[[nat.dnat]]
in = "wan"
proto = "udp"
dport = 4000
to = "` + hp(fam.to, 53) + `"

[[nat.dnat]]
in = "wan"
proto = "udp"
dport = "5000-5001"
to = "` + hp(fam.to, 53) + `"
`)
			// A new mapping does not take a forwarded port.
			b := r.must(udp(hp(fam.lan2, 5000), hp(fam.remote, 53), "q"), lan, wan)
			if p := b.v.src.Port(); p == 5000 || p == 5001 || p == 4000 {
				t.Fatalf("new mapping took forwarded port %d", p)
			}
			// The old mapping's connection goes on, its reply too.
			a2 := r.must(udp(hp(fam.lan1, 4000), hp(fam.remote, 53), "q2"), lan, wan)
			if a2.v.src != a.v.src {
				t.Fatalf("existing connection moved: %v, was %v", a2.v.src, a.v.src)
			}
			back := r.must(udp(hp(fam.remote, 53), hp(fam.ext, 4000), "a"), wan, lan)
			if back.v.dst != ap(hp(fam.lan1, 4000)) {
				t.Fatalf("reply to the existing mapping went to %v", back.v.dst)
			}
			// The same endpoint's next flow gets a new mapping, not the
			// reserved port.
			c := r.must(udp(hp(fam.lan1, 4000), hp(fam.remote2, 53), "q"), lan, wan)
			if c.v.src.Port() == 4000 {
				t.Fatal("the mapping holding a forwarded port was reused for a new connection")
			}
			// A new connection from outside to the port goes to the forward.
			in := r.must(udp(hp(fam.stranger, 999), hp(fam.ext, 4000), "x"), wan, lan)
			if in.v.dst != ap(hp(fam.to, 53)) {
				t.Fatalf("new inbound connection to the forwarded port went to %v, want the forward", in.v.dst)
			}

			// The forwards go away: 5000 is free again; 4000 still the
			// old mapping's while its connection lives.
			reload(base)
			d := r.must(udp(hp(fam.lan3, 5000), hp(fam.remote, 53), "q"), lan, wan)
			if d.v.src.Port() != 5000 {
				t.Fatalf("port of a removed forward not given back: got %d", d.v.src.Port())
			}
			e := r.must(udp(hp(fam.lan3, 4000), hp(fam.remote, 53), "q"), lan, wan)
			if e.v.src.Port() == 4000 {
				t.Fatal("a port an existing mapping holds was handed out again")
			}
		})
	}
}

// TestReserveRuntime: reservations of forwards outside the rules (the
// gateway's runtime forwards) keep mappings off their ports, survive a
// reload, and free them when withdrawn.
func TestReserveRuntime(t *testing.T) {
	const base = `
[[nat.masquerade]]
out = "wan"
`
	r := newRig(t, base)
	r.e.Reserve([]Reservation{{Proto: packet.ProtoUDP, Lo: 6000, Hi: 6000}, {Lo: 6100, Hi: 6100}})
	for _, c := range []struct{ src, dst string }{
		{"10.10.0.2:6000", "203.0.113.1:53"},
		{"10.10.0.2:6100", "203.0.113.1:53"},
		{"[fd10::2]:6000", "[2001:db8:9::1]:53"},
	} {
		s := r.must(udp(c.src, c.dst, "q"), lan, wan)
		if p := s.v.src.Port(); p == 6000 || p == 6100 {
			t.Fatalf("%s: mapping took reserved port %d", c.src, p)
		}
	}
	// TCP is not reserved by a UDP reservation.
	if v := r.tcpOpen("10.10.0.2:6000", "203.0.113.1:80", lan, wan); v.src.Port() != 6000 {
		t.Fatalf("tcp port 6000 not preserved: %d", v.src.Port())
	}
	p, err := r.e.Prepare(decodeConfig(t, base), testIfaces)
	if err != nil {
		t.Fatal(err)
	}
	p.Apply()
	if s := r.must(udp("10.10.0.3:6000", "203.0.113.1:53", "q"), lan, wan); s.v.src.Port() == 6000 {
		t.Fatal("reservation lost in a reload")
	}
	r.e.Reserve(nil)
	if s := r.must(udp("10.10.0.4:6100", "203.0.113.1:53", "q"), lan, wan); s.v.src.Port() != 6100 {
		t.Fatalf("withdrawn reservation: port %d, want 6100", s.v.src.Port())
	}
}
