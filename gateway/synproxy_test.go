package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"tungate/internal/packettest"
	"tungate/packet"
)

// synproxyNAT routes lan's prefix back and masquerades lan out of wan.
const synproxyNAT = `
[[route]]
to = "10.10.0.0/24"
interface = "lan"

[[nat.masquerade]]
out = "wan"
`

// synproxyConf is synproxyNAT with a stateful policy that proxies the
// handshake of every new TCP connection from lan.
const synproxyConf = synproxyNAT + `
[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { ct_state = ["invalid"], action = "drop" },
  { in = "lan", proto = "tcp", ct_state = ["new"], action = "synproxy"%s },
  { in = "lan", ct_state = ["new"], action = "accept" },
]
`

func synproxyGateway(t *testing.T, opts string) (client, server *host, g *Gateway) {
	client = newHost(t, 1500, "10.10.0.2", "fd10::2")
	server = newHost(t, 1500, "198.18.0.2", "2001:db8:1::2")
	conf := linksConf + strings.Replace(synproxyConf, "%s", opts, 1)
	g = testGateway(t, conf, client, server)
	return client, server, g
}

// roundTrip sends n random bytes from client to server and n others back,
// each side checking the other's bytes: the server's direction is the
// one the proxy translates (sequence numbers, timestamps, window).
func roundTrip(t *testing.T, client, server *host, dst netip.AddrPort, n int) {
	t.Helper()
	roundTripVia(t, client, server, dst, dst, n)
}

// roundTripVia is roundTrip with the server listening on listen and the
// client dialling dial (a port forward in between).
func roundTripVia(t *testing.T, client, server *host, listen, dial netip.AddrPort, n int) {
	t.Helper()
	up, down := make([]byte, n), make([]byte, n)
	r := rand.New(rand.NewPCG(1, uint64(n)))
	for i := range up {
		up[i], down[i] = byte(r.Uint32()), byte(r.Uint32())
	}
	ln, err := server.Net.ListenTCPAddrPort(listen)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		got := make([]byte, n)
		if _, err := io.ReadFull(c, got); err != nil {
			errc <- err
			return
		}
		if !bytes.Equal(got, up) {
			errc <- io.ErrUnexpectedEOF
			return
		}
		_, err = c.Write(down)
		errc <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Net.DialContextTCPAddrPort(ctx, dial)
	if err != nil {
		t.Fatalf("dial %v: %v", dial, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	go c.Write(up)
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read back: %v", err)
	}
	if sha256.Sum256(got) != sha256.Sum256(down) {
		t.Fatal("client received different bytes")
	}
	if err := <-errc; err != nil {
		t.Fatalf("server: %v", err)
	}
}

func TestSynProxyTransfer(t *testing.T) {
	for _, tc := range []struct{ name, opts string }{
		{"defaults", ""},
		// A window scale unlike the server's: its windows are rescaled.
		{"wscale 2", `, synproxy = { wscale = 2 }`},
		{"no timestamps", `, synproxy = { timestamp = false, mss = 1200 }`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server, g := synproxyGateway(t, tc.opts)
			for i, dst := range []string{"198.18.0.2:80", "[2001:db8:1::2]:80"} {
				roundTrip(t, client, server, netip.MustParseAddrPort(dst), 1<<20)
				c := &g.Counters
				if got := c.SynProxyOpen.Load(); got != uint64(i+1) {
					t.Fatalf("%s: %d handshakes completed with the server, want %d", dst, got, i+1)
				}
			}
			if n := g.Counters.Drops[DropSynProxy].Load(); n != 0 {
				t.Errorf("%d packets dropped by the proxy", n)
			}
			lines := strings.Join(ctLines(g), "\n")
			if !strings.Contains(lines, "src=10.10.0.2") || !strings.Contains(lines, "dport=80") {
				t.Errorf("ct list does not show the proxied connection:\n%s", lines)
			}
		})
	}
}

