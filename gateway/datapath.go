package gateway

import (
	"errors"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"

	"tungate/conntrack"
	"tungate/link"
	"tungate/packet"
	"tungate/rules"
)

// headroom is left in front of every packet buffer for the link's own
// framing (a kernel TUN's virtio-net header).
const headroom = link.Headroom

// maxPacket is the largest packet a buffer holds (a GSO-coalesced write can
// grow the first buffer of a flow to this size).
const maxPacket = 65535

// scratchCount bounds the packets a worker generates per batch (ICMP errors,
// RSTs, fragments); when they run out the batch is flushed early.
const scratchCount = 64

// worker runs the packets read from one link to completion. Everything it
// uses per packet is allocated here, once.
type worker struct {
	g *Gateway
	// pl is the plane of the current batch (see plane).
	pl *plane
	// link is the worker's link as pl has it (its settings change with a
	// reload); dev and st are the device and state it keeps throughout.
	link *Link
	dev  link.Link
	st   *linkState
	// in is the link's slot.
	in int
	// failures counts consecutive failed reads that returned nothing.
	failures int
	// flags is the link's Flagger, nil when it vouches for nothing.
	flags link.Flagger
	// peers names the sender of each packet read; nil for links without
	// peers, which then pay nothing for the feature.
	peers link.PeerIdentifier

	bufs  [][]byte
	sizes []int

	p   packet.Parsed
	res conntrack.Result
	pk  rules.Packet
	rs  *rules.Ruleset
	now int64

	// out[i] are the packets queued for link i in this batch.
	out [][][]byte

	scratch  [][]byte
	nscratch int
	frags    [][]byte
	// gen, genRes and genPk serve packets the gateway generates.
	gen    packet.Parsed
	genRes conntrack.Result
	genPk  rules.Packet

	// fragMax is the largest fragment of the current packet when it was
	// reassembled (0 otherwise); fragID its identification.
	fragMax int
	fragID  uint32
	// gso: the link verified the batch's checksums (link.ChecksumsVerified).
	gso bool
	// partial: the batch's TCP packets are the link's own with their
	// checksums not filled in (link.ChecksumPartial). outPart[i] marks
	// which of out[i]'s packets are such, nPart[i] counts them.
	partial bool
	outPart [][]bool
	nPart   []int
	// cur is the buffer of the packet read that is being run (a packet
	// generated meanwhile has another). lazy is the link's LazyReader
	// when it reads lazily: lz are then the pieces of cur's payload not
	// yet in it (lzHdr bytes are), nil once there (see fill). gsoR is the
	// link's GSOReader, gsoSize cur's segment size when it is a TCP
	// packet to be cut (link.GSOReader). offs[i] lists out[i]'s packets
	// queued in pieces or to be cut, offArg is their argument to an
	// OffloadWriter; splitSizes serves splitTCP.
	cur        []byte
	lazy       link.LazyReader
	lzHdr      int
	lz         [][]byte
	gsoR       link.GSOReader
	gsoSize    int
	offs       [][]offPacket
	offArg     []link.Offload
	splitSizes []int
	// forwarded and local count this batch's packets.
	forwarded, delivered uint64

	// capOn: some link was being captured when this batch began; capTime
	// is the batch's capture timestamp. lastDrop is 1 + the reason of the
	// last drop, for the verdict of a captured packet.
	capOn    bool
	capTime  time.Time
	lastDrop DropReason
	// capP decodes packets for a capture's filter.
	capP packet.Parsed

	// The route cache: the last destination looked up and its answer.
	rcDst   packet.Addr
	rcVer   uint8
	rcOut   int
	rcOK    bool
	rcValid bool

	// rpf is the link's reverse-path check; rpSrc..rpValid cache the last
	// source it judged.
	rpf     rpfMode
	rpSrc   packet.Addr
	rpVer   uint8
	rpOK    bool
	rpValid bool
	// The peer cache: the last source named on a wireguard link and its
	// Packet.Peer. A batch's packets mostly come from one peer's flow;
	// the cache lives for one batch only, so a reload's new peer table is
	// used from the next batch on.
	pcSrc   packet.Addr
	pcVer   uint8
	pcPeer  int32
	pcValid bool

	// spPass marks the SYN the SYN proxy rebuilt from a client's ACK as it
	// runs the datapath: the synproxy rule lets it pass and gives its
	// connection spState.
	spPass  bool
	spState conntrack.SynProxy
}

