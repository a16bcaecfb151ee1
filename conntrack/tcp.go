package conntrack

import (
	"encoding/binary"
	"time"

	"tungate/packet"
)

// TCP tracking after Linux's nf_conntrack_proto_tcp.c: the same state
// machine (tcp_conntracks), the same window tracking after Guido van Rooij's
// "Real Stateful TCP Packet Filtering in IP Filter" with RFC 793 bounds, the
// same sanity checks. A packet's fate is decided under c.mu because the two
// directions of a connection are processed on different goroutines.
//
// Where tungate's Tracker interface has no word for a Linux outcome, the
// tracker says it with the timeout:
//   - Linux returns NF_ACCEPT without refreshing the timer or counting for
//     packets it "ignores" (IGNORE class, packets just below the window):
//     the Ignore verdict. A retransmitted SYN before a reply is counted
//     but keeps its timer: Accept with the time left.
//   - Linux kills a connection whose only reply is a RST; here it is
//     Accept with a zero timeout, so it is gone at the next lookup.
//   - Linux shortens the timer of an ASSURED connection on out-of-window
//     FINs/RSTs from both sides while calling the packet INVALID; the
//     table does not touch the expiry of INVALID packets, so the tracker
//     stores it (invalidFINRST).

// TCP connection states, Linux's enum tcp_conntrack. tcpMax (sIV) and
// tcpIgnore (sIG) only appear in the transition table.
const (
	tcpNone uint8 = iota
	tcpSynSent
	tcpSynRecv
	tcpEstablished
	tcpFinWait
	tcpCloseWait
	tcpLastAck
	tcpTimeWait
	tcpClose
	tcpSynSent2
	tcpMax
	tcpIgnore
)

// tcpStateNames are the state names conntrack -L prints; indexed by state.
var tcpStateNames = [...]string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

// Packet classes, Linux's enum tcp_bit_set: the row of the transition table.
const (
	tcpSynSet uint8 = iota
	tcpSynAckSet
	tcpFinSet
	tcpAckSet
	tcpRstSet
	tcpNoneSet
)

// Per-direction flags, Linux's IP_CT_TCP_FLAG_* (same bits, so a netlink
// dump could pass them through), and the two last_flags-only bits.
const (
	tcpFlagWindowScale  uint8 = 0x01
	tcpFlagSACKPerm     uint8 = 0x02
	tcpFlagCloseInit    uint8 = 0x04
	tcpFlagBeLiberal    uint8 = 0x08
	tcpFlagDataUnack    uint8 = 0x10
	tcpFlagMaxAckSet    uint8 = 0x20
	tcpExpChallengeAck  uint8 = 0x40 // last_flags: a SYN in LAST_ACK may draw an RFC 5961 challenge ACK
	tcpSimultaneousOpen uint8 = 0x80 // last_flags: SYN_SENT2 was passed
)

// tcpMaxWScale is the largest window shift RFC 7323 allows (2.3).
const tcpMaxWScale = 14

// tcpMaxAckWinConst is Linux's MAXACKWINCONST: how far below the receiver's
// end an ack may lie and still be taken as current.
const tcpMaxAckWinConst = 66000

// TCP option kinds and lengths (RFC 9293 3.2, RFC 7323, RFC 2018).
const (
	tcpOptEOL        = 0
	tcpOptNOP        = 1
	tcpOptWindow     = 3
	tcpOptSACKPerm   = 4
	tcpOptSACK       = 5
	tcpOptTimestamp  = 8
	tcpOptLenWindow  = 3
	tcpOptLenSACKPrm = 2
	tcpOptLenTS      = 10
)

