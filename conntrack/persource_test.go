package conntrack

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"tungate/packet"
)

func udpTuple(src, dst string, sport uint16) Tuple {
	s := netip.MustParseAddr(src)
	fam := uint8(6)
	if s.Is4() {
		fam = 4
	}
	return Tuple{Src: packet.AddrFrom(s), Dst: packet.AddrFrom(netip.MustParseAddr(dst)), SrcPort: sport, DstPort: 53, Proto: 17, Family: fam}
}

func TestSourceLimit(t *testing.T) {
	tab, err := NewTable(Config{Max: 1024})
	if err != nil {
		t.Fatal(err)
	}
	l := NewSourceLimit(tab, 2)
	now := tab.Now()
	confirm := func(src, dst string, sport uint16) (*Conn, error) {
		c := tab.NewUnconfirmed(udpTuple(src, dst, sport), now, time.Minute)
		return c, l.Confirm(tab, c, now)
	}
	for _, fam := range []struct{ a, b, dst string }{
		{"10.0.0.2", "10.0.0.3", "192.0.2.1"},
		{"fd00::2", "fd00::3", "2001:db8::1"},
	} {
		c1, err1 := confirm(fam.a, fam.dst, 1000)
		_, err2 := confirm(fam.a, fam.dst, 1001)
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: the first two: %v, %v", fam.a, err1, err2)
		}
		c3, err := confirm(fam.a, fam.dst, 1002)
		if !errors.Is(err, ErrSourceLimit) || c3.Confirmed() {
			t.Fatalf("%s: the third: %v (confirmed %v), want ErrSourceLimit", fam.a, err, c3.Confirmed())
		}
		if !l.Full(c3) {
			t.Fatalf("%s: Full = false at the limit", fam.a)
		}
		// Another source is not affected.
		if _, err := confirm(fam.b, fam.dst, 1000); err != nil {
			t.Fatalf("%s: %v", fam.b, err)
		}
		// A connection's death makes room; the refused one's does not
		// count (it was never confirmed).
		tab.Delete(c3)
		if n := l.Count(packet.AddrFrom(netip.MustParseAddr(fam.a)), c1.Tuple(DirOriginal).Family); n != 2 {
			t.Fatalf("%s: count %d after deleting a refused connection, want 2", fam.a, n)
		}
		tab.Delete(c1)
		if _, err := confirm(fam.a, fam.dst, 1003); err != nil {
			t.Fatalf("%s: after a death: %v", fam.a, err)
		}
	}
	// 10.0.0.2 and the IPv6 address 0a00:0002:: share their first bytes:
	// separate keys.
	if _, err := confirm("a00:2::", "2001:db8::1", 1000); err != nil {
		t.Fatalf("an IPv6 address sharing an IPv4 address's bytes: %v", err)
	}
	if got := l.Refused.Load(); got != 4 { // two Confirm refusals, two Full
		t.Fatalf("Refused = %d, want 4", got)
	}
}

// A failed insert (the tuple is taken) gives the place back.
func TestSourceLimitClash(t *testing.T) {
	tab, _ := NewTable(Config{Max: 1024})
	l := NewSourceLimit(tab, 1)
	now := tab.Now()
	tu := udpTuple("10.0.0.2", "192.0.2.1", 1000)
	a, b := tab.NewUnconfirmed(tu, now, time.Minute), tab.NewUnconfirmed(tu, now, time.Minute)
	if err := tab.Confirm(a, now); err != nil { // not through the limit
		t.Fatal(err)
	}
	if err := l.Confirm(tab, b, now); !errors.Is(err, ErrClash) {
		t.Fatalf("err = %v, want ErrClash", err)
	}
	if n := l.Sources(); n != 0 {
		t.Fatalf("%d sources counted after a failed insert", n)
	}
}

// Racing confirms and deaths never pass the limit and leave nothing behind:
// memory is bounded by the live connections.
func TestSourceLimitConcurrent(t *testing.T) {
	tab, _ := NewTable(Config{Max: 1 << 16})
	const max = 5
	l := NewSourceLimit(tab, max)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			srcs := []string{"10.0.0.2", "fd00::2", "10.0.0.3"}
			for i := range 2000 {
				src := srcs[i%len(srcs)]
				dst := "192.0.2.1"
				if src[0] == 'f' {
					dst = "2001:db8::1"
				}
				c := tab.NewUnconfirmed(udpTuple(src, dst, uint16(w*4096+i)), tab.Now(), time.Minute)
				if err := l.Confirm(tab, c, tab.Now()); err == nil {
					if n := l.Count(c.Tuple(DirOriginal).Src, c.Tuple(DirOriginal).Family); n > max {
						t.Errorf("%s holds %d connections, limit %d", src, n, max)
					}
					if i%2 == 0 {
						tab.Delete(c)
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, src := range []string{"10.0.0.2", "fd00::2", "10.0.0.3"} {
		a := netip.MustParseAddr(src)
		fam := uint8(6)
		if a.Is4() {
			fam = 4
		}
		if n := l.Count(packet.AddrFrom(a), fam); n != max {
			t.Fatalf("%s: %d counted, want %d (every source filled up)", src, n, max)
		}
	}
	if tab.Count() != 3*max {
		t.Fatalf("table holds %d, want %d", tab.Count(), 3*max)
	}
	tab.GC(tab.Now()+int64(2*time.Minute), 1<<20)
	if n := l.Sources(); n != 0 || tab.Count() != 0 {
		t.Fatalf("after expiry: %d sources, %d connections", n, tab.Count())
	}
}
