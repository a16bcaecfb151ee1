package gateway

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"tungate/internal/packettest"
	"tungate/link"
	"tungate/packet"
)

// partialSource reads like the uplink's TCP stack: every TCP packet
// arrives in a batch of its own marked link.ChecksumPartial, with a wrong
// checksum in place of the one the stack did not compute.
type partialSource struct {
	*link.TUN
	flags link.Flags
}

func (s *partialSource) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := s.TUN.Read(bufs, sizes, offset)
	s.flags = 0
	if n == 1 {
		b := bufs[0][offset : offset+sizes[0]]
		if off := tcpHeaderAt(b); off >= 0 {
			binary.BigEndian.PutUint16(b[off+16:], binary.BigEndian.Uint16(b[off+16:])^0x5555)
			s.flags = link.ChecksumsVerified | link.ChecksumPartial
		}
	}
	return n, err
}

func (s *partialSource) ReadFlags() link.Flags { return s.flags }

// tcpHeaderAt is where the TCP header of an IPv4 or IPv6 (no extension
// headers) TCP packet begins, -1 for other packets.
func tcpHeaderAt(b []byte) int {
	switch {
	case len(b) >= 40 && b[0]>>4 == 4 && b[9] == packet.ProtoTCP:
		return int(b[0]&0xf) * 4
	case len(b) >= 60 && b[0]>>4 == 6 && b[6] == packet.ProtoTCP:
		return 40
	}
	return -1
}

// partialSink offloads like a TUN with the virtio header: it counts the
// packets handed to it unfinished and finishes them itself.
type partialSink struct {
	link.Link      // only Link's methods: a *link.TUN would bring WritePartialVec
	offload        bool
	marked, notTCP atomic.Int64
}

func (s *partialSink) CanWritePartial() bool { return s.offload }

func (s *partialSink) WritePartial(bufs [][]byte, offset int, partial []bool) (int, error) {
	for i, b := range bufs {
		if partial[i] {
			s.marked.Add(1)
			if !packet.FinishTCPChecksum(b[offset:]) {
				s.notTCP.Add(1)
			}
		}
	}
	return s.Write(bufs, offset)
}

