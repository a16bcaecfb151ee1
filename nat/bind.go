package nat

import (
	"tungate/conntrack"
	"tungate/packet"
)

// Bind sets the NAT of an unconfirmed connection explicitly, for helpers
// (the FTP data connection an expectation predicted, a connection following
// its master): ManipSrc makes its source appear as addr:port, ManipDst sends
// it to addr:port. It sets the NAT and NAT-done status bits like a decision
// would, so Prerouting/Postrouting leave that manip alone and just apply it.
//
// For ManipSrc the external port is held for the connection's life so no
// mapping is given it; port 0 picks one (the original port when free). A
// port an endpoint-independent mapping of the same internal endpoint holds
// is shared with it; one held otherwise is ErrPortInUse. For ManipDst port 0
// keeps the destination port, and the external port the connection arrives
// on is held, when free, so no mapping is given it meanwhile. For ICMP echo
// the port is the identifier.
func (e *Engine) Bind(c *conntrack.Conn, m Manip, addr packet.Addr, port uint16) error {
	if c.Confirmed() {
		return ErrConfirmed
	}
	done, natBit := conntrack.StatusSrcNATDone, conntrack.StatusSrcNAT
	if m == ManipDst {
		done, natBit = conntrack.StatusDstNATDone, conntrack.StatusDstNAT
	}
	if c.Status()&done != 0 {
		return ErrBound
	}
	cur := e.current(c)
	if cur.Family == 4 && addr != (packet.Addr{addr[0], addr[1], addr[2], addr[3]}) {
		return ErrFamily
	}
	kind := kindOf(&cur)
	next := cur
	var l *link
	if m == ManipSrc {
		next.Src = addr
		if kind != idNone {
			p, sl, err := e.holdSrc(c, &cur, kind, addr, port)
			if err != nil {
				return err
			}
			next.SrcPort, l = p, sl
		}
	} else {
		next.Dst = addr
		if port != 0 {
			switch kind {
			case idPort:
				next.DstPort = port
			case idEcho:
				next.SrcPort = port
			}
		}
		if kind == idPort && e.isOwn(cur.Dst, cur.Family) {
			l = e.holdDst(c, &cur)
		}
	}
	var reply conntrack.Tuple
	if !e.checkFree(&next, c, &reply) {
		if l != nil {
			e.mu.Lock()
			e.detachLocked(l)
			e.mu.Unlock()
		}
		return ErrClash
	}
	e.commit(c, &cur, &next, &reply, natBit, done)
	return nil
}

// holdSrc holds the external port a ManipSrc Bind translates to and
// returns it with the link that holds it.
func (e *Engine) holdSrc(c *conntrack.Conn, cur *conntrack.Tuple, kind idKind, addr packet.Addr, port uint16) (uint16, *link, error) {
	sk := setKey{addr, cur.Family, cur.Proto}
	e.mu.Lock()
	defer e.mu.Unlock()
	ps := e.portSetLocked(sk)
	if port == 0 {
		lo, hi := portRangeFor(&e.hairpinRule, kind, cur.SrcPort)
		par := anyParity
		if kind == idPort {
			par = parityOf(cur.SrcPort)
		}
		pi := ps.findPreferring(cur.SrcPort, lo, hi, par)
		if pi < 0 {
			e.st.portExhausted.Add(1)
			return 0, nil, ErrPortInUse
		}
		port = uint16(pi)
	} else if ps.has(port) {
		m := e.byExt.findExt(sk, port, e.seed)
		if m == nil || m.key.addr != cur.Src || m.key.port != cur.SrcPort {
			return 0, nil, ErrPortInUse
		}
		b := e.bindingLocked(c)
		e.attachLocked(&b.src, m, c)
		return port, &b.src, nil
	}
	ps.take(port)
	m := e.newMappingLocked(sk, ps, port, cur.Src, cur.SrcPort)
	b := e.bindingLocked(c)
	e.attachLocked(&b.src, m, c)
	return port, &b.src, nil
}

// holdDst holds the gateway port a ManipDst-bound connection arrives on,
// when it is free, and returns the link holding it (nil when not).
func (e *Engine) holdDst(c *conntrack.Conn, cur *conntrack.Tuple) *link {
	sk := setKey{cur.Dst, cur.Family, cur.Proto}
	e.mu.Lock()
	defer e.mu.Unlock()
	ps := e.portSetLocked(sk)
	if !ps.take(cur.DstPort) {
		return nil
	}
	m := e.newMappingLocked(sk, ps, cur.DstPort, cur.Dst, cur.DstPort)
	b := e.bindingLocked(c)
	dl := b.dstLinkLocked()
	e.attachLocked(dl, m, c)
	return dl
}

// PortAvailable reports whether port on the external address addr is free
// for proto: no mapping, port forward or bound connection holds it. Helpers
// ask before announcing a port they will expect a connection on.
func (e *Engine) PortAvailable(proto uint8, addr packet.Addr, port uint16) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	fams := [2]uint8{4, 6}
	for _, fam := range fams {
		if fam == 4 && addr != (packet.Addr{addr[0], addr[1], addr[2], addr[3]}) {
			continue // not an IPv4 address
		}
		k := setKey{addr, fam, proto}
		s := e.sets[k]
		if s == nil && e.isOwn(addr, fam) {
			s = e.portSetLocked(k)
		}
		if s != nil && s.has(port) {
			return false
		}
	}
	return true
}
