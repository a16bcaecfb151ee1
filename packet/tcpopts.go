package packet

import (
	"encoding/binary"
	"errors"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// TCP option kinds (RFC 9293, RFC 7323, RFC 2018).
const (
	tcpOptEnd      = 0
	tcpOptNOP      = 1
	tcpOptWScale   = 3
	tcpOptSACKPerm = 4
	tcpOptTS       = 8
)

// NoWScale is TCPSynOptions.WScale when the window scale option is absent.
const NoWScale = 0xf

// TCPSynOptions are the options of a handshake segment a SYN proxy reads
// from a client's SYN and writes into the segments it makes.
type TCPSynOptions struct {
	// MSS is the maximum segment size, 0 when absent.
	MSS uint16
	// WScale is the window shift, NoWScale when absent.
	WScale uint8
	// SACKPerm: SACK permitted (RFC 2018).
	SACKPerm bool
	// TS: a timestamps option (RFC 7323) with TSval and TSecr.
	TS           bool
	TSval, TSecr uint32
}

// ErrTCPOptions is returned for TCP options that run past their header.
var ErrTCPOptions = errors.New("malformed TCP options")

// TCPSynOptions reads the handshake options of a TCP segment. Malformed
// options (a length running past the header) give ErrTCPOptions, as Linux's
// tcp_parse_options stops there too; unknown options are skipped.
func (p *Parsed) TCPSynOptions() (TCPSynOptions, error) {
	o := TCPSynOptions{WScale: NoWScale}
	if p.Proto != ProtoTCP || !p.HasL4 {
		return o, ErrTCPOptions
	}
	opts := p.TCPOptions()
	for i := 0; i < len(opts); {
		switch opts[i] {
		case tcpOptEnd:
			return o, nil
		case tcpOptNOP:
			i++
			continue
		}
		if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
			return o, ErrTCPOptions
		}
		l := int(opts[i+1])
		switch {
		case opts[i] == tcpOptMSS && l == 4:
			o.MSS = binary.BigEndian.Uint16(opts[i+2:])
		case opts[i] == tcpOptWScale && l == 3:
			o.WScale = min(opts[i+2], 14) // RFC 7323 2.3: larger means 14
		case opts[i] == tcpOptSACKPerm && l == 2:
			o.SACKPerm = true
		case opts[i] == tcpOptTS && l == 10:
			o.TS = true
			o.TSval = binary.BigEndian.Uint32(opts[i+2:])
			o.TSecr = binary.BigEndian.Uint32(opts[i+6:])
		}
		i += l
	}
	return o, nil
}

// tsOffset returns the offset in the TCP header of the timestamps
// option's TSval (TSecr follows it), or -1 when there is none.
func (p *Parsed) tsOffset() int {
	opts := p.TCPOptions()
	for i := 0; i < len(opts); {
		switch opts[i] {
		case tcpOptEnd:
			return -1
		case tcpOptNOP:
			i++
			continue
		}
		if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
			return -1
		}
		if opts[i] == tcpOptTS && opts[i+1] == 10 {
			return 20 + i + 2
		}
		i += int(opts[i+1])
	}
	return -1
}

// AdjustTCPTimestamps adds valOff to the segment's TSval and subtracts
// ecrOff from its TSecr (either may be 0), fixing the checksum; false
// when the segment has no timestamps option.
func (p *Parsed) AdjustTCPTimestamps(valOff, ecrOff uint32) bool {
	at := p.tsOffset()
	if at < 0 {
		return false
	}
	l4 := p.b[p.L4Off:]
	if valOff != 0 {
		p.setTCPu32(at, binary.BigEndian.Uint32(l4[at:])+valOff)
	}
	if ecrOff != 0 {
		p.setTCPu32(at+4, binary.BigEndian.Uint32(l4[at+4:])-ecrOff)
	}
	return true
}

// setTCPu32 writes v at offset at of the TCP header with the checksum
// fixed incrementally (RFC 1624). At an odd offset each half of the value
// straddles two of the checksum's 16-bit words, and its contribution to
// the sum is its bytes swapped.
func (p *Parsed) setTCPu32(at int, v uint32) {
	if at&1 == 0 {
		p.setL4u32(at, v)
		return
	}
	o := p.L4Off + at
	old := binary.BigEndian.Uint32(p.b[o:])
	binary.BigEndian.PutUint32(p.b[o:], v)
	sw := func(x uint16) uint16 { return x<<8 | x>>8 }
	p.fixL4Csum16(sw(uint16(old>>16)), sw(uint16(v>>16)))
	p.fixL4Csum16(sw(uint16(old)), sw(uint16(v)))
}

