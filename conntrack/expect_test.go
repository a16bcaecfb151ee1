package conntrack

import (
	"errors"
	"testing"
	"time"

	"tungate/packet"
)

// ftpSetup is an FTP-like control connection and the expectation its
// helper would add for an active-mode data connection: from the server,
// any source port, to the client's announced port (after masquerade, the
// gateway's outside address).
type ftpSetup struct {
	h      *ctHarness
	f      ctFamily
	master *Conn
}

func newFTPSetup(t testing.TB, f ctFamily, cfg Config) *ftpSetup {
	t.Helper()
	h := newCTHarness(t, cfg)
	master := h.passNAT(build.UDP(f.cli, 45005, f.srv, 21, 0), f.nat).Conn
	return &ftpSetup{h: h, f: f, master: master}
}

// expectation returns the data-connection expectation for port on the
// outside address, valid for d.
func (s *ftpSetup) expectation(master *Conn, port uint16, d time.Duration) *Expectation {
	family := uint8(4)
	if s.f.cli.Is6() {
		family = 6
	}
	return &Expectation{
		Tuple:   Tuple{Src: addrOf(s.f.srv), Dst: addrOf(s.f.nat), DstPort: port, Proto: packet.ProtoUDP, Family: family},
		Mask:    Mask{Src: FullMask.Src, Dst: FullMask.Dst, DstPort: 0xffff},
		Master:  master,
		Helper:  "ftp",
		Expires: s.h.now + int64(d),
	}
}

// data is a packet opening the data connection from the server.
func (s *ftpSetup) data(sport, dport uint16) []byte {
	return build.UDP(s.f.srv, sport, s.f.nat, dport, 0)
}

func TestExpectationMatch(t *testing.T) {
	for _, f := range ctFamilies {
		t.Run(f.name, func(t *testing.T) {
			s := newFTPSetup(t, f, Config{})
			h := s.h
			var matched *Conn
			e := s.expectation(s.master, 50000, time.Minute)
			e.HelperFollows = false
			e.OnMatch = func(c *Conn, got *Expectation) {
				if got != e || c.Confirmed() {
					t.Error("OnMatch: wrong expectation or connection already confirmed")
				}
				matched = c
			}
			if err := h.tab.Expect(e, 0); err != nil {
				t.Fatal(err)
			}
			// The mask fixes the source address: another host does not match.
			wantInfo(t, "other source", h.in(build.UDP(f.x, 20, f.nat, 50000, 0)), New)
			wantInfo(t, "other port", h.in(s.data(20, 50001)), New)
			if h.tab.ExpectationCount() != 1 || matched != nil {
				t.Fatal("a non-matching packet consumed the expectation")
			}
			// Any source port matches (mask 0).
			r := h.pass(s.data(31337, 50000))
			wantInfo(t, "data", r, Related)
			c := r.Conn
			if c.Master() != s.master || c.Status()&StatusExpected == 0 || matched != c || c.Helper() != "" {
				t.Fatalf("master %p status %#x helper %q", c.Master(), c.Status(), c.Helper())
			}
			if h.tab.ExpectationCount() != 0 || h.tab.Stats.ExpectNew.Load() != 1 || h.tab.Stats.ExpectDelete.Load() != 1 {
				t.Fatal("expectation not consumed")
			}
			// Until the reply, later packets stay RELATED; then ESTABLISHED.
			wantInfo(t, "data again", h.in(s.data(31337, 50000)), Related)
			wantInfo(t, "data reply", h.in(build.UDP(f.nat, 50000, f.srv, 31337, 0)), EstablishedReply)
			wantInfo(t, "data established", h.in(s.data(31337, 50000)), Established)
			// Consumed: a second data connection to the port is just NEW.
			wantInfo(t, "second", h.in(s.data(31338, 50000)), New)

			// HelperFollows hands the helper on.
			e2 := s.expectation(s.master, 50002, time.Minute)
			e2.HelperFollows = true
			if err := h.tab.Expect(e2, 0); err != nil {
				t.Fatal(err)
			}
			if c := h.in(s.data(1, 50002)).Conn; c.Helper() != "ftp" {
				t.Fatalf("helper %q did not follow", c.Helper())
			}
		})
	}
}

