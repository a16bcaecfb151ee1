// Package uplink is the rootless kind of link: the container's way out
// through ordinary host sockets of the unprivileged user running tungate,
// what slirp4netns and pasta do, with the datapath's firewall in front.
//
// Write takes the IP packets the datapath routed to the uplink and sends
// them from host sockets; Read returns the packets coming back, built with
// the original tuple reversed so the datapath's conntrack sees ordinary
// replies. The host socket is the address translation ("on an uplink
// masquerade is implicit"):
//
//   - UDP: one unconnected host socket per container endpoint (source
//     address and port), so every destination sees the same host port
//     (endpoint-independent mapping, RFC 4787). One epoll goroutine serves
//     all of them with recvmmsg; Write sends with sendmmsg. IP_RECVERR
//     turns the ICMP errors the host receives into ICMP errors quoting the
//     container's packet.
//   - ICMP echo: one unprivileged ping socket per container echo endpoint.
//   - TCP: terminated in a gVisor stack whose forwarder dials the host
//     first and only then completes the container's handshake, so a
//     refused or unreachable destination is answered by a RST or an ICMP
//     error, never by "connected, then reset".
//
// The host's loopback is refused unless allow_host_loopback is set; a
// virtual address (host_loopback, slirp4netns's 10.0.2.2) stands for it,
// which is what a Linux container needs: it drops packets from
// 127.0.0.0/8 arriving on its interface. A virtual resolver address (dns)
// forwards port 53 to the host's resolver. ForwardTCP and ForwardUDP
// inject the connections a host port forward accepts as coming from their
// real clients. In a config file:
//
//	[[interface]]
//	name = "wan"
//	kind = "uplink"
//	mtu = 65520
//	allow_host_loopback = true
//	host_loopback = ["10.0.2.2", "fd00::2"]
//	dns = ["10.0.2.3", "fd00::3"]
//	udp_timeout = "180s"
package uplink

import (
	"context"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"tungate/link"
	"tungate/packet"
)

// batchSize is what one Read returns and one Write carries at most; it is
// wireguard-go's IdealBatchSize, which the other links use.
const batchSize = 128

// outQueueLen is how many built packets wait for Read. UDP and ICMP drop
// (counted) beyond it; the TCP stack's reader waits, so TCP backs off.
const outQueueLen = 1024

// Link is an open uplink. All methods are safe for concurrent use.
type Link struct {
	cfg Config
	log *zap.Logger

	resolver4, resolver6 netip.AddrPort // host resolvers behind cfg.DNS

	out   chan *outPkt // packets for Read
	next  *outPkt      // Read's: taken from out, for the next batch
	flags link.Flags   // Read's: the flags of its last batch
	// lazy (set by ReadLazily) lets Read leave a large stack segment's
	// payload in the stack's buffers; held are the packets of the last
	// batch whose payload was left so, pieces and hdr say where it is
	// per packet of the batch. All are Read's, like next.
	lazy   bool
	held   []*outPkt
	pieces [][][]byte
	hdr    []int
	gso    []int         // per packet of the last batch (see GSO)
	closed chan struct{} // closed by Close
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
	wg     sync.WaitGroup // the poller and the forwards' watchers

	flows atomic.Int64 // host sockets held or being dialled, against cfg.MaxFlows
	stats [NumCounters]atomic.Uint64
	warn  [NumCounters]atomic.Int64 // last warning time per counter, for rate limiting

	wmu sync.Mutex // serializes Write; guards ws
	ws  writeScratch

	socks *socketTable
	tcp   *tcpStack
	srcs  srcCache // HostSide's source addresses

	fwdSrc fwdSources // port-forwarded TCP connections per client address

	fwdMu     sync.Mutex // guards fwdUDP
	fwdUDP    map[netip.AddrPort]*udpForward
	hasFwdUDP atomic.Bool // fwdUDP is not empty: Write looks there first
}

