package gateway

import (
	"testing"

	"tungate/packet"
)

// Longest-prefix match over connected routes, [[route]]s and the gateway's
// own addresses, both families.
func TestRouting(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
[[interface]]
name = "lan"
tun = "t0"
addresses = ["10.10.0.1/24", "fd10::1/64"]
[[interface]]
name = "wan"
tun = "t1"
addresses = ["198.18.0.1/24", "2001:db8:1::1/64"]
[[interface]]
name = "dmz"
tun = "t2"
addresses = ["172.16.0.1/24"]
[[route]]
to = "0.0.0.0/0"
interface = "wan"
[[route]]
to = "10.20.0.0/16"
interface = "lan"
[[route]]
to = "10.20.5.0/24"
interface = "dmz"
[[route]]
to = "2001:db8:aa::/48"
interface = "lan"
`))
	if err != nil {
		t.Fatal(err)
	}
	pl := &plane{cfg: cfg, links: make([]*Link, len(cfg.Interface))}
	for i := range cfg.Interface {
		pl.slots = append(pl.slots, i)
	}
	pl.buildRoutes()
	for _, c := range []struct {
		dst  string
		want int
		ok   bool
	}{
		{"10.10.0.7", 0, true},           // connected
		{"10.10.0.1", routeLocal, true},  // own address beats its subnet
		{"198.18.0.1", routeLocal, true}, // own address on another link
		{"198.18.0.9", 1, true},          // connected
		{"8.8.8.8", 1, true},             // default
		{"10.20.1.1", 0, true},           // static /16
		{"10.20.5.9", 2, true},           // longer static /24 wins
		{"172.16.0.5", 2, true},          // connected on the third link
		{"fd10::9", 0, true},             // connected v6
		{"fd10::1", routeLocal, true},    // own v6
		{"2001:db8:aa:1::1", 0, true},    // static v6
		{"2001:db8:1::5", 1, true},       // connected v6
		{"2001:db8:ff::1", 0, false},     // no IPv6 default: no route
	} {
		var p packet.Parsed
		src := "10.10.0.2"
		if mustAddr(c.dst).Is6() {
			src = "fd10::2"
		}
		p.Decode(udpPacket(src, c.dst, 1, 2, 64, false, nil))
		out, ok := pl.routes.Lookup(p.DstIP())
		if out != c.want || ok != c.ok {
			t.Errorf("%s: route %d %v, want %d %v", c.dst, out, ok, c.want, c.ok)
		}
	}
	if b := subnetBroadcasts(cfg.Interface[0].addrs); len(b) != 1 || b[0] != [4]byte{10, 10, 0, 255} {
		t.Errorf("broadcasts %v", b)
	}
}
