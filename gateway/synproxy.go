package gateway

import (
	"crypto/rand"
	"encoding/binary"

	"github.com/dchest/siphash"

	"tungate/conntrack"
	"tungate/packet"
	"tungate/rules"
)

// The SYN proxy (action = "synproxy", Linux's SYNPROXY target, pf's
// synproxy state). A SYN the rule takes is answered by the gateway with a
// SYN cookie and leaves nothing behind: no connection, no NAT mapping, so
// a flood of SYNs from forged sources costs a hash and one small packet
// each instead of a table entry that an early drop must then reclaim. Only
// the client's ACK that returns a valid cookie becomes a connection: the
// gateway rebuilds the client's SYN from the cookie and sends it to the
// server through the whole datapath (conntrack, NAT, the rules), and when
// the server answers, acknowledges it in the client's name and opens the
// client's window, which its SYN/ACK kept shut. From then on each packet
// is translated: the server's sequence numbers (the conntrack SeqAdj the
// FTP helper uses too), its timestamps, and its window when the server's
// window scale is not the one advertised for it.

// cookieMSS are the MSS values a cookie can carry (three bits): a
// client's MSS is rounded down to one of them.
var cookieMSS = [8]uint16{536, 1220, 1360, 1440, 1460, 4036, 8960, 65483}

// cookieTimeShift makes a cookie's time unit 2^36 ns (68.7 s). A cookie
// carries the unit's two low bits and is accepted during its unit and the
// next, so the client has 69 to 137 s to answer, as Linux's two minutes.
const cookieTimeShift = 36

// Bits of a cookie (cookie − client ISN): the MSS index, then the time.
const (
	cookieMSSBits  = 3
	cookieTimeBits = 2
	cookieHashMask = ^uint32(1<<(cookieMSSBits+cookieTimeBits) - 1)
)

// The gateway's timestamp in its SYN/ACK carries what the cookie cannot:
// the client's window scale (4 bits, packet.NoWScale for none) and SACK
// permission, echoed back by the client in its ACK (Linux's
// synproxy_init_timestamp_cookie).
const (
	tsOptBits   = 6
	tsWScale    = 0xf
	tsSACKPerm  = 1 << 4
	tsOptMask   = 1<<tsOptBits - 1
	tsClockUnit = 1e6 // ms, as Linux's TCP timestamps
)

// synCookies makes and checks SYN cookies: SipHash-2-4 (a keyed PRF, as
// Linux's syncookies use) of the tuple, the time unit and the MSS index.
// The key is random per process: a cookie outlives neither a restart nor
// the two minutes it is good for.
type synCookies struct {
	k0, k1 uint64
}

func newSynCookies() *synCookies {
	var k [16]byte
	rand.Read(k[:])
	return &synCookies{k0: binary.LittleEndian.Uint64(k[:]), k1: binary.LittleEndian.Uint64(k[8:])}
}

// cookieTuple is a connection's tuple as the client sent its SYN, before
// any NAT: what the cookie is keyed on, what its SYN/ACK answers and what
// the rebuilt SYN carries into the datapath again.
type cookieTuple struct {
	src, dst     packet.Addr
	sport, dport uint16
	version      uint8
}

// clientTuple is the current packet's tuple as the client sent it: its
// connection's original tuple (prerouting may have rewritten the packet
// for DNAT already), or the packet's own when conntrack gave none.
func (w *worker) clientTuple() cookieTuple {
	if c := w.res.Conn; c != nil && w.res.Dir == conntrack.DirOriginal {
		t := c.Tuple(conntrack.DirOriginal)
		return cookieTuple{t.Src, t.Dst, t.SrcPort, t.DstPort, t.Family}
	}
	p := &w.p
	return cookieTuple{p.Src, p.Dst, p.SrcPort, p.DstPort, p.Version}
}

// hash is keyed on the tuple, the time unit and the MSS index, so a
// cookie's low bits cannot be changed without changing its hash.
func (s *synCookies) hash(tu *cookieTuple, t uint32, mssIdx uint8) uint32 {
	var b [42]byte
	n := 4
	if tu.version == 6 {
		n = 16
	}
	copy(b[0:], tu.src[:n])
	copy(b[16:], tu.dst[:n])
	binary.BigEndian.PutUint16(b[32:], tu.sport)
	binary.BigEndian.PutUint16(b[34:], tu.dport)
	binary.BigEndian.PutUint32(b[36:], t)
	b[40] = tu.version
	b[41] = mssIdx
	return uint32(siphash.Hash(s.k0, s.k1, b[:]))
}

