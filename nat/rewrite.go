package nat

import (
	"tungate/conntrack"
	"tungate/packet"
)

// Prerouting runs before routing. For a new, unconfirmed connection whose
// destination NAT is not decided yet it decides it: port forwards first,
// then an existing endpoint-independent mapping the packet is addressed to
// (hairpinned from inside; let in from outside only under
// endpoint-independent filtering, and then res.Info becomes Related, the
// connection gets StatusExpected and Master is the mapping's connection),
// then netmap; it sets StatusDstNATDone. Then it rewrites the destination
// as the connection's tuples say (original direction of a DNATed
// connection, reply direction of an SNATed one) and translates RELATED ICMP
// errors (outer destination, quoted source).
//
// It sets res.Drop (and clears res.Conn, res.Info = Invalid, so nothing
// later translates or confirms it) when the packet must be dropped: an ICMP
// error with a bad checksum (RFC 5508 REQ-3a), a forward whose translated
// tuple is taken, an address NPTv6 cannot map. A new connection refused so
// is deleted here. Callers check res.Drop after Prerouting.
func (e *Engine) Prerouting(p *packet.Parsed, res *conntrack.Result, in int) {
	c := res.Conn
	if c == nil {
		return
	}
	st := c.Status()
	if st&(conntrack.StatusConfirmed|conntrack.StatusDstNATDone) == 0 && res.Dir == conntrack.DirOriginal {
		if !e.decideDst(res, in) {
			// Nothing was attached, but the table's trackers may hold
			// state for the connection: it dies here, as the caller will
			// not see it to delete it.
			e.table.Delete(c)
			dropResult(res)
			return
		}
		st = c.Status()
	}
	if st&conntrack.StatusNATMask == 0 {
		return
	}
	bit := conntrack.StatusDstNAT
	if res.Dir == conntrack.DirReply {
		bit = conntrack.StatusSrcNAT
	}
	if st&bit == 0 {
		return
	}
	if (res.Info == conntrack.Related || res.Info == conntrack.RelatedReply) && p.IsICMPError() {
		if !e.translateError(p, c, res.Dir, ManipDst) {
			dropResult(res)
		}
		return
	}
	// Linux's nf_nat_manip_pkt with the inverse of the other direction's
	// tuple as target: its source is our new destination, and for TCP/UDP
	// its source port our destination port; for echo the identifier is
	// the tuple's SrcPort whichever manip it is.
	o := c.Tuple(1 - res.Dir)
	p.SetDst(o.Src)
	p.SetDstPort(o.SrcPort)
}

// Postrouting runs after the filter accepted the packet. For a new
// connection whose source NAT is not decided yet it decides it (hairpin,
// netmap, snat, masquerade) and sets StatusSrcNATDone; then it rewrites the
// source as the tuples say (original direction of SNAT, reply direction of
// DNAT) and translates RELATED ICMP errors (outer source, quoted
// destination). false: drop the packet (port exhaustion, no address to
// masquerade to, clash, bad ICMP error; counted). The caller deletes a
// dropped new connection so its mapping is released.
func (e *Engine) Postrouting(p *packet.Parsed, res *conntrack.Result, in, out int) bool {
	c := res.Conn
	if c == nil {
		return true
	}
	st := c.Status()
	if st&(conntrack.StatusConfirmed|conntrack.StatusSrcNATDone) == 0 && res.Dir == conntrack.DirOriginal {
		if !e.decideSrc(res, in, out) {
			return false
		}
		st = c.Status()
	}
	if st&conntrack.StatusNATMask == 0 {
		return true
	}
	bit := conntrack.StatusSrcNAT
	if res.Dir == conntrack.DirReply {
		bit = conntrack.StatusDstNAT
	}
	if st&bit == 0 {
		return true
	}
	if (res.Info == conntrack.Related || res.Info == conntrack.RelatedReply) && p.IsICMPError() {
		return e.translateError(p, c, res.Dir, ManipSrc)
	}
	o := c.Tuple(1 - res.Dir)
	p.SetSrc(o.Dst)
	if p.Proto == packet.ProtoICMP || p.Proto == packet.ProtoICMPv6 {
		p.SetICMPID(o.SrcPort)
	} else {
		p.SetSrcPort(o.DstPort)
	}
	return true
}

func dropResult(res *conntrack.Result) {
	res.Drop = true
	res.Conn = nil
	res.Info = conntrack.Invalid
}

// translateError translates an ICMP error travelling in direction dir of c
// at the hook doing manip m, as Linux's nf_nat_icmp_reply_translation: the
// quoted packet (which went the other way) gets the opposite manip with the
// other direction's tuple as target, the outer header the manip with its
// inverse; the quoted IP and transport checksums are updated incrementally
// and the ICMP checksum is recomputed (RFC 5508 REQ-3/4). An error whose ICMP
// checksum or quoted IPv4 header checksum is bad is dropped (REQ-3a).
func (e *Engine) translateError(p *packet.Parsed, c *conntrack.Conn, dir conntrack.Dir, m Manip) bool {
	var q packet.Parsed
	quote := p.ICMPQuote()
	if !p.L4ChecksumValid() || q.DecodeQuoted(quote) != nil || q.Version != p.Version ||
		(q.Version == 4 && !packet.IPv4HeaderValid(quote[:q.IPHeaderLen()])) {
		e.st.badICMPErrors.Add(1)
		return false
	}
	t := c.Tuple(1 - dir)
	icmp := q.Proto == packet.ProtoICMP || q.Proto == packet.ProtoICMPv6
	if m == ManipDst {
		q.SetSrc(t.Src)
		q.SetSrcPort(t.SrcPort) // the identifier too, for a quoted echo
		p.SetDst(t.Src)
	} else {
		q.SetDst(t.Dst)
		if icmp {
			q.SetICMPID(t.SrcPort)
		} else {
			q.SetDstPort(t.DstPort)
		}
		p.SetSrc(t.Dst)
	}
	p.SetL4Checksum() // the quote changed: every word of it would need a delta
	e.st.icmpErrors.Add(1)
	return true
}

// LocalICMPError rewrites an ICMP error the gateway built about a packet of
// c that travelled in direction d, so that it reaches that packet's sender
// quoting the packet as the sender sent it (its tuple in direction d) and,
// when NAT changed where that packet went, coming from the address the
// sender sent it to. errPkt must be decoded; every checksum is fixed. The
// quote may show the packet at any stage of translation: each field is set,
// not translated.
func (e *Engine) LocalICMPError(errPkt *packet.Parsed, c *conntrack.Conn, d conntrack.Dir) {
	if c == nil || d > conntrack.DirReply || !errPkt.IsICMPError() {
		return
	}
	st := c.Status()
	if st&conntrack.StatusNATMask == 0 {
		return
	}
	var q packet.Parsed
	if q.DecodeQuoted(errPkt.ICMPQuote()) != nil || q.Version != errPkt.Version {
		return
	}
	t := c.Tuple(d)
	if q.Version != t.Family {
		return
	}
	q.SetSrc(t.Src)
	q.SetDst(t.Dst)
	if q.Proto == packet.ProtoICMP || q.Proto == packet.ProtoICMPv6 {
		q.SetICMPID(t.SrcPort)
	} else {
		q.SetSrcPort(t.SrcPort)
		q.SetDstPort(t.DstPort)
	}
	errPkt.SetDst(t.Src)
	dstNAT := conntrack.StatusDstNAT
	if d == conntrack.DirReply {
		dstNAT = conntrack.StatusSrcNAT
	}
	if st&dstNAT != 0 {
		errPkt.SetSrc(t.Dst)
	}
	errPkt.SetL4Checksum()
}