// synPacket is a client's SYN with Linux's options (MSS 1460, SACK,
// timestamps, window scale 7).
func synPacket(v6 bool, src, dst string, sport uint16, seq, tsval uint32) []byte {
	opts := []byte{2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 3, 7}
	binary.BigEndian.PutUint32(opts[8:], tsval)
	return packettest.Build(packettest.IP{V6: v6, Src: src, Dst: dst},
		packettest.TCP{SPort: sport, DPort: 80, Seq: seq, Flags: packet.TCPSyn, Win: 64240, Opts: opts}, nil)
}

func parseSeg(t *testing.T, b []byte) *packet.Parsed {
	t.Helper()
	p := new(packet.Parsed)
	if err := p.Decode(b); err != nil {
		t.Fatal(err)
	}
	if !p.L4ChecksumValid() {
		t.Fatal("bad TCP checksum in the gateway's segment")
	}
	return p
}

// TestSynProxyCookie drives the handshake by hand: the SYN gets a cookie
// SYN/ACK with a shut window and leaves nothing in the table; an ACK with
// a wrong cookie is dropped and counted; the right one makes the gateway
// send the server the client's SYN, with the client's ISN and options.
func TestSynProxyCookie(t *testing.T) {
	client, server, g := synproxyGateway(t, "")
	for _, v6 := range []bool{false, true} {
		// An address nobody holds: the server's stack must not answer
		// the proxy's SYN, the test plays the server.
		src, dst := "10.10.0.2", "198.18.0.3"
		if v6 {
			src, dst = "fd10::2", "2001:db8:1::3"
		}
		const isn, tsval = 1000, 777
		synack := client.expect(func(b []byte) bool {
			p := new(packet.Parsed)
			return p.Decode(b) == nil && p.Proto == packet.ProtoTCP && p.TCPFlags == packet.TCPSyn|packet.TCPAck && p.DstPort == 40000
		})
		before := g.ct.Count()
		client.send(synPacket(v6, src, dst, 40000, isn, tsval))
		sa := parseSeg(t, wait(t, synack, "cookie SYN/ACK"))
		if sa.TCPAck() != isn+1 || sa.TCPWindow() != 0 {
			t.Fatalf("SYN/ACK ack %d window %d, want %d and 0", sa.TCPAck(), sa.TCPWindow(), isn+1)
		}
		o, err := sa.TCPSynOptions()
		mss := uint16(1460) // the links' MTU, 1500, less the headers
		if v6 {
			mss = 1440
		}
		if err != nil || !o.TS || o.TSecr != tsval || o.WScale != 10 || !o.SACKPerm || o.MSS != mss {
			t.Fatalf("SYN/ACK options %+v %v", o, err)
		}
		if n := g.ct.Count(); n != before {
			t.Fatalf("the SYN left %d connections in the table", n-before)
		}
		ack := func(cookie uint32) []byte {
			opts := []byte{1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0}
			binary.BigEndian.PutUint32(opts[4:], tsval+1)
			binary.BigEndian.PutUint32(opts[8:], o.TSval)
			return packettest.Build(packettest.IP{V6: v6, Src: src, Dst: dst},
				packettest.TCP{SPort: 40000, DPort: 80, Seq: isn + 1, Ack: cookie + 1, Flags: packet.TCPAck, Win: 502, Opts: opts}, nil)
		}
		invalid := g.Counters.SynProxyInvalid.Load()
		client.send(ack(sa.TCPSeq() + 1<<20))
		eventually(t, 5*time.Second, "the forged cookie counted", func() bool { return g.Counters.SynProxyInvalid.Load() == invalid+1 })
		syn := server.expect(func(b []byte) bool {
			p := new(packet.Parsed)
			return p.Decode(b) == nil && p.Proto == packet.ProtoTCP && p.TCPFlags == packet.TCPSyn
		})
		client.send(ack(sa.TCPSeq()))
		s := parseSeg(t, wait(t, syn, "SYN to the server"))
		so, err := s.TCPSynOptions()
		if s.TCPSeq() != isn || err != nil || !so.TS || so.TSval != tsval+1 || so.WScale != 7 || !so.SACKPerm || so.MSS != 1460 {
			t.Fatalf("server SYN seq %d options %+v %v", s.TCPSeq(), so, err)
		}
		if want := packet.AddrFrom(netip.MustParseAddr(dst)); s.Dst != want {
			t.Fatalf("SYN to %v", s.Dst)
		}
		if n := g.ct.Count(); n != before+1 {
			t.Fatalf("%d connections after the handshake, want %d", n, before+1)
		}

		// The server has not answered: the client's window probe (to
		// conntrack an ACK out of turn, INVALID) sends the SYN again.
		retrans := g.Counters.SynProxyRetrans.Load()
		again := server.expect(func(b []byte) bool {
			p := new(packet.Parsed)
			return p.Decode(b) == nil && p.Proto == packet.ProtoTCP && p.TCPFlags == packet.TCPSyn
		})
		client.send(ack(sa.TCPSeq()))
		if p := parseSeg(t, wait(t, again, "the SYN sent again")); p.TCPSeq() != isn {
			t.Fatalf("SYN sent again with seq %d", p.TCPSeq())
		}
		if g.Counters.SynProxyRetrans.Load() != retrans+1 {
			t.Fatalf("the SYN sent again was not counted: %v", g.Counters.Snapshot())
		}

		// The server refuses: the client gets the reset in the sequence
		// space it knows, the cookie's.
		rst := client.expect(func(b []byte) bool {
			p := new(packet.Parsed)
			return p.Decode(b) == nil && p.Proto == packet.ProtoTCP && p.TCPFlags&packet.TCPRst != 0 && p.DstPort == 40000
		})
		server.send(packettest.Build(packettest.IP{V6: v6, Src: dst, Dst: s.Src.NetIP(s.Version).String()},
			packettest.TCP{SPort: 80, DPort: s.SrcPort, Seq: 0, Ack: isn + 1, Flags: packet.TCPRst | packet.TCPAck}, nil))
		if r := parseSeg(t, wait(t, rst, "the server's reset")); r.TCPSeq() != sa.TCPSeq()+1 {
			t.Fatalf("reset with seq %d, want the cookie's %d", r.TCPSeq(), sa.TCPSeq()+1)
		}
	}
}

