package packet

import (
	"encoding/binary"
	"testing"
)

// mssOf returns the MSS option of a decoded TCP packet, 0 when absent.
func mssOf(p *Parsed) uint16 {
	o := p.TCPOptions()
	for i := 0; i < len(o); {
		if o[i] == 1 {
			i++
			continue
		}
		if o[i] == 0 || i+1 >= len(o) || o[i+1] < 2 {
			return 0
		}
		if o[i] == tcpOptMSS {
			return binary.BigEndian.Uint16(o[i+2:])
		}
		i += int(o[i+1])
	}
	return 0
}

func TestClampTCPMSS(t *testing.T) {
	mss := func(v uint16) []byte { return []byte{2, 4, byte(v >> 8), byte(v)} }
	even := append(mss(1460), 1, 3, 3, 7)                   // MSS first, as stacks send it
	odd := append([]byte{1}, append(mss(1460), 1, 1, 1)...) // MSS at an odd offset
	for _, tc := range []struct {
		name    string
		ip      ipHdr
		flags   uint8
		opts    []byte
		max     uint16
		want    uint16
		changed bool
	}{
		{"v4 syn", ipHdr{Src: "10.0.0.1", Dst: "192.0.2.1"}, TCPSyn, even, 1380, 1380, true},
		{"v4 syn odd offset", ipHdr{Src: "10.0.0.1", Dst: "192.0.2.1"}, TCPSyn, odd, 1380, 1380, true},
		{"v6 syn-ack", ipHdr{V6: true, Src: "fd00::1", Dst: "2001:db8::1"}, TCPSyn | TCPAck, even, 1360, 1360, true},
		{"v6 syn odd offset", ipHdr{V6: true, Src: "fd00::1", Dst: "2001:db8::1"}, TCPSyn, odd, 1360, 1360, true},
		{"already smaller", ipHdr{Src: "10.0.0.1", Dst: "192.0.2.1"}, TCPSyn, mss(1200), 1380, 1200, false},
		{"not a syn", ipHdr{Src: "10.0.0.1", Dst: "192.0.2.1"}, TCPAck, even, 1380, 1460, false},
		{"no option", ipHdr{Src: "10.0.0.1", Dst: "192.0.2.1"}, TCPSyn, []byte{1, 1, 1, 1}, 1380, 0, false},
		{"truncated option", ipHdr{Src: "10.0.0.1", Dst: "192.0.2.1"}, TCPSyn, []byte{1, 1, 1, 2}, 1380, 0, false},
		{"zero length option", ipHdr{Src: "10.0.0.1", Dst: "192.0.2.1"}, TCPSyn, []byte{8, 0, 2, 4, 5, 180, 0, 0}, 1380, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := build(tc.ip, tcpHdr{SPort: 40000, DPort: 443, Flags: tc.flags, Win: 1000, Opts: tc.opts}, []byte("data"))
			var p Parsed
			if err := p.Decode(b); err != nil {
				t.Fatal(err)
			}
			if !p.L4ChecksumValid() {
				t.Fatal("built packet has a bad checksum")
			}
			if got := p.ClampTCPMSS(tc.max); got != tc.changed {
				t.Fatalf("ClampTCPMSS = %v, want %v", got, tc.changed)
			}
			var q Parsed
			if err := q.Decode(b); err != nil {
				t.Fatal(err)
			}
			if got := mssOf(&q); got != tc.want {
				t.Errorf("MSS = %d, want %d", got, tc.want)
			}
			if !q.L4ChecksumValid() {
				t.Error("checksum wrong after clamping")
			}
		})
	}
}

func BenchmarkClampTCPMSS(b *testing.B) {
	pkt := build(ipHdr{Src: "10.0.0.1", Dst: "192.0.2.1"}, tcpHdr{SPort: 1, DPort: 2, Flags: TCPSyn, Opts: []byte{2, 4, 5, 180, 1, 3, 3, 7}}, nil)
	var p Parsed
	if err := p.Decode(pkt); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		// Alternate so every call rewrites.
		binary.BigEndian.PutUint16(pkt[p.L4Off+22:], 1460)
		p.ClampTCPMSS(1380 - uint16(i&1))
	}
}
