package packet

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"testing"
)

// crc32cBitwise is an independent, bit-at-a-time CRC32c (reflected
// polynomial 0x82F63B78, RFC 9260 Appendix A), to check the package's
// table-driven one. With sctp, bytes 8 to 11 (the checksum field) count as
// zero.
func crc32cBitwise(b []byte, sctp bool) uint32 {
	crc := ^uint32(0)
	for i, c := range b {
		if sctp && i >= 8 && i < 12 {
			c = 0
		}
		crc ^= uint32(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0x82f63b78
			} else {
				crc >>= 1
			}
		}
	}
	return ^crc
}

// sctpCRCOK reports whether an SCTP packet carries its own CRC32c, by the
// independent implementation.
func sctpCRCOK(sctp []byte) bool {
	return len(sctp) >= SCTPHeaderLen && binary.LittleEndian.Uint32(sctp[8:]) == crc32cBitwise(sctp, true)
}

// sctpSeg builds an SCTP packet: common header and the chunks, with the
// CRC32c of the independent implementation.
func sctpSeg(sport, dport uint16, vtag uint32, chunks ...[]byte) []byte {
	b := make([]byte, SCTPHeaderLen)
	binary.BigEndian.PutUint16(b, sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], vtag)
	for _, c := range chunks {
		b = append(b, pad(c, 4)...)
	}
	binary.LittleEndian.PutUint32(b[8:], crc32cBitwise(b, true))
	return b
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Real packets from Linux 6.18 (scapy client, nftables masquerade with
// "meta l4proto sctp masquerade to :50000-50010"): the client's INIT, as the
// server received it after NAT, and the quotes of ICMP errors about it as
// the client received them after NAT translated them back.
const (
	kernelInit      = "9c40138800000000fcc0468301000014111111110000ffff0001000100000001"
	kernelInitNAT4  = "c35813880000000064871b0801000014111111110000ffff0001000100000001" // sport 50008
	kernelInitNAT6  = "c3511388000000009278b3bb01000014111111110000ffff0001000100000001" // sport 50001
	kernelQuote24   = "c35813880000000064871b0801000014111111110000ffff"
	kernelQuote24Tr = "9c40138800000000776a77fd01000014111111110000ffff" // CRC over the 24 quoted bytes
	kernelQuote10   = "c3581388000000006487"
	kernelQuote10Tr = "9c401388000000006487" // too short for the CRC: ports only
)

var (
	sctpV4 = ipHdr{Src: "10.10.0.2", Dst: "198.18.0.2"}
	sctpV6 = ipHdr{V6: true, Src: "fd10::2", Dst: "fd18::2"}
)

func TestSCTPChecksumKnownVectors(t *testing.T) {
	init := unhex(t, kernelInit)
	if got := SCTPChecksum(init); got != 0x8346c0fc || got != crc32cBitwise(init, true) {
		t.Fatalf("SCTPChecksum = %#x, want 0x8346c0fc (bitwise %#x)", got, crc32cBitwise(init, true))
	}
	// The independent implementation gives the standard check value.
	if got := crc32cBitwise([]byte("123456789"), false); got != 0xe3069283 {
		t.Fatalf("bitwise CRC32c check value %#x", got)
	}
	b := []byte("12345678\xff\xff\xff\xff9abcdefghijklmnopqrstuvwxyz")
	if got, want := SCTPChecksum(b), crc32cBitwise(b, true); got != want {
		t.Fatalf("SCTPChecksum = %#x, bitwise %#x", got, want)
	}
	if SCTPChecksum(b[:11]) != 0 {
		t.Fatal("checksum of a cut header")
	}
	for _, v := range []ipHdr{sctpV4, sctpV6} {
		p := decode(t, build(v, rawL4{Proto: ProtoSCTP, B: init}, nil))
		if !p.L4ChecksumValid() {
			t.Fatalf("v6=%v: kernel's INIT has a bad checksum", v.V6)
		}
	}
}

func TestSCTPDecode(t *testing.T) {
	seg := sctpSeg(40000, 5000, 0xdeadbeef, []byte{SCTPChunkData, 3, 0, 21, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 'h', 'e', 'l', 'l', 'o'})
	for _, v := range []ipHdr{sctpV4, sctpV6, with(sctpV6, func(h *ipHdr) { h.Ext = []extHdr{hop, dstOpt} })} {
		b := build(v, rawL4{Proto: ProtoSCTP, B: seg}, nil)
		p := decode(t, b)
		if !p.HasL4 || p.Proto != ProtoSCTP || p.SrcPort != 40000 || p.DstPort != 5000 || p.Len()-p.L4Off != len(seg) {
			t.Fatalf("v6=%v: HasL4 %v proto %d ports %d>%d l4 %d", v.V6, p.HasL4, p.Proto, p.SrcPort, p.DstPort, p.Len()-p.L4Off)
		}
		if p.SCTPVerificationTag() != 0xdeadbeef {
			t.Fatalf("vtag %#x", p.SCTPVerificationTag())
		}
		if !p.L4ChecksumValid() {
			t.Fatal("good CRC refused")
		}
		b[len(b)-1] ^= 0x40
		if p.L4ChecksumValid() {
			t.Fatal("corrupted packet passes the CRC")
		}
		p.ChecksumGood = true
		if !p.L4ChecksumValid() {
			t.Fatal("ChecksumGood ignored")
		}
	}
}

// TestSCTPTruncated: a packet short of the 12-byte common header decodes
// without a transport header (conntrack then calls it INVALID, as Linux's
// "short packet"); a quote needs only the ports and tag.
func TestSCTPTruncated(t *testing.T) {
	seg := unhex(t, kernelInit)
	for _, v := range []ipHdr{sctpV4, sctpV6} {
		for _, n := range []int{0, 4, 8, 11} {
			p := decode(t, build(v, rawL4{Proto: ProtoSCTP, B: seg[:n]}, nil))
			if p.HasL4 || p.SrcPort != 0 || p.SCTPVerificationTag() != 0 || !p.L4ChecksumValid() {
				t.Fatalf("v6=%v n=%d: HasL4 %v ports %d", v.V6, n, p.HasL4, p.SrcPort)
			}
			p.SetSrcPort(1) // must not touch a header that is not there
			if p.SrcPort != 0 {
				t.Fatal("port set on a packet without header")
			}
		}
		whole := build(v, rawL4{Proto: ProtoSCTP, B: seg}, nil)
		hl := len(whole) - len(seg)
		for _, n := range []int{7, 8, 11, 12} {
			var q Parsed
			if err := q.DecodeQuoted(whole[:hl+n]); err != nil {
				t.Fatalf("DecodeQuoted %d: %v", n, err)
			}
			if q.HasL4 != (n >= 8) {
				t.Fatalf("quote of %d bytes: HasL4 %v", n, q.HasL4)
			}
			if n >= 8 && (q.SrcPort != 40000 || q.DstPort != 5000) {
				t.Fatalf("quote of %d bytes: ports %d>%d", n, q.SrcPort, q.DstPort)
			}
			if n >= 8 && q.L4ChecksumValid() != (n >= 12 && sctpCRCOK(q.L4())) {
				t.Fatalf("quote of %d bytes: L4ChecksumValid %v", n, q.L4ChecksumValid())
			}
		}
	}
	// A first fragment short of the header is still reassembled.
	p := decode(t, build(with(sctpV4, func(h *ipHdr) { h.MF = true }), rawL4{Proto: ProtoSCTP, B: seg[:8]}, nil))
	if !p.Fragment || p.HasL4 {
		t.Fatalf("first fragment: Fragment %v HasL4 %v", p.Fragment, p.HasL4)
	}
}

// TestSCTPSetPorts: rewriting a port recomputes the CRC32c (checked by the
// independent implementation) and changes nothing else; the kernel's NAT
// produced exactly the same bytes.
func TestSCTPSetPorts(t *testing.T) {
	for _, tc := range []struct {
		v    ipHdr
		port uint16
		want string
	}{
		{sctpV4, 50008, kernelInitNAT4},
		{sctpV6, 50001, kernelInitNAT6},
	} {
		b := build(tc.v, rawL4{Proto: ProtoSCTP, B: unhex(t, kernelInit)}, nil)
		orig := bytes.Clone(b)
		p := decode(t, b)
		p.SetSrc(addr(map[bool]string{false: "198.18.0.1", true: "fd18::1"}[tc.v.V6]))
		p.SetSrcPort(tc.port)
		if got := hex.EncodeToString(p.L4()); got != tc.want {
			t.Fatalf("v6=%v: after NAT\n got %s\nwant %s (Linux)", tc.v.V6, got, tc.want)
		}
		if p.SrcPort != tc.port || !p.L4ChecksumValid() || !sctpCRCOK(p.L4()) {
			t.Fatal("view or CRC wrong after SetSrcPort")
		}
		p.SetDstPort(5001)
		l4 := p.L4()
		if p.DstPort != 5001 || binary.BigEndian.Uint16(l4[2:]) != 5001 || !sctpCRCOK(l4) {
			t.Fatal("SetDstPort")
		}
		if !bytes.Equal(l4[12:], orig[len(orig)-len(l4)+12:]) || !bytes.Equal(l4[4:8], orig[len(orig)-len(l4)+4:][:4]) {
			t.Fatal("setters touched the tag or the chunks")
		}
		q := decode(t, p.Bytes())
		if q.SrcPort != tc.port || q.DstPort != 5001 || !q.L4ChecksumValid() {
			t.Fatal("rewritten packet does not decode to what was set")
		}
		// Setting the port it has changes nothing, not even a bad CRC.
		l4[9] ^= 1
		before := bytes.Clone(p.Bytes())
		p.SetSrcPort(tc.port)
		if !bytes.Equal(before, p.Bytes()) {
			t.Fatal("no-op SetSrcPort rewrote the packet")
		}
	}
}

// TestSCTPSetPortQuoted: NAT translating an ICMP error rewrites the quoted
// SCTP header; Linux recomputes the CRC over the quoted bytes when the
// whole common header is there, else only writes the port. The results
// are the kernel's bytes.
func TestSCTPSetPortQuoted(t *testing.T) {
	for _, tc := range []struct{ quote, want string }{
		{kernelQuote24, kernelQuote24Tr},
		{kernelQuote10, kernelQuote10Tr},
		{kernelInitNAT4, kernelInit},
	} {
		qb := unhex(t, tc.quote)
		ip := build(with(ipHdr{Src: "198.18.0.1", Dst: "198.18.0.2"}, func(h *ipHdr) { h.TotalLen = 20 + 32 }), rawL4{Proto: ProtoSCTP, B: qb}, nil)
		var q Parsed
		if err := q.DecodeQuoted(ip); err != nil {
			t.Fatal(err)
		}
		q.SetSrcPort(40000)
		if got := hex.EncodeToString(q.L4()); got != tc.want {
			t.Fatalf("quote %s translated\n got %s\nwant %s (Linux)", tc.quote, got, tc.want)
		}
	}
}

func TestSCTPSetPortAllocs(t *testing.T) {
	b := build(sctpV4, rawL4{Proto: ProtoSCTP, B: sctpSeg(1, 2, 3, make([]byte, 1400))}, nil)
	p := decode(t, b)
	port := uint16(0)
	if n := testing.AllocsPerRun(100, func() {
		port++
		p.SetSrcPort(port)
		p.SetDstPort(port)
		if !p.L4ChecksumValid() {
			t.Fatal("bad CRC")
		}
	}); n != 0 {
		t.Fatalf("%v allocations per rewrite", n)
	}
}

// BenchmarkSCTPSetPort is one NAT port rewrite of a full-size SCTP packet
// (the CRC over 1480 bytes) and the checksum check conntrack does.
func BenchmarkSCTPSetPort(b *testing.B) {
	pkt := build(sctpV4, rawL4{Proto: ProtoSCTP, B: sctpSeg(1, 2, 3, make([]byte, 1464))}, nil)
	p := decode(b, pkt)
	b.SetBytes(int64(p.Len() - p.L4Off))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p.SetSrcPort(uint16(i))
	}
	if !p.L4ChecksumValid() {
		b.Fatal("bad CRC")
	}
}

