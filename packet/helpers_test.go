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

// The builder's types and sums under this package's short names.
type (
	ipHdr   = packettest.IP
	extHdr  = packettest.Ext
	l4      = packettest.L4
	tcpHdr  = packettest.TCP
	udpHdr  = packettest.UDP
	icmpHdr = packettest.ICMP
	rawL4   = packettest.Raw
)

var (
	build  = packettest.Build
	pad    = packettest.Pad
	sum16  = packettest.Sum16
	pseudo = packettest.Pseudo
)

func addr(s string) Addr { return AddrFrom(netip.MustParseAddr(s)) }

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
