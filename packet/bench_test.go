package packet

import "testing"

func benchDecode(b *testing.B, pkt []byte) {
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	var p Parsed
	for b.Loop() {
		if err := p.Decode(pkt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeTCP4(b *testing.B) {
	benchDecode(b, build(v4, tcpHdr{SPort: 40000, DPort: 443, Seq: 1, Ack: 2, Flags: TCPAck}, make([]byte, 1400)))
}

func BenchmarkDecodeUDP6(b *testing.B) {
	benchDecode(b, build(v6, udpHdr{SPort: 40000, DPort: 53}, make([]byte, 512)))
}

func BenchmarkDecodeTCP6Ext(b *testing.B) {
	benchDecode(b, build(with(v6, func(h *ipHdr) { h.Ext = []extHdr{hop, dstOpt, rtHdr} }), tcpSyn, nil))
}

// BenchmarkRewriteNAT4 is the SNAT rewrite of every forwarded packet of a
// masqueraded connection: source address and port, three checksums.
func BenchmarkRewriteNAT4(b *testing.B) {
	pkt := build(v4, tcpHdr{SPort: 40000, DPort: 443, Flags: TCPAck}, make([]byte, 1400))
	var p Parsed
	if err := p.Decode(pkt); err != nil {
		b.Fatal(err)
	}
	addrs := [2]Addr{addr("198.51.100.1"), addr("10.0.0.1")}
	ports := [2]uint16{61000, 40000}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p.SetSrc(addrs[i&1])
		p.SetSrcPort(ports[i&1])
		i++
	}
}

func BenchmarkRewriteNAT6(b *testing.B) {
	pkt := build(v6, udpHdr{SPort: 40000, DPort: 443}, make([]byte, 1200))
	var p Parsed
	if err := p.Decode(pkt); err != nil {
		b.Fatal(err)
	}
	addrs := [2]Addr{addr("2001:db8:ffff::1"), addr("2001:db8::1")}
	ports := [2]uint16{61000, 40000}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p.SetSrc(addrs[i&1])
		p.SetSrcPort(ports[i&1])
		i++
	}
}

func BenchmarkBuildICMPError(b *testing.B) {
	for _, tc := range []struct {
		name string
		pkt  []byte
		src  Addr
		typ  uint8
	}{
		{"v4", build(v4, tcpSyn, make([]byte, 1400)), addr(gw4), ICMPDestUnreachable},
		{"v6", build(v6, tcpSyn, make([]byte, 1400)), addr(gw6), ICMPv6DestUnreachable},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var p Parsed
			if err := p.Decode(tc.pkt); err != nil {
				b.Fatal(err)
			}
			dst := make([]byte, 1500)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := BuildICMPError(dst, &p, tc.src, tc.typ, 3, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkBuildTCPReset(b *testing.B) {
	for _, tc := range []struct {
		name string
		pkt  []byte
	}{
		{"v4", build(v4, tcpHdr{SPort: 1, DPort: 2, Seq: 3, Ack: 4, Flags: TCPAck}, make([]byte, 100))},
		{"v6", build(v6, tcpSyn, nil)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var p Parsed
			if err := p.Decode(tc.pkt); err != nil {
				b.Fatal(err)
			}
			dst := make([]byte, 100)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := BuildTCPReset(dst, &p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkMakeEchoReply(b *testing.B) {
	pkt := build(v4, icmpHdr{Type: ICMPEchoRequest, Rest: 0x10001}, make([]byte, 56))
	buf := make([]byte, len(pkt))
	var p Parsed
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, pkt)
		if err := p.Decode(buf); err != nil {
			b.Fatal(err)
		}
		if err := MakeEchoReply(&p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFragment4(b *testing.B) {
	pkt := build(v4, udpHdr{SPort: 1, DPort: 2}, make([]byte, 8000))
	var p Parsed
	if err := p.Decode(pkt); err != nil {
		b.Fatal(err)
	}
	out := fragBufs(8, 1500)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if _, err := Fragment4(&p, 1500, out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReassemble4 puts a 4000-byte datagram back together from three
// fragments per iteration.
func BenchmarkReassemble4(b *testing.B) {
	pkt := build(v4, udpHdr{SPort: 1, DPort: 2}, make([]byte, 4000))
	var p Parsed
	if err := p.Decode(pkt); err != nil {
		b.Fatal(err)
	}
	frags := fragBufs(8, 1500)
	n, err := Fragment4(&p, 1500, frags)
	if err != nil {
		b.Fatal(err)
	}
	frags = frags[:n]
	r := NewReassembler(ReassemblyConfig{})
	out := make([]byte, 65535)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		for _, f := range frags {
			if err := p.Decode(f); err != nil {
				b.Fatal(err)
			}
			if _, _, err := r.Add(&p, 0, out); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkReplacePayload(b *testing.B) {
	pkt := withRoom(build(v4, tcpHdr{SPort: 21, DPort: 1, Flags: TCPAck}, []byte("227 Entering Passive Mode (10,0,0,1,4,1).\r\n")), 64)
	var p Parsed
	if err := p.Decode(pkt); err != nil {
		b.Fatal(err)
	}
	long, short := []byte("198,51,100,200"), []byte("10,0,0,1")
	b.ReportAllocs()
	for b.Loop() {
		if err := p.ReplacePayload(27, len(short), long); err != nil {
			b.Fatal(err)
		}
		if err := p.ReplacePayload(27, len(long), short); err != nil {
			b.Fatal(err)
		}
	}
}
