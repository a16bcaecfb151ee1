package packet

import (
	"encoding/binary"
	"hash/crc32"
)

// SCTPHeaderLen is the length of the SCTP common header (RFC 9260 3.1):
// source port, destination port, verification tag, checksum. Chunks follow.
const SCTPHeaderLen = 12

// SCTP chunk types (RFC 9260 3.2), the ones connection tracking reads.
const (
	SCTPChunkData             = 0
	SCTPChunkInit             = 1
	SCTPChunkInitAck          = 2
	SCTPChunkSACK             = 3
	SCTPChunkHeartbeat        = 4
	SCTPChunkHeartbeatAck     = 5
	SCTPChunkAbort            = 6
	SCTPChunkShutdown         = 7
	SCTPChunkShutdownAck      = 8
	SCTPChunkError            = 9
	SCTPChunkCookieEcho       = 10
	SCTPChunkCookieAck        = 11
	SCTPChunkShutdownComplete = 14
)

// SCTPChunkFlagT is the T bit of ABORT and SHUTDOWN COMPLETE (RFC 9260
// 3.3.7, 3.3.13): the sender had no association and reflected the
// verification tag of the packet it answers instead of using its own.
const SCTPChunkFlagT = 0x01

// castagnoli is the CRC32c table; hash/crc32 recognises it and uses the
// CPU's CRC32 instruction where there is one.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var sctpZeroSum [4]byte

// SCTPChecksum returns the CRC32c of an SCTP packet (common header and
// chunks) computed with its checksum field taken as zero, as RFC 9260
// Appendix A defines it. On the wire the value is stored little-endian
// (Appendix A's reflected bit order): binary.LittleEndian.PutUint32(b[8:],
// SCTPChecksum(b)). It returns 0 for fewer than SCTPHeaderLen bytes.
func SCTPChecksum(b []byte) uint32 {
	if len(b) < SCTPHeaderLen {
		return 0
	}
	c := crc32.Update(0, castagnoli, b[:8])
	c = crc32.Update(c, castagnoli, sctpZeroSum[:])
	return crc32.Update(c, castagnoli, b[SCTPHeaderLen:])
}

// SCTPVerificationTag returns the verification tag of an SCTP packet, 0 when
// the packet is not SCTP or the tag is cut off.
func (p *Parsed) SCTPVerificationTag() uint32 {
	if p.Proto != ProtoSCTP || !p.HasL4 {
		return 0
	}
	return p.l4u32(4)
}

// sctpChecksumValid verifies the CRC32c over the SCTP packet; a quote cut
// inside the common header is not valid.
func (p *Parsed) sctpChecksumValid() bool {
	l4 := p.b[p.L4Off:]
	if len(l4) < SCTPHeaderLen {
		return false
	}
	return binary.LittleEndian.Uint32(l4[8:]) == SCTPChecksum(l4)
}

// setSCTPPort rewrites a port and recomputes the CRC32c over the whole SCTP
// packet: unlike the Internet checksum, a CRC has no cheap incremental
// update. This is Linux's sctp_manip_pkt, byte for byte: a quote inside an
// ICMP error that holds the whole common header gets a CRC over the quoted
// bytes; a shorter quote only the port. (A fragment's CRC cannot be made
// right, as it covers bytes that are not here; the gateway reassembles
// before NAT, as Linux does.)
func (p *Parsed) setSCTPPort(at int, field *uint16, v uint16) {
	if !p.HasL4 || *field == v {
		return
	}
	l4 := p.b[p.L4Off:]
	binary.BigEndian.PutUint16(l4[at:], v)
	*field = v
	if len(l4) >= SCTPHeaderLen {
		binary.LittleEndian.PutUint32(l4[8:], SCTPChecksum(l4))
	}
}
