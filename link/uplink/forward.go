package uplink

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"tungate/packet"
)

// Port forwards: tungate listens on a host port and every connection it
// accepts enters the datapath as a connection from the client's real
// address arriving on the uplink, so the rules see it, the datapath's DNAT
// sends it to the container and the container sees who connected (what
// slirp4netns and pasta cannot do: their forwarded connections come from
// the gateway). The gVisor stack originates the connection, with the
// client's address and port as its source, and splices it to the accepted
// host socket once the container has accepted.
//
// A client on the host's loopback has no address the container could
// answer; it appears as the host_loopback address of its family, and
// without one its connection is closed.

// Forward is one port forward's host socket being served; Stop ends it
// (connections already forwarded go on). A forward also ends when its
// link closes.
type Forward struct {
	done chan struct{}
	once sync.Once
}

func newForward() *Forward { return &Forward{done: make(chan struct{})} }

// Stop closes the forward's host socket and waits for nothing.
func (f *Forward) Stop() { f.once.Do(func() { close(f.done) }) }

// ForwardTCP accepts connections on ln until the link closes or the
// returned Forward is stopped, each one injected as a connection from its
// client to dst (the address and port the datapath's DNAT matches; the
// container's address comes from that rule or from a runtime forward's
// binding). ln is closed then.
func (l *Link) ForwardTCP(ln net.Listener, dst func(local netip.AddrPort) netip.AddrPort) *Forward {
	f := newForward()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		select {
		case <-l.closed:
		case <-f.done:
		}
		ln.Close()
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				return
			}
			hc := c.(*net.TCPConn)
			// The client's own cap, here rather than in the
			// connection's goroutine: a flood of connections over it
			// costs an accept and a reset each, no goroutine.
			var src netip.Addr
			ok := false
			if ra, isTCP := hc.RemoteAddr().(*net.TCPAddr); isTCP {
				src, ok = l.clientAddr(ra.AddrPort().Addr())
			}
			if ok && !l.fwdSrc.take(src, l.cfg.MaxForwardsPerSource) {
				l.count(DropForwardSource)
				l.warnLimited(DropForwardSource, "uplink port forward: a client holds max_forwards_per_source connections; resetting its new ones",
					zap.Stringer("client", src), zap.Int("max_forwards_per_source", l.cfg.MaxForwardsPerSource))
				hc.SetLinger(0)
				hc.Close()
				continue
			}
			go func() {
				if ok {
					defer l.fwdSrc.release(src)
				}
				l.forwardOne(hc, dst)
			}()
		}
	}()
	return f
}

// testHookConnectWoke, when set by a test, runs when a forward's connect
// into the container has woken its goroutine, before the endpoint's state
// is judged.
var testHookConnectWoke func(ep tcpip.Endpoint)

// clientAddr is how the container sees a host client: itself, or for a
// loopback one the host_loopback address of its family.
func (l *Link) clientAddr(a netip.Addr) (netip.Addr, bool) {
	a = a.Unmap()
	if !a.IsLoopback() {
		return a, true
	}
	if a.Is4() {
		return l.cfg.hostLoopback4, l.cfg.hostLoopback4.IsValid()
	}
	return l.cfg.hostLoopback6, l.cfg.hostLoopback6.IsValid()
}

func (l *Link) forwardOne(hc *net.TCPConn, dstOf func(netip.AddrPort) netip.AddrPort) {
	t := l.tcp
	ra := hc.RemoteAddr().(*net.TCPAddr).AddrPort()
	la := hc.LocalAddr().(*net.TCPAddr).AddrPort()
	src, ok := l.clientAddr(ra.Addr())
	dst := dstOf(netip.AddrPortFrom(la.Addr().Unmap(), la.Port()))
	if !ok || !dst.IsValid() || src.Is4() != dst.Addr().Is4() {
		l.count(DropForward)
		hc.SetLinger(0)
		hc.Close()
		return
	}
	// The accept loop counted this connection against its client's
	// max_forwards_per_source before the budget every client shares.
	if !l.takeFlow() {
		l.count(DropForward)
		hc.SetLinger(0)
		hc.Close()
		return
	}
	proto := ipv4.ProtocolNumber
	if !src.Is4() {
		proto = ipv6.ProtocolNumber
	}
	var wq waiter.Queue
	ep, terr := t.s.NewEndpoint(tcp.ProtocolNumber, proto, &wq)
	if terr == nil {
		terr = ep.Bind(tcpip.FullAddress{NIC: nicID, Addr: tcpipAddr(src), Port: ra.Port()})
	}
	if terr != nil {
		l.log.Debug("uplink: forward bind", zap.Stringer("client", ra), zap.String("error", terr.String()))
		if ep != nil {
			ep.Close()
		}
		l.releaseFlow()
		l.count(DropForward)
		hc.SetLinger(0)
		hc.Close()
		return
	}
	we, ch := waiter.NewChannelEntry(waiter.WritableEvents | waiter.EventHUp | waiter.EventErr)
	wq.EventRegister(&we)
	terr = ep.Connect(tcpip.FullAddress{NIC: nicID, Addr: tcpipAddr(dst.Addr()), Port: dst.Port()})
	if _, ok := terr.(*tcpip.ErrConnectStarted); ok {
		ctx, cancel := context.WithTimeout(l.ctx, time.Duration(l.cfg.DialTimeout))
		select {
		case <-ch:
		case <-ctx.Done():
		}
		cancel()
		if testHookConnectWoke != nil {
			testHookConnectWoke(ep)
		}
		terr = ep.LastError()
		// The container may have answered, sent its data and closed
		// before this goroutine ran again (a server that writes a
		// greeting and hangs up): CLOSE-WAIT is connected too, its data
		// waits in the endpoint. Only a handshake that never finished
		// is a failure.
		if st := tcp.EndpointState(ep.State()); terr == nil && st != tcp.StateEstablished && st != tcp.StateCloseWait {
			terr = &tcpip.ErrTimeout{}
		}
	}
	wq.EventUnregister(&we)
	if terr != nil {
		// Refused or filtered inside: the host client gets a reset.
		ep.Abort()
		l.releaseFlow()
		l.count(ForwardsFailed)
		hc.SetLinger(0)
		hc.Close()
		return
	}
	l.count(Forwards)
	// Known to CloseTCP by the tuple the datapath tracks it by.
	t.splice(synKey{src: netip.AddrPortFrom(src, ra.Port()), dst: dst}, ep, &wq, hc)
}

