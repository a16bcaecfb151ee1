package packet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

var (
	hop    = extHdr{Type: 0, Body: []byte{1, 4, 0, 0, 0, 0}}                   // PadN option
	dstOpt = extHdr{Type: 60, Body: []byte{1, 4, 0, 0, 0, 0}}                  // PadN option
	rtHdr  = extHdr{Type: 43, Body: []byte{0, 0, 0, 0, 0, 0}}                  // type 0, segments left 0
	ahHdr  = extHdr{Type: ProtoAH, Body: []byte{0, 0, 0, 0, 1, 2, 0, 0, 0, 1}} // reserved, SPI, sequence
	tcpSyn = tcpHdr{SPort: 1234, DPort: 80, Seq: 1000, Flags: TCPSyn, Win: 65535}
	v4     = ipHdr{Src: "10.0.0.1", Dst: "192.0.2.1"}
	v6     = ipHdr{V6: true, Src: "2001:db8::1", Dst: "2001:db8:1::2"}
)

func with(ip ipHdr, f func(*ipHdr)) ipHdr { f(&ip); return ip }

func TestDecodeValid(t *testing.T) {
	gre := func(flags byte, key uint32) []byte {
		b := []byte{flags, 0, 0x08, 0x00}
		if flags&0x80 != 0 {
			b = append(b, 0, 0, 0, 0)
		}
		if flags&0x20 != 0 {
			b = binary.BigEndian.AppendUint32(b, key)
		}
		return b
	}
	tests := []struct {
		name string
		pkt  []byte
		cs   []checker
	}{
		{"tcp4", build(v4, tcpSyn, nil), []checker{isV(4), srcIs("10.0.0.1"), dstIs("192.0.2.1"), protoIs(ProtoTCP),
			portsAre(1234, 80), tcpIs(1000, 0, TCPSyn), lenIs(40), ttlIs(64), payloadIs([]byte{}), checksumsOK()}},
		{"tcp4 options+data", build(with(v4, func(h *ipHdr) { h.Opts = []byte{0x94, 4, 0, 0}; h.TTL = 9 }),
			tcpHdr{SPort: 1, DPort: 2, Seq: 7, Ack: 9, Flags: TCPAck | TCPPsh, Opts: []byte{2, 4, 5, 0xb4}}, []byte("hello")),
			[]checker{lenIs(24 + 24 + 5), ttlIs(9), tcpIs(7, 9, TCPAck|TCPPsh), payloadIs([]byte("hello")), checksumsOK(),
				func(t *testing.T, p *Parsed) {
					if p.IPHeaderLen() != 24 || p.L4Off != 24 || p.TCPHeaderLen() != 24 ||
						!bytes.Equal(p.TCPOptions(), []byte{2, 4, 5, 0xb4}) {
						t.Errorf("offsets: ip %d l4 %d tcp %d opts %x", p.IPHeaderLen(), p.L4Off, p.TCPHeaderLen(), p.TCPOptions())
					}
				}}},
		{"udp4", build(v4, udpHdr{SPort: 53, DPort: 5353}, []byte("dns")), []checker{protoIs(ProtoUDP), portsAre(53, 5353),
			payloadIs([]byte("dns")), checksumsOK()}},
		{"udp4 no checksum", build(v4, udpHdr{SPort: 1, DPort: 2, NoCsum: true}, []byte("x")), []checker{checksumsOK(),
			func(t *testing.T, p *Parsed) {
				if !p.L4ChecksumValid() {
					t.Error("zero UDP/IPv4 checksum must be valid")
				}
			}}},
		{"link padding trimmed", build(with(v4, func(h *ipHdr) { h.PadAfter = make([]byte, 6) }), udpHdr{SPort: 1, DPort: 2}, nil),
			[]checker{lenIs(28), payloadIs([]byte{}), checksumsOK()}},
		{"icmp echo", build(v4, icmpHdr{Type: 8, Rest: 0x12340001}, []byte("ping")), []checker{icmpIs(8, 0), portsAre(0x1234, 0x1234),
			payloadIs([]byte("ping")), checksumsOK(), func(t *testing.T, p *Parsed) {
				if !p.IsEcho() || p.IsICMPError() || !p.IsICMP() {
					t.Error("echo: IsEcho/IsICMPError/IsICMP wrong")
				}
			}}},
		{"icmp error", build(v4, icmpHdr{Type: 3, Code: 3}, build(v4, udpHdr{SPort: 9, DPort: 10}, nil)),
			[]checker{icmpIs(3, 3), portsAre(0, 0), checksumsOK(), func(t *testing.T, p *Parsed) {
				if !p.IsICMPError() || p.IsEcho() || len(p.ICMPQuote()) != 28 {
					t.Errorf("error: IsICMPError %v quote %d", p.IsICMPError(), len(p.ICMPQuote()))
				}
			}, inner(portsAre(9, 10), protoIs(ProtoUDP))}},
		{"esp", build(v4, rawL4{Proto: ProtoESP, B: []byte{0x11, 0x22, 0x33, 0x44, 0, 0, 0, 1}}, nil), []checker{portsAre(0x1122, 0x3344)}},
		{"gre key", build(v4, rawL4{Proto: ProtoGRE, B: gre(0x20, 0xaabbccdd)}, nil), []checker{portsAre(0xaabb, 0xccdd)}},
		{"gre csum+key", build(v4, rawL4{Proto: ProtoGRE, B: gre(0xa0, 0x01020304)}, nil), []checker{portsAre(0x0102, 0x0304)}},
		{"gre no key", build(v4, rawL4{Proto: ProtoGRE, B: gre(0, 0)}, nil), []checker{portsAre(0, 0)}},
		{"unknown proto", build(v4, rawL4{Proto: 200, B: []byte("abc")}, nil), []checker{protoIs(200), func(t *testing.T, p *Parsed) {
			if p.HasL4 || p.L4Off != 20 || string(p.Payload()) != "abc" || string(p.L4()) != "abc" {
				t.Errorf("HasL4 %v L4Off %d payload %q", p.HasL4, p.L4Off, p.Payload())
			}
		}}},
		{"icmpv6 in ipv4", build(v4, rawL4{Proto: ProtoICMPv6, B: []byte{128, 0, 0, 0, 0, 1, 0, 1}}, nil), []checker{func(t *testing.T, p *Parsed) {
			if p.HasL4 || p.L4Off != 20 || p.IsEcho() || p.IsICMP() || len(p.Payload()) != 8 {
				t.Errorf("HasL4 %v L4Off %d IsEcho %v", p.HasL4, p.L4Off, p.IsEcho())
			}
		}}},
		{"first fragment", build(with(v4, func(h *ipHdr) { h.MF = true; h.ID = 77 }), udpHdr{SPort: 5, DPort: 6, Length: 1000}, make([]byte, 16)),
			[]checker{fragIs(true, true, 0), portsAre(5, 6), func(t *testing.T, p *Parsed) {
				if !p.HasL4 || p.FragID != 77 {
					t.Errorf("HasL4 %v FragID %d", p.HasL4, p.FragID)
				}
			}}},
		{"non-first fragment", build(with(v4, func(h *ipHdr) { h.FragOff = 1480; h.ID = 77 }), rawL4{Proto: ProtoICMP, B: make([]byte, 8)}, nil),
			[]checker{fragIs(true, false, 1480), protoIs(ProtoICMP), portsAre(0, 0), func(t *testing.T, p *Parsed) {
				if p.HasL4 || p.L4Off != 0 || p.Payload() != nil || p.L4() != nil || p.IsEcho() || p.IsICMPError() {
					t.Errorf("HasL4 %v L4Off %d IsEcho %v", p.HasL4, p.L4Off, p.IsEcho())
				}
			}}},
		{"df", build(with(v4, func(h *ipHdr) { h.DF = true }), tcpSyn, nil), []checker{fragIs(false, false, 0), func(t *testing.T, p *Parsed) {
			if !p.DF() {
				t.Error("DF not seen")
			}
		}}},

		{"tcp6", build(v6, tcpSyn, []byte("data")), []checker{isV(6), srcIs("2001:db8::1"), dstIs("2001:db8:1::2"), protoIs(ProtoTCP),
			portsAre(1234, 80), tcpIs(1000, 0, TCPSyn), lenIs(64), payloadIs([]byte("data")), checksumsOK(), func(t *testing.T, p *Parsed) {
				if !p.DF() || p.IPHeaderLen() != 40 || p.L4Off != 40 {
					t.Errorf("DF %v IPHeaderLen %d L4Off %d", p.DF(), p.IPHeaderLen(), p.L4Off)
				}
			}}},
		{"udp6", build(v6, udpHdr{SPort: 500, DPort: 4500}, []byte("ike")), []checker{protoIs(ProtoUDP), portsAre(500, 4500), checksumsOK()}},
		{"icmpv6 echo", build(v6, icmpHdr{Type: 128, Rest: 0xbeef0007}, nil), []checker{icmpIs(128, 0), portsAre(0xbeef, 0xbeef), checksumsOK()}},
		{"icmpv6 error", build(v6, icmpHdr{Type: 1, Code: 4}, build(v6, udpHdr{SPort: 1, DPort: 2}, nil)),
			[]checker{icmpIs(1, 4), checksumsOK(), inner(isV(6), portsAre(1, 2))}},
		{"ext chain", build(with(v6, func(h *ipHdr) { h.Ext = []extHdr{hop, dstOpt, rtHdr, ahHdr} }), tcpSyn, nil),
			[]checker{protoIs(ProtoTCP), portsAre(1234, 80), checksumsOK(), func(t *testing.T, p *Parsed) {
				if p.L4Off != 40+8+8+8+16 {
					t.Errorf("L4Off %d", p.L4Off)
				}
			}}},
		{"first fragment6", build(with(v6, func(h *ipHdr) { h.MF = true; h.ID = 0xdeadbeef; h.Ext = []extHdr{hop} }), udpHdr{SPort: 7, DPort: 8, Length: 4000}, make([]byte, 16)),
			[]checker{fragIs(true, true, 0), protoIs(ProtoUDP), portsAre(7, 8), func(t *testing.T, p *Parsed) {
				if p.FragID != 0xdeadbeef || p.L4Off != 56 {
					t.Errorf("FragID %#x L4Off %d", p.FragID, p.L4Off)
				}
			}}},
		{"first fragment6, header after", build(with(v6, func(h *ipHdr) { h.MF = true; h.ExtAfter = []extHdr{dstOpt} }), tcpSyn, nil),
			[]checker{fragIs(true, true, 0), protoIs(ProtoTCP), portsAre(1234, 80)}},
		{"non-first fragment6", build(with(v6, func(h *ipHdr) { h.FragOff = 1232 }), rawL4{Proto: ProtoTCP, B: make([]byte, 24)}, nil),
			[]checker{fragIs(true, false, 1232), protoIs(ProtoTCP), func(t *testing.T, p *Parsed) {
				if p.HasL4 || p.Payload() != nil {
					t.Error("non-first fragment has no transport header")
				}
			}}},
		{"atomic fragment6", build(with(v6, func(h *ipHdr) { h.Frag = true }), tcpSyn, nil),
			[]checker{fragIs(false, false, 0), protoIs(ProtoTCP), portsAre(1234, 80), checksumsOK()}},
		{"no next header", build(v6, rawL4{Proto: 59, B: nil}, nil), []checker{protoIs(59), func(t *testing.T, p *Parsed) {
			if p.HasL4 {
				t.Error("HasL4 for no next header")
			}
		}}},
		{"icmp in ipv6", build(v6, rawL4{Proto: ProtoICMP, B: []byte{8, 0, 0, 0, 0, 1, 0, 1}}, nil), []checker{func(t *testing.T, p *Parsed) {
			if p.HasL4 || p.L4Off != 40 || p.IsEcho() || len(p.Payload()) != 8 {
				t.Errorf("HasL4 %v L4Off %d IsEcho %v", p.HasL4, p.L4Off, p.IsEcho())
			}
		}}},
		{"eight ext headers", build(with(v6, func(h *ipHdr) {
			h.Ext = []extHdr{hop, dstOpt, rtHdr, dstOpt, rtHdr, dstOpt, rtHdr, dstOpt}
		}), udpHdr{SPort: 1, DPort: 2}, nil), []checker{protoIs(ProtoUDP), checksumsOK()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, tt.pkt, tt.cs...)
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	u8 := func(v uint8) *uint8 { return &v }
	tests := []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"version 5", build(with(v4, func(h *ipHdr) { h.Version = 5 }), tcpSyn, nil), ErrVersion},
		{"version 0", make([]byte, 40), ErrVersion},
		{"ipv4 short", build(v4, tcpSyn, nil)[:19], ErrTruncated},
		{"ipv4 ihl 16", build(with(v4, func(h *ipHdr) { h.IHL = 16 }), tcpSyn, nil), ErrIPHeader},
		{"ipv4 ihl past end", build(with(v4, func(h *ipHdr) { h.IHL = 24; h.HdrOnly = true; h.TotalLen = 24 }), nil, nil), ErrTruncated},
		{"ipv4 total < ihl", build(with(v4, func(h *ipHdr) { h.TotalLen = 19 }), tcpSyn, nil), ErrIPHeader},
		{"ipv4 total > len", build(with(v4, func(h *ipHdr) { h.TotalLen = 41 }), tcpSyn, nil), ErrTruncated},
		{"ipv4 checksum", build(with(v4, func(h *ipHdr) { h.BadCsum = true }), tcpSyn, nil), ErrIPChecksum},
		{"tcp short", build(v4, rawL4{Proto: ProtoTCP, B: make([]byte, 19)}, nil), ErrL4Header},
		{"tcp doff 4", build(v4, rawL4{Proto: ProtoTCP, B: append(make([]byte, 12), 0x40, 0, 0, 0, 0, 0, 0, 0)}, nil), ErrL4Header},
		{"tcp doff past end", build(v4, rawL4{Proto: ProtoTCP, B: append(make([]byte, 12), 0x60, 0, 0, 0, 0, 0, 0, 0)}, nil), ErrL4Header},
		{"udp short", build(v4, rawL4{Proto: ProtoUDP, B: make([]byte, 7)}, nil), ErrL4Header},
		{"udp length > rest", build(v4, udpHdr{Length: 9}, nil), ErrL4Header},
		{"udp length < 8", build(v4, udpHdr{Length: 7}, []byte("abc")), ErrL4Header},
		{"icmp short", build(v4, rawL4{Proto: ProtoICMP, B: make([]byte, 7)}, nil), ErrL4Header},
		{"esp short", build(v4, rawL4{Proto: ProtoESP, B: make([]byte, 7)}, nil), ErrL4Header},
		{"gre short", build(v4, rawL4{Proto: ProtoGRE, B: make([]byte, 3)}, nil), ErrL4Header},
		{"gre key cut", build(v4, rawL4{Proto: ProtoGRE, B: []byte{0x20, 0, 8, 0, 1, 2}}, nil), ErrL4Header},
		{"ipv6 short", build(v6, tcpSyn, nil)[:39], ErrTruncated},
		{"ipv6 payload > len", build(with(v6, func(h *ipHdr) { h.TotalLen = 61 }), tcpSyn, nil), ErrTruncated},
		{"tcp6 short", build(v6, rawL4{Proto: ProtoTCP, B: make([]byte, 10)}, nil), ErrL4Header},
		{"icmpv6 short", build(v6, rawL4{Proto: ProtoICMPv6, B: make([]byte, 4)}, nil), ErrL4Header},
		{"hop-by-hop not first", build(with(v6, func(h *ipHdr) { h.Ext = []extHdr{dstOpt, hop} }), tcpSyn, nil), ErrExtHeader},
		{"ext header cut", build(with(v6, func(h *ipHdr) { h.ExtFirst = 60; h.ExtRaw = []byte{6, 1, 0, 0, 0, 0, 0, 0} }), nil, nil), ErrExtHeader},
		{"ext header < 8", build(with(v6, func(h *ipHdr) { h.ExtFirst = 60; h.ExtRaw = []byte{6, 0, 0, 0} }), nil, nil), ErrExtHeader},
		{"fragment header cut", build(with(v6, func(h *ipHdr) { h.ExtFirst = 44; h.ExtRaw = []byte{6, 0, 0, 0} }), nil, nil), ErrExtHeader},
		{"two fragment headers", build(with(v6, func(h *ipHdr) {
			h.ExtFirst = 44
			h.ExtRaw = []byte{44, 0, 0, 1, 0, 0, 0, 1, 6, 0, 0, 1, 0, 0, 0, 1}
		}), tcpSyn, nil), ErrExtHeader},
		{"nine ext headers", build(with(v6, func(h *ipHdr) {
			h.Ext = []extHdr{hop, dstOpt, rtHdr, dstOpt, rtHdr, dstOpt, rtHdr, dstOpt, rtHdr}
		}), udpHdr{}, nil), ErrExtHeader},
		{"chain loops into tcp cut", build(with(v6, func(h *ipHdr) { h.Ext = []extHdr{dstOpt}; h.NHOver = u8(ProtoTCP) }), rawL4{Proto: 59, B: nil}, nil), ErrL4Header},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Parsed
			if err := p.Decode(tt.pkt); !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %v, want %v\n% x", err, tt.want, tt.pkt)
			}
		})
	}
}

