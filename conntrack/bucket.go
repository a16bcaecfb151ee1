package conntrack

import (
	"sync/atomic"
	"unsafe"
)

// bucket is one cache line of the hash table: six slots for nodes, each
// with a 10-bit tag from its tuple's hash, and a chain for the nodes that
// find the slots full. A lookup reads the line, follows only the slots
// whose tag matches (one in 1024 that is not the one sought) and then the
// chain, usually empty: a miss costs one cache miss instead of one per node
// of a chain, and a hit two. A new connection looks up its tuple, and
// confirming it checks both of its tuples: those misses were most of its
// cost in a large table.
//
// Readers take no lock. A node never moves between slots or from the chain
// to a slot, so a reader cannot miss a node that stays linked while it
// reads; a slot's tag bits change only while the slot is empty, before the
// node is stored (the store publishes both), so a tag never hides the node
// it belongs to. Unlinked nodes keep their chain pointer, as before.
type bucket struct {
	tags atomic.Uint64 // slot i's tag in bits tagBits*i and up
	slot [bucketSlots]atomic.Pointer[hashNode]
	more atomic.Pointer[hashNode] // overflow chain through hashNode.next
}

const (
	bucketSlots = 6
	tagBits     = 10
	tagMask     = 1<<tagBits - 1
)

// The bucket must be one cache line (the array is page-aligned).
var _ = [1]struct{}{}[unsafe.Sizeof(bucket{})-64]

// tagOf is the slot tag of hash h: its top bits (the bucket index is the
// low ones).
func tagOf(h uint64) uint64 { return h >> (64 - tagBits) }

// each calls fn for every node linked in b until fn returns false. It
// reports whether fn never did.
func (b *bucket) each(fn func(n *hashNode) bool) bool {
	for i := range b.slot {
		if n := b.slot[i].Load(); n != nil && !fn(n) {
			return false
		}
	}
	for n := b.more.Load(); n != nil; n = n.next.Load() {
		if !fn(n) {
			return false
		}
	}
	return true
}

// insert links n with hash h into b; its stripe is locked. Storing the
// slot publishes n's tuple, c's fields written before it, and the tag.
func (b *bucket) insert(h uint64, n *hashNode) {
	for i := range b.slot {
		if b.slot[i].Load() == nil {
			sh := uint(i * tagBits)
			tags := b.tags.Load()
			b.tags.Store(tags&^(tagMask<<sh) | tagOf(h)<<sh)
			b.slot[i].Store(n)
			return
		}
	}
	n.next.Store(b.more.Load())
	b.more.Store(n)
}

// remove unlinks n from b; its stripe is locked. A chained n keeps its next
// pointer so a reader standing on it walks on.
func (b *bucket) remove(n *hashNode) {
	for i := range b.slot {
		if b.slot[i].Load() == n {
			b.slot[i].Store(nil)
			return
		}
	}
	p := &b.more
	for cur := p.Load(); cur != nil; cur = cur.next.Load() {
		if cur == n {
			p.Store(n.next.Load())
			return
		}
		p = &cur.next
	}
}
