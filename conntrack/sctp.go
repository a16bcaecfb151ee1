package conntrack

import (
	"encoding/binary"
	"time"

	"tungate/packet"
)

// SCTP tracking after Linux's nf_conntrack_proto_sctp.c (6.x): connections
// keyed by ports, a state machine driven by the chunk types of each packet
// (sctp_conntracks), and the verification tag checks of RFC 9260 8.5: every
// packet must carry the tag its receiver chose in its INIT or INIT ACK,
// except the chunks whose tag rules differ (8.5.1). A packet that fails is
// INVALID and leaves the connection as it was, except for the changes the
// chunks before the failing one already made, as in Linux.
//
// States name what conntrack saw, not an endpoint's state: CLOSED after an
// INIT (nothing answered yet) or at the end; COOKIE_WAIT after the INIT ACK;
// COOKIE_ECHOED; ESTABLISHED after the COOKIE ACK (then ASSURED); the three
// SHUTDOWN states; HEARTBEAT_SENT for a connection first seen on a
// HEARTBEAT (a multihomed association's other path).
//
// Linux accepts some packets without refreshing the timer (an INIT
// retransmitted while CLOSED, so a client's port reuse cannot keep a
// mapping alive; a HEARTBEAT with an unknown tag), nor counting them: the
// Ignore verdict, as in the TCP tracker.

// SCTP conntrack states, Linux's enum sctp_conntrack. sctpInvalid (sIV)
// only appears in the transition table.
const (
	sctpNone uint8 = iota
	sctpClosed
	sctpCookieWait
	sctpCookieEchoed
	sctpEstablished
	sctpShutdownSent
	sctpShutdownRecd
	sctpShutdownAckSent
	sctpHeartbeatSent
	sctpInvalid
)

// sctpStateNames are the names conntrack -L prints; indexed by state.
var sctpStateNames = [...]string{"NONE", "CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED", "ESTABLISHED", "SHUTDOWN_SENT", "SHUTDOWN_RECD", "SHUTDOWN_ACK_SENT", "HEARTBEAT_SENT"}

// Rows of the transition table: the chunk types that move the state.
// Others (DATA, SACK, ...) leave it as it is.
const (
	sctpRowInit uint8 = iota
	sctpRowInitAck
	sctpRowAbort
	sctpRowShutdown
	sctpRowShutdownAck
	sctpRowError
	sctpRowCookieEcho
	sctpRowCookieAck
	sctpRowShutdownComplete
	sctpRowHeartbeat
	sctpRowHeartbeatAck
	sctpRows
	sctpNoRow = 0xff
)

// sctpRowOf maps a chunk type to its row of the transition table.
var sctpRowOf = func() (r [256]uint8) {
	for i := range r {
		r[i] = sctpNoRow
	}
	r[packet.SCTPChunkInit] = sctpRowInit
	r[packet.SCTPChunkInitAck] = sctpRowInitAck
	r[packet.SCTPChunkAbort] = sctpRowAbort
	r[packet.SCTPChunkShutdown] = sctpRowShutdown
	r[packet.SCTPChunkShutdownAck] = sctpRowShutdownAck
	r[packet.SCTPChunkError] = sctpRowError
	r[packet.SCTPChunkCookieEcho] = sctpRowCookieEcho
	r[packet.SCTPChunkCookieAck] = sctpRowCookieAck
	r[packet.SCTPChunkShutdownComplete] = sctpRowShutdownComplete
	r[packet.SCTPChunkHeartbeat] = sctpRowHeartbeat
	r[packet.SCTPChunkHeartbeatAck] = sctpRowHeartbeatAck
	return r
}()