// cookie is the gateway's ISN for a client whose ISN is isn.
func (s *synCookies) cookie(tu *cookieTuple, isn uint32, mssIdx uint8, now int64) uint32 {
	t := uint32(now >> cookieTimeShift)
	x := s.hash(tu, t, mssIdx)&cookieHashMask | (t&(1<<cookieTimeBits-1))<<cookieMSSBits | uint32(mssIdx)
	return isn + x
}

// check verifies that ack − 1 is the cookie for a client whose ISN is
// isn, and gives the MSS index it carries.
func (s *synCookies) check(tu *cookieTuple, isn, ack uint32, now int64) (uint8, bool) {
	x := (ack - 1) - isn
	idx := uint8(x & (1<<cookieMSSBits - 1))
	tn := uint32(now >> cookieTimeShift)
	for _, t := range [2]uint32{tn, tn - 1} {
		if (x>>cookieMSSBits)&(1<<cookieTimeBits-1) != t&(1<<cookieTimeBits-1) {
			continue
		}
		if s.hash(tu, t, idx)&cookieHashMask == x&cookieHashMask {
			return idx, true
		}
	}
	return 0, false
}

// cookieMSSIndex picks the largest cookie MSS not above the client's
// (536 when it sent none: RFC 9293's default).
func cookieMSSIndex(mss uint16) uint8 {
	i := uint8(0)
	for j, m := range cookieMSS {
		if m <= mss {
			i = uint8(j)
		}
	}
	return i
}

// synproxy handles a packet a synproxy rule took: it is always consumed.
func (w *worker) synproxy(h rules.Hook, o *rules.SynProxyOptions) {
	w.fill()
	p := &w.p
	if h != rules.HookForward || p.Proto != packet.ProtoTCP || !p.HasL4 {
		// A user chain with the rule, jumped to from another hook: there
		// is no connection to proxy.
		w.discard(DropSynProxy)
		return
	}
	switch p.TCPFlags & (packet.TCPSyn | packet.TCPAck | packet.TCPFin | packet.TCPRst) {
	case packet.TCPSyn:
		w.synproxySyn(o)
	case packet.TCPAck:
		w.synproxyAck(o)
	default:
		w.discard(DropSynProxy)
	}
}

// forget removes the current packet's unconfirmed connection without
// counting a drop: the proxy answered or used the packet.
func (w *worker) forget() {
	if c := w.res.Conn; c != nil && !c.Confirmed() {
		w.g.ct.Delete(c)
	}
}

// synproxyMSS is the MSS the gateway advertises for the server: the
// rule's, or what the smaller MTU of the two links carries.
func (w *worker) synproxyMSS(o *rules.SynProxyOptions, version uint8) uint16 {
	if o.MSS != 0 {
		return o.MSS
	}
	mtu := min(w.link.MTU, w.pl.links[w.pk.Out].MTU)
	return uint16(max(mtu-tcpHeaders(version), int(cookieMSS[0])))
}

// synproxySyn answers a client's SYN with a cookie SYN/ACK. Its window is
// zero, as Linux's: the client sends its ACK but no data until the server
// has answered and the gateway opens the window.
func (w *worker) synproxySyn(o *rules.SynProxyOptions) {
	p := &w.p
	opts, err := p.TCPSynOptions()
	if err != nil {
		w.discard(DropSynProxy)
		return
	}
	tu := w.clientTuple()
	w.forget()
	mss := opts.MSS
	if mss == 0 {
		mss = cookieMSS[0]
	}
	s := packet.TCPSegment{
		Version: tu.version, Src: tu.dst, Dst: tu.src, SrcPort: tu.dport, DstPort: tu.sport,
		Seq:   w.g.cookies.cookie(&tu, p.TCPSeq(), cookieMSSIndex(mss), w.now),
		Ack:   p.TCPSeq() + 1,
		Flags: packet.TCPSyn | packet.TCPAck,
		Opts:  packet.TCPSynOptions{MSS: w.synproxyMSS(o, p.Version), WScale: packet.NoWScale},
	}
	if opts.TS && !o.NoTS {
		// Without a timestamp the cookie has no room for the window
		// scale and SACK: the connection goes without them (Linux too).
		enc := uint32(tsWScale)
		if opts.WScale != packet.NoWScale {
			enc = uint32(opts.WScale)
			s.Opts.WScale = o.WScale
		}
		if opts.SACKPerm && !o.NoSACK {
			enc |= tsSACKPerm
			s.Opts.SACKPerm = true
		}
		s.Opts.TS = true
		s.Opts.TSval = uint32(w.now/tsClockUnit)&^tsOptMask | enc
		s.Opts.TSecr = opts.TSval
	}
	w.g.Counters.SynProxySyn.Add(1)
	w.sendSegment(&s)
}

