package packet

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// TestIncrementalMatchesRecompute checks the RFC 1624 update against a sum
// recomputed from scratch, for random buffers and random rewrites of
// aligned runs of words (the shapes the setters and SACK rewriting use).
func TestIncrementalMatchesRecompute(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, 2*(4+r.IntN(30)))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if r.IntN(8) == 0 {
			clear(b) // zero words exercise the two forms of zero
		}
		// Word 1 stays nonzero, as an IP version field does: over all-zero
		// data eqn. 3 yields 0x0000 where a recompute yields 0xffff (both
		// are zero in one's complement), and no header tungate edits is
		// all zero.
		b[2] = 0x45
		binary.BigEndian.PutUint16(b, 0)
		binary.BigEndian.PutUint16(b, ^checksum.Checksum(b, 0))
		lo := 4 + 2*r.IntN(len(b)/2-2)
		hi := lo + 2*(1+r.IntN((len(b)-lo)/2))
		old := append([]byte(nil), b[lo:hi]...)
		for i := lo; i < hi; i++ {
			switch r.IntN(3) {
			case 0:
				b[i] = 0
			case 1:
				b[i] = 0xff
			default:
				b[i] = byte(r.Uint32())
			}
		}
		hc := UpdateChecksum(binary.BigEndian.Uint16(b), ChecksumDelta(old, b[lo:hi]))
		binary.BigEndian.PutUint16(b, hc)
		if got := checksum.Checksum(b, 0); got != 0xffff {
			t.Fatalf("after incremental update the sum is %#x, want 0xffff (% x)", got, b)
		}
		if hi-lo == 2 {
			if d, d16 := ChecksumDelta(old, b[lo:hi]), ChecksumDelta16(binary.BigEndian.Uint16(old), binary.BigEndian.Uint16(b[lo:])); d != d16 {
				t.Fatalf("ChecksumDelta %#x != ChecksumDelta16 %#x", d, d16)
			}
		}
	}
}

func TestIPv4HeaderChecksum(t *testing.T) {
	h := []byte{0x45, 0, 0, 0x54, 0x12, 0x34, 0x40, 0, 64, 1, 0xde, 0xad, 10, 0, 0, 1, 10, 0, 0, 2}
	SetIPv4Checksum(h)
	if !IPv4HeaderValid(h) {
		t.Fatalf("SetIPv4Checksum left a bad header: % x", h)
	}
	if want := ^checksum.Checksum(append(append([]byte(nil), h[:10]...), h[12:]...), 0); binary.BigEndian.Uint16(h[10:]) != want {
		t.Fatalf("checksum %#x, want %#x", binary.BigEndian.Uint16(h[10:]), want)
	}
	h[8]--
	if IPv4HeaderValid(h) {
		t.Fatal("IPv4HeaderValid accepted a changed header")
	}
}

func TestPseudoSumFamilies(t *testing.T) {
	src := []byte{192, 0, 2, 1, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9}
	dst := []byte{198, 51, 100, 7, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9}
	// IPv4 reads only the first four bytes of each address.
	want4 := checksum.Checksum([]byte{192, 0, 2, 1, 198, 51, 100, 7, 0, ProtoTCP, 0, 40}, 0)
	if got := PseudoSum(4, src, dst, ProtoTCP, 40); got != want4 {
		t.Fatalf("PseudoSum v4 = %#x, want %#x", got, want4)
	}
	buf := append(append(append([]byte(nil), src...), dst...), 0, 0, 0, 40, 0, 0, 0, ProtoUDP)
	if got, want := PseudoSum(6, src, dst, ProtoUDP, 40), checksum.Checksum(buf, 0); got != want {
		t.Fatalf("PseudoSum v6 = %#x, want %#x", got, want)
	}
}