// sctpTransitions is Linux's sctp_conntracks[dir][chunk][state]: the state
// a chunk moves a connection to. Notable entries: a new connection may
// start on almost any control chunk (NONE column), but only in the
// original direction; a reply INIT ACK moves CLOSED to COOKIE_WAIT; an
// ERROR in the reply direction (a stale cookie) closes a connection in
// COOKIE_ECHOED; a HEARTBEAT ACK answering a HEARTBEAT_SENT connection
// establishes it.
var sctpTransitions = func() (t [2][sctpRows][sctpInvalid]uint8) {
	const (
		cl, cw, ce, es     = sctpClosed, sctpCookieWait, sctpCookieEchoed, sctpEstablished
		ss, sr, sa, hs, iv = sctpShutdownSent, sctpShutdownRecd, sctpShutdownAckSent, sctpHeartbeatSent, sctpInvalid
	)
	t[DirOriginal] = [sctpRows][sctpInvalid]uint8{
		//                        NONE CLOSED C_WAIT C_ECHOED ESTAB S_SENT S_RECD S_ACK_SENT HB_SENT
		sctpRowInit:             {cl, cl, cw, ce, es, cl, cl, sa, cw},
		sctpRowInitAck:          {cl, cl, cw, ce, es, ss, sr, sa, cl},
		sctpRowAbort:            {cl, cl, cl, cl, cl, cl, cl, cl, cl},
		sctpRowShutdown:         {cl, cl, cw, ce, ss, ss, sr, sa, cl},
		sctpRowShutdownAck:      {sa, cl, cw, ce, es, sa, sa, sa, sa},
		sctpRowError:            {cl, cl, cw, ce, es, ss, sr, sa, cl},
		sctpRowCookieEcho:       {cl, cl, ce, ce, es, ss, sr, sa, cl},
		sctpRowCookieAck:        {cl, cl, cw, es, es, ss, sr, sa, cl},
		sctpRowShutdownComplete: {cl, cl, cw, ce, es, ss, sr, cl, cl},
		sctpRowHeartbeat:        {hs, cl, cw, ce, es, ss, sr, sa, hs},
		sctpRowHeartbeatAck:     {cl, cl, cw, ce, es, ss, sr, sa, hs},
	}
	t[DirReply] = [sctpRows][sctpInvalid]uint8{
		sctpRowInit:             {iv, cl, cw, ce, es, ss, sr, sa, iv},
		sctpRowInitAck:          {iv, cw, cw, ce, es, ss, sr, sa, iv},
		sctpRowAbort:            {iv, cl, cl, cl, cl, cl, cl, cl, iv},
		sctpRowShutdown:         {iv, cl, cw, ce, sr, ss, sr, sa, iv},
		sctpRowShutdownAck:      {iv, cl, cw, ce, es, sa, sa, sa, iv},
		sctpRowError:            {iv, cl, cw, cl, es, ss, sr, sa, iv},
		sctpRowCookieEcho:       {iv, cl, ce, ce, es, ss, sr, sa, iv},
		sctpRowCookieAck:        {iv, cl, cw, es, es, ss, sr, sa, iv},
		sctpRowShutdownComplete: {iv, cl, cw, ce, es, ss, sr, cl, iv},
		sctpRowHeartbeat:        {iv, cl, cw, ce, es, ss, sr, sa, hs},
		sctpRowHeartbeatAck:     {iv, cl, cw, ce, es, ss, sr, sa, es},
	}
	return t
}()

// sctpNext is the state a chunk of type typ in direction dir moves a
// connection in state cur to (Linux's sctp_new_state).
func sctpNext(dir Dir, cur, typ uint8) uint8 {
	row := sctpRowOf[typ]
	if row == sctpNoRow {
		return cur
	}
	return sctpTransitions[dir][row][cur]
}

// sctpState is a connection's SCTP tracking state, Linux's struct
// ip_ct_sctp. Guarded by Conn.mu; it lives in protoState's TCP bytes.
type sctpState struct {
	// vtag is the verification tag packets in each direction must carry:
	// the Initiate Tag their receiver announced.
	vtag [2]uint32
	// state is the SCTP conntrack state (index of sctpStateNames).
	state uint8
	// init marks a direction that sent an INIT not yet completed by a
	// COOKIE ACK; with both marked, the INITs collided (RFC 9260 5.2.4)
	// and an INIT ACK must carry the tag of the INIT it answers.
	init [2]bool
	// hbTagFailed: a HEARTBEAT in direction hbDir carried a tag other
	// than the known one (the peers restarted the association on another
	// path); a HEARTBEAT ACK from the other side then teaches the tags.
	hbTagFailed bool
	hbDir       Dir
}