// segment builds s in a scratch buffer (at headroom) and returns the
// buffer and the segment's length.
func (w *worker) segment(s *packet.TCPSegment) ([]byte, int, bool) {
	b := w.scratchBuf()
	n, err := packet.BuildTCPSegment(b[headroom:], s)
	return b, n, err == nil
}

// genSegment builds s and decodes it as the worker's generated packet.
func (w *worker) genSegment(s *packet.TCPSegment) ([]byte, *packet.Parsed, bool) {
	b, n, ok := w.segment(s)
	if !ok || w.gen.Decode(b[headroom:headroom+n]) != nil {
		return nil, nil, false
	}
	return b, &w.gen, true
}

// sendSegment sends a segment the proxy made toward its destination,
// untracked (it belongs to no connection yet).
func (w *worker) sendSegment(s *packet.TCPSegment) {
	b, gp, ok := w.genSegment(s)
	if !ok {
		return
	}
	out, ok := w.route(gp)
	if !ok || out == routeLocal {
		return
	}
	w.queue(out, b, gp, false)
}

// synproxyAck checks the cookie in a client's ACK and, when it is good,
// sends the server the SYN the client sent the gateway, rebuilt from the
// cookie, through the datapath as if the client had sent it now.
func (w *worker) synproxyAck(o *rules.SynProxyOptions) {
	p := &w.p
	tu := w.clientTuple()
	isn := p.TCPSeq() - 1
	mssIdx, ok := w.g.cookies.check(&tu, isn, p.TCPAck(), w.now)
	if !ok && len(p.Payload()) == 0 {
		// A window probe (seq = ISN) from a client whose handshake ACK
		// was lost: its cookie is as good (at the price of one bit of
		// the hash for forgers).
		isn = p.TCPSeq()
		mssIdx, ok = w.g.cookies.check(&tu, isn, p.TCPAck(), w.now)
	}
	if !ok {
		w.g.Counters.SynProxyInvalid.Add(1)
		w.discard(DropSynProxy)
		return
	}
	ao, err := p.TCPSynOptions()
	if err != nil {
		w.discard(DropSynProxy)
		return
	}
	w.g.Counters.SynProxyValid.Add(1)
	st := conntrack.SynProxy{
		Proxied:   true,
		State:     conntrack.SynProxyPending,
		MSS:       cookieMSS[mssIdx],
		CliWScale: packet.NoWScale,
		OurWScale: packet.NoWScale,
		SrvWScale: packet.NoWScale,
		ISN:       p.TCPAck() - 1,
		CliISN:    isn,
		CliWin:    p.TCPWindow(),
	}
	if ao.TS && !o.NoTS {
		enc := ao.TSecr & tsOptMask
		st.TS = true
		st.CliTSval, st.TSecr = ao.TSval, ao.TSecr
		st.SACKPerm = enc&tsSACKPerm != 0
		if ws := uint8(enc & tsWScale); ws != tsWScale {
			st.CliWScale, st.OurWScale = min(ws, 14), o.WScale
		}
	}
	w.forget()
	syn := synproxyServerSyn(tu.version, tu.src, tu.dst, tu.sport, tu.dport, &st)
	b, n, ok := w.segment(&syn)
	if !ok {
		return
	}
	// The rebuilt SYN runs the datapath from the start; when the rule
	// takes it again, synproxyAttach gives its connection st.
	partial := w.partial
	w.partial, w.spPass, w.spState = false, true, st
	w.packet(b, n)
	w.partial, w.spPass = partial, false
}

// synproxyServerSyn is the client's SYN as the gateway sends it to the
// server: the client's ISN and the options its cookie kept.
func synproxyServerSyn(version uint8, src, dst packet.Addr, sport, dport uint16, st *conntrack.SynProxy) packet.TCPSegment {
	return packet.TCPSegment{
		Version: version, Src: src, Dst: dst, SrcPort: sport, DstPort: dport,
		Seq: st.CliISN, Flags: packet.TCPSyn, Window: st.CliWin,
		Opts: packet.TCPSynOptions{MSS: st.MSS, WScale: st.CliWScale, SACKPerm: st.SACKPerm, TS: st.TS, TSval: st.CliTSval},
	}
}