func TestDecodeQuoted(t *testing.T) {
	tcp4 := build(with(v4, func(h *ipHdr) { h.Opts = []byte{1, 1, 1, 1} }), tcpHdr{SPort: 1, DPort: 2, Seq: 3, Ack: 4, Flags: TCPAck}, []byte("payload"))
	tcp6 := build(with(v6, func(h *ipHdr) { h.Ext = []extHdr{dstOpt} }), tcpHdr{SPort: 1, DPort: 2, Seq: 3, Ack: 4, Flags: TCPAck}, []byte("payload"))
	udp4 := build(v4, udpHdr{SPort: 9, DPort: 10}, []byte("x"))
	corrupt := bytes.Clone(tcp4)
	corrupt[8]-- // TTL changed without checksum update, as a router may quote it
	tests := []struct {
		name  string
		pkt   []byte
		want  error
		sport uint16
		proto uint8
	}{
		{"tcp4 8 bytes", tcp4[:24+8], nil, 1, ProtoTCP},
		{"tcp4 12 bytes", tcp4[:24+12], nil, 1, ProtoTCP},
		{"tcp4 14 bytes", tcp4[:24+14], nil, 1, ProtoTCP},
		{"tcp4 whole", tcp4, nil, 1, ProtoTCP},
		{"tcp4 bad ip checksum", corrupt, nil, 1, ProtoTCP},
		{"tcp4 7 bytes", tcp4[:24+7], ErrTruncated, 0, 0},
		{"udp4 4 bytes", udp4[:24], nil, 9, ProtoUDP},
		{"udp4 3 bytes", udp4[:23], ErrL4Header, 0, 0},
		{"tcp6 8 bytes", tcp6[:48+8], nil, 1, ProtoTCP},
		{"tcp6 ext cut", tcp6[:44], nil, 0, 60},
		{"ip header cut", tcp4[:22], ErrTruncated, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Parsed
			err := p.DecodeQuoted(tt.pkt)
			if !errors.Is(err, tt.want) {
				t.Fatalf("DecodeQuoted = %v, want %v", err, tt.want)
			}
			if err != nil {
				return
			}
			if p.SrcPort != tt.sport || p.Proto != tt.proto {
				t.Errorf("sport %d proto %d, want %d %d", p.SrcPort, p.Proto, tt.sport, tt.proto)
			}
			// No accessor or setter may panic on a short quote.
			_ = p.TCPSeq() + p.TCPAck() + uint32(p.TCPWindow()) + uint32(p.TCPHeaderLen())
			_, _, _, _ = p.TCPOptions(), p.Payload(), p.L4(), p.L4ChecksumValid()
			before := bytes.Clone(p.Bytes())
			p.SetTCPAck(p.TCPAck())
			p.SetTCPSeq(p.TCPSeq())
			p.SetSrcPort(p.SrcPort)
			if !bytes.Equal(before, p.Bytes()) {
				t.Error("rewriting fields with their own values changed the quote")
			}
			if len(p.Bytes()) < p.L4Off+12 && p.TCPAck() != 0 {
				t.Error("TCPAck read past a short quote")
			}
			p.SetTCPAck(99) // must not write past the quote
			p.SetSrc(addr("192.0.2.99"))
			p.SetDstPort(7)
			p.DecTTL()
		})
	}
}