// sctpChunkSet has bit t set for each chunk type t < 32 in a packet (the
// types the tracker asks about are all below 32).
type sctpChunkSet uint32

func (s sctpChunkSet) has(typ uint8) bool { return typ < 32 && s&(1<<typ) != 0 }

// sctpTagExempt are the chunks whose verification tag RFC 9260 8.5.1 rules
// separately: a packet holding any of them skips the plain tag check.
const sctpTagExempt = sctpChunkSet(1<<packet.SCTPChunkInit | 1<<packet.SCTPChunkShutdownComplete |
	1<<packet.SCTPChunkCookieEcho | 1<<packet.SCTPChunkAbort | 1<<packet.SCTPChunkShutdownAck |
	1<<packet.SCTPChunkHeartbeat | 1<<packet.SCTPChunkHeartbeatAck)

// sctpChunks walks the chunks of an SCTP packet as Linux's
// for_each_sctp_chunk does: from the end of the common header while a whole
// 4-byte chunk header fits, stepping by the chunk length rounded up to 4. A
// zero length, which sctpBasicChecks refuses before any other walk, steps
// by 4 so that no walk can loop.
type sctpChunks struct {
	b   []byte // the SCTP packet
	off int    // offset of the next chunk
}

// next returns the next chunk's offset, type, flags and length field.
func (w *sctpChunks) next() (off int, typ, flags uint8, length int, ok bool) {
	if w.off+4 > len(w.b) {
		return 0, 0, 0, 0, false
	}
	off = w.off
	typ, flags = w.b[off], w.b[off+1]
	length = int(binary.BigEndian.Uint16(w.b[off+2:]))
	w.off += max((length+3)&^3, 4)
	return off, typ, flags, length, true
}

// sctpBasicChecks is Linux's do_basic_checks: a packet needs a chunk; no
// chunk may have length zero; COOKIE ECHO and COOKIE ACK must come first
// and INIT, INIT ACK and SHUTDOWN COMPLETE must be alone (RFC 9260 6.10).
// It returns the set of chunk types present.
func sctpBasicChecks(l4 []byte) (sctpChunkSet, bool) {
	var set sctpChunkSet
	alone := false
	count := 0
	w := sctpChunks{b: l4, off: packet.SCTPHeaderLen}
	for {
		_, typ, _, length, ok := w.next()
		if !ok {
			break
		}
		switch typ {
		case packet.SCTPChunkInit, packet.SCTPChunkInitAck, packet.SCTPChunkShutdownComplete:
			alone = true
		}
		if length == 0 || (count != 0 && (alone || typ == packet.SCTPChunkCookieAck || typ == packet.SCTPChunkCookieEcho)) {
			return 0, false
		}
		if typ < 32 {
			set |= 1 << typ
		}
		count++
	}
	return set, count != 0
}

// sctpInitTag returns the Initiate Tag of the INIT or INIT ACK chunk at off.
// Linux reads the whole 16-byte fixed part of the chunk (tag, window,
// streams, TSN) and calls the packet INVALID when it is cut.
func sctpInitTag(l4 []byte, off int) (uint32, bool) {
	if off+4+16 > len(l4) {
		return 0, false
	}
	return binary.BigEndian.Uint32(l4[off+4:]), true
}

// sctpTracker is the SCTP Tracker. It is stateless; everything lives in
// the connection.
type sctpTracker struct{}

func (*sctpTracker) Name() string { return "sctp" }

func (*sctpTracker) Tuple(p *packet.Parsed, t *Tuple) bool {
	if !p.HasL4 {
		return false
	}
	t.SrcPort, t.DstPort = p.SrcPort, p.DstPort
	return true
}

func (*sctpTracker) Invert(orig, inv *Tuple) { inv.SrcPort, inv.DstPort = orig.DstPort, orig.SrcPort }

// Error is Linux's sctp_error: a packet short of the common header, or
// with a bad CRC32c when nf_conntrack_checksum is on, is INVALID.
func (*sctpTracker) Error(p *packet.Parsed, cfg *Config) Check {
	if !p.HasL4 || p.Len()-p.L4Off < packet.SCTPHeaderLen {
		return CheckInvalid
	}
	if cfg.checksum() && !p.L4ChecksumValid() {
		return CheckInvalid
	}
	return CheckOK
}