func newWorker(g *Gateway, l *Link) *worker {
	n := l.Dev.BatchSize()
	if n < 1 {
		n = 1
	}
	w := &worker{g: g, link: l, dev: l.Dev, st: l.st, in: l.Index, rpf: l.rpf}
	w.flags, _ = l.Dev.(link.Flagger)
	if lr, ok := l.Dev.(link.LazyReader); ok {
		lr.ReadLazily()
		w.lazy = lr
	}
	w.gsoR, _ = l.Dev.(link.GSOReader)
	w.splitSizes = make([]int, scratchCount)
	w.peers = l.peers
	w.bufs = make([][]byte, n)
	for i := range w.bufs {
		w.bufs[i] = make([]byte, headroom+maxPacket)
	}
	if n > 1 {
		prefault(w.bufs)
	}
	w.sizes = make([]int, n)
	w.frags = make([][]byte, scratchCount)
	w.setPlane(g.pl.Load())
	return w
}

// setPlane makes pl the worker's plane: the caches go (routes may have
// changed), and the queues and scratch buffers grow to the links pl has.
// It allocates only when a reload added links or a larger MTU.
func (w *worker) setPlane(pl *plane) {
	w.pl = pl
	w.rcValid, w.rpValid = false, false
	n := len(w.bufs)
	for len(w.out) < len(pl.links) {
		w.out = append(w.out, make([][]byte, 0, n+scratchCount))
		w.outPart = append(w.outPart, make([]bool, 0, n+scratchCount))
		w.nPart = append(w.nPart, 0)
		w.offs = append(w.offs, nil)
	}
	maxMTU := 2048
	for _, o := range pl.links {
		if o != nil && o.MTU > maxMTU {
			maxMTU = o.MTU
		}
	}
	if len(w.scratch) == 0 || len(w.scratch[0]) < headroom+maxMTU {
		w.scratch = make([][]byte, scratchCount)
		for i := range w.scratch {
			w.scratch[i] = make([]byte, headroom+maxMTU)
		}
	}
}

// run reads and forwards until the device ends: nil when it was closed
// (the gateway stopping, a reload removing the interface), the error when
// the device failed (see linkFailed).
func (w *worker) run() error {
	dev := w.dev
	for {
		n, err := dev.Read(w.bufs, w.sizes, headroom)
		if err != nil {
			if w.g.closed.Load() || w.st.removed.Load() {
				return nil
			}
			if errors.Is(err, os.ErrClosed) {
				// Nobody here closed it: wireguard-go reports a TUN
				// deleted under its descriptor (EBADFD) so.
				return fmt.Errorf("device went away (deleted?): %w", err)
			}
			if n == 0 {
				w.failures++
			}
			if linkFailed(err, w.failures) {
				return err
			}
			// A single bad read (e.g. an unsupported GSO type) must not
			// stop the link.
			w.g.Counters.Drops[DropMalformed].Add(1)
			w.g.log.Debug("read", zap.String("interface", w.link.Name), zap.Error(err))
			if n == 0 {
				continue
			}
		}
		w.failures = 0
		// A link vouching for the checksums (a TUN that split a GSO frame
		// and summed every segment itself) spares conntrack summing them.
		var fl link.Flags
		if w.flags != nil {
			fl = w.flags.ReadFlags()
		}
		w.gso = fl&link.ChecksumsVerified != 0
		w.partial = fl&link.ChecksumPartial != 0
		w.batch(n)
	}
}