func TestAccessors(t *testing.T) {
	b := build(with(v4, func(h *ipHdr) { h.TTL = 33; h.ID = 0x4242; h.DF = true }),
		tcpHdr{SPort: 40000, DPort: 443, Seq: 0xfffffff0, Ack: 17, Flags: TCPAck | TCPFin, Win: 512, Opts: []byte{1, 1, 4, 2}}, []byte("bye"))
	p := decode(t, b)
	if p.TTL() != 33 || !p.DF() || p.FragID != 0x4242 || p.TCPWindow() != 512 || p.TCPSeq() != 0xfffffff0 ||
		p.TCPAck() != 17 || p.TCPHeaderLen() != 24 || !bytes.Equal(p.TCPOptions(), []byte{1, 1, 4, 2}) ||
		string(p.Payload()) != "bye" || p.Len() != len(b) || !bytes.Equal(p.Bytes(), b) || len(p.L4()) != 27 ||
		p.IsICMP() || p.IsEcho() || p.ICMPQuote() != nil || !p.L4ChecksumValid() {
		t.Errorf("accessors disagree with the packet: %+v", p)
	}
	if got := p.PseudoHeaderSum(ProtoTCP, 27); got != sum16(pseudo(false, b[12:16], b[16:20], ProtoTCP, 27)) {
		t.Errorf("PseudoHeaderSum = %#x", got)
	}
	p6 := decode(t, build(v6, tcpSyn, nil))
	if got := p6.PseudoHeaderSum(ProtoTCP, 20); got != sum16(pseudo(true, p6.Src[:], p6.Dst[:], ProtoTCP, 20)) {
		t.Errorf("PseudoHeaderSum v6 = %#x", got)
	}

	if a := AddrFrom(netip.MustParseAddr("::ffff:10.1.2.3")); a != addr("10.1.2.3") || a.NetIP(4) != netip.MustParseAddr("10.1.2.3") {
		t.Errorf("AddrFrom(v4-mapped) = %x", a)
	}
	if a := addr("2001:db8::5"); a.NetIP(6) != netip.MustParseAddr("2001:db8::5") {
		t.Errorf("NetIP(6) = %v", a.NetIP(6))
	}
	// A bad transport checksum is seen.
	b[len(b)-1] ^= 1
	if decode(t, b).L4ChecksumValid() {
		t.Error("corrupted TCP checksum reads as valid")
	}
}