// TestSynProxyFlood: SYNs from many forged sources cost no table entries
// and every one is answered; a real connection still works beside them.
func TestSynProxyFlood(t *testing.T) {
	client, server, g := synproxyGateway(t, "")
	const n = 2000
	for i := range n {
		src := netip.AddrFrom4([4]byte{10, 10, byte(1 + i>>8), byte(i)}).String()
		client.send(synPacket(false, src, "198.18.0.2", uint16(1024+i), uint32(i)*7919, 1))
	}
	eventually(t, 10*time.Second, "every SYN answered", func() bool { return g.Counters.SynProxySyn.Load() == n })
	if c := g.ct.Count(); c != 0 {
		t.Fatalf("%d connections in the table after a SYN flood", c)
	}
	roundTrip(t, client, server, netip.MustParseAddrPort("198.18.0.2:80"), 64<<10)
}

// runOut runs pkt through worker w like runPacket and returns copies of
// what it queued on each link.
func runOut(w *worker, pkt []byte) [][][]byte {
	n := copy(w.bufs[0][headroom:], pkt)
	w.packet(w.bufs[0], n)
	w.g.Counters.Forwarded.Add(w.forwarded)
	w.forwarded = 0
	out := make([][][]byte, len(w.out))
	for i := range w.out {
		for _, b := range w.out[i] {
			out[i] = append(out[i], append([]byte(nil), b[headroom:]...))
		}
		w.out[i] = w.out[i][:0]
		w.outPart[i] = w.outPart[i][:0]
	}
	w.nscratch = 0
	return out
}

