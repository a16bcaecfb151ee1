package uplink

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"tungate/packet"
)

// Host sockets: one epoll goroutine for all of them.
//
// Why epoll and not Go's netpoller: the netpoller wakes the goroutine
// blocked on one descriptor, so thousands of endpoint sockets would need
// thousands of goroutines (and a read buffer each). One epoll descriptor
// reports which sockets are ready and one goroutine drains each with
// recvmmsg into buffers it owns. The same goroutine closes idle sockets,
// so a descriptor is never closed while it reads from it; senders hold the
// endpoint's read lock, which the closer takes for writing.

// rxBatch is how many datagrams one recvmmsg takes.
const rxBatch = 32

// epKey names an endpoint: the container's address and UDP port, or its
// address and echo identifier for ping sockets.
type epKey struct {
	addr  netip.AddrPort
	proto uint8 // packet.ProtoUDP, or packet.ProtoICMP for echo of either family
}

// endpoint is one host socket standing for one container endpoint.
type endpoint struct {
	key epKey
	fd  int
	v6  bool

	mu     sync.RWMutex // senders hold it for reading while they use fd; the poller takes it to close
	closed bool         // guarded by mu

	lastUse atomic.Int64  // unix ns of the last datagram either way
	port    atomic.Uint32 // the socket's port once known (HostSide)
	// viaDNS / viaLoop: the container sent to the virtual resolver or
	// host-loopback address, so what comes from the host's resolver or
	// loopback is shown as coming from there.
	viaDNS, viaLoop atomic.Bool
}

// mmsghdr is struct mmsghdr (x/sys/unix has no recvmmsg/sendmmsg).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

type socketTable struct {
	l    *Link
	epfd int
	evfd int // eventfd that wakes the poller on Close

	mu    sync.RWMutex // guards byKey and byFd; never held while waiting for an endpoint's mu
	byKey map[epKey]*endpoint
	byFd  map[int32]*endpoint

	// poller-owned scratch
	events   [64]unix.EpollEvent
	rxHdrs   [rxBatch]mmsghdr
	rxIovs   [rxBatch]unix.Iovec
	rxNames  [rxBatch]unix.RawSockaddrInet6
	rxBufs   [rxBatch][]byte
	errBuf   []byte
	errOOB   []byte
	recon    []byte
	q        packet.Parsed
	maxData  int // largest datagram payload received
	lastReap time.Time
}

func newSocketTable(l *Link) (*socketTable, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, err
	}
	s := &socketTable{
		l: l, epfd: epfd, evfd: evfd,
		byKey:    make(map[epKey]*endpoint),
		byFd:     make(map[int32]*endpoint),
		maxData:  l.cfg.MTU - header.IPv4MinimumSize - header.UDPMinimumSize,
		errBuf:   make([]byte, l.cfg.MTU),
		errOOB:   make([]byte, 512),
		recon:    make([]byte, l.cfg.MTU+header.IPv6MinimumSize+header.UDPMinimumSize),
		lastReap: time.Now(),
	}
	for i := range s.rxBufs {
		s.rxBufs[i] = make([]byte, s.maxData)
	}
	return s, nil
}

// wake makes the poller look at the link's closed channel.
func (s *socketTable) wake() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(s.evfd, one[:])
}

// close closes every socket; the poller has returned.
func (s *socketTable) close() {
	s.mu.Lock()
	eps := make([]*endpoint, 0, len(s.byKey))
	for _, ep := range s.byKey {
		eps = append(eps, ep)
	}
	s.byKey, s.byFd = map[epKey]*endpoint{}, map[int32]*endpoint{}
	s.mu.Unlock()
	for _, ep := range eps {
		s.closeEndpoint(ep)
	}
	unix.Close(s.epfd)
	unix.Close(s.evfd)
}

func (s *socketTable) closeEndpoint(ep *endpoint) {
	ep.mu.Lock()
	ep.closed = true
	unix.EpollCtl(s.epfd, unix.EPOLL_CTL_DEL, ep.fd, nil)
	unix.Close(ep.fd)
	ep.mu.Unlock()
	s.l.releaseFlow()
	if ep.key.proto == packet.ProtoUDP {
		s.l.gauge(UDPSockets, -1)
	} else {
		s.l.gauge(PingSockets, -1)
	}
}

