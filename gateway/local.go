package gateway

import (
	"net/netip"

	"tungate/conntrack"
	"tungate/packet"
	"tungate/rules"
)

// icmpKind is an ICMP error the gateway sends, independent of family.
type icmpKind uint8

const (
	icmpNetUnreachable icmpKind = iota
	icmpHostUnreachable
	icmpPortUnreachable
	icmpProtoUnreachable
	icmpAdminProhibited
	icmpTimeExceeded
	icmpFragNeeded
)

// icmpCodes maps a kind to (type, code) for IPv4 and IPv6 (RFC 792, RFC 4443).
var icmpCodes = [...][2][2]uint8{
	icmpNetUnreachable:   {{3, 0}, {1, 0}},
	icmpHostUnreachable:  {{3, 1}, {1, 3}},
	icmpPortUnreachable:  {{3, 3}, {1, 4}},
	icmpProtoUnreachable: {{3, 2}, {4, 1}},
	icmpAdminProhibited:  {{3, 13}, {1, 1}},
	icmpTimeExceeded:     {{11, 0}, {3, 0}},
	icmpFragNeeded:       {{3, 4}, {2, 0}},
}

// local handles a packet addressed to the gateway itself (the input hook).
//
// A new connection it confirms is marked local (conntrack.StatusLocal): the
// gateway has no sockets, so the connection is only there for the input
// rules' ct_state and the answers below, and it yields its tuples to any
// forwarded connection that needs them. Its packets can be a stranger's to
// a NAT mapping's external address and port, refused by the mapping's
// filtering (or let in by an input rule): the mapping's own flow to that
// stranger, which needs the same tuple, still leaves from the mapping's
// port (RFC 4787 REQ-1, RFC 5382 REQ-1), and the local connection is
// deleted when that flow is confirmed.
func (w *worker) local(buf []byte) {
	p, res := &w.p, &w.res
	w.delivered++
	if !w.filter(rules.HookInput) {
		return
	}
	if c := res.Conn; c != nil {
		if !c.Confirmed() {
			c.SetStatus(conntrack.StatusLocal)
		}
		if !w.finishConn() {
			return
		}
	}
	switch {
	case p.IsICMP():
		if p.IsEcho() && (p.ICMPType == 8 || p.ICMPType == 128) {
			w.echoReply(buf)
		}
		// Other ICMP (replies, errors) to the gateway end here.
	case p.Proto == packet.ProtoTCP:
		if !p.HasL4 || p.TCPFlags&packet.TCPRst != 0 {
			return
		}
		if p.TCPFlags&(packet.TCPSyn|packet.TCPAck) == packet.TCPSyn && w.pl.external[w.in] {
			// RFC 5382 REQ-4: no answer to an unsolicited SYN on an
			// external address, so a simultaneous open can still work.
			return
		}
		w.tcpReset()
	case p.Proto == packet.ProtoUDP:
		w.icmpError(p, icmpPortUnreachable)
	default:
		w.icmpError(p, icmpProtoUnreachable)
	}
}

// echoReply answers an echo request in place and sends it back.
func (w *worker) echoReply(buf []byte) {
	p := &w.p
	if err := packet.MakeEchoReply(p); err != nil {
		return
	}
	w.output(buf, p, nil, 0)
}

// reject answers the current packet as a reject rule asks.
func (w *worker) reject(k rules.RejectKind) {
	p := &w.p
	switch k {
	case rules.RejectDefault, rules.RejectTCPReset:
		if p.Proto == packet.ProtoTCP && p.HasL4 {
			w.tcpReset()
			return
		}
		w.icmpError(p, icmpPortUnreachable)
	case rules.RejectICMPPortUnreachable, rules.RejectICMPv6PortUnreachable:
		w.icmpError(p, icmpPortUnreachable)
	case rules.RejectICMPHostUnreachable, rules.RejectICMPv6AddrUnreachable:
		w.icmpError(p, icmpHostUnreachable)
	case rules.RejectICMPAdminProhibited, rules.RejectICMPv6AdminProhibited:
		w.icmpError(p, icmpAdminProhibited)
	default:
		w.icmpError(p, icmpPortUnreachable)
	}
}

func (w *worker) tcpReset() {
	p := &w.p
	if p.TCPFlags&packet.TCPRst != 0 {
		return
	}
	b := w.scratchBuf()
	n, err := packet.BuildTCPReset(b[headroom:], p)
	if err != nil {
		return
	}
	w.emit(b, n)
}

// icmpError sends an ICMP error about p back to its sender, from the
// gateway's address on the link p came in on, rate-limited per destination.
func (w *worker) icmpError(p *packet.Parsed, k icmpKind) {
	w.icmpErrorParam(p, k, 0)
}