// SetTCPWindow rewrites the window with checksum fix-up.
func (p *Parsed) SetTCPWindow(v uint16) {
	if p.Proto != ProtoTCP || !p.HasL4 || len(p.b) < p.L4Off+16 {
		return
	}
	o := p.L4Off + 14
	old := binary.BigEndian.Uint16(p.b[o:])
	binary.BigEndian.PutUint16(p.b[o:], v)
	p.fixL4Csum16(old, v)
}

// TCPSegment describes a TCP segment the gateway makes (a SYN proxy's
// handshake, a reset).
type TCPSegment struct {
	Version          uint8
	Src, Dst         Addr
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            uint8
	Window           uint16
	// Opts are written as on a SYN when Flags has TCPSyn (MSS, SACK
	// permitted, timestamps, window scale, each when set); otherwise only
	// the timestamps, when set.
	Opts TCPSynOptions
}

// BuildTCPSegment writes s as a packet into dst (IPv4 without options, ID
// zero with DF as Linux's synproxy and nf_send_reset send; or IPv6; TTL / hop limit
// DefaultTTL) with both checksums, and returns its length.
func BuildTCPSegment(dst []byte, s *TCPSegment) (int, error) {
	ipLen := 20
	switch s.Version {
	case 4:
	case 6:
		ipLen = 40
	default:
		return 0, ErrVersion
	}
	syn := s.Flags&TCPSyn != 0
	var opt [40]byte
	no := 0
	if syn && s.Opts.MSS != 0 {
		opt[0], opt[1] = tcpOptMSS, 4
		binary.BigEndian.PutUint16(opt[2:], s.Opts.MSS)
		no = 4
	}
	// The layouts Linux's tcp_options_write uses, so every field is
	// aligned: SACK permitted shares the timestamps' padding.
	switch {
	case s.Opts.TS:
		if syn && s.Opts.SACKPerm {
			opt[no], opt[no+1] = tcpOptSACKPerm, 2
		} else {
			opt[no], opt[no+1] = tcpOptNOP, tcpOptNOP
		}
		opt[no+2], opt[no+3] = tcpOptTS, 10
		binary.BigEndian.PutUint32(opt[no+4:], s.Opts.TSval)
		binary.BigEndian.PutUint32(opt[no+8:], s.Opts.TSecr)
		no += 12
	case syn && s.Opts.SACKPerm:
		opt[no], opt[no+1], opt[no+2], opt[no+3] = tcpOptNOP, tcpOptNOP, tcpOptSACKPerm, 2
		no += 4
	}
	if syn && s.Opts.WScale != NoWScale {
		opt[no], opt[no+1], opt[no+2], opt[no+3] = tcpOptNOP, tcpOptWScale, 3, min(s.Opts.WScale, 14)
		no += 4
	}
	tl := 20 + no
	n := ipLen + tl
	if len(dst) < n {
		return 0, ErrNoRoom
	}
	b := dst[:n]
	if s.Version == 4 {
		b[0], b[1] = 0x45, 0
		binary.BigEndian.PutUint16(b[2:], uint16(n))
		b[4], b[5], b[6], b[7] = 0, 0, 0x40, 0
		b[8] = DefaultTTL
		b[9] = ProtoTCP
		b[10], b[11] = 0, 0
		copy(b[12:16], s.Src[:4])
		copy(b[16:20], s.Dst[:4])
		SetIPv4Checksum(b[:20])
	} else {
		writeIPv6Header(b, tl, ProtoTCP, &s.Src, &s.Dst)
	}
	t := b[ipLen:]
	binary.BigEndian.PutUint16(t[0:], s.SrcPort)
	binary.BigEndian.PutUint16(t[2:], s.DstPort)
	binary.BigEndian.PutUint32(t[4:], s.Seq)
	binary.BigEndian.PutUint32(t[8:], s.Ack)
	t[12] = byte(tl/4) << 4
	t[13] = s.Flags
	binary.BigEndian.PutUint16(t[14:], s.Window)
	t[16], t[17], t[18], t[19] = 0, 0, 0, 0
	copy(t[20:], opt[:no])
	sum := PseudoSum(s.Version, s.Src[:], s.Dst[:], ProtoTCP, tl)
	binary.BigEndian.PutUint16(t[16:], ^checksum.Checksum(t, sum))
	return n, nil
}
