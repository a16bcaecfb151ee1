package packet

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

const sec = int64(time.Second)

// piece builds a fragment of datagram id (protocol 200, so no transport
// header is parsed) carrying data at byte offset off.
func piece(fam6 bool, id uint32, off int, mf bool, data []byte) []byte {
	ip := v4
	if fam6 {
		ip = v6
	}
	ip.ID, ip.FragOff, ip.MF = id, off, mf
	ip.Frag = fam6
	return build(ip, rawL4{Proto: 200, B: data}, nil)
}

// add decodes and adds one fragment.
func add(t testing.TB, r *Reassembler, b []byte, now int64, out []byte) (ReassemblyResult, error) {
	t.Helper()
	var p Parsed
	if err := p.Decode(b); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return r.Reassemble(&p, now, out)
}

func famName(fam6 bool) string {
	if fam6 {
		return "v6"
	}
	return "v4"
}

func TestReassemble6RoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	r := NewReassembler(ReassemblyConfig{})
	out := make([]byte, 65535+40)
	for iter := range 200 {
		var ip ipHdr
		unfrag := 40
		switch iter % 3 {
		case 0:
			ip = v6
		case 1: // unfragmentable headers before, a destination option after
			ip = with(v6, func(h *ipHdr) { h.Ext = []extHdr{hop, rtHdr, dstOpt} })
			unfrag = 40 + 8 + 8
		case 2:
			ip = with(v6, func(h *ipHdr) { h.Ext = []extHdr{hop} })
			unfrag = 48
		}
		orig := build(ip, udpHdr{SPort: 1, DPort: uint16(iter)}, seqPayload(rng.IntN(12000)+200))
		mtu := 200 + rng.IntN(1400)
		frags := fragment6(t, orig, unfrag, mtu, uint32(iter))
		if len(frags) < 2 || len(frags) > DefaultReassemblyMaxFragments {
			continue
		}
		maxSize := 0
		for _, f := range frags {
			maxSize = max(maxSize, len(f))
		}
		rng.Shuffle(len(frags), func(i, j int) { frags[i], frags[j] = frags[j], frags[i] })
		var res ReassemblyResult
		for i, f := range frags {
			var err error
			if res, err = add(t, r, f, 0, out); err != nil {
				t.Fatalf("iter %d fragment %d: %v", iter, i, err)
			}
			if res.Done != (i == len(frags)-1) {
				t.Fatalf("iter %d: Done %v after fragment %d of %d", iter, res.Done, i+1, len(frags))
			}
		}
		if !bytes.Equal(out[:res.N], orig) {
			t.Fatalf("iter %d (unfrag %d, mtu %d): reassembled packet differs", iter, unfrag, mtu)
		}
		if res.MaxFragSize != maxSize || res.Fragments != len(frags) {
			t.Errorf("iter %d: MaxFragSize %d Fragments %d, want %d %d", iter, res.MaxFragSize, res.Fragments, maxSize, len(frags))
		}
		check(t, out[:res.N], checksumsOK(), fragIs(false, false, 0))
	}
	if s := r.Stats(); s.Datagrams != 0 || s.Bytes != 0 || s.Reassembled == 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestReassembleMaxSize puts together the largest datagrams there are and
