package packet

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// fragBufs returns n buffers of capacity c.
func fragBufs(n, c int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = make([]byte, 0, c)
	}
	return out
}

// Options: security (130, copied, 11 bytes), record route (7, not copied),
// NOP, end of list: 20 bytes, a 40-byte header. Only security is copied.
var testOpts = append(append([]byte{130, 11, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 7, 7, 4, 0, 0, 0, 0), 1, 0)

func TestFragment4(t *testing.T) {
	tests := []struct {
		name    string
		opts    []byte
		payload int
		mtu     int
		sizes   []int // IP lengths of the fragments
		hdrs    []int // their header lengths
	}{
		{"udp 3000 at 1500", nil, 3000, 1500, []int{1500, 1500, 60}, []int{20, 20, 20}},
		{"exact multiple", nil, 2960, 1500, []int{1500, 1500}, []int{20, 20}},
		{"unaligned mtu", nil, 100, 77, []int{76, 64}, []int{20, 20}},
		{"minimum mtu, options", testOpts, 60, MinMTU4, []int{64, 64, 36}, []int{40, 32, 32}},
		{"options at 576", testOpts, 1200, 576, []int{576, 576, 152}, []int{40, 32, 32}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ip := with(v4, func(h *ipHdr) { h.ID = 0x1234; h.Opts = tt.opts; h.TOS = 0x20; h.TTL = 17 })
			orig := build(ip, udpHdr{SPort: 1, DPort: 2}, seqPayload(tt.payload-8))
			p := decode(t, orig)
			out := fragBufs(16, 1500)
			n, err := Fragment4(p, tt.mtu, out)
			if err != nil {
				t.Fatal(err)
			}
			if n != len(tt.sizes) {
				t.Fatalf("%d fragments, want %d", n, len(tt.sizes))
			}
			var data []byte
			for i, f := range out[:n] {
				last := i == n-1
				check(t, f, lenIs(tt.sizes[i]), fragIs(true, !last, len(data)), checksumsOK(), srcIs(ip.Src), dstIs(ip.Dst),
					ttlIs(17), protoIs(ProtoUDP), func(t *testing.T, q *Parsed) {
						if q.IPHeaderLen() != tt.hdrs[i] || q.FragID != 0x1234 || q.Bytes()[1] != 0x20 || q.DF() {
							t.Errorf("fragment %d: header %d ID %#x TOS %#x DF %v", i, q.IPHeaderLen(), q.FragID, q.Bytes()[1], q.DF())
						}
						if !last && (q.Len()-q.IPHeaderLen())%8 != 0 {
							t.Errorf("fragment %d: data %d not a multiple of 8", i, q.Len()-q.IPHeaderLen())
						}
						if q.Len() > tt.mtu {
							t.Errorf("fragment %d: %d bytes over MTU %d", i, q.Len(), tt.mtu)
						}
					})
				hl := int(f[0]&0xf) * 4
				if tt.opts != nil {
					if i == 0 && !bytes.Equal(f[20:hl], orig[20:40]) {
						t.Errorf("first fragment options % x", f[20:hl])
					}
					if i > 0 && !bytes.Equal(f[20:hl], []byte{130, 11, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0}) {
						t.Errorf("fragment %d options % x, want only the copied one", i, f[20:hl])
					}
				}
				data = append(data, f[hl:]...)
			}
			if !bytes.Equal(data, orig[p.IPHeaderLen():]) {
				t.Error("fragments' data do not add up to the packet's")
			}
		})
	}
}

func TestFragment4Refragment(t *testing.T) {
	orig := build(with(v4, func(h *ipHdr) { h.ID = 9 }), udpHdr{SPort: 1, DPort: 2}, seqPayload(3992))
	first := fragBufs(8, 1500)
	n, err := Fragment4(decode(t, orig), 1500, first)
	if err != nil || n != 3 {
		t.Fatalf("Fragment4 = %d, %v", n, err)
	}
	for i, f := range first[:n] {
		p := decode(t, f)
		second := fragBufs(8, 576)
		m, err := Fragment4(p, 576, second)
		if err != nil {
			t.Fatal(err)
		}
		off := p.FragOff
		for j, g := range second[:m] {
			lastOfAll := i == n-1 && j == m-1
			check(t, g, fragIs(true, !lastOfAll, off), checksumsOK(), func(t *testing.T, q *Parsed) {
				if q.Len() > 576 || q.FragID != 9 {
					t.Errorf("refragment %d.%d: %d bytes, ID %d", i, j, q.Len(), q.FragID)
				}
			})
			off += len(g) - 20
		}
		if off != p.FragOff+p.Len()-20 {
			t.Errorf("fragment %d: refragments cover up to %d, want %d", i, off, p.FragOff+p.Len()-20)
		}
	}
}

