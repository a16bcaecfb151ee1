package gateway

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn/bindtest"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"tungate/link"
	"tungate/link/wireguard"
	"tungate/packet"
	"tungate/rules"
)

// peerDev is a nullDev that names peers with a real WireGuard link's peer
// table: the datapath's cost of a wireguard input link without the
// device's I/O in the measurement.
type peerDev struct {
	nullDev
	*wireguard.Link
}

func (d *peerDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return d.nullDev.Read(bufs, sizes, offset)
}
func (d *peerDev) Write(bufs [][]byte, offset int) (int, error) { return d.nullDev.Write(bufs, offset) }
func (d *peerDev) MTU() (int, error)                            { return d.nullDev.MTU() }
func (d *peerDev) Close() error                                 { return d.nullDev.Close() }
func (d *peerDev) BatchSize() int                               { return d.nullDev.BatchSize() }

// benchPeerLink is a WireGuard link with 256 road warriors of a /32 and a
// /128 each, the lan host 10.10.0.2 / fd10::2 among them.
func benchPeerLink(b *testing.B) *wireguard.Link {
	priv, _ := wgKeys(b)
	var peers []wireguard.PeerConfig
	for i := range 256 {
		_, pub := wgKeys(b)
		peers = append(peers, wireguard.PeerConfig{
			Name: fmt.Sprintf("p%d", i), PublicKey: pub,
			AllowedIPs: []string{fmt.Sprintf("10.10.%d.%d", i/254, 2+i%254), fmt.Sprintf("fd10::%x", 2+i)},
		})
	}
	l, err := wireguard.New("wg", wireguard.Config{PrivateKey: priv, AllowInlineKey: true, Peers: peers},
		wireguard.Options{Bind: bindtest.NewChannelBinds()[0]})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return l
}

// threadCPU is the calling thread's CPU time: on this shared machine wall
// time per op is mostly the wait for a core.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkForwardPeer is BenchmarkForward's established flows read from a
// tun link and from a wireguard link, where each packet's sender is looked
// up (link.PeerIdentifier): the difference is the cost of peer identity.
func BenchmarkForwardPeer(b *testing.B) {
	for _, kind := range []string{"tun", "wireguard"} {
		for _, fam := range []string{"ipv4-tcp", "ipv6-tcp"} {
			b.Run(kind+"/"+fam, func(b *testing.B) {
				open := nullOpen
				if kind == "wireguard" {
					wl := benchPeerLink(b)
					n := 0
					open = func(*InterfaceConfig, *zap.Logger) (link.Link, error) {
						n++
						if n == 1 {
							return &peerDev{nullDev: nullDev{done: make(chan struct{})}, Link: wl}, nil
						}
						return &nullDev{done: make(chan struct{})}, nil
					}
				}
				cfg, err := ParseConfig([]byte(linksConf))
				if err != nil {
					b.Fatal(err)
				}
				g, err := New(cfg, Options{Logger: nopLogger(), Open: open})
				if err != nil {
					b.Fatal(err)
				}
				if (g.Links()[0].peers != nil) != (kind == "wireguard") {
					b.Fatal("peer identity not as the kind says")
				}
				c, s := "10.10.0.2", "198.18.0.2"
				if fam == "ipv6-tcp" {
					c, s = "fd10::2", "2001:db8:1::2"
				}
				lan := newWorker(g, g.Links()[0])
				wan := newWorker(g, g.Links()[1])
				lan.rs, wan.rs = g.Rules(), g.Rules()
				lan.now, wan.now = g.ct.Now(), g.ct.Now()
				runPacket(lan, tcpPacket(c, s, 40000, 80, 1000, 0, header.TCPFlagSyn, 0))
				runPacket(wan, tcpPacket(s, c, 80, 40000, 5000, 1001, header.TCPFlagSyn|header.TCPFlagAck, 0))
				ack := tcpPacket(c, s, 40000, 80, 1001, 5001, header.TCPFlagAck, 64)
				w := newWorker(g, g.Links()[0])
				w.rs, w.now = g.Rules(), g.ct.Now()
				before := g.Counters.Forwarded.Load()
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := threadCPU()
				for b.Loop() {
					// Each packet as the first of a batch: the peer cache
					// never hits, the lookup's full cost is measured.
					w.pcValid = false
					runPacket(w, ack)
				}
				b.ReportMetric(float64((threadCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
				if got := g.Counters.Forwarded.Load() - before; got != uint64(b.N) {
					b.Fatalf("forwarded %d of %d", got, b.N)
				}
				if kind == "wireguard" && w.pk.Peer != 1 {
					b.Fatalf("sender is peer %d, want 1", lan.pk.Peer)
				}
			})
		}
	}
}

// BenchmarkPeerOf is the datapath's whole added work per packet read from
// a wireguard link (peer cache check, PeerFor through the interface, cache
// fill), cache missing every time, and hitting.
func BenchmarkPeerOf(b *testing.B) {
	wl := benchPeerLink(b)
	for _, fam := range []string{"ipv4", "ipv6"} {
		for _, cached := range []bool{false, true} {
			name := fam + "/miss"
			if cached {
				name = fam + "/hit"
			}
			b.Run(name, func(b *testing.B) {
				src := "10.10.0.2"
				if fam == "ipv6" {
					src = "fd10::2"
				}
				var p packet.Parsed
				if err := p.Decode(tcpPacket(src, "198.18.0.2", 1, 2, 0, 0, header.TCPFlagAck, 0)); err != nil {
					b.Fatal(err)
				}
				// A rule set that knows the peers' names, so the name
				// check of a miss is measured too.
				names := make([]string, 256)
				for i := range names {
					names[i] = wl.PeerName(i)
				}
				rs, err := rules.Compile(rules.FilterConfig{}, rules.RawConfig{}, nil, rules.Env{Interfaces: []string{"wg"}, Peers: [][]string{names}})
				if err != nil {
					b.Fatal(err)
				}
				w := &worker{peers: wl, rs: rs}
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := threadCPU()
				for b.Loop() {
					w.pcValid = w.pcValid && cached
					if w.peerOf(&p) != 1 {
						b.Fatal("wrong peer")
					}
				}
				b.ReportMetric(float64((threadCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
			})
		}
	}
}