// setterCases are whole packets the setters are tried on.
func setterCases() map[string][]byte {
	return map[string][]byte{
		"tcp4":          build(v4, tcpHdr{SPort: 1, DPort: 2, Seq: 3, Ack: 4, Flags: TCPAck}, []byte("odd")),
		"tcp4 options":  build(with(v4, func(h *ipHdr) { h.Opts = []byte{0x82, 4, 1, 2} }), tcpSyn, []byte("data!")),
		"udp4":          build(v4, udpHdr{SPort: 53, DPort: 1000}, []byte("answer")),
		"udp4 no csum":  build(v4, udpHdr{SPort: 53, DPort: 1000, NoCsum: true}, []byte("answer")),
		"icmp4 echo":    build(v4, icmpHdr{Type: 8, Rest: 0x01000002}, []byte("abc")),
		"icmp4 error":   build(v4, icmpHdr{Type: 11}, build(v4, tcpSyn, nil)),
		"tcp6":          build(v6, tcpHdr{SPort: 1, DPort: 2, Seq: 3, Ack: 4, Flags: TCPAck}, []byte("odd")),
		"tcp6 ext":      build(with(v6, func(h *ipHdr) { h.Ext = []extHdr{hop, rtHdr} }), tcpSyn, []byte("x")),
		"udp6":          build(v6, udpHdr{SPort: 53, DPort: 1000}, []byte("answer")),
		"icmp6 echo":    build(v6, icmpHdr{Type: 128, Rest: 0x01000002}, []byte("abc")),
		"esp4":          build(v4, rawL4{Proto: ProtoESP, B: []byte{1, 2, 3, 4, 0, 0, 0, 1}}, nil),
		"udp4 fragment": build(with(v4, func(h *ipHdr) { h.MF = true }), udpHdr{SPort: 7, DPort: 8, Length: 3000}, make([]byte, 24)),
	}
}

