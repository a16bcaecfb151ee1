package packet

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// fuzzSeeds are well-formed packets of every shape the tests know.
func fuzzSeeds() [][]byte {
	seeds := [][]byte{
		build(with(v6, func(h *ipHdr) { h.Ext = []extHdr{hop, dstOpt, rtHdr, ahHdr} }), tcpSyn, []byte("x")),
		build(with(v6, func(h *ipHdr) { h.MF = true; h.ExtAfter = []extHdr{dstOpt} }), udpHdr{SPort: 1, DPort: 2, Length: 100}, nil),
		build(with(v6, func(h *ipHdr) { h.FragOff = 64 }), rawL4{Proto: ProtoUDP, B: make([]byte, 16)}, nil),
		build(with(v4, func(h *ipHdr) { h.FragOff = 64; h.ID = 3 }), rawL4{Proto: ProtoUDP, B: make([]byte, 16)}, nil),
		build(v4, icmpHdr{Type: 3, Code: 4, Rest: 1400}, build(v4, tcpSyn, []byte("quoted"))),
		build(v6, icmpHdr{Type: 1, Code: 4}, build(v6, udpHdr{SPort: 1, DPort: 2}, nil)),
		build(with(v4, func(h *ipHdr) { h.Opts = testOpts }), tcpHdr{SPort: 1, DPort: 2, Seq: 9, Ack: 8, Flags: TCPAck | TCPFin}, []byte("data")),
	}
	for _, b := range setterCases() {
		seeds = append(seeds, b)
	}
	return seeds
}