// New is the start of Linux's nf_conntrack_sctp_packet for an unconfirmed
// connection and its sctp_new: out-of-the-blue ABORT, SHUTDOWN COMPLETE and
// COOKIE ACK never start one (RFC 9260 8.4), nor does a packet holding a
// chunk that does not move the state from NONE (DATA, SACK, ...); an INIT
// must have tag zero (8.5.1 A). The first tags are learnt: the INIT's
// Initiate Tag is what replies must carry; a HEARTBEAT's tag, what the
// original direction carries; an out-of-the-blue SHUTDOWN ACK's tag, what
// the SHUTDOWN COMPLETE answering it carries (8.4 (5)).
func (*sctpTracker) New(c *Conn, p *packet.Parsed, cfg *Config, now int64) bool {
	l4 := p.L4()
	set, ok := sctpBasicChecks(l4)
	if !ok || set.has(packet.SCTPChunkAbort) || set.has(packet.SCTPChunkShutdownComplete) || set.has(packet.SCTPChunkCookieAck) {
		return false
	}
	s := c.proto.sctp()
	*s = sctpState{}
	vtag := binary.BigEndian.Uint32(l4[4:])
	w := sctpChunks{b: l4, off: packet.SCTPHeaderLen}
	for {
		off, typ, _, _, ok := w.next()
		if !ok {
			break
		}
		if ns := sctpNext(DirOriginal, sctpNone, typ); ns == sctpNone || ns == sctpInvalid {
			return false
		}
		switch typ {
		case packet.SCTPChunkInit:
			tag, ok := sctpInitTag(l4, off)
			if vtag != 0 || !ok {
				return false
			}
			s.vtag[DirReply] = tag
		case packet.SCTPChunkHeartbeat:
			s.vtag[DirOriginal] = vtag
		case packet.SCTPChunkShutdownAck:
			s.vtag[DirReply] = vtag
		}
	}
	return true
}