// lockEndpoint returns the open endpoint for key, read-locked, opening a
// socket when there is none; nil when the budget or the host refuses.
func (s *socketTable) lockEndpoint(key epKey) *endpoint {
	for {
		s.mu.RLock()
		ep := s.byKey[key]
		s.mu.RUnlock()
		if ep == nil {
			if ep = s.open(key); ep == nil {
				return nil
			}
		}
		ep.mu.RLock()
		if !ep.closed {
			return ep
		}
		ep.mu.RUnlock()
	}
}

var errPingDenied = errors.New("ping socket refused: this user's group is outside net.ipv4.ping_group_range; " +
	`allow it with: sysctl -w net.ipv4.ping_group_range="0 2147483647"`)

// open makes the host socket for key. Only Write's goroutine opens, so two
// sockets for one key cannot race.
func (s *socketTable) open(key epKey) *endpoint {
	l := s.l
	if !l.takeFlow() {
		return nil
	}
	v6 := key.addr.Addr().Is6()
	family, proto := unix.AF_INET, 0
	if v6 {
		family = unix.AF_INET6
	}
	if key.proto == packet.ProtoICMP {
		proto = unix.IPPROTO_ICMP
		if v6 {
			proto = unix.IPPROTO_ICMPV6
		}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		l.releaseFlow()
		if key.proto == packet.ProtoICMP && (err == unix.EACCES || err == unix.EPERM) {
			l.count(DropPingDenied)
			l.warnLimited(DropPingDenied, errPingDenied.Error(), zap.Int("gid", unix.Getegid()))
			return nil
		}
		l.count(DropSendError)
		l.warnLimited(DropSendError, "uplink: cannot open a host socket", zap.Error(err))
		return nil
	}
	if v6 {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1)
	} else {
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVERR, 1)
	}
	if err == nil {
		err = unix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
	}
	if err != nil {
		unix.Close(fd)
		l.releaseFlow()
		l.count(DropSendError)
		l.warnLimited(DropSendError, "uplink: cannot set up a host socket", zap.Error(err))
		return nil
	}
	ep := &endpoint{key: key, fd: fd, v6: v6}
	ep.lastUse.Store(time.Now().UnixNano())
	s.mu.Lock()
	s.byKey[key] = ep
	s.byFd[int32(fd)] = ep
	s.mu.Unlock()
	if key.proto == packet.ProtoUDP {
		l.gauge(UDPSockets, 1)
	} else {
		l.gauge(PingSockets, 1)
	}
	return ep
}

// writeScratch is Write's state, guarded by Link.wmu: the pending sendmmsg
// batch of one endpoint (whose read lock it holds) and the parsed packet.
type writeScratch struct {
	p, q  packet.Parsed
	cur   *endpoint
	n     int
	hdrs  [batchSize]mmsghdr
	iovs  [batchSize]unix.Iovec
	names [batchSize]unix.RawSockaddrInet6
	ctrl  [batchSize][ttlCmsgSpace]byte // IP_TTL / IPV6_HOPLIMIT of each datagram
	origs [batchSize][]byte             // the packets queued, to answer send errors
}

// ttlCmsgSpace holds one control message carrying an int: CmsgSpace(4) on
// 64-bit Linux (TestTTLCmsgSpace checks), a constant for the array size.
const ttlCmsgSpace = 24

func (w *writeScratch) init(int) {
	for i := range w.hdrs {
		h := &w.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&w.names[i]))
		h.Iov = &w.iovs[i]
		h.SetIovlen(1)
		h.Control = &w.ctrl[i][0]
		h.SetControllen(ttlCmsgSpace)
	}
}

// putTTL writes the control message that sends a datagram with the TTL
// (hop limit) the container's packet has after the datapath's decrement:
// the host socket forwards it as a router would, so a router's time
// exceeded comes back through IP_RECVERR and traceroute works.
func putTTL(c []byte, v6 bool, ttl uint8) {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
	h.SetLen(unix.CmsgLen(4))
	if v6 {
		h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_HOPLIMIT
	} else {
		h.Level, h.Type = unix.IPPROTO_IP, unix.IP_TTL
	}
	binary.NativeEndian.PutUint32(c[unix.CmsgLen(0):], uint32(ttl))
}