func TestExpectationWildcardDestination(t *testing.T) {
	f := ctFamilies[1]
	s := newFTPSetup(t, f, Config{})
	h := s.h
	e := s.expectation(s.master, 0, time.Minute)
	e.Mask.DstPort = 0 // any destination port: not indexable
	if err := h.tab.Expect(e, 0); err != nil {
		t.Fatal(err)
	}
	wantInfo(t, "any port", h.in(s.data(1, 4242)), Related)
	for i := range maxWildExpectations {
		w := s.expectation(s.master, 0, time.Minute)
		w.Mask.DstPort = 0
		w.Tuple.SrcPort = uint16(i + 1)
		w.Mask.SrcPort = 0xffff
		if err := h.tab.Expect(w, 0); err != nil {
			t.Fatalf("wildcard %d: %v", i, err)
		}
	}
	w := s.expectation(s.master, 0, time.Minute)
	w.Mask.DstPort, w.Tuple.SrcPort, w.Mask.SrcPort = 0, 9999, 0xffff
	if err := h.tab.Expect(w, 0); !errors.Is(err, ErrExpectLimit) {
		t.Fatalf("wildcard over the limit: %v", err)
	}
	// Indexed expectations are not limited by the wildcard bound (this
	// one comes from another host, so it overlaps none of them).
	ix := s.expectation(s.master, 7, time.Minute)
	ix.Tuple.Src = addrOf(f.x)
	if err := h.tab.Expect(ix, 0); err != nil {
		t.Fatal(err)
	}
	// The same from the server overlaps the wildcards.
	if err := h.tab.Expect(s.expectation(s.master, 7, time.Minute), 0); !errors.Is(err, ErrExpectClash) {
		t.Fatalf("overlapping a wildcard: %v", err)
	}
}

func TestExpectationLimits(t *testing.T) {
	for _, f := range ctFamilies {
		t.Run(f.name, func(t *testing.T) {
			s := newFTPSetup(t, f, Config{ExpectMax: 5})
			h := s.h
			// Per master, helper and class at most 2: a third replaces the
			// oldest, as a new PORT replaces the previous one.
			e1, e2, e3 := s.expectation(s.master, 1001, time.Minute), s.expectation(s.master, 1002, time.Minute), s.expectation(s.master, 1003, time.Minute)
			for _, e := range []*Expectation{e1, e2, e3} {
				if err := h.tab.Expect(e, 2); err != nil {
					t.Fatal(err)
				}
			}
			if h.tab.ExpectationCount() != 2 {
				t.Fatalf("count %d, want 2", h.tab.ExpectationCount())
			}
			wantInfo(t, "replaced", h.in(s.data(1, 1001)), New)
			// Another class has its own allowance.
			other := s.expectation(s.master, 1004, time.Minute)
			other.Class = 1
			if err := h.tab.Expect(other, 2); err != nil || h.tab.ExpectationCount() != 3 {
				t.Fatalf("other class: %v, count %d", err, h.tab.ExpectationCount())
			}
			// The same expectation again from the same master replaces itself.
			again := s.expectation(s.master, 1003, 2*time.Minute)
			if err := h.tab.Expect(again, 2); err != nil || h.tab.ExpectationCount() != 3 {
				t.Fatalf("identical: %v, count %d", err, h.tab.ExpectationCount())
			}
			// From another master it clashes, and so does an overlapping one.
			master2 := h.passNAT(build.UDP(f.cli2, 45006, f.srv, 21, 0), f.nat).Conn
			if err := h.tab.Expect(s.expectation(master2, 1003, time.Minute), 2); !errors.Is(err, ErrExpectClash) {
				t.Fatalf("same tuple, other master: %v", err)
			}
			overlap := s.expectation(master2, 1002, time.Minute)
			overlap.Tuple.SrcPort, overlap.Mask.SrcPort = 20, 0xffff
			if err := h.tab.Expect(overlap, 2); !errors.Is(err, ErrExpectClash) {
				t.Fatalf("overlapping: %v", err)
			}
			// The whole table is bounded by ExpectMax.
			for i, want := range []error{nil, nil, ErrExpectLimit} {
				if err := h.tab.Expect(s.expectation(master2, uint16(2000+i), time.Minute), 0); !errors.Is(err, want) {
					t.Fatalf("table limit, %d: %v, want %v", i, err, want)
				}
			}
			if err := h.tab.Expect(&Expectation{Tuple: e1.Tuple, Mask: e1.Mask}, 0); !errors.Is(err, ErrExpectInvalid) {
				t.Fatalf("no master: %v", err)
			}
		})
	}
}

