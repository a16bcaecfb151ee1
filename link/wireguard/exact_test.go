package wireguard

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/gaissmai/bart"
)

// mapPeerTable is the peer table as it was before exact.go: the same
// split, with Go maps for the exact matches. It stays as the reference
// the new table is checked against and measured beside.
type mapPeerTable struct {
	hosts4       map[uint32]int
	hosts6       map[[16]byte]int
	nets64       map[uint64]int
	nets         *bart.Fast[int]
	nets4, nets6 bool
	all6         bool
}

func newMapPeerTable(peers []peerSpec) *mapPeerTable {
	t := &mapPeerTable{hosts4: map[uint32]int{}, hosts6: map[[16]byte]int{}, nets64: map[uint64]int{}, nets: new(bart.Fast[int])}
	for i := range peers {
		for _, p := range peers[i].allowed {
			if p.Addr().Is6() && p.Bits() > 64 && p.Bits() < 128 {
				t.all6 = true
			}
		}
	}
	for i := range peers {
		for _, p := range peers[i].allowed {
			a := p.Addr()
			switch {
			case a.Is4() && p.Bits() == 32:
				b := a.As4()
				t.hosts4[binary.BigEndian.Uint32(b[:])] = i
			case a.Is4():
				t.nets.Insert(p, i)
				t.nets4 = true
			case !t.all6 && p.Bits() == 128:
				t.hosts6[a.As16()] = i
			case !t.all6 && p.Bits() == 64:
				b := a.As16()
				t.nets64[binary.BigEndian.Uint64(b[:8])] = i
			default:
				t.nets.Insert(p, i)
				t.nets6 = true
			}
		}
	}
	return t
}

func (t *mapPeerTable) lookup(addr netip.Addr) (int, bool) {
	switch {
	case addr.Is4():
		b := addr.As4()
		if i, ok := t.hosts4[binary.BigEndian.Uint32(b[:])]; ok {
			return i, true
		}
		if !t.nets4 {
			return 0, false
		}
	case !addr.IsValid():
		return 0, false
	case !t.all6:
		b := addr.As16()
		if i, ok := t.hosts6[b]; ok {
			return i, true
		}
		if i, ok := t.nets64[binary.BigEndian.Uint64(b[:8])]; ok {
			return i, true
		}
		if !t.nets6 {
			return 0, false
		}
	}
	return t.nets.Lookup(addr)
}

// randomSpecs are n peers with random host, /64 and shorter routes drawn
// from a small space, so that they overlap and collide.
func randomSpecs(r *rand.Rand, n int, odd6 bool) []peerSpec {
	specs := make([]peerSpec, n)
	for i := range specs {
		specs[i].name = fmt.Sprintf("p%d", i)
		for range 1 + r.IntN(4) {
			var p netip.Prefix
			switch r.IntN(5) {
			case 0:
				p = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(4)), byte(r.IntN(16))}), 32)
			case 1:
				p = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(4)), 0}), 24).Masked()
			case 2:
				p = netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 7: byte(r.IntN(4)), 15: byte(r.IntN(16))}), 128)
			case 3:
				p = netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 7: byte(r.IntN(4))}), 64)
			default:
				bits := 48
				if odd6 {
					bits = 96
				}
				p = netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 7: byte(r.IntN(4))}), bits).Masked()
			}
			specs[i].allowed = append(specs[i].allowed, p)
		}
	}
	return specs
}

// TestExactTableMatchesMaps: the open-addressing table answers every
// lookup as the map version did, over random overlapping peer lists
// (later peers win a duplicate route, as before).
func TestExactTableMatchesMaps(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		specs := randomSpecs(r, 1+r.IntN(40), round%3 == 0)
		want, got := newMapPeerTable(specs), newPeerTable(specs)
		for range 200 {
			var a netip.Addr
			if r.IntN(2) == 0 {
				a = netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(5)), byte(r.IntN(18))})
			} else {
				a = netip.AddrFrom16([16]byte{0xfd, 7: byte(r.IntN(5)), 8: byte(r.IntN(2)), 15: byte(r.IntN(18))})
			}
			wi, wok := want.lookup(a)
			gi, gok := got.lookup(a)
			if wi != gi || wok != gok {
				t.Fatalf("round %d: lookup(%v) = %d,%v, want %d,%v (peers %+v)", round, a, gi, gok, wi, wok, specs)
			}
			raw := a.AsSlice()
			if ri, rok := got.lookupRaw(raw, a.Is6()); ri != wi || rok != wok {
				t.Fatalf("round %d: lookupRaw(%v) = %d,%v, want %d,%v", round, a, ri, rok, wi, wok)
			}
		}
	}
	if _, ok := newPeerTable(nil).lookup(netip.MustParseAddr("fd::1")); ok {
		t.Fatal("empty table found a peer")
	}
	// Short input is a miss, never a panic.
	full := newPeerTable(randomSpecs(r, 8, false))
	for _, b := range [][]byte{nil, {10, 0}, make([]byte, 15)} {
		for _, v6 := range []bool{false, true} {
			if _, ok := full.lookupRaw(b, v6); ok && (len(b) < 4 || v6) {
				t.Errorf("lookupRaw(%v, v6=%v) found a peer", b, v6)
			}
		}
	}
}

// BenchmarkPeerForOldNew measures the map table (old) and the exact
// table, by netip.Addr (new) and by packet bytes (raw), on the same peers
// and addresses. Go runs each sub-benchmark's -count repetitions
// together: to alternate, loop over -count=1 runs of the test binary
// (BENCHMARKS.md has the command).
func BenchmarkPeerForOldNew(b *testing.B) {
	specs := benchSpecs(256)
	old, cur := newMapPeerTable(specs), newPeerTable(specs)
	for _, bc := range []struct {
		name       string
		v6, subnet bool
	}{{"v4-host", false, false}, {"v4-subnet", false, true}, {"v6-host", true, false}, {"v6-subnet", true, true}} {
		addrs := benchAddrs(bc.v6, bc.subnet)
		b.Run(bc.name+"/old", func(b *testing.B) {
			b.ReportAllocs()
			miss := 0
			cpu := startCPU(b)
			for i := 0; i < b.N; i++ {
				if _, ok := old.lookup(addrs[i&255]); !ok {
					miss++
				}
			}
			cpu.stop()
			if miss != 0 {
				b.Fatalf("%d lookups missed", miss)
			}
		})
		raws := make([][]byte, len(addrs))
		for i, a := range addrs {
			raws[i] = a.AsSlice()
		}
		// raw is the datapath's form (PeerForRaw: bytes from the packet).
		b.Run(bc.name+"/raw", func(b *testing.B) {
			b.ReportAllocs()
			miss := 0
			cpu := startCPU(b)
			for i := 0; i < b.N; i++ {
				if _, ok := cur.lookupRaw(raws[i&255], bc.v6); !ok {
					miss++
				}
			}
			cpu.stop()
			if miss != 0 {
				b.Fatalf("%d lookups missed", miss)
			}
		})
		b.Run(bc.name+"/new", func(b *testing.B) {
			b.ReportAllocs()
			miss := 0
			cpu := startCPU(b)
			for i := 0; i < b.N; i++ {
				if _, ok := cur.lookup(addrs[i&255]); !ok {
					miss++
				}
			}
			cpu.stop()
			if miss != 0 {
				b.Fatalf("%d lookups missed", miss)
			}
		})
	}
}