// tcpTransitions is Linux's tcp_conntracks[dir][class][state]: the state a
// packet of a class moves a connection to. The comments in Linux's table
// explain each entry; the two that need it most: a SYN in TIME_WAIT or
// CLOSE (original) goes to SYN_SENT, which Packet turns into a reopen; a
// SYN/ACK in the reply direction after ESTABLISHED is ignored, not invalid,
// because it may answer a SYN conntrack let through while out of sync.
var tcpTransitions = [2][6][tcpMax]uint8{
	DirOriginal: {
		//                NONE       SYN_SENT    SYN_RECV        ESTABLISHED     FIN_WAIT    CLOSE_WAIT  LAST_ACK    TIME_WAIT   CLOSE       SYN_SENT2
		tcpSynSet:    {tcpSynSent, tcpSynSent, tcpIgnore, tcpIgnore, tcpIgnore, tcpIgnore, tcpIgnore, tcpSynSent, tcpSynSent, tcpSynSent2},
		tcpSynAckSet: {tcpMax, tcpMax, tcpSynRecv, tcpMax, tcpMax, tcpMax, tcpMax, tcpMax, tcpMax, tcpSynRecv},
		tcpFinSet:    {tcpMax, tcpMax, tcpFinWait, tcpFinWait, tcpLastAck, tcpLastAck, tcpLastAck, tcpTimeWait, tcpClose, tcpMax},
		tcpAckSet:    {tcpEstablished, tcpMax, tcpEstablished, tcpEstablished, tcpCloseWait, tcpCloseWait, tcpTimeWait, tcpTimeWait, tcpClose, tcpMax},
		tcpRstSet:    {tcpMax, tcpClose, tcpClose, tcpClose, tcpClose, tcpClose, tcpClose, tcpClose, tcpClose, tcpClose},
		tcpNoneSet:   {tcpMax, tcpMax, tcpMax, tcpMax, tcpMax, tcpMax, tcpMax, tcpMax, tcpMax, tcpMax},
	},
	DirReply: {
		tcpSynSet:    {tcpMax, tcpSynSent2, tcpMax, tcpMax, tcpMax, tcpMax, tcpMax, tcpSynSent, tcpMax, tcpSynSent2},
		tcpSynAckSet: {tcpMax, tcpSynRecv, tcpIgnore, tcpIgnore, tcpIgnore, tcpIgnore, tcpIgnore, tcpIgnore, tcpIgnore, tcpSynRecv},
		tcpFinSet:    {tcpMax, tcpMax, tcpFinWait, tcpFinWait, tcpLastAck, tcpLastAck, tcpLastAck, tcpTimeWait, tcpClose, tcpMax},
		tcpAckSet:    {tcpMax, tcpIgnore, tcpSynRecv, tcpEstablished, tcpCloseWait, tcpCloseWait, tcpTimeWait, tcpTimeWait, tcpClose, tcpIgnore},
		tcpRstSet:    {tcpMax, tcpClose, tcpClose, tcpClose, tcpClose, tcpClose, tcpClose, tcpClose, tcpClose, tcpClose},
		tcpNoneSet:   {tcpMax, tcpMax, tcpMax, tcpMax, tcpMax, tcpMax, tcpMax, tcpMax, tcpMax, tcpMax},
	},
}

// tcpValidFlags is Linux's tcp_valid_flags, indexed by the flags byte
// without PSH, ECE and CWR (always allowed): every other combination, such
// as SYN+FIN, SYN+RST or no flags at all, is a scan or a broken stack.
var tcpValidFlags = func() (v [64]bool) {
	const fin, syn, rst, ack, urg = packet.TCPFin, packet.TCPSyn, packet.TCPRst, packet.TCPAck, packet.TCPUrg
	for _, f := range []uint8{syn, syn | urg, syn | ack, rst, rst | ack, fin | ack, fin | ack | urg, ack, ack | urg} {
		v[f] = true
	}
	return v
}()

// tcpPeer is what conntrack knows of one side's sequence space, Linux's
// struct ip_ct_tcp_state without the two bytes kept in tcpState.
type tcpPeer struct {
	// end is td_end: the highest seq+len this side sent.
	end uint32
	// maxEnd is td_maxend: the highest ack+window the other side allowed
	// this side to send up to.
	maxEnd uint32
	// maxWin is td_maxwin: the largest (scaled) window this side
	// advertised; zero until the side has been seen.
	maxWin uint32
	// maxAck is td_maxack: the highest ack this side sent, valid once
	// tcpFlagMaxAckSet is set. Before that it holds the ISN of this side's
	// SYN, which is how a SYN/ACK is checked to acknowledge exactly that
	// SYN (RFC 9293 3.10.7.3: an ack outside ISN+1..SND.NXT is refused).
	maxAck uint32
}

// tcpState is a connection's TCP tracking state, Linux's struct ip_ct_tcp
// (56 bytes here, 60 there). Guarded by Conn.mu.
type tcpState struct {
	seen [2]tcpPeer
	// lastSeq, lastAck, lastEnd and lastWin describe the last ACK-class
	// packet (retransmission detection) or the last ignored packet (to
	// resynchronise when the peer answers it).
	lastSeq, lastAck, lastEnd uint32
	lastWin                   uint16
	// scale and flags are td_scale and flags per direction.
	scale [2]uint8
	flags [2]uint8
	// state is the TCP conntrack state (index of tcpStateNames).
	state uint8
	// lastIndex and lastDir are the class and direction of the last
	// accepted or ignored packet.
	lastIndex uint8
	lastDir   Dir
	// lastWscale and lastFlags are the options of an ignored SYN, applied
	// if the server answers it.
	lastWscale uint8
	lastFlags  uint8
	// retrans counts identical ACK-class packets in a row (saturating).
	retrans uint8
}