// tsSeg is a TCP segment with a timestamps option.
func tsSeg(src, dst string, sport, dport uint16, seq, ack uint32, flags uint8, tsval, tsecr uint32, payload int) []byte {
	opts := []byte{1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(opts[4:], tsval)
	binary.BigEndian.PutUint32(opts[8:], tsecr)
	return packettest.Build(packettest.IP{V6: strings.Contains(src, ":"), Src: src, Dst: dst, DF: true},
		packettest.TCP{SPort: sport, DPort: dport, Seq: seq, Ack: ack, Flags: flags, Win: 502, Opts: opts}, make([]byte, payload))
}

// BenchmarkSynProxy: what a flood's SYN costs the gateway with the proxy
// (a cookie SYN/ACK, nothing kept), and what a packet of a proxied,
// established connection costs in each direction (the conformance
// configuration's BenchmarkForwardNAT plus the translation).
func BenchmarkSynProxy(b *testing.B) {
	g := nullGateway(b, strings.Replace(synproxyConf, "%s", "", 1))
	lan := newWorker(g, g.Links()[0])
	wan := newWorker(g, g.Links()[1])
	lan.rs, wan.rs = g.Rules(), g.Rules()
	lan.now, wan.now = g.ct.Now(), g.ct.Now()
	out := runOut(lan, synPacket(false, "10.10.0.2", "198.18.0.2", 40000, 1000, 5))
	if len(out[0]) != 1 {
		b.Fatalf("no cookie SYN/ACK: %v", g.Counters.Snapshot())
	}
	sa := new(packet.Parsed)
	if err := sa.Decode(out[0][0]); err != nil {
		b.Fatal(err)
	}
	o, _ := sa.TCPSynOptions()
	cookie := sa.TCPSeq()
	out = runOut(lan, tsSeg("10.10.0.2", "198.18.0.2", 40000, 80, 1001, cookie+1, packet.TCPAck, 6, o.TSval, 0))
	if len(out[1]) != 1 {
		b.Fatalf("no SYN to the server: %v", g.Counters.Snapshot())
	}
	s := new(packet.Parsed)
	if err := s.Decode(out[1][0]); err != nil {
		b.Fatal(err)
	}
	port := s.SrcPort
	out = runOut(wan, tsSeg("198.18.0.2", "198.18.0.1", 80, port, 90000, 1001, packet.TCPSyn|packet.TCPAck, 300, 6, 0))
	if len(out[0]) != 1 || len(out[1]) != 1 {
		b.Fatalf("handshake with the server: %d to lan, %d to wan; %v", len(out[0]), len(out[1]), g.Counters.Snapshot())
	}
	for _, w := range []*worker{lan, wan} {
		// Batch ends: neither worker holds a connection.
		w.res.Release()
		w.genRes.Release()
	}
	b.Run("syn", func(b *testing.B) {
		syn := synPacket(false, "10.10.0.9", "198.18.0.3", 40000, 1000, 5)
		before := g.Counters.SynProxySyn.Load()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			runPacket(lan, syn)
			if i%64 == 63 {
				// A batch's end: the worker holds no connection, so the
				// entries the proxy let go are reused.
				lan.res.Release()
			}
		}
		if got := g.Counters.SynProxySyn.Load() - before; got != uint64(b.N) {
			b.Fatalf("%d cookies for %d SYNs", got, b.N)
		}
		if n := g.ct.Count(); n != 1 {
			b.Fatalf("%d connections", n)
		}
	})
	b.Run("established-orig", func(b *testing.B) {
		benchForward(b, g, tsSeg("10.10.0.2", "198.18.0.2", 40000, 80, 1001, cookie+1, packet.TCPAck, 7, o.TSval, 64), nil)
	})
	b.Run("established-reply", func(b *testing.B) {
		pkt := tsSeg("198.18.0.2", "198.18.0.1", 80, port, 90001, 1001, packet.TCPAck, 301, 7, 64)
		before := g.Counters.Forwarded.Load()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			runPacket(wan, pkt)
		}
		if got := g.Counters.Forwarded.Load() - before; got != uint64(b.N) {
			b.Fatalf("forwarded %d of %d; %v", got, b.N, g.Counters.Snapshot())
		}
	})
}