// putSockaddr writes a as a sockaddr_in or sockaddr_in6 into sa and
// returns its length.
func putSockaddr(sa *unix.RawSockaddrInet6, a netip.AddrPort) uint32 {
	pb := (*[2]byte)(unsafe.Pointer(&sa.Port))
	binary.BigEndian.PutUint16(pb[:], a.Port())
	if a.Addr().Is4() {
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		s4.Family = unix.AF_INET
		s4.Addr = a.Addr().As4()
		s4.Zero = [8]uint8{}
		return unix.SizeofSockaddrInet4
	}
	sa.Family = unix.AF_INET6
	sa.Flowinfo = 0
	sa.Addr = a.Addr().As16()
	sa.Scope_id = 0
	return unix.SizeofSockaddrInet6
}

// getSockaddr reads a sockaddr_in or sockaddr_in6.
func getSockaddr(sa *unix.RawSockaddrInet6) netip.AddrPort {
	pb := (*[2]byte)(unsafe.Pointer(&sa.Port))
	port := binary.BigEndian.Uint16(pb[:])
	switch sa.Family {
	case unix.AF_INET:
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), port)
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port)
	}
	return netip.AddrPort{}
}

// queueUDP adds the UDP packet p to the batch of its endpoint's socket.
func (s *socketTable) queueUDP(w *writeScratch, p *packet.Parsed, now int64) {
	l := s.l
	l4 := p.L4()
	if len(l4) < header.UDPMinimumSize {
		l.count(DropMalformed)
		return
	}
	ulen := int(binary.BigEndian.Uint16(l4[4:]))
	if ulen < header.UDPMinimumSize || ulen > len(l4) {
		l.count(DropMalformed)
		return
	}
	if l.sendForwardReply(p) {
		return
	}
	if d := p.DstIP(); d.IsMulticast() || d == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		// A host socket would send it on the host's networks, which are
		// not the container's; and no ICMP error answers multicast.
		l.count(DropMulticast)
		return
	}
	dst, via, ok := l.hostDest(netip.AddrPortFrom(p.DstIP(), p.DstPort))
	if !ok {
		l.refuse(p, via)
		return
	}
	key := epKey{addr: netip.AddrPortFrom(p.SrcIP(), p.SrcPort), proto: packet.ProtoUDP}
	if w.cur == nil || w.cur.key != key {
		s.flush(w)
		if w.cur = s.lockEndpoint(key); w.cur == nil {
			return
		}
	}
	ep := w.cur
	ep.lastUse.Store(now)
	switch via {
	case viaDNS:
		if !ep.viaDNS.Load() {
			ep.viaDNS.Store(true)
		}
	case viaLoopback:
		if !ep.viaLoop.Load() {
			ep.viaLoop.Store(true)
		}
	}
	i := w.n
	h := &w.hdrs[i].hdr
	h.Namelen = putSockaddr(&w.names[i], dst)
	putTTL(w.ctrl[i][:], ep.v6, p.TTL())
	data := l4[header.UDPMinimumSize:ulen]
	if len(data) > 0 {
		w.iovs[i].Base = &data[0]
	} else {
		w.iovs[i].Base = nil
	}
	w.iovs[i].SetLen(len(data))
	w.origs[i] = p.Bytes()
	w.n++
	if w.n == batchSize {
		s.flush(w)
		ep.mu.RLock() // flush let go of it; the endpoint stays current
		if ep.closed {
			ep.mu.RUnlock()
			return
		}
		w.cur = ep
	}
}

// flush sends the pending batch with sendmmsg and lets go of its endpoint.
func (s *socketTable) flush(w *writeScratch) {
	ep := w.cur
	if ep == nil {
		return
	}
	for i := 0; i < w.n; {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(ep.fd), uintptr(unsafe.Pointer(&w.hdrs[i])),
			uintptr(w.n-i), unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 || r == 0 {
			// The first message of the rest failed; sendmmsg stops there.
			s.sendFailed(w, w.origs[i], e)
			i++
			continue
		}
		i += int(r)
	}
	for i := range w.n {
		w.origs[i] = nil
	}
	w.n = 0
	w.cur = nil
	ep.mu.RUnlock()
}

