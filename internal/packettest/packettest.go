// Package packettest builds IPv4 and IPv6 packets for tests: one builder
// that every package's tests use, with every length and checksum computed
// by its own RFC 1071 code (Sum16), not package packet's, so tests compare
// two independent implementations. It imports nothing of tungate, so
// packet's own tests can use it.
//
// Build takes a description of the IP layer (IP), a transport header (TCP,
// UDP, ICMP, or Raw bytes) and a payload; the fields of IP can also make
// packets malformed on purpose (bad checksum, wrong lengths, odd
// extension header chains, truncation).
package packettest

import (
	"bytes"
	"encoding/binary"
	"net/netip"
)

// Protocol numbers the builder needs (package packet has the same).
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoAH     = 51
	protoICMPv6 = 58
	protoNone   = 59
)

// IP describes the IP layer of a packet to build. The zero values are the
// ordinary choices (TTL 64, computed lengths and checksums).
type IP struct {
	V6       bool
	Src, Dst string
	TTL      uint8 // 0: 64
	TOS      uint8 // IPv4 TOS or IPv6 traffic class
	ID       uint32
	DF, MF   bool
	FragOff  int     // bytes; with V6, adds a fragment header (see Frag)
	Frag     bool    // IPv6: add a fragment header even with FragOff 0 and !MF
	Opts     []byte  // IPv4 options, padded to a multiple of 4
	Ext      []Ext   // IPv6 extension headers before the fragment header
	ExtAfter []Ext   // IPv6 extension headers after the fragment header
	Proto    uint8   // overrides the transport's protocol number
	TotalLen int     // overrides the IPv4 total length / IPv6 payload length (+40)
	BadCsum  bool    // IPv4: corrupt the header checksum
	Version  uint8   // overrides the version nibble
	IHL      int     // overrides the IPv4 IHL (bytes)
	HdrOnly  bool    // emit nothing after the IP headers
	Trunc    int     // cut the result to this many bytes (0: none)
	ExtRaw   []byte  // IPv6: raw bytes appended after ext headers (for malformed chains)
	ExtFirst uint8   // IPv6: next header of the fixed header when ExtRaw is used
	L4Csum   *uint16 // force a transport checksum value
	PadAfter []byte  // bytes after the IP length (link padding)
	NHOver   *uint8  // overrides the next header naming the transport
}

// Ext is an IPv6 extension header: Type 0, 43, 60 or 51 (AH). Body is
// padded so the header's length is a multiple of 8.
type Ext struct {
	Type uint8
	Body []byte
}

// L4 builds a transport header.
type L4 interface {
	// ProtoNum is the protocol number (ICMP's depends on the family).
	ProtoNum(v6 bool) uint8
	// Put returns the header bytes with the checksum field zero and the
	// offset of the checksum field (-1: none).
	Put(payloadLen int) (hdr []byte, csumOff int)
}

// TCP is a TCP header; Opts are padded to a multiple of 4.
type TCP struct {
	SPort, DPort uint16
	Seq, Ack     uint32
	Flags        uint8
	Win          uint16
	Opts         []byte
}

// ProtoNum implements L4.
func (h TCP) ProtoNum(bool) uint8 { return protoTCP }

// Put implements L4.
func (h TCP) Put(int) ([]byte, int) {
	opts := pad(h.Opts, 4)
	b := make([]byte, 20+len(opts))
	binary.BigEndian.PutUint16(b[0:], h.SPort)
	binary.BigEndian.PutUint16(b[2:], h.DPort)
	binary.BigEndian.PutUint32(b[4:], h.Seq)
	binary.BigEndian.PutUint32(b[8:], h.Ack)
	b[12] = uint8(len(b)/4) << 4
	b[13] = h.Flags
	binary.BigEndian.PutUint16(b[14:], h.Win)
	copy(b[20:], opts)
	return b, 16
}

// UDP is a UDP header.
type UDP struct {
	SPort, DPort uint16
	NoCsum       bool // checksum zero ("none")
	Length       int  // overrides the UDP length
}

