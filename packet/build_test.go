package packet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

const (
	gw4 = "192.0.2.254"
	gw6 = "2001:db8:1::fe"
)

func TestBuildICMPError(t *testing.T) {
	orig4 := build(with(v4, func(h *ipHdr) { h.TOS = 0x2b }), udpHdr{SPort: 4000, DPort: 53}, []byte("query"))
	orig6 := build(v6, tcpHdr{SPort: 4000, DPort: 22, Seq: 1, Flags: TCPSyn}, nil)
	tests := []struct {
		name      string
		orig      []byte
		src       string
		typ, code uint8
		param     uint32
	}{
		{"ttl exceeded", orig4, gw4, ICMPTimeExceeded, ICMPTTLExceeded, 0},
		{"reassembly exceeded", orig4, gw4, ICMPTimeExceeded, ICMPReassemblyExceeded, 0},
		{"net unreachable", orig4, gw4, ICMPDestUnreachable, ICMPNetUnreachable, 0},
		{"host unreachable", orig4, gw4, ICMPDestUnreachable, ICMPHostUnreachable, 0},
		{"proto unreachable", orig4, gw4, ICMPDestUnreachable, ICMPProtoUnreachable, 0},
		{"port unreachable", orig4, gw4, ICMPDestUnreachable, ICMPPortUnreachable, 0},
		{"admin prohibited", orig4, gw4, ICMPDestUnreachable, ICMPAdminProhibited, 0},
		{"frag needed", orig4, gw4, ICMPDestUnreachable, ICMPFragNeeded, 1400},
		{"param problem", orig4, gw4, ICMPParamProblem, 0, 9 << 24},
		{"v6 hop limit", orig6, gw6, ICMPv6TimeExceeded, ICMPv6HopLimitExceeded, 0},
		{"v6 reassembly", orig6, gw6, ICMPv6TimeExceeded, ICMPv6ReassemblyExceeded, 0},
		{"v6 no route", orig6, gw6, ICMPv6DestUnreachable, ICMPv6NoRoute, 0},
		{"v6 admin prohibited", orig6, gw6, ICMPv6DestUnreachable, ICMPv6AdminProhibited, 0},
		{"v6 address unreachable", orig6, gw6, ICMPv6DestUnreachable, ICMPv6AddressUnreachable, 0},
		{"v6 port unreachable", orig6, gw6, ICMPv6DestUnreachable, ICMPv6PortUnreachable, 0},
		{"v6 packet too big", orig6, gw6, ICMPv6PacketTooBig, 0, 1280},
		{"v6 param problem", orig6, gw6, ICMPv6ParamProblem, 1, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := decode(t, tt.orig)
			dst := make([]byte, 2000)
			n, err := BuildICMPError(dst, p, addr(tt.src), tt.typ, tt.code, tt.param)
			if err != nil {
				t.Fatal(err)
			}
			v := uint8(4)
			hl := 28
			if p.Version == 6 {
				v, hl = 6, 48
			}
			check(t, dst[:n], isV(v), srcIs(tt.src), dstIs(p.SrcIP().String()), ttlIs(DefaultTTL), lenIs(hl+len(tt.orig)),
				icmpIs(tt.typ, tt.code), icmpRestIs(tt.param), checksumsOK(), quoteIs(tt.orig),
				inner(srcIs(p.SrcIP().String()), portsAre(p.SrcPort, p.DstPort), protoIs(p.Proto)))
			if v == 4 {
				if dst[1] != 0xc0|0x2b&0x1e || dst[6]&0x40 != 0 {
					t.Errorf("TOS %#x flags %#x: want precedence internetwork control, DF clear", dst[1], dst[6])
				}
				id := binary.BigEndian.Uint16(dst[4:])
				n2, _ := BuildICMPError(dst, p, addr(tt.src), tt.typ, tt.code, tt.param)
				if binary.BigEndian.Uint16(dst[4:]) == id || n2 != n {
					t.Error("two errors share an IPv4 identification")
				}
			}
		})
	}
}

