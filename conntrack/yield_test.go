package conntrack

import (
	"errors"
	"testing"

	"tungate/packet"
)

// A local connection (the gateway's own, StatusLocal) gives its tuple up to
// a forwarded one: Taken does not count it, and confirming the forwarded
// connection deletes it (with a DESTROY event). Local never displaces a
// forwarded or another local connection.
func TestLocalYields(t *testing.T) {
	for _, f := range ctFamilies {
		t.Run(f.name, func(t *testing.T) {
			h := newCTHarness(t, Config{})
			ev, cancel := h.tab.Subscribe(16)
			defer cancel()
			// A stranger's datagram to the gateway's outside address,
			// confirmed in the input path.
			stranger := h.in(build.UDP(f.x, 5000, f.nat, 7000, 4))
			stranger.Conn.SetStatus(StatusLocal)
			if err := h.tab.Confirm(stranger.Conn, h.now); err != nil {
				t.Fatal(err)
			}
			nextEvent(t, ev)

			// The client's flow to the stranger, masqueraded to the same
			// outside port: its reply tuple is the stranger's original.
			flow := h.in(build.UDP(f.cli, 7000, f.x, 5000, 4))
			h.masquerade(flow, f.nat)
			reply := *flow.Conn.Tuple(DirReply)
			if reply != *stranger.Conn.Tuple(DirOriginal) {
				t.Fatalf("test setup: reply %v is not the stranger's tuple %v", reply, stranger.Conn.Tuple(DirOriginal))
			}
			if h.tab.Taken(&reply, flow.Conn) {
				t.Fatal("a local connection counts as taking a forwarded connection's tuple")
			}
			// Until then the stranger's packets keep finding theirs.
			if dup := h.in(build.UDP(f.x, 5000, f.nat, 7000, 4)); dup.Conn != stranger.Conn {
				t.Fatalf("stranger's second packet: not on its local connection (%v)", dup.Info)
			}
			if err := h.tab.Confirm(flow.Conn, h.now); err != nil {
				t.Fatalf("forwarded flow: %v, want it to take the local connection's tuple", err)
			}
			if !connDying(stranger.Conn) {
				t.Fatal("the local connection survived")
			}
			if e := nextEvent(t, ev); e.Type != EventDestroy || e.Conn != stranger.Conn {
				t.Fatalf("event %v for %p, want DESTROY of the local connection", e.Type, e.Conn)
			}
			if e := nextEvent(t, ev); e.Type != EventNew || e.Conn != flow.Conn {
				t.Fatalf("event %v, want NEW of the flow", e.Type)
			}
			if h.tab.Count() != 1 || h.tab.Stats.InsertFailed.Load() != 0 {
				t.Fatalf("count %d, insert_failed %d", h.tab.Count(), h.tab.Stats.InsertFailed.Load())
			}
			// The stranger's packets are now the flow's replies.
			back := h.in(build.UDP(f.x, 5000, f.nat, 7000, 4))
			if back.Conn != flow.Conn || back.Info != EstablishedReply {
				t.Fatalf("stranger's next datagram: %v on another connection %v", back.Info, back.Conn != flow.Conn)
			}

			// A local connection clashing with a forwarded one is refused.
			late := h.in(build.UDP(f.cli2, 1, f.nat, 7000, 4))
			late.Conn.SetReplyTuple(*flow.Conn.Tuple(DirOriginal))
			late.Conn.SetStatus(StatusLocal)
			if err := h.tab.Confirm(late.Conn, h.now); !errors.Is(err, ErrClash) {
				t.Fatalf("local over forwarded: %v, want ErrClash", err)
			}
			if !h.tab.Taken(flow.Conn.Tuple(DirOriginal), nil) {
				t.Fatal("a forwarded connection's tuple is not taken")
			}

			// Nor does a local connection displace another local one.
			l1 := h.in(build.UDP(f.x, 6000, f.nat, 53, 4))
			l1.Conn.SetStatus(StatusLocal)
			l2 := h.in(build.UDP(f.x, 6000, f.nat, 53, 4))
			l2.Conn.SetStatus(StatusLocal)
			if err := h.tab.Confirm(l1.Conn, h.now); err != nil {
				t.Fatal(err)
			}
			if err := h.tab.Confirm(l2.Conn, h.now); !errors.Is(err, ErrClash) || connDying(l1.Conn) {
				t.Fatalf("local over local: %v (first dying %v), want ErrClash", err, connDying(l1.Conn))
			}
		})
	}
}

