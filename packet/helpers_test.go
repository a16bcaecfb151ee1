package packet

// Composable checkers, in the spirit of gVisor's checker package, over
// packets from the shared test builder (internal/packettest), which
// computes every length and checksum with its own RFC 1071 code, not the
// package's, so tests compare two independent implementations.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"tungate/internal/packettest"
)

// ipHdr describes the IP layer of a packet to build.
type ipHdr struct {
	v6       bool
	src, dst string
	ttl      uint8 // 0: 64
	tos      uint8 // IPv4 TOS or IPv6 traffic class
	id       uint32
	df, mf   bool
	fragOff  int      // bytes; with v6, adds a fragment header (see frag)
	frag     bool     // IPv6: add a fragment header even with fragOff 0 and !mf
	opts     []byte   // IPv4 options, padded to a multiple of 4
	ext      []extHdr // IPv6 extension headers before the fragment header
	extAfter []extHdr // IPv6 extension headers after the fragment header
	proto    uint8    // overrides the transport's protocol number
	totalLen int      // overrides the IPv4 total length / IPv6 payload length (+40)
	badCsum  bool     // IPv4: corrupt the header checksum
	version  uint8    // overrides the version nibble
	ihl      int      // overrides the IPv4 IHL (bytes)
	hdrOnly  bool     // emit nothing after the IP headers
	trunc    int      // cut the result to this many bytes (0: none)
	extRaw   []byte   // IPv6: raw bytes appended after ext headers (for malformed chains)
	extFirst uint8    // IPv6: next header of the fixed header when extRaw is used
	l4csum   *uint16  // force a transport checksum value
	padAfter []byte   // bytes after the IP length (link padding)
	nhOver   *uint8   // overrides the next header naming the transport
}

// extHdr is an IPv6 extension header: typ 0, 43, 60 or 51 (AH). body is
// padded so the header's length is a multiple of 8 (4 for AH).
type extHdr struct {
	typ  uint8
	body []byte
}

// l4 is a transport header to build.
type l4 interface{ pt() packettest.L4 }

type tcpHdr struct {
	sport, dport uint16
	seq, ack     uint32
	flags        uint8
	win          uint16
	opts         []byte
}

func (h tcpHdr) pt() packettest.L4 {
	return packettest.TCP{SPort: h.sport, DPort: h.dport, Seq: h.seq, Ack: h.ack, Flags: h.flags, Win: h.win, Opts: h.opts}
}

type udpHdr struct {
	sport, dport uint16
	noCsum       bool
	length       int // overrides the UDP length
}

func (h udpHdr) pt() packettest.L4 {
	return packettest.UDP{SPort: h.sport, DPort: h.dport, NoCsum: h.noCsum, Length: h.length}
}

type icmpHdr struct {
	typ, code uint8
	rest      uint32
}

func (h icmpHdr) pt() packettest.L4 { return packettest.ICMP{Type: h.typ, Code: h.code, Rest: h.rest} }

// rawL4 is a transport the builder does not checksum.
type rawL4 struct {
	proto uint8
	b     []byte
}

func (h rawL4) pt() packettest.L4 { return packettest.Raw{Proto: h.proto, B: h.b} }

var (
	pad    = packettest.Pad
	sum16  = packettest.Sum16
	pseudo = packettest.Pseudo
)

func addr(s string) Addr { return AddrFrom(netip.MustParseAddr(s)) }

// build returns the packet described by ip, t and payload
// (packettest.Build, with this package's short field names).
func build(ip ipHdr, t l4, payload []byte) []byte {
	var pt packettest.L4
	if t != nil {
		pt = t.pt()
	}
	ext := func(es []extHdr) []packettest.Ext {
		var r []packettest.Ext
		for _, e := range es {
			r = append(r, packettest.Ext{Type: e.typ, Body: e.body})
		}
		return r
	}
	return packettest.Build(packettest.IP{
		V6: ip.v6, Src: ip.src, Dst: ip.dst, TTL: ip.ttl, TOS: ip.tos, ID: ip.id,
		DF: ip.df, MF: ip.mf, FragOff: ip.fragOff, Frag: ip.frag, Opts: ip.opts,
		Ext: ext(ip.ext), ExtAfter: ext(ip.extAfter), Proto: ip.proto, TotalLen: ip.totalLen,
		BadCsum: ip.badCsum, Version: ip.version, IHL: ip.ihl, HdrOnly: ip.hdrOnly,
		Trunc: ip.trunc, ExtRaw: ip.extRaw, ExtFirst: ip.extFirst, L4Csum: ip.l4csum,
		PadAfter: ip.padAfter, NHOver: ip.nhOver,
	}, pt, payload)
}

