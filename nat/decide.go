package nat

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"

	"go.uber.org/zap"

	"tungate/conntrack"
	"tungate/packet"
)

// maxTakenRetries bounds how many ports a new mapping skips because the
// translated tuple is already some other connection's (one NAT did not
// make; the gateway's own, local connections yield theirs and never count):
// past it the packet is dropped as a clash, never merged.
const maxTakenRetries = 8

// idKind says what part of a tuple NAT translates besides the address.
type idKind uint8

const (
	idNone idKind = iota // address only (GRE, ESP, other queries, ...)
	idPort               // TCP/UDP ports
	idEcho               // ICMP/ICMPv6 echo identifier, SrcPort of the tuple
)

func kindOf(t *conntrack.Tuple) idKind {
	switch t.Proto {
	case packet.ProtoTCP, packet.ProtoUDP, packet.ProtoSCTP:
		// SCTP ports are translated like Linux's nf_nat_proto_sctp does;
		// packet's port setters recompute the CRC32c.
		return idPort
	case packet.ProtoICMP:
		if typ := t.DstPort >> 8; t.Family == 4 && (typ == 8 || typ == 0) {
			return idEcho
		}
	case packet.ProtoICMPv6:
		if typ := t.DstPort >> 8; t.Family == 6 && (typ == 128 || typ == 129) {
			return idEcho
		}
	}
	return idNone
}

// invert returns the tuple a reply to t carries: conntrack's rule
// (addresses swapped, the tracker inverts the rest), done here for the
// protocols NAT translates because calling Tracker.Invert through the
// interface makes its result escape — an allocation per call.
func (e *Engine) invert(t *conntrack.Tuple) conntrack.Tuple {
	r := conntrack.Tuple{Src: t.Dst, Dst: t.Src, Proto: t.Proto, Family: t.Family}
	switch t.Proto {
	case packet.ProtoTCP, packet.ProtoUDP, packet.ProtoSCTP:
		r.SrcPort, r.DstPort = t.DstPort, t.SrcPort
	case packet.ProtoICMP, packet.ProtoICMPv6:
		r.SrcPort = t.SrcPort
		r.DstPort = uint16(icmpReplyType(t.Proto == packet.ProtoICMPv6, uint8(t.DstPort>>8)))<<8 | t.DstPort&0xff
	case packet.ProtoGRE, packet.ProtoESP:
		r.SrcPort, r.DstPort = t.SrcPort, t.DstPort
	default:
		r = trackerInvert(e.table.Tracker(t.Proto), *t)
	}
	return r
}

// trackerInvert asks the protocol's tracker; kept apart so only its own
// values escape.
//
//go:noinline
func trackerInvert(tr conntrack.Tracker, t conntrack.Tuple) conntrack.Tuple {
	r := conntrack.Tuple{Src: t.Dst, Dst: t.Src, Proto: t.Proto, Family: t.Family}
	tr.Invert(&t, &r)
	return r
}

// icmpReplyType maps an ICMP query type to its reply's and back (Linux's
// invmap; 0 for types that have none, as conntrack's ICMP tracker does).
func icmpReplyType(v6 bool, typ uint8) uint8 {
	if v6 {
		switch typ {
		case 128, 139:
			return typ + 1
		case 129, 140:
			return typ - 1
		}
		return 0
	}
	switch typ {
	case 8:
		return 0
	case 0:
		return 8
	case 13, 15, 17:
		return typ + 1
	case 14, 16, 18:
		return typ - 1
	}
	return 0
}

// current returns the original-direction tuple as the manips decided so far
// make it look (Linux's nf_ct_invert_tuple of the reply tuple in
// nf_nat_setup_info). Before any manip changed it, a TCP or UDP reply
// tuple is the original's with addresses and ports swapped, so the
// original is that answer, without inverting.
func (e *Engine) current(c *conntrack.Conn) conntrack.Tuple {
	if c.Status()&conntrack.StatusNATMask == 0 {
		if o := c.Tuple(conntrack.DirOriginal); o.Proto == packet.ProtoTCP || o.Proto == packet.ProtoUDP {
			return *o
		}
	}
	return e.invert(c.Tuple(conntrack.DirReply))
}

// commit stores reply, the inverse of the translated current tuple next
// (checkFree's), as the reply tuple and sets the status bits: the NAT bit
// only when something changed, as Linux does.
func (e *Engine) commit(c *conntrack.Conn, cur, next, reply *conntrack.Tuple, natBit, doneBit conntrack.Status) {
	if *cur != *next {
		c.SetReplyTuple(*reply)
		c.SetStatus(natBit | doneBit)
		return
	}
	c.SetStatus(doneBit)
}

