package alg

import (
	"net/netip"
	"sync"
	"testing"

	"tungate/conntrack"
	"tungate/internal/packettest"
	"tungate/packet"
)

// headroom is the spare capacity every built packet has, as the gateway's
// read buffers do, so rewrites can grow it.
const headroom = 512

func addr(s string) packet.Addr { return packet.AddrFrom(netip.MustParseAddr(s)) }

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// buildTCP builds a TCP segment with valid checksums and headroom.
func buildTCP(src, dst netip.AddrPort, seq, ack uint32, flags uint8, opts, payload []byte) []byte {
	for len(opts)%4 != 0 {
		opts = append(opts, 1) // NOP padding
	}
	return withHeadroom(packettest.Build(ipOf(src, dst),
		packettest.TCP{SPort: src.Port(), DPort: dst.Port(), Seq: seq, Ack: ack, Flags: flags, Win: 65535, Opts: opts}, payload))
}

// buildUDP builds a UDP datagram with valid checksums and headroom.
func buildUDP(src, dst netip.AddrPort, payload []byte) []byte {
	return withHeadroom(packettest.Build(ipOf(src, dst), packettest.UDP{SPort: src.Port(), DPort: dst.Port()}, payload))
}

func ipOf(src, dst netip.AddrPort) packettest.IP {
	return packettest.IP{V6: src.Addr().Is6(), Src: src.Addr().String(), Dst: dst.Addr().String(), DF: true}
}

func withHeadroom(b []byte) []byte {
	return append(make([]byte, 0, len(b)+headroom), b...)
}

// bind is one call the fake NAT received.
type bind struct {
	src  bool
	addr packet.Addr
	port uint16
}

// fakeNAT implements NAT on connection tuples the way the engine does:
// binding a manip rewrites the reply tuple and marks it done.
type fakeNAT struct {
	mu    sync.Mutex // guards binds (parallel tests share one)
	binds []bind
	taken map[uint16]bool // read-only once traffic flows
}

func (n *fakeNAT) BindSource(c *conntrack.Conn, a packet.Addr, port uint16) error {
	n.mu.Lock()
	n.binds = append(n.binds, bind{src: true, addr: a, port: port})
	n.mu.Unlock()
	rt := *c.Tuple(conntrack.DirReply)
	rt.Dst, rt.DstPort = a, port
	c.SetReplyTuple(rt)
	c.SetStatus(conntrack.StatusSrcNAT | conntrack.StatusSrcNATDone)
	return nil
}

func (n *fakeNAT) BindDestination(c *conntrack.Conn, a packet.Addr, port uint16) error {
	n.mu.Lock()
	n.binds = append(n.binds, bind{addr: a, port: port})
	n.mu.Unlock()
	rt := *c.Tuple(conntrack.DirReply)
	rt.Src, rt.SrcPort = a, port
	c.SetReplyTuple(rt)
	c.SetStatus(conntrack.StatusDstNAT | conntrack.StatusDstNATDone)
	return nil
}

func (n *fakeNAT) PortAvailable(proto uint8, a packet.Addr, port uint16) bool { return !n.taken[port] }

// gateway is a miniature datapath in netfilter order: conntrack, DNAT,
// helper assignment, SNAT, translation, Process, confirm.
type gateway struct {
	t   testing.TB
	tbl *conntrack.Table
	m   *Registry
	nat *fakeNAT
	// masq: new connections from inside (prefix) leaving get their source
	// rewritten to masqTo, keeping the port (the fake allocator).
	inside netip.Prefix
	masqTo map[uint8]packet.Addr // by family
	// dnat: new connections to dnatFrom get their destination rewritten.
	dnatFrom, dnatTo netip.AddrPort
	// ruleHelper is what a rule's `helper =` would say for new connections.
	ruleHelper string
}

func newGateway(t testing.TB, cfg Config) *gateway {
	t.Helper()
	return newGatewayCT(t, conntrack.Config{}, cfg)
}