// tcpTracker is the TCP Tracker. It is stateless; everything lives in the
// connection.
type tcpTracker struct{}

func (*tcpTracker) Name() string { return "tcp" }

func (*tcpTracker) Tuple(p *packet.Parsed, t *Tuple) bool {
	if !p.HasL4 {
		return false
	}
	t.SrcPort, t.DstPort = p.SrcPort, p.DstPort
	return true
}

func (*tcpTracker) Invert(orig, inv *Tuple) { inv.SrcPort, inv.DstPort = orig.DstPort, orig.SrcPort }

// Error is Linux's tcp_error: flag combinations no TCP sends, and the
// checksum (nf_conntrack_checksum) so a corrupted header cannot move the
// window. Header length was checked by packet.Decode.
func (*tcpTracker) Error(p *packet.Parsed, cfg *Config) Check {
	if !p.HasL4 || p.L4Off+20 > p.Len() {
		return CheckInvalid
	}
	if !tcpValidFlags[p.TCPFlags&^(packet.TCPPsh|packet.TCPEce|packet.TCPCwr)] {
		return CheckInvalid
	}
	if cfg.checksum() && !p.L4ChecksumValid() {
		return CheckInvalid
	}
	return CheckOK
}

// tcpClass maps the flags to a packet class, Linux's get_conntrack_index.
func tcpClass(f uint8) uint8 {
	switch {
	case f&packet.TCPRst != 0:
		return tcpRstSet
	case f&packet.TCPSyn != 0:
		if f&packet.TCPAck != 0 {
			return tcpSynAckSet
		}
		return tcpSynSet
	case f&packet.TCPFin != 0:
		return tcpFinSet
	case f&packet.TCPAck != 0:
		return tcpAckSet
	}
	return tcpNoneSet
}

// tcpSegEnd is seq plus the sequence space the segment occupies: payload,
// and one each for SYN and FIN (Linux's segment_seq_plus_len).
func tcpSegEnd(p *packet.Parsed, seq uint32) uint32 {
	end := seq + uint32(p.Len()-p.L4Off-p.TCPHeaderLen())
	if p.TCPFlags&packet.TCPSyn != 0 {
		end++
	}
	if p.TCPFlags&packet.TCPFin != 0 {
		end++
	}
	return end
}

// before and after compare sequence numbers modulo 2^32 (RFC 1982).
func before(a, b uint32) bool { return int32(a-b) < 0 }
func after(a, b uint32) bool  { return int32(b-a) < 0 }

// New is Linux's tcp_new: a SYN starts a connection; with tcp_loose an ACK
// picks up one already in progress, with liberal window checks on both
// sides because its window scaling and history are unknown.
func (*tcpTracker) New(c *Conn, p *packet.Parsed, cfg *Config, now int64) bool {
	if tcpTransitions[DirOriginal][tcpClass(p.TCPFlags)][tcpNone] >= tcpMax {
		return false
	}
	syn := p.TCPFlags&packet.TCPSyn != 0
	if !syn && !cfg.tcpLoose() {
		return false
	}
	s := &c.proto.tcp
	*s = tcpState{lastIndex: tcpNoneSet}
	seq := p.TCPSeq()
	o := &s.seen[DirOriginal]
	o.end = tcpSegEnd(p, seq)
	o.maxWin = max(uint32(p.TCPWindow()), 1)
	if syn {
		o.maxEnd = o.end
		o.maxAck = seq
		tcpOptions(p, &s.scale[DirOriginal], &s.flags[DirOriginal])
		return true
	}
	o.maxEnd = o.end + o.maxWin
	s.flags[DirOriginal] = tcpFlagSACKPerm | tcpFlagBeLiberal
	s.flags[DirReply] = tcpFlagSACKPerm | tcpFlagBeLiberal
	return true
}

