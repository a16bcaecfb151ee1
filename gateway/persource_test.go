package gateway

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"tungate/conntrack"
	"tungate/packet"
)

// One LAN host at [conntrack] per_source_max: its next new connection is
// dropped before NAT and counted, its existing connections keep flowing
// both ways, other hosts are unaffected, and a death makes room.
func TestPerSourceMax(t *testing.T) {
	const max = 3
	for _, fam := range []struct{ name, host, other, dst string }{
		{"ipv4", "10.10.0.2", "10.10.0.3", "198.18.0.2"},
		{"ipv6", "fd10::2", "fd10::3", "2001:db8:1::2"},
	} {
		t.Run(fam.name, func(t *testing.T) {
			r := newPunchRig(t, fmt.Sprintf("[conntrack]\nper_source_max = %d\n", max))
			send := func(src string, sport uint16) int {
				return len(r.run(r.lan, udpPacket(src, fam.dst, sport, 53, 64, false, []byte("q")))[1])
			}
			for i := range max {
				if send(fam.host, uint16(1000+i)) != 1 {
					t.Fatalf("connection %d not forwarded; drops %v", i, r.g.Counters.Snapshot())
				}
			}
			if send(fam.host, 2000) != 0 {
				t.Fatal("a connection over the limit was forwarded")
			}
			if d := r.g.Counters.Drops[DropPerSource].Load(); d != 1 || r.g.ct.Count() != max {
				t.Fatalf("%d per_source drops, %d connections; want 1, %d", d, r.g.ct.Count(), max)
			}
			host := netip.MustParseAddr(fam.host)
			family := uint8(6)
			if host.Is4() {
				family = 4
			}
			if l := r.g.SourceLimit(); l.Refused.Load() != 1 || l.Count(packet.AddrFrom(host), family) != max {
				t.Fatalf("refused %d, counted %d; want 1, %d", l.Refused.Load(), l.Count(packet.AddrFrom(host), family), max)
			}
			// Established connections of the host at its limit keep working.
			for i := range max {
				if send(fam.host, uint16(1000+i)) != 1 {
					t.Fatalf("existing connection %d stopped at the limit", i)
				}
				back := r.run(r.wan, udpPacket(fam.dst, fam.host, 53, uint16(1000+i), 64, false, []byte("a")))
				if len(back[0]) != 1 {
					t.Fatalf("reply on existing connection %d not forwarded", i)
				}
			}
			if send(fam.other, 1000) != 1 {
				t.Fatal("another host was refused")
			}
			// One dies: room for one more.
			tu := conntrack.Tuple{Src: packet.AddrFrom(host), Dst: packet.AddrFrom(netip.MustParseAddr(fam.dst)),
				SrcPort: 1000, DstPort: 53, Proto: 17, Family: family}
			c, _ := r.g.ct.Lookup(&tu)
			if c == nil {
				t.Fatal("connection not found")
			}
			r.g.ct.Delete(c)
			if send(fam.host, 2001) != 1 {
				t.Fatal("no room after a connection died")
			}
			if send(fam.host, 2002) != 0 {
				t.Fatal("over the limit again, but forwarded")
			}
		})
	}
}

func TestPerSourceMaxConfig(t *testing.T) {
	_, err := ParseConfig([]byte(linksConf + "[conntrack]\nper_source_max = -1\n"))
	if err == nil || !strings.Contains(err.Error(), "conntrack.per_source_max: -1 out of range") {
		t.Fatalf("err = %v", err)
	}
}

// BenchmarkForwardPerSource is BenchmarkForward/ipv4-tcp with a per-source
// limit: an established flow never consults it.
func BenchmarkForwardPerSource(b *testing.B) {
	g := nullGateway(b, "[conntrack]\nper_source_max = 64\n")
	lan := newWorker(g, g.Links()[0])
	wan := newWorker(g, g.Links()[1])
	lan.rs, wan.rs = g.Rules(), g.Rules()
	lan.now, wan.now = g.ct.Now(), g.ct.Now()
	runPacket(lan, tcpPacket("10.10.0.2", "198.18.0.2", 40000, 80, 1000, 0, header.TCPFlagSyn, 0))
	runPacket(wan, tcpPacket("198.18.0.2", "10.10.0.2", 80, 40000, 5000, 1001, header.TCPFlagSyn|header.TCPFlagAck, 0))
	benchForward(b, g, tcpPacket("10.10.0.2", "198.18.0.2", 40000, 80, 1001, 5001, header.TCPFlagAck, 64), nil)
}