// decideDst is the DNAT decision for a new connection (port forwards,
// mappings reached from outside or by hairpin, netmap inbound). false: drop.
func (e *Engine) decideDst(res *conntrack.Result, in int) bool {
	c := res.Conn
	cur := e.current(c)
	v := e.v.Load()
	var dst netip.Addr
	if len(v.rules.dnat) > 0 || len(v.rules.netmap) > 0 {
		dst = cur.Dst.NetIP(cur.Family)
	}
	kind := kindOf(&cur)

	for _, r := range v.rules.dnat {
		if !e.dnatMatch(r, &cur, dst, in) {
			continue
		}
		f := 0
		if cur.Family == 6 {
			f = 1
		}
		ts := r.targets[f]
		n := r.rr[f].n.Add(1) - 1
		t := &ts[n%uint32(len(ts))]
		next := cur
		next.Dst = t.addr
		if t.hasPort && kind == idPort {
			if t.lo == t.hi {
				next.DstPort = t.lo
			} else {
				next.DstPort = t.lo + (cur.DstPort - r.m.dport.lo)
			}
		}
		var reply conntrack.Tuple
		if !e.checkFree(&next, c, &reply) {
			return false
		}
		e.commit(c, &cur, &next, &reply, conntrack.StatusDstNAT, conntrack.StatusDstNATDone)
		e.st.dnat.Add(1)
		return true
	}

	if kind == idPort && e.mayBeMapped(cur.Dst, cur.Family) {
		if ok, found := e.mappingDst(res, &cur, in); found {
			return ok
		}
	}

	for _, r := range v.rules.netmap {
		if r.out != in || r.fam != cur.Family || !r.to.Contains(dst) {
			continue
		}
		a, ok := mapPrefix(cur.Dst, r.fam, r.to, r.from)
		if !ok {
			e.st.netmapUntranslatable.Add(1)
			return false
		}
		next := cur
		next.Dst = a
		var reply conntrack.Tuple
		if !e.checkFree(&next, c, &reply) {
			return false
		}
		e.commit(c, &cur, &next, &reply, conntrack.StatusDstNAT, conntrack.StatusDstNATDone)
		e.st.netmap.Add(1)
		return true
	}
	c.SetStatus(conntrack.StatusDstNATDone)
	return true
}

func (e *Engine) dnatMatch(r *dnatRule, cur *conntrack.Tuple, dst netip.Addr, in int) bool {
	m := &r.m
	if m.in >= 0 && m.in != in {
		return false
	}
	if !m.protoMatch(cur.Proto) {
		return false
	}
	if m.dport.set && !m.dport.contains(cur.DstPort) {
		return false
	}
	f := 0
	if cur.Family == 6 {
		f = 1
	}
	if len(r.targets[f]) == 0 {
		return false
	}
	if r.ownDst {
		if !e.isOwn(cur.Dst, cur.Family) {
			return false
		}
	} else if !prefixesMatch(m.dst, dst) {
		return false
	}
	return prefixesMatch(m.src, cur.Src.NetIP(cur.Family))
}

// mayBeMapped reports whether a mapping can hold an endpoint on a: the
// gateway's own addresses and the snat pools. It spares the NEW path a
// lock for destinations that cannot be mappings.
func (e *Engine) mayBeMapped(a packet.Addr, fam uint8) bool {
	v := e.v.Load()
	if v.isOwn(a, fam) {
		return true
	}
	ip := a.NetIP(fam)
	for _, r := range v.rules.snat {
		if !r.masq && r.pool.contains(ip) {
			return true
		}
	}
	return false
}

// checkFree reports whether the reply tuple of next, which it stores in
// reply, is free; it counts a clash when it is not.
func (e *Engine) checkFree(next *conntrack.Tuple, c *conntrack.Conn, reply *conntrack.Tuple) bool {
	*reply = e.invert(next)
	if e.table.Taken(reply, c) {
		e.st.clash.Add(1)
		return false
	}
	return true
}