// fwdSources counts the port-forwarded TCP connections of each client
// address. Its map holds only clients with a connection, so it is bounded
// by the flows held, never by how many clients ever connected. A mutex is
// enough: it is taken twice per forwarded connection, not per packet.
type fwdSources struct {
	mu sync.Mutex // guards n
	n  map[netip.Addr]int32
}

// take counts one more connection of a unless it holds max already.
func (s *fwdSources) take(a netip.Addr, max int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		s.n = map[netip.Addr]int32{}
	}
	if int(s.n[a]) >= max {
		return false
	}
	s.n[a]++
	return true
}

func (s *fwdSources) release(a netip.Addr) {
	s.mu.Lock()
	if n := s.n[a]; n <= 1 {
		delete(s.n, a)
	} else {
		s.n[a] = n - 1
	}
	s.mu.Unlock()
}

// count is a's connections held.
func (s *fwdSources) count(a netip.Addr) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int(s.n[a])
}

// udpForward is one UDP port forward: its host socket and the addresses
// its datagrams enter the datapath with.
type udpForward struct {
	c          *net.UDPConn
	dst4, dst6 netip.AddrPort
}

// ForwardUDP reads datagrams on c until the link closes or the returned
// Forward is stopped, each injected as one from its client to dst4 or
// dst6 (by the client's family; an invalid one drops that family). The
// container's replies, which the datapath's DNAT makes come from dst4 or
// dst6, leave through c, so the client hears them from the port it sent
// to. c is closed then.
func (l *Link) ForwardUDP(c *net.UDPConn, dst4, dst6 netip.AddrPort) *Forward {
	h := newForward()
	f := &udpForward{c: c, dst4: dst4, dst6: dst6}
	l.fwdMu.Lock()
	if l.fwdUDP == nil {
		l.fwdUDP = map[netip.AddrPort]*udpForward{}
	}
	for _, d := range []netip.AddrPort{dst4, dst6} {
		if d.IsValid() {
			l.fwdUDP[d] = f
		}
	}
	l.fwdMu.Unlock()
	l.hasFwdUDP.Store(true)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		select {
		case <-l.closed:
		case <-h.done:
			l.fwdMu.Lock()
			for _, d := range []netip.AddrPort{dst4, dst6} {
				if d.IsValid() && l.fwdUDP[d] == f {
					delete(l.fwdUDP, d)
				}
			}
			l.hasFwdUDP.Store(len(l.fwdUDP) > 0)
			l.fwdMu.Unlock()
		}
		c.Close()
	}()
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				return
			}
			src, ok := l.clientAddr(from.Addr())
			dst := f.dst6
			if src.Is4() {
				dst = f.dst4
			}
			hl := ipHeaderLen(!src.Is4())
			if !ok || !dst.IsValid() || hl+8+n > l.cfg.MTU {
				l.count(DropForward)
				continue
			}
			o := getPkt(hl + 8 + n)
			copy(o.b[hl+8:], buf[:n])
			buildUDP(o.b, netip.AddrPortFrom(src, from.Port()), dst, n)
			l.count(Forwards)
			l.queue(o)
		}
	}()
	return h
}

// sendForwardReply sends a container's UDP reply to a port-forward client
// through the forward's socket; false when p is not such a reply. Called
// under wmu.
func (l *Link) sendForwardReply(p *packet.Parsed) bool {
	if !l.hasFwdUDP.Load() {
		return false
	}
	l.fwdMu.Lock()
	f := l.fwdUDP[netip.AddrPortFrom(p.SrcIP(), p.SrcPort)]
	l.fwdMu.Unlock()
	if f == nil {
		return false
	}
	to := netip.AddrPortFrom(p.DstIP(), p.DstPort)
	// A loopback client, seen as host_loopback (127.0.0.1 or ::1: the
	// loopback address it sent from is not kept).
	switch a := to.Addr(); {
	case a == l.cfg.hostLoopback4 && a.IsValid():
		to = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), to.Port())
	case a == l.cfg.hostLoopback6 && a.IsValid():
		to = netip.AddrPortFrom(netip.IPv6Loopback(), to.Port())
	}
	l4 := p.L4()
	ulen := int(binary.BigEndian.Uint16(l4[4:]))
	if _, err := f.c.WriteToUDPAddrPort(l4[8:ulen], to); err != nil {
		l.count(DropSendError)
	}
	return true
}