// synproxyAttach gives the rebuilt SYN's new connection its proxy state.
func (w *worker) synproxyAttach() {
	c := w.res.Conn
	if c == nil || c.Confirmed() {
		return
	}
	c.EnsureExt().Proxy = w.spState
}

// synproxyConn runs a packet of a proxied connection whose handshake with
// the server is not done (or the server's retransmitted SYN/ACK); true
// means the proxy consumed it. The server's SYN/ACK sets up the
// translation, is acknowledged in the client's name, and becomes the
// window update that lets the client send.
func (w *worker) synproxyConn(c *conntrack.Conn, e *conntrack.Ext) bool {
	w.fill()
	p, res := &w.p, &w.res
	f := p.TCPFlags & (packet.TCPSyn | packet.TCPAck | packet.TCPRst)
	c.Lock()
	st := &e.Proxy
	switch {
	case res.Dir == conntrack.DirReply && f == packet.TCPSyn|packet.TCPAck && st.State == conntrack.SynProxyPending:
		so, _ := p.TCPSynOptions()
		st.State = conntrack.SynProxyOpen
		st.SrvISN = p.TCPSeq()
		off := int32(st.ISN - st.SrvISN)
		e.SeqAdj[conntrack.DirReply] = conntrack.SeqAdj{CorrectionPos: st.SrvISN, OffsetBefore: off, OffsetAfter: off}
		ts := st.TS && so.TS
		if ts {
			st.TSOff = st.TSecr - so.TSval
		}
		if st.CliWScale != packet.NoWScale {
			st.SrvWScale = so.WScale
			if so.WScale == packet.NoWScale {
				// The server declined scaling (RFC 7323: off both ways
				// for it), the client keeps scaling its windows by
				// CliWScale: the server gets them rescaled, and conntrack
				// judges the client's windows as the client means them.
				c.SetTCPScaleLocked(conntrack.DirOriginal, st.CliWScale)
			}
		}
		// Last: the translation is complete when the flag says so (the
		// datapath reads it without the lock, see alg.Process).
		c.SetStatus(conntrack.StatusSeqAdjust)
		srvTS := so.TSval
		win := uint32(p.TCPWindow())
		if st.SrvWScale != packet.NoWScale {
			win >>= st.SrvWScale
		}
		ack := w.synproxyServerAck(c, st, ts)
		upd := w.synproxySegment(c, conntrack.DirReply, st.SrvISN+1, st.CliISN+1, uint16(win),
			packet.TCPSynOptions{TS: ts, TSval: srvTS, TSecr: st.CliTSval})
		c.Unlock()
		w.g.Counters.SynProxyOpen.Add(1)
		w.inject(&ack)
		w.inject(&upd)
		return true
	case res.Dir == conntrack.DirReply && f == packet.TCPSyn|packet.TCPAck && st.State == conntrack.SynProxyOpen:
		// Our ACK was lost: the server sends its SYN/ACK again.
		so, _ := p.TCPSynOptions()
		ack := w.synproxyServerAck(c, st, st.TS && so.TS)
		c.Unlock()
		w.g.Counters.SynProxyRetrans.Add(1)
		w.inject(&ack)
		return true
	case res.Dir == conntrack.DirReply && f&packet.TCPRst != 0 && st.State == conntrack.SynProxyPending:
		// The server refused: the client knows the connection by the
		// cookie's sequence space.
		c.Unlock()
		p.SetTCPSeq(st.ISN + 1)
		return false
	case res.Dir == conntrack.DirOriginal && st.State == conntrack.SynProxyPending && f == packet.TCPSyn && p.TCPSeq() != st.CliISN:
		// A new attempt on the tuple (another ISN): the handshake the
		// proxy waits for is dead. The entry goes and the SYN with it;
		// the client's next one is answered with a cookie afresh.
		c.Unlock()
		w.g.ct.Delete(c)
		w.drop(DropSynProxy)
		return true
	case res.Dir == conntrack.DirOriginal && st.State == conntrack.SynProxyPending && f == packet.TCPSyn:
		// The client sent its SYN again (a duplicate of the one the
		// cookie answered): the server has not answered, so ours goes
		// again instead.
		syn := w.synproxyResend(c, st)
		c.Unlock()
		w.g.Counters.SynProxyRetrans.Add(1)
		w.inject(&syn)
		return true
	}
	c.Unlock()
	return false
}