// batch runs n packets read into w.bufs and writes what they produce.
func (w *worker) batch(n int) {
	w.now = w.g.ct.Now()
	if pl := w.g.pl.Load(); pl != w.pl {
		w.setPlane(pl)
	}
	l := w.pl.link(w.in)
	if l == nil || l.st != w.st {
		// A reload removed the interface while this batch was read: its
		// packets have nowhere to come from, as if routed nowhere.
		w.g.Counters.Received.Add(uint64(n))
		w.g.Counters.Drops[DropNoRoute].Add(uint64(n))
		return
	}
	w.link, w.rpf = l, l.rpf
	w.rs = w.pl.rules
	w.pcValid = false
	w.g.Counters.Received.Add(uint64(n))
	var capIn *Capture
	if w.capOn = w.g.capturing.Load() != 0; w.capOn {
		capIn = w.st.capture.Load()
		w.capTime = time.Now()
	}
	var bytes uint64
	for i := 0; i < n; i++ {
		bytes += uint64(w.sizes[i])
		w.cur = w.bufs[i]
		if w.lazy != nil {
			w.lzHdr, w.lz = w.lazy.Lazy(i)
		}
		if w.gsoR != nil {
			w.gsoSize = w.gsoR.GSO(i)
		}
		if capIn != nil {
			w.fill()
			w.capturedPacket(capIn, w.bufs[i], w.sizes[i])
			continue
		}
		w.packet(w.bufs[i], w.sizes[i])
	}
	lc := &w.st.ctr
	lc.rxPackets.Add(uint64(n))
	lc.rxBytes.Add(bytes)
	// Shared counters once per batch, not per packet: both links' readers
	// would otherwise bounce the same cache lines between cores.
	if w.forwarded != 0 {
		w.g.Counters.Forwarded.Add(w.forwarded)
		w.forwarded = 0
	}
	if w.delivered != 0 {
		w.g.Counters.Local.Add(w.delivered)
		w.delivered = 0
	}
	w.flush()
	// Holding no connection while waiting for the next batch lets
	// conntrack reuse the entries of connections that died meanwhile.
	w.res.Release()
	w.genRes.Release()
}

// flush writes every link's queued packets with one Write per link.
func (w *worker) flush() {
	for i, q := range w.out {
		if len(q) == 0 {
			continue
		}
		ol := w.pl.links[i]
		part := w.outPart[i]
		offs := w.offs[i]
		if ol == nil {
			w.out[i], w.outPart[i], w.nPart[i], w.offs[i] = q[:0], part[:0], 0, offs[:0]
			continue
		}
		var capOut *Capture
		if w.capOn {
			capOut = ol.st.capture.Load()
		}
		var pw link.PartialWriter
		var ow link.OffloadWriter
		if w.nPart[i] > 0 {
			var ok bool
			pw, ok = ol.Dev.(link.PartialWriter)
			if ok && pw.CanWritePartial() && capOut != nil && hasGSO(offs) {
				// A capture begun since queue sent these packets to
				// be cut by the device: it sees the next batch.
				capOut = nil
			}
			if !ok || !pw.CanWritePartial() || capOut != nil {
				// Checksums for a link that cannot offload them, and
				// for a capture to show them as the receiver sees them.
				// (queue gave such a link no packet to be cut.)
				w.fillQueued(q, offs)
				w.finishChecksums(q, part)
				pw = nil
			} else if len(offs) > 0 {
				if ow, ok = ol.Dev.(link.OffloadWriter); !ok {
					w.fillQueued(q, offs)
				}
			}
		}
		if capOut != nil {
			w.captureOut(capOut, q)
		}
		var err error
		var pieceBytes uint64
		if ow != nil {
			arg := w.offArg[:0]
			for j := range q {
				arg = append(arg, link.Offload{Partial: part[j]})
			}
			for _, o := range offs {
				arg[o.j].Pieces, arg[o.j].GSOSize = o.pieces, o.gso
				for _, s := range o.pieces {
					pieceBytes += uint64(len(s))
				}
			}
			_, err = ow.WriteOffload(q, headroom, arg)
			clear(arg) // no pointers into the link's pieces past the batch
			w.offArg = arg[:0]
		} else if pw != nil {
			_, err = pw.WritePartial(q, headroom, part)
		} else {
			_, err = ol.Dev.Write(q, headroom)
		}
		if err != nil && !w.g.closed.Load() {
			w.g.Counters.Drops[DropWrite].Add(1)
			w.g.log.Debug("write", zap.String("interface", ol.Name), zap.Error(err))
		} else {
			w.g.Counters.Sent.Add(uint64(len(q)))
			bytes := pieceBytes
			for _, b := range q {
				bytes += uint64(len(b) - headroom)
			}
			lc := &ol.st.ctr
			lc.txPackets.Add(uint64(len(q)))
			lc.txBytes.Add(bytes)
		}
		w.out[i] = q[:0]
		w.outPart[i] = part[:0]
		w.nPart[i] = 0
		clear(offs)
		w.offs[i] = offs[:0]
	}
	w.nscratch = 0
}