// tcpOptions reads the window scale and SACK-permitted options of a SYN
// into one direction's state (Linux's tcp_options): with options present,
// earlier values are forgotten except be-liberal.
func tcpOptions(p *packet.Parsed, scale, flags *uint8) {
	opts := p.TCPOptions()
	if len(opts) == 0 {
		return
	}
	*scale = 0
	*flags &= tcpFlagBeLiberal
	for i := 0; i < len(opts); {
		switch opts[i] {
		case tcpOptEOL:
			return
		case tcpOptNOP:
			i++
			continue
		}
		if i+1 >= len(opts) {
			return
		}
		size := int(opts[i+1])
		if size < 2 || i+size > len(opts) {
			return // silly or partial option: stop, as Linux does
		}
		switch {
		case opts[i] == tcpOptSACKPerm && size == tcpOptLenSACKPrm:
			*flags |= tcpFlagSACKPerm
		case opts[i] == tcpOptWindow && size == tcpOptLenWindow:
			*scale = min(opts[i+2], tcpMaxWScale)
			*flags |= tcpFlagWindowScale
		}
		i += size
	}
}

// tcpSACK returns the highest SACK right edge in the options if it is after
// ack, else ack (Linux's tcp_sack). A timestamp-only option block, the
// common case on a busy connection, is recognised without a walk.
func tcpSACK(opts []byte, ack uint32) uint32 {
	if len(opts) == 12 && binary.BigEndian.Uint32(opts) == tcpOptNOP<<24|tcpOptNOP<<16|tcpOptTimestamp<<8|tcpOptLenTS {
		return ack
	}
	for i := 0; i < len(opts); {
		switch opts[i] {
		case tcpOptEOL:
			return ack
		case tcpOptNOP:
			i++
			continue
		}
		if i+1 >= len(opts) {
			return ack
		}
		size := int(opts[i+1])
		if size < 2 || i+size > len(opts) {
			return ack
		}
		if opts[i] == tcpOptSACK && size >= 2+8 && (size-2)%8 == 0 {
			for b := i + 2; b < i+size; b += 8 {
				if r := binary.BigEndian.Uint32(opts[b+4:]); after(r, ack) {
					ack = r
				}
			}
			return ack
		}
		i += size
	}
	return ack
}

// liberal reports whether window failures of packets from dir are let
// through (nf_conntrack_tcp_be_liberal, or a picked-up connection).
func (s *tcpState) liberal(dir Dir, cfg *Config) bool {
	return cfg.TCPLiberal || s.flags[dir]&tcpFlagBeLiberal != 0
}

// initSender sets one direction up from its SYN or SYN/ACK (Linux's
// tcp_init_sender). RFC 7323 2.2: scaling is on only if both SYNs carry
// the option, known once the reply direction's SYN is seen.
func (s *tcpState) initSender(p *packet.Parsed, dir Dir, seq, end, win uint32) {
	snd := &s.seen[dir]
	snd.end, snd.maxEnd = end, end
	snd.maxWin = max(win, 1)
	snd.maxAck = seq
	tcpOptions(p, &s.scale[dir], &s.flags[dir])
	if dir == DirReply && s.flags[0]&s.flags[1]&tcpFlagWindowScale == 0 {
		s.scale = [2]uint8{}
	}
}

// tcpAction is the window check's outcome (Linux's nf_ct_tcp_action).
type tcpAction uint8

const (
	tcpAccept tcpAction = iota
	tcpIgnorePkt
	tcpInvalidPkt
)

// failed is Linux's nf_tcp_log_invalid: a failed check counts only when
// the sender is held to the window.
func (s *tcpState) failed(dir Dir, cfg *Config, a tcpAction) tcpAction {
	if s.liberal(dir, cfg) {
		return tcpAccept
	}
	return a
}

// ackOffset maps an acknowledgement, which the receiver sent in the
// rewritten sequence space of dir's sender, back by the helper's offset.
// Unlike Linux's tcp_in_window (which compares the rewritten ack with the
// original-space correction point) it first undoes the offset in force
// before the correction, as nf_ct_seq_adjust does: otherwise acks just past
// a rewrite that shrank the stream are judged by the wrong offset.
func ackOffset(c *Conn, dir Dir, ack uint32) uint32 {
	e := c.ext.Load()
	if e == nil {
		return 0
	}
	a := &e.SeqAdj[dir]
	if after(ack-1-uint32(a.OffsetBefore), a.CorrectionPos) {
		return uint32(a.OffsetAfter)
	}
	return uint32(a.OffsetBefore)
}

