package nat

import (
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"tungate/conntrack"
	"tungate/packet"
)

const stateConfig = `
[[nat.masquerade]]
out = "wan"
`

// saveRestore writes from's table with its engine as codec and reads it
// into to's table with to's engine.
func saveRestore(t *testing.T, from, to *rig) *conntrack.RestoreReport {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := from.tbl.SaveState(f, conntrack.StateOptions{Host: "h", Codecs: []conntrack.StateCodec{from.e}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	rep, err := to.tbl.RestoreState(f, conntrack.StateOptions{Host: "h", Codecs: []conntrack.StateCodec{to.e}})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestStateRestoreHoldsPorts: after a restore the masquerade mappings hold
// their external ports again: a new flow is not given one, the same
// internal endpoint finds its mapping (endpoint-independent), and deleting
// the restored connections frees them.
func TestStateRestoreHoldsPorts(t *testing.T) {
	a := newRig(t, stateConfig)
	u1 := a.must(udp("10.10.0.2:5000", "203.0.113.9:53", "q"), lan, wan)
	u2 := a.must(udp("10.10.0.3:5000", "203.0.113.9:53", "q"), lan, wan)
	t6 := a.tcpOpen("[fd10::2]:6000", "[2001:db8::9]:443", lan, wan)
	if u1.v.src.Port() == u2.v.src.Port() {
		t.Fatalf("two clients share external port %d", u1.v.src.Port())
	}
	b := newRig(t, stateConfig)
	rep := saveRestore(t, a, b)
	if rep.Restored != 3 || len(rep.Dropped) != 0 {
		t.Fatalf("report %+v, want 3 restored", rep)
	}
	if got, want := b.e.Stats().Mappings, a.e.Stats().Mappings; got != want || got != 3 {
		t.Fatalf("restored engine has %d mappings, want %d", got, want)
	}
	wanV4 := addr("198.18.0.1")
	for _, p := range []uint16{u1.v.src.Port(), u2.v.src.Port()} {
		if b.e.PortAvailable(packet.ProtoUDP, wanV4, p) {
			t.Errorf("restored UDP port %d reported free", p)
		}
	}
	if b.e.PortAvailable(packet.ProtoTCP, addr("2001:db8:1::1"), t6.src.Port()) {
		t.Errorf("restored TCP port %d reported free", t6.src.Port())
	}
	// A new client with the same source port does not get a held port.
	n := b.must(udp("10.10.0.9:5000", "203.0.113.9:53", "q"), lan, wan)
	if p := n.v.src.Port(); p == u1.v.src.Port() || p == u2.v.src.Port() {
		t.Fatalf("a new flow was given the restored port %d", p)
	}
	// The first client's next flow elsewhere keeps its mapping (EIM).
	again := b.must(udp("10.10.0.2:5000", "192.0.2.7:123", "q"), lan, wan)
	if again.v.src != u1.v.src {
		t.Fatalf("the restored endpoint's new flow left as %v, want %v", again.v.src, u1.v.src)
	}
	// Replies reach the restored flows.
	r := b.must(udp("203.0.113.9:53", u2.v.src.String(), "a"), wan, lan)
	if r.v.dst != ap("10.10.0.3:5000") {
		t.Fatalf("reply to the restored mapping went to %v", r.v.dst)
	}
	b.tbl.Flush()
	if m := b.e.Stats().Mappings; m != 0 {
		t.Fatalf("%d mappings left after the restored connections died", m)
	}
	if !b.e.PortAvailable(packet.ProtoUDP, wanV4, u1.v.src.Port()) {
		t.Fatal("the restored port stayed held after its connections died")
	}
}

// TestStateRestoreDropsWhatIsGone: a binding whose rule, interface or
// address changed is not restored, counted by reason, and leaves no port
// held.
func TestStateRestoreDropsWhatIsGone(t *testing.T) {
	renamed := []Iface{testIfaces[0], {Name: "uplink", Addrs: testIfaces[1].Addrs}, testIfaces[2]}
	readdr := []Iface{testIfaces[0], {Name: "wan", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.0.77/24")}}, testIfaces[2]}
	cases := []struct {
		name   string
		config string
		ifaces []Iface
		reason string
	}{
		{"rule gone", "", testIfaces, "nat_rule"},
		{"other out interface", "[[nat.masquerade]]\nout = \"lan2\"\n", testIfaces, "nat_rule"},
		{"interface gone", "[[nat.masquerade]]\nout = \"uplink\"\n", renamed, "interface"},
		{"address changed", stateConfig, readdr, "nat_address"},
		{"port forward took the port", stateConfig + "[[nat.dnat]]\nproto = \"udp\"\ndport = 5000\nto = \"10.10.0.50\"\n", testIfaces, "nat_port"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newRig(t, stateConfig)
			a.must(udp("10.10.0.2:5000", "203.0.113.9:53", "q"), lan, wan)
			tbl, err := conntrack.NewTable(conntrack.Config{})
			if err != nil {
				t.Fatal(err)
			}
			e, err := New(decodeConfig(t, tc.config), tc.ifaces, tbl, nil)
			if err != nil {
				t.Fatal(err)
			}
			b := &rig{t: t, tbl: tbl, e: e}
			rep := saveRestore(t, a, b)
			if rep.Restored != 0 || rep.Dropped[tc.reason] != 1 {
				t.Fatalf("report %+v, want one dropped for %q", rep, tc.reason)
			}
			if b.tbl.Count() != 0 || b.e.Stats().Mappings != 0 {
				t.Fatalf("dropped entry left %d connections, %d mappings", b.tbl.Count(), b.e.Stats().Mappings)
			}
		})
	}
}

// TestStateRestoreEveryLinkKind: a connection admitted to a mapping by
// endpoint-independent filtering (a destination link), and connections
// bound explicitly (Bind, as helpers do: a held source port, a held
// gateway port), come back holding the same mappings and ports.
func TestStateRestoreEveryLinkKind(t *testing.T) {
	const conf = "[[nat.masquerade]]\nout = \"wan\"\nfiltering = \"endpoint-independent\"\n"
	a := newRig(t, conf)
	out := a.must(udp("10.10.0.2:5000", "203.0.113.9:53", "q"), lan, wan)
	in := a.must(udp("192.0.2.7:4000", out.v.src.String(), "hello"), wan, lan)
	if in.v.dst != ap("10.10.0.2:5000") {
		t.Fatalf("EIF: the stranger's datagram went to %v", in.v.dst)
	}
	// Bind reservations: a source held on the external address, a
	// destination on the gateway's own port.
	now := a.tbl.Now()
	src := a.tbl.NewUnconfirmed(conntrack.Tuple{Src: addr("10.10.0.3"), Dst: addr("203.0.113.9"), SrcPort: 7000, DstPort: 20, Proto: packet.ProtoTCP, Family: 4}, now, time.Hour)
	if err := a.e.Bind(src, ManipSrc, addr("198.18.0.1"), 0); err != nil {
		t.Fatal(err)
	}
	dst := a.tbl.NewUnconfirmed(conntrack.Tuple{Src: addr("203.0.113.9"), Dst: addr("198.18.0.1"), SrcPort: 20, DstPort: 7100, Proto: packet.ProtoTCP, Family: 4}, now, time.Hour)
	if err := a.e.Bind(dst, ManipDst, addr("10.10.0.3"), 7100); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*conntrack.Conn{src, dst} {
		if err := a.tbl.Confirm(c, now); err != nil {
			t.Fatal(err)
		}
	}
	b := newRig(t, conf)
	rep := saveRestore(t, a, b)
	if rep.Restored != 4 || len(rep.Dropped) != 0 {
		t.Fatalf("report %+v, want 4 restored", rep)
	}
	if got, want := b.e.Stats().Mappings, a.e.Stats().Mappings; got != want {
		t.Fatalf("restored engine has %d mappings, want %d", got, want)
	}
	held := src.Tuple(conntrack.DirReply).DstPort
	for _, c := range []struct {
		proto uint8
		port  uint16
	}{{packet.ProtoUDP, out.v.src.Port()}, {packet.ProtoTCP, held}, {packet.ProtoTCP, 7100}} {
		if b.e.PortAvailable(c.proto, addr("198.18.0.1"), c.port) {
			t.Errorf("port %d/%d free after the restore", c.proto, c.port)
		}
	}
	b.tbl.Flush()
	if m := b.e.Stats().Mappings; m != 0 {
		t.Fatalf("%d mappings left after the restored connections died", m)
	}
}

// FuzzNATState feeds arbitrary bytes to the engine as a connection's
// state file blob: an error or a binding, never a panic, and whatever it
// bound is released when the connection dies.
func FuzzNATState(f *testing.F) {
	a := newRig(f, stateConfig)
	s := a.must(udp("10.10.0.2:5000", "203.0.113.9:53", "q"), lan, wan)
	c, _ := a.tbl.Lookup(s.res.Conn.Tuple(conntrack.DirOriginal))
	f.Add(a.e.AppendConnState(nil, c))
	f.Add([]byte{1, 0xff, 0})
	// One small table and engine for every input: building the default
	// table (its bucket array allocated and zeroed) and an engine cost
	// most of each execution. Each input must leave both empty, which
	// the end of the body checks, so inputs stay independent.
	r := newRigCT(f, stateConfig, conntrack.Config{Max: 64})
	f.Fuzz(func(t *testing.T, blob []byte) {
		r.t = t
		c := r.tbl.NewUnconfirmed(conntrack.Tuple{Src: addr("10.10.0.2"), Dst: addr("203.0.113.9"), SrcPort: 5000, DstPort: 53, Proto: packet.ProtoUDP, Family: 4}, r.tbl.Now(), time.Hour)
		rt := *c.Tuple(conntrack.DirReply)
		rt.Dst = addr("198.18.0.1")
		c.SetReplyTuple(rt)
		d := conntrack.NewStateDecoder(blob)
		if err := r.e.RestoreConnState(c, d); err != nil || d.Err() != nil {
			r.tbl.Delete(c)
		} else if r.tbl.Confirm(c, r.tbl.Now()) == nil {
			r.tbl.Flush()
		} else {
			r.tbl.Delete(c)
		}
		if m := r.e.Stats().Mappings; m != 0 {
			t.Fatalf("%d mappings left after the connection died", m)
		}
		if n := r.tbl.Count(); n != 0 {
			t.Fatalf("%d connections left in the table", n)
		}
	})
}
