package packet

import (
	"bytes"
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// offloadTCP builds a TCP segment with a payload and a garbage checksum.
func offloadTCP(v6 bool, payload int) []byte {
	hl := header.IPv4MinimumSize
	if v6 {
		hl = header.IPv6MinimumSize
	}
	b := make([]byte, hl+header.TCPMinimumSize+payload)
	for i := hl + header.TCPMinimumSize; i < len(b); i++ {
		b[i] = byte(i * 7)
	}
	if v6 {
		header.IPv6(b).Encode(&header.IPv6Fields{PayloadLength: uint16(len(b) - hl), TransportProtocol: header.TCPProtocolNumber,
			HopLimit: 64, SrcAddr: tcpip.AddrFrom16([16]byte{0xfd, 15: 1}), DstAddr: tcpip.AddrFrom16([16]byte{0xfd, 15: 2})})
	} else {
		header.IPv4(b).Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(header.TCPProtocolNumber),
			Flags:   header.IPv4FlagDontFragment,
			SrcAddr: tcpip.AddrFrom4([4]byte{10, 0, 2, 2}), DstAddr: tcpip.AddrFrom4([4]byte{10, 0, 2, 100})})
		header.IPv4(b).SetChecksum(^header.IPv4(b).CalculateChecksum())
	}
	header.TCP(b[hl:]).Encode(&header.TCPFields{SrcPort: 40000, DstPort: 5201, SeqNum: 7, AckNum: 9,
		DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagAck, WindowSize: 512, Checksum: 0xbeef})
	return b
}

func TestFinishTCPChecksum(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, n := range []int{0, 1, 1460, 65000} {
			b := offloadTCP(v6, n)
			if !FinishTCPChecksum(b) {
				t.Fatalf("v6=%v payload %d: not finished", v6, n)
			}
			var p Parsed
			if err := p.Decode(b); err != nil {
				t.Fatal(err)
			}
			if !p.L4ChecksumValid() {
				t.Errorf("v6=%v payload %d: checksum still wrong", v6, n)
			}

			// The pseudo-header form completed over the TCP header and
			// payload, as a device does, gives the same sum.
			c := offloadTCP(v6, n)
			off := TCPPseudoChecksum(c)
			if off != p.L4Off {
				t.Fatalf("TCPPseudoChecksum = %d, want the TCP offset %d", off, p.L4Off)
			}
			binary.BigEndian.PutUint16(c[off+16:], ^checksum.Checksum(c[off:], 0))
			if got, want := binary.BigEndian.Uint16(c[off+16:]), binary.BigEndian.Uint16(b[off+16:]); got != want {
				t.Errorf("v6=%v payload %d: completed pseudo sum %#04x, full sum %#04x", v6, n, got, want)
			}
		}
	}
}

// What is not a whole TCP packet is left alone, whatever its bytes.
func TestOffloadRefuses(t *testing.T) {
	frag := offloadTCP(false, 100)
	binary.BigEndian.PutUint16(frag[6:], 0x2000) // more fragments
	header.IPv4(frag).SetChecksum(0)
	udp := offloadTCP(false, 100)
	udp[9] = ProtoUDP
	short := offloadTCP(true, 0)[:50]
	lying := offloadTCP(false, 100)
	binary.BigEndian.PutUint16(lying[2:], 60) // total length shorter than the buffer
	badIHL := offloadTCP(false, 100)
	badIHL[0] = 0x44 // a 16-byte header: below the minimum
	for name, b := range map[string][]byte{"fragment": frag, "udp": udp, "short": short, "length": lying, "ihl": badIHL, "empty": nil, "v5": {0x50}} {
		before := append([]byte(nil), b...)
		if FinishTCPChecksum(b) || TCPPseudoChecksum(b) >= 0 {
			t.Errorf("%s: accepted", name)
		}
		if string(b) != string(before) {
			t.Errorf("%s: changed", name)
		}
	}
}

func FuzzOffload(f *testing.F) {
	f.Add(offloadTCP(false, 10))
	f.Add(offloadTCP(true, 10))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := append([]byte(nil), b...)
		if FinishTCPChecksum(b) {
			var p Parsed
			if p.Decode(b) == nil && p.Proto == ProtoTCP && !p.Fragment && !p.L4ChecksumValid() {
				t.Fatalf("finished but invalid: % x", b)
			}
		}
		d := append([]byte(nil), c...)
		off := TCPPseudoChecksum(c)
		// The same packet with only its first k bytes at hand (a packet
		// in pieces): never a panic, and where the headers are all there
		// the same answer and the same pseudo-header sum.
		for k := 0; k <= len(d); k++ {
			h := append([]byte(nil), d[:k]...)
			got := TCPPseudoChecksumLen(h, len(d))
			if got >= 0 && (got != off || !bytes.Equal(h, c[:k])) {
				t.Fatalf("head of %d bytes: offset %d, whole packet %d", k, got, off)
			}
		}
	})
}