// inWindow is Linux's tcp_in_window. With
//
//	end    = seq + len (the segment's sequence space),
//	sack   = the highest SACK right edge, or ack,
//	maxend = the receiver's highest ack + window,
//	maxwin = the largest window the receiver advertised,
//
// a segment is current when
//
//	I.   seq <= sender.maxend,
//	II.  end >= sender.end - receiver.maxwin,
//	III. sack <= receiver.end,
//	IV.  sack >= receiver.end - max(sender.maxwin, 66000),
//
// and then widens the state with what the segment shows. Failing I or III
// is INVALID; failing II or IV is a retransmission or a stale ack, ignored.
func (s *tcpState) inWindow(c *Conn, p *packet.Parsed, dir Dir, class uint8, cfg *Config) tcpAction {
	snd, rcv := &s.seen[dir], &s.seen[dir^1]
	f := p.TCPFlags
	seq, ack := p.TCPSeq(), p.TCPAck()
	winRaw := p.TCPWindow()
	win := uint32(winRaw)
	end := tcpSegEnd(p, seq)
	sack := ack
	if s.flags[dir^1]&tcpFlagSACKPerm != 0 && p.TCPHeaderLen() > 20 {
		sack = tcpSACK(p.TCPOptions(), ack)
	}
	if off := ackOffset(c, dir^1, ack); off != 0 {
		ack -= off
		sack -= off
	}

	if snd.maxWin == 0 {
		if f&packet.TCPSyn != 0 {
			// The SYN/ACK, or the reply SYN of a simultaneous open.
			s.initSender(p, dir, seq, end, win)
			if f&packet.TCPAck == 0 {
				return tcpAccept
			}
		} else {
			// Picked up mid-stream: take what this packet says.
			snd.end = end
			snd.maxWin = max(win<<s.scale[dir], 1)
			snd.maxEnd = end + snd.maxWin
			if rcv.maxWin == 0 {
				// Nothing seen the other way yet: make III and IV pass.
				rcv.end, rcv.maxEnd = sack, sack
			} else if sack == rcv.end+1 {
				rcv.end++ // likely the answer to a keepalive (III)
			}
		}
	} else if f&packet.TCPSyn != 0 && after(end, snd.end) && (s.state == tcpSynSent || s.state == tcpSynRecv) {
		// RFC 9293 3.10.7.3 / RFC 1122: a restarted client may reuse the
		// ports with a higher ISN; start this direction over.
		s.initSender(p, dir, seq, end, win)
		if dir == DirReply && f&packet.TCPAck == 0 {
			return tcpAccept
		}
	}

	if f&packet.TCPAck == 0 || (f&packet.TCPRst != 0 && ack == 0) {
		// No ack (or a broken stack's RST with ack 0): as if it acked all.
		ack, sack = rcv.end, rcv.end
	}
	if f&packet.TCPRst != 0 && seq == 0 && s.state == tcpSynSent {
		seq, end = snd.end, snd.end // RST answering the SYN
	}

	maxAckWin := max(snd.maxWin, tcpMaxAckWinConst)
	if !before(seq, snd.maxEnd+1) {
		// I fails. Some stacks send a little past the receiver's window;
		// if the peer acks it later, every ack would fail III, so note
		// the data although the packet itself is not accepted.
		overshot := end - snd.maxEnd + 1
		if rcv.maxWin != 0 && after(end, snd.end-rcv.maxWin-1) &&
			after(sack, rcv.end-maxAckWin-1) && overshot <= rcv.maxWin && before(sack, rcv.end+1) {
			snd.end = end
			s.flags[dir] |= tcpFlagDataUnack
			return s.failed(dir, cfg, tcpIgnorePkt)
		}
		return s.failed(dir, cfg, tcpInvalidPkt)
	}
	if !before(sack, rcv.end+1) {
		return s.failed(dir, cfg, tcpInvalidPkt) // III: acks data not seen
	}
	if rcv.maxWin != 0 && !after(end, snd.end-rcv.maxWin-1) {
		return s.failed(dir, cfg, tcpIgnorePkt) // II: already acked data
	}
	if !after(sack, rcv.end-maxAckWin-1) {
		return s.failed(dir, cfg, tcpIgnorePkt) // IV: very late ack
	}

	if f&packet.TCPSyn == 0 {
		win <<= s.scale[dir] // RFC 7323 2.2: never scaled on a SYN
	}
	if swin := win + (sack - ack); snd.maxWin < swin {
		snd.maxWin = swin
	}
	if after(end, snd.end) {
		snd.end = end
		s.flags[dir] |= tcpFlagDataUnack
	}
	if f&packet.TCPAck != 0 {
		if s.flags[dir]&tcpFlagMaxAckSet == 0 {
			snd.maxAck = ack
			s.flags[dir] |= tcpFlagMaxAckSet
		} else if after(ack, snd.maxAck) {
			snd.maxAck = ack
		}
	}
	if rcv.maxWin != 0 && after(end, snd.maxEnd) {
		rcv.maxWin += end - snd.maxEnd
	}
	if after(sack+win, rcv.maxEnd-1) {
		rcv.maxEnd = sack + win
		if win == 0 {
			rcv.maxEnd++
		}
	}
	if ack == rcv.end {
		s.flags[dir^1] &^= tcpFlagDataUnack
	}
	if class == tcpAckSet {
		if s.lastDir == dir && s.lastSeq == seq && s.lastAck == ack && s.lastEnd == end && s.lastWin == winRaw {
			if s.retrans < 255 {
				s.retrans++
			}
		} else {
			s.lastDir, s.lastSeq, s.lastAck, s.lastEnd, s.lastWin = dir, seq, ack, end, winRaw
			s.retrans = 0
		}
	}
	return tcpAccept
}