// offloadGateway runs the lan (client) as a partial-checksum source and
// the wan (server) behind sink.
func offloadGateway(t *testing.T, offload bool) (client, server *host, sink *partialSink) {
	client = newHost(t, 1500, "10.10.0.2", "fd10::2")
	server = newHost(t, 1500, "198.18.0.2", "2001:db8:1::2")
	cfg, err := ParseConfig([]byte(fmt.Sprintf(twoLinks, 1500, 1500)))
	if err != nil {
		t.Fatal(err)
	}
	sink = &partialSink{Link: link.FromTUN(server.dev), offload: offload}
	i := 0
	g, err := New(cfg, Options{
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
		Open: func(ic *InterfaceConfig, log *zap.Logger) (link.Link, error) {
			i++
			if i == 1 {
				return &partialSource{TUN: link.FromTUN(client.dev)}, nil
			}
			return sink, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, g)
	return client, server, sink
}

// TCP segments read with their checksums unfilled reach the server whole:
// a link that offloads gets them marked, any other gets them summed by the
// datapath (the server's stack drops a segment with a wrong checksum, so
// the transfer's digest proves every one was finished).
func TestPartialChecksums(t *testing.T) {
	for _, offload := range []bool{true, false} {
		t.Run(fmt.Sprintf("offload=%v", offload), func(t *testing.T) {
			client, server, sink := offloadGateway(t, offload)
			for _, dst := range []string{"198.18.0.2:8080", "[2001:db8:1::2]:8080"} {
				transfer(t, client, server, netip.MustParseAddrPort(dst), 256<<10)
			}
			if offload && sink.marked.Load() == 0 {
				t.Error("no segment reached the offloading link marked partial")
			}
			if !offload && sink.marked.Load() != 0 {
				t.Errorf("%d segments marked partial reached a link that cannot offload", sink.marked.Load())
			}
			// A ping from the same link is not the stack's: never marked.
			// (The marked count may still move during it: the transfers'
			// last segments, a FIN or a retransmission, can come late.
			// Anything marked that is not TCP is counted in notTCP.)
			ping(t, client, "10.10.0.2", "198.18.0.2")
			if n := sink.notTCP.Load(); n != 0 {
				t.Errorf("%d packets marked partial were not TCP (an ICMP echo among them?)", n)
			}
		})
	}
}

// lazySource is a partialSource that reads lazily (link.LazyReader), as
// the uplink does: a TCP packet's payload stays in the source's own
// memory, in three pieces, and the buffer behind its headers is
// overwritten with junk, so any part of the datapath that reads it
// without filling it in first forwards junk (and the transfer's digest
// fails).
type lazySource struct {
	partialSource
	lazyOn bool
	hdr    []int
	pieces [][][]byte
	store  [][]byte
	lazily atomic.Int64 // packets left in pieces
}

func (s *lazySource) ReadLazily() { s.lazyOn = true }

func (s *lazySource) Lazy(i int) (int, [][]byte) {
	if i >= len(s.pieces) || s.pieces[i] == nil {
		return 0, nil
	}
	return s.hdr[i], s.pieces[i]
}

func (s *lazySource) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := s.partialSource.Read(bufs, sizes, offset)
	for len(s.pieces) < len(bufs) {
		s.pieces, s.hdr, s.store = append(s.pieces, nil), append(s.hdr, 0), append(s.store, make([]byte, 1<<16))
	}
	for i := 0; i < n; i++ {
		s.pieces[i] = nil
		b := bufs[i][offset : offset+sizes[i]]
		off := tcpHeaderAt(b)
		if !s.lazyOn || s.flags&link.ChecksumPartial == 0 || off < 0 {
			continue
		}
		hdr := off + int(b[off+12]>>4)*4
		pl := len(b) - hdr
		if pl < 3 {
			continue
		}
		st := s.store[i][:pl]
		copy(st, b[hdr:])
		for j := hdr; j < len(b); j++ {
			b[j] = 0xa5
		}
		s.hdr[i] = hdr
		s.pieces[i] = [][]byte{st[:pl/3], st[pl/3 : pl/2], st[pl/2:]}
		s.lazily.Add(1)
	}
	return n, err
}

// vecSink is a partialSink that takes packets in pieces (link.VecWriter)
// and makes them whole before checking and writing them.
type vecSink struct {
	partialSink
	pieced atomic.Int64
	gso    atomic.Int64
	whole  [][]byte
}

func (s *vecSink) WriteOffload(bufs [][]byte, offset int, offs []link.Offload) (int, error) {
	partial := make([]bool, len(bufs))
	for i := range bufs {
		partial[i] = offs[i].Partial
		if offs[i].GSOSize != 0 {
			s.gso.Add(1)
		}
		if offs[i].Pieces == nil {
			continue
		}
		s.pieced.Add(1)
		if !offs[i].Partial {
			s.notTCP.Add(1) // only partial packets may come in pieces
		}
		for len(s.whole) <= i {
			s.whole = append(s.whole, make([]byte, 0, link.Headroom+1<<16))
		}
		w := append(s.whole[i][:0], bufs[i]...)
		for _, p := range offs[i].Pieces {
			w = append(w, p...)
		}
		s.whole[i] = w
		bufs[i] = w
	}
	return s.WritePartial(bufs, offset, partial)
}

// noVecSink is a partialSink only: packets in pieces must reach it whole.
type noVecSink struct{ partialSink }

// lazyGateway is offloadGateway with a lazy source and a sink that takes
// pieces (vec) or not; extra is added to the config.
func lazyGateway(t *testing.T, offload, vec bool, extra string) (client, server *host, src *lazySource, sink link.Link, ps *partialSink, g *Gateway) {
	client = newHost(t, 1500, "10.10.0.2", "fd10::2")
	server = newHost(t, 1500, "198.18.0.2", "2001:db8:1::2")
	cfg, err := ParseConfig([]byte(fmt.Sprintf(twoLinks, 1500, 1500) + extra))
	if err != nil {
		t.Fatal(err)
	}
	src = &lazySource{partialSource: partialSource{TUN: link.FromTUN(client.dev)}}
	if vec {
		vs := &vecSink{partialSink: partialSink{Link: link.FromTUN(server.dev), offload: offload}}
		sink, ps = vs, &vs.partialSink
	} else {
		ns := &noVecSink{partialSink{Link: link.FromTUN(server.dev), offload: offload}}
		sink, ps = ns, &ns.partialSink
	}
	i := 0
	g, err = New(cfg, Options{
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
		Open: func(ic *InterfaceConfig, log *zap.Logger) (link.Link, error) {
			i++
			if i == 1 {
				return src, nil
			}
			return sink, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, g)
	return client, server, src, sink, ps, g
}

// A link that reads lazily (the uplink) leaves payloads in pieces: they
// reach the server whole and unchanged whether the output link gathers
// pieces itself (a kernel TUN's writev), offloads checksums only, or
// neither; and when a helper reads the payloads, or a capture watches the
// output link, the datapath makes them whole first.
func TestLazyPayloads(t *testing.T) {
	cases := []struct {
		name         string
		offload, vec bool
		extra        string
		capture      bool
		wantPieced   bool
	}{
		{"gathered", true, true, "", false, true},
		{"offload only", true, false, "", false, false},
		{"no offload", false, true, "", false, false},
		{"helper", true, true, "[helpers.ftp]\nports = [8080]\n", false, false},
		{"capture", true, true, "", true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			client, server, src, _, ps, g := lazyGateway(t, c.offload, c.vec, c.extra)
			var caps []*capturedTCP
			if c.capture {
				for _, name := range []string{"lan", "wan"} {
					caps = append(caps, collectTCP(t, g, name))
				}
			}
			for _, dst := range []string{"198.18.0.2:8080", "[2001:db8:1::2]:8080"} {
				transfer(t, client, server, netip.MustParseAddrPort(dst), 256<<10)
			}
			if src.lazily.Load() == 0 {
				t.Fatal("the source left no payload in pieces: the datapath did not ask for lazy reads")
			}
			if c.offload && !c.capture && ps.marked.Load() == 0 { // a capture takes the checksums as sent
				t.Error("no segment reached the offloading link marked partial")
			}
			if n := ps.notTCP.Load(); n != 0 {
				t.Errorf("%d packets marked partial were not TCP, or came in pieces unmarked", n)
			}
			var got int64
			if vs, ok := g.pl.Load().links[1].Dev.(*vecSink); ok {
				got = vs.pieced.Load()
			}
			if c.wantPieced && got == 0 {
				t.Error("no packet reached the gathering link in pieces")
			}
			if !c.wantPieced && got != 0 {
				t.Errorf("%d packets reached the link in pieces; want all whole", got)
			}
			for _, cp := range caps {
				cp.check(t)
			}
		})
	}
}

// capturedTCP checks the TCP packets with payload a capture of one link
// records: each whole, none carrying the junk a lazySource leaves in its
// buffers, and those sent with their checksum right.
type capturedTCP struct {
	c    *Capture
	done chan struct{}
	mu   sync.Mutex
	data int // TCP packets with payload seen
	bad  []string
}

func collectTCP(t *testing.T, g *Gateway, name string) *capturedTCP {
	c, err := g.StartCapture(name, CaptureOptions{Queue: 4096})
	if err != nil {
		t.Fatal(err)
	}
	ct := &capturedTCP{c: c, done: make(chan struct{})}
	stop := make(chan struct{})
	t.Cleanup(func() { c.Stop(); close(stop); <-ct.done })
	go func() {
		defer close(ct.done)
		junk := bytes.Repeat([]byte{0xa5}, 16)
		var p packet.Parsed
		for {
			var r *CapturedPacket
			select {
			case r = <-c.Packets():
			case <-stop:
				return
			}
			ct.mu.Lock()
			if p.Decode(r.Data) == nil && p.Proto == packet.ProtoTCP && len(p.Payload()) > 0 {
				ct.data++
				switch {
				case r.Dir == CaptureOut && !p.L4ChecksumValid():
					// (Inbound, a capture shows the checksum as the
					// source left it: not filled in.)
					ct.bad = append(ct.bad, fmt.Sprintf("%s %v: bad TCP checksum", name, r.Dir))
				case bytes.Contains(r.Data, junk):
					ct.bad = append(ct.bad, fmt.Sprintf("%s %v: junk instead of the payload", name, r.Dir))
				}
			}
			ct.mu.Unlock()
			c.Release(r)
		}
	}()
	return ct
}

func (ct *capturedTCP) check(t *testing.T) {
	t.Helper()
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if ct.data == 0 {
		t.Errorf("capture of %s recorded no TCP payload", ct.c.Interface())
	}
	for i, b := range ct.bad {
		if i == 5 {
			t.Errorf("... %d more", len(ct.bad)-5)
			break
		}
		t.Error(b)
	}
}

// lazyBenchDev delivers one TCP segment per Read, marked partial like the
// uplink's: whole, or (lazy) its headers only with the payload in pieces.
type lazyBenchDev struct {
	nullDev
	pkt    []byte
	hdr    int
	pieces [][]byte
	lazy   bool
}

func (d *lazyBenchDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if d.lazy {
		copy(bufs[0][offset:], d.pkt[:d.hdr])
	} else {
		copy(bufs[0][offset:], d.pkt)
	}
	sizes[0] = len(d.pkt)
	return 1, nil
}

func (d *lazyBenchDev) ReadFlags() link.Flags { return link.ChecksumsVerified | link.ChecksumPartial }

// lazyBenchReader is a lazyBenchDev that says it can read lazily.
type lazyBenchReader struct{ *lazyBenchDev }

func (d lazyBenchReader) ReadLazily()              { d.lazy = true }
func (d lazyBenchReader) Lazy(int) (int, [][]byte) { return d.hdr, d.pieces }

// vecNullDev discards writes, taking partial checksums and pieces.
type vecNullDev struct{ nullDev }

func (d *vecNullDev) CanWritePartial() bool { return true }
func (d *vecNullDev) WritePartial(bufs [][]byte, offset int, partial []bool) (int, error) {
	return len(bufs), nil
}
func (d *vecNullDev) WriteOffload(bufs [][]byte, offset int, offs []link.Offload) (int, error) {
	return len(bufs), nil
}

// BenchmarkForwardLazy forwards the uplink's 64 KiB segments (read,
// conntrack, NAT, queue and the write call, to a device that discards
// them): read whole into the datapath's buffer, or lazily, its payload
// left in the link's pieces for the device's writev. Neither allocates.
func BenchmarkForwardLazy(b *testing.B) {
	for _, lazy := range []bool{false, true} {
		b.Run(fmt.Sprintf("lazy=%v", lazy), func(b *testing.B) {
			pkt := tcpPacket("10.10.0.2", "198.18.0.2", 40000, 80, 1001, 5001, header.TCPFlagAck, 65000)
			dev := &lazyBenchDev{nullDev: nullDev{done: make(chan struct{})}, pkt: pkt, hdr: 40,
				pieces: [][]byte{pkt[40:30040], pkt[30040:]}}
			var in link.Link = dev
			if lazy {
				in = lazyBenchReader{dev}
			}
			g, lan := masqueradeFlow(b, 65520, in, &vecNullDev{nullDev{done: make(chan struct{})}}, false)
			lan.gso, lan.partial = true, true
			before := g.Counters.Sent.Load()
			b.SetBytes(int64(len(pkt)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				n, _ := lan.dev.Read(lan.bufs, lan.sizes, headroom)
				lan.batch(n)
			}
			b.StopTimer()
			if got := g.Counters.Sent.Load() - before; got != uint64(b.N) {
				b.Fatalf("sent %d of %d packets; drops %v", got, b.N, g.Counters.Snapshot())
			}
		})
	}
}

// recordDev records what is written to it (whole packets and their
// offloads); recordOffloadDev offers the offloads of a kernel TUN.
type recordDev struct {
	nullDev
	pkts [][]byte
	offs []link.Offload
}

func (d *recordDev) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		d.pkts = append(d.pkts, append([]byte(nil), b[offset:]...))
		d.offs = append(d.offs, link.Offload{})
	}
	return len(bufs), nil
}

// recordOffloadDev is a recordDev that takes partial checksums, pieces
// and packets to be cut.
type recordOffloadDev struct{ *recordDev }

func (d recordOffloadDev) CanWritePartial() bool { return true }
func (d recordOffloadDev) WritePartial(bufs [][]byte, offset int, partial []bool) (int, error) {
	offs := make([]link.Offload, len(bufs))
	for i := range offs {
		offs[i].Partial = partial[i]
	}
	return d.WriteOffload(bufs, offset, offs)
}
func (d recordOffloadDev) WriteOffload(bufs [][]byte, offset int, offs []link.Offload) (int, error) {
	for i, b := range bufs {
		p := link.Fill(append(make([]byte, 0, len(b)+1<<16), b[offset:]...), offs[i].Pieces)
		d.pkts = append(d.pkts, p)
		o := offs[i]
		o.Pieces = nil
		d.offs = append(d.offs, o)
	}
	return len(bufs), nil
}

// gsoDev delivers one packet per Read like the uplink's stack with GSO:
// a TCP packet of 20,000 payload bytes to be cut into 1,400-byte
// segments, its checksum left unfilled, lazily (in pieces) or whole.
type gsoDev struct {
	lazyBenchDev
	size int
}

func (d *gsoDev) GSO(int) int { return d.size }

type gsoLazyDev struct{ *gsoDev }

func (d gsoLazyDev) ReadLazily()              { d.lazy = true }
func (d gsoLazyDev) Lazy(int) (int, [][]byte) { return d.hdr, d.pieces }

// A TCP packet the uplink's stack sent for cutting (GSO) crosses the
// datapath whole: to a device that cuts (a kernel TUN) it goes as one
// packet marked with its segment size, to any other as the segments,
// each with its own sequence number and a right checksum; it is never
// refused as larger than the MTU.
func TestGSOPackets(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, offload := range []bool{true, false} {
			for _, lazy := range []bool{false, true} {
				for _, mtu := range []int{1500, 65520} {
					t.Run(fmt.Sprintf("v6=%v/offload=%v/lazy=%v/mtu=%d", v6, offload, lazy, mtu), func(t *testing.T) {
						testGSOPacket(t, v6, offload, lazy, mtu)
					})
				}
			}
		}
	}
}