func TestBuildICMPErrorQuoteLimits(t *testing.T) {
	big4 := build(v4, udpHdr{SPort: 1, DPort: 2}, seqPayload(1472))
	big6 := build(v6, udpHdr{SPort: 1, DPort: 2}, seqPayload(1452))
	opts4 := build(with(v4, func(h *ipHdr) { h.Opts = make([]byte, 40) }), udpHdr{SPort: 1, DPort: 2}, seqPayload(100))
	tiny4 := build(v4, rawL4{Proto: 200, B: []byte{1, 2}}, nil)
	tests := []struct {
		name    string
		orig    []byte
		src     string
		dstLen  int
		wantLen int // 0: expect ErrNoRoom
	}{
		{"v4 to 576", big4, gw4, 2000, MaxICMPError4},
		{"v6 to 1280", big6, gw6, 2000, MaxICMPError6},
		{"v4 small buffer", big4, gw4, 100, 100},
		{"v6 small buffer", big6, gw6, 200, 200},
		{"v4 buffer below minimum", big4, gw4, 28 + 27, 0},
		{"v4 options need 68", opts4, gw4, 28 + 67, 0},
		{"v4 options exactly", opts4, gw4, 28 + 68, 28 + 68},
		{"v6 buffer below minimum", big6, gw6, 48 + 47, 0},
		{"v4 orig shorter than minimum", tiny4, gw4, 28 + 22, 28 + 22},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := decode(t, tt.orig)
			dst := make([]byte, tt.dstLen)
			n, err := BuildICMPError(dst, p, addr(tt.src), 3, 1, 0)
			if tt.wantLen == 0 {
				if !errors.Is(err, ErrNoRoom) {
					t.Fatalf("err = %v, want ErrNoRoom", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			hl := 28
			if p.Version == 6 {
				hl = 48
			}
			check(t, dst[:n], lenIs(tt.wantLen), checksumsOK(), quoteIs(tt.orig[:tt.wantLen-hl]))
		})
	}
}

func TestBuildICMPErrorRefused(t *testing.T) {
	at := func(ip ipHdr, src, dst string) ipHdr { ip.Src, ip.Dst = src, dst; return ip }
	udp := udpHdr{SPort: 1, DPort: 2}
	tests := []struct {
		name      string
		orig      []byte
		src       string
		typ, code uint8
		want      error // nil: allowed
	}{
		{"about dest unreachable", build(v4, icmpHdr{Type: 3}, build(v4, udp, nil)), gw4, 11, 0, ErrNoICMPError},
		{"about time exceeded", build(v4, icmpHdr{Type: 11}, build(v4, udp, nil)), gw4, 3, 1, ErrNoICMPError},
		{"about param problem", build(v4, icmpHdr{Type: 12}, build(v4, udp, nil)), gw4, 3, 1, ErrNoICMPError},
		{"about redirect", build(v4, icmpHdr{Type: 5}, build(v4, udp, nil)), gw4, 3, 1, ErrNoICMPError},
		{"about source quench", build(v4, icmpHdr{Type: 4}, build(v4, udp, nil)), gw4, 3, 1, ErrNoICMPError},
		{"about echo request", build(v4, icmpHdr{Type: 8}, nil), gw4, 11, 0, nil},
		{"about first fragment", build(with(v4, func(h *ipHdr) { h.MF = true }), udpHdr{Length: 3000}, make([]byte, 32)), gw4, 11, 1, nil},
		{"about non-first fragment", build(with(v4, func(h *ipHdr) { h.FragOff = 8 }), rawL4{Proto: ProtoUDP, B: make([]byte, 16)}, nil), gw4, 11, 0, ErrNoICMPError},
		{"to broadcast", build(at(v4, "10.0.0.1", "255.255.255.255"), udp, nil), gw4, 3, 3, ErrNoICMPError},
		{"to multicast", build(at(v4, "10.0.0.1", "224.0.0.251"), udp, nil), gw4, 3, 3, ErrNoICMPError},
		{"to multicast 239", build(at(v4, "10.0.0.1", "239.255.255.250"), udp, nil), gw4, 3, 3, ErrNoICMPError},
		{"from 0.0.0.0", build(at(v4, "0.0.0.0", "10.0.0.1"), udp, nil), gw4, 3, 3, ErrNoICMPError},
		{"from this network", build(at(v4, "0.1.2.3", "10.0.0.1"), udp, nil), gw4, 3, 3, ErrNoICMPError},
		{"from loopback", build(at(v4, "127.0.0.1", "10.0.0.1"), udp, nil), gw4, 3, 3, ErrNoICMPError},
		{"from multicast", build(at(v4, "224.0.0.1", "10.0.0.1"), udp, nil), gw4, 3, 3, ErrNoICMPError},
		{"from class E", build(at(v4, "240.0.0.1", "10.0.0.1"), udp, nil), gw4, 3, 3, ErrNoICMPError},
		{"from broadcast", build(at(v4, "255.255.255.255", "10.0.0.1"), udp, nil), gw4, 3, 3, ErrNoICMPError},
		{"sent from 0.0.0.0", build(v4, udp, nil), "0.0.0.0", 3, 3, ErrNoICMPError},
		{"sent from loopback", build(v4, udp, nil), "127.0.0.1", 3, 3, ErrNoICMPError},
		{"sent from multicast", build(v4, udp, nil), "224.0.0.1", 3, 3, ErrNoICMPError},
		{"echo is no error type", build(v4, udp, nil), gw4, 8, 0, ErrICMPType},

		{"v6 about dest unreachable", build(v6, icmpHdr{Type: 1}, build(v6, udp, nil)), gw6, 3, 0, ErrNoICMPError},
		{"v6 about packet too big", build(v6, icmpHdr{Type: 2}, build(v6, udp, nil)), gw6, 3, 0, ErrNoICMPError},
		{"v6 about time exceeded", build(v6, icmpHdr{Type: 3}, build(v6, udp, nil)), gw6, 1, 0, ErrNoICMPError},
		{"v6 about param problem", build(v6, icmpHdr{Type: 4}, build(v6, udp, nil)), gw6, 1, 0, ErrNoICMPError},
		{"v6 about unknown error type", build(v6, icmpHdr{Type: 100}, nil), gw6, 1, 0, ErrNoICMPError},
		{"v6 about echo request", build(v6, icmpHdr{Type: 128}, nil), gw6, 3, 0, nil},
		{"v6 about error behind headers", build(with(v6, func(h *ipHdr) { h.Ext = []extHdr{dstOpt} }), icmpHdr{Type: 1}, nil), gw6, 1, 0, ErrNoICMPError},
		{"v6 non-first fragment", build(with(v6, func(h *ipHdr) { h.FragOff = 8 }), rawL4{Proto: ProtoUDP, B: make([]byte, 16)}, nil), gw6, 3, 0, ErrNoICMPError},
		{"v6 non-first fragment too big", build(with(v6, func(h *ipHdr) { h.FragOff = 8 }), rawL4{Proto: ProtoUDP, B: make([]byte, 16)}, nil), gw6, 2, 0, nil},
		{"v6 to multicast", build(at(v6, "2001:db8::1", "ff02::1"), udp, nil), gw6, 1, 4, ErrNoICMPError},
		{"v6 to multicast too big", build(at(v6, "2001:db8::1", "ff0e::1"), udp, nil), gw6, 2, 0, nil},
		{"v6 to multicast option", build(at(v6, "2001:db8::1", "ff02::1"), udp, nil), gw6, 4, 2, nil},
		{"v6 to multicast header", build(at(v6, "2001:db8::1", "ff02::1"), udp, nil), gw6, 4, 0, ErrNoICMPError},
		{"v6 from unspecified", build(at(v6, "::", "2001:db8::1"), udp, nil), gw6, 1, 4, ErrNoICMPError},
		{"v6 from loopback", build(at(v6, "::1", "2001:db8::1"), udp, nil), gw6, 1, 4, ErrNoICMPError},
		{"v6 from multicast", build(at(v6, "ff02::2", "2001:db8::1"), udp, nil), gw6, 1, 4, ErrNoICMPError},
		{"v6 sent from unspecified", build(v6, udp, nil), "::", 1, 4, ErrNoICMPError},
		{"v6 sent from multicast", build(v6, udp, nil), "ff02::1", 1, 4, ErrNoICMPError},
		{"v6 echo is no error type", build(v6, udp, nil), gw6, 129, 0, ErrICMPType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := decode(t, tt.orig)
			dst := make([]byte, 1500)
			n, err := BuildICMPError(dst, p, addr(tt.src), tt.typ, tt.code, 0)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err == nil {
				check(t, dst[:n], icmpIs(tt.typ, tt.code), checksumsOK(), quoteIs(tt.orig))
			} else if n != 0 {
				t.Errorf("n = %d with an error", n)
			}
		})
	}
	var zero Parsed
	if _, err := BuildICMPError(make([]byte, 100), &zero, addr(gw4), 3, 0, 0); !errors.Is(err, ErrVersion) {
		t.Errorf("undecoded packet: err = %v", err)
	}
}