// TestSynProxyStrictPickup: with tcp_loose = false the client's cookie
// ACK is INVALID to conntrack, and a rule matching new and invalid before
// the invalid drop (nftables' ct state invalid,untracked synproxy) still
// proxies the connection.
func TestSynProxyStrictPickup(t *testing.T) {
	client := newHost(t, 1500, "10.10.0.2", "fd10::2")
	server := newHost(t, 1500, "198.18.0.2", "2001:db8:1::2")
	g := testGateway(t, linksConf+`
[conntrack]
tcp_loose = false
`+synproxyNAT+`
[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { in = "lan", proto = "tcp", ct_state = ["new", "invalid"], action = "synproxy" },
  { ct_state = ["invalid"], action = "drop" },
  { in = "lan", ct_state = ["new"], action = "accept" },
]
`, client, server)
	roundTrip(t, client, server, netip.MustParseAddrPort("198.18.0.2:80"), 256<<10)
	roundTrip(t, client, server, netip.MustParseAddrPort("[2001:db8:1::2]:80"), 256<<10)
	if n := g.Counters.SynProxyOpen.Load(); n != 2 {
		t.Fatalf("%d connections proxied, want 2", n)
	}
}

// proxyHandshake drives a client's handshake through the proxy by hand
// (client 10.10.0.2:sport → dst:80, SYN with MSS 1460, SACK, timestamps,
// window scale 7) and returns the cookie SYN/ACK and the SYN the server
// got. lostAck sends the client's zero-window probe (seq = ISN) instead
// of its handshake ACK, as after the ACK was lost.
func proxyHandshake(t *testing.T, client, server *host, dst string, sport uint16, lostAck bool) (sa, syn *packet.Parsed) {
	t.Helper()
	const isn, tsval = 5000, 100
	// The hosts' stacks have no socket for this flow: muted, they do not
	// reset it behind the test's back (a reset racing the test's own
	// segments closed the connection now and then).
	flow := func(b []byte) bool {
		p := new(packet.Parsed)
		return p.Decode(b) == nil && p.Proto == packet.ProtoTCP && (p.SrcPort == sport || p.DstPort == sport)
	}
	for _, h := range []*host{client, server} {
		h.dev.mu.Lock()
		h.dev.mute = flow
		h.dev.mu.Unlock()
	}
	synack := client.expect(func(b []byte) bool {
		p := new(packet.Parsed)
		return p.Decode(b) == nil && p.Proto == packet.ProtoTCP && p.TCPFlags == packet.TCPSyn|packet.TCPAck && p.DstPort == sport
	})
	client.send(synPacket(false, "10.10.0.2", dst, sport, isn, tsval))
	sa = parseSeg(t, wait(t, synack, "cookie SYN/ACK"))
	o, _ := sa.TCPSynOptions()
	seq := uint32(isn + 1)
	if lostAck {
		seq = isn
	}
	toServer := server.expect(func(b []byte) bool {
		p := new(packet.Parsed)
		return p.Decode(b) == nil && p.Proto == packet.ProtoTCP && p.TCPFlags == packet.TCPSyn
	})
	client.send(tsSeg("10.10.0.2", dst, sport, 80, seq, sa.TCPSeq()+1, packet.TCPAck, tsval+1, o.TSval, 0))
	syn = parseSeg(t, wait(t, toServer, "the SYN to the server"))
	if syn.TCPSeq() != isn {
		t.Fatalf("SYN to the server with seq %d, want the client's ISN %d", syn.TCPSeq(), isn)
	}
	if so, _ := syn.TCPSynOptions(); so.MSS != 1460 || so.WScale != 7 || !so.SACKPerm || !so.TS {
		t.Fatalf("SYN to the server with options %+v, want the client's", so)
	}
	return sa, syn
}

// TestSynProxyLostAck: the client's handshake ACK was lost; its window
// probe carries the same cookie one sequence number lower, and the proxy
// takes it, with the client's real ISN and MSS (a cookie whose low bits
// were off by one used to pass with the MSS index one up).
func TestSynProxyLostAck(t *testing.T) {
	client, server, _ := synproxyGateway(t, "")
	proxyHandshake(t, client, server, "198.18.0.3", 41000, true)
}

