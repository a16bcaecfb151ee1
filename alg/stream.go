package alg

import (
	"bytes"

	"tungate/conntrack"
	"tungate/packet"
)

const (
	// maxRewrites bounds the rewrites remembered per direction, for
	// replaying onto retransmissions and for exact sequence mapping; the
	// oldest goes first. Retransmissions reach back at most a window, and
	// a control connection has few rewrites in flight.
	maxRewrites = 8
	// maxAhead bounds how far beyond the stream position an out-of-order
	// segment may lie and still be tracked as a skipped range; anything
	// further is no plausible window and is merely passed on.
	maxAhead = 1 << 20
)

// connState is the framework's per-connection state, kept in
// conntrack.Ext.HelperData and guarded by the connection's lock.
type connState struct {
	h    Helper
	name string // h's name, to notice a changed Ext.Helper cheaply
	// x is reused for every packet so Help gets a pointer without a heap
	// allocation per packet; x.State persists the helper's own state.
	x   Context
	tcp [2]streamDir
}

// streamDir follows one direction of a helped TCP connection in the
// sender's original sequence space.
type streamDir struct {
	// next is the sequence number of the next byte the helper has not seen.
	next  uint32
	known bool
	// gap: bytes before next were never shown to the helper.
	gap bool
	// ooo marks [oooStart, oooEnd), segments passed on beyond a hole
	// without being shown to the helper: the sender will not resend them,
	// so the stream position jumps over them once the hole is filled.
	ooo              bool
	oooStart, oooEnd uint32
	// rewrites are this direction's latest rewrites, in stream order.
	rewrites []rewrite
}

// rewrite is one payload replacement, kept to repeat it on retransmission.
type rewrite struct {
	seq      uint32 // original sequence number of old[0]
	old, new []byte
}

func (s *streamDir) remember(r rewrite) { s.rewrites = append(s.rewrites, r) }

// keep settles the rewrites after a packet: a dropped packet's own (those
// after the first n0) are taken back; otherwise only the latest
// maxRewrites stay.
func (s *streamDir) keep(n0 int, accepted bool) {
	n := len(s.rewrites)
	switch {
	case !accepted:
		clear(s.rewrites[n0:])
		s.rewrites = s.rewrites[:n0]
	case n > maxRewrites:
		copy(s.rewrites, s.rewrites[n-maxRewrites:])
		clear(s.rewrites[maxRewrites:])
		s.rewrites = s.rewrites[:maxRewrites]
	}
}

func (s *streamDir) noteOutOfOrder(start, end uint32) {
	if !s.ooo {
		s.ooo, s.oooStart, s.oooEnd = true, start, end
		return
	}
	if seqBefore(start, s.oooStart) {
		s.oooStart = start
	}
	if seqBefore(s.oooEnd, end) {
		s.oooEnd = end
	}
}

// helpTCP shows the helper the new in-order bytes of a segment, replays
// earlier rewrites onto retransmitted bytes, and records the sequence
// adjustment of this segment's rewrites. The connection is locked.
func (m *Registry) helpTCP(x *Context, cs *connState, ext *conntrack.Ext, p *packet.Parsed) bool {
	d := x.Dir
	s := &cs.tcp[d]
	flags := p.TCPFlags
	if flags&packet.TCPRst != 0 {
		return true
	}
	seq := p.TCPSeq()
	if flags&packet.TCPSyn != 0 {
		seq++ // the SYN occupies one sequence number before the data
		*s = streamDir{next: seq, known: true, rewrites: s.rewrites[:0]}
	}
	n := len(p.Payload())
	if n == 0 {
		return true
	}
	if !s.known {
		// Picked up mid-stream: start here, but not at a message boundary.
		s.next, s.known, s.gap = seq, true, true
	}
	rel := int64(int32(seq - s.next))
	if rel > 0 {
		x.OutOfOrder = true
		if cs.h.Help(x) != Accept {
			return false
		}
		if rel < maxAhead {
			s.noteOutOfOrder(seq, seq+uint32(n))
		}
		return true
	}
	skip := int(-rel)
	grown := 0
	if len(s.rewrites) > 0 && skip > 0 {
		var ok bool
		if grown, ok = m.replay(p, s, seq, min(skip, n)); !ok {
			return false
		}
	}
	if skip >= n {
		return true // a retransmission: nothing new
	}
	x.dataOff = skip + grown
	x.Data = p.Payload()[x.dataOff:]
	x.seq = s.next
	x.Gap = s.gap
	x.rewrites0 = len(s.rewrites)
	v := cs.h.Help(x)
	s.keep(x.rewrites0, v == Accept)
	if v != Accept {
		return false
	}
	s.gap = false
	s.next += uint32(len(x.Data) - x.delta)
	if s.ooo && !seqBefore(s.next, s.oooStart) {
		if seqBefore(s.next, s.oooEnd) {
			s.next, s.gap = s.oooEnd, true
		}
		s.ooo = false
	}
	if x.adjSet && x.delta != 0 {
		setSeqAdj(x.Conn, ext, d, x.adjPos, x.delta)
	}
	return true
}

// replay repeats remembered rewrites on the retransmitted first old bytes
// of the payload. A segment that starts or ends inside a rewritten range
// cannot be translated consistently and is dropped (the sender resends).
func (m *Registry) replay(p *packet.Parsed, s *streamDir, seq uint32, old int) (grown int, ok bool) {
	for i := range s.rewrites {
		r := &s.rewrites[i]
		start := int(int32(r.seq - seq))
		end := start + len(r.old)
		if end <= 0 || start >= old {
			continue
		}
		if start < 0 || end > old {
			return 0, false
		}
		off := start + grown
		if !bytes.Equal(p.Payload()[off:off+len(r.old)], r.old) {
			return 0, false // not the bytes first sent there
		}
		if p.ReplacePayload(off, len(r.old), r.new) != nil {
			return 0, false
		}
		grown += len(r.new) - len(r.old)
		m.Stats.Replayed.Add(1)
	}
	return grown, true
}
