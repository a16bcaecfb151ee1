package conntrack

import "unsafe"

// The control plane's view of the table: identifiers, state names and
// deletion by the caller's choice. Listing is Range (lock-free) and
// Expectations (a snapshot); nothing here is on the packet path.

// ConnID returns the connection's identifier as `conntrack -o id` shows it:
// 32 bits derived from where the connection lives, so it stays the same
// for the connection's whole life and costs no memory per entry. Like
// Linux's it may be reused by a later connection once this one is gone.
func ConnID(c *Conn) uint32 { return idOf(unsafe.Pointer(c)) }

// ExpectationID returns an expectation's identifier, derived like ConnID.
func ExpectationID(e *Expectation) uint32 { return idOf(unsafe.Pointer(e)) }

// idOf scrambles an address (splitmix64's finaliser) so identifiers look
// random and do not reveal heap layout.
func idOf(p unsafe.Pointer) uint32 {
	h := uint64(uintptr(p)) + 0x9e3779b97f4a7c15
	h = (h ^ h>>30) * 0xbf58476d1ce4e5b9
	h = (h ^ h>>27) * 0x94d049bb133111eb
	h ^= h >> 31
	return uint32(h) ^ uint32(h>>32)
}

// AppendState appends the connection's protocol state as `conntrack -L`
// shows it (ESTABLISHED, CLOSED, …) without the trailing space; nothing
// for protocols that have no state (UDP, ICMP).
func (t *Table) AppendState(b []byte, c *Conn) []byte {
	n := len(b)
	b = t.trackers[c.node[DirOriginal].tuple.Proto].AppendState(b, c)
	for len(b) > n && b[len(b)-1] == ' ' {
		b = b[:len(b)-1]
	}
	return b
}

// ShownReply returns the reply tuple `conntrack -L` shows: the learnt one
// when the tracker learnt a second reply tuple after confirmation (ESP's
// peer SPI), else the reply tuple.
func (c *Conn) ShownReply() *Tuple { return c.learntReply() }

// Uses returns the reference count `conntrack -L` shows as use=: one, plus
// one for each live connection this one is the master of.
func (c *Conn) Uses() int {
	use := 1
	if e := c.ext.Load(); e != nil {
		use += int(max(e.children.Load(), 0))
	}
	return use
}

// Accounting reports whether the table counts packets and bytes per
// connection (nf_conntrack_acct), so listings know whether to show them.
func (t *Table) Accounting() bool { return t.cfg.Load().accounting() }

// DeleteMatching deletes every live connection for which match returns
// true (`conntrack -D` with filters) and returns how many it deleted.
// Like Range it holds no lock while match runs.
func (t *Table) DeleteMatching(match func(c *Conn) bool) int {
	n := 0
	t.Range(func(c *Conn) bool {
		if match(c) && t.Delete(c) {
			n++
		}
		return true
	})
	return n
}

// DeleteExpectations removes every waiting expectation for which match
// returns true (`conntrack -D expect`) and returns how many it removed.
func (t *Table) DeleteExpectations(match func(e *Expectation) bool) int {
	var del []*Expectation
	t.Expectations(func(e *Expectation) bool {
		if match(e) {
			del = append(del, e)
		}
		return true
	})
	n := 0
	x := &t.exp
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, e := range del {
		if e.live {
			x.remove(e)
			t.Stats.ExpectDelete.Add(1)
			n++
		}
	}
	return n
}

// StateNames returns every protocol state name `conntrack -L` may show
// (TCP's, then SCTP's), for validating and completing state filters.
func StateNames() []string {
	var out []string
	seen := map[string]bool{}
	for _, l := range [][]string{tcpStateNames[:], sctpStateNames[:]} {
		for _, n := range l {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	return out
}
