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

// seqAdjust moves the packet's sequence number into the rewritten space
// of its direction, and its ack and SACK blocks back into the original
// space of the other (Linux's nf_ct_seq_adjust). False: malformed TCP
// options, which Linux drops too. The connection is locked.
func seqAdjust(p *packet.Parsed, ext *conntrack.Ext, d conntrack.Dir) bool {
	this, other := &ext.SeqAdj[d], &ext.SeqAdj[1-d]
	seq := p.TCPSeq()
	off := this.OffsetBefore
	if seqAfter(seq, this.CorrectionPos) {
		off = this.OffsetAfter
	}
	if off != 0 {
		p.SetTCPSeq(seq + uint32(off))
	}
	if p.TCPFlags&packet.TCPAck == 0 || (other.OffsetBefore == 0 && other.OffsetAfter == 0) {
		return true
	}
	if ack, orig := p.TCPAck(), ackToOrig(other, p.TCPAck()); orig != ack {
		p.SetTCPAck(orig)
	}
	return sackAdjust(p, other)
}

// sackAdjust maps every SACK block edge back into the original space
// (Linux's nf_ct_sack_adjust).
func sackAdjust(p *packet.Parsed, a *conntrack.SeqAdj) bool {
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
				if o := ackToOrig(a, v); o != v {
					setL4u32(p, optBase+j, o)
				}
			}
		}
		i += l
	}
	return true
}