// tcpStateTimeout returns the configured timeout of a state.
func tcpStateTimeout(t *Timeouts, state uint8) time.Duration {
	var d Duration
	switch state {
	case tcpSynSent:
		d = t.TCPSynSent
	case tcpSynRecv:
		d = t.TCPSynRecv
	case tcpEstablished:
		d = t.TCPEstablished
	case tcpFinWait:
		d = t.TCPFinWait
	case tcpCloseWait:
		d = t.TCPCloseWait
	case tcpLastAck:
		d = t.TCPLastAck
	case tcpTimeWait:
		d = t.TCPTimeWait
	case tcpSynSent2:
		d = t.TCPSynSent2
	default:
		d = t.TCPClose
	}
	return time.Duration(d)
}

// timeLeft is the connection's remaining lifetime: returned for packets
// that are accepted without refreshing the timer.
func timeLeft(c *Conn, now int64) time.Duration {
	return time.Duration(max(c.Expires()-now, 0))
}

// tcpClosing reports whether a state is on the way out (Linux's
// tcp_can_early_drop).
func tcpClosing(state uint8) bool {
	switch state {
	case tcpFinWait, tcpLastAck, tcpTimeWait, tcpClose, tcpCloseWait:
		return true
	}
	return false
}

// rstOutcome says how a RST that would close the connection proceeds.
type rstOutcome uint8

const (
	rstCheckWindow rstOutcome = iota // run the window check
	rstTrusted                       // skip the window check: it answers what we let through
	rstKeepState                     // check the window but stay in the old state
	rstInvalid
)

// checkRST is the CLOSE case of Linux's nf_conntrack_tcp_packet: RFC 5961
// 3.2 says a RST whose seq is in the window but not exactly the expected
// one draws a challenge ACK, so the connection stays until a RST with the
// exact seq arrives; a RST below what the peer already acked is stale.
func (s *tcpState) checkRST(p *packet.Parsed, dir Dir, st Status) rstOutcome {
	if tcpClosing(s.state) {
		// Closing anyway; the tuple may already be reused by a new
		// connection, so the old window says nothing.
		return rstTrusted
	}
	peer := &s.seen[dir^1]
	seq := p.TCPSeq()
	if s.flags[dir^1]&tcpFlagMaxAckSet != 0 && s.lastIndex != tcpSynSet {
		established := s.state == tcpEstablished && st&StatusAssured != 0
		switch {
		case seq == 0 && !established:
			// Most likely the answer to a SYN let through.
			return rstCheckWindow
		case before(seq, peer.maxAck):
			return rstInvalid
		case !established || seq == peer.maxAck:
			return rstCheckWindow
		case s.lastIndex == tcpAckSet && s.lastDir == dir && seq == s.lastEnd:
			// The RST ends a train of data from its sender.
			return rstCheckWindow
		}
		return rstKeepState
	}
	if ((st&StatusSeenReply != 0 && s.lastIndex == tcpSynSet) ||
		(st&StatusAssured == 0 && s.lastIndex == tcpAckSet)) && p.TCPAck() == s.lastEnd {
		// RST to a SYN or ACK we let through while out of sync: its ack
		// may cover segments the window never saw.
		return rstTrusted
	}
	if s.state == tcpSynSent && s.lastIndex == tcpAckSet && s.lastDir == DirReply && seq == s.lastAck {
		// RST answering a challenge ACK to our SYN (RFC 5961 4).
		return rstTrusted
	}
	return rstCheckWindow
}

