package nat

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"tungate/conntrack"
	"tungate/packet"
)

// TestMapIndexAgainstMap runs random inserts, removes and finds through
// several doublings (and the incremental moves between them) against a Go
// map, with the real hash and with ones that put most keys in a few long
// runs of slots, one of them wrapping around the table's end.
func TestMapIndexAgainstMap(t *testing.T) {
	for _, tc := range []struct {
		name string
		hash func(k *mapKey) uint64
	}{
		{"hash", func(k *mapKey) uint64 { return k.hash(42) }},
		{"collisions", func(k *mapKey) uint64 { return uint64(k.port % 5) }},
		// Homes in the last slots, whatever the size: every run wraps
		// around the end of the table.
		{"wrapping", func(k *mapKey) uint64 { return ^uint64(0) - uint64(k.port%3) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 4))
			x := newMapIndex()
			model := map[mapKey]*mapping{}
			var live []*mapping
			key := func() mapKey {
				k := mapKey{rule: int32(rng.IntN(2)), fam: 4, proto: packet.ProtoUDP, port: uint16(rng.IntN(3000))}
				k.addr[0], k.addr[1] = 10, byte(rng.IntN(2))
				return k
			}
			for i := range 60000 {
				switch op := rng.IntN(10); {
				case op < 6 && i < 40000: // grow for a while, then drain
					k := key()
					if model[k] != nil {
						continue
					}
					m := &mapping{key: k}
					x.insert(m, tc.hash(&k))
					model[k] = m
					live = append(live, m)
				case op < 8 && len(live) > 0:
					j := rng.IntN(len(live))
					m := live[j]
					live[j] = live[len(live)-1]
					live = live[:len(live)-1]
					x.remove(m, tc.hash(&m.key))
					delete(model, m.key)
				default:
					k := key()
					if got := x.findKey(&k, tc.hash(&k)); got != model[k] {
						t.Fatalf("op %d: find %+v = %p, want %p", i, k, got, model[k])
					}
				}
				if x.n != len(model) {
					t.Fatalf("op %d: n %d, want %d", i, x.n, len(model))
				}
			}
			for k, m := range model {
				if got := x.findKey(&k, tc.hash(&k)); got != m {
					t.Fatalf("find %+v = %p, want %p", k, got, m)
				}
			}
			if len(x.cur) <= minSlots {
				t.Fatalf("never grew: %d buckets for up to %d mappings", len(x.cur), len(model))
			}
		})
	}
}

// TestManyMappings makes thousands of mappings, so both indexes grow,
// reuses them from inside and reaches them from outside while they do, and
// checks that ending every connection leaves nothing behind.
func TestManyMappings(t *testing.T) {
	r := newRig(t, masqConf+`filtering = "endpoint-independent"`+"\n")
	const n = 3000
	src := func(i int) string { return fmt.Sprintf("10.10.0.%d:%d", 2+i%200, 2000+i/200) }
	var conns []*conntrack.Conn
	ext := make([]uint16, n)
	for i := range n {
		s := r.must(udp(src(i), "203.0.113.5:53", "q"), lan, wan)
		ext[i] = s.v.src.Port()
		conns = append(conns, s.res.Conn)
		if i%3 == 0 {
			// The same endpoint elsewhere: the mapping it just made.
			j := i / 2
			a := r.must(udp(src(j), "203.0.113.6:53", "q"), lan, wan)
			if a.v.src.Port() != ext[j] {
				t.Fatalf("endpoint %d mapped to %d, then %d", j, ext[j], a.v.src.Port())
			}
			conns = append(conns, a.res.Conn)
			// And a stranger reaches it through the external endpoint.
			in := r.must(udp("192.0.2.9:7777", fmt.Sprintf("198.18.0.1:%d", ext[j]), "hi"), wan, lan)
			if in.v.dst != ap(src(j)) || in.res.Info != conntrack.Related {
				t.Fatalf("stranger to %d reached %v (%v), want %s", ext[j], in.v.dst, in.res.Info, src(j))
			}
			conns = append(conns, in.res.Conn)
		}
	}
	if st := r.e.Stats(); st.Mappings != n {
		t.Fatalf("mappings %d, want %d", st.Mappings, n)
	}
	r.e.mu.Lock()
	if len(r.e.byKey.cur) < n || len(r.e.byExt.cur) < n {
		t.Errorf("indexes did not grow: %d and %d buckets", len(r.e.byKey.cur), len(r.e.byExt.cur))
	}
	r.e.mu.Unlock()
	for _, c := range conns {
		r.tbl.Delete(c)
	}
	r.e.mu.Lock()
	defer r.e.mu.Unlock()
	if st := r.e.Stats(); st.Mappings != 0 || r.e.byKey.n != 0 || r.e.byExt.n != 0 {
		t.Fatalf("left: %+v, indexed %d and %d", st, r.e.byKey.n, r.e.byExt.n)
	}
	if s := r.e.sets[setKey{addr("198.18.0.1"), 4, packet.ProtoUDP}]; s.held != 0 {
		t.Fatalf("%d ports still held", s.held)
	}
}

