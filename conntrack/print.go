package conntrack

import (
	"strconv"
	"sync"
)

// AppendConn appends the connection in the `conntrack -L` line format of
// conntrack-tools (libnetfilter_conntrack's default output), without a
// newline:
//
//	tcp      6 431999 ESTABLISHED src=… dst=… sport=… dport=… packets=… bytes=… [UNREPLIED] src=… … packets=… bytes=… [ASSURED] mark=0 peer=alice helper=ftp use=1
//
// peer= appears on connections that came from a WireGuard peer. Counters appear when accounting is on, as with nf_conntrack_acct=1.
func (t *Table) AppendConn(b []byte, c *Conn, now int64) []byte {
	return t.appendConn(b, c, now, nil)
}

// AppendEvent appends the event in `conntrack -E`'s line format without a
// newline: the type right-aligned in 9 columns ("    [NEW] ", " [UPDATE] ",
// "[DESTROY] "), then the connection as it was at the event (status,
// timeout, protocol state; counters as they are now). DESTROY lines carry
// no timeout or state, as Linux's do not.
func (t *Table) AppendEvent(b []byte, ev *Event, now int64) []byte {
	switch ev.Type {
	case EventNew:
		b = append(b, "    [NEW] "...)
	case EventUpdate:
		b = append(b, " [UPDATE] "...)
	default:
		b = append(b, "[DESTROY] "...)
	}
	return t.appendConn(b, ev.Conn, now, ev)
}

// ReplyView returns what a listing shows as c's reply tuple, given the
// tuple the table holds (r, a copy). Something outside the table may stand
// for the reply side: an uplink's host socket is the flow's implicit
// masquerade, which the table never sees because no NAT rule made it.
type ReplyView func(c *Conn, r Tuple) Tuple

// SetReplyView installs v for AppendConn, AppendEvent and ShownReplyOf;
// nil removes it. Only listings use it: lookups keep the tuple the table
// holds.
func (t *Table) SetReplyView(v ReplyView) {
	if v == nil {
		t.replyView.Store(nil)
		return
	}
	t.replyView.Store(&v)
}

// viewTuples hold the reply tuples a view shows while a line is written.
var viewTuples = sync.Pool{New: func() any { return new(Tuple) }}

// ShownReplyOf is the reply tuple listings show for c: ShownReply as the
// reply view (SetReplyView) presents it.
func (t *Table) ShownReplyOf(c *Conn) Tuple {
	r := *c.learntReply()
	if v := t.replyView.Load(); v != nil {
		r = (*v)(c, r)
	}
	return r
}

// appendConn is AppendConn, with the status, expiry and state of event ev
// when it is not nil.
func (t *Table) appendConn(b []byte, c *Conn, now int64, ev *Event) []byte {
	o := &c.node[DirOriginal].tuple
	r := c.learntReply()
	if v := t.replyView.Load(); v != nil {
		// Only with a view (an uplink) does a line cost a tuple copy,
		// into a pooled tuple: the trackers' AppendPorts takes a pointer
		// through an interface, so a local copy would be one heap
		// allocation per listed line.
		rv := viewTuples.Get().(*Tuple)
		defer viewTuples.Put(rv)
		*rv = (*v)(c, *r)
		r = rv
	}
	tr := t.trackers[o.Proto]
	name := tr.Name()
	b = append(b, name...)
	for i := len(name); i < 8; i++ {
		b = append(b, ' ')
	}
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(o.Proto), 10)
	b = append(b, ' ')
	expires, st := c.expires.Load(), c.Status()
	if ev != nil {
		expires, st = ev.Expires, ev.Status
	}
	switch {
	case ev == nil:
		b = appendTimeout(b, expires, now)
		b = tr.AppendState(b, c)
	case ev.Type != EventDestroy:
		b = appendTimeout(b, expires, now)
		if n := len(b); ev.hasState {
			if b = ev.AppendState(b); len(b) > n {
				b = append(b, ' ')
			}
		} else {
			b = tr.AppendState(b, c)
		}
	}
	acct := t.cfg.Load().accounting()
	b = o.appendAddrs(b)
	b = tr.AppendPorts(b, o)
	if acct {
		b = appendCounters(b, &c.acct[DirOriginal])
	}
	if st&StatusSeenReply == 0 {
		b = append(b, "[UNREPLIED] "...)
	}
	b = r.appendAddrs(b)
	b = tr.AppendPorts(b, r)
	if acct {
		b = appendCounters(b, &c.acct[DirReply])
	}
	if st&StatusAssured != 0 {
		b = append(b, "[ASSURED] "...)
	}
	b = append(b, "mark="...)
	b = strconv.AppendUint(b, uint64(c.Mark()), 10)
	b = append(b, ' ')
	// peer= is tungate's own field, placed as Linux places zone=: scripts
	// that read conntrack's key=value pairs skip keys they do not know.
	if p := c.Peer(); p != "" {
		b = append(b, "peer="...)
		b = append(b, p...)
		b = append(b, ' ')
	}
	if h := c.Helper(); h != "" {
		b = append(b, "helper="...)
		b = append(b, h...)
		b = append(b, ' ')
	}
	// use= is Linux's reference count as a dump sees it: one, plus one
	// for each live connection this one is the master of.
	use := int64(1)
	if e := c.ext.Load(); e != nil {
		use += int64(max(e.children.Load(), 0))
	}
	b = append(b, "use="...)
	return strconv.AppendInt(b, use, 10)
}

// appendTimeout appends the seconds left until expires, and a space.
func appendTimeout(b []byte, expires, now int64) []byte {
	left := (expires - now) / 1e9
	if left < 0 {
		left = 0
	}
	b = strconv.AppendInt(b, left, 10)
	return append(b, ' ')
}

func appendCounters(b []byte, a *Counters) []byte {
	b = append(b, "packets="...)
	b = strconv.AppendUint(b, a.Packets.Load(), 10)
	b = append(b, " bytes="...)
	b = strconv.AppendUint(b, a.Bytes.Load(), 10)
	return append(b, ' ')
}

// AppendExpectation appends an expectation in the `conntrack -L expect`
// line format.
func (t *Table) AppendExpectation(b []byte, e *Expectation, now int64) []byte {
	left := (e.Expires - now) / 1e9
	if left < 0 {
		left = 0
	}
	b = strconv.AppendInt(b, left, 10)
	b = append(b, " proto="...)
	b = strconv.AppendUint(b, uint64(e.Tuple.Proto), 10)
	b = append(b, ' ')
	b = e.Tuple.appendAddrs(b)
	b = appendPorts(b, &e.Tuple)
	m := Tuple{Src: e.Mask.Src, Dst: e.Mask.Dst, SrcPort: e.Mask.SrcPort, DstPort: e.Mask.DstPort, Family: e.Tuple.Family}
	b = append(b, "mask-src="...)
	b = m.SrcAddr().AppendTo(b)
	b = append(b, " mask-dst="...)
	b = m.DstAddr().AppendTo(b)
	b = append(b, ' ')
	b = appendPorts(b, &m)
	mt := &e.Master.node[DirOriginal].tuple
	b = append(b, "master-src="...)
	b = mt.SrcAddr().AppendTo(b)
	b = append(b, " master-dst="...)
	b = mt.DstAddr().AppendTo(b)
	b = append(b, ' ')
	b = appendPorts(b, mt)
	b = append(b, "class="...)
	b = strconv.AppendUint(b, uint64(e.Class), 10)
	if e.Helper != "" {
		b = append(b, " helper="...)
		b = append(b, e.Helper...)
	}
	return b
}
