package nat

import (
	"fmt"
	"testing"

	"tungate/conntrack"
)

// TestWarmChangesNothing: warming the NAT state of the connections early
// drop is about to delete leaves every mapping and port as it was, the
// deletion then frees them as before, and a warm pass allocates nothing.
func TestWarmChangesNothing(t *testing.T) {
	const max = 64
	for _, fam := range []struct{ cli, srv string }{{"10.10.0.%d:%d", "198.18.0.2:53"}, {"[fd10::%x]:%d", "[2001:db8:1::2]:53"}} {
		r := newRigCT(t, `
[[nat.masquerade]]
out = "wan"
`, conntrack.Config{Max: max})
		conns := make([]*conntrack.Conn, 0, max)
		for i := range max {
			s := r.must(udp(fmt.Sprintf(fam.cli, 2+i, 40000+i), fam.srv, "x"), lan, wan)
			conns = append(conns, s.res.Conn)
		}
		before := r.e.Stats()
		if before.Mappings != max {
			t.Fatalf("%d mappings for %d flows", before.Mappings, max)
		}
		r.e.Warm(conns)
		if n := testing.AllocsPerRun(10, func() { r.e.Warm(conns) }); n != 0 {
			t.Fatalf("Warm allocates %v times", n)
		}
		if got := r.e.Stats(); got != before {
			t.Fatalf("stats changed: %+v, then %+v", before, got)
		}
		// Deleting a warmed connection frees its mapping as before.
		r.tbl.Delete(conns[0])
		if got := r.e.Stats(); got.Mappings != max-1 {
			t.Fatalf("%d mappings after deleting a warmed connection", got.Mappings)
		}
		if r.e.Warm(nil) != 0 {
			t.Fatal("nothing warmed gave a value")
		}
	}
}
