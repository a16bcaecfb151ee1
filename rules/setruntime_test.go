package rules

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gaissmai/bart"

	"tungate/packet"
)

// wallClock is an injectable time.Time clock for the runtime layer.
type wallClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *wallClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *wallClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func setRuleset(t testing.TB, elems ...string) *Ruleset {
	t.Helper()
	rs, err := Compile(FilterConfig{Forward: &Chain{Policy: "accept", Rules: []map[string]any{
		{"src": "@blocked", "action": "drop"},
	}}}, RawConfig{}, map[string][]string{"blocked": elems, "other": nil}, testEnv())
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func verdictFrom(t testing.TB, rs *Ruleset, src, dst string) Verdict {
	t.Helper()
	return rs.Eval(HookForward, newCtx().packet(decode(t, udp(src, dst, 1000, 53)))).Verdict
}

func pfx(t testing.TB, ss ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range ss {
		p, err := ParseSetElement(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func TestRuntimeSetAddDelete(t *testing.T) {
	rs := setRuleset(t, "203.0.113.0/24")
	r := NewRuntimeSets(nil)
	for _, src := range []string{"198.51.100.7", "2001:db8:bad::1"} {
		dst := "192.0.2.1"
		if strings.Contains(src, ":") {
			dst = "2001:db8::1"
		}
		if v := verdictFrom(t, rs, src, dst); v != Accept {
			t.Fatalf("%s before add: %v", src, v)
		}
	}
	if err := r.Add(rs, "blocked", pfx(t, "198.51.100.7", "2001:db8:bad::/48"), 0); err != nil {
		t.Fatal(err)
	}
	if v := verdictFrom(t, rs, "198.51.100.7", "192.0.2.1"); v != Drop {
		t.Fatalf("v4 after add: %v", v)
	}
	if v := verdictFrom(t, rs, "2001:db8:bad::1", "2001:db8::1"); v != Drop {
		t.Fatalf("v6 after add: %v", v)
	}
	if v := verdictFrom(t, rs, "198.51.100.8", "192.0.2.1"); v != Accept {
		t.Fatalf("neighbour after add: %v", v)
	}
	var dump strings.Builder
	rs.Dump(&dump)
	if !strings.Contains(dump.String(), "set blocked { 203.0.113.0/24 } # +2 added at runtime (tungate set list blocked)\n") {
		t.Fatalf("dump:\n%s", dump.String())
	}
	dump.Reset()
	rs.DumpConfig(&dump)
	if strings.Contains(dump.String(), "runtime") {
		t.Fatalf("config dump shows the runtime layer:\n%s", dump.String())
	}
	// The file element is refused, and nothing changes.
	err := r.Delete(rs, "blocked", pfx(t, "198.51.100.7", "203.0.113.0/24"))
	if !errors.Is(err, ErrFileElement) || !strings.Contains(err.Error(), "203.0.113.0/24") {
		t.Fatalf("delete of a file element: %v", err)
	}
	if v := verdictFrom(t, rs, "198.51.100.7", "192.0.2.1"); v != Drop {
		t.Fatalf("a refused delete changed the set: %v", v)
	}
	if err := r.Delete(rs, "blocked", pfx(t, "198.51.100.99")); err == nil || !strings.Contains(err.Error(), "not in the set") {
		t.Fatalf("delete of an absent element: %v", err)
	}
	if err := r.Delete(rs, "blocked", pfx(t, "198.51.100.7", "2001:db8:bad::/48")); err != nil {
		t.Fatal(err)
	}
	if v := verdictFrom(t, rs, "198.51.100.7", "192.0.2.1"); v != Accept {
		t.Fatalf("v4 after delete: %v", v)
	}
	if v := verdictFrom(t, rs, "203.0.113.9", "192.0.2.1"); v != Drop {
		t.Fatalf("file element after deletes: %v", v)
	}
	if got := r.Snapshot(); len(got) != 0 {
		t.Fatalf("layer not empty: %v", got)
	}
}

func TestRuntimeSetFileAndRuntime(t *testing.T) {
	rs := setRuleset(t, "203.0.113.0/24")
	r := NewRuntimeSets(nil)
	// In both: deleting the runtime one leaves the file's.
	if err := r.Add(rs, "blocked", pfx(t, "203.0.113.0/24"), 0); err != nil {
		t.Fatal(err)
	}
	l, err := r.List(rs, "blocked")
	if err != nil || len(l) != 1 || !l[0].File || !l[0].Runtime {
		t.Fatalf("list: %+v %v", l, err)
	}
	if err := r.Delete(rs, "blocked", pfx(t, "203.0.113.0/24")); err != nil {
		t.Fatal(err)
	}
	if v := verdictFrom(t, rs, "203.0.113.9", "192.0.2.1"); v != Drop {
		t.Fatalf("file element lost with the runtime one: %v", v)
	}
}

func TestRuntimeSetUnknown(t *testing.T) {
	rs := setRuleset(t)
	r := NewRuntimeSets(nil)
	err := r.Add(rs, "blokced", pfx(t, "192.0.2.1"), 0)
	if err == nil || !strings.Contains(err.Error(), `set "blokced": no such set in the config`) || !strings.Contains(err.Error(), "blocked") {
		t.Fatalf("unknown set: %v", err)
	}
	if _, err := r.List(rs, "nope"); err == nil {
		t.Fatal("list of an unknown set worked")
	}
	if err := r.Delete(rs, "nope", pfx(t, "192.0.2.1")); err == nil {
		t.Fatal("delete from an unknown set worked")
	}
	if err := r.Add(rs, "blocked", pfx(t, "192.0.2.1"), -time.Second); err == nil {
		t.Fatal("negative timeout accepted")
	}
	none, err := Compile(FilterConfig{}, RawConfig{}, nil, testEnv())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Add(none, "x", pfx(t, "192.0.2.1"), 0); err == nil || !strings.Contains(err.Error(), "no [sets]") {
		t.Fatalf("no sets: %v", err)
	}
}

func TestRuntimeSetTimeout(t *testing.T) {
	clk := &wallClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	rs := setRuleset(t)
	r := NewRuntimeSets(clk.now)
	if err := r.Add(rs, "blocked", pfx(t, "198.51.100.7"), 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(rs, "blocked", pfx(t, "198.51.100.8"), 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.Wake():
	default:
		t.Fatal("a timeout did not wake the sweeper")
	}
	clk.advance(2 * time.Second)
	l, _ := r.List(rs, "blocked")
	if len(l) != 2 || l[0].Expires.Sub(clk.now()) != 10*time.Minute-2*time.Second || !l[1].Expires.IsZero() {
		t.Fatalf("list: %+v", l)
	}
	if next := r.Expire(rs); !next.Equal(clk.now().Add(10*time.Minute - 2*time.Second)) {
		t.Fatalf("next deadline %v", next)
	}
	if v := verdictFrom(t, rs, "198.51.100.7", "192.0.2.1"); v != Drop {
		t.Fatalf("before expiry: %v", v)
	}
	clk.advance(10 * time.Minute)
	// Listing hides it even before the sweep.
	if l, _ := r.List(rs, "blocked"); len(l) != 1 {
		t.Fatalf("expired element listed: %+v", l)
	}
	if next := r.Expire(rs); !next.IsZero() {
		t.Fatalf("next deadline after expiry %v", next)
	}
	if v := verdictFrom(t, rs, "198.51.100.7", "192.0.2.1"); v != Accept {
		t.Fatalf("after expiry: %v", v)
	}
	if v := verdictFrom(t, rs, "198.51.100.8", "192.0.2.1"); v != Drop {
		t.Fatalf("permanent element after expiry: %v", v)
	}
	// Adding again refreshes a timeout.
	if err := r.Add(rs, "blocked", pfx(t, "198.51.100.8"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if l, _ := r.List(rs, "blocked"); l[0].Expires.IsZero() {
		t.Fatalf("re-add kept no timeout: %+v", l)
	}
}

// TestRuntimeSetReload: a Ruleset compiled later (a reload) gets the
// runtime elements through Apply, and one swapped in after a change it
// missed catches up through Sync.
func TestRuntimeSetReload(t *testing.T) {
	old := setRuleset(t, "203.0.113.0/24")
	r := NewRuntimeSets(nil)
	if err := r.Add(old, "blocked", pfx(t, "198.51.100.7"), 0); err != nil {
		t.Fatal(err)
	}
	// The new file drops 203.0.113.0/24 and adds 192.0.2.0/25.
	next := setRuleset(t, "192.0.2.0/25")
	r.Apply(next)
	for src, want := range map[string]Verdict{"198.51.100.7": Drop, "192.0.2.9": Drop, "203.0.113.9": Accept} {
		if v := verdictFrom(t, next, src, "10.0.0.1"); v != want {
			t.Errorf("%s after reload: %v, want %v", src, v, want)
		}
	}
	// A change made to the running Ruleset between Apply and the swap.
	third := setRuleset(t)
	r.Apply(third)
	if err := r.Add(next, "blocked", pfx(t, "198.51.100.8"), 0); err != nil {
		t.Fatal(err)
	}
	if v := verdictFrom(t, third, "198.51.100.8", "10.0.0.1"); v != Accept {
		t.Fatalf("missed change visible before Sync: %v", v)
	}
	r.Sync(third)
	if v := verdictFrom(t, third, "198.51.100.8", "10.0.0.1"); v != Drop {
		t.Fatalf("after Sync: %v", v)
	}
}

// TestRuntimeSetDroppedSet: a set a reload removed keeps its runtime
// elements (only a command removes them); they apply when it returns.
func TestRuntimeSetDroppedSet(t *testing.T) {
	rs := setRuleset(t)
	r := NewRuntimeSets(nil)
	if err := r.Add(rs, "other", pfx(t, "192.0.2.1"), 0); err != nil {
		t.Fatal(err)
	}
	without, err := Compile(FilterConfig{}, RawConfig{}, map[string][]string{"blocked": nil}, testEnv())
	if err != nil {
		t.Fatal(err)
	}
	r.Apply(without)
	if l, err := r.List(without, "other"); err != nil || len(l) != 1 {
		t.Fatalf("orphan list: %v %v", l, err)
	}
	if len(r.Snapshot()) != 1 {
		t.Fatal("orphan lost")
	}
	if err := r.Delete(without, "other", pfx(t, "192.0.2.1")); err != nil {
		t.Fatalf("orphan delete: %v", err)
	}
}

func TestRuntimeSetSnapshotRestore(t *testing.T) {
	clk := &wallClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	rs := setRuleset(t)
	r := NewRuntimeSets(clk.now)
	if err := r.Add(rs, "blocked", pfx(t, "198.51.100.7", "2001:db8::/32"), 0); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(rs, "blocked", pfx(t, "198.51.100.9"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(rs, "other", pfx(t, "192.0.2.1"), time.Second); err != nil {
		t.Fatal(err)
	}
	snap := r.Snapshot()
	if len(snap) != 4 || snap[0].Set != "blocked" || snap[3].Set != "other" {
		t.Fatalf("snapshot %+v", snap)
	}
	clk.advance(2 * time.Second) // "other"'s element is gone by the restore
	fresh := setRuleset(t)
	r2 := NewRuntimeSets(clk.now)
	n, err := r2.Restore(fresh, snap)
	if err != nil || n != 3 {
		t.Fatalf("restore: %d %v", n, err)
	}
	if v := verdictFrom(t, fresh, "198.51.100.9", "10.0.0.1"); v != Drop {
		t.Fatalf("restored element: %v", v)
	}
	if _, err := r2.Restore(fresh, []RuntimeElement{{Set: "blocked", Prefix: netip.MustParsePrefix("10.0.0.1/8")}}); err == nil {
		t.Fatal("restored a prefix with host bits")
	}
}

// TestRuntimeSetMany goes through the clone path of a large change.
func TestRuntimeSetMany(t *testing.T) {
	rs := setRuleset(t)
	r := NewRuntimeSets(nil)
	var ps []netip.Prefix
	for i := range 300 {
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 32))
	}
	if err := r.Add(rs, "blocked", ps, 0); err != nil {
		t.Fatal(err)
	}
	if v := verdictFrom(t, rs, "10.1.1.20", "192.0.2.1"); v != Drop {
		t.Fatalf("after bulk add: %v", v)
	}
	if err := r.Delete(rs, "blocked", ps); err != nil {
		t.Fatal(err)
	}
	if v := verdictFrom(t, rs, "10.1.1.20", "192.0.2.1"); v != Accept {
		t.Fatalf("after bulk delete: %v", v)
	}
}

// TestRuntimeSetEvalAllocs: a set match allocates nothing, also while
// another goroutine changes the set.
func TestRuntimeSetEvalAllocs(t *testing.T) {
	rs := setRuleset(t, "203.0.113.0/24")
	r := NewRuntimeSets(nil)
	pk := newCtx().packet(decode(t, udp("203.0.113.5", "192.0.2.1", 1, 53)))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		p := pfx(t, "198.51.100.7")
		for {
			select {
			case <-stop:
				return
			default:
			}
			r.Add(rs, "blocked", p, 0)
			r.Delete(rs, "blocked", p)
		}
	}()
	n := testing.AllocsPerRun(1000, func() {
		if rs.Eval(HookForward, pk).Verdict != Drop {
			t.Fatal("wrong verdict")
		}
	})
	close(stop)
	<-done
	if n != 0 {
		t.Fatalf("%v allocations per Eval", n)
	}
}

func TestFormatSetElement(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1": "192.0.2.1", "192.0.2.1/32": "192.0.2.1", "192.0.2.0/24": "192.0.2.0/24",
		"2001:db8::1": "2001:db8::1", "2001:db8::/32": "2001:db8::/32",
	} {
		p, err := ParseSetElement(in)
		if err != nil || FormatSetElement(p) != want {
			t.Errorf("%s: %s %v", in, FormatSetElement(p), err)
		}
	}
	for _, bad := range []string{"", "10.0.0.1/8", "::ffff:1.2.3.4", "fe80::1%eth0", "300.1.1.1", "80", "1.2.3.4/33"} {
		if _, err := ParseSetElement(bad); err == nil || !strings.Contains(err.Error(), "bad set element") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// FuzzSetElement: parsing any string either fails with an error or gives
// a prefix that formats and parses back to itself.
func FuzzSetElement(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "10.0.0.0/8", "2001:db8::/32", "::", "0.0.0.0/0", "1.2.3.4/33", "::ffff:1.2.3.4", "fe80::1%x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseSetElement(s)
		if err != nil {
			return
		}
		if !p.IsValid() || p != p.Masked() {
			t.Fatalf("%q gave %v", s, p)
		}
		q, err := ParseSetElement(FormatSetElement(p))
		if err != nil || q != p {
			t.Fatalf("%q: %v does not round-trip: %v %v", s, p, q, err)
		}
	})
}

// BenchmarkSetMatch compares a set lookup through the live table (one
// atomic load, then bart) with the plain table lookup the rules did
// before sets could change at runtime, in one run.
func BenchmarkSetMatch(b *testing.B) {
	entries, in4, _ := setPrefixes(100000)
	t := new(bart.Lite)
	for _, e := range entries {
		t.Insert(netip.MustParsePrefix(e))
	}
	static := []*bart.Lite{t}
	live := []*liveTable{newLiveTable(t)}
	var a packet.Addr
	copy(a[:], in4.AsSlice())
	b.Run("static", func(b *testing.B) {
		cpuLoop(b, func() {
			if !matchStaticSets(static, &a, 4) {
				b.Fatal("miss")
			}
		})
	})
	b.Run("live", func(b *testing.B) {
		cpuLoop(b, func() {
			if !matchSets(live, &a, 4) {
				b.Fatal("miss")
			}
		})
	})
}

// matchStaticSets is matchSets as it was before live tables.
func matchStaticSets(ts []*bart.Lite, a *packet.Addr, version uint8) bool {
	if len(ts) == 0 {
		return false
	}
	ip := a.NetIP(version)
	for _, t := range ts {
		if t.Contains(ip) {
			return true
		}
	}
	return false
}