// sendFailed answers a datagram the host would not send the way a router
// would have.
func (s *socketTable) sendFailed(w *writeScratch, orig []byte, e unix.Errno) {
	l := s.l
	if err := w.q.Decode(orig); err != nil {
		l.count(DropSendError)
		return
	}
	v6 := w.q.Version == 6
	switch e {
	case unix.ENETUNREACH:
		l.count(DropSendError)
		l.sendICMPError(&w.q, netip.Addr{}, pick(v6, 3, 1), 0, 0)
	case unix.EHOSTUNREACH:
		l.count(DropSendError)
		l.sendICMPError(&w.q, netip.Addr{}, pick(v6, 3, 1), pick(v6, 1, 3), 0)
	case unix.EACCES, unix.EPERM:
		l.count(DropSendError)
		l.sendICMPError(&w.q, netip.Addr{}, pick(v6, 3, 1), pick(v6, 13, 1), 0)
	case unix.EMSGSIZE:
		l.count(DropTooBig)
	default:
		l.count(DropSendError)
		l.warnLimited(DropSendError, "uplink: host send failed", zap.Error(e))
	}
}

func pick(v6 bool, v4val, v6val uint8) uint8 {
	if v6 {
		return v6val
	}
	return v4val
}

// sendEcho sends an ICMP echo request through the ping socket of its
// container endpoint (address, identifier); the kernel sets the socket's
// own identifier and the checksum.
func (s *socketTable) sendEcho(w *writeScratch, p *packet.Parsed, now int64) {
	l := s.l
	l4 := p.L4()
	if len(l4) < header.ICMPv4MinimumSize {
		l.count(DropMalformed)
		return
	}
	dst, via, ok := l.hostDest(netip.AddrPortFrom(p.DstIP(), 0))
	if !ok || via == viaDNS {
		l.refuse(p, via)
		return
	}
	s.flush(w)
	ep := s.lockEndpoint(epKey{addr: netip.AddrPortFrom(p.SrcIP(), p.SrcPort), proto: packet.ProtoICMP})
	if ep == nil {
		return
	}
	ep.lastUse.Store(now)
	if via == viaLoopback && !ep.viaLoop.Load() {
		ep.viaLoop.Store(true)
	}
	nl := putSockaddr(&w.names[0], dst)
	for {
		_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(ep.fd), uintptr(unsafe.Pointer(&l4[0])), uintptr(len(l4)),
			unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&w.names[0])), uintptr(nl))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			s.sendFailed(w, p.Bytes(), e)
		}
		break
	}
	ep.mu.RUnlock()
}

// poll is the poller goroutine: it reads every ready socket and closes
// idle ones.
func (s *socketTable) poll() {
	defer s.l.wg.Done()
	every := min(time.Duration(s.l.cfg.UDPTimeout)/4, 10*time.Second)
	for i := range s.rxHdrs {
		h := &s.rxHdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&s.rxNames[i]))
		h.Iov = &s.rxIovs[i]
		h.SetIovlen(1)
		s.rxIovs[i].Base = &s.rxBufs[i][0]
		s.rxIovs[i].SetLen(len(s.rxBufs[i]))
	}
	for {
		n, err := unix.EpollWait(s.epfd, s.events[:], int(every/time.Millisecond))
		if err != nil && err != unix.EINTR {
			s.l.log.Error("uplink: epoll_wait", zap.Error(err))
			return
		}
		select {
		case <-s.l.closed:
			return
		default:
		}
		for i := range n {
			ev := &s.events[i]
			s.mu.RLock()
			ep := s.byFd[ev.Fd]
			s.mu.RUnlock()
			if ep == nil {
				continue
			}
			if ev.Events&unix.EPOLLERR != 0 {
				s.readErrors(ep)
			}
			if ev.Events&unix.EPOLLIN != 0 {
				s.readData(ep)
			}
		}
		if now := time.Now(); now.Sub(s.lastReap) >= every {
			s.lastReap = now
			s.reap(now)
		}
	}
}