// refuses one byte more.
func TestReassembleMaxSize(t *testing.T) {
	out := make([]byte, 70000)
	orig := build(v4, udpHdr{SPort: 1, DPort: 2}, seqPayload(65535-28))
	frags := fragBufs(64, 1500)
	n, err := Fragment4(decode(t, orig), 1500, frags)
	if err != nil {
		t.Fatal(err)
	}
	got, err := feed(t, NewReassembler(ReassemblyConfig{}), frags[:n], 0, out)
	if err != nil || !bytes.Equal(got, orig) {
		t.Fatalf("65535-byte IPv4 datagram: %v", err)
	}

	orig6 := build(v6, udpHdr{SPort: 1, DPort: 2}, seqPayload(65535-8))
	got, err = feed(t, NewReassembler(ReassemblyConfig{}), fragment6(t, orig6, 40, 1500, 7), 0, out)
	if err != nil || !bytes.Equal(got, orig6) {
		t.Fatalf("65535-byte IPv6 payload: %v", err)
	}

	for _, fam6 := range []bool{false, true} {
		r := NewReassembler(ReassemblyConfig{})
		if _, err := add(t, r, piece(fam6, 1, 0, true, make([]byte, 16)), 0, out); err != nil {
			t.Fatal(err)
		}
		// Offset 65512 + 24 bytes ends past 65535 - 20 (IPv4) / 65535 (IPv6).
		last := piece(fam6, 1, 65512, false, make([]byte, 24))
		if _, err := add(t, r, last, 0, out); !errors.Is(err, ErrFragTooBig) {
			t.Errorf("%s: err = %v, want ErrFragTooBig", famName(fam6), err)
		}
		if s := r.Stats(); s.Datagrams != 0 || s.TooBig != 1 {
			t.Errorf("%s: the datagram was not dropped: %+v", famName(fam6), s)
		}
	}
}

func TestReassembleDuplicate(t *testing.T) {
	for _, fam6 := range []bool{false, true} {
		r := NewReassembler(ReassemblyConfig{})
		out := make([]byte, 1000)
		a := piece(fam6, 5, 0, true, seqPayload(24))
		b := piece(fam6, 5, 24, false, seqPayload(10))
		for i, f := range [][]byte{a, a, b} {
			res, err := add(t, r, f, 0, out)
			if err != nil || res.Done != (i == 2) {
				t.Fatalf("%s fragment %d: %+v %v", famName(fam6), i, res, err)
			}
		}
		if s := r.Stats(); s.Duplicates != 1 || s.Reassembled != 1 {
			t.Errorf("%s: stats %+v", famName(fam6), s)
		}
	}
}

func TestReassembleBadSequences(t *testing.T) {
	type pc struct {
		off, n int
		mf     bool
	}
	tests := []struct {
		name   string
		pieces []pc
		want   error
		only4  bool // IPv4 accepts it (trimmed), see TestReassembleTrim4
	}{
		{"overlap after", []pc{{0, 16, true}, {8, 16, false}}, ErrFragOverlap, false},
		{"overlap before", []pc{{8, 16, true}, {0, 16, true}}, ErrFragOverlap, false},
		{"contained", []pc{{0, 32, true}, {8, 8, true}}, ErrFragOverlap, false},
		{"containing", []pc{{8, 8, true}, {0, 32, true}}, ErrFragOverlap, false},
		{"same start", []pc{{0, 16, true}, {0, 24, true}}, ErrFragOverlap, false},
		{"same end", []pc{{0, 24, true}, {8, 16, true}}, ErrFragOverlap, false},
		{"overlap among many", []pc{{0, 8, true}, {16, 16, true}, {40, 8, false}, {32, 16, true}}, ErrFragOverlap, false},
		{"two different lasts", []pc{{16, 8, false}, {24, 8, false}}, ErrFragMalformed, false},
		{"more past the last", []pc{{16, 8, false}, {24, 8, true}}, ErrFragMalformed, false},
		{"last before data", []pc{{24, 8, true}, {8, 8, false}}, ErrFragMalformed, false},
		{"zero length", []pc{{0, 8, true}, {8, 0, false}}, ErrFragMalformed, false},
		{"unaligned middle", []pc{{0, 13, true}}, ErrFragMalformed, true},
	}
	for _, fam6 := range []bool{false, true} {
		for _, tt := range tests {
			if tt.only4 && !fam6 {
				continue
			}
			t.Run(famName(fam6)+"/"+tt.name, func(t *testing.T) {
				r := NewReassembler(ReassemblyConfig{})
				out := make([]byte, 1000)
				var err error
				for i, p := range tt.pieces {
					_, err = add(t, r, piece(fam6, 1, p.off, p.mf, seqPayload(p.n)), 0, out)
					if i < len(tt.pieces)-1 && err != nil {
						t.Fatalf("piece %d: %v", i, err)
					}
				}
				if !errors.Is(err, tt.want) {
					t.Fatalf("err = %v, want %v", err, tt.want)
				}
				if s := r.Stats(); s.Datagrams != 0 || s.Bytes != 0 {
					t.Errorf("datagram kept after %v: %+v", err, s)
				}
			})
		}
	}
}