func newGatewayCT(t testing.TB, ct conntrack.Config, cfg Config) *gateway {
	t.Helper()
	if ct.Max == 0 {
		ct.Max = 4096 // small tables: the tests build hundreds
	}
	tbl, err := conntrack.NewTable(ct)
	if err != nil {
		t.Fatal(err)
	}
	g := &gateway{t: t, tbl: tbl, nat: &fakeNAT{taken: map[uint16]bool{}}, masqTo: map[uint8]packet.Addr{}}
	g.m, err = New(cfg, tbl, g.nat, nil)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// masquerade enables SNAT of connections from inside to the given
// external addresses.
func (g *gateway) masquerade(inside string, ext ...string) *gateway {
	g.inside = netip.MustParsePrefix(inside)
	for _, e := range ext {
		a := netip.MustParseAddr(e)
		fam := uint8(6)
		if a.Is4() {
			fam = 4
		}
		g.masqTo[fam] = packet.AddrFrom(a)
	}
	return g
}

// fwd runs one packet through the gateway. It returns the packet as sent
// (a copy) and conntrack's result; out is nil when the packet was dropped.
func (g *gateway) fwd(b []byte) (out []byte, res conntrack.Result) {
	g.t.Helper()
	p := new(packet.Parsed)
	if err := p.Decode(b); err != nil {
		g.t.Fatalf("decode: %v", err)
	}
	now := g.tbl.Now()
	g.tbl.In(p, now, &res)
	c := res.Conn
	if c == nil {
		g.t.Fatalf("conntrack: no connection (info %v)", res.Info)
	}
	if !c.Confirmed() {
		ot := c.Tuple(conntrack.DirOriginal)
		if c.Status()&conntrack.StatusDstNATDone == 0 && g.dnatFrom.IsValid() &&
			ot.DstAddr() == g.dnatFrom.Addr() && ot.DstPort == g.dnatFrom.Port() {
			rt := *c.Tuple(conntrack.DirReply)
			rt.Src, rt.SrcPort = packet.AddrFrom(g.dnatTo.Addr()), g.dnatTo.Port()
			c.SetReplyTuple(rt)
			c.SetStatus(conntrack.StatusDstNAT | conntrack.StatusDstNATDone)
		}
		g.m.Assign(c, p, g.ruleHelper)
		rt := *c.Tuple(conntrack.DirReply)
		if to, ok := g.masqTo[ot.Family]; ok && c.Status()&conntrack.StatusSrcNATDone == 0 &&
			g.inside.Contains(ot.SrcAddr()) && !g.inside.Contains(rt.SrcAddr()) {
			rt.Dst = to
			c.SetReplyTuple(rt)
			c.SetStatus(conntrack.StatusSrcNAT | conntrack.StatusSrcNATDone)
		}
	}
	other := c.Tuple(1 - res.Dir)
	p.SetSrc(other.Dst)
	p.SetSrcPort(other.DstPort)
	p.SetDst(other.Src)
	p.SetDstPort(other.SrcPort)
	if Wanted(&res) && !g.m.Process(p, &res) {
		return nil, res
	}
	if !c.Confirmed() {
		if err := g.tbl.Confirm(c, now); err != nil {
			g.t.Fatalf("confirm: %v", err)
		}
	}
	var q packet.Parsed
	if err := q.Decode(p.Bytes()); err != nil {
		g.t.Fatalf("sent packet does not decode: %v", err)
	}
	if !q.L4ChecksumValid() {
		g.t.Fatalf("sent packet has a bad transport checksum")
	}
	return append([]byte(nil), p.Bytes()...), res
}

// expectations returns the table's live expectations.
func (g *gateway) expectations() []*conntrack.Expectation {
	var es []*conntrack.Expectation
	g.tbl.Expectations(func(e *conntrack.Expectation) bool { es = append(es, e); return true })
	return es
}

// endpoint is one side of a TCP connection, in its own sequence space.
type endpoint struct {
	me, peer netip.AddrPort // as this side addresses packets
	snd, rcv uint32         // next sequence to send / expected to receive
	got      []byte         // the stream received
}

// session is a TCP connection through the gateway between a client and a
// server, with every delivered segment checked for stream continuity and
// acks checked against what the receiver really sent.
type session struct {
	g      *gateway
	c, s   *endpoint
	ctrl   *conntrack.Conn
	lastIn conntrack.Result
}

// open runs the three-way handshake: client at cli talks to srv (the
// address it uses); the server really is at real (equal to srv without
// DNAT).
func (g *gateway) open(cli, srv, real string) *session {
	g.t.Helper()
	x := &session{g: g,
		c: &endpoint{me: ap(cli), peer: ap(srv), snd: 1000},
		s: &endpoint{me: ap(real), snd: 0x7ffffff0}, // near a wrap of the sign bit
	}
	out, res := g.fwd(buildTCP(x.c.me, x.c.peer, x.c.snd, 0, packet.TCPSyn, nil, nil))
	if out == nil {
		g.t.Fatal("SYN dropped")
	}
	x.ctrl = res.Conn
	var p packet.Parsed
	_ = p.Decode(out)
	x.s.peer = netip.AddrPortFrom(p.SrcIP(), p.SrcPort)
	x.c.snd++
	x.s.rcv = p.TCPSeq() + 1
	out, _ = g.fwd(buildTCP(x.s.me, x.s.peer, x.s.snd, x.s.rcv, packet.TCPSyn|packet.TCPAck, nil, nil))
	_ = p.Decode(out)
	x.s.snd++
	x.c.rcv = p.TCPSeq() + 1
	if p.TCPAck() != x.c.snd {
		g.t.Fatalf("SYN-ACK acks %d, client sent up to %d", p.TCPAck(), x.c.snd)
	}
	return x
}

// segment is one packet as the receiving side got it.
type segment struct {
	seq, ack uint32
	payload  []byte
	opts     []byte
	dropped  bool
}

// send sends data from one endpoint to the other (fromClient picks the
// side), acking everything received, and delivers it: the receiver checks
// the segment continues its stream and the ack covers exactly what it
// sent.
func (x *session) send(fromClient bool, data string, opts ...byte) segment {
	x.g.t.Helper()
	from, to := x.s, x.c
	if fromClient {
		from, to = x.c, x.s
	}
	out, res := x.g.fwd(buildTCP(from.me, from.peer, from.snd, from.rcv, packet.TCPAck|packet.TCPPsh, opts, []byte(data)))
	x.lastIn = res
	from.snd += uint32(len(data))
	if out == nil {
		return segment{dropped: true}
	}
	return x.deliver(to, out)
}

func (x *session) deliver(to *endpoint, out []byte) segment {
	x.g.t.Helper()
	var p packet.Parsed
	if err := p.Decode(out); err != nil {
		x.g.t.Fatal(err)
	}
	sg := segment{seq: p.TCPSeq(), ack: p.TCPAck(), payload: append([]byte(nil), p.Payload()...), opts: append([]byte(nil), p.TCPOptions()...)}
	if netip.AddrPortFrom(p.DstIP(), p.DstPort) != to.me {
		x.g.t.Fatalf("delivered to %v:%d, want %v", p.DstIP(), p.DstPort, to.me)
	}
	if sg.seq != to.rcv {
		x.g.t.Fatalf("stream hole or overlap: segment seq %d, receiver expects %d", sg.seq, to.rcv)
	}
	if sg.ack != to.snd {
		x.g.t.Fatalf("ack %d does not match what the receiver sent (%d)", sg.ack, to.snd)
	}
	to.rcv += uint32(len(sg.payload))
	to.got = append(to.got, sg.payload...)
	return sg
}

// sendRaw sends data at an explicit sequence number (a retransmission or a
// segment after a hole), without delivering it; the sender's next sequence
// number moves up to its end.
func (x *session) sendRaw(fromClient bool, seq uint32, data string, opts ...byte) ([]byte, conntrack.Result) {
	x.g.t.Helper()
	from := x.s
	if fromClient {
		from = x.c
	}
	out, res := x.g.fwd(buildTCP(from.me, from.peer, seq, from.rcv, packet.TCPAck|packet.TCPPsh, opts, []byte(data)))
	if end := seq + uint32(len(data)); seqAfter(end, from.snd) {
		from.snd = end
	}
	return out, res
}

// retransmitted checks a retransmitted segment against what the receiver
// already has: same place, same bytes (after the rewrites).
func (x *session) retransmitted(toClient bool, out []byte) {
	x.g.t.Helper()
	to := x.s
	if toClient {
		to = x.c
	}
	var p packet.Parsed
	if err := p.Decode(out); err != nil {
		x.g.t.Fatal(err)
	}
	base := to.rcv - uint32(len(to.got))
	off := int(int32(p.TCPSeq() - base))
	pl := p.Payload()
	if off < 0 || off+len(pl) > len(to.got) {
		x.g.t.Fatalf("retransmission at stream offset %d+%d beyond the %d bytes received", off, len(pl), len(to.got))
	}
	if string(to.got[off:off+len(pl)]) != string(pl) {
		x.g.t.Fatalf("retransmission differs from the bytes first delivered:\n got %q\nwant %q", pl, to.got[off:off+len(pl)])
	}
}

// ack sends a pure ACK (with options, e.g. SACK) from one side and returns
// the segment as delivered, checked like send.
func (x *session) ack(fromClient bool, opts ...byte) segment {
	x.g.t.Helper()
	return x.send(fromClient, "", opts...)
}

// sackOpt builds a SACK option (kind 5) with the given edges, preceded by
// two NOPs so the edges are 32-bit aligned, or by one to misalign them.
func sackOpt(aligned bool, edges ...uint32) []byte {
	var o []byte
	if aligned {
		o = append(o, 1, 1)
	} else {
		o = append(o, 1)
	}
	o = append(o, 5, byte(2+4*len(edges)))
	for _, e := range edges {
		o = append(o, byte(e>>24), byte(e>>16), byte(e>>8), byte(e))
	}
	return o
}