// reap closes the sockets idle longer than udp_timeout.
func (s *socketTable) reap(now time.Time) {
	limit := now.Add(-time.Duration(s.l.cfg.UDPTimeout)).UnixNano()
	var idle []*endpoint
	s.mu.Lock()
	for k, ep := range s.byKey {
		if ep.lastUse.Load() < limit {
			idle = append(idle, ep)
			delete(s.byKey, k)
			delete(s.byFd, int32(ep.fd))
		}
	}
	s.mu.Unlock()
	for _, ep := range idle {
		s.closeEndpoint(ep)
	}
}

// readData drains an endpoint's socket a few batches at a time; epoll is
// level-triggered, so what is left waits for the next round and a busy
// socket cannot starve the others.
func (s *socketTable) readData(ep *endpoint) {
	for range 4 {
		for i := range s.rxHdrs {
			s.rxHdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
			s.rxHdrs[i].hdr.Flags = 0
		}
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(ep.fd), uintptr(unsafe.Pointer(&s.rxHdrs[0])),
			rxBatch, unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return
		}
		n := int(r)
		ep.lastUse.Store(time.Now().UnixNano())
		for i := range n {
			s.deliver(ep, i)
		}
		if n < rxBatch {
			return
		}
	}
}

// deliver builds the packet for datagram i of the last recvmmsg.
func (s *socketTable) deliver(ep *endpoint, i int) {
	l := s.l
	h := &s.rxHdrs[i]
	if h.hdr.Flags&unix.MSG_TRUNC != 0 {
		l.count(DropTooBig)
		return
	}
	from := s.virtualSource(ep, getSockaddr(&s.rxNames[i]))
	if !from.IsValid() {
		return
	}
	data := s.rxBufs[i][:h.n]
	hl := ipHeaderLen(ep.v6)
	if ep.key.proto == packet.ProtoUDP {
		if hl+header.UDPMinimumSize+len(data) > l.cfg.MTU {
			l.count(DropTooBig)
			return
		}
		o := getPkt(hl + header.UDPMinimumSize + len(data))
		copy(o.b[hl+header.UDPMinimumSize:], data)
		buildUDP(o.b, from, ep.key.addr, len(data))
		l.queue(o)
		return
	}
	// A ping socket returns the echo reply from its ICMP header on; only
	// replies reach it.
	if len(data) < header.ICMPv4MinimumSize || hl+len(data) > l.cfg.MTU {
		l.count(DropTooBig)
		return
	}
	o := getPkt(hl + len(data))
	copy(o.b[hl:], data)
	binary.BigEndian.PutUint16(o.b[hl+4:], ep.key.addr.Port())
	proto := header.ICMPv4ProtocolNumber
	if ep.v6 {
		proto = header.ICMPv6ProtocolNumber
	}
	writeIPHeader(o.b, from.Addr(), ep.key.addr.Addr(), proto, len(data))
	finishICMP(o.b, hl, from.Addr(), ep.key.addr.Addr())
	l.queue(o)
}

// virtualSource maps where a datagram came from on the host to where the
// container sent it: the virtual resolver or host-loopback address.
func (s *socketTable) virtualSource(ep *endpoint, from netip.AddrPort) netip.AddrPort {
	l := s.l
	a := from.Addr().Unmap()
	from = netip.AddrPortFrom(a, from.Port())
	if ep.viaDNS.Load() && (from == l.resolver4 || from == l.resolver6) {
		if a.Is4() && l.cfg.dns4.IsValid() {
			return netip.AddrPortFrom(l.cfg.dns4, from.Port())
		}
		if a.Is6() && l.cfg.dns6.IsValid() {
			return netip.AddrPortFrom(l.cfg.dns6, from.Port())
		}
	}
	if ep.viaLoop.Load() && a.IsLoopback() {
		if a.Is4() && l.cfg.hostLoopback4.IsValid() {
			return netip.AddrPortFrom(l.cfg.hostLoopback4, from.Port())
		}
		if a.Is6() && l.cfg.hostLoopback6.IsValid() {
			return netip.AddrPortFrom(l.cfg.hostLoopback6, from.Port())
		}
	}
	return from
}

