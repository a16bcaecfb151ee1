package uplink

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"tungate/packet"
)

// maxHostWrite bounds what one write hands the stack from a host socket
// (a port forward's data toward the container): the host's receive
// buffer may hold megabytes.
const maxHostWrite = 256 << 10

// TCP: the container's connections end in a gVisor stack that accepts any
// destination (promiscuous, spoofing) and splices each to a host socket.
//
// The forwarder runs each SYN's handler in a goroutine of its own, so the
// handler dials the host before completing the handshake: the container
// sees SYN-ACK only for a destination that accepted, a RST for one that
// refused and an ICMP error for one that could not be reached. The
// handler goroutine then copies stack→host; one more copies host→stack.
// Neither holds a buffer while the connection is idle: stack→host lets
// gVisor write its own buffers into the host socket, host→stack has the
// stack read the host socket into its own (sockPayload).

const nicID = 1

type synKey struct{ src, dst netip.AddrPort }

// maxSynSeqs bounds the SYN sequence numbers kept for ICMP quotes.
const maxSynSeqs = 4096

type tcpStack struct {
	l      *Link
	s      *stack.Stack
	ch     *channel.Endpoint
	dialer net.Dialer

	mu      sync.Mutex // guards the fields below
	pending int
	perHost map[netip.Addr]int
	// dials lists the connects in progress, oldest first: the one given
	// up when max_pending_dials is reached.
	dials dialList
	// synSeq holds the sequence number of SYNs waiting for their dial: an
	// ICMP error must quote it for the container's TCP to accept the
	// error (Linux tcp_v4_err checks it against snd_una).
	synSeq map[synKey]uint32
	conns  map[*net.TCPConn]struct{}
	// byTuple finds a spliced connection by the container's tuple, for
	// CloseTCP.
	byTuple map[synKey]splicedConn
}

// splicedConn is both ends of one spliced connection.
type splicedConn struct {
	hc    *net.TCPConn
	ep    tcpip.Endpoint
	local netip.AddrPort // hc's host address and port, for HostSide
}

func newTCPStack(l *Link) (*tcpStack, error) {
	// Loopback destinations must reach the forwarder, which decides
	// about them (allow_host_loopback), instead of being martians.
	s := stack.New(stack.Options{
		NetworkProtocols: []stack.NetworkProtocolFactory{
			ipv4.NewProtocolWithOptions(ipv4.Options{AllowExternalLoopbackTraffic: true}),
			ipv6.NewProtocolWithOptions(ipv6.Options{AllowExternalLoopbackTraffic: true}),
		},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	// The NIC offloads transmit checksums (see nicEndpoint.Capabilities);
	// received segments, the container's, are verified by the stack.
	ch := channel.New(outQueueLen, uint32(l.cfg.MTU), "")
	if err := s.CreateNIC(nicID, &nicEndpoint{Endpoint: ch, l: l}); err != nil {
		s.Close()
		return nil, errors.New("uplink: gVisor NIC: " + err.String())
	}
	s.SetPromiscuousMode(nicID, true)
	s.SetSpoofing(nicID, true)
	s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: nicID},
		{Destination: header.IPv6EmptySubnet, NIC: nicID},
	})
	sack := tcpip.TCPSACKEnabled(true)
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	// Buffers start small and grow with auto-tuning: idle connections
	// cost little, busy ones reach host-socket speeds.
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4 << 10, Default: 128 << 10, Max: 8 << 20}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: 4 << 10, Default: 128 << 10, Max: 8 << 20}
	cc := tcpip.CongestionControlOption("cubic")
	// No RACK loss detection: its timers are a few round trips, and on a
	// loaded host a goroutine that waits that long to run makes them
	// fire on segments that are not lost (measured: about ten spurious
	// retransmissions a second on a port forward, each cutting the
	// window). SACK and duplicate ACKs still find real losses, and the
	// stack's packets cross no wire that reorders them.
	recovery := tcpip.TCPRecovery(0)
	for _, opt := range []tcpip.SettableTransportProtocolOption{&sack, &moderate, &rcv, &snd, &cc, &recovery} {
		if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
			s.Close()
			return nil, errors.New("uplink: gVisor TCP option: " + err.String())
		}
	}
	t := &tcpStack{
		l: l, s: s, ch: ch,
		dialer:  net.Dialer{Timeout: time.Duration(l.cfg.DialTimeout)},
		perHost: make(map[netip.Addr]int),
		synSeq:  make(map[synKey]uint32),
		conns:   make(map[*net.TCPConn]struct{}),
		byTuple: make(map[synKey]splicedConn),
	}
	// The forwarder's own in-flight cap counts handshakes as well as
	// dials; ours (max_pending_dials) is the one that decides, so its
	// cap only has to be above it.
	fwd := tcp.NewForwarder(s, 0, 2*l.cfg.MaxPendingDials+64, t.handle)
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, fwd.HandlePacket)
	return t, nil
}

