package nat

import (
	"net/netip"
	"testing"

	"github.com/BurntSushi/toml"

	"tungate/conntrack"
	"tungate/packet"
)

// Interface indexes of the test gateway.
const (
	lan  = 0
	wan  = 1
	lan2 = 2
)

var testIfaces = []Iface{
	{Name: "lan", Addrs: []netip.Prefix{netip.MustParsePrefix("10.10.0.1/24"), netip.MustParsePrefix("fe80::1/64"), netip.MustParsePrefix("fd10::1/64")}},
	{Name: "wan", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.0.1/24"), netip.MustParsePrefix("fe80::2/64"), netip.MustParsePrefix("2001:db8:1::1/64")}},
	{Name: "lan2", Addrs: []netip.Prefix{netip.MustParsePrefix("10.20.0.1/24")}},
}

func testIfaceNames() []string {
	n := make([]string, len(testIfaces))
	for i, f := range testIfaces {
		n[i] = f.Name
	}
	return n
}

// decodeConfig decodes a [nat] TOML text strictly, as the gateway does.
func decodeConfig(t testing.TB, text string) Config {
	t.Helper()
	var doc struct {
		NAT Config `toml:"nat"`
	}
	md, err := toml.Decode(text, &doc)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		t.Fatalf("unknown keys %v", u)
	}
	return doc.NAT
}

// rig is a gateway reduced to what NAT needs: a real conntrack table and the
// engine, driven in the datapath's order.
type rig struct {
	t   testing.TB
	tbl *conntrack.Table
	e   *Engine
}

func newRig(t testing.TB, text string) *rig {
	return newRigCT(t, text, conntrack.Config{})
}

func newRigCT(t testing.TB, text string, ct conntrack.Config) *rig {
	t.Helper()
	tbl, err := conntrack.NewTable(ct)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(decodeConfig(t, text), testIfaces, tbl, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, tbl: tbl, e: e}
}

// step is one packet's trip through the gateway.
type step struct {
	res conntrack.Result
	ok  bool   // forwarded
	b   []byte // the packet as it leaves
	v   view   // its checked contents (when ok)
}

// pass runs b arriving on in and routed to out through conntrack, NAT and
// confirmation like the datapath does; a packet NAT drops deletes its new
// connection.
func (r *rig) pass(b []byte, in, out int) step {
	r.t.Helper()
	var p packet.Parsed
	if err := p.Decode(b); err != nil {
		r.t.Fatalf("decode: %v", err)
	}
	s := step{b: p.Bytes()}
	now := r.tbl.Now()
	r.tbl.In(&p, now, &s.res)
	if s.res.Drop || s.res.Conn == nil {
		return s
	}
	r.e.Prerouting(&p, &s.res, in)
	if s.res.Drop {
		return s
	}
	c := s.res.Conn
	if !r.e.Postrouting(&p, &s.res, in, out) {
		if !c.Confirmed() {
			r.tbl.Delete(c)
		}
		return s
	}
	if !c.Confirmed() {
		if err := r.tbl.Confirm(c, now); err != nil {
			r.tbl.Delete(c)
			return s
		}
	}
	s.ok = true
	s.v = verify(r.t, s.b)
	return s
}

// must passes a packet that has to be forwarded.
func (r *rig) must(p pkt, in, out int) step {
	r.t.Helper()
	s := r.pass(p.bytes(), in, out)
	if !s.ok {
		r.t.Fatalf("packet %v -> %v dropped (info %v, stats %+v)", p.src, p.dst, s.res.Info, r.e.Stats())
	}
	return s
}

// tcpOpen runs a three-way handshake from client to server (client on
// cin, server side on cout) and returns how the SYN left the gateway.
func (r *rig) tcpOpen(client, server string, cin, cout int) view {
	r.t.Helper()
	syn := r.must(tcp(client, server, packet.TCPSyn, 1000, 0), cin, cout)
	sa := r.must(tcp(syn.v.dst.String(), syn.v.src.String(), packet.TCPSyn|packet.TCPAck, 5000, 1001), cout, cin)
	if sa.v.dst != ap(client) || sa.v.src != ap(server) {
		r.t.Fatalf("SYN-ACK came back as %v -> %v, want %s -> %s", sa.v.src, sa.v.dst, server, client)
	}
	r.must(tcp(client, server, packet.TCPAck, 1001, 5001), cin, cout)
	return syn.v
}

func addr(s string) packet.Addr { return packet.AddrFrom(netip.MustParseAddr(s)) }
