package nat

import "tungate/conntrack"

// Warm loads what the destroy hook will touch when early drop deletes the
// connections cs (conntrack.Warmer.Victims, live and confirmed when it
// returned, and kept from reuse by the caller's reader): each one's
// binding, its mapping, the mapping's slots in both indexes and its port's
// word in the port set. Each of those lines is a cache miss that the
// destroy hook would wait for in turn; here the passes have nothing that
// waits between the loads, so those of different connections overlap. It
// changes nothing. The result is a value of the loads, for the caller to
// keep.
func (e *Engine) Warm(cs []*conntrack.Conn) uint64 {
	if len(cs) == 0 {
		return 0
	}
	var sink uint64
	e.mu.Lock()
	ms := e.warmMaps[:0]
	for _, c := range cs {
		// c is confirmed: its NAT state is written only under e.mu now.
		if b := bindingOf(c); b != nil && b.e == e && b.owner() == c && b.src.m != nil {
			ms = append(ms, b.src.m)
		}
	}
	ls := e.warmLines[:0]
	for _, m := range ms {
		if m.indexed {
			ls = append(ls, slotLine(e.byKey.cur, m.key.hash(e.seed)))
			if m.inByExt {
				ls = append(ls, slotLine(e.byExt.cur, extHash(m.ext, m.port, e.seed)))
			}
		}
		if m.hasPort && m.ps != nil {
			ls = append(ls, &m.ps.words[m.port>>6])
		}
	}
	for _, l := range ls {
		sink += *l
	}
	e.warmMaps, e.warmLines = ms[:0], ls[:0]
	e.mu.Unlock()
	return sink
}

// slotLine is where a probe for hash h in t starts.
func slotLine(t []ixSlot, h uint64) *uint64 {
	return &t[h&uint64(len(t)-1)].h
}