// sock_extended_err origins (linux/errqueue.h).
const (
	eeOriginLocal = 1
	eeOriginICMP  = 2
	eeOriginICMP6 = 3
)

// readErrors turns the errors queued on a socket (IP_RECVERR) into ICMP
// errors quoting the datagram the container sent, rebuilt from what the
// error queue returns: the payload and the destination it was sent to.
func (s *socketTable) readErrors(ep *endpoint) {
	for range 64 {
		n, oobn, _, sa, err := unix.Recvmsg(ep.fd, s.errBuf, s.errOOB, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		var dst netip.AddrPort
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			dst = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
		case *unix.SockaddrInet6:
			dst = netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
		default:
			continue
		}
		msgs, err := unix.ParseSocketControlMessage(s.errOOB[:oobn])
		if err != nil {
			continue
		}
		for _, m := range msgs {
			if !(m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_RECVERR) &&
				!(m.Header.Level == unix.SOL_IPV6 && m.Header.Type == unix.IPV6_RECVERR) {
				continue
			}
			if len(m.Data) < sizeofSockExtendedErr {
				continue
			}
			ee := (*unix.SockExtendedErr)(unsafe.Pointer(&m.Data[0]))
			var offender netip.Addr
			if len(m.Data) >= sizeofSockExtendedErr+unix.SizeofSockaddrInet4 {
				var sa6 unix.RawSockaddrInet6
				copy((*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(&sa6))[:], m.Data[sizeofSockExtendedErr:])
				offender = getSockaddr(&sa6).Addr()
			}
			s.icmpFromErr(ep, ee, offender, dst, s.errBuf[:n])
		}
	}
}

// icmpFromErr builds the ICMP error for one queued error.
func (s *socketTable) icmpFromErr(ep *endpoint, ee *unix.SockExtendedErr, offender netip.Addr, dst netip.AddrPort, data []byte) {
	l := s.l
	v6 := ep.v6
	typ, code, param := ee.Type, ee.Code, ee.Info
	switch ee.Origin {
	case eeOriginICMP, eeOriginICMP6:
	case eeOriginLocal:
		if ee.Errno != uint32(unix.EMSGSIZE) {
			return
		}
		// The host's own path MTU is smaller than the datagram.
		typ, code = pick(v6, 3, 2), pick(v6, 4, 0)
		offender = netip.Addr{}
	default:
		return
	}
	vdst := s.virtualSource(ep, dst)
	if offender.IsValid() && offender.Unmap() == dst.Addr().Unmap() {
		offender = vdst.Addr()
	}
	if !offender.IsValid() {
		offender = vdst.Addr()
	}
	if offender.Is4() != !v6 {
		return
	}
	// Rebuild the container's datagram.
	hl := ipHeaderLen(v6)
	b := s.recon
	var n int
	if ep.key.proto == packet.ProtoUDP {
		if hl+header.UDPMinimumSize+len(data) > len(b) {
			data = data[:len(b)-hl-header.UDPMinimumSize]
		}
		copy(b[hl+header.UDPMinimumSize:], data)
		n = buildUDP(b, ep.key.addr, vdst, len(data))
	} else {
		if len(data) < header.ICMPv4MinimumSize || hl+len(data) > len(b) {
			return
		}
		copy(b[hl:], data)
		binary.BigEndian.PutUint16(b[hl+4:], ep.key.addr.Port())
		proto := header.ICMPv4ProtocolNumber
		if v6 {
			proto = header.ICMPv6ProtocolNumber
		}
		writeIPHeader(b, ep.key.addr.Addr(), vdst.Addr(), proto, len(data))
		finishICMP(b[:hl+len(data)], hl, ep.key.addr.Addr(), vdst.Addr())
		n = hl + len(data)
	}
	if err := s.q.Decode(b[:n]); err != nil {
		return
	}
	l.sendICMPError(&s.q, offender, typ, code, param)
}

// sizeofSockExtendedErr is sizeof(struct sock_extended_err); the offender's
// sockaddr follows it (SO_EE_OFFENDER).
const sizeofSockExtendedErr = int(unsafe.Sizeof(unix.SockExtendedErr{}))

// pingAllowed probes whether this process may open ping sockets, to say
// so at start rather than at the first echo.
func pingAllowed() bool {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}