// inject hands a container's TCP segment to the stack. Called under wmu.
func (t *tcpStack) inject(p *packet.Parsed) {
	b := p.Bytes()
	if p.HasL4 && p.TCPFlags&(packet.TCPSyn|packet.TCPAck) == packet.TCPSyn {
		l4 := p.L4()
		k := synKey{netip.AddrPortFrom(p.SrcIP(), p.SrcPort), netip.AddrPortFrom(p.DstIP(), p.DstPort)}
		t.mu.Lock()
		if len(t.synSeq) >= maxSynSeqs {
			clear(t.synSeq) // SYNs the forwarder ignored; their quotes lose the sequence
		}
		t.synSeq[k] = binary.BigEndian.Uint32(l4[4:8])
		t.mu.Unlock()
	}
	proto := ipv4.ProtocolNumber
	if p.Version == 6 {
		proto = ipv6.ProtocolNumber
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	t.ch.InjectInbound(proto, pkt)
	pkt.DecRef()
}

// injectICMPError passes the stack the ICMP errors about its connections
// (packet too big matters most); others have no socket to go to.
func (t *tcpStack) injectICMPError(p *packet.Parsed) {
	q := &t.l.ws.q
	l4 := p.L4()
	if len(l4) <= 8 || q.DecodeQuoted(l4[8:]) != nil || q.Proto != packet.ProtoTCP {
		t.l.count(DropProto)
		return
	}
	t.inject(p)
}

// nicEndpoint is the stack's NIC: the channel endpoint for everything but
// its outbound packets, which WritePackets queues for Read itself, holding
// a reference: Read copies each straight from the stack's buffers into
// the datapath's. A goroutine draining the channel's queue cost a hand-off
// and two more copies of every segment (the whole-packet view it built is
// above the buffer pool's chunk size, so each was a fresh 64 KiB
// allocation), most of what the host to container direction (port
// forwards) spent beyond the datapath.
type nicEndpoint struct {
	*channel.Endpoint
	l *Link
}

// WritePackets hands the stack's packets to Read, waiting for room as the
// channel's reader did (queueTCP): the stack's sender slows down with the
// datapath instead of losing segments it would retransmit.
func (e *nicEndpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		n++
		if !outboundTCP(pkt) {
			continue
		}
		o := getPkt(0)
		pkt.IncRef()
		o.pkt = pkt
		if !e.l.queueTCP(o) {
			return n, &tcpip.ErrClosedForSend{}
		}
	}
	return n, nil
}

// Capabilities says the stack need not sum what it sends: its segments
// leave through Read as link.ChecksumPartial batches, and the datapath has
// the container's TUN fill the checksum in (CHECKSUM_PARTIAL, which the
// container's TCP then does not verify) or fills it in itself for any
// other link. On a host to container forward the stack's sum and the
// container's verification were a tenth of the work.
func (e *nicEndpoint) Capabilities() stack.LinkEndpointCapabilities {
	return e.Endpoint.Capabilities() | stack.CapabilityTXChecksumOffload
}

// gsoMaxSize is the largest packet the stack sends for cutting: an IP
// packet's limit.
const gsoMaxSize = 1<<16 - 1