// mappingDst handles a new connection to an external endpoint some
// endpoint-independent mapping holds: from inside it is hairpinned to the
// mapping's internal endpoint (RFC 4787 REQ-9); from outside it is let in
// only when the mapping's rule filters endpoint-independently, and then it
// is RELATED to the mapping's connection. found false: no such mapping.
func (e *Engine) mappingDst(res *conntrack.Result, cur *conntrack.Tuple, in int) (ok, found bool) {
	c := res.Conn
	external := e.IsExternal(in)
	e.mu.Lock()
	m := e.byExt.findExt(setKey{cur.Dst, cur.Family, cur.Proto}, cur.DstPort, e.seed)
	if m == nil || (external && !m.eif) {
		e.mu.Unlock()
		return true, false
	}
	b := e.bindingLocked(c)
	master := m.users.c
	dl := b.dstLinkLocked()
	e.attachLocked(dl, m, c)
	next := *cur
	next.Dst, next.DstPort = m.key.addr, m.key.port
	e.mu.Unlock()
	var reply conntrack.Tuple
	if !e.checkFree(&next, c, &reply) {
		e.mu.Lock()
		e.detachLocked(dl)
		e.mu.Unlock()
		return false, true
	}
	e.commit(c, cur, &next, &reply, conntrack.StatusDstNAT, conntrack.StatusDstNATDone)
	if external {
		c.SetMaster(master)
		c.SetStatus(conntrack.StatusExpected)
		res.Info = conntrack.Related
		e.st.eifAdmitted.Add(1)
	}
	return true, true
}

// decideSrc is the SNAT decision for a new connection: hairpin, netmap,
// snat, masquerade. false: drop.
func (e *Engine) decideSrc(res *conntrack.Result, in, out int) bool {
	c := res.Conn
	st := c.Status()
	cur := e.current(c)
	v := e.v.Load()

	if st&conntrack.StatusDstNAT != 0 && !v.isExternal(in) && !v.isExternal(out) && (in == out || v.hasExternal) {
		// A client inside reached a server inside through an external
		// address: translate the client to its external mapping so the
		// server's replies come back through the gateway (RFC 4787
		// REQ-9a, RFC 5382 REQ-8a).
		targeted := c.Tuple(conntrack.DirOriginal).Dst
		r := e.hairpinRuleFor(v, &cur, targeted)
		return e.snatWith(v, r, c, &cur, targeted, true)
	}

	for _, r := range v.rules.netmap {
		if r.out != out || r.fam != cur.Family || !r.from.Contains(cur.Src.NetIP(cur.Family)) {
			continue
		}
		a, ok := mapPrefix(cur.Src, r.fam, r.from, r.to)
		if !ok {
			e.st.netmapUntranslatable.Add(1)
			return false
		}
		next := cur
		next.Src = a
		var reply conntrack.Tuple
		if !e.checkFree(&next, c, &reply) {
			return false
		}
		e.commit(c, &cur, &next, &reply, conntrack.StatusSrcNAT, conntrack.StatusSrcNATDone)
		e.st.netmap.Add(1)
		return true
	}

	for _, r := range v.rules.snat {
		if r.m.out >= 0 && r.m.out != out {
			continue
		}
		if !e.snatMatch(r, &cur, true) {
			continue
		}
		return e.snatWith(v, r, c, &cur, packet.Addr{}, false)
	}
	c.SetStatus(conntrack.StatusSrcNATDone)
	return true
}

// snatMatch matches a rule's src/dst/proto/ports (not out) against cur;
// withDst false ignores dst (a hairpinned client's destination is inside).
func (e *Engine) snatMatch(r *snatRule, cur *conntrack.Tuple, withDst bool) bool {
	m := &r.m
	if !r.masq && r.pool.fam != cur.Family {
		return false
	}
	if !m.protoMatch(cur.Proto) {
		return false
	}
	if m.sport.set && !m.sport.contains(cur.SrcPort) {
		return false
	}
	if withDst && m.dport.set && !m.dport.contains(cur.DstPort) {
		return false
	}
	if len(m.src) > 0 && !prefixesMatch(m.src, cur.Src.NetIP(cur.Family)) {
		return false
	}
	return !withDst || len(m.dst) == 0 || prefixesMatch(m.dst, cur.Dst.NetIP(cur.Family))
}

// hairpinRuleFor picks the rule whose mapping a hairpinned client gets: the
// first that matches the client and translates to the address it targeted,
// else the first that matches the client at all, else a plain one that
// uses the targeted address.
func (e *Engine) hairpinRuleFor(v *setup, cur *conntrack.Tuple, targeted packet.Addr) *snatRule {
	ip := targeted.NetIP(cur.Family)
	var first *snatRule
	for _, r := range v.rules.snat {
		if !e.snatMatch(r, cur, false) {
			continue
		}
		if first == nil {
			first = r
		}
		if r.masq {
			fi := &v.ifaces[r.m.out]
			if (cur.Family == 4 && fi.has4 && fi.addr4 == targeted) || (cur.Family == 6 && fi.has6 && fi.addr6 == targeted) {
				return r
			}
		} else if r.pool.contains(ip) {
			return r
		}
	}
	if first != nil {
		return first
	}
	return &e.hairpinRule
}