// ProtoNum implements L4.
func (h UDP) ProtoNum(bool) uint8 { return protoUDP }

// Put implements L4.
func (h UDP) Put(n int) ([]byte, int) {
	b := make([]byte, 8)
	binary.BigEndian.PutUint16(b[0:], h.SPort)
	binary.BigEndian.PutUint16(b[2:], h.DPort)
	l := 8 + n
	if h.Length != 0 {
		l = h.Length
	}
	binary.BigEndian.PutUint16(b[4:], uint16(l))
	if h.NoCsum {
		return b, -1
	}
	return b, 6
}

// ICMP is an ICMP or ICMPv6 header (by the family); Rest is its second
// word (echo identifier and sequence, MTU, pointer).
type ICMP struct {
	Type, Code uint8
	Rest       uint32
}

// ProtoNum implements L4.
func (h ICMP) ProtoNum(v6 bool) uint8 {
	if v6 {
		return protoICMPv6
	}
	return protoICMP
}

// Put implements L4.
func (h ICMP) Put(int) ([]byte, int) {
	b := make([]byte, 8)
	b[0], b[1] = h.Type, h.Code
	binary.BigEndian.PutUint32(b[4:], h.Rest)
	return b, 2
}

// Raw is a transport the builder does not checksum: B is sent as is.
type Raw struct {
	Proto uint8
	B     []byte
}

// ProtoNum implements L4.
func (h Raw) ProtoNum(bool) uint8 { return h.Proto }

// Put implements L4.
func (h Raw) Put(int) ([]byte, int) { return bytes.Clone(h.B), -1 }

func pad(b []byte, m int) []byte {
	if len(b)%m == 0 {
		return b
	}
	return append(bytes.Clone(b), make([]byte, m-len(b)%m)...)
}

// Pad returns b padded with zeros to a multiple of m bytes.
func Pad(b []byte, m int) []byte { return pad(b, m) }