// testGSOPacket: at an MTU that would carry the packet whole too (65520)
// it is still cut: its segment size is the receiver's MSS.
func testGSOPacket(t *testing.T, v6, offload, lazy bool, mtu int) {
	src, dst := "10.10.0.2", "198.18.0.2"
	if v6 {
		src, dst = "fd10::2", "2001:db8:1::2"
	}
	payload := make([]byte, 20000)
	for i := range payload {
		payload[i] = byte(i * 13)
	}
	pkt := packettest.Build(packettest.IP{V6: v6, Src: src, Dst: dst, DF: true},
		packettest.TCP{SPort: 40000, DPort: 80, Seq: 1001, Ack: 5001, Flags: uint8(header.TCPFlagAck | header.TCPFlagPsh), Win: 65535}, payload)
	hdr := len(pkt) - len(payload)
	gd := &gsoDev{lazyBenchDev: lazyBenchDev{nullDev: nullDev{done: make(chan struct{})}, pkt: pkt, hdr: hdr,
		pieces: [][]byte{pkt[hdr : hdr+7000], pkt[hdr+7000:]}}, size: 1400}
	rec := &recordDev{nullDev: nullDev{done: make(chan struct{})}}
	var in link.Link = gd
	if lazy {
		in = gsoLazyDev{gd}
	}
	var out link.Link = rec
	if offload {
		out = recordOffloadDev{rec}
	}
	g, lan := masqueradeFlow(t, mtu, in, out, v6)
	lan.gso, lan.partial = true, true
	n, _ := lan.dev.Read(lan.bufs, lan.sizes, headroom)
	lan.batch(n)
	if d := g.Counters.Drops[DropMTU].Load(); d != 0 {
		t.Fatalf("a packet to be cut was dropped as too big (%d); counters %v", d, g.Counters.Snapshot())
	}
	if offload {
		if len(rec.pkts) != 1 || rec.offs[0].GSOSize != 1400 || !rec.offs[0].Partial {
			t.Fatalf("the cutting device got %d packets, offloads %+v; want 1 with GSOSize 1400", len(rec.pkts), rec.offs)
		}
		if !bytes.Equal(rec.pkts[0][hdr:], payload) {
			t.Fatal("the packet to be cut lost or changed its payload")
		}
		return
	}
	want := (len(payload) + 1399) / 1400
	if len(rec.pkts) != want {
		t.Fatalf("got %d segments, want %d", len(rec.pkts), want)
	}
	var got []byte
	var p packet.Parsed
	for k, s := range rec.pkts {
		if err := p.Decode(s); err != nil {
			t.Fatalf("segment %d: %v", k, err)
		}
		if len(p.Payload()) > 1400 || !p.L4ChecksumValid() || p.SrcPort != 40000 {
			t.Fatalf("segment %d: %d bytes, checksum valid %v, source port %d (masquerade keeps it)", k, p.Len(), p.L4ChecksumValid(), p.SrcPort)
		}
		if seq := binary.BigEndian.Uint32(s[p.L4Off+4:]); seq != 1001+uint32(len(got)) {
			t.Fatalf("segment %d: sequence %d, want %d", k, seq, 1001+len(got))
		}
		got = append(got, p.Payload()...)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("the segments do not carry the packet's payload")
	}
}