// New opens an uplink. cfg is validated (defaults filled) first.
func New(cfg Config, log *zap.Logger) (*Link, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	l := &Link{
		cfg:    cfg,
		log:    log,
		out:    make(chan *outPkt, outQueueLen),
		closed: make(chan struct{}),
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	if cfg.dns4.IsValid() || cfg.dns6.IsValid() {
		if err := l.loadResolvers(); err != nil {
			return nil, err
		}
	}
	l.ws.init(cfg.MTU)
	var err error
	if l.socks, err = newSocketTable(l); err != nil {
		return nil, err
	}
	if l.tcp, err = newTCPStack(l); err != nil {
		l.socks.close()
		return nil, err
	}
	if !pingAllowed() {
		log.Warn("uplink: ICMP echo from the container will be dropped; "+errPingDenied.Error(),
			zap.Int("gid", os.Getegid()))
	}
	l.wg.Add(1)
	go l.socks.poll()
	log.Info("uplink open", zap.Int("mtu", cfg.MTU), zap.Int("max_flows", cfg.MaxFlows),
		zap.Bool("allow_host_loopback", cfg.AllowHostLoopback),
		zap.Stringer("resolver4", l.resolver4), zap.Stringer("resolver6", l.resolver6))
	return l, nil
}

// Read returns the packets coming back to the container, blocking until
// there is one. A batch holds either the TCP stack's packets only or the
// link's own UDP and ICMP packets only (ReadFlags tells which), so the
// stack's may go with their checksums unfilled.
func (l *Link) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	l.releaseHeld()
	select {
	case <-l.closed:
		// Read is the only reader of next and out: give their packets'
		// buffers back here, as Close (another goroutine) cannot.
		if l.next != nil {
			putPkt(l.next)
			l.next = nil
		}
		for {
			select {
			case p := <-l.out:
				putPkt(p)
			default:
				return 0, os.ErrClosed
			}
		}
	default:
	}
	p := l.next
	l.next = nil
	if p == nil {
		select {
		case p = <-l.out:
		case <-l.closed:
			return 0, os.ErrClosed
		}
	}
	stack := p.pkt != nil
	n := 0
	for {
		switch {
		case p.pkt != nil && p.pkt.Size() <= len(bufs[n])-offset:
			l.setGSO(n, p)
			if l.lazy && l.readLazily(bufs[n][offset:], n, p) {
				sizes[n] = p.pkt.Size()
				n++
				p = nil // held until the next Read
				break
			}
			l.noPieces(n)
			sizes[n] = copyPacket(bufs[n][offset:], p.pkt)
			n++
		case p.pkt == nil && len(p.b) <= len(bufs[n])-offset:
			l.noPieces(n)
			l.setGSO(n, p)
			sizes[n] = copy(bufs[n][offset:], p.b)
			n++
		default:
			l.count(DropTooBig)
		}
		if p != nil {
			putPkt(p)
		}
		if n == len(bufs) {
			break
		}
		select {
		case p = <-l.out:
			if (p.pkt != nil) != stack {
				l.next = p // the next batch's first
				p = nil
			}
		default:
			p = nil
		}
		if p == nil {
			break
		}
	}
	if n == 0 {
		return l.Read(bufs, sizes, offset)
	}
	l.flags = link.ChecksumsVerified
	if stack {
		l.flags |= link.ChecksumPartial
	}
	return n, nil
}

// ReadFlags says every packet of the last Read has checksums this link
// computed itself (it builds every packet it reads), or, for a batch of
// the TCP stack's segments, left for the output device to fill in: the
// stack runs with checksum offload (see nicEndpoint).
func (l *Link) ReadFlags() link.Flags { return l.flags }

// Write sends the packets bufs[i][offset:] out through host sockets. A
// packet the uplink cannot carry is dropped and counted (and answered
// where the protocol has an answer); it is never an error.
func (l *Link) Write(bufs [][]byte, offset int) (int, error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	select {
	case <-l.closed:
		// Checked under wmu: Close takes it before closing the sockets.
		return 0, os.ErrClosed
	default:
	}
	now := time.Now().UnixNano()
	for _, b := range bufs {
		l.writeOne(b[offset:], now)
	}
	l.socks.flush(&l.ws)
	return len(bufs), nil
}

func (l *Link) writeOne(b []byte, now int64) {
	p := &l.ws.p
	if err := p.Decode(b); err != nil {
		l.count(DropMalformed)
		return
	}
	if p.Fragment {
		// The datapath reassembles before routing; a fragment here has
		// no ports to pick a socket by.
		l.count(DropFragment)
		return
	}
	switch p.Proto {
	case packet.ProtoUDP:
		l.socks.queueUDP(&l.ws, p, now)
	case packet.ProtoTCP:
		l.tcp.inject(p)
	case packet.ProtoICMP, packet.ProtoICMPv6:
		switch {
		case p.ICMPType == 8 && p.Version == 4, p.ICMPType == 128 && p.Version == 6:
			l.socks.sendEcho(&l.ws, p, now)
		case p.IsICMPError():
			l.tcp.injectICMPError(p)
		default:
			l.count(DropProto)
		}
	default:
		l.count(DropProto)
	}
}