// SupportedGSO offers the stack host GSO when the reader handles it
// (Config.GSO): TCP then sends up to gsoMaxSize at once as one packet,
// marked with its segment size, like a Linux sender with TSO.
func (e *nicEndpoint) SupportedGSO() stack.SupportedGSO {
	if e.l.cfg.GSO {
		return stack.HostGSOSupported
	}
	return stack.GSONotSupported
}

// GSOMaxSize is gsoMaxSize, or 0 without GSO.
func (e *nicEndpoint) GSOMaxSize() uint32 {
	if e.l.cfg.GSO {
		return gsoMaxSize
	}
	return 0
}

// outboundTCP says whether one of the stack's packets may leave: only TCP
// does. An IPv6 stack may also speak MLD or NDP, which mean nothing on
// this point-to-point link.
func outboundTCP(pkt *stack.PacketBuffer) bool {
	h := pkt.NetworkHeader().Slice()
	switch {
	case len(h) >= header.IPv4MinimumSize && h[0]>>4 == 4:
		return h[9] == packet.ProtoTCP
	case len(h) >= header.IPv6MinimumSize && h[0]>>4 == 6:
		return h[6] == packet.ProtoTCP
	}
	return false
}

// copyPacket copies the whole of pkt (headers and payload, in as many
// views as it has) into b, which has room for pkt.Size() bytes.
func copyPacket(b []byte, pkt *stack.PacketBuffer) int {
	size := pkt.Size()
	vl, off := pkt.AsViewList()
	n := 0
	for v := vl.Front(); v != nil && n < size; v = v.Next() {
		s := v.AsSlice()
		if off >= len(s) {
			off -= len(s)
			continue
		}
		n += copy(b[n:size], s[off:])
		off = 0
	}
	return n
}

func addrOf(a tcpip.Address) netip.Addr {
	if a.Len() == 4 {
		return netip.AddrFrom4(a.As4())
	}
	return netip.AddrFrom16(a.As16())
}

// handle runs in the forwarder's goroutine for one new connection.
func (t *tcpStack) handle(r *tcp.ForwarderRequest) {
	l := t.l
	id := r.ID()
	src := netip.AddrPortFrom(addrOf(id.RemoteAddress), id.RemotePort)
	dst := netip.AddrPortFrom(addrOf(id.LocalAddress), id.LocalPort)
	t.mu.Lock()
	seq := t.synSeq[synKey{src, dst}]
	delete(t.synSeq, synKey{src, dst})
	t.mu.Unlock()

	host, via, ok := l.hostDest(dst)
	if !ok {
		l.count(refusedCounter(via))
		r.Complete(true)
		return
	}
	d := t.acquireDial(host.Addr())
	if d == nil {
		r.Complete(false) // silently: the container retries, and a RST would be a lie
		return
	}
	if !l.takeFlow() {
		t.releaseDial(d)
		r.Complete(true)
		return
	}
	c, err := t.dialer.DialContext(d.ctx, "tcp", host.String())
	evicted := t.releaseDial(d)
	if err != nil {
		l.releaseFlow()
		if evicted {
			// Given up for a newer SYN: the container's retransmission
			// gets a fresh dial; neither a RST nor an ICMP error would
			// be the destination's answer.
			r.Complete(false)
			return
		}
		t.dialFailed(r, err, src, dst, seq)
		return
	}
	hc := c.(*net.TCPConn)
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	r.Complete(false)
	if terr != nil {
		// The container went away during the handshake.
		hc.SetLinger(0)
		hc.Close()
		l.releaseFlow()
		return
	}
	t.splice(synKey{src, dst}, ep, &wq, hc)
}

// pendingDial is one host connect in progress.
type pendingDial struct {
	host       netip.Addr
	ctx        context.Context
	cancel     context.CancelFunc
	prev, next *pendingDial
	evicted    bool // given up by acquireDial; guarded by tcpStack.mu
}

// dialList is the connects in progress, oldest first (intrusive, so
// giving one up is O(1)).
type dialList struct{ head, tail *pendingDial }

