package gateway

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"tungate/packet"
)

// findCaptured reads c until a packet f accepts, with a deadline.
func findCaptured(t *testing.T, c *Capture, what string, f func(p *CapturedPacket, d *packet.Parsed) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	var d packet.Parsed
	for {
		select {
		case p := <-c.Packets():
			ok := d.Decode(p.Data) == nil && f(p, &d)
			c.Release(p)
			if ok {
				return
			}
		case <-deadline:
			t.Fatalf("no captured %s on %s", what, c.Interface())
		}
	}
}

// A capture of a wireguard link records the decrypted packets the peers
// send and those sent to them: no tcpdump can see these.
func TestCaptureWireGuard(t *testing.T) {
	r := newWGRig(t, 1420, "", []string{"alice"}, twoPeers)
	c, err := r.g.StartCapture("wg0", CaptureOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	ping(t, r.peers["alice"].host, "10.8.0.2", "203.0.113.2")
	findCaptured(t, c, "echo request in", func(p *CapturedPacket, d *packet.Parsed) bool {
		return p.Dir == CaptureIn && d.IsICMP() && d.SrcIP() == netip.MustParseAddr("10.8.0.2") && p.Verdict == "accept: forwarded to wan"
	})
	findCaptured(t, c, "echo reply out", func(p *CapturedPacket, d *packet.Parsed) bool {
		return p.Dir == CaptureOut && d.IsICMP() && d.DstIP() == netip.MustParseAddr("10.8.0.2") && p.Verdict == "sent"
	})
}

// A capture of an uplink records what goes to the host's sockets and what
// comes back from them.
func TestCaptureUplink(t *testing.T) {
	echo, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go echoUDP(echo, "echo:")
	g, lan := uplinkGateway(t, "127.0.0.1", 9)
	c, err := g.StartCapture("wan", CaptureOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	dst := netip.AddrPortFrom(netip.MustParseAddr("10.0.2.2"), uint16(echo.LocalAddr().(*net.UDPAddr).Port))
	uc, err := lan.Net.DialUDPAddrPort(netip.AddrPort{}, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	buf := make([]byte, 1500)
	for end := time.Now().Add(10 * time.Second); ; {
		uc.Write([]byte("hello"))
		uc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := uc.Read(buf); err == nil {
			break
		}
		if time.Now().After(end) {
			t.Fatal("no UDP echo through the uplink")
		}
	}
	findCaptured(t, c, "datagram out", func(p *CapturedPacket, d *packet.Parsed) bool {
		return p.Dir == CaptureOut && d.Proto == packet.ProtoUDP && d.DstPort == dst.Port() && p.Verdict == "sent"
	})
	findCaptured(t, c, "reply in", func(p *CapturedPacket, d *packet.Parsed) bool {
		return p.Dir == CaptureIn && d.Proto == packet.ProtoUDP && d.SrcPort == dst.Port() && p.Verdict == "accept: forwarded to lan"
	})
}