func TestBuildTCPReset(t *testing.T) {
	tests := []struct {
		name     string
		seg      tcpHdr
		payload  int
		seq, ack uint32
		flags    uint8
	}{
		{"syn", tcpHdr{Seq: 1000, Flags: TCPSyn}, 0, 0, 1001, TCPRst | TCPAck},
		{"syn/ack", tcpHdr{Seq: 5000, Ack: 1001, Flags: TCPSyn | TCPAck}, 0, 1001, 0, TCPRst},
		{"data with ack", tcpHdr{Seq: 10, Ack: 20, Flags: TCPAck | TCPPsh}, 100, 20, 0, TCPRst},
		{"fin", tcpHdr{Seq: 50, Flags: TCPFin}, 10, 0, 61, TCPRst | TCPAck},
		{"fin/ack", tcpHdr{Seq: 50, Ack: 70, Flags: TCPFin | TCPAck}, 0, 70, 0, TCPRst},
		{"syn+fin wraps", tcpHdr{Seq: 0xffffffff, Flags: TCPSyn | TCPFin}, 3, 0, 4, TCPRst | TCPAck},
		{"data without ack", tcpHdr{Seq: 7, Flags: TCPPsh}, 5, 0, 12, TCPRst | TCPAck},
		{"no flags", tcpHdr{Seq: 7}, 0, 0, 7, TCPRst | TCPAck},
	}
	for _, fam := range []ipHdr{v4, with(v6, func(h *ipHdr) { h.Ext = []extHdr{dstOpt} })} {
		for _, tt := range tests {
			t.Run(fam.Src+"/"+tt.name, func(t *testing.T) {
				seg := tt.seg
				seg.SPort, seg.DPort = 33000, 443
				seg.Opts = []byte{2, 4, 5, 0xb4}
				p := decode(t, build(fam, seg, seqPayload(tt.payload)))
				dst := make([]byte, 100)
				n, err := BuildTCPReset(dst, p)
				if err != nil {
					t.Fatal(err)
				}
				want := 40
				if fam.V6 {
					want = 60
				}
				check(t, dst[:n], lenIs(want), srcIs(fam.Dst), dstIs(fam.Src), portsAre(443, 33000), ttlIs(DefaultTTL),
					tcpIs(tt.seq, tt.ack, tt.flags), payloadIs([]byte{}), checksumsOK(), func(t *testing.T, r *Parsed) {
						if r.TCPWindow() != 0 || r.TCPHeaderLen() != 20 || !r.DF() {
							t.Errorf("window %d header %d DF %v", r.TCPWindow(), r.TCPHeaderLen(), r.DF())
						}
					})
			})
		}
	}
}