// TestReassembleTrim4 follows Linux ip_frag_queue: an IPv4 non-last
// fragment whose data is not a multiple of 8 is cut down to one.
func TestReassembleTrim4(t *testing.T) {
	r := NewReassembler(ReassemblyConfig{})
	out := make([]byte, 100)
	a := seqPayload(13)
	b := []byte("0123456789")
	if _, err := add(t, r, piece(false, 1, 0, true, a), 0, out); err != nil {
		t.Fatal(err)
	}
	res, err := add(t, r, piece(false, 1, 8, false, b), 0, out)
	if err != nil || !res.Done {
		t.Fatalf("%+v %v", res, err)
	}
	if got := out[20:res.N]; !bytes.Equal(got, append(a[:8:8], b...)) {
		t.Errorf("data % x", got)
	}
}

func TestReassembleTimeout(t *testing.T) {
	r := NewReassembler(ReassemblyConfig{})
	out := make([]byte, 100)
	for _, fam6 := range []bool{false, true} {
		if _, err := add(t, r, piece(fam6, 1, 0, true, make([]byte, 8)), 0, out); err != nil {
			t.Fatal(err)
		}
		// A later fragment does not extend the deadline (Linux neither).
		if _, err := add(t, r, piece(fam6, 1, 16, true, make([]byte, 8)), 29*sec, out); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.Expire(30*sec - 1); n != 0 {
		t.Errorf("Expire before 30 s dropped %d", n)
	}
	if n := r.Expire(30 * sec); n != 1 {
		t.Errorf("Expire at 30 s dropped %d, want the IPv4 datagram", n)
	}
	if n := r.Expire(60*sec - 1); n != 0 {
		t.Errorf("Expire before 60 s dropped %d", n)
	}
	if n := r.Expire(60 * sec); n != 1 {
		t.Errorf("Expire at 60 s dropped %d, want the IPv6 datagram", n)
	}
	if s := r.Stats(); s.Timeouts != 2 || s.Datagrams != 0 || s.Bytes != 0 {
		t.Errorf("stats %+v", s)
	}

	// Lazily in Add: the rest of an expired datagram starts a new one.
	r = NewReassembler(ReassemblyConfig{Timeout4: time.Second})
	if _, err := add(t, r, piece(false, 2, 0, true, make([]byte, 8)), 0, out); err != nil {
		t.Fatal(err)
	}
	res, err := add(t, r, piece(false, 2, 8, false, make([]byte, 8)), sec, out)
	if err != nil || res.Done {
		t.Errorf("completed a datagram whose first half expired: %+v %v", res, err)
	}
	if s := r.Stats(); s.Timeouts != 1 || s.Datagrams != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestReassembleMemoryLimit(t *testing.T) {
	const limit = 16 << 10
	r := NewReassembler(ReassemblyConfig{MaxBytes: limit})
	out := make([]byte, 4000)
	// Each held first fragment costs a 1 KiB chunk plus overheads.
	for id := range uint32(20) {
		if _, err := add(t, r, piece(false, id, 0, true, make([]byte, 1000)), int64(id), out); err != nil {
			t.Fatal(err)
		}
		if s := r.Stats(); s.Bytes > limit {
			t.Fatalf("holding %d bytes, over the limit", s.Bytes)
		}
	}
	s := r.Stats()
	if s.Evicted == 0 || s.Datagrams+int(s.Evicted) != 20 {
		t.Fatalf("stats %+v", s)
	}
	// The newest datagram completes, the oldest was evicted.
	res, err := add(t, r, piece(false, 19, 1000, false, make([]byte, 8)), 20, out)
	if err != nil || !res.Done {
		t.Errorf("newest datagram: %+v %v", res, err)
	}
	res, err = add(t, r, piece(false, 0, 1000, false, make([]byte, 8)), 20, out)
	if err != nil || res.Done {
		t.Errorf("oldest datagram: %+v %v", res, err)
	}

	// One datagram larger than the whole budget is dropped.
	r = NewReassembler(ReassemblyConfig{MaxBytes: 4096})
	if _, err := add(t, r, piece(true, 1, 0, true, make([]byte, 1480)), 0, out); err != nil {
		t.Fatal(err)
	}
	if _, err := add(t, r, piece(true, 1, 1480, true, make([]byte, 1480)), 0, out); !errors.Is(err, ErrFragLimit) {
		t.Errorf("err = %v, want ErrFragLimit", err)
	}
	if s := r.Stats(); s.Datagrams != 0 || s.Bytes != 0 || s.Limited != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestReassembleMaxDatagrams(t *testing.T) {
	r := NewReassembler(ReassemblyConfig{MaxDatagrams: 3})
	out := make([]byte, 100)
	for id := range uint32(4) {
		// Alternate families: the oldest is found across both lists.
		if _, err := add(t, r, piece(id%2 == 1, id, 0, true, make([]byte, 8)), int64(id), out); err != nil {
			t.Fatal(err)
		}
	}
	if s := r.Stats(); s.Datagrams != 3 || s.Evicted != 1 {
		t.Fatalf("stats %+v", s)
	}
	if res, err := add(t, r, piece(true, 1, 8, false, make([]byte, 8)), 5, out); !res.Done || err != nil {
		t.Errorf("datagram 1: %+v %v", res, err)
	}
	if res, _ := add(t, r, piece(false, 0, 8, false, make([]byte, 8)), 5, out); res.Done {
		t.Error("datagram 0 should have been evicted")
	}
}

func TestReassembleMaxFragments(t *testing.T) {
	r := NewReassembler(ReassemblyConfig{MaxFragments: 4})
	out := make([]byte, 100)
	for i := range 4 {
		if _, err := add(t, r, piece(false, 1, i*8, true, make([]byte, 8)), 0, out); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := add(t, r, piece(false, 1, 32, false, make([]byte, 8)), 0, out); !errors.Is(err, ErrFragLimit) {
		t.Errorf("err = %v, want ErrFragLimit", err)
	}
	if s := r.Stats(); s.Datagrams != 0 || s.Limited != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestReassembleECN(t *testing.T) {
	const notECT, ect1, ect0, ce = 0, 1, 2, 3
	tests := []struct {
		marks []uint8
		want  int // codepoint of the result; -1: dropped
	}{
		{[]uint8{ect0, ect0, ect0}, ect0},
		{[]uint8{ect0, ce, ect0}, ce},
		{[]uint8{ect1, ect0, ce}, ce},
		{[]uint8{notECT, notECT, notECT}, notECT},
		{[]uint8{notECT, ect0, ect0}, -1},
		{[]uint8{ce, notECT, ce}, -1},
	}
	for _, fam6 := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/%v", famName(fam6), tt.marks), func(t *testing.T) {
				r := NewReassembler(ReassemblyConfig{})
				out := make([]byte, 200)
				var res ReassemblyResult
				var err error
				for i, m := range tt.marks {
					f := piece(fam6, 1, i*16, i < len(tt.marks)-1, make([]byte, 16))
					if fam6 {
						f[1] = f[1]&0xcf | m<<4
					} else {
						f[1] = m
						f[10], f[11] = 0, 0
						c := ^sum16(f[:20])
						f[10], f[11] = byte(c>>8), byte(c)
					}
					res, err = add(t, r, f, 0, out)
				}
				if tt.want < 0 {
					if !errors.Is(err, ErrFragMalformed) {
						t.Errorf("err = %v, want ErrFragMalformed", err)
					}
					return
				}
				if err != nil || !res.Done {
					t.Fatalf("%+v %v", res, err)
				}
				if got := int(ecnOf(out)); got != tt.want {
					t.Errorf("ECN %d, want %d", got, tt.want)
				}
				check(t, out[:res.N], checksumsOK())
			})
		}
	}
}

func TestReassembleOut(t *testing.T) {
	orig := build(v4, udpHdr{SPort: 1, DPort: 2}, seqPayload(3000))
	frags := fragBufs(4, 1500)
	n, err := Fragment4(decode(t, orig), 1500, frags)
	if err != nil {
		t.Fatal(err)
	}
	r := NewReassembler(ReassemblyConfig{})
	if _, err := feed(t, r, frags[:n], 0, make([]byte, len(orig)-1)); !errors.Is(err, ErrNoRoom) {
		t.Errorf("small out: err = %v, want ErrNoRoom", err)
	}
	if s := r.Stats(); s.Datagrams != 0 {
		t.Errorf("stats %+v", s)
	}

	// out may be the last fragment's own buffer, as the datapath passes it.
	buf := make([]byte, 65535)
	last := buf[:copy(buf, frags[n-1])]
	if _, err := feed(t, r, frags[:n-1], 0, nil); err != nil {
		t.Fatal(err)
	}
	res, err := add(t, r, last, 0, buf)
	if err != nil || !res.Done || !bytes.Equal(buf[:res.N], orig) {
		t.Errorf("out aliasing the fragment: %+v %v", res, err)
	}
}

func TestReassembleNotFragment(t *testing.T) {
	r := NewReassembler(ReassemblyConfig{})
	for _, b := range [][]byte{build(v4, tcpSyn, nil), build(with(v6, func(h *ipHdr) { h.Frag = true }), tcpSyn, nil)} {
		if _, err := add(t, r, b, 0, make([]byte, 100)); !errors.Is(err, ErrNotFragment) {
			t.Errorf("err = %v, want ErrNotFragment", err)
		}
	}
	var zero Parsed
	zero.Fragment = true
	if _, _, err := r.Add(&zero, 0, nil); !errors.Is(err, ErrNotFragment) {
		t.Errorf("undecoded: err = %v", err)
	}
}

// TestReassembleKeys interleaves fragments of datagrams that share an ID
// but differ in one key field each; every one completes on its own.
func TestReassembleKeys(t *testing.T) {
	variants := []ipHdr{
		v4,
		with(v4, func(h *ipHdr) { h.Src = "10.0.0.2" }),
		with(v4, func(h *ipHdr) { h.Dst = "192.0.2.2" }),
		with(v4, func(h *ipHdr) { h.Proto = 201 }),
		v6,
		with(v6, func(h *ipHdr) { h.Proto = 201 }),
	}
	r := NewReassembler(ReassemblyConfig{})
	out := make([]byte, 200)
	for half := range 2 {
		for i, ip := range variants {
			ip.ID, ip.Frag, ip.FragOff, ip.MF = 42, ip.V6, half*16, half == 0
			res, err := add(t, r, build(ip, rawL4{Proto: 200, B: seqPayload(16)}, nil), 0, out)
			if err != nil || res.Done != (half == 1) {
				t.Fatalf("variant %d half %d: %+v %v", i, half, res, err)
			}
		}
	}
	if s := r.Stats(); s.Reassembled != uint64(len(variants)) {
		t.Errorf("stats %+v", s)
	}
}

func TestReassembleConcurrent(t *testing.T) {
	r := NewReassembler(ReassemblyConfig{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			out := make([]byte, 65535)
			bufs := fragBufs(16, 600)
			var p Parsed
			for i := range 50 {
				ip := with(v4, func(h *ipHdr) { h.ID = uint32(g<<8 | i) })
				orig := build(ip, udpHdr{SPort: uint16(g), DPort: uint16(i)}, seqPayload(1000+rng.IntN(3000)))
				n, err := Fragment4(decode(t, orig), 600, bufs)
				if err != nil {
					t.Error(err)
					return
				}
				frags := bufs[:n]
				rng.Shuffle(n, func(i, j int) { frags[i], frags[j] = frags[j], frags[i] })
				for k, f := range frags {
					if err := p.Decode(f); err != nil {
						t.Error(err)
						return
					}
					m, done, err := r.Add(&p, 0, out)
					if err != nil || done != (k == n-1) {
						t.Errorf("goroutine %d datagram %d fragment %d: done %v err %v", g, i, k, done, err)
						return
					}
					if done && !bytes.Equal(out[:m], orig) {
						t.Errorf("goroutine %d datagram %d differs", g, i)
					}
				}
			}
		}()
	}
	wg.Wait()
	if s := r.Stats(); s.Reassembled != 8*50 || s.Datagrams != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestReassemblyConfig(t *testing.T) {
	if err := (ReassemblyConfig{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	for _, c := range []struct {
		cfg ReassemblyConfig
		key string
	}{
		{ReassemblyConfig{MaxBytes: -1}, "reassembly.max_bytes = -1"},
		{ReassemblyConfig{Timeout4: -1}, "reassembly.timeout_ipv4"},
		{ReassemblyConfig{Timeout6: -time.Second}, "reassembly.timeout_ipv6"},
		{ReassemblyConfig{MaxFragments: -2}, "reassembly.max_fragments = -2"},
		{ReassemblyConfig{MaxDatagrams: -3}, "reassembly.max_datagrams = -3"},
	} {
		if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.key) {
			t.Errorf("Validate(%+v) = %v, want it to name %q", c.cfg, err, c.key)
		}
	}
	var cfg ReassemblyConfig
	if _, err := toml.Decode("max_bytes = 1048576\ntimeout_ipv4 = \"10s\"\ntimeout_ipv6 = \"1m\"\nmax_fragments = 64\nmax_datagrams = 9\n", &cfg); err != nil {
		t.Fatal(err)
	}
	want := ReassemblyConfig{MaxBytes: 1 << 20, Timeout4: 10 * time.Second, Timeout6: time.Minute, MaxFragments: 64, MaxDatagrams: 9}
	if cfg != want {
		t.Errorf("decoded %+v, want %+v", cfg, want)
	}
	r := NewReassembler(ReassemblyConfig{MaxBytes: -5, Timeout4: -1})
	if r.cfg.MaxBytes != DefaultReassemblyMaxBytes || r.cfg.Timeout4 != DefaultReassemblyTimeout4 {
		t.Errorf("negative values did not fall back to defaults: %+v", r.cfg)
	}
}

func TestReassembleAllocs(t *testing.T) {
	r := NewReassembler(ReassemblyConfig{})
	out := make([]byte, 65535+40)
	var frags [][]byte
	orig := build(v4, udpHdr{SPort: 1, DPort: 2}, seqPayload(4000))
	bufs := fragBufs(8, 1500)
	n, err := Fragment4(decode(t, orig), 1500, bufs)
	if err != nil {
		t.Fatal(err)
	}
	frags = append(frags, bufs[:n]...)
	orig6 := build(with(v6, func(h *ipHdr) { h.Ext = []extHdr{hop} }), udpHdr{SPort: 1, DPort: 2}, seqPayload(4000))
	frags6 := fragment6(t, orig6, 48, 1280, 1)
	var p Parsed
	run := func() {
		for _, set := range [][][]byte{frags, frags6} {
			for _, f := range set {
				_ = p.Decode(f)
				if _, _, err := r.Add(&p, 0, out); err != nil {
					panic(err)
				}
			}
		}
	}
	run() // warm the buffer pools
	if a := testing.AllocsPerRun(100, run); a != 0 {
		t.Errorf("%v allocs per reassembly round", a)
	}
}