// pairHash spreads internal addresses over an SNAT pool; being a function
// of the address alone, every flow of one host gets the same external
// address (RFC 4787 REQ-2, "paired").
func pairHash(a packet.Addr) uint64 {
	h := binary.LittleEndian.Uint64(a[:8])*0x9e3779b97f4a7c15 ^ binary.LittleEndian.Uint64(a[8:])*0xbf58476d1ce4e5b9
	return h ^ h>>31
}

// extAddr returns the external address rule r translates cur to.
func (e *Engine) extAddr(v *setup, r *snatRule, cur *conntrack.Tuple, targeted packet.Addr) (packet.Addr, bool) {
	switch {
	case r == &e.hairpinRule:
		return targeted, true
	case r.masq:
		fi := &v.ifaces[r.m.out]
		if cur.Family == 4 {
			return fi.addr4, fi.has4
		}
		return fi.addr6, fi.has6
	}
	if r.pool.fam != cur.Family {
		return packet.Addr{}, false
	}
	return r.pool.at(pairHash(cur.Src) % r.pool.size), true
}

// portRangeFor returns the range external ports come from: the rule's, or
// the original port's class (RFC 4787 REQ-3 asks to keep ports below 1024
// there); ICMP identifiers use all 65536 values.
func portRangeFor(r *snatRule, kind idKind, p uint16) (lo, hi uint16) {
	switch {
	case kind == idEcho:
		return 0, 65535
	case r.ports.set:
		return r.ports.lo, r.ports.hi
	case p < 1024:
		return 1, 1023
	}
	return 1024, 65535
}

// snatWith translates cur's source by rule r of setup v (or the hairpin
// fallback). false: drop (no address, no port, clash).
func (e *Engine) snatWith(v *setup, r *snatRule, c *conntrack.Conn, cur *conntrack.Tuple, targeted packet.Addr, hairpin bool) bool {
	ext, ok := e.extAddr(v, r, cur, targeted)
	if !ok {
		e.st.noAddress.Add(1)
		e.logLimited("nat: no address to masquerade to, dropping", zap.String("rule", r.name), zap.Uint8("family", cur.Family))
		return false
	}
	next := *cur
	next.Src = ext
	kind := kindOf(cur)
	var reply conntrack.Tuple
	if kind != idNone {
		key := mapKey{rule: r.id, fam: cur.Family, proto: cur.Proto, addr: cur.Src, port: cur.SrcPort}
		if !r.eim {
			key.raddr, key.rport = cur.Dst, cur.DstPort
		}
		a, port, ok := e.mapFor(&key, r, kind, ext, cur, c, &reply)
		if !ok {
			return false
		}
		next.Src, next.SrcPort = a, port
	} else if !e.checkFree(&next, c, &reply) {
		return false
	}
	e.commit(c, cur, &next, &reply, conntrack.StatusSrcNAT, conntrack.StatusSrcNATDone)
	if hairpin {
		e.st.hairpin.Add(1)
	} else {
		e.st.snat.Add(1)
	}
	return true
}

// replyVia stores in reply the reply tuple cur gets when its source
// becomes addr:port; for TCP and UDP built in place, the NEW path's
// common case.
func (e *Engine) replyVia(cur *conntrack.Tuple, addr packet.Addr, port uint16, reply *conntrack.Tuple) {
	if cur.Proto == packet.ProtoTCP || cur.Proto == packet.ProtoUDP {
		*reply = conntrack.Tuple{Src: cur.Dst, Dst: addr, SrcPort: cur.DstPort, DstPort: port, Proto: cur.Proto, Family: cur.Family}
		return
	}
	next := *cur
	next.Src, next.SrcPort = addr, port
	*reply = e.invert(&next)
}