// Sum16 is an independent RFC 1071 sum of the concatenation of parts.
func Sum16(parts ...[]byte) uint16 {
	var all []byte
	for _, p := range parts {
		all = append(all, p...)
	}
	var s uint32
	for i := 0; i+1 < len(all); i += 2 {
		s += uint32(all[i])<<8 | uint32(all[i+1])
	}
	if len(all)%2 == 1 {
		s += uint32(all[len(all)-1]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// Pseudo returns the TCP/UDP/ICMPv6 pseudo-header bytes for a transport
// of length l.
func Pseudo(v6 bool, src, dst []byte, proto uint8, l int) []byte {
	if v6 {
		b := make([]byte, 40)
		copy(b, src)
		copy(b[16:], dst)
		binary.BigEndian.PutUint32(b[32:], uint32(l))
		b[39] = proto
		return b
	}
	b := make([]byte, 12)
	copy(b, src)
	copy(b[4:], dst)
	b[9] = proto
	binary.BigEndian.PutUint16(b[10:], uint16(l))
	return b
}

// Build returns the packet described by ip, t (nil: no transport, next
// header 59) and payload.
func Build(ip IP, t L4, payload []byte) []byte {
	var l4b []byte
	csumOff := -1
	proto := uint8(protoNone)
	if t != nil {
		l4b, csumOff = t.Put(len(payload))
		proto = t.ProtoNum(ip.V6)
	}
	if ip.Proto != 0 {
		proto = ip.Proto
	}
	seg := append(l4b, payload...)
	src, dst := netip.MustParseAddr(ip.Src), netip.MustParseAddr(ip.Dst)
	ttl := ip.TTL
	if ttl == 0 {
		ttl = 64
	}
	if csumOff >= 0 && ip.FragOff == 0 {
		var s uint16
		if proto != protoICMP {
			s = Sum16(Pseudo(ip.V6, src.AsSlice(), dst.AsSlice(), proto, len(seg)), seg)
		} else {
			s = Sum16(seg)
		}
		c := ^s
		if c == 0 && proto == protoUDP {
			c = 0xffff
		}
		if ip.L4Csum != nil {
			c = *ip.L4Csum
		}
		binary.BigEndian.PutUint16(seg[csumOff:], c)
	}
	if ip.HdrOnly {
		seg = nil
	}
	var b []byte
	if !ip.V6 {
		opts := pad(ip.Opts, 4)
		hl := 20 + len(opts)
		b = make([]byte, hl, hl+len(seg))
		ihl := hl
		if ip.IHL != 0 {
			ihl = ip.IHL
		}
		b[0] = 0x40 | uint8(ihl/4)
		b[1] = ip.TOS
		tot := hl + len(seg)
		if ip.TotalLen != 0 {
			tot = ip.TotalLen
		}
		binary.BigEndian.PutUint16(b[2:], uint16(tot))
		binary.BigEndian.PutUint16(b[4:], uint16(ip.ID))
		ff := uint16(ip.FragOff / 8)
		if ip.DF {
			ff |= 0x4000
		}
		if ip.MF {
			ff |= 0x2000
		}
		binary.BigEndian.PutUint16(b[6:], ff)
		b[8] = ttl
		b[9] = proto
		copy(b[12:], src.AsSlice())
		copy(b[16:], dst.AsSlice())
		copy(b[20:], opts)
		c := ^Sum16(b[:hl])
		if ip.BadCsum {
			c ^= 0x5555
		}
		binary.BigEndian.PutUint16(b[10:], c)
		b = append(b, seg...)
	} else {
		b = make([]byte, 40)
		b[0] = 0x60 | ip.TOS>>4
		b[1] = ip.TOS << 4
		b[7] = ttl
		copy(b[8:], src.AsSlice())
		copy(b[24:], dst.AsSlice())
		// exts[0] stands for the fixed header's next header field; nh is
		// the index in exts of the field naming the next header to add.
		exts := []byte{0}
		nh := 0
		addExt := func(e Ext) {
			exts[nh] = e.Type
			body := pad(append([]byte{0, 0}, e.Body...), 8) // 8-aligned as IPv6 wants
			if e.Type == protoAH {
				body[1] = uint8(len(body)/4 - 2)
			} else {
				body[1] = uint8(len(body)/8 - 1)
			}
			nh = len(exts)
			exts = append(exts, body...)
		}
		for _, e := range ip.Ext {
			addExt(e)
		}
		if ip.FragOff != 0 || ip.MF || ip.Frag {
			exts[nh] = 44
			fh := make([]byte, 8)
			fo := uint16(ip.FragOff) &^ 7
			if ip.MF {
				fo |= 1
			}
			binary.BigEndian.PutUint16(fh[2:], fo)
			binary.BigEndian.PutUint32(fh[4:], ip.ID)
			nh = len(exts)
			exts = append(exts, fh...)
		}
		for _, e := range ip.ExtAfter {
			addExt(e)
		}
		exts[nh] = proto
		if ip.NHOver != nil {
			exts[nh] = *ip.NHOver
		}
		b[6] = exts[0]
		b = append(b, exts[1:]...)
		b = append(b, ip.ExtRaw...)
		if ip.ExtRaw != nil {
			b[6] = ip.ExtFirst
		}
		b = append(b, seg...)
		pl := len(b) - 40
		if ip.TotalLen != 0 {
			pl = ip.TotalLen - 40
		}
		binary.BigEndian.PutUint16(b[4:], uint16(pl))
	}
	if ip.Version != 0 {
		b[0] = b[0]&0x0f | ip.Version<<4
	}
	b = append(b, ip.PadAfter...)
	if ip.Trunc != 0 {
		b = b[:ip.Trunc]
	}
	return b
}

// Bytes is a transport given whole as bytes, whose checksum field at
// CsumOff (-1: none) the builder fills like TCP's or UDP's (it must be
// zero): for tests that lay out a header themselves.
type Bytes struct {
	Proto   uint8
	B       []byte
	CsumOff int
}

// ProtoNum implements L4.
func (h Bytes) ProtoNum(bool) uint8 { return h.Proto }

// Put implements L4.
func (h Bytes) Put(int) ([]byte, int) { return bytes.Clone(h.B), h.CsumOff }