// offPacket is a packet of out[i] queued in pieces (the rest of out[i][j]
// behind its headers, see link.LazyReader) or to be cut into segments of
// gso bytes by the device (link.GSOReader), or both.
type offPacket struct {
	j      int
	pieces [][]byte
	gso    int
}

func hasGSO(offs []offPacket) bool {
	for _, o := range offs {
		if o.gso > 0 {
			return true
		}
	}
	return false
}

// isCur reports whether buf is the packet read that is being run, not
// one generated meanwhile: only it can be in pieces or to be cut.
func (w *worker) isCur(buf []byte) bool { return len(w.cur) > 0 && &buf[0] == &w.cur[0] }

// fill puts the payload a lazy read left out into the current packet's
// buffer: called before anything reads past the packet's headers.
func (w *worker) fill() {
	if w.lz == nil {
		return
	}
	link.Fill(w.cur[:headroom+w.lzHdr], w.lz)
	w.lz = nil
}

// fillQueued makes the packets queued in pieces in q whole, for a write
// or capture that takes whole packets only.
func (w *worker) fillQueued(q [][]byte, offs []offPacket) {
	for _, o := range offs {
		if o.pieces != nil {
			q[o.j] = link.Fill(q[o.j], o.pieces)
		}
	}
	clear(offs)
}

// finishChecksums fills in the TCP checksum of q's packets marked in part.
func (w *worker) finishChecksums(q [][]byte, part []bool) {
	for j, b := range q {
		if part[j] {
			packet.FinishTCPChecksum(b[headroom:])
			part[j] = false
		}
	}
}

func (w *worker) drop(r DropReason) {
	w.g.Counters.Drops[r].Add(1)
	w.lastDrop = r + 1
}

// discard drops the packet of a NEW connection that will never be
// confirmed, releasing whatever NAT allocated for it.
func (w *worker) discard(r DropReason) {
	w.drop(r)
	if c := w.res.Conn; c != nil && !c.Confirmed() {
		w.g.ct.Delete(c)
	}
}