// masqueradeFlow builds a masquerading gateway of MTU mtu on the devices
// in (lan) and out (wan), run by hand, and takes a TCP connection
// 40000 → 80 (IPv6 when v6) through its handshake; it returns the gateway
// and the lan worker.
func masqueradeFlow(tb testing.TB, mtu int, in, out link.Link, v6 bool) (*Gateway, *worker) {
	tb.Helper()
	g := devGateway(tb, fmt.Sprintf(twoLinks, mtu, mtu)+"[[nat.masquerade]]\nout = \"wan\"\n", in, out)
	lan := newWorker(g, g.Links()[0])
	wan := newWorker(g, g.Links()[1])
	lan.rs, wan.rs = g.Rules(), g.Rules()
	lan.now, wan.now = g.ct.Now(), g.ct.Now()
	src, dst, nat := "10.10.0.2", "198.18.0.2", "198.18.0.1"
	if v6 {
		src, dst, nat = "fd10::2", "2001:db8:1::2", "2001:db8:1::1"
	}
	runPacket(lan, tcpPacket(src, dst, 40000, 80, 1000, 0, header.TCPFlagSyn, 0))
	runPacket(wan, tcpPacket(dst, nat, 80, 40000, 5000, 1001, header.TCPFlagSyn|header.TCPFlagAck, 0))
	return g, lan
}

// devGateway builds (and does not run) a gateway from conf whose two
// links are the devices lan and wan.
func devGateway(tb testing.TB, conf string, lan, wan link.Link) *Gateway {
	tb.Helper()
	cfg, err := ParseConfig([]byte(conf))
	if err != nil {
		tb.Fatal(err)
	}
	devs := []link.Link{lan, wan}
	g, err := New(cfg, Options{Logger: nopLogger(), Open: func(*InterfaceConfig, *zap.Logger) (link.Link, error) {
		d := devs[0]
		devs = devs[1:]
		return d, nil
	}})
	if err != nil {
		tb.Fatal(err)
	}
	return g
}