// checker asserts one property of a decoded packet.
type checker func(t *testing.T, p *Parsed)

// check decodes b and runs the checkers.
func check(t *testing.T, b []byte, cs ...checker) {
	t.Helper()
	var p Parsed
	if err := p.Decode(b); err != nil {
		t.Fatalf("Decode: %v\n% x", err, b)
	}
	for _, c := range cs {
		c(t, &p)
	}
}

func isV(v uint8) checker {
	return func(t *testing.T, p *Parsed) {
		t.Helper()
		if p.Version != v {
			t.Errorf("Version = %d, want %d", p.Version, v)
		}
	}
}

func srcIs(s string) checker {
	return func(t *testing.T, p *Parsed) {
		t.Helper()
		if got := p.SrcIP(); got != netip.MustParseAddr(s) {
			t.Errorf("Src = %v, want %v", got, s)
		}
		if p.Src != addr(s) {
			t.Errorf("Src field = %x, want %v", p.Src, s)
		}
	}
}

func dstIs(s string) checker {
	return func(t *testing.T, p *Parsed) {
		t.Helper()
		if got := p.DstIP(); got != netip.MustParseAddr(s) {
			t.Errorf("Dst = %v, want %v", got, s)
		}
	}
}

func protoIs(v uint8) checker {
	return func(t *testing.T, p *Parsed) {
		t.Helper()
		if p.Proto != v {
			t.Errorf("Proto = %d, want %d", p.Proto, v)
		}
	}
}

func ttlIs(v uint8) checker {
	return func(t *testing.T, p *Parsed) {
		t.Helper()
		if p.TTL() != v {
			t.Errorf("TTL = %d, want %d", p.TTL(), v)
		}
	}
}

func lenIs(n int) checker {
	return func(t *testing.T, p *Parsed) {
		t.Helper()
		if p.Len() != n {
			t.Errorf("Len = %d, want %d", p.Len(), n)
		}
	}
}

func portsAre(s, d uint16) checker {
	return func(t *testing.T, p *Parsed) {
		t.Helper()
		if p.SrcPort != s || p.DstPort != d {
			t.Errorf("ports = %d→%d, want %d→%d", p.SrcPort, p.DstPort, s, d)
		}
	}
}

func tcpIs(seq, ack uint32, flags uint8) checker {
	return func(t *testing.T, p *Parsed) {
		t.Helper()
		if !p.HasL4 || p.Proto != ProtoTCP {
			t.Fatalf("not TCP with header: proto %d HasL4 %v", p.Proto, p.HasL4)
		}
		if p.TCPSeq() != seq || p.TCPAck() != ack || p.TCPFlags != flags {
			t.Errorf("TCP seq %d ack %d flags %#x, want %d %d %#x", p.TCPSeq(), p.TCPAck(), p.TCPFlags, seq, ack, flags)
		}
	}
}

func icmpIs(typ, code uint8) checker {
	return func(t *testing.T, p *Parsed) {
		t.Helper()
		if !p.HasL4 || !p.IsICMP() {
			t.Fatalf("not ICMP of its family: proto %d HasL4 %v", p.Proto, p.HasL4)
		}
		if p.ICMPType != typ || p.ICMPCode != code {
			t.Errorf("ICMP %d/%d, want %d/%d", p.ICMPType, p.ICMPCode, typ, code)
		}
	}
}

func icmpRestIs(v uint32) checker {
	return func(t *testing.T, p *Parsed) {
		t.Helper()
		if got := binary.BigEndian.Uint32(p.L4()[4:]); got != v {
			t.Errorf("ICMP rest of header = %#x, want %#x", got, v)
		}
	}
}

func payloadIs(want []byte) checker {
	return func(t *testing.T, p *Parsed) {
		t.Helper()
		if !bytes.Equal(p.Payload(), want) {
			t.Errorf("payload = %q, want %q", p.Payload(), want)
		}
	}
}

func fragIs(frag, mf bool, off int) checker {
	return func(t *testing.T, p *Parsed) {
		t.Helper()
		if p.Fragment != frag || p.MoreFragments != mf || p.FragOff != off {
			t.Errorf("fragment %v MF %v off %d, want %v %v %d", p.Fragment, p.MoreFragments, p.FragOff, frag, mf, off)
		}
	}
}

// checksumsOK recomputes the IPv4 header checksum and the transport
// checksum from scratch with sum16.
func checksumsOK() checker {
	return func(t *testing.T, p *Parsed) {
		t.Helper()
		if err := verifyChecksums(p); err != nil {
			t.Error(err)
		}
	}
}

