package uplink

import (
	"net/netip"
	"testing"

	"tungate/link"
)

// FuzzWrite feeds Write arbitrary packets: every one is sent, answered or
// counted as a drop, never a panic. The seeds aim at documentation
// addresses; run -fuzz inside `unshare -n` so mutated destinations cannot
// leave the machine.
func FuzzWrite(f *testing.F) {
	dst4 := netip.MustParseAddrPort("192.0.2.1:9")
	dst6 := netip.MustParseAddrPort("[2001:db8::1]:9")
	f.Add(udpPkt(netip.AddrPortFrom(ctr4, 1), dst4, []byte("x"))[link.Headroom:])
	f.Add(udpPkt(netip.AddrPortFrom(ctr6, 1), dst6, nil)[link.Headroom:])
	f.Add(tcpPkt(netip.AddrPortFrom(ctr4, 1), dst4, 1, 0, rstFlag, nil)[link.Headroom:])
	f.Add(echoPkt(ctr4, lo4, 1, 1, nil)[link.Headroom:])
	f.Add(echoPkt(ctr6, lo6, 1, 1, nil)[link.Headroom:])
	f.Add([]byte{0x45, 0, 0, 20})
	f.Add([]byte{0x60})
	l, err := New(Config{MaxFlows: 64}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { l.Close() })
	f.Fuzz(func(t *testing.T, b []byte) {
		buf := make([]byte, link.Headroom+len(b))
		copy(buf[link.Headroom:], b)
		if n, err := l.Write([][]byte{buf}, link.Headroom); n != 1 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	})
}