// mapFor finds or makes the mapping key names, makes c a user of it and
// returns its external address and port (an existing mapping's address may
// differ from ext: a hairpin mapping keeps the address first targeted); it
// stores the reply tuple they give cur in reply. A new mapping keeps the
// internal port when it is free (or, with random, starts at a random one)
// and otherwise takes the next free port of the range; ports whose tuple
// towards this destination is already some other connection's are
// skipped — not for a local connection's (the stranger that wrote to the
// port first): that one yields when c is confirmed. false: drop (counted
// and logged).
func (e *Engine) mapFor(key *mapKey, r *snatRule, kind idKind, ext packet.Addr, cur *conntrack.Tuple, c *conntrack.Conn, reply *conntrack.Tuple) (packet.Addr, uint16, bool) {
	h := key.hash(e.seed)
	e.mu.Lock()
	if m := e.byKey.findKey(key, h); m != nil {
		b := e.bindingLocked(c)
		e.attachLocked(&b.src, m, c)
		a, port := m.ext.addr, m.port
		e.mu.Unlock()
		e.replyVia(cur, a, port, reply)
		if e.table.Taken(reply, c) {
			e.mu.Lock()
			e.detachLocked(&b.src)
			e.mu.Unlock()
			e.st.clash.Add(1)
			return packet.Addr{}, 0, false
		}
		return a, port, true
	}
	sk := setKey{ext, cur.Family, cur.Proto}
	ps := e.ruleSetLocked(r, sk)
	lo, hi := portRangeFor(r, kind, cur.SrcPort)
	start := cur.SrcPort
	if r.random {
		start = lo + uint16(rand.IntN(int(hi)-int(lo)+1))
	} else if start < lo || start > hi {
		start = lo + start%(hi-lo+1)
	}
	// Keep the port's parity when the port itself is taken (RFC 4787
	// REQ-4), so RTP/RTCP pairs stay pairs.
	par := anyParity
	if kind == idPort {
		par = parityOf(cur.SrcPort)
	}
	pi := ps.findPreferring(start, lo, hi, par)
	if pi < 0 {
		e.mu.Unlock()
		e.exhausted(r, ext, cur, lo, hi)
		return packet.Addr{}, 0, false
	}
	port := uint16(pi)
	ps.take(port)
	m := e.newMappingLocked(sk, ps, port, cur.Src, cur.SrcPort)
	m.key, m.indexed = *key, true
	m.eim, m.eif = r.eim, r.eif
	e.byKey.insert(m, h)
	if m.eim && kind == idPort {
		e.byExt.insert(m, extHash(sk, port, e.seed))
		m.inByExt = true
	}
	b := e.bindingLocked(c)
	e.attachLocked(&b.src, m, c)
	e.mu.Unlock()

	// The port is the mapping's alone, but the tuple towards this
	// destination may be a connection's that NAT did not make (not a
	// local one: those yield, see Taken): then the mapping moves to
	// another port, as long as no other connection uses it yet. The table
	// is asked without e.mu held: its lookup may delete an expired
	// connection and run our hook. port is m.port, which only this loop
	// changes (under e.mu, while c is m's one user).
	var tried [maxTakenRetries]uint16
	nt := 0
	for {
		e.replyVia(cur, ext, port, reply)
		if !e.table.Taken(reply, c) {
			if nt > 0 {
				e.mu.Lock()
				for _, p := range tried[:nt] {
					ps.release(p)
				}
				e.mu.Unlock()
			}
			return ext, port, true
		}
		e.mu.Lock()
		pi := -1
		if m.n == 1 && nt < len(tried) {
			tried[nt] = m.port
			nt++
			pi = ps.findPreferring(m.port+1, lo, hi, par)
		}
		if pi < 0 {
			e.detachLocked(&b.src)
			for _, p := range tried[:nt] {
				ps.release(p)
			}
			e.mu.Unlock()
			e.st.clash.Add(1)
			return packet.Addr{}, 0, false
		}
		if m.inByExt {
			e.byExt.remove(m, extHash(sk, m.port, e.seed))
		}
		port = uint16(pi)
		m.port = port
		ps.take(port)
		if m.inByExt {
			e.byExt.insert(m, extHash(sk, port, e.seed))
		}
		e.mu.Unlock()
	}
}

// ruleSetLocked is portSetLocked through the rule's cache. e.mu is held.
func (e *Engine) ruleSetLocked(r *snatRule, k setKey) *portSet {
	if r == &e.hairpinRule || (!r.masq && r.pool.size != 1) {
		return e.portSetLocked(k)
	}
	f, p := 0, 2
	if k.fam == 6 {
		f = 1
	}
	switch k.proto {
	case packet.ProtoTCP:
		p = 0
	case packet.ProtoUDP:
		p = 1
	}
	s := r.sets[f][p]
	if s == nil {
		s = e.portSetLocked(k)
		r.sets[f][p] = s
	}
	return s
}

// exhausted counts and logs a new connection dropped for want of a port.
func (e *Engine) exhausted(r *snatRule, ext packet.Addr, cur *conntrack.Tuple, lo, hi uint16) {
	e.st.portExhausted.Add(1)
	e.logLimited("nat: port range exhausted, dropping new connection",
		zap.String("rule", r.name), zap.Stringer("addr", ext.NetIP(cur.Family)),
		zap.Uint8("proto", cur.Proto), zap.Uint16("lo", lo), zap.Uint16("hi", hi))
}