// ignore records a packet conntrack lets through without trusting it
// (Linux's TCP_CONNTRACK_IGNORE): if the peer's answer shows the endpoints
// are in sync and conntrack is not, Packet resynchronises from this.
func (s *tcpState) ignore(p *packet.Parsed, dir Dir, class, oldState uint8) {
	s.lastIndex, s.lastDir = class, dir
	s.lastSeq = p.TCPSeq()
	s.lastEnd = tcpSegEnd(p, s.lastSeq)
	s.lastWin = p.TCPWindow()
	if class == tcpSynSet && dir == DirOriginal {
		// A SYN for a connection conntrack thinks is still open: keep its
		// options for the SYN/ACK, if one comes.
		var scale, flags uint8
		tcpOptions(p, &scale, &flags)
		s.lastFlags = flags & (tcpFlagWindowScale | tcpFlagSACKPerm)
		s.lastWscale = 0
		if flags&tcpFlagWindowScale != 0 {
			s.lastWscale = scale
		}
		if oldState == tcpLastAck {
			// The peer may answer with an RFC 5961 challenge ACK, which
			// must not be taken for the ACK of its FIN.
			s.lastFlags |= tcpExpChallengeAck
		}
	}
	if oldState == tcpSynSent && class == tcpAckSet && dir == DirReply {
		s.lastAck = p.TCPAck() // possible challenge ACK to the SYN
	}
}

// resync adopts an ignored SYN that the peer's SYN/ACK now acknowledges:
// client and server are in sync, conntrack was not.
func (s *tcpState) resync(dir Dir) {
	ld := s.lastDir
	o := &s.seen[ld]
	o.end, o.maxEnd = s.lastEnd, s.lastEnd
	o.maxWin = max(uint32(s.lastWin), 1)
	o.maxAck = s.lastSeq // the ISN, until the client acks (see tcpPeer)
	s.scale[ld] = s.lastWscale
	s.lastFlags &^= tcpExpChallengeAck
	s.flags[ld] = s.lastFlags &^ tcpSimultaneousOpen
	s.seen[dir] = tcpPeer{}
	s.scale[dir] = 0
	s.flags[dir] &= tcpFlagBeLiberal
}

// invalidFINRST is Linux's nf_tcp_handle_invalid: when both sides send
// out-of-window FINs or RSTs, conntrack is out of sync with a connection
// that is probably dead, so an ASSURED entry loses its long timeout.
func (s *tcpState) invalidFINRST(c *Conn, dir Dir, class uint8, cfg *Config, now int64) {
	if st := c.Status(); st&StatusAssured == 0 || st&StatusFixedTO != 0 {
		return
	}
	if class != tcpRstSet && class != tcpFinSet {
		return
	}
	if s.lastDir == dir || (s.lastIndex != tcpFinSet && s.lastIndex != tcpRstSet) {
		s.lastIndex, s.lastDir = class, dir
		return
	}
	left := c.Expires() - now
	unack := int64(cfg.Timeouts.TCPUnack)
	if left >= int64(120*time.Second) && left > unack {
		c.expires.Store(now + unack)
	}
}