func FuzzDecode(f *testing.F) {
	for i, s := range fuzzSeeds() {
		f.Add(s, uint32(i)*0x9e3779b9, uint16(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, v uint32, w uint16) {
		var p Parsed
		if p.DecodeQuoted(data) == nil {
			touch(&p)
			b := bytes.Clone(p.Bytes())
			q := new(Parsed)
			if q.DecodeQuoted(b) == nil {
				mutate(q, v, w)
			}
		}
		if p.Decode(data) != nil {
			return
		}
		touch(&p)
		whole := !p.Fragment && p.HasL4
		// Differential: the package's checksum check agrees with the
		// tests' own where both are defined the same way.
		if whole && comparableChecksum(&p) {
			if got, want := p.L4ChecksumValid(), verifyChecksums(&p) == nil; got != want {
				t.Fatalf("L4ChecksumValid = %v, independent check %v", got, want)
			}
		}
		if !whole || !p.L4ChecksumValid() || verifyChecksums(&p) != nil {
			return
		}
		b := append(bytes.Clone(p.Bytes()), make([]byte, 64)...)[:p.Len()]
		q := decodeOrFail(t, b)
		mutate(q, v, w)
		r := decodeOrFail(t, q.Bytes())
		if r.Src != q.Src || r.Dst != q.Dst || r.SrcPort != q.SrcPort || r.DstPort != q.DstPort {
			t.Fatal("view and bytes disagree after setters")
		}
		if !r.L4ChecksumValid() {
			t.Fatalf("setters broke the transport checksum\n% x", q.Bytes())
		}
		if q.Proto == ProtoTCP || q.Proto == ProtoUDP {
			pl := len(q.Payload())
			off := int(v % uint32(pl+1))
			n := int(w) % (pl - off + 1)
			repl := make([]byte, int(w>>8)%40)
			for i := range repl {
				repl[i] = byte(v >> (i % 4 * 8))
			}
			err := q.ReplacePayload(off, n, repl)
			if err != nil {
				return // no room, or over 65535
			}
			r := decodeOrFail(t, q.Bytes())
			if !r.L4ChecksumValid() {
				t.Fatal("ReplacePayload left a bad checksum")
			}
		}
	})
}

func decodeOrFail(t *testing.T, b []byte) *Parsed {
	t.Helper()
	p := new(Parsed)
	if err := p.Decode(b); err != nil {
		t.Fatalf("Decode after a rewrite: %v\n% x", err, b)
	}
	return p
}

// comparableChecksum reports whether L4ChecksumValid and verifyChecksums
// define validity alike for p: they differ on UDP with no checksum (IPv6:
// verifyChecksums rejects it) and on a UDP length short of the IP payload.
func comparableChecksum(p *Parsed) bool {
	if p.Proto != ProtoUDP {
		return true
	}
	l4 := p.L4()
	return binary.BigEndian.Uint16(l4[6:]) != 0 && int(binary.BigEndian.Uint16(l4[4:])) == len(l4)
}

// touch calls every accessor; none may panic on a decoded packet.
func touch(p *Parsed) {
	_ = p.TCPSeq() + p.TCPAck() + uint32(p.TCPWindow()) + uint32(p.TCPHeaderLen()+p.IPHeaderLen()+p.Len())
	_, _, _, _ = p.TCPOptions(), p.Payload(), p.L4(), p.ICMPQuote()
	_, _, _, _ = p.IsEcho(), p.IsICMPError(), p.IsICMP(), p.DF()
	_, _, _ = p.L4ChecksumValid(), p.TTL(), p.PseudoHeaderSum(p.Proto, p.Len())
	_, _ = p.SrcIP(), p.DstIP()
}

// mutate runs every setter with values derived from v and w.
func mutate(p *Parsed, v uint32, w uint16) {
	var a Addr
	for i := range a {
		a[i] = byte(v >> (i % 4 * 8))
	}
	a[0] |= 1
	p.SetSrc(a)
	a[1] ^= 0xff
	p.SetDst(a)
	p.SetSrcPort(w)
	p.SetDstPort(^w)
	p.SetICMPID(w ^ 0x5555)
	p.SetTCPSeq(v)
	p.SetTCPAck(^v)
	p.DecTTL()
}

func FuzzReassemble(f *testing.F) {
	// Seeds: length-prefixed fragment sequences.
	orig := build(v4, udpHdr{SPort: 1, DPort: 2}, seqPayload(300))
	bufs := fragBufs(8, 100)
	n, _ := Fragment4(decode(f, orig), 100, bufs)
	var seq []byte
	for _, b := range bufs[:n] {
		seq = binary.BigEndian.AppendUint16(seq, uint16(len(b)))
		seq = append(seq, b...)
	}
	f.Add(seq, uint64(1))
	seq = nil
	for _, b := range fragment6(f, build(with(v6, func(h *ipHdr) { h.Ext = []extHdr{hop} }), udpHdr{}, seqPayload(300)), 48, 120, 5) {
		seq = binary.BigEndian.AppendUint16(seq, uint16(len(b)))
		seq = append(seq, b...)
	}
	f.Add(seq, uint64(2))
	f.Add(piece(false, 1, 8, false, []byte("12345678")), uint64(3))

	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		cfg := ReassemblyConfig{MaxBytes: 64 << 10, MaxDatagrams: 8, MaxFragments: 16}
		r := NewReassembler(cfg)
		out := make([]byte, 65535+40)
		var p Parsed
		now := int64(0)
		for rest := data; len(rest) >= 2; {
			l := int(binary.BigEndian.Uint16(rest))
			rest = rest[2:]
			l = min(l, len(rest))
			rec := bytes.Clone(rest[:l])
			rest = rest[l:]
			now += int64(seed%7) * sec
			if p.Decode(rec) != nil || !p.Fragment {
				continue
			}
			n, done, err := r.Add(&p, now, out)
			if err == nil && done {
				d := out[:n]
				if d[0]>>4 == 4 {
					if int(binary.BigEndian.Uint16(d[2:])) != n || sum16(d[:int(d[0]&0xf)*4]) != 0xffff || d[6]&0x3f != 0 || d[7] != 0 {
						t.Fatalf("bad IPv4 datagram header % x", d[:20])
					}
				} else if int(binary.BigEndian.Uint16(d[4:]))+40 != n {
					t.Fatalf("bad IPv6 payload length")
				}
			}
			if s := r.Stats(); s.Bytes > cfg.MaxBytes || s.Datagrams > cfg.MaxDatagrams || (s.Bytes == 0) != (s.Datagrams == 0) {
				t.Fatalf("limits broken: %+v", s)
			}
		}

		// Structured: the data as a UDP payload, fragmented, shuffled,
		// partly duplicated, must come back whole.
		if len(data) > 20000 {
			return
		}
		rng := rand.New(rand.NewPCG(seed, seed>>32))
		var frags [][]byte
		var want []byte
		if seed&1 == 0 {
			want = build(with(v4, func(h *ipHdr) { h.ID = uint32(seed) }), udpHdr{SPort: 1, DPort: 2}, data)
			mtu := 300 + int(seed>>8)%1200
			bufs := fragBufs(1+len(want)/(mtu-28), mtu)
			n, err := Fragment4(decode(t, want), mtu, bufs)
			if err != nil {
				t.Fatalf("Fragment4: %v", err)
			}
			frags = bufs[:n]
		} else {
			want = build(with(v6, func(h *ipHdr) { h.Ext = []extHdr{rtHdr} }), udpHdr{SPort: 1, DPort: 2}, data)
			frags = fragment6(t, want, 48, 300+int(seed>>8)%1200, uint32(seed))
		}
		if len(frags) < 2 {
			return
		}
		rng.Shuffle(len(frags), func(i, j int) { frags[i], frags[j] = frags[j], frags[i] })
		r = NewReassembler(ReassemblyConfig{})
		done := false
		for i := 0; i < len(frags); i++ {
			if p.Decode(frags[i]) != nil {
				t.Fatal("fragment does not decode")
			}
			n, ok, err := r.Add(&p, 0, out)
			if err != nil {
				t.Fatalf("fragment %d: %v", i, err)
			}
			if ok {
				if i != len(frags)-1 || !bytes.Equal(out[:n], want) {
					t.Fatal("reassembled datagram differs or came early")
				}
				done = true
			}
			if !ok && rng.IntN(4) == 0 { // an exact duplicate is ignored
				if _, dup, err := r.Add(&p, 0, out); dup || err != nil {
					t.Fatalf("duplicate: done %v err %v", dup, err)
				}
			}
		}
		if !done {
			t.Fatal("datagram never completed")
		}
	})
}

