package gateway

import (
	"net/netip"
	"testing"

	"tungate/packet"
)

// TestICMPLimiterPerDestination: each destination gets its own burst, then
// one error per 1/rate; IPv4 and IPv6 destinations alike.
func TestICMPLimiterPerDestination(t *testing.T) {
	l := newICMPLimiter(10, 2) // one token per 100ms
	a := packet.AddrFrom(netip.MustParseAddr("192.0.2.1"))
	// Distinct destinations may share a hashed slot (the seed is random):
	// pick an IPv6 one that does not share a's.
	var b packet.Addr
	for i := range 10 {
		b = packet.AddrFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i + 1)}))
		if l.slot(a) != l.slot(b) {
			break
		}
	}
	if l.slot(a) == l.slot(b) {
		t.Fatal("ten IPv6 addresses all share the IPv4 one's slot")
	}
	for i, dst := range []packet.Addr{a, b} {
		for n := range 2 {
			if !l.allow(dst, 0) {
				t.Fatalf("destination %d: error %d of the burst of 2 refused", i, n+1)
			}
		}
	}
	if l.allow(a, 0) {
		t.Fatal("third error to the same destination allowed with burst 2")
	}
	if l.allow(a, 99_999_999) {
		t.Fatal("allowed before a token came back (100ms at 10/s)")
	}
	if !l.allow(a, 100_000_000) {
		t.Fatal("refused after 100ms at 10/s")
	}
}