func BenchmarkSCTPChecksumValid(b *testing.B) {
	pkt := build(sctpV4, rawL4{Proto: ProtoSCTP, B: sctpSeg(1, 2, 3, make([]byte, 1464))}, nil)
	p := decode(b, pkt)
	b.SetBytes(int64(p.Len() - p.L4Off))
	b.ReportAllocs()
	for b.Loop() {
		if !p.L4ChecksumValid() {
			b.Fatal("bad CRC")
		}
	}
}

// FuzzSCTP decodes any bytes as an SCTP packet in IPv4 and IPv6: the CRC
// check agrees with the independent one, and port rewrites leave a packet
// whose CRC is right and whose ports read back.
func FuzzSCTP(f *testing.F) {
	f.Add(unhex(f, kernelInit), uint16(50008), false)
	f.Add(unhex(f, kernelInitNAT6), uint16(1), true)
	f.Add(sctpSeg(1, 2, 3), uint16(7), false)
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, uint16(7), true)
	f.Fuzz(func(t *testing.T, seg []byte, port uint16, v6 bool) {
		ip := sctpV4
		if v6 {
			ip = sctpV6
		}
		b := build(ip, rawL4{Proto: ProtoSCTP, B: seg}, nil)
		var p Parsed
		if err := p.Decode(b); err != nil {
			t.Fatalf("Decode: %v", err)
		}
		if p.HasL4 != (len(seg) >= SCTPHeaderLen) {
			t.Fatalf("HasL4 %v for %d bytes", p.HasL4, len(seg))
		}
		if p.HasL4 && p.L4ChecksumValid() != sctpCRCOK(seg) {
			t.Fatalf("L4ChecksumValid %v, independent %v", p.L4ChecksumValid(), sctpCRCOK(seg))
		}
		touch(&p)
		p.SetSrcPort(port)
		p.SetDstPort(^port)
		if !p.HasL4 {
			return
		}
		r := decodeOrFail(t, p.Bytes())
		if r.SrcPort != port || r.DstPort != ^port {
			t.Fatal("ports do not read back")
		}
		if port != binary.BigEndian.Uint16(seg) || ^port != binary.BigEndian.Uint16(seg[2:]) {
			if !sctpCRCOK(r.L4()) {
				t.Fatal("rewrite left a bad CRC")
			}
		}
		var q Parsed
		if q.DecodeQuoted(b[:len(b)-len(seg)+min(len(seg), 8+int(port%8))]) == nil {
			touch(&q)
			q.SetSrcPort(^port)
		}
	})
}