func TestFragment4Errors(t *testing.T) {
	big := build(v4, udpHdr{SPort: 1, DPort: 2}, seqPayload(2000))
	df := build(with(v4, func(h *ipHdr) { h.DF = true }), udpHdr{SPort: 1, DPort: 2}, seqPayload(2000))
	badOpts := build(with(v4, func(h *ipHdr) { h.Opts = []byte{130, 9, 0, 0} }), udpHdr{SPort: 1, DPort: 2}, seqPayload(2000))
	shortOpt := build(with(v4, func(h *ipHdr) { h.Opts = []byte{1, 1, 1, 130} }), udpHdr{SPort: 1, DPort: 2}, seqPayload(2000))
	lenOne := build(with(v4, func(h *ipHdr) { h.Opts = []byte{130, 1, 0, 0} }), udpHdr{SPort: 1, DPort: 2}, seqPayload(2000))
	tests := []struct {
		name string
		pkt  []byte
		mtu  int
		out  [][]byte
		want error
	}{
		{"df", df, 1500, fragBufs(4, 1500), ErrDontFragment},
		{"mtu below header plus 8", big, 27, fragBufs(64, 1500), ErrMTU},
		{"too many", big, 576, fragBufs(3, 1500), ErrTooManyFragments},
		{"no buffers", big, 1500, nil, ErrTooManyFragments},
		{"small buffer", big, 1500, fragBufs(4, 1000), ErrNoRoom},
		{"option past header", badOpts, 1500, fragBufs(4, 1500), ErrIPOptions},
		{"option length cut", shortOpt, 1500, fragBufs(4, 1500), ErrIPOptions},
		{"option length 1", lenOne, 1500, fragBufs(4, 1500), ErrIPOptions},
		{"ipv6", build(v6, udpHdr{}, seqPayload(2000)), 1280, fragBufs(4, 1500), ErrUnsupported},
		{"fits, no buffer", build(v4, tcpSyn, nil), 1500, nil, ErrTooManyFragments},
		{"fits, small buffer", build(v4, tcpSyn, nil), 1500, fragBufs(1, 39), ErrNoRoom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Fragment4(decode(t, tt.pkt), tt.mtu, tt.out); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	// A packet that fits is copied whole, DF or not.
	out := fragBufs(1, 2100)
	if n, err := Fragment4(decode(t, df), 2100, out); err != nil || n != 1 || !bytes.Equal(out[0], df) {
		t.Errorf("fitting packet: n %d err %v", n, err)
	}
}

// TestFragmentRoundTrip cuts packets with Fragment4, feeds the fragments to
// a Reassembler in random orders and expects the original bytes back.
func TestFragmentRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	r := NewReassembler(ReassemblyConfig{})
	out := make([]byte, 65535)
	for iter := range 300 {
		size := 30 + rng.IntN(9000)
		mtu := MinMTU4 + rng.IntN(1500)
		var opts []byte
		if rng.IntN(2) == 0 {
			opts = testOpts
		}
		ip := with(v4, func(h *ipHdr) { h.ID = uint32(iter); h.Opts = opts })
		orig := build(ip, udpHdr{SPort: 1, DPort: uint16(iter)}, seqPayload(size))
		frags := fragBufs(1+size/8, mtu)
		n, err := Fragment4(decode(t, orig), mtu, frags)
		if err != nil {
			t.Fatal(err)
		}
		frags = frags[:n]
		rng.Shuffle(len(frags), func(i, j int) { frags[i], frags[j] = frags[j], frags[i] })
		if n == 1 {
			if !bytes.Equal(frags[0], orig) {
				t.Fatalf("iter %d: a packet that fits was not copied whole", iter)
			}
			continue
		}
		if n > DefaultReassemblyMaxFragments {
			continue
		}
		got, err := feed(t, r, frags, 0, out)
		if err != nil {
			t.Fatalf("iter %d (size %d mtu %d, %d fragments): %v", iter, size, mtu, n, err)
		}
		if !bytes.Equal(got, orig) {
			t.Fatalf("iter %d: reassembled packet differs from the original", iter)
		}
	}
	if s := r.Stats(); s.Datagrams != 0 || s.Bytes != 0 {
		t.Errorf("state left behind: %+v", s)
	}
}

// feed adds frags in order and returns the datagram once one completes.
func feed(t testing.TB, r *Reassembler, frags [][]byte, now int64, out []byte) ([]byte, error) {
	t.Helper()
	var p Parsed
	for i, f := range frags {
		if err := p.Decode(f); err != nil {
			t.Fatalf("fragment %d: %v", i, err)
		}
		n, done, err := r.Add(&p, now, out)
		if err != nil {
			return nil, err
		}
		if done {
			if i != len(frags)-1 {
				t.Fatalf("done after %d of %d fragments", i+1, len(frags))
			}
			return out[:n], nil
		}
	}
	return nil, nil
}

// TestSetterOnFirstFragment checks the incremental checksum update on a
// first fragment, whose checksum covers data in later fragments: the
// datagram reassembled afterwards must be valid.
func TestSetterOnFirstFragment(t *testing.T) {
	for _, tr := range []l4{udpHdr{SPort: 1, DPort: 2}, tcpHdr{SPort: 1, DPort: 2, Seq: 5, Flags: TCPAck}} {
		orig := build(v4, tr, seqPayload(3000))
		frags := fragBufs(4, 1500)
		n, err := Fragment4(decode(t, orig), 1500, frags)
		if err != nil {
			t.Fatal(err)
		}
		p := decode(t, frags[0])
		p.SetSrcPort(40000)
		p.SetDstPort(443)
		got, err := feed(t, NewReassembler(ReassemblyConfig{}), frags[:n], 0, make([]byte, 65535))
		if err != nil || got == nil {
			t.Fatalf("reassembly: %v", err)
		}
		check(t, got, portsAre(40000, 443), checksumsOK())
	}
}

func TestFragment4Allocs(t *testing.T) {
	p := decode(t, build(with(v4, func(h *ipHdr) { h.Opts = testOpts }), udpHdr{SPort: 1, DPort: 2}, seqPayload(8000)))
	out := fragBufs(16, 1500)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := Fragment4(p, 1500, out); err != nil {
			panic(err)
		}
	}); n != 0 {
		t.Errorf("%v allocs per Fragment4", n)
	}
}
