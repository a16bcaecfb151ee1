package link

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"tungate/internal/packettest"
	"tungate/packet"
)

// gsoFrame is a virtio header of type typ and segment size seg in front
// of pkt, whose transport header starts at l4.
func gsoFrame(typ uint8, seg, l4 int, pkt []byte) []byte {
	f := make([]byte, vnetHdrLen+len(pkt))
	f[1] = typ
	binary.NativeEndian.PutUint16(f[4:], uint16(seg))
	binary.NativeEndian.PutUint16(f[6:], uint16(l4))
	copy(f[vnetHdrLen:], pkt)
	return f
}

// TestGSOSplit: a GSO frame met by the batched reads comes out as the
// kernel would have segmented it: every segment a valid packet (lengths,
// IPv4 header checksum, transport checksum), the payload in order and
// whole, IPv4 identifiers counting up, sequence numbers advancing, FIN and
// PSH on the last segment only, CWR on the first only.
func TestGSOSplit(t *testing.T) {
	payload := make([]byte, 2500)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	for _, c := range []struct {
		name string
		v6   bool
		tcp  bool
		typ  uint8
	}{
		{"tcp4", false, true, gsoTCPv4}, {"tcp6", true, true, gsoTCPv6},
		{"udp4", false, false, gsoUDPL4}, {"udp6", true, false, gsoUDPL4},
	} {
		ip := packettest.IP{V6: c.v6, Src: "10.1.0.2", Dst: "198.18.0.9", ID: 100}
		if c.v6 {
			ip.Src, ip.Dst = "fd01::2", "2001:db8::9"
		}
		var l4 packettest.L4 = packettest.UDP{SPort: 4000, DPort: 53}
		if c.tcp {
			l4 = packettest.TCP{SPort: 4000, DPort: 80, Seq: 0xfffffe00, Flags: 0x80 | 0x10 | 0x08 | 0x01, Win: 100}
		}
		pkt := packettest.Build(ip, l4, payload)
		hl := 20
		if c.v6 {
			hl = 40
		}
		f := gsoFrame(c.typ, 1000, hl, pkt)
		bufs := make([][]byte, 4)
		for i := range bufs {
			bufs[i] = make([]byte, Headroom+1500)
		}
		sizes := make([]int, len(bufs))
		n, err := gsoSplit(f, bufs, sizes, Headroom)
		if err != nil || n != 3 {
			t.Fatalf("%s: %d segments, %v; want 3", c.name, n, err)
		}
		var got []byte
		for i := range n {
			b := bufs[i][Headroom : Headroom+sizes[i]]
			var p packet.Parsed
			if err := p.Decode(b); err != nil {
				t.Fatalf("%s: segment %d: %v", c.name, i, err)
			}
			if !p.L4ChecksumValid() {
				t.Errorf("%s: segment %d: bad transport checksum", c.name, i)
			}
			if !c.v6 {
				if !packet.IPv4HeaderValid(b[:20]) {
					t.Errorf("%s: segment %d: bad IPv4 header checksum", c.name, i)
				}
				if id := binary.BigEndian.Uint16(b[4:]); id != uint16(100+i) {
					t.Errorf("%s: segment %d: IPv4 id %d", c.name, i, id)
				}
			}
			l4b := p.L4()
			hdr := 8
			if c.tcp {
				hdr = 20
				if seq := binary.BigEndian.Uint32(l4b[4:]); seq != 0xfffffe00+uint32(1000*i) {
					t.Errorf("%s: segment %d: seq %#x", c.name, i, seq)
				}
				fl := l4b[13]
				last := i == n-1
				if (fl&0x09 != 0) != last || (fl&0x80 != 0) != (i == 0) || fl&0x10 == 0 {
					t.Errorf("%s: segment %d: flags %#x", c.name, i, fl)
				}
			} else if ul := binary.BigEndian.Uint16(l4b[4:]); int(ul) != len(l4b) {
				t.Errorf("%s: segment %d: UDP length %d of %d", c.name, i, ul, len(l4b))
			}
			got = append(got, l4b[hdr:]...)
		}
		if !bytes.Equal(got, payload) {
			t.Errorf("%s: the segments' payloads are not the frame's", c.name)
		}
		// Too few buffers, and frames the kernel does not send.
		if n, err := gsoSplit(f, bufs[:2], sizes, Headroom); !errors.Is(err, errTooManySegments) || n != 2 {
			t.Errorf("%s: into 2 buffers: %d, %v", c.name, n, err)
		}
	}
	bufs := [][]byte{make([]byte, Headroom+1500)}
	sizes := []int{0}
	v4 := packettest.Build(packettest.IP{Src: "10.1.0.2", Dst: "10.1.0.3"}, packettest.UDP{SPort: 1, DPort: 2}, make([]byte, 100))
	for name, f := range map[string][]byte{
		"short":         {1, 2},
		"tcp6 type v4":  gsoFrame(gsoTCPv6, 50, 20, v4),
		"unknown type":  gsoFrame(3, 50, 20, v4),
		"zero size":     gsoFrame(gsoUDPL4, 0, 20, v4),
		"header beyond": gsoFrame(gsoUDPL4, 50, 200, v4),
		"tcp too short": gsoFrame(gsoTCPv4, 50, 20, v4[:30]),
	} {
		if _, err := gsoSplit(f, bufs, sizes, Headroom); err == nil {
			t.Errorf("%s: split without an error", name)
		}
	}
}

// TestFinishCsum: a CHECKSUM_PARTIAL packet's sum is completed, and a
// checksum position outside the packet is refused.
func TestFinishCsum(t *testing.T) {
	pkt := packettest.Build(packettest.IP{Src: "10.1.0.2", Dst: "10.1.0.3"}, packettest.UDP{SPort: 1, DPort: 2}, []byte("partial"))
	var p packet.Parsed
	if err := p.Decode(pkt); err != nil {
		t.Fatal(err)
	}
	// What the kernel hands over: the pseudo-header sum in the field.
	binary.BigEndian.PutUint16(pkt[26:], p.PseudoHeaderSum(packet.ProtoUDP, len(pkt)-20))
	if !finishCsum(pkt, 20, 6) {
		t.Fatal("refused")
	}
	if err := p.Decode(pkt); err != nil || !p.L4ChecksumValid() {
		t.Errorf("checksum not completed: %v", err)
	}
	if finishCsum(pkt, 20, uint16(len(pkt))) || finishCsum(pkt, uint16(len(pkt)+1), 0) {
		t.Error("a checksum outside the packet was written")
	}
}