func FuzzBuildICMPError(f *testing.F) {
	for i, s := range fuzzSeeds() {
		f.Add(s, uint8(3+i%2*8), uint8(i%5), uint32(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, typ, code uint8, param uint32) {
		var orig Parsed
		if orig.Decode(data) != nil {
			return
		}
		src, limit := addr(gw4), MaxICMPError4
		if orig.Version == 6 {
			src, limit = addr(gw6), MaxICMPError6
		}
		dst := make([]byte, 1500)
		n, err := BuildICMPError(dst, &orig, src, typ, code, param)
		if err == nil {
			if orig.IsICMPError() || (orig.FragOff != 0 && orig.Version == 4) {
				t.Fatal("built an error about an ICMP error or a non-first fragment")
			}
			if n > limit {
				t.Fatalf("error of %d bytes over %d", n, limit)
			}
			e := decodeOrFail(t, dst[:n])
			if err := verifyChecksums(e); err != nil {
				t.Fatal(err)
			}
			if e.ICMPType != typ || e.ICMPCode != code || !bytes.HasPrefix(orig.Bytes(), e.ICMPQuote()) {
				t.Fatal("type, code or quote wrong")
			}
			var q Parsed
			_ = q.DecodeQuoted(e.ICMPQuote())
			touch(&q)
		}
		if n, err := BuildTCPReset(dst, &orig); err == nil {
			e := decodeOrFail(t, dst[:n])
			if err := verifyChecksums(e); err != nil || e.TCPFlags&TCPRst == 0 {
				t.Fatalf("bad RST: %v", err)
			}
		}
		b := bytes.Clone(orig.Bytes())
		if p := decodeOrFail(t, b); MakeEchoReply(p) == nil {
			if err := verifyChecksums(decodeOrFail(t, p.Bytes())); err != nil {
				t.Fatalf("bad echo reply: %v", err)
			}
		}
	})
}