// packet runs one packet through the pipeline in netfilter order.
func (w *worker) packet(buf []byte, size int) {
	g := w.g
	p := &w.p
	if err := p.Decode(buf[headroom : headroom+size]); err != nil {
		w.drop(decodeDropReason(err))
		return
	}
	p.ChecksumGood = w.gso
	// Defragment first (Linux's nf_defrag runs before raw): conntrack and
	// the rules need the transport header.
	w.fragMax = 0
	if p.Fragment {
		w.fill()
		w.fragID = p.FragID
		r, err := g.reasm.Reassemble(p, w.now, buf[headroom:])
		if err != nil {
			w.drop(DropFragment)
			return
		}
		if !r.Done {
			return // held until the datagram is complete
		}
		if err := p.Decode(buf[headroom : headroom+r.N]); err != nil {
			w.drop(DropFragment)
			return
		}
		w.fragMax = r.MaxFragSize
	}
	if w.pl.martian(p) {
		w.drop(DropMartian)
		return
	}
	// Spoofed sources go before they cost a connection or a NAT mapping.
	if w.rpf != rpfOff && !w.reversePath(p) {
		w.drop(DropRPF)
		return
	}
	res := &w.res
	// Field by field: the Result keeps its conntrack reader slot.
	res.Conn, res.Info, res.Dir, res.Drop = nil, conntrack.Untracked, conntrack.DirOriginal, false
	if p.Version == 6 {
		// Hop-by-hop options are every router's business, before any hook
		// (Linux's ipv6_parse_hopopts in ip6_rcv_core).
		if v, ptr, code := checkHopByHop6(p); v != optForward {
			if v == optParamProblem {
				w.paramProblem(p, code, ptr)
			}
			w.drop(DropOptions)
			return
		}
	}
	pk := &w.pk
	*pk = rules.Packet{P: p, In: w.in, Out: -1, Info: conntrack.Untracked}
	if w.peers != nil {
		if pk.Peer = w.peerOf(p); pk.Peer == 0 {
			w.drop(DropNoPeer)
			return
		}
	}
	d := w.rs.Eval(rules.HookPrerouting, pk)
	if d.Verdict != rules.Accept {
		w.drop(DropFilter)
		return
	}
	if !d.Notrack { // notrack leaves res UNTRACKED
		g.ct.In(p, w.now, res)
		if res.Drop {
			w.drop(DropCtFull)
			return
		}
		// A source at its limit is refused before NAT spends a mapping
		// on it; finishConn's confirm is what enforces the limit.
		if c := res.Conn; c != nil && g.srcLimit != nil && !c.Confirmed() && g.srcLimit.Full(c) {
			w.discard(DropPerSource)
			return
		}
		if res.Conn == nil && res.Info == conntrack.Invalid && p.Proto == packet.ProtoTCP && w.rs.HasSynProxy() && w.synproxyProbe() {
			return
		}
		// A SYN-proxied connection still in its handshake with the server.
		if c := res.Conn; c != nil && p.Proto == packet.ProtoTCP {
			// Once the server has answered (StatusSeqAdjust) only its
			// SYN/ACK sent again is the proxy's business.
			if e := c.Ext(); e != nil && e.Proxy.Proxied &&
				(c.Status()&conntrack.StatusSeqAdjust == 0 || p.TCPFlags&packet.TCPSyn != 0) && w.synproxyConn(c, e) {
				return
			}
		}
	}
	if c := res.Conn; c != nil && !c.Confirmed() && g.fwds.table.Load() != nil {
		g.bindForward(c, p, w.in)
	}
	if res.Conn != nil {
		g.nat.Prerouting(p, res, w.in)
		if res.Drop {
			// NAT refused it (a bad ICMP error, a forward whose tuple is
			// taken); it cleaned up the connection itself.
			w.drop(DropNAT)
			return
		}
	}
	if p.Version == 4 && p.IPHeaderLen() > 20 {
		// Options are checked after prerouting, as in ip_rcv_finish.
		if v, ptr := checkOptions4(p); v != optForward {
			if v == optParamProblem {
				w.paramProblem(p, 0, ptr)
			}
			w.discard(DropOptions)
			return
		}
	}
	out, ok := w.route(p)
	if !ok {
		w.icmpError(p, icmpNetUnreachable)
		w.discard(DropNoRoute)
		return
	}
	pk.Conn, pk.Info = res.Conn, res.Info
	if out == routeLocal {
		w.fill()
		w.local(buf)
		return
	}
	// ip_forward order: TTL, then MTU, then the forward hook.
	if p.TTL() <= 1 {
		w.icmpError(p, icmpTimeExceeded)
		w.discard(DropTTL)
		return
	}
	mtu := w.pl.links[out].MTU
	plen := p.Len()
	if w.gsoSize > 0 && w.isCur(buf) {
		// A packet to be cut is judged by its segments, as Linux's
		// skb_gso_validate_network_len does.
		plen = min(plen, plen-len(p.Payload())+w.gsoSize)
	}
	if (plen > mtu && p.DF() && (p.Version == 4 || w.fragMax == 0)) || w.fragMax > mtu {
		// A reassembled datagram is judged by its largest fragment, as
		// Linux's ip_exceeds_mtu / ip6_pkt_too_big do.
		w.icmpErrorMTU(p, mtu)
		w.discard(DropMTU)
		return
	}
	p.DecTTL()
	pk.Out = out
	if !w.filter(rules.HookForward) {
		return
	}
	if ol := w.pl.links[out]; ol.peers != nil {
		// Cryptokey routing: a packet no peer takes would be dropped by
		// the link unseen; here it is counted and answered, as the
		// kernel's WireGuard answers host unreachable.
		if _, ok := ol.peers.PeerForRaw(p.Dst[:], p.Version == 6); !ok {
			w.icmpError(p, icmpHostUnreachable)
			w.discard(DropNoPeer)
			return
		}
	}
	if res.Conn != nil {
		if !g.nat.Postrouting(p, res, w.in, out) {
			w.discard(DropNAT)
			return
		}
		if !w.finishConn() {
			return
		}
	}
	if p.Version == 4 && p.IPHeaderLen() > 20 {
		if a, ok := w.pl.sourceFor(out, 4); ok {
			forwardOptions4(p, a)
		}
	}
	if p.Proto == packet.ProtoTCP && p.TCPFlags&packet.TCPSyn != 0 && (pk.ClampMSS != 0 || w.link.clamp || w.pl.links[out].clamp) {
		w.clampMSS(p, out)
	}
	w.forwarded++
	w.queue(out, buf, p, w.partial && p.Proto == packet.ProtoTCP)
}

