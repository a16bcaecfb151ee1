package gateway

import (
	"encoding/binary"
	"time"

	"tungate/packet"
)

// IPv4 option types (RFC 791) a router acts on.
const (
	optEOL       = 0
	optNOP       = 1
	optRR        = 7   // record route
	optTimestamp = 68  // internet timestamp
	optLSRR      = 131 // loose source route
	optSSRR      = 137 // strict source route
)

// optVerdict is what the options of a packet ask for.
type optVerdict uint8

const (
	optForward optVerdict = iota
	// optDrop: drop silently (source routing, as Linux with
	// accept_source_route=0).
	optDrop
	// optParamProblem: drop and answer parameter problem at optPointer.
	optParamProblem
)

// checkOptions4 validates IPv4 options as Linux's ip_options_compile does
// on receive, returning the verdict and, for a parameter problem, the
// offset of the offending byte in the header.
func checkOptions4(p *packet.Parsed) (optVerdict, int) {
	hl := p.IPHeaderLen()
	if hl <= 20 {
		return optForward, 0
	}
	b := p.Bytes()[:hl]
	for off := 20; off < hl; {
		t := b[off]
		if t == optEOL {
			break
		}
		if t == optNOP {
			off++
			continue
		}
		if off+1 >= hl {
			return optParamProblem, off
		}
		l := int(b[off+1])
		if l < 2 || off+l > hl {
			return optParamProblem, off
		}
		switch t {
		case optLSRR, optSSRR:
			return optDrop, 0
		case optRR:
			if l < 3 {
				return optParamProblem, off + 1
			}
			if b[off+2] < 4 {
				return optParamProblem, off + 2
			}
		case optTimestamp:
			if l < 4 {
				return optParamProblem, off + 1
			}
			if b[off+2] < 5 {
				return optParamProblem, off + 2
			}
			switch b[off+3] & 0xf {
			case 0, 1, 3:
			default:
				return optParamProblem, off + 3
			}
		}
		off += l
	}
	return optForward, 0
}

// forwardOptions4 fills the record-route and timestamp options with the
// outgoing address, as Linux's ip_forward_options does, and fixes the
// header checksum. The options were validated by checkOptions4.
func forwardOptions4(p *packet.Parsed, out packet.Addr) {
	hl := p.IPHeaderLen()
	if hl <= 20 {
		return
	}
	b := p.Bytes()
	changed := false
	for off := 20; off < hl; {
		t := b[off]
		if t == optEOL {
			break
		}
		if t == optNOP {
			off++
			continue
		}
		l := int(b[off+1])
		ptr := int(b[off+2])
		switch t {
		case optRR:
			if ptr+3 <= l {
				copy(b[off+ptr-1:], out[:4])
				b[off+2] += 4
				changed = true
			}
		case optTimestamp:
			flag := b[off+3] & 0xf
			ts := msSinceMidnightUTC()
			switch {
			case flag == 0 && ptr+3 <= l:
				binary.BigEndian.PutUint32(b[off+ptr-1:], ts)
				b[off+2] += 4
				changed = true
			case flag == 1 && ptr+7 <= l:
				copy(b[off+ptr-1:], out[:4])
				binary.BigEndian.PutUint32(b[off+ptr+3:], ts)
				b[off+2] += 8
				changed = true
			case flag == 3 && ptr+7 <= l:
				if [4]byte(b[off+ptr-1:off+ptr+3]) == [4]byte(out[:4]) {
					binary.BigEndian.PutUint32(b[off+ptr+3:], ts)
					b[off+2] += 8
					changed = true
				}
			case ptr > l:
				// Full: count the overflow (upper four bits), saturating.
				if b[off+3]>>4 < 15 {
					b[off+3] += 0x10
					changed = true
				}
			}
		}
		off += l
	}
	if changed {
		packet.SetIPv4Checksum(b[:hl])
	}
}

func msSinceMidnightUTC() uint32 {
	now := time.Now().UTC()
	y, m, d := now.Date()
	return uint32(now.Sub(time.Date(y, m, d, 0, 0, 0, 0, time.UTC)) / time.Millisecond)
}

// checkHopByHop6 runs the hop-by-hop options every router must process
// (RFC 8200 section 4.2): an unknown option's two high bits say skip (00),
// discard (01), discard with parameter problem code 2 (10), or the same
// unless the destination is multicast (11). Malformed TLVs are dropped, as
// Linux's ip6_parse_tlv does. It returns the verdict, the pointer and the
// parameter problem code.
func checkHopByHop6(p *packet.Parsed) (optVerdict, int, uint8) {
	b := p.Bytes()
	if b[6] != 0 || len(b) < 48 {
		return optForward, 0, 0
	}
	end := 40 + (int(b[41])+1)*8
	if end > len(b) {
		return optDrop, 0, 0
	}
	pad := 0
	for off := 42; off < end; {
		t := b[off]
		if t == 0 { // Pad1
			off++
			if pad++; pad > 7 {
				return optDrop, 0, 0
			}
			continue
		}
		if off+1 >= end {
			return optDrop, 0, 0
		}
		l := int(b[off+1])
		if off+2+l > end {
			return optDrop, 0, 0
		}
		switch t {
		case 1: // PadN
			if pad += l + 2; pad > 7 {
				return optDrop, 0, 0
			}
		case 5, 7, 0x31: // router alert, CALIPSO, IOAM: known, nothing to do
			pad = 0
		case 0xc2: // jumbo payload: only for payload length 0
			if binary.BigEndian.Uint16(b[4:]) != 0 {
				return optParamProblem, off + 2, 0
			}
			pad = 0
		default:
			switch t >> 6 {
			case 1:
				return optDrop, 0, 0
			case 2:
				return optParamProblem, off, 2
			case 3:
				if p.Dst[0] == 0xff {
					return optDrop, 0, 0
				}
				return optParamProblem, off, 2
			}
			pad = 0
		}
		off += 2 + l
	}
	return optForward, 0, 0
}