// Packet is Linux's nf_conntrack_sctp_packet: the verification tag checks
// of RFC 9260 8.5, then each chunk moves the state in turn.
func (*sctpTracker) Packet(c *Conn, p *packet.Parsed, dir Dir, cfg *Config, now int64) (Verdict, time.Duration, bool) {
	l4 := p.L4()
	set, ok := sctpBasicChecks(l4)
	if !ok {
		return InvalidPacket, 0, false
	}
	vtag := binary.BigEndian.Uint32(l4[4:])
	confirmed := c.Confirmed()
	other := 1 - dir

	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.proto.sctp()
	if set&sctpTagExempt == 0 && vtag != s.vtag[dir] {
		return InvalidPacket, 0, false
	}
	ignore, changed := false, false
	newState := sctpNone
	w := sctpChunks{b: l4, off: packet.SCTPHeaderLen}
	for {
		off, typ, flags, _, ok := w.next()
		if !ok {
			break
		}
		// The special cases of the tag check (8.5.1).
		switch typ {
		case packet.SCTPChunkInit:
			// (A) an INIT's tag is zero.
			if vtag != 0 {
				return InvalidPacket, 0, false
			}
		case packet.SCTPChunkAbort, packet.SCTPChunkShutdownComplete:
			// (B), (C): the sender's own tag, or with the T bit the one
			// it reflected from the packet it answers.
			want := s.vtag[dir]
			if flags&packet.SCTPChunkFlagT != 0 {
				want = s.vtag[other]
			}
			if vtag != want {
				return InvalidPacket, 0, false
			}
		case packet.SCTPChunkCookieEcho:
			// (D) the tag of the INIT ACK.
			if vtag != s.vtag[dir] {
				return InvalidPacket, 0, false
			}
		case packet.SCTPChunkCookieAck:
			s.init = [2]bool{}
		case packet.SCTPChunkHeartbeat:
			switch {
			case s.vtag[dir] == 0:
				s.vtag[dir] = vtag
			case vtag != s.vtag[dir]:
				if set.has(packet.SCTPChunkData) || ignore {
					return InvalidPacket, 0, false
				}
				s.hbTagFailed, s.hbDir = true, dir
				ignore = true
				continue
			default:
				s.hbTagFailed = false
			}
		case packet.SCTPChunkHeartbeatAck:
			switch {
			case s.vtag[dir] == 0:
				s.vtag[dir] = vtag
			case vtag != s.vtag[dir]:
				if set.has(packet.SCTPChunkData) || ignore || !s.hbTagFailed || s.hbDir == dir {
					return InvalidPacket, 0, false
				}
				// The answer to the HEARTBEAT with the unknown tag:
				// take this side's new tag; the other side's is
				// learnt from its next HEARTBEAT (ACK).
				s.hbTagFailed = false
				s.vtag[dir], s.vtag[other] = vtag, 0
			default:
				s.hbTagFailed = false
			}
		}

		oldState := s.state
		newState = sctpNext(dir, oldState, typ)
		if newState == sctpInvalid {
			return InvalidPacket, 0, false
		}
		switch typ {
		case packet.SCTPChunkInit:
			tag, ok := sctpInitTag(l4, off)
			if !ok {
				return InvalidPacket, 0, false
			}
			// A retransmitted or stale INIT (the tag the peer already
			// carries) does not count as a new attempt.
			if oldState == sctpNone || s.vtag[other] != tag {
				if s.init[dir] && s.init[other] {
					s.init[other] = false
				}
				s.init[dir] = true
			}
			s.vtag[other] = tag
			// A client reusing its port must not keep the entry (and
			// its NAT mapping) alive with INITs nobody answers.
			if newState == sctpClosed && oldState == sctpClosed && confirmed {
				ignore = true
			}
		case packet.SCTPChunkInitAck:
			tag, ok := sctpInitTag(l4, off)
			if !ok {
				return InvalidPacket, 0, false
			}
			known := s.vtag[other]
			if !s.init[other] && known != 0 && known != tag {
				return InvalidPacket, 0, false
			}
			if s.init[dir] && s.init[other] && known != tag {
				return InvalidPacket, 0, false // collision: must answer the INIT it crossed
			}
			s.vtag[other] = tag
		}
		s.state = newState
		if oldState != newState {
			changed = true
			if newState == sctpEstablished {
				c.SetStatus(StatusAssured)
			}
		}
	}
	if ignore {
		return Ignore, 0, changed
	}
	return Accept, cfg.Timeouts.sctp(newState), changed
}

// sctp returns the timeout of an SCTP state; NONE has CLOSED's, as Linux's
// timeouts[0].
func (t *Timeouts) sctp(state uint8) time.Duration {
	var d Duration
	switch state {
	case sctpCookieWait:
		d = t.SCTPCookieWait
	case sctpCookieEchoed:
		d = t.SCTPCookieEchoed
	case sctpEstablished:
		d = t.SCTPEstablished
	case sctpShutdownSent:
		d = t.SCTPShutdownSent
	case sctpShutdownRecd:
		d = t.SCTPShutdownRecd
	case sctpShutdownAckSent:
		d = t.SCTPShutdownAckSent
	case sctpHeartbeatSent:
		d = t.SCTPHeartbeatSent
	default:
		d = t.SCTPClosed
	}
	return time.Duration(d)
}

// canEarlyDrop lets a full table drop assured connections that are shutting
// down (Linux's sctp_can_early_drop).
func (*sctpTracker) canEarlyDrop(c *Conn) bool {
	c.mu.Lock()
	st := c.proto.sctp().state
	c.mu.Unlock()
	switch st {
	case sctpShutdownSent, sctpShutdownRecd, sctpShutdownAckSent:
		return true
	}
	return false
}

func (*sctpTracker) AppendPorts(b []byte, t *Tuple) []byte { return appendPorts(b, t) }

func (*sctpTracker) AppendState(b []byte, c *Conn) []byte {
	c.mu.Lock()
	st := c.proto.sctp().state
	c.mu.Unlock()
	if int(st) >= len(sctpStateNames) {
		st = sctpNone
	}
	b = append(b, sctpStateNames[st]...)
	return append(b, ' ')
}
