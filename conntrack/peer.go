package conntrack

import (
	"sync"
	"sync/atomic"
)

// peerNames interns the WireGuard peer names connections record
// (Conn.SetPeer), so a connection holds a 16-bit index, kept in its nodes'
// padding, instead of an 8-byte pointer. Names are never removed: they
// are the peers of the configurations the process has run, a few per
// reload that renames one. Lookups read an immutable snapshot with no lock
// and allocate nothing; only a name not seen before takes the lock and
// copies the snapshot.
var peerNames struct {
	mu    sync.Mutex // serialises additions
	index atomic.Pointer[map[string]uint16]
	names atomic.Pointer[[]string] // (*names)[i-1] is index i
}

// maxPeerNames bounds the interned names by the index's 16 bits (0 is
// "none"). A name beyond it is not recorded: the connection shows no peer.
const maxPeerNames = 1<<16 - 1

// internPeer returns name's index (1 and up), adding it if new; 0 when the
// table is full.
func internPeer(name string) uint16 {
	if m := peerNames.index.Load(); m != nil {
		if i, ok := (*m)[name]; ok {
			return i
		}
	}
	peerNames.mu.Lock()
	defer peerNames.mu.Unlock()
	var old map[string]uint16
	if m := peerNames.index.Load(); m != nil {
		old = *m
		if i, ok := old[name]; ok {
			return i
		}
	}
	var names []string
	if n := peerNames.names.Load(); n != nil {
		names = *n
	}
	if len(names) >= maxPeerNames {
		return 0
	}
	next := make(map[string]uint16, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	i := uint16(len(names) + 1)
	next[name] = i
	// Readers of names load it after finding an index in a snapshot of
	// index, so names is published first.
	grown := append(names[:len(names):len(names)], name)
	peerNames.names.Store(&grown)
	peerNames.index.Store(&next)
	return i
}

// peerName is the name of index i, "" for 0.
func peerName(i uint16) string {
	if i == 0 {
		return ""
	}
	if n := peerNames.names.Load(); n != nil && int(i) <= len(*n) {
		return (*n)[i-1]
	}
	return ""
}
