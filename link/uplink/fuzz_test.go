package uplink

import (
	"net/netip"
	"testing"

	"tungate/link"
	"tungate/packet"
)

// FuzzWrite feeds Write arbitrary packets: every one is sent, answered or
// counted as a drop, never a panic. Every destination is rewritten to the
// host's loopback before the packet reaches Write (checksums fixed where
// the packet decodes), so neither the seeds run by go test nor a long
// -fuzz run can send anything off this machine.
func FuzzWrite(f *testing.F) {
	dst4 := netip.AddrPortFrom(lo4, 9)
	dst6 := netip.AddrPortFrom(lo6, 9)
	f.Add(udpPkt(netip.AddrPortFrom(ctr4, 1), dst4, []byte("x"))[link.Headroom:])
	f.Add(udpPkt(netip.AddrPortFrom(ctr6, 1), dst6, nil)[link.Headroom:])
	f.Add(tcpPkt(netip.AddrPortFrom(ctr4, 1), dst4, 1, 0, rstFlag, nil)[link.Headroom:])
	f.Add(echoPkt(ctr4, lo4, 1, 1, nil)[link.Headroom:])
	f.Add(echoPkt(ctr6, lo6, 1, 1, nil)[link.Headroom:])
	f.Add([]byte{0x45, 0, 0, 20})
	f.Add([]byte{0x60})
	l, err := New(Config{MaxFlows: 64, AllowHostLoopback: true}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { l.Close() })
	f.Fuzz(func(t *testing.T, b []byte) {
		buf := make([]byte, link.Headroom+len(b))
		copy(buf[link.Headroom:], b)
		toLoopback(buf[link.Headroom:])
		if n, err := l.Write([][]byte{buf}, link.Headroom); n != 1 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	})
}

// toLoopback points an IP packet at the host's loopback: through the
// packet view when it decodes (so its checksums stay right), else by
// overwriting the destination field where an IPv4 or IPv6 header would
// have it.
func toLoopback(b []byte) {
	var p packet.Parsed
	if p.Decode(b) == nil {
		if p.Version == 4 {
			p.SetDst(packet.AddrFrom(lo4))
		} else {
			p.SetDst(packet.AddrFrom(lo6))
		}
	}
	switch {
	case len(b) >= 20 && b[0]>>4 == 4:
		a := lo4.As4()
		copy(b[16:20], a[:])
	case len(b) >= 40 && b[0]>>4 == 6:
		a := lo6.As16()
		copy(b[24:40], a[:])
	}
}