// TestSynProxyServerWithoutWScale: the server declines window scaling
// while the client scales by 7. The client's windows reach the server
// rescaled (the server reads them unscaled), the server's small window
// reaches the client as one unit of the gateway's scale, not as shut.
func TestSynProxyServerWithoutWScale(t *testing.T) {
	client, server, g := synproxyGateway(t, "")
	_, syn := proxyHandshake(t, client, server, "198.18.0.3", 41001, false)
	so, _ := syn.TCPSynOptions()
	update := client.expect(func(b []byte) bool {
		p := new(packet.Parsed)
		return p.Decode(b) == nil && p.Proto == packet.ProtoTCP && p.TCPFlags == packet.TCPAck && p.DstPort == 41001
	})
	// The server's SYN/ACK: timestamps, no window scale, a 502-byte window.
	opts := []byte{2, 4, 0x05, 0xb4, 1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(opts[12:], so.TSval)
	server.send(packettest.Build(packettest.IP{Src: "198.18.0.3", Dst: syn.Src.NetIP(4).String()},
		packettest.TCP{SPort: 80, DPort: syn.SrcPort, Seq: 70000, Ack: syn.TCPSeq() + 1, Flags: packet.TCPSyn | packet.TCPAck, Win: 502, Opts: opts}, nil))
	u := parseSeg(t, wait(t, update, "the window update"))
	if u.TCPWindow() != 1 {
		t.Fatalf("window update %d, want 1 (502 bytes at the advertised scale 10, rounded up)", u.TCPWindow())
	}
	data := server.expect(func(b []byte) bool {
		p := new(packet.Parsed)
		return p.Decode(b) == nil && p.Proto == packet.ProtoTCP && len(p.Payload()) == 100
	})
	ut, _ := u.TCPSynOptions()
	client.send(tsSeg("10.10.0.2", "198.18.0.3", 41001, 80, 5001, u.TCPSeq(), packet.TCPAck|packet.TCPPsh, 102, ut.TSval, 100))
	d := parseSeg(t, wait(t, data, "the client's data"))
	if d.TCPWindow() != 502<<7 {
		t.Fatalf("the server got window %d, want the client's 502 << 7 = %d", d.TCPWindow(), 502<<7)
	}
	if d.TCPAck() != 70001 {
		t.Fatalf("the server got ack %d, want 70001", d.TCPAck())
	}
	if n := g.Counters.SynProxyOpen.Load(); n != 1 {
		t.Fatalf("%d proxied connections open", n)
	}
}

// TestSynProxyPortForward: a synproxy rule in front of a port forward
// (DNAT): the cookie SYN/ACK comes from the address and port the client
// dialled, and the connection reaches the server behind it.
func TestSynProxyPortForward(t *testing.T) {
	lanHost := newHost(t, 1500, "10.10.0.2", "fd10::2")
	wanHost := newHost(t, 1500, "198.18.0.2", "2001:db8:1::2")
	g := testGateway(t, linksConf+`
[[route]]
to = "10.10.0.0/24"
interface = "lan"
[[route]]
to = "fd10::/64"
interface = "lan"

[[nat.dnat]]
proto = "tcp"
dport = 8080
to = "10.10.0.2:80"
[[nat.dnat]]
proto = "tcp"
dport = 8080
to = "[fd10::2]:80"

[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { ct_state = ["invalid"], action = "drop" },
  { in = "wan", proto = "tcp", ct_status = ["dnat"], ct_state = ["new"], action = "synproxy" },
]
`, lanHost, wanHost)
	for i, c := range []struct{ listen, dial string }{
		{"10.10.0.2:80", "198.18.0.1:8080"},
		{"[fd10::2]:80", "[2001:db8:1::1]:8080"},
	} {
		roundTripVia(t, wanHost, lanHost, netip.MustParseAddrPort(c.listen), netip.MustParseAddrPort(c.dial), 256<<10)
		if n := g.Counters.SynProxyOpen.Load(); n != uint64(i+1) {
			t.Fatalf("%s: %d connections proxied, want %d", c.dial, n, i+1)
		}
	}
}