// BatchSize is the most packets one Read returns.
func (l *Link) BatchSize() int { return batchSize }

// MTU is the configured MTU.
func (l *Link) MTU() (int, error) { return l.cfg.MTU, nil }

// Close closes every host socket and connection; a blocked Read returns
// os.ErrClosed.
func (l *Link) Close() error {
	l.once.Do(func() {
		close(l.closed)
		l.cancel()
		l.socks.wake()
		l.tcp.close()
		l.wg.Wait()
		l.wmu.Lock() // a Write in progress ends before its sockets close
		l.socks.close()
		l.wmu.Unlock()
	})
	return nil
}

// Flows is the number of host sockets the uplink holds or is dialling.
func (l *Link) Flows() int { return int(l.flows.Load()) }

// takeFlow reserves one host socket of the budget.
func (l *Link) takeFlow() bool {
	if l.flows.Add(1) > int64(l.cfg.MaxFlows) {
		l.flows.Add(-1)
		l.count(DropBudget)
		l.warnLimited(DropBudget, "uplink host socket budget exhausted; raise max_flows or RLIMIT_NOFILE",
			zap.Int("max_flows", l.cfg.MaxFlows))
		return false
	}
	return true
}

func (l *Link) releaseFlow() { l.flows.Add(-1) }

// queue hands a built packet to Read, dropping it when Read lags.
func (l *Link) queue(p *outPkt) {
	select {
	case l.out <- p:
	default:
		putPkt(p)
		l.count(DropQueueFull)
	}
}

// tcpQueueWait is how long the TCP stack's sender waits for room in the
// queue for Read before its packet is dropped.
const tcpQueueWait = 100 * time.Millisecond

// queueTCP hands one of the TCP stack's packets to Read, waiting for room
// when Read lags: its segments are worth the wait, retransmissions would
// cost more. But not forever: the sender may hold its endpoint's lock,
// which the goroutine that drains the queue can need (an ICMP error the
// datapath answers a segment with comes back through Write), so after
// tcpQueueWait the packet is dropped (counted) and TCP retransmits it. It
// reports false once the link is closed.
func (l *Link) queueTCP(p *outPkt) bool {
	select {
	case l.out <- p:
		return true
	default:
	}
	t := time.NewTimer(tcpQueueWait)
	defer t.Stop()
	select {
	case l.out <- p:
		return true
	case <-l.closed:
		putPkt(p)
		return false
	case <-t.C:
		putPkt(p)
		l.count(DropQueueFull)
		return true
	}
}

// sendICMPError answers orig with an ICMP error from src (orig's
// destination when src is invalid).
func (l *Link) sendICMPError(orig *packet.Parsed, src netip.Addr, typ, code uint8, param uint32) {
	if !src.IsValid() {
		src = orig.DstIP()
	}
	o := getPkt(maxICMPError6)
	n := buildICMPError(o.b, orig.Bytes(), src, orig.SrcIP(), typ, code, param)
	if n == 0 {
		putPkt(o)
		return
	}
	o.b = o.b[:n]
	l.count(ICMPErrorsSent)
	l.queue(o)
}

// refuse answers a packet to a destination the config forbids with
// "communication administratively prohibited".
func (l *Link) refuse(p *packet.Parsed, v via) {
	l.count(refusedCounter(v))
	if p.Version == 4 {
		l.sendICMPError(p, netip.Addr{}, 3, 13, 0)
	} else {
		l.sendICMPError(p, netip.Addr{}, 1, 1, 0)
	}
}

// refusedCounter is the drop reason for a destination hostDest refused.
func refusedCounter(v via) Counter {
	if v == viaDNS {
		return DropVirtualPort
	}
	return DropLoopback
}

// warnLimited logs at most one warning per counter every ten seconds.
func (l *Link) warnLimited(c Counter, msg string, fields ...zap.Field) {
	now := time.Now().UnixNano()
	last := l.warn[c].Load()
	if now-last < int64(10*time.Second) || !l.warn[c].CompareAndSwap(last, now) {
		return
	}
	l.log.Warn(msg, append(fields, zap.Uint64("count", l.stats[c].Load()))...)
}

func (l *Link) count(c Counter) { l.stats[c].Add(1) }

var (
	_ link.Link    = (*Link)(nil)
	_ link.Flagger = (*Link)(nil)
)