// TestStaleBindingIgnored: a dead connection's NAT still points at its
// binding after the pool gave it to a new connection; a destroy hook run
// for the dead one must not release the new one's mapping.
func TestStaleBindingIgnored(t *testing.T) {
	r := newRig(t, masqConf)
	a := r.must(udp("10.10.0.2:5000", "203.0.113.5:1", "q"), lan, wan).res.Conn
	r.tbl.Delete(a)
	b := r.must(udp("10.10.0.3:6000", "203.0.113.5:1", "q"), lan, wan).res.Conn
	if a.NATState() != b.NATState() {
		t.Fatal("setup: the binding was not reused")
	}
	r.e.destroy(a)
	g := addr("198.18.0.1")
	if r.e.PortAvailable(packet.ProtoUDP, g, 6000) || r.e.Stats().Mappings != 1 {
		t.Fatalf("the dead connection released the live one's mapping: %+v", r.e.Stats())
	}
	r.tbl.Delete(b)
	if !r.e.PortAvailable(packet.ProtoUDP, g, 6000) || r.e.Stats().Mappings != 0 {
		t.Fatalf("not released: %+v", r.e.Stats())
	}
}

// TestNewConnAllocs: NAT adds no allocation of its own to a new
// connection — mappings and bindings come from the pools, the indexes
// allocate nothing per entry — only the conntrack Ext its state hangs on.
func TestNewConnAllocs(t *testing.T) {
	run := func(nat bool) float64 {
		r := newRig(t, masqConf)
		tmpl := udp("10.10.0.2:1024", "203.0.113.5:53", "q").bytes()
		buf := make([]byte, len(tmpl))
		var ring [64]*conntrack.Conn
		var p packet.Parsed
		var res conntrack.Result
		i := 0
		step := func() {
			copy(buf, tmpl)
			buf[15] = byte(2 + i%200)
			buf[20], buf[21] = byte((1024+i/200)>>8), byte(1024+i/200)
			buf[10], buf[11] = 0, 0
			s := ^sum(buf[:20], 0)
			buf[10], buf[11] = byte(s>>8), byte(s)
			buf[26], buf[27] = 0, 0
			if p.Decode(buf) != nil {
				t.Fatal("decode")
			}
			now := r.tbl.Now()
			r.tbl.In(&p, now, &res)
			c := res.Conn
			if c == nil || c.Confirmed() {
				t.Fatalf("not new at %d", i)
			}
			if nat {
				r.e.Prerouting(&p, &res, lan)
				if !r.e.Postrouting(&p, &res, lan, wan) {
					t.Fatalf("dropped at %d", i)
				}
			}
			if err := r.tbl.Confirm(c, now); err != nil {
				t.Fatal(err)
			}
			k := i % len(ring)
			if old := ring[k]; old != nil {
				r.tbl.Delete(old)
			}
			ring[k] = c
			i++
		}
		for range 2 * len(ring) {
			step()
		}
		return testing.AllocsPerRun(2000, step)
	}
	ct, withNAT := run(false), run(true)
	if withNAT > ct+1 {
		t.Fatalf("%v allocations per new connection with NAT, %v without: NAT should add only the Ext", withNAT, ct)
	}
}