func TestBuildTCPResetRefused(t *testing.T) {
	good := build(v4, tcpSyn, nil)
	badCsum := bytes.Clone(good)
	badCsum[len(badCsum)-1] ^= 0xff // the urgent pointer: checksum now wrong
	tests := []struct {
		name   string
		pkt    []byte
		dstLen int
		want   error
	}{
		{"rst", build(v4, tcpHdr{Seq: 1, Flags: TCPRst}, nil), 100, ErrNoReset},
		{"rst/ack", build(v6, tcpHdr{Seq: 1, Ack: 2, Flags: TCPRst | TCPAck}, nil), 100, ErrNoReset},
		{"udp", build(v4, udpHdr{SPort: 1, DPort: 2}, nil), 100, ErrNoReset},
		{"first fragment", build(with(v4, func(h *ipHdr) { h.MF = true }), tcpSyn, nil), 100, ErrNoReset},
		{"non-first fragment", build(with(v4, func(h *ipHdr) { h.FragOff = 16 }), rawL4{Proto: ProtoTCP, B: make([]byte, 20)}, nil), 100, ErrNoReset},
		{"to multicast", build(with(v4, func(h *ipHdr) { h.Dst = "224.0.0.9" }), tcpSyn, nil), 100, ErrNoReset},
		{"to broadcast", build(with(v4, func(h *ipHdr) { h.Dst = "255.255.255.255" }), tcpSyn, nil), 100, ErrNoReset},
		{"from 0.0.0.0", build(with(v4, func(h *ipHdr) { h.Src = "0.0.0.0" }), tcpSyn, nil), 100, ErrNoReset},
		{"v6 to multicast", build(with(v6, func(h *ipHdr) { h.Dst = "ff02::1" }), tcpSyn, nil), 100, ErrNoReset},
		{"v6 from unspecified", build(with(v6, func(h *ipHdr) { h.Src = "::" }), tcpSyn, nil), 100, ErrNoReset},
		{"bad checksum", badCsum, 100, ErrL4Checksum},
		{"v4 buffer", good, 39, ErrNoRoom},
		{"v6 buffer", build(v6, tcpSyn, nil), 59, ErrNoRoom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := decode(t, tt.pkt)
			if n, err := BuildTCPReset(make([]byte, tt.dstLen), p); !errors.Is(err, tt.want) || n != 0 {
				t.Fatalf("BuildTCPReset = %d, %v; want %v", n, err, tt.want)
			}
		})
	}
}