func (dl *dialList) pushBack(d *pendingDial) {
	d.prev, d.next = dl.tail, nil
	if dl.tail != nil {
		dl.tail.next = d
	} else {
		dl.head = d
	}
	dl.tail = d
}

func (dl *dialList) remove(d *pendingDial) {
	if d.prev != nil {
		d.prev.next = d.next
	} else {
		dl.head = d.next
	}
	if d.next != nil {
		d.next.prev = d.prev
	} else {
		dl.tail = d.prev
	}
	d.prev, d.next = nil, nil
}

// acquireDial admits a host connect to a, or returns nil when a has
// max_pending_dials_per_host connects in progress already. When all
// max_pending_dials slots are taken, the oldest connect is given up
// (cancelled, counted as dials_evicted) for the new one: a storm of SYNs
// to black-holed destinations, each dial pending until its timeout, would
// otherwise hold every slot and a new connection to a live host would
// wait for one. The oldest dial is the one most likely to be black-holed;
// a live host answers within its round-trip time.
func (t *tcpStack) acquireDial(a netip.Addr) *pendingDial {
	l := t.l
	t.mu.Lock()
	if t.perHost[a] >= l.cfg.MaxPendingDialsPerHost {
		t.mu.Unlock()
		l.count(DropDialBudget)
		l.warnLimited(DropDialBudget, "uplink: too many TCP connects in progress to one host; SYN dropped",
			zap.Stringer("dst", a), zap.Int("max_pending_dials_per_host", l.cfg.MaxPendingDialsPerHost))
		return nil
	}
	var victim *pendingDial
	if t.pending >= l.cfg.MaxPendingDials && t.dials.head != nil {
		victim = t.dials.head
		t.unlinkDial(victim)
		victim.evicted = true
	}
	d := &pendingDial{host: a}
	d.ctx, d.cancel = context.WithCancel(l.ctx)
	t.dials.pushBack(d)
	t.pending++
	t.perHost[a]++
	// The gauge moves under mu with pending, so no reader ever sees it
	// above the bound (a victim's slot is the new dial's: no change).
	if victim == nil {
		l.gauge(DialsPending, 1)
	}
	t.mu.Unlock()
	if victim != nil {
		victim.cancel()
		l.count(DialsEvicted)
		l.warnLimited(DialsEvicted, "uplink: max_pending_dials reached; the oldest TCP connect given up for a new one",
			zap.Stringer("given_up", victim.host), zap.Int("max_pending_dials", l.cfg.MaxPendingDials))
	}
	return d
}

// unlinkDial takes d off the pending list and counts. Called under mu.
func (t *tcpStack) unlinkDial(d *pendingDial) {
	t.dials.remove(d)
	t.pending--
	if t.perHost[d.host]--; t.perHost[d.host] == 0 {
		delete(t.perHost, d.host)
	}
}

// releaseDial ends d's slot and reports whether acquireDial gave it up
// before (its dial was cancelled for a newer one).
func (t *tcpStack) releaseDial(d *pendingDial) (evicted bool) {
	t.mu.Lock()
	evicted = d.evicted
	if !evicted {
		t.unlinkDial(d)
		t.l.gauge(DialsPending, -1)
	}
	t.mu.Unlock()
	d.cancel()
	return evicted
}

// dialFailed answers the container's SYN the way the host's connect
// failed: RST for refused, an ICMP unreachable for the rest.
func (t *tcpStack) dialFailed(r *tcp.ForwarderRequest, err error, src, dst netip.AddrPort, seq uint32) {
	l := t.l
	v6 := src.Addr().Is6()
	var typ, code uint8
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		l.count(DialsRefused)
		r.Complete(true)
		return
	case errors.Is(err, syscall.ENETUNREACH):
		typ, code = pick(v6, 3, 1), 0
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		typ, code = pick(v6, 3, 1), pick(v6, 1, 3)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		typ, code = pick(v6, 3, 1), pick(v6, 13, 1)
	default:
		l.count(DialsFailed)
		r.Complete(l.ctx.Err() == nil)
		return
	}
	l.count(DialsFailed)
	r.Complete(false)
	// The quote: the SYN's IP header and first eight TCP bytes (ports and
	// sequence number), which is all RFC 792 asks and all Linux reads.
	var b [header.IPv6MinimumSize + header.TCPMinimumSize]byte
	hl := writeIPHeader(b[:], src.Addr(), dst.Addr(), header.TCPProtocolNumber, header.TCPMinimumSize)
	th := header.TCP(b[hl:])
	th.Encode(&header.TCPFields{SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: seq, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagSyn, WindowSize: 65535})
	var q packet.Parsed
	if q.Decode(b[:hl+header.TCPMinimumSize]) != nil {
		return
	}
	l.sendICMPError(&q, netip.Addr{}, typ, code, 0)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// splice copies both ways until both are shut, half-closing each side when