// peerOf names the sender of a packet read from a wireguard link
// (Packet.Peer), 0 for none. The link let the packet in only if its source
// is within the sending peer's allowed IPs, so the longest match on the
// source is the sender; no match means the peer was removed as the packet
// arrived.
func (w *worker) peerOf(p *packet.Parsed) int32 {
	if w.pcValid && w.pcSrc == p.Src && w.pcVer == p.Version {
		return w.pcPeer
	}
	var peer int32
	if i, ok := w.peers.PeerForRaw(p.Src[:], p.Version == 6); ok {
		peer = int32(i) + 1
		// Rules match peers by index. Across a reload the link's list
		// and the rule set's are swapped one after the other: a name
		// that differs means the two disagree on the numbering, and the
		// packet is dropped rather than judged as another peer's.
		if want := w.rs.PeerName(w.in, i); want != "" && want != w.peers.PeerName(i) {
			peer = 0
		}
	}
	w.pcSrc, w.pcVer, w.pcPeer, w.pcValid = p.Src, p.Version, peer, true
	return peer
}

// clampMSS lowers a forwarded SYN's MSS option: to what the smaller MTU of
// the input and output links carries when either has clamp_mss (so the
// SYN and the SYN-ACK of a connection across a tunnel both get it), and
// to what a clamp_mss rule asked. The IP and TCP headers take 40 bytes in
// IPv4 and 60 in IPv6.
func (w *worker) clampMSS(p *packet.Parsed, out int) {
	hdr := tcpHeaders(p.Version)
	ol := w.pl.links[out]
	mss := 0xffff
	if w.link.clamp || ol.clamp {
		mss = min(w.link.MTU, ol.MTU) - hdr
	}
	switch c := w.pk.ClampMSS; {
	case c == rules.ClampRouteMTU:
		mss = min(mss, ol.MTU-hdr)
	case c != 0:
		mss = min(mss, int(c))
	}
	p.ClampTCPMSS(uint16(mss))
}

// tcpHeaders is what the IP and TCP headers without options take of an
// MTU: the MTU less it is the MSS.
func tcpHeaders(version uint8) int {
	if version == 6 {
		return 60
	}
	return 40
}

