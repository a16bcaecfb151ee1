package uplink

import (
	"net"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"

	"tungate/packet"
)

// On an uplink masquerade is implicit: a flow leaves from the host
// socket's address and port, not from the container's. HostSide tells the
// control plane what that is, so `ct list` can show the host side as the
// reply tuple's destination, as Linux shows a masqueraded flow.

// HostSide returns the host address and port that stand for the
// container's flow from src to dst: a TCP connection's host socket, or the
// UDP or ping socket of the container endpoint src (for ICMP echo, src's
// port is the echo identifier and the result's port the ping socket's).
// ok is false when the uplink holds no socket for it (a port forward into
// the container, a flow that ended). It costs a map lookup, and for an
// unconnected UDP or ping socket one route lookup per destination (cached).
func (l *Link) HostSide(proto uint8, src, dst netip.AddrPort) (netip.AddrPort, bool) {
	switch proto {
	case packet.ProtoTCP:
		t := l.tcp
		t.mu.Lock()
		sc, ok := t.byTuple[synKey{src, dst}]
		t.mu.Unlock()
		return sc.local, ok && sc.local.IsValid()
	case packet.ProtoUDP, packet.ProtoICMP, packet.ProtoICMPv6:
		key := epKey{addr: src, proto: packet.ProtoUDP}
		if proto != packet.ProtoUDP {
			key.proto = packet.ProtoICMP
		}
		s := l.socks
		s.mu.RLock()
		ep := s.byKey[key]
		s.mu.RUnlock()
		if ep == nil {
			return netip.AddrPort{}, false
		}
		port, ok := ep.localPort()
		if !ok {
			return netip.AddrPort{}, false
		}
		host, _, _ := l.hostDest(dst)
		return netip.AddrPortFrom(l.sourceFor(host.Addr()), port), true
	}
	return netip.AddrPort{}, false
}

// localPort is the socket's port (a ping socket's echo identifier), read
// once the kernel has chosen it (at the first send) and kept.
func (ep *endpoint) localPort() (uint16, bool) {
	if p := ep.port.Load(); p != 0 {
		return uint16(p), true
	}
	ep.mu.RLock()
	defer ep.mu.RUnlock()
	if ep.closed {
		return 0, false
	}
	sa, err := unix.Getsockname(ep.fd)
	if err != nil {
		return 0, false
	}
	var p int
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		p = a.Port
	case *unix.SockaddrInet6:
		p = a.Port
	}
	if p == 0 {
		return 0, false
	}
	ep.port.Store(uint32(p))
	return uint16(p), true
}

// srcCache maps a host destination to the source address the host's
// routing picks for it: an endpoint socket is bound to no address, so its
// datagrams to different destinations may leave from different ones.
type srcCache struct {
	mu sync.Mutex
	m  map[netip.Addr]netip.Addr
}

const maxSrcCache = 4096

// sourceFor asks the kernel which address a datagram to dst would leave
// from (a connected UDP socket sends nothing); the unspecified address of
// dst's family when it cannot tell.
func (l *Link) sourceFor(dst netip.Addr) netip.Addr {
	c := &l.srcs
	c.mu.Lock()
	a, ok := c.m[dst]
	c.mu.Unlock()
	if ok {
		return a
	}
	a = netip.IPv4Unspecified()
	if dst.Is6() {
		a = netip.IPv6Unspecified()
	}
	if u, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9))); err == nil {
		a = hostAddrPort(u.LocalAddr()).Addr()
		u.Close()
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxSrcCache {
		c.m = make(map[netip.Addr]netip.Addr)
	}
	c.m[dst] = a
	c.mu.Unlock()
	return a
}

// hostAddrPort is a socket address as an unmapped netip.AddrPort.
func hostAddrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