// the other sends FIN and resetting each when the other resets.
func (t *tcpStack) splice(k synKey, ep tcpip.Endpoint, wq *waiter.Queue, hc *net.TCPConn) {
	l := t.l
	t.mu.Lock()
	t.conns[hc] = struct{}{}
	t.byTuple[k] = splicedConn{hc, ep, hostAddrPort(hc.LocalAddr())}
	t.mu.Unlock()
	l.gauge(TCPConns, 1)
	select {
	case <-l.closed:
		// Close may have swept conns before this one was added.
		hc.Close()
	default:
	}

	done := make(chan struct{})
	go func() {
		t.hostToStack(hc, ep, wq, k.dst.Addr().Is6())
		close(done)
	}()
	t.stackToHost(ep, wq, hc)
	<-done

	t.mu.Lock()
	delete(t.conns, hc)
	if t.byTuple[k].hc == hc {
		delete(t.byTuple, k)
	}
	t.mu.Unlock()
	hc.Close()
	ep.Close()
	l.releaseFlow()
	l.gauge(TCPConns, -1)
}

// sockPayload is a tcpip.Payloader that reads a host socket straight
// into the stack's buffers: the stack's write reads n bytes the socket
// is known to hold (SIOCINQ) with no buffer of ours in between, one copy
// fewer than reading into a buffer and writing that.
type sockPayload struct {
	fd  int
	n   int        // bytes the write may still read
	err unix.Errno // a read's error, for the caller
}

// Len is what is left to read.
func (p *sockPayload) Len() int { return p.n }