// A forwarded connection whose two tuples are held by two different local
// connections takes both.
func TestLocalYieldsBothTuples(t *testing.T) {
	f := ctFamilies[0]
	h := newCTHarness(t, Config{})
	a := h.in(build.UDP(f.x, 5000, f.nat, 7000, 4))
	a.Conn.SetStatus(StatusLocal)
	b := h.in(build.UDP(f.cli, 7000, f.x, 5000, 4))
	b.Conn.SetStatus(StatusLocal)
	for _, c := range []*Conn{a.Conn, b.Conn} {
		if err := h.tab.Confirm(c, h.now); err != nil {
			t.Fatal(err)
		}
	}
	flow := h.in(build.UDP(f.cli2, 9, f.cli2, 9, 4)) // any unconfirmed connection
	flow.Conn.node[DirOriginal].tuple = *b.Conn.Tuple(DirOriginal)
	flow.Conn.SetReplyTuple(*a.Conn.Tuple(DirOriginal))
	if err := h.tab.Confirm(flow.Conn, h.now); err != nil {
		t.Fatal(err)
	}
	if !connDying(a.Conn) || !connDying(b.Conn) || h.tab.Count() != 1 {
		t.Fatalf("dying %v %v, count %d", connDying(a.Conn), connDying(b.Conn), h.tab.Count())
	}
}

// Local connections re-created by a racing reader while a forwarded one
// takes their tuple: every Confirm of the forwarded connection either wins
// (and then holds the tuple, no local connection does) or reports a clash
// with a live local one; the table never holds the tuple twice.
func TestLocalYieldsUnderRace(t *testing.T) {
	f := ctFamilies[0]
	h := newCTHarness(t, Config{})
	stranger := build.UDP(f.x, 5000, f.nat, 7000, 4)
	flowPkt := build.UDP(f.cli, 7000, f.x, 5000, 4)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var p packet.Parsed
		var r Result
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := p.Decode(stranger); err != nil {
				t.Error(err)
				return
			}
			h.tab.In(&p, h.now, &r)
			if c := r.Conn; c != nil && !c.Confirmed() {
				c.SetStatus(StatusLocal)
				if h.tab.Confirm(c, h.now) != nil {
					h.tab.Delete(c)
				}
			}
		}
	}()
	var p packet.Parsed
	won := 0
	for range 200 {
		if err := p.Decode(flowPkt); err != nil {
			t.Fatal(err)
		}
		var r Result
		h.tab.In(&p, h.now, &r)
		if r.Conn == nil || r.Info != New {
			t.Fatalf("flow: %v", r.Info)
		}
		rt := *r.Conn.Tuple(DirReply)
		rt.Dst = packet.AddrFrom(f.nat)
		r.Conn.SetReplyTuple(rt)
		err := h.tab.Confirm(r.Conn, h.now)
		holder, _ := h.tab.Lookup(&rt)
		switch {
		case err == nil:
			won++
			if holder != r.Conn {
				t.Fatal("confirmed flow does not hold its reply tuple")
			}
			h.tab.Delete(r.Conn)
		case errors.Is(err, ErrClash):
			h.tab.Delete(r.Conn)
		default:
			t.Fatal(err)
		}
	}
	close(stop)
	<-done
	n := 0
	h.tab.Range(func(*Conn) bool { n++; return true })
	if n > 1 || n != h.tab.Count() {
		t.Fatalf("%d connections in the table (count %d), want at most the one local", n, h.tab.Count())
	}
	if won == 0 {
		t.Fatal("the forwarded connection never won its tuple")
	}
}