func (w *worker) icmpErrorMTU(p *packet.Parsed, mtu int) {
	w.icmpErrorParam(p, icmpFragNeeded, uint32(mtu))
}

func (w *worker) icmpErrorParam(p *packet.Parsed, k icmpKind, param uint32) {
	fam := 0
	if p.Version == 6 {
		fam = 1
	}
	tc := icmpCodes[k][fam]
	if k == icmpProtoUnreachable && p.Version == 6 {
		param = 6 // parameter problem pointer: the next header field
	}
	w.sendICMPError(p, tc[0], tc[1], param)
}

// paramProblem answers p with a parameter problem pointing at byte ptr of
// its header (IPv4: type 12 code 0; IPv6: type 4 with the given code).
func (w *worker) paramProblem(p *packet.Parsed, code uint8, ptr int) {
	if p.Version == 4 {
		w.sendICMPError(p, 12, 0, uint32(ptr)<<24)
		return
	}
	w.sendICMPError(p, 4, code, uint32(ptr))
}

// sendICMPError answers p with an ICMP error from the gateway's address on
// the link p came in on, rate-limited per destination.
func (w *worker) sendICMPError(p *packet.Parsed, typ, code uint8, param uint32) {
	w.fill() // the error quotes the packet
	if p.IsICMPError() {
		return // never an error about an error (RFC 1122 3.2.2)
	}
	src, ok := w.pl.sourceFor(w.in, p.Version)
	if !ok {
		return
	}
	if !w.pl.limiter.allow(p.Src, w.now) {
		w.g.Counters.ICMPLimit.Add(1)
		return
	}
	b := w.scratchBuf()
	n, err := packet.BuildICMPError(b[headroom:], p, src, typ, code, param)
	if err != nil {
		return
	}
	w.g.Counters.ICMPSent.Add(1)
	w.emit(b, n)
}

// emit sends a packet the gateway generated about the current packet (an
// ICMP error or a RST): it is related to the current packet's connection,
// travels the opposite way, and NAT makes it show the packet as its sender
// sent it.
func (w *worker) emit(b []byte, n int) {
	g := w.g
	gp := &w.gen
	if gp.Decode(b[headroom:headroom+n]) != nil {
		return
	}
	c := w.res.Conn
	var d conntrack.Dir
	if c != nil {
		d = w.res.Dir
		if c.Status()&conntrack.StatusNATMask != 0 {
			if gp.IsICMPError() {
				g.nat.LocalICMPError(gp, c, d)
			} else {
				// A RST travels the connection's other way: translate it
				// as an established packet of that direction.
				rd := conntrack.DirReply
				info := conntrack.EstablishedReply
				if d == conntrack.DirReply {
					rd, info = conntrack.DirOriginal, conntrack.Established
				}
				r := &w.genRes
				*r = conntrack.Result{Conn: c, Info: info, Dir: rd}
				g.nat.Prerouting(gp, r, -1)
				g.nat.Postrouting(gp, r, -1, -1)
			}
		}
	}
	w.output(b, gp, c, d)
}

// output routes a locally generated packet through the output hook.
func (w *worker) output(b []byte, gp *packet.Parsed, c *conntrack.Conn, d conntrack.Dir) {
	g := w.g
	out, ok := w.route(gp)
	if !ok || out == routeLocal {
		return
	}
	info := conntrack.Untracked
	if c != nil {
		info = conntrack.RelatedReply
		if d == conntrack.DirReply {
			info = conntrack.Related
		}
	} else if gp.IsEcho() {
		r := &w.genRes
		g.ct.In(gp, w.now, r)
		c, info = r.Conn, r.Info
	}
	pk := &w.genPk
	*pk = rules.Packet{P: gp, In: -1, Out: out, Conn: c, Info: info}
	if dd := w.rs.Eval(rules.HookOutput, pk); dd.Verdict != rules.Accept {
		w.drop(DropFilter)
		return
	}
	w.queue(out, b, gp, false)
}

// sourceFor picks the gateway's own address of the given IP version on link
// in (any link when that one has none).
func (pl *plane) sourceFor(in int, version uint8) (packet.Addr, bool) {
	pick := func(list []netip.Addr) (packet.Addr, bool) {
		for _, a := range list {
			if (version == 4) == a.Is4() {
				return packet.AddrFrom(a), true
			}
		}
		return packet.Addr{}, false
	}
	if in >= 0 && in < len(pl.own) {
		if a, ok := pick(pl.own[in]); ok {
			return a, true
		}
	}
	for _, l := range pl.own {
		if a, ok := pick(l); ok {
			return a, true
		}
	}
	return packet.Addr{}, false
}
