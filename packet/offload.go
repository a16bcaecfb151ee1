package packet

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// Checksum offload: a TCP segment tungate generated itself (the uplink's
// gVisor stack) may cross the datapath with its checksum not filled in,
// like a segment the kernel hands a NIC with CHECKSUM_PARTIAL. Before it
// leaves, either the device fills it in (a kernel TUN with the virtio
// header: TCPPseudoChecksum and VIRTIO_NET_HDR_F_NEEDS_CSUM) or the
// datapath does (FinishTCPChecksum). Both work on the bytes alone: the
// packet is an IPv4 packet without fragmentation or an IPv6 packet whose
// next header is TCP, which is all such a stack sends.

// tcpOffset returns where the TCP header of the IP packet b begins, or -1
// when b is not a whole, unfragmented TCP packet with a full TCP header.
func tcpOffset(b []byte) int { return tcpOffsetLen(b, len(b)) }

// tcpOffsetLen is tcpOffset for a packet of total bytes of which b holds
// at least the IP and TCP headers.
func tcpOffsetLen(b []byte, total int) int {
	if len(b) < 1 || len(b) > total {
		return -1
	}
	var off int
	switch b[0] >> 4 {
	case 4:
		off = int(b[0]&0x0f) * 4
		if off < 20 || len(b) < off+20 || b[9] != ProtoTCP ||
			int(binary.BigEndian.Uint16(b[2:])) != total ||
			binary.BigEndian.Uint16(b[6:])&0x3fff != 0 {
			return -1
		}
	case 6:
		off = 40
		if len(b) < off+20 || b[6] != ProtoTCP || int(binary.BigEndian.Uint16(b[4:]))+40 != total {
			return -1
		}
	default:
		return -1
	}
	if len(b) < total && len(b) < off+int(b[off+12]>>4)*4 {
		return -1 // the TCP header, options included, is not all in b
	}
	return off
}

// FinishTCPChecksum computes the TCP checksum of the IP packet b in full
// and reports whether b was such a packet (see tcpOffset); b is left alone
// otherwise.
func FinishTCPChecksum(b []byte) bool {
	off := tcpOffset(b)
	if off < 0 {
		return false
	}
	l4 := b[off:]
	l4[16], l4[17] = 0, 0
	v := ^checksum.Checksum(l4, pseudoOf(b, len(l4)))
	binary.BigEndian.PutUint16(l4[16:], v)
	return true
}

// TCPPseudoChecksum writes into the TCP checksum field of the IP packet b
// the sum of its pseudo-header only, which a device offloading the
// checksum completes over the TCP header and payload (Linux's
// CHECKSUM_PARTIAL), and returns where the TCP header begins, -1 (and b
// left alone) when b is not such a packet (see tcpOffset).
func TCPPseudoChecksum(b []byte) int { return TCPPseudoChecksumLen(b, len(b)) }

// TCPPseudoChecksumLen is TCPPseudoChecksum for a packet of total bytes
// of which b holds the first part, its IP and TCP headers whole at least
// (a packet in pieces, see link.LazyReader).
func TCPPseudoChecksumLen(b []byte, total int) int {
	off := tcpOffsetLen(b, total)
	if off < 0 {
		return -1
	}
	binary.BigEndian.PutUint16(b[off+16:], pseudoOf(b, total-off))
	return off
}

func pseudoOf(b []byte, l4len int) uint16 {
	if b[0]>>4 == 4 {
		return PseudoSum(4, b[12:16], b[16:20], ProtoTCP, l4len)
	}
	return PseudoSum(6, b[8:24], b[24:40], ProtoTCP, l4len)
}