func TestMakeEchoReply(t *testing.T) {
	tests := []struct {
		name string
		ip   ipHdr
	}{
		{"v4", with(v4, func(h *ipHdr) { h.TTL = 3; h.TOS = 0x10 })},
		{"v4 options", with(v4, func(h *ipHdr) { h.Opts = []byte{7, 7, 4, 0, 0, 0, 0} })}, // record route
		{"v6", with(v6, func(h *ipHdr) { h.TTL = 1; h.TOS = 0xb8 })},
		{"v6 ext headers", with(v6, func(h *ipHdr) { h.Ext = []extHdr{hop, dstOpt}; h.TOS = 0x28 })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, reply := uint8(ICMPEchoRequest), uint8(ICMPEchoReply)
			hl := 28
			if tt.ip.V6 {
				typ, reply, hl = ICMPv6EchoRequest, ICMPv6EchoReply, 48
			}
			data := seqPayload(57)
			b := build(tt.ip, icmpHdr{Type: typ, Code: 0, Rest: 0x77770009}, data)
			if tt.ip.V6 {
				b[1] |= 0x0a // a flow label the reply must not copy
			}
			p := decode(t, b)
			if err := MakeEchoReply(p); err != nil {
				t.Fatal(err)
			}
			check(t, p.Bytes(), srcIs(tt.ip.Dst), dstIs(tt.ip.Src), ttlIs(DefaultTTL), lenIs(hl+len(data)), icmpIs(reply, 0),
				icmpRestIs(0x77770009), portsAre(0x7777, 0x7777), payloadIs(data), checksumsOK())
			// p itself was decoded again.
			srcIs(tt.ip.Dst)(t, p)
			icmpIs(reply, 0)(t, p)
			if tt.ip.V6 {
				tc := p.Bytes()[0]<<4 | p.Bytes()[1]>>4
				if tc != tt.ip.TOS || p.Bytes()[1]&0x0f != 0 || p.Bytes()[2] != 0 || p.Bytes()[3] != 0 {
					t.Errorf("traffic class %#x (want %#x) or flow label kept: % x", tc, tt.ip.TOS, p.Bytes()[:4])
				}
			} else if p.Bytes()[1] != tt.ip.TOS {
				t.Errorf("TOS %#x, want %#x", p.Bytes()[1], tt.ip.TOS)
			}
		})
	}
}