// Read reads from the socket. The bytes were in the socket's queue when
// the write began and nothing else reads it, so a read never blocks; an
// error (a reset) ends the write and is kept in err.
func (p *sockPayload) Read(b []byte) (int, error) {
	if p.n == 0 {
		return 0, io.EOF
	}
	if len(b) == 0 {
		return 0, nil
	}
	b = b[:min(len(b), p.n)]
	for {
		r, _, e := unix.Syscall(unix.SYS_READ, uintptr(p.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch {
		case e == unix.EINTR:
			continue
		case e != 0:
			p.err, p.n = e, 0
			return 0, e
		case r == 0:
			p.n = 0
			return 0, io.ErrUnexpectedEOF
		}
		p.n -= int(r)
		return int(r), nil
	}
}

func (t *tcpStack) hostToStack(hc *net.TCPConn, ep tcpip.Endpoint, wq *waiter.Queue, v6 bool) {
	rc, err := hc.SyscallConn()
	if err != nil {
		ep.Abort()
		return
	}
	// The stack makes one segment of each write and never splits one to
	// fill another: a 64 KiB write with a 65,480-byte MSS left a 56-byte
	// segment behind, and half the packets toward the container were those
	// tails, each a whole trip through the datapath. So the stack is given
	// whole segments while the socket holds more than one, and the
	// remainder once it holds less. seg is the largest segment this link
	// carries; a container with a smaller MSS gets a short segment per
	// write, not per read.
	seg := t.l.cfg.MTU - ipHeaderLen(v6) - header.TCPMinimumSize
	we, wch := waiter.NewChannelEntry(waiter.WritableEvents | waiter.EventHUp | waiter.EventErr)
	wq.EventRegister(&we)
	defer wq.EventUnregister(&we)
	// step runs when the socket may be readable: it writes what the
	// socket holds (no buffer held while idle: the data waits in the
	// socket), or finds the end of the data, a socket error, or nothing
	// (false: wait for readability). A socket error is reported by a read
	// only once (the kernel clears it), so it is kept: a reset must reach
	// the container as one.
	var (
		src  sockPayload
		werr tcpip.Error
		eof  bool
	)
	step := func(fd uintptr) bool {
		avail, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		if err != nil {
			src.err = unix.EBADF
			if e, ok := err.(unix.Errno); ok {
				src.err = e
			}
			return true
		}
		if avail == 0 {
			var one [1]byte
			for {
				n, _, err := unix.Recvfrom(int(fd), one[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
				switch {
				case err == unix.EINTR:
					continue
				case err == unix.EAGAIN:
					return false
				case err != nil:
					src.err = unix.ECONNRESET
					if e, ok := err.(unix.Errno); ok {
						src.err = e
					}
					return true
				case n == 0:
					eof = true
					return true
				}
				break
			}
			return true // data came meanwhile: the next step writes it
		}
		// An atomic write takes all it is given, past the stack's send
		// buffer: at most maxHostWrite a time keeps a connection's
		// memory bounded whatever the host socket has queued.
		w := min(avail, maxHostWrite)
		if seg > 0 && w >= seg {
			w -= w % seg
		}
		src.fd, src.n = int(fd), w
		// Atomic: a write that is not may drop what it read beyond the
		// room it finds after the copy, and those bytes are gone from
		// the socket.
		_, werr = ep.Write(&src, tcpip.WriteOptions{Atomic: true})
		return true
	}
	for {
		werr, eof = nil, false
		err := rc.Read(step)
		switch {
		case err != nil || src.err != 0:
			// Closed while waiting (CloseTCP, or the link closing), or
			// the host side failed or was reset.
			ep.Abort()
			return
		case eof:
			// End of the host's data.
			ep.Shutdown(tcpip.ShutdownWrite)
			return
		}
		switch werr.(type) {
		case nil:
		case *tcpip.ErrWouldBlock:
			// The stack's send buffer is full: the data waits in the
			// host socket, whose window then closes.
			<-wch
		default:
			// The container reset: reset the host side too.
			hc.SetLinger(0)
			hc.Close()
			return
		}
	}
}

func (t *tcpStack) stackToHost(ep tcpip.Endpoint, wq *waiter.Queue, hc *net.TCPConn) {
	we, ch := waiter.NewChannelEntry(waiter.ReadableEvents | waiter.EventHUp | waiter.EventErr)
	wq.EventRegister(&we)
	defer wq.EventUnregister(&we)
	for {
		_, err := ep.Read(hc, tcpip.ReadOptions{})
		switch err.(type) {
		case nil:
		case *tcpip.ErrWouldBlock:
			<-ch
		case *tcpip.ErrClosedForReceive:
			hc.CloseWrite()
			return
		default:
			// Reset by the container, or the host socket failed.
			hc.SetLinger(0)
			hc.Close()
			ep.Abort()
			return
		}
	}
}

// CloseTCP resets both ends of the spliced TCP connection the container
// opened from src to dst (the tuple as the container sent it): the host
// socket closes with a RST and the container gets one. It reports whether
// there was such a connection. The gateway calls it when the connection's
// conntrack entry is deleted, so "ct delete" ends the flow on both sides;
// it does not block.
func (l *Link) CloseTCP(src, dst netip.AddrPort) bool {
	t := l.tcp
	t.mu.Lock()
	sc, ok := t.byTuple[synKey{src, dst}]
	if ok {
		delete(t.byTuple, synKey{src, dst})
	}
	t.mu.Unlock()
	if !ok {
		return false
	}
	sc.hc.SetLinger(0)
	sc.hc.Close()
	sc.ep.Abort()
	return true
}

// close ends every connection and the stack.
func (t *tcpStack) close() {
	t.mu.Lock()
	for c := range t.conns {
		c.SetLinger(0)
		c.Close()
	}
	t.mu.Unlock()
	t.ch.Close()
	t.s.Close()
}