// filter runs a filter hook on the current packet; false: it was dropped
// or rejected (and answered).
func (w *worker) filter(h rules.Hook) bool {
	switch d := w.rs.Eval(h, &w.pk); d.Verdict {
	case rules.SynProxy:
		if w.spPass && h == rules.HookForward {
			w.synproxyAttach()
			return true
		}
		w.synproxy(h, &d.SynProxy)
		return false
	case rules.Drop:
		w.discard(DropFilter)
		return false
	case rules.Reject:
		w.reject(d.Reject)
		w.discard(DropReject)
		return false
	}
	return true
}

// finishConn runs the helpers and confirms a new connection; false: the
// packet was dropped.
func (w *worker) finishConn() bool {
	res := &w.res
	c := res.Conn
	if !c.Confirmed() {
		w.pl.alg.Assign(c, &w.p, w.pk.Helper)
		if w.pk.Peer > 0 {
			// ct list and events name the peer the connection came from.
			c.SetPeer(w.rs.PeerNameRef(w.in, int(w.pk.Peer)-1))
		}
	}
	if c.Ext() != nil {
		// Helpers read and rewrite payloads, the sequence adjustment
		// may resize the packet.
		w.fill()
		if !w.pl.alg.Process(&w.p, res) {
			w.discard(DropHelper)
			return false
		}
	}
	if !c.Confirmed() {
		if err := w.g.confirm(c, w.now); err != nil {
			r := DropCtInsert
			if errors.Is(err, conntrack.ErrSourceLimit) {
				r = DropPerSource
			}
			w.discard(r)
			return false
		}
	}
	return true
}

// confirm enters a new connection into the table, through the per-source
// limit when there is one.
func (g *Gateway) confirm(c *conntrack.Conn, now int64) error {
	if g.srcLimit != nil {
		return g.srcLimit.Confirm(g.ct, c, now)
	}
	return g.ct.Confirm(c, now)
}

// queue puts the packet in buf (parsed as p, possibly resized) on link out,
// fragmenting an IPv4 packet without DF that is larger than the link MTU.
// partial says p is a TCP packet whose checksum the link that read it left
// unfilled (link.ChecksumPartial): it stays so up to the output link's
// write, unless it is a fragment or has to be fragmented, when it is
// summed here.
func (w *worker) queue(out int, buf []byte, p *packet.Parsed, partial bool) {
	l := p.Len()
	ol := w.pl.links[out]
	size := ol.MTU
	if w.fragMax > 0 && w.fragMax < size {
		// Send a reassembled datagram on in pieces no larger than it came
		// in (Linux's frag_max_size), so defragmenting stays invisible.
		size = w.fragMax
	}
	cur := w.isCur(buf)
	lazy := cur && w.lz != nil
	gso := 0
	if cur && w.gsoSize > 0 && partial && !p.Fragment {
		// A TCP packet to be cut: by the device when it can, else here.
		// Cut even when the link's MTU would carry it whole: its
		// segment size is the receiver's MSS, not the MTU.
		if pw, ok := ol.Dev.(link.OffloadWriter); ok && pw.CanWritePartial() && !(w.capOn && ol.st.capture.Load() != nil) {
			gso = w.gsoSize
		} else {
			w.fill()
			w.splitTCP(out, buf[headroom:headroom+l], l-len(p.Payload()), w.gsoSize)
			return
		}
	}
	frag := l > size && gso == 0
	if lazy && (!partial || p.Fragment || frag) {
		w.fill()
		lazy = false
	}
	if partial && (p.Fragment || frag) {
		p.SetL4Checksum()
		partial = false
	}
	if frag {
		w.fragment(out, p, size)
		return
	}
	if lazy || gso > 0 {
		// Headers only when lazy: the write gathers the rest (see
		// flush); the device cuts a GSO packet.
		o := offPacket{j: len(w.out[out]), gso: gso}
		n := l
		if lazy {
			o.pieces, n = w.lz, w.lzHdr
			w.lz = nil
		}
		w.offs[out] = append(w.offs[out], o)
		w.out[out] = append(w.out[out], buf[:headroom+n])
	} else {
		w.out[out] = append(w.out[out], buf[:headroom+l])
	}
	w.outPart[out] = append(w.outPart[out], partial)
	if partial {
		w.nPart[out]++
	}
}