func TestMakeEchoReplyRefused(t *testing.T) {
	echo := icmpHdr{Type: ICMPEchoRequest}
	echo6 := icmpHdr{Type: ICMPv6EchoRequest}
	bad := build(v4, echo, []byte("x"))
	bad[len(bad)-1] ^= 0xff
	tests := []struct {
		name string
		pkt  []byte
		want error
	}{
		{"echo reply", build(v4, icmpHdr{Type: ICMPEchoReply}, nil), ErrNoEchoReply},
		{"v6 echo reply", build(v6, icmpHdr{Type: ICMPv6EchoReply}, nil), ErrNoEchoReply},
		{"tcp", build(v4, tcpSyn, nil), ErrNoEchoReply},
		{"error", build(v4, icmpHdr{Type: 3}, build(v4, tcpSyn, nil)), ErrNoEchoReply},
		{"to broadcast", build(with(v4, func(h *ipHdr) { h.Dst = "255.255.255.255" }), echo, nil), ErrNoEchoReply},
		{"to multicast", build(with(v4, func(h *ipHdr) { h.Dst = "224.0.0.1" }), echo, nil), ErrNoEchoReply},
		{"from 0.0.0.0", build(with(v4, func(h *ipHdr) { h.Src = "0.0.0.0" }), echo, nil), ErrNoEchoReply},
		{"v6 to multicast", build(with(v6, func(h *ipHdr) { h.Dst = "ff02::1" }), echo6, nil), ErrNoEchoReply},
		{"v6 from unspecified", build(with(v6, func(h *ipHdr) { h.Src = "::" }), echo6, nil), ErrNoEchoReply},
		{"fragment", build(with(v4, func(h *ipHdr) { h.MF = true }), echo, make([]byte, 8)), ErrNoEchoReply},
		{"bad checksum", bad, ErrL4Checksum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := decode(t, tt.pkt)
			before := bytes.Clone(p.Bytes())
			if err := MakeEchoReply(p); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !bytes.Equal(before, p.Bytes()) {
				t.Error("refused request was modified")
			}
		})
	}
}

func TestBuildersAllocs(t *testing.T) {
	orig := decode(t, build(v6, tcpSyn, seqPayload(100)))
	dst := make([]byte, 1500)
	src := addr(gw6)
	echo := build(v4, icmpHdr{Type: ICMPEchoRequest}, seqPayload(56))
	buf := make([]byte, len(echo))
	var p Parsed
	if n := testing.AllocsPerRun(100, func() {
		_, _ = BuildICMPError(dst, orig, src, ICMPv6DestUnreachable, ICMPv6PortUnreachable, 0)
		_, _ = BuildTCPReset(dst, orig)
		copy(buf, echo)
		_ = p.Decode(buf)
		_ = MakeEchoReply(&p)
	}); n != 0 {
		t.Errorf("%v allocs per build round", n)
	}
}