func TestSetters(t *testing.T) {
	type setter struct {
		name  string
		apply func(p *Parsed)
		check func(t *testing.T, p *Parsed) // on the packet decoded again
	}
	setters := []setter{
		{"SetSrc", func(p *Parsed) {
			if p.Version == 4 {
				p.SetSrc(addr("198.51.100.77"))
			} else {
				p.SetSrc(addr("fd00:abcd::77"))
			}
		}, func(t *testing.T, p *Parsed) {
			want := "198.51.100.77"
			if p.Version == 6 {
				want = "fd00:abcd::77"
			}
			srcIs(want)(t, p)
		}},
		{"SetDst", func(p *Parsed) {
			if p.Version == 4 {
				p.SetDst(addr("203.0.113.254"))
			} else {
				p.SetDst(addr("2001:db8:ffff::fe"))
			}
		}, func(t *testing.T, p *Parsed) {
			want := "203.0.113.254"
			if p.Version == 6 {
				want = "2001:db8:ffff::fe"
			}
			dstIs(want)(t, p)
		}},
		{"SetSrcPort", func(p *Parsed) { p.SetSrcPort(61000) }, func(t *testing.T, p *Parsed) {
			switch {
			case p.IsEcho():
				portsAre(61000, 61000)(t, p)
			case p.Proto == ProtoTCP || p.Proto == ProtoUDP:
				if p.SrcPort != 61000 {
					t.Errorf("SrcPort %d", p.SrcPort)
				}
			}
		}},
		{"SetDstPort", func(p *Parsed) { p.SetDstPort(8443) }, func(t *testing.T, p *Parsed) {
			switch {
			case p.IsEcho():
				portsAre(8443, 8443)(t, p)
			case p.Proto == ProtoTCP || p.Proto == ProtoUDP:
				if p.DstPort != 8443 {
					t.Errorf("DstPort %d", p.DstPort)
				}
			}
		}},
		{"SetICMPID", func(p *Parsed) { p.SetICMPID(0xabcd) }, func(t *testing.T, p *Parsed) {
			if p.IsEcho() {
				portsAre(0xabcd, 0xabcd)(t, p)
			}
		}},
		{"SetTCPSeq", func(p *Parsed) { p.SetTCPSeq(0x89abcdef) }, func(t *testing.T, p *Parsed) {
			if p.Proto == ProtoTCP && p.TCPSeq() != 0x89abcdef {
				t.Errorf("seq %#x", p.TCPSeq())
			}
		}},
		{"SetTCPAck", func(p *Parsed) { p.SetTCPAck(0xfedcba98) }, func(t *testing.T, p *Parsed) {
			if p.Proto == ProtoTCP && p.TCPAck() != 0xfedcba98 {
				t.Errorf("ack %#x", p.TCPAck())
			}
		}},
		{"DecTTL", func(p *Parsed) {
			if !p.DecTTL() {
				panic("DecTTL refused TTL 64")
			}
		}, ttlIs(63)},
	}
	for name, orig := range setterCases() {
		for _, s := range setters {
			t.Run(name+"/"+s.name, func(t *testing.T) {
				b := bytes.Clone(orig)
				p := decode(t, b)
				zeroUDP := p.Proto == ProtoUDP && binary.BigEndian.Uint16(p.L4()[6:]) == 0
				s.apply(p)
				q := decode(t, p.Bytes())
				if q.Src != p.Src || q.Dst != p.Dst || q.SrcPort != p.SrcPort || q.DstPort != p.DstPort {
					t.Errorf("view disagrees with the bytes: view %x:%d→%x:%d, bytes %x:%d→%x:%d",
						p.Src, p.SrcPort, p.Dst, p.DstPort, q.Src, q.SrcPort, q.Dst, q.DstPort)
				}
				s.check(t, q)
				if err := verifyChecksums(q); err != nil {
					t.Error(err)
				}
				if zeroUDP && binary.BigEndian.Uint16(q.L4()[6:]) != 0 {
					t.Error("UDP/IPv4 zero checksum did not stay zero")
				}
			})
		}
	}
}

