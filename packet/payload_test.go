package packet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// withRoom copies b into a buffer with extra capacity.
func withRoom(b []byte, extra int) []byte {
	r := make([]byte, len(b), len(b)+extra)
	copy(r, b)
	return r
}

func TestReplacePayload(t *testing.T) {
	const msg = "227 Entering Passive Mode (10,0,0,1,4,1).\r\n"
	at := bytes.Index([]byte(msg), []byte("10,0,0,1"))
	edits := []struct {
		name   string
		off, n int
		repl   string
	}{
		{"grow", at, 8, "198,51,100,200"},
		{"shrink", at, 8, "1,2,3,4"},
		{"same length", at, 8, "10,9,9,1"},
		{"insert", 0, 0, "PREFIX "},
		{"delete", 0, 4, ""},
		{"append", len(msg), 0, "tail"},
		{"everything", 0, len(msg), "x"},
		{"odd growth", 1, 1, "abc"},
	}
	families := []struct {
		name string
		ip   ipHdr
		tr   l4
	}{
		{"tcp4", v4, tcpHdr{SPort: 21, DPort: 40000, Seq: 77, Ack: 88, Flags: TCPAck | TCPPsh, Opts: []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}}},
		{"tcp4 options", with(v4, func(h *ipHdr) { h.Opts = []byte{0x94, 4, 0, 0} }), tcpHdr{SPort: 21, DPort: 40000, Flags: TCPAck}},
		{"udp4", v4, udpHdr{SPort: 5060, DPort: 5060}},
		{"udp4 no csum", v4, udpHdr{SPort: 5060, DPort: 5060, NoCsum: true}},
		{"tcp6 ext", with(v6, func(h *ipHdr) { h.Ext = []extHdr{hop, dstOpt} }), tcpHdr{SPort: 21, DPort: 40000, Seq: 77, Flags: TCPAck}},
		{"udp6", v6, udpHdr{SPort: 5060, DPort: 5060}},
	}
	for _, f := range families {
		for _, e := range edits {
			t.Run(f.name+"/"+e.name, func(t *testing.T) {
				orig := build(f.ip, f.tr, []byte(msg))
				b := withRoom(orig, 64)
				p := decode(t, b)
				seq, sport, dport := p.TCPSeq(), p.SrcPort, p.DstPort
				zeroUDP := p.Proto == ProtoUDP && binary.BigEndian.Uint16(p.L4()[6:]) == 0
				if err := p.ReplacePayload(e.off, e.n, []byte(e.repl)); err != nil {
					t.Fatal(err)
				}
				want := msg[:e.off] + e.repl + msg[e.off+e.n:]
				if string(p.Payload()) != want {
					t.Errorf("view payload %q, want %q", p.Payload(), want)
				}
				check(t, b[:p.Len()], lenIs(len(orig)-e.n+len(e.repl)), payloadIs([]byte(want)), portsAre(sport, dport),
					checksumsOK(), func(t *testing.T, q *Parsed) {
						if q.Proto == ProtoTCP && q.TCPSeq() != seq {
							t.Errorf("seq changed to %d", q.TCPSeq())
						}
						if !bytes.Equal(q.Bytes()[:q.L4Off], p.Bytes()[:p.L4Off]) || q.L4Off != p.L4Off {
							t.Error("view and bytes disagree")
						}
						if zeroUDP && binary.BigEndian.Uint16(q.L4()[6:]) != 0 {
							t.Error("UDP/IPv4 datagram without checksum got one")
						}
						if q.Proto == ProtoUDP && int(binary.BigEndian.Uint16(q.L4()[4:])) != len(q.L4()) {
							t.Errorf("UDP length %d, want %d", binary.BigEndian.Uint16(q.L4()[4:]), len(q.L4()))
						}
					})
			})
		}
	}
}

func TestReplacePayloadErrors(t *testing.T) {
	tcp := build(v4, tcpHdr{SPort: 1, DPort: 2, Flags: TCPAck}, []byte("0123456789"))
	huge := build(v4, udpHdr{SPort: 1, DPort: 2}, make([]byte, 0xffff-28))
	tests := []struct {
		name   string
		pkt    []byte
		room   int
		off, n int
		repl   string
		want   error
	}{
		{"negative offset", tcp, 10, -1, 1, "x", ErrPayloadRange},
		{"negative length", tcp, 10, 0, -1, "x", ErrPayloadRange},
		{"past the end", tcp, 10, 5, 6, "x", ErrPayloadRange},
		{"offset past the end", tcp, 10, 11, 0, "x", ErrPayloadRange},
		{"no room", tcp, 2, 0, 1, "abcd", ErrNoRoom},
		{"over 65535", huge, 10, 0, 0, "x", ErrNoRoom},
		{"fragment", build(with(v4, func(h *ipHdr) { h.MF = true }), tcpHdr{SPort: 1, DPort: 2}, []byte("01234567")), 10, 0, 1, "x", ErrUnsupported},
		{"icmp", build(v4, icmpHdr{Type: 8}, []byte("abc")), 10, 0, 1, "x", ErrUnsupported},
		{"esp", build(v4, rawL4{Proto: ProtoESP, B: make([]byte, 16)}, nil), 10, 0, 1, "x", ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := withRoom(tt.pkt, tt.room)
			p := decode(t, b)
			if err := p.ReplacePayload(tt.off, tt.n, []byte(tt.repl)); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !bytes.Equal(b[:cap(b)][:len(tt.pkt)], tt.pkt) || p.Len() != len(tt.pkt) {
				t.Error("refused edit changed the packet")
			}
		})
	}
	// Growing up to exactly cap works.
	b := withRoom(tcp, 3)
	p := decode(t, b)
	if err := p.ReplacePayload(0, 1, []byte("abcd")); err != nil || p.Len() != len(tcp)+3 {
		t.Errorf("growth to cap: len %d err %v", p.Len(), err)
	}
}

func TestReplacePayloadAllocs(t *testing.T) {
	b := withRoom(build(v4, tcpHdr{SPort: 21, DPort: 1, Flags: TCPAck}, []byte("PORT 10,0,0,1,4,1\r\n")), 64)
	var p Parsed
	long, short := []byte("198,51,100,200"), []byte("10,0,0,1")
	if n := testing.AllocsPerRun(100, func() {
		_ = p.Decode(b)
		_ = p.ReplacePayload(5, 8, long)
		_ = p.ReplacePayload(5, len(long), short)
	}); n != 0 {
		t.Errorf("%v allocs per ReplacePayload round", n)
	}
}
