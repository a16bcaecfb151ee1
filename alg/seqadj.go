package alg

import (
	"encoding/binary"

	"tungate/conntrack"
	"tungate/packet"
)

// seqBefore and seqAfter compare sequence numbers modulo 2^32 (RFC 9293
// section 3.4).
func seqBefore(a, b uint32) bool { return int32(a-b) < 0 }
func seqAfter(a, b uint32) bool  { return int32(b-a) < 0 }

// setSeqAdj records that the sender in direction d grew its stream by off
// bytes at original sequence number pos (Linux's nf_ct_seqadj_set). One
// correction position per direction is kept, as Linux does: packets after
// it get OffsetAfter, others OffsetBefore. The connection is locked.
func setSeqAdj(c *conntrack.Conn, ext *conntrack.Ext, d conntrack.Dir, pos uint32, off int) {
	c.SetStatus(conntrack.StatusSeqAdjust)
	a := &ext.SeqAdj[d]
	if a.OffsetBefore == a.OffsetAfter || seqBefore(a.CorrectionPos, pos) {
		a.CorrectionPos = pos
		a.OffsetBefore = a.OffsetAfter
		a.OffsetAfter += int32(off)
	}
}

// ackToOrig maps a sequence number the receiver uses (an ack or a SACK
// edge, in the rewritten space) back to the sender's original space.
func ackToOrig(a *conntrack.SeqAdj, v uint32) uint32 {
	off := a.OffsetBefore
	if seqAfter(v-uint32(a.OffsetBefore), a.CorrectionPos) {
		off = a.OffsetAfter
	}
	return v - uint32(off)
}

// seqMap maps one direction's sequence numbers between the sender's
// original space and the rewritten space its receiver sees. Linux keeps
// only the last correction position, which is exact just for numbers
// after the previous rewrite; the latest rewrites (kept for replay anyway)
// make the map exact back to the oldest of them, so an old SACK edge or a
// retransmission two rewrites back maps right too. Without them it falls
// back to Linux's rule.
type seqMap struct {
	a *conntrack.SeqAdj
	s *streamDir // nil when the helper state is gone
}

// offset returns how far rewrites moved original sequence number seq:
// all rewrites starting before it count.
func (m seqMap) offset(seq uint32) int32 {
	if m.s == nil || len(m.s.rewrites) == 0 {
		if seqAfter(seq, m.a.CorrectionPos) {
			return m.a.OffsetAfter
		}
		return m.a.OffsetBefore
	}
	off := m.a.OffsetAfter
	for i := len(m.s.rewrites) - 1; i >= 0; i-- {
		r := &m.s.rewrites[i]
		if seqBefore(r.seq, seq) {
			break
		}
		off -= int32(len(r.new) - len(r.old))
	}
	return off
}

// toOrig maps a number the receiver uses (an ack or a SACK edge) back to
// the original space: rewrites whose new bytes end at or before it count.
func (m seqMap) toOrig(v uint32) uint32 {
	if m.s == nil || len(m.s.rewrites) == 0 {
		return ackToOrig(m.a, v)
	}
	off := m.a.OffsetAfter
	for i := len(m.s.rewrites) - 1; i >= 0; i-- {
		r := &m.s.rewrites[i]
		before := off - int32(len(r.new)-len(r.old))
		if !seqBefore(v, r.seq+uint32(before)+uint32(len(r.new))) {
			break
		}
		off = before
	}
	return v - uint32(off)
}

// seqAdjust moves the packet's sequence number into the rewritten space
// of its direction, and its ack and SACK blocks back into the original
// space of the other (Linux's nf_ct_seq_adjust). False: malformed TCP
// options, which Linux drops too. The connection is locked.
func seqAdjust(p *packet.Parsed, ext *conntrack.Ext, d conntrack.Dir) bool {
	this, other := seqMap{a: &ext.SeqAdj[d]}, seqMap{a: &ext.SeqAdj[1-d]}
	if cs, ok := ext.HelperData.(*connState); ok {
		this.s, other.s = &cs.tcp[d], &cs.tcp[1-d]
	}
	seq := p.TCPSeq()
	if off := this.offset(seq); off != 0 {
		p.SetTCPSeq(seq + uint32(off))
	}
	if p.TCPFlags&packet.TCPAck == 0 || (other.a.OffsetBefore == 0 && other.a.OffsetAfter == 0) {
		return true
	}
	if ack, orig := p.TCPAck(), other.toOrig(p.TCPAck()); orig != ack {
		p.SetTCPAck(orig)
	}
	return sackAdjust(p, other)
}

// sackAdjust maps every SACK block edge back into the original space
// (Linux's nf_ct_sack_adjust).
func sackAdjust(p *packet.Parsed, m seqMap) bool {
	opts := p.TCPOptions()
	const optBase = 20 // options start after the fixed TCP header
	for i := 0; i < len(opts); {
		switch opts[i] {
		case 0: // end of options
			return true
		case 1: // no-op
			i++
			continue
		}
		if i+1 >= len(opts) {
			return false
		}
		l := int(opts[i+1])
		if l < 2 || i+l > len(opts) {
			return false
		}
		if opts[i] == 5 && l >= 10 && (l-2)%8 == 0 { // SACK (RFC 2018)
			for j := i + 2; j < i+l; j += 4 {
				v := binary.BigEndian.Uint32(opts[j:])
				if o := m.toOrig(v); o != v {
					setL4u32(p, optBase+j, o)
				}
			}
		}
		i += l
	}
	return true
}

// setL4u32 writes v at offset at of the TCP header (SACK edges, which
// need not be 16-bit aligned) with an incremental checksum update over
// the aligned words it touches (RFC 1624).
func setL4u32(p *packet.Parsed, at int, v uint32) {
	l4 := p.L4()
	lo, hi := at&^1, (at+5)&^1
	var old [6]byte
	copy(old[:], l4[lo:hi])
	binary.BigEndian.PutUint32(l4[at:], v)
	delta := packet.ChecksumDelta(old[:hi-lo], l4[lo:hi])
	binary.BigEndian.PutUint16(l4[16:], packet.UpdateChecksum(binary.BigEndian.Uint16(l4[16:]), delta))
}