// TestSetterUDPZeroResult finds the port that makes the UDP checksum come
// out as zero and checks the setter sends 0xffff instead (RFC 768, RFC 8200
// 8.1), for both families.
func TestSetterUDPZeroResult(t *testing.T) {
	for _, ip := range []ipHdr{v4, v6} {
		orig := build(ip, udpHdr{SPort: 1, DPort: 2}, []byte("zz"))
		found := false
		for port := 0; port < 1<<16; port++ {
			b := bytes.Clone(orig)
			binary.BigEndian.PutUint16(b[len(b)-10:], uint16(port))
			b[len(b)-4], b[len(b)-3] = 0, 0
			var src, dst []byte
			if ip.V6 {
				src, dst = b[8:24], b[24:40]
			} else {
				src, dst = b[12:16], b[16:20]
			}
			if sum16(pseudo(ip.V6, src, dst, ProtoUDP, 10), b[len(b)-10:]) != 0xffff {
				continue
			}
			found = true
			p := decode(t, bytes.Clone(orig))
			p.SetSrcPort(uint16(port))
			if c := binary.BigEndian.Uint16(p.L4()[6:]); c != 0xffff {
				t.Errorf("v6=%v: checksum %#x after SetSrcPort(%d), want 0xffff", ip.V6, c, port)
			}
			if err := verifyChecksums(p); err != nil {
				t.Error(err)
			}
			break
		}
		if !found {
			t.Fatalf("v6=%v: no port gives a zero checksum", ip.V6)
		}
	}
}

