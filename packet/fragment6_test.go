package packet

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestFragment6RoundTrip(t *testing.T) {
	// An IPv6 UDP datagram of 3000 bytes with a hop-by-hop header.
	payload := make([]byte, 3000)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	udp := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], 1000)
	binary.BigEndian.PutUint16(udp[2:], 2000)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[8:], payload)
	hbh := []byte{17, 0, 1, 4, 0, 0, 0, 0} // next: UDP; PadN
	pkt := make([]byte, 40+len(hbh)+len(udp))
	pkt[0] = 0x60
	binary.BigEndian.PutUint16(pkt[4:], uint16(len(hbh)+len(udp)))
	pkt[6], pkt[7] = 0, 64
	pkt[8], pkt[23] = 0xfd, 2
	pkt[24], pkt[39] = 0x20, 9
	copy(pkt[40:], hbh)
	copy(pkt[48:], udp)
	var p Parsed
	if err := p.Decode(pkt); err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, 8)
	for i := range out {
		out[i] = make([]byte, 1280)
	}
	n, err := Fragment6(&p, 1280, 0xabcd, out)
	if err != nil || n != 3 {
		t.Fatalf("Fragment6: %d %v", n, err)
	}
	r := NewReassembler(ReassemblyConfig{})
	whole := make([]byte, 65575)
	var got int
	for i := n - 1; i >= 0; i-- { // out of order on purpose
		if len(out[i]) > 1280 {
			t.Fatalf("fragment %d is %d bytes", i, len(out[i]))
		}
		var f Parsed
		if err := f.Decode(out[i]); err != nil || !f.Fragment || f.FragID != 0xabcd {
			t.Fatalf("fragment %d: %v %+v", i, err, f)
		}
		if out[i][6] != 0 || out[i][40] != 44 {
			t.Fatalf("fragment %d: unfragmentable part not kept", i)
		}
		k, done, err := r.Add(&f, 1, whole)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			got = k
		}
	}
	if got != len(pkt) || !bytes.Equal(whole[:got], pkt) {
		t.Fatalf("reassembled %d bytes, want the original %d", got, len(pkt))
	}
	if _, err := Fragment6(&p, 60, 1, out); err != ErrMTU {
		t.Fatalf("tiny size: %v", err)
	}
	if _, err := Fragment6(&p, 1280, 1, out[:2]); err != ErrTooManyFragments {
		t.Fatalf("few buffers: %v", err)
	}
}