// splitTCP queues the TCP packet pkt (hdr bytes of headers) on link out
// as the segments of gso payload bytes a device would have cut it into,
// every checksum computed (for a link that cannot take it whole, or a
// capture to see it as sent).
func (w *worker) splitTCP(out int, pkt []byte, hdr, gso int) {
	need := (len(pkt)-hdr-1)/gso + 1
	if scratchCount-w.nscratch < need {
		// The read buffers queued so far are not reused before the batch
		// ends, so writing mid-batch to free the scratch buffers is safe.
		w.flush()
	}
	if need > scratchCount-w.nscratch {
		w.drop(DropNoBuffer)
		return
	}
	bufs := w.scratch[w.nscratch:scratchCount]
	n, err := link.SplitTCP(pkt, gso, bufs, w.splitSizes, headroom)
	if err != nil {
		w.drop(DropMTU)
		return
	}
	for i := 0; i < n; i++ {
		w.out[out] = append(w.out[out], bufs[i][:headroom+w.splitSizes[i]])
		w.outPart[out] = append(w.outPart[out], false)
	}
	w.nscratch += n
}

func (w *worker) fragment(out int, p *packet.Parsed, mtu int) {
	avail := scratchCount - w.nscratch
	if avail <= 0 {
		w.drop(DropNoBuffer)
		return
	}
	frags := w.frags[:avail]
	for i := range frags {
		frags[i] = w.scratch[w.nscratch+i][headroom:]
	}
	var n int
	var err error
	if p.Version == 4 {
		n, err = packet.Fragment4(p, mtu, frags)
	} else {
		n, err = packet.Fragment6(p, mtu, w.fragID, frags)
	}
	if err != nil {
		w.drop(DropMTU)
		return
	}
	for i := 0; i < n; i++ {
		b := w.scratch[w.nscratch+i]
		w.out[out] = append(w.out[out], b[:headroom+len(frags[i])])
		w.outPart[out] = append(w.outPart[out], false)
	}
	w.nscratch += n
}

// scratchBuf returns a buffer for a generated packet (the packet goes at
// headroom), flushing the batch when all are in use.
func (w *worker) scratchBuf() []byte {
	if w.nscratch >= scratchCount {
		// The read buffers queued so far are not reused before the batch
		// ends, so writing mid-batch to free the scratch buffers is safe.
		w.flush()
	}
	b := w.scratch[w.nscratch]
	w.nscratch++
	return b
}

// route looks up the output interface through a one-entry cache: the
// packets of a batch mostly belong to one flow (a GSO frame is split into
// dozens of segments), and the routing table changes only with the plane,
// which empties the cache.
func (w *worker) route(p *packet.Parsed) (int, bool) {
	if w.rcValid && w.rcDst == p.Dst && w.rcVer == p.Version {
		return w.rcOut, w.rcOK
	}
	out, ok := w.pl.routes.Lookup(p.DstIP())
	w.rcDst, w.rcVer, w.rcOut, w.rcOK, w.rcValid = p.Dst, p.Version, out, ok, true
	return out, ok
}

// prefault writes one byte in every page of bufs, so the process's memory
// is, from the start, what its read buffers take at their busiest. A
// batched TUN link reads up to BatchSize packets into 64 KiB buffers, and
// its writes coalesce (GRO) a TCP burst into the buffer of the burst's
// first packet, up to 64 KiB: which of the buffers get used that far
// depends on how each batch happens to be made up, so left to the traffic
// their pages are touched a few at a time for hours, and the resident
// memory creeps towards the same total (8 MiB per link at a batch of 128)
// with nothing leaking. Touched at once, the memory is known at start and
// a leak shows as one.
func prefault(bufs [][]byte) {
	ps := os.Getpagesize()
	for _, b := range bufs {
		for i := 0; i < len(b); i += ps {
			b[i] = 0
		}
	}
}
