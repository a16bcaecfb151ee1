package nat

import (
	"encoding/binary"
	"math/bits"

	"tungate/packet"
)

// minSlots is an index's initial size.
const minSlots = 512

// ixSlot is one slot of an index: a mapping and its hash, side by side so
// that probing compares hashes without reading any mapping.
type ixSlot struct {
	h uint64
	m *mapping // nil: empty; tomb: what was here moved on (old table only)
}

// tomb marks a slot of the table being moved from whose mapping was moved
// or removed: probes pass over it.
var tomb = new(mapping)

// mapIndex is an open-addressing hash table of mappings (linear probing,
// each slot the mapping's hash and pointer): a new connection's lookup of
// an endpoint that has no mapping yet reads one run of slots, usually one
// cache line, and no mapping. It replaced chains through the mappings,
// whose miss read a bucket head and then every mapping of the chain (its
// hash and link on another cache line than the key): those reads were an
// eighth of a new connection's time with 32,768 flows. Slots are 16 bytes
// at a load of 3/8 to 3/4 (21–43 bytes a mapping), against a head of 8
// bytes per one or two mappings and a hash and a link in every mapping
// before, which the mapping gave up (see mapping). It doubles when three
// quarters full and then moves a few old slots per insert or remove, as
// Go's maps and Redis's
// dicts grow, so no NEW packet waits for a whole table to be rehashed;
// like a Go map it never shrinks. Removal shifts the run back (no
// tombstones) except in the table being moved from, which only shrinks.
// Guarded by Engine.mu.
type mapIndex struct {
	cur   []ixSlot // a power of two of them
	old   []ixSlot // the slots before growing, while they are moved
	moved int      // old[:moved] are moved into cur
	n     int      // mappings in the index
}

func newMapIndex() mapIndex {
	return mapIndex{cur: make([]ixSlot, minSlots)}
}

// insert adds m with hash h.
func (x *mapIndex) insert(m *mapping, h uint64) {
	x.step()
	put(x.cur, h, m)
	x.n++
	if x.old == nil && x.n > len(x.cur)/4*3 {
		x.old, x.cur, x.moved = x.cur, make([]ixSlot, 2*len(x.cur)), 0
	}
}

// put stores m with hash h in the first empty slot of its run.
func put(t []ixSlot, h uint64, m *mapping) {
	mask := uint64(len(t) - 1)
	i := h & mask
	for t[i].m != nil {
		i = (i + 1) & mask
	}
	t[i] = ixSlot{h, m}
}

// remove takes m, in the index with hash h, out.
func (x *mapIndex) remove(m *mapping, h uint64) {
	x.step()
	mask := uint64(len(x.cur) - 1)
	for i := h & mask; x.cur[i].m != nil; i = (i + 1) & mask {
		if x.cur[i].m == m {
			x.shiftBack(i)
			x.n--
			return
		}
	}
	if x.old != nil {
		mask := uint64(len(x.old) - 1)
		for i := h & mask; x.old[i].m != nil; i = (i + 1) & mask {
			if x.old[i].m == m {
				x.old[i].m = tomb
				x.n--
				return
			}
		}
	}
}

// shiftBack empties slot i of cur, moving later slots of its run back so
// every mapping stays reachable from its hash's slot without a gap.
func (x *mapIndex) shiftBack(i uint64) {
	t := x.cur
	mask := uint64(len(t) - 1)
	for j := (i + 1) & mask; t[j].m != nil; j = (j + 1) & mask {
		// The slot at j may fill the hole at i unless its home lies
		// cyclically in (i, j].
		if home := t[j].h & mask; (j-home)&mask >= (j-i)&mask {
			t[i] = t[j]
			i = j
		}
	}
	t[i] = ixSlot{}
}

// step moves up to eight old slots into cur while growing: growth starts
// with three quarters of the old slots full and the next one needs a
// quarter as many inserts again, so moving ends long before.
func (x *mapIndex) step() {
	if x.old != nil {
		x.move()
	}
}

func (x *mapIndex) move() {
	for k := 0; k < 8 && x.moved < len(x.old); k++ {
		if s := &x.old[x.moved]; s.m != nil && s.m != tomb {
			put(x.cur, s.h, s.m)
			s.m = tomb
		}
		x.moved++
	}
	if x.moved == len(x.old) {
		x.old, x.moved = nil, 0
	}
}

// findKey returns the mapping named by k with hash h, or nil.
func (x *mapIndex) findKey(k *mapKey, h uint64) *mapping {
	if m := findIn(x.cur, h, k); m != nil || x.old == nil {
		return m
	}
	return findIn(x.old, h, k)
}

func findIn(t []ixSlot, h uint64, k *mapKey) *mapping {
	mask := uint64(len(t) - 1)
	for i := h & mask; t[i].m != nil; i = (i + 1) & mask {
		if t[i].h == h && t[i].m != tomb && t[i].m.key.equal(k) {
			return t[i].m
		}
	}
	return nil
}

// findExt returns the mapping holding the external endpoint port of k, or
// nil.
func (x *mapIndex) findExt(k setKey, port uint16, seed uint64) *mapping {
	h := extHash(k, port, seed)
	if m := findExtIn(x.cur, h, k, port); m != nil || x.old == nil {
		return m
	}
	return findExtIn(x.old, h, k, port)
}

func findExtIn(t []ixSlot, h uint64, k setKey, port uint16) *mapping {
	mask := uint64(len(t) - 1)
	for i := h & mask; t[i].m != nil; i = (i + 1) & mask {
		if m := t[i].m; t[i].h == h && m != tomb && m.port == port && m.ext == k {
			return m
		}
	}
	return nil
}

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// hash mixes the key into 64 bits with the engine's seed, reading fields
// as words so padding never matters; the remote endpoint only when set
// (address-and-port-dependent mappings).
func (k *mapKey) hash(seed uint64) uint64 {
	a := binary.LittleEndian.Uint64(k.addr[:8])
	b := binary.LittleEndian.Uint64(k.addr[8:])
	c := uint64(k.port) | uint64(k.fam)<<16 | uint64(k.proto)<<24 | uint64(uint32(k.rule))<<32
	h := mix(a^seed, b^0x9e3779b97f4a7c15)
	h = mix(h^c, seed^0xbf58476d1ce4e5b9)
	if k.rport != 0 || k.raddr != (packet.Addr{}) {
		ra := binary.LittleEndian.Uint64(k.raddr[:8])
		rb := binary.LittleEndian.Uint64(k.raddr[8:])
		h = mix(h^ra, rb^0x94d049bb133111eb)
		h = mix(h^uint64(k.rport), seed^0x9e3779b97f4a7c15)
	}
	return h
}

// equal compares field by field, the most telling first; == on the struct
// is a memequal call.
func (k *mapKey) equal(o *mapKey) bool {
	return k.port == o.port && k.rule == o.rule && k.proto == o.proto && k.fam == o.fam &&
		k.addr == o.addr && k.rport == o.rport && k.raddr == o.raddr
}

// extHash is the byExt hash of the external endpoint k.addr:port.
func extHash(k setKey, port uint16, seed uint64) uint64 {
	a := binary.LittleEndian.Uint64(k.addr[:8])
	b := binary.LittleEndian.Uint64(k.addr[8:])
	c := uint64(port) | uint64(k.fam)<<16 | uint64(k.proto)<<24
	return mix(mix(a^seed, b^0x9e3779b97f4a7c15)^c, seed^0xbf58476d1ce4e5b9)
}