// Packet is Linux's nf_conntrack_tcp_packet.
func (*tcpTracker) Packet(c *Conn, p *packet.Parsed, dir Dir, cfg *Config, now int64) (Verdict, time.Duration, bool) {
	class := tcpClass(p.TCPFlags)
	st := c.Status()
	c.mu.Lock()
	s := &c.proto.tcp
	oldState := s.state
	newState := tcpTransitions[dir][class][oldState]
	checkWindow := true

	switch newState {
	case tcpSynSent:
		if oldState < tcpTimeWait {
			break
		}
		// RFC 1122 4.2.2.13: a SYN may reopen a connection in TIME_WAIT;
		// likewise a client that aborted with RST and starts over.
		if (s.flags[0]|s.flags[1])&tcpFlagCloseInit != 0 || (s.lastDir == dir && s.lastIndex == tcpRstSet) {
			c.mu.Unlock()
			return Reopen, 0, false
		}
		fallthrough
	case tcpIgnore:
		if class == tcpSynAckSet && s.lastIndex == tcpSynSet && s.lastDir != dir && p.TCPAck() == s.lastEnd {
			// The SYN/ACK answers a SYN we ignored: take that SYN as the
			// start of the connection.
			oldState, newState = tcpSynSent, tcpSynRecv
			s.resync(dir)
			break
		}
		s.ignore(p, dir, class, oldState)
		c.mu.Unlock()
		return Ignore, 0, false
	case tcpMax:
		c.mu.Unlock()
		return InvalidPacket, 0, false
	case tcpTimeWait:
		if oldState == tcpLastAck && class == tcpAckSet && s.lastDir != dir &&
			s.lastIndex == tcpSynSet && s.lastFlags&tcpExpChallengeAck != 0 {
			// An RFC 5961 challenge ACK to the ignored SYN, not the ACK
			// of the last FIN: no state change.
			s.lastFlags &^= tcpExpChallengeAck
			c.mu.Unlock()
			return Ignore, 0, false
		}
	case tcpSynSent2:
		s.lastFlags |= tcpSimultaneousOpen
	case tcpSynRecv:
		if dir == DirReply && class == tcpAckSet && s.lastFlags&tcpSimultaneousOpen != 0 {
			newState = tcpEstablished
		}
	case tcpClose:
		if class != tcpRstSet {
			break
		}
		switch s.checkRST(p, dir, st) {
		case rstInvalid:
			c.mu.Unlock()
			return InvalidPacket, 0, false
		case rstTrusted:
			checkWindow = false
		case rstKeepState:
			newState = oldState
		}
	}

	if checkWindow {
		if class == tcpSynAckSet && newState == tcpSynRecv && s.flags[dir^1]&tcpFlagMaxAckSet == 0 {
			// The SYN/ACK must acknowledge the SYN it answers: ISN+1, or
			// up to the SYN's data with TCP Fast Open (RFC 7413).
			r := &s.seen[dir^1]
			if a := p.TCPAck(); r.maxWin != 0 && (!after(a, r.maxAck) || after(a, r.end)) && !s.liberal(dir, cfg) {
				c.mu.Unlock()
				return InvalidPacket, 0, false
			}
		}
		switch s.inWindow(c, p, dir, class, cfg) {
		case tcpIgnorePkt:
			c.mu.Unlock()
			return Ignore, 0, false
		case tcpInvalidPkt:
			s.invalidFINRST(c, dir, class, cfg, now)
			c.mu.Unlock()
			return InvalidPacket, 0, false
		}
	}

	s.lastIndex, s.lastDir = class, dir
	s.state = newState
	if oldState != newState && newState == tcpFinWait {
		s.flags[dir] |= tcpFlagCloseInit
	}

	t := &cfg.Timeouts
	timeout := tcpStateTimeout(t, newState)
	retrans, unack := time.Duration(t.TCPRetrans), time.Duration(t.TCPUnack)
	switch {
	case int(s.retrans) >= cfg.TCPMaxRetrans && timeout > retrans:
		timeout = retrans
	case class == tcpRstSet:
		timeout = time.Duration(t.TCPClose)
	case (s.flags[0]|s.flags[1])&tcpFlagDataUnack != 0 && timeout > unack:
		timeout = unack
	case s.lastWin == 0 && timeout > retrans:
		timeout = retrans // zero window: the sender may be gone
	}
	c.mu.Unlock()

	changed := newState != oldState
	if st&StatusSeenReply == 0 {
		switch {
		case class == tcpRstSet:
			// The only answer was a RST: the connection is over (Linux
			// kills it at once).
			return Accept, 0, changed
		case class == tcpSynSet && oldState == tcpSynSent:
			// A retransmitted SYN keeps the old timer, or port reuse
			// could keep an unanswered entry (and its NAT) alive forever.
			return Accept, timeLeft(c, now), changed
		case newState == tcpEstablished && timeout > unack:
			// Picked up mid-stream and not answered yet.
			timeout = unack
		}
	} else if (oldState == tcpSynRecv || oldState == tcpEstablished) && newState == tcpEstablished && c.SetStatus(StatusAssured) {
		changed = true
	}
	return Accept, timeout, changed
}

// canEarlyDrop lets a full table evict an ASSURED connection that is
// already closing (Linux's tcp_can_early_drop): FIN_WAIT, CLOSE_WAIT,
// LAST_ACK, TIME_WAIT and CLOSE.
func (*tcpTracker) canEarlyDrop(c *Conn) bool {
	c.mu.Lock()
	s := c.proto.tcp.state
	c.mu.Unlock()
	return tcpClosing(s)
}

func (*tcpTracker) AppendPorts(b []byte, t *Tuple) []byte { return appendPorts(b, t) }

func (*tcpTracker) AppendState(b []byte, c *Conn) []byte {
	c.mu.Lock()
	s := c.proto.tcp.state
	c.mu.Unlock()
	b = append(b, tcpStateNames[s]...)
	return append(b, ' ')
}
