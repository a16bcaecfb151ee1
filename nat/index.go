package nat

import (
	"encoding/binary"
	"math/bits"

	"tungate/packet"
)

// The two indexes a mapping can be in; each uses its own slot of
// mapping.next and mapping.hash.
const (
	byKeySlot = iota // Engine.byKey: by rule and internal endpoint
	byExtSlot        // Engine.byExt: endpoint-independent mappings by external endpoint
)

// minBuckets is an index's initial size.
const minBuckets = 256

// mapIndex is a hash table of mappings chained through the mappings
// themselves, so that indexing one allocates nothing and unindexing one
// hashes nothing (each mapping keeps its hash); on the NEW path this costs a
// fraction of a Go map keyed by the 44-byte mapKey, whose inserts and
// deletes were a sixth of a new connection's time. It doubles when it holds
// more mappings than buckets and then moves a few old buckets per insert or
// remove, as Go's maps and Redis's dicts grow, so no NEW packet waits for a
// whole table to be rehashed; like a Go map it never shrinks. Guarded by
// Engine.mu.
type mapIndex struct {
	slot  int        // byKeySlot or byExtSlot
	cur   []*mapping // bucket heads, a power of two of them
	old   []*mapping // the buckets before growing, while they are moved
	moved int        // old[:moved] are moved into cur
	n     int        // mappings in the index
}

func newMapIndex(slot int) mapIndex {
	return mapIndex{slot: slot, cur: make([]*mapping, minBuckets)}
}

// bucket returns the head of the chain a hash h belongs to.
func (x *mapIndex) bucket(h uint64) **mapping {
	if x.old != nil {
		if i := h & uint64(len(x.old)-1); i >= uint64(x.moved) {
			return &x.old[i]
		}
	}
	return &x.cur[h&uint64(len(x.cur)-1)]
}

// insert adds m, whose hash for this index is set.
func (x *mapIndex) insert(m *mapping) {
	x.step()
	p := x.bucket(m.hash[x.slot])
	m.next[x.slot] = *p
	*p = m
	x.n++
	if x.old == nil && x.n > len(x.cur) {
		x.old, x.cur, x.moved = x.cur, make([]*mapping, 2*len(x.cur)), 0
	}
}

// remove takes m out; m is in the index.
func (x *mapIndex) remove(m *mapping) {
	x.step()
	for p := x.bucket(m.hash[x.slot]); *p != nil; p = &(*p).next[x.slot] {
		if *p == m {
			*p = m.next[x.slot]
			m.next[x.slot] = nil
			x.n--
			return
		}
	}
}

// step moves up to four old buckets into cur while growing: growth starts
// with as many mappings as old buckets and the next one needs as many
// inserts again, so moving ends long before.
func (x *mapIndex) step() {
	if x.old != nil {
		x.move()
	}
}

func (x *mapIndex) move() {
	mask := uint64(len(x.cur) - 1)
	for k := 0; k < 4 && x.moved < len(x.old); k++ {
		m := x.old[x.moved]
		x.old[x.moved] = nil
		for m != nil {
			next := m.next[x.slot]
			p := &x.cur[m.hash[x.slot]&mask]
			m.next[x.slot] = *p
			*p = m
			m = next
		}
		x.moved++
	}
	if x.moved == len(x.old) {
		x.old, x.moved = nil, 0
	}
}

// findKey returns the mapping named by k with hash h, or nil.
func (x *mapIndex) findKey(k *mapKey, h uint64) *mapping {
	for m := *x.bucket(h); m != nil; m = m.next[byKeySlot] {
		if m.hash[byKeySlot] == h && m.key.equal(k) {
			return m
		}
	}
	return nil
}

// findExt returns the mapping holding the external endpoint port of k, or
// nil.
func (x *mapIndex) findExt(k setKey, port uint16, seed uint64) *mapping {
	h := extHash(k, port, seed)
	for m := *x.bucket(h); m != nil; m = m.next[byExtSlot] {
		if m.hash[byExtSlot] == h && m.port == port && m.ext == k {
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