func TestDecTTLAtOne(t *testing.T) {
	for _, ip := range []ipHdr{v4, v6} {
		for _, ttl := range []uint8{1, 0} {
			h := ip
			h.TTL = ttl
			b := build(h, tcpSyn, nil)
			if ttl == 0 {
				// The builder treats 0 as default; set it by hand.
				if ip.V6 {
					b[7] = 0
				} else {
					b[8] = 0
					binary.BigEndian.PutUint16(b[10:], 0)
					binary.BigEndian.PutUint16(b[10:], ^sum16(b[:20]))
				}
			}
			p := decode(t, b)
			before := bytes.Clone(b)
			if p.DecTTL() {
				t.Errorf("v6=%v TTL %d: DecTTL allowed forwarding", ip.V6, ttl)
			}
			if !bytes.Equal(before, p.Bytes()) {
				t.Errorf("v6=%v TTL %d: DecTTL changed a packet it refused", ip.V6, ttl)
			}
		}
	}
}

// TestNonFirstFragmentICMP guards against a non-first ICMP fragment, whose
// type reads as 0, being taken for an echo reply: SetICMPID would then
// write into the IP header.
func TestNonFirstFragmentICMP(t *testing.T) {
	b := build(with(v4, func(h *ipHdr) { h.FragOff = 8 }), rawL4{Proto: ProtoICMP, B: make([]byte, 16)}, nil)
	p := decode(t, b)
	before := bytes.Clone(b)
	p.SetICMPID(5)
	p.SetSrcPort(6)
	p.SetTCPSeq(7)
	if !bytes.Equal(before, p.Bytes()) {
		t.Errorf("setters changed a non-first fragment:\n% x\n% x", before, p.Bytes())
	}
}

