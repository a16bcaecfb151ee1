package conntrack

import (
	"strconv"
	"sync"
	"testing"
)

// TestConnPeer: a connection shows the peer name it was given, a second
// name gets its own index, the same name (another string with the same
// bytes, as a reloaded rule set has) the same one, and nil clears it.
func TestConnPeer(t *testing.T) {
	var a, b Conn
	if a.Peer() != "" {
		t.Fatalf("new Conn has peer %q", a.Peer())
	}
	alice, bob := "peer-test-alice", "peer-test-bob"
	a.SetPeer(&alice)
	b.SetPeer(&bob)
	if a.Peer() != alice || b.Peer() != bob {
		t.Fatalf("peers %q %q, want %q %q", a.Peer(), b.Peer(), alice, bob)
	}
	again := string([]byte("peer-test-alice"))
	if internPeer(again) != internPeer(alice) || internPeer(alice) == internPeer(bob) {
		t.Fatal("interning does not follow the name")
	}
	a.SetPeer(nil)
	if a.Peer() != "" {
		t.Fatalf("cleared peer is %q", a.Peer())
	}
	// The index spans both node bytes: the 300th name needs the second.
	var c Conn
	var last string
	for i := range 300 {
		last = "peer-test-many-" + strconv.Itoa(i)
		c.SetPeer(&last)
	}
	if c.Peer() != last || c.node[1].peer == 0 {
		t.Fatalf("peer %q (high byte %d), want %q", c.Peer(), c.node[1].peer, last)
	}
}

// TestConnPeerConcurrent interns names from several goroutines while
// others read them; the race detector checks the snapshots.
func TestConnPeerConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				name := "peer-test-conc-" + strconv.Itoa(i%50)
				var c Conn
				c.SetPeer(&name)
				if got := c.Peer(); got != name {
					t.Errorf("goroutine %d: peer %q, want %q", g, got, name)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkSetPeer is the cost a new connection from a WireGuard peer pays
// for its name: a lock-free map lookup, no allocation.
func BenchmarkSetPeer(b *testing.B) {
	name := "peer-bench"
	var c Conn
	b.ReportAllocs()
	for b.Loop() {
		c.SetPeer(&name)
	}
	if c.Peer() != name {
		b.Fatal("peer lost")
	}
}