// synproxyResend is the SYN to the server sent again. The connection is
// locked.
func (w *worker) synproxyResend(c *conntrack.Conn, st *conntrack.SynProxy) packet.TCPSegment {
	o := c.Tuple(conntrack.DirOriginal)
	return synproxyServerSyn(o.Family, o.Src, o.Dst, o.SrcPort, o.DstPort, st)
}

// synproxyProbe looks at a TCP packet conntrack found INVALID when synproxy
// rules exist: the client of a proxied connection whose server has not
// answered yet probes its shut window, and conntrack, which has only seen
// the SYN sent to the server, takes the probe for an ACK out of turn. The
// SYN may have been lost: it goes again, and the probe is consumed. True
// when it was such a probe.
func (w *worker) synproxyProbe() bool {
	w.fill()
	p := &w.p
	if !p.HasL4 || p.Fragment || p.TCPFlags&(packet.TCPSyn|packet.TCPRst|packet.TCPAck) != packet.TCPAck {
		return false
	}
	tu := conntrack.Tuple{Src: p.Src, Dst: p.Dst, SrcPort: p.SrcPort, DstPort: p.DstPort, Proto: packet.ProtoTCP, Family: p.Version}
	c, d := w.g.ct.Lookup(&tu)
	if c == nil || d != conntrack.DirOriginal {
		return false
	}
	e := c.Ext()
	if e == nil || !e.Proxy.Proxied {
		return false
	}
	c.Lock()
	st := &e.Proxy
	if st.State != conntrack.SynProxyPending || p.TCPAck() != st.ISN+1 {
		c.Unlock()
		return false
	}
	syn := w.synproxyResend(c, st)
	c.Unlock()
	w.g.Counters.SynProxyRetrans.Add(1)
	w.inject(&syn)
	return true
}

// synproxyServerAck is the ACK of the server's SYN/ACK, as the client
// would send it (the client's view: the cookie's sequence space and
// timestamp; the datapath translates it). The connection is locked.
func (w *worker) synproxyServerAck(c *conntrack.Conn, st *conntrack.SynProxy, ts bool) packet.TCPSegment {
	return w.synproxySegment(c, conntrack.DirOriginal, st.CliISN+1, st.ISN+1, st.CliWin,
		packet.TCPSynOptions{TS: ts, TSval: st.CliTSval, TSecr: st.TSecr})
}

// synproxySegment makes an ACK of connection c travelling in direction d,
// addressed as its sender sends it (before NAT).
func (w *worker) synproxySegment(c *conntrack.Conn, d conntrack.Dir, seq, ack uint32, win uint16, o packet.TCPSynOptions) packet.TCPSegment {
	t := c.Tuple(d)
	o.WScale = packet.NoWScale
	return packet.TCPSegment{
		Version: t.Family, Src: t.Src, Dst: t.Dst, SrcPort: t.SrcPort, DstPort: t.DstPort,
		Seq: seq, Ack: ack, Flags: packet.TCPAck, Window: win, Opts: o,
	}
}

// inject sends a segment the proxy made in a connection's name through
// that connection's path: conntrack (the tracker sees it), NAT, the
// sequence translation, and out where the route says.
func (w *worker) inject(s *packet.TCPSegment) {
	b, gp, ok := w.genSegment(s)
	if !ok {
		return
	}
	r := &w.genRes
	r.Conn, r.Info, r.Dir, r.Drop = nil, conntrack.Untracked, conntrack.DirOriginal, false
	w.g.ct.In(gp, w.now, r)
	c := r.Conn
	if r.Drop || c == nil {
		return
	}
	if !c.Confirmed() {
		// The connection went meanwhile (deleted, timed out).
		w.g.ct.Delete(c)
		return
	}
	w.g.nat.Prerouting(gp, r, -1)
	if r.Drop {
		return
	}
	out, ok := w.route(gp)
	if !ok || out == routeLocal {
		return
	}
	if !w.g.nat.Postrouting(gp, r, -1, out) {
		return
	}
	if !w.pl.alg.Process(gp, r) {
		return
	}
	w.queue(out, b, gp, false)
}