func TestExpectationLifetime(t *testing.T) {
	for _, f := range ctFamilies {
		t.Run(f.name, func(t *testing.T) {
			s := newFTPSetup(t, f, Config{})
			h := s.h
			short := s.expectation(s.master, 3001, 10*time.Second)
			long := s.expectation(s.master, 3002, time.Hour)
			for _, e := range []*Expectation{short, long} {
				if err := h.tab.Expect(e, 0); err != nil {
					t.Fatal(err)
				}
			}
			n := 0
			h.tab.Expectations(func(e *Expectation) bool {
				if e != []*Expectation{short, long}[n] {
					t.Fatal("Expectations not oldest first")
				}
				n++
				return true
			})
			h.advance(10 * time.Second)
			// Lapsed: no match even before GC removes it.
			wantInfo(t, "lapsed", h.in(s.data(1, 3001)), New)
			h.tab.GC(h.now, 1)
			if h.tab.ExpectationCount() != 1 {
				t.Fatalf("count %d after GC, want 1", h.tab.ExpectationCount())
			}
			h.tab.Unexpect(long)
			if h.tab.ExpectationCount() != 0 {
				t.Fatal("Unexpect kept it")
			}

			// Expectations die with their master.
			for _, p := range []uint16{3003, 3004} {
				if err := h.tab.Expect(s.expectation(s.master, p, time.Hour), 0); err != nil {
					t.Fatal(err)
				}
			}
			h.tab.Delete(s.master)
			if h.tab.ExpectationCount() != 0 {
				t.Fatalf("%d expectations outlived their master", h.tab.ExpectationCount())
			}
			wantInfo(t, "after master died", h.in(s.data(1, 3003)), New)
			if err := h.tab.Expect(s.expectation(s.master, 3005, time.Hour), 0); !errors.Is(err, ErrDead) {
				t.Fatalf("expect on a dead master: %v", err)
			}
			if h.tab.ExpectationCount() != 0 {
				t.Fatal("expectation of a dead master added")
			}

			master2 := h.passNAT(build.UDP(f.cli2, 45006, f.srv, 21, 0), f.nat).Conn
			if err := h.tab.Expect(s.expectation(master2, 3006, time.Hour), 0); err != nil {
				t.Fatal(err)
			}
			h.tab.FlushExpectations()
			if h.tab.ExpectationCount() != 0 {
				t.Fatal("flush kept expectations")
			}
		})
	}
}

// TestExpectationIndexScales checks that a new connection's expectation
// lookup looks only at expectations for its own destination: with
// thousands waiting, a miss compares nothing and a hit compares one.
func TestExpectationIndexScales(t *testing.T) {
	s := newFTPSetup(t, ctFamilies[0], Config{})
	h := s.h
	for p := range uint16(4000) {
		if err := h.tab.Expect(s.expectation(s.master, 10000+p, time.Hour), 0); err != nil {
			t.Fatal(err)
		}
	}
	x := &h.tab.exp
	tu := tupleOf(t, h.tab, s.data(1, 9999))
	if n := len(x.byDst[keyOf(&tu)]) + len(x.wild); n != 0 {
		t.Fatalf("a miss would compare %d expectations", n)
	}
	tu = tupleOf(t, h.tab, s.data(1, 12345))
	if n := len(x.byDst[keyOf(&tu)]) + len(x.wild); n != 1 {
		t.Fatalf("a hit would compare %d expectations", n)
	}
	wantInfo(t, "hit", h.in(s.data(1, 12345)), Related)
}

// An expectation dies with its master when the master expires, before the
// collector gets to it (conformance F24: a reset FTP control connection).
func TestExpectationDiesWithExpiredMaster(t *testing.T) {
	tab, err := NewTable(Config{})
	if err != nil {
		t.Fatal(err)
	}
	now := tab.Now()
	m := tab.NewUnconfirmed(Tuple{Src: packet.Addr{10, 10, 0, 2}, Dst: packet.Addr{198, 18, 0, 2}, SrcPort: 40000, DstPort: 21, Proto: 6, Family: 4}, now, 10*time.Second)
	if err := tab.Confirm(m, now); err != nil {
		t.Fatal(err)
	}
	e := &Expectation{Tuple: Tuple{Src: packet.Addr{198, 18, 0, 2}, Dst: packet.Addr{198, 18, 0, 1}, DstPort: 41285, Proto: 6, Family: 4},
		Mask: Mask{Src: FullMask.Src, Dst: FullMask.Dst, DstPort: 0xffff}, Master: m, Helper: "ftp", Expires: now + int64(300*time.Second)}
	if err := tab.Expect(e, 1); err != nil {
		t.Fatal(err)
	}
	data := Tuple{Src: packet.Addr{198, 18, 0, 2}, Dst: packet.Addr{198, 18, 0, 1}, SrcPort: 20, DstPort: 41285, Proto: 6, Family: 4}
	if got := tab.exp.match(&data, now+int64(time.Second), &tab.Stats); got != e {
		t.Fatalf("live master: match %v", got)
	}
	if err := tab.Expect(e, 1); err != nil {
		t.Fatal(err)
	}
	later := now + int64(11*time.Second) // the master has expired, not yet collected
	if got := tab.exp.match(&data, later, &tab.Stats); got != nil {
		t.Fatal("an expectation of an expired master still matched")
	}
}
