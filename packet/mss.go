package packet

import "encoding/binary"

// tcpOptMSS is the kind of TCP's maximum segment size option (RFC 9293).
const tcpOptMSS = 2

// ClampTCPMSS lowers the MSS option of a TCP SYN to max when it is larger,
// in place, fixing the checksum incrementally (RFC 1624), and reports
// whether it changed the packet. A SYN without the option is left alone:
// its peer assumes 536 (IPv4) or 1220 (IPv6), below any MTU. Malformed
// options end the walk without a change.
func (p *Parsed) ClampTCPMSS(max uint16) bool {
	if !p.HasL4 || p.Proto != ProtoTCP || p.TCPFlags&TCPSyn == 0 {
		return false
	}
	opts := p.TCPOptions()
	for i := 0; i < len(opts); {
		switch opts[i] {
		case 0: // end of options
			return false
		case 1: // no-op
			i++
			continue
		}
		if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
			return false
		}
		if opts[i] == tcpOptMSS && opts[i+1] == 4 {
			old := binary.BigEndian.Uint16(opts[i+2:])
			if old <= max {
				return false
			}
			binary.BigEndian.PutUint16(opts[i+2:], max)
			// The checksum sums 16-bit words from the start of the TCP
			// header; a value at an odd offset straddles two words, which
			// the byte-swapped values account for.
			o, n := old, max
			if i&1 != 0 { // the options start 20 bytes in: even
				o, n = o<<8|o>>8, n<<8|n>>8
			}
			p.fixL4Csum16(o, n)
			return true
		}
		i += int(opts[i+1])
	}
	return false
}