func verifyChecksums(p *Parsed) error {
	b := p.Bytes()
	if p.Version == 4 {
		if s := sum16(b[:p.IPHeaderLen()]); s != 0xffff {
			return fmt.Errorf("IPv4 header checksum wrong (sum %#x)", s)
		}
	}
	if p.Fragment || !p.HasL4 {
		return nil
	}
	l4 := b[p.L4Off:]
	var src, dst []byte
	if p.Version == 4 {
		src, dst = b[12:16], b[16:20]
	} else {
		src, dst = b[8:24], b[24:40]
	}
	var s uint16
	switch p.Proto {
	case ProtoTCP:
		s = sum16(pseudo(p.Version == 6, src, dst, ProtoTCP, len(l4)), l4)
	case ProtoUDP:
		c := binary.BigEndian.Uint16(l4[6:])
		if c == 0 {
			return nil // none: accepted in both families, as Linux conntrack does
		}
		if ul := int(binary.BigEndian.Uint16(l4[4:])); ul != len(l4) {
			return fmt.Errorf("UDP length %d, transport length %d", ul, len(l4))
		}
		s = sum16(pseudo(p.Version == 6, src, dst, ProtoUDP, len(l4)), l4)
	case ProtoICMP:
		s = sum16(l4)
	case ProtoICMPv6:
		s = sum16(pseudo(true, src, dst, ProtoICMPv6, len(l4)), l4)
	case ProtoSCTP:
		if !sctpCRCOK(l4) {
			return fmt.Errorf("bad SCTP CRC32c")
		}
		return nil
	default:
		return nil
	}
	if s != 0xffff {
		return fmt.Errorf("transport (proto %d) checksum wrong (sum %#x)", p.Proto, s)
	}
	return nil
}

// quoteIs checks the ICMP error quotes exactly want.
func quoteIs(want []byte) checker {
	return func(t *testing.T, p *Parsed) {
		t.Helper()
		if !bytes.Equal(p.ICMPQuote(), want) {
			t.Errorf("quote (%d bytes) differs from the %d bytes expected", len(p.ICMPQuote()), len(want))
		}
	}
}

// inner decodes the quote of an ICMP error and runs checkers on it.
func inner(cs ...checker) checker {
	return func(t *testing.T, p *Parsed) {
		t.Helper()
		var q Parsed
		if err := q.DecodeQuoted(p.ICMPQuote()); err != nil {
			t.Fatalf("DecodeQuoted: %v", err)
		}
		for _, c := range cs {
			c(t, &q)
		}
	}
}

// decode is Decode that fails the test.
func decode(t testing.TB, b []byte) *Parsed {
	t.Helper()
	p := new(Parsed)
	if err := p.Decode(b); err != nil {
		t.Fatalf("Decode: %v\n% x", err, b)
	}
	return p
}

// seqPayload returns n bytes that differ at every position mod 251, so
// misplaced data is visible.
func seqPayload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// fragment6 cuts an IPv6 packet whose unfragmentable part is the first
// unfrag bytes into fragments of at most mtu bytes, as a host would (the
// package has no IPv6 fragmenter: routers never fragment IPv6).
func fragment6(t testing.TB, pkt []byte, unfrag, mtu int, id uint32) [][]byte {
	t.Helper()
	// Find the next header field naming the first fragmentable header.
	pos, off := 6, 40
	for off < unfrag {
		nh := pkt[pos]
		pos = off
		if nh == ProtoAH {
			off += (int(pkt[off+1]) + 2) * 4
		} else {
			off += (int(pkt[off+1]) + 1) * 8
		}
	}
	if off != unfrag {
		t.Fatalf("unfrag %d is not a header boundary", unfrag)
	}
	nh := pkt[pos]
	data := pkt[unfrag:]
	per := (mtu - unfrag - 8) &^ 7
	var out [][]byte
	for o := 0; o < len(data); o += per {
		end := min(o+per, len(data))
		f := make([]byte, 0, unfrag+8+end-o)
		f = append(f, pkt[:unfrag]...)
		f[pos] = 44
		fh := make([]byte, 8)
		fh[0] = nh
		fo := uint16(o)
		if end < len(data) {
			fo |= 1
		}
		binary.BigEndian.PutUint16(fh[2:], fo)
		binary.BigEndian.PutUint32(fh[4:], id)
		f = append(f, fh...)
		f = append(f, data[o:end]...)
		binary.BigEndian.PutUint16(f[4:], uint16(len(f)-40))
		out = append(out, f)
	}
	return out
}