func TestSetAddrCanonical(t *testing.T) {
	p := decode(t, build(v4, tcpSyn, nil))
	a := addr("10.9.8.7")
	a[10] = 0xff // garbage after the four IPv4 bytes
	p.SetSrc(a)
	if p.Src != addr("10.9.8.7") {
		t.Errorf("Src = %x, want the canonical IPv4 form", p.Src)
	}
	checksumsOK()(t, p)
}

func TestDecodeAllocs(t *testing.T) {
	pkts := setterCases()
	var p Parsed
	for name, b := range pkts {
		if n := testing.AllocsPerRun(100, func() {
			_ = p.Decode(b)
			_ = p.DecodeQuoted(b)
		}); n != 0 {
			t.Errorf("%s: %v allocs per Decode", name, n)
		}
	}
	b := pkts["tcp6 ext"]
	if n := testing.AllocsPerRun(100, func() {
		_ = p.Decode(b)
		p.SetSrc(addr("2001:db8::9"))
		p.SetDst(addr("2001:db8::a"))
		p.SetSrcPort(1)
		p.SetDstPort(2)
		p.SetTCPSeq(3)
		p.SetTCPAck(4)
		p.DecTTL()
		_ = p.L4ChecksumValid()
	}); n != 0 {
		t.Errorf("%v allocs per setter round", n)
	}
}
