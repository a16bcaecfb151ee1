package conntrack

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"tungate/packet"
)

// churn creates, confirms and deletes n connections of flows through res
// and returns the set of entries they used.
func churn(t *testing.T, tab *Table, flows []packet.Parsed, res *Result, now int64) map[*Conn]bool {
	t.Helper()
	seen := map[*Conn]bool{}
	for i := range flows {
		tab.In(&flows[i], now, res)
		c := res.Conn
		if c == nil || res.Info != New {
			t.Fatalf("flow %d: %+v", i, *res)
		}
		if err := tab.Confirm(c, now); err != nil {
			t.Fatal(err)
		}
		seen[c] = true
		tab.Delete(c)
	}
	return seen
}

// TestReuseWaitsForReaders: a dead connection's entry is not reused while a
// Result that may still hold it has not moved on (nothing is, then), and is
// reused after it was released.
// Pinned entries (Lookup) are never reused.
func TestReuseWaitsForReaders(t *testing.T) {
	for _, f := range ctFamilies {
		tab, err := NewTable(Config{})
		if err != nil {
			t.Fatal(err)
		}
		now := int64(time.Hour)
		out, _ := benchFlows(t, f, 2+20*reuseBatch)
		var holder, pinner, worker Result
		// holder gets a connection and keeps it (no further In).
		tab.In(&out[0], now, &holder)
		held := holder.Conn
		if held == nil || tab.Confirm(held, now) != nil {
			t.Fatal("setup: no connection")
		}
		// pinned is found by Lookup: never reused, even after Release.
		tab.In(&out[1], now, &pinner)
		if tab.Confirm(pinner.Conn, now) != nil {
			t.Fatal("setup: not confirmed")
		}
		tu := tupleOf(t, tab, out[1].Bytes())
		pinned, _ := tab.Lookup(&tu)
		pinner.Release()
		if pinned == nil {
			t.Fatal("setup: Lookup found nothing")
		}
		tab.Delete(held)
		tab.Delete(pinned)
		if held.Status()&StatusDying == 0 {
			t.Fatal("setup: not deleted")
		}

		used := churn(t, tab, out[2:2+10*reuseBatch], &worker, now)
		if used[held] || used[pinned] {
			t.Fatalf("%s: an entry was reused while a reader could hold it (held %v, pinned %v)", f.name, used[held], used[pinned])
		}
		if held.Tuple(DirOriginal).SrcPort != out[0].SrcPort || held.Status()&StatusDying == 0 {
			t.Fatalf("%s: held connection changed under its reader", f.name)
		}
		holder.Release()
		used = churn(t, tab, out[2+10*reuseBatch:], &worker, now)
		if !used[held] {
			t.Fatalf("%s: the released reader's entry was not reused", f.name)
		}
		if used[pinned] {
			t.Fatalf("%s: a pinned entry was reused", f.name)
		}
	}
}

// TestReuseNoLeak: with readers that keep up, a steady churn of new
// connections reuses entries instead of allocating.
func TestReuseNoLeak(t *testing.T) {
	tab, err := NewTable(Config{Max: 1 << 12})
	if err != nil {
		t.Fatal(err)
	}
	now := int64(time.Hour)
	out, _ := benchFlows(t, ctFamilies[0], 512)
	var res Result
	churn(t, tab, out, &res, now) // warm the pool
	if n := testing.AllocsPerRun(20, func() {
		for i := range out {
			tab.In(&out[i], now, &res)
			if tab.Confirm(res.Conn, now) != nil {
				t.Fatal("not confirmed")
			}
			tab.Delete(res.Conn)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per %d new connections", n, len(out))
	}
}

// TestReuseConcurrentReaders: readers hold the connection In gave them and
// check it stays the one they asked for while killers delete those
// connections, re-create them, and churn others, so that entries are
// reused all the time. Run with -race: reuse without a grace period shows
// as a changed tuple, or as a race between the reuser's writes and a
// reader's reads.
func TestReuseConcurrentReaders(t *testing.T) {
	iters := 3000
	if testing.Short() {
		iters = 300
	}
	tab, err := NewTable(Config{Max: 1 << 12})
	if err != nil {
		t.Fatal(err)
	}
	now := int64(time.Hour)
	f := ctFamilies[0]
	out, back := benchFlows(t, f, 64)
	extra, _ := benchFlows(t, ctFamilies[1], 256)
	establish(t, tab, now, out, back)
	// establish's Result is gone, unreleased: the collector tells the
	// table so through its weak pointer.
	runtime.GC()

	var wg sync.WaitGroup
	errs := make(chan string, 16)
	fail := func(s string) {
		select {
		case errs <- s:
		default:
		}
	}
	// Readers: hold each connection across a few re-reads.
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var res Result
			for i := range iters {
				k := (i*7 + g) % len(out)
				p := &out[k]
				tab.In(p, now, &res)
				c := res.Conn
				if c == nil {
					continue
				}
				if !res.Conn.Confirmed() {
					_ = tab.Confirm(c, now)
				}
				for range 3 {
					tu := c.Tuple(res.Dir)
					if tu.SrcPort != p.SrcPort || tu.Src != p.Src || tu.Family != p.Version {
						fail("a held connection was reused")
						return
					}
				}
			}
			res.Release()
		}()
	}
	// Killers: delete the readers' connections, and churn new ones so
	// their entries are reused.
	wg.Add(1)
	go func() {
		defer wg.Done()
		var res Result
		for i := range iters {
			k := i % len(out)
			tab.In(&out[k], now, &res)
			if c := res.Conn; c != nil {
				if !c.Confirmed() {
					_ = tab.Confirm(c, now)
				}
				tab.Delete(c)
			}
			p := &extra[i%len(extra)]
			tab.In(p, now, &res)
			if c := res.Conn; c != nil {
				_ = tab.Confirm(c, now)
				tab.Delete(c)
			}
		}
		res.Release()
	}()
	wg.Wait()
	close(errs)
	for s := range errs {
		t.Fatal(s)
	}
	// How often entries were reused meanwhile depends on the scheduling
	// (a reader that is not running holds the epoch back; TestConcurrentTable
	// adds Range, GC and Flush to the mix); with every reader gone, reuse
	// must resume.
	during := tab.rc.epoch.Load()
	var res Result
	if n := testing.AllocsPerRun(5, func() {
		for i := range extra {
			tab.In(&extra[i], now, &res)
			if tab.Confirm(res.Conn, now) != nil {
				t.Fatal("not confirmed")
			}
			tab.Delete(res.Conn)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per %d new connections after the readers left", n, len(extra))
	}
	t.Logf("epoch %d after the concurrent phase, %d after", during, tab.rc.epoch.Load())
}
