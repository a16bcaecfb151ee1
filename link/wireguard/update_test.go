package wireguard

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
)

// peerOf checks that PeerFor names want for addr.
func peerOf(t *testing.T, l *Link, addr, want string) {
	t.Helper()
	i, ok := l.PeerFor(netip.MustParseAddr(addr))
	if want == "" {
		if ok {
			t.Errorf("PeerFor(%s) = %d (%s), want none", addr, i, l.PeerName(i))
		}
		return
	}
	if !ok || l.PeerName(i) != want {
		t.Errorf("PeerFor(%s) = %d, %v (%q), want %s", addr, i, ok, l.PeerName(i), want)
	}
}

func (r *remote) txBytes(t *testing.T) uint64 {
	t.Helper()
	s, err := r.dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseState(s)
	if err != nil || len(st.peers) != 1 {
		t.Fatalf("remote state: %v (%d peers)", err, len(st.peers))
	}
	return st.peers[0].tx
}

func statsOf(t *testing.T, l *Link, name string) PeerStats {
	t.Helper()
	all, err := l.PeerStats()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no peer %q in %+v", name, all)
	return PeerStats{}
}

// TestUpdatePeersLive adds, changes and removes peers of a running link
// whose two remotes talk to it over host UDP sockets on loopback (bindtest
// joins only two binds).
func TestUpdatePeersLive(t *testing.T) {
	priv, pub := mustKey(t)
	l, err := New("wgupd", Config{PrivateKey: priv, AllowInlineKey: true}, Options{Bind: conn.NewDefaultBind()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	recv := startReader(l)
	st, err := l.state()
	if err != nil {
		t.Fatal(err)
	}
	linkEP := fmt.Sprintf("127.0.0.1:%d", st.port)
	b := newRemote(t, conn.NewDefaultBind(), peerUAPI(t, pub, linkEP, "10.7.0.1/32", "fd07::1/128"))
	c := newRemote(t, conn.NewDefaultBind(), peerUAPI(t, pub, linkEP, "10.7.0.1/32", "fd07::1/128"))

	peerB := PeerConfig{Name: "b", PublicKey: b.pub, AllowedIPs: []string{"10.7.0.2/32", "fd07::2/128"}}
	peerC := PeerConfig{Name: "c", PublicKey: c.pub, AllowedIPs: []string{"10.7.0.3/32", "fd07::3/128"}}
	// Added to a running link; the remotes make the handshakes.
	if err := l.UpdatePeers([]PeerConfig{peerB, peerC}); err != nil {
		t.Fatal(err)
	}
	fromB := udp("10.7.0.2", "10.7.0.1", "from b")
	b.send(t, fromB)
	expect(t, recv, fromB, "b→link")
	fromC := udp("fd07::3", "fd07::1", "from c")
	c.send(t, fromC)
	expect(t, recv, fromC, "c→link")
	peerOf(t, l, "10.7.0.2", "b")
	peerOf(t, l, "fd07::3", "c")
	toB := udp("10.7.0.1", "10.7.0.2", "to b")
	toC := udp("fd07::1", "fd07::3", "to c")
	writeLink(t, l, toB, toC)
	expect(t, b.received, toB, "link→b")
	expect(t, c.received, toC, "link→c")
	hsC := statsOf(t, l, "c").LastHandshake
	if hsC.IsZero() || statsOf(t, l, "b").LastHandshake.IsZero() {
		t.Fatal("no handshake recorded")
	}

	// A bad list changes nothing.
	if err := l.UpdatePeers([]PeerConfig{peerC, peerC}); err == nil || !strings.Contains(err.Error(), "peer[1].name: duplicate") {
		t.Fatalf("UpdatePeers with a duplicate: %v", err)
	}
	peerOf(t, l, "10.7.0.2", "b")

	// Remove b; give c another prefix and rename it. c's session stays.
	peerC2 := peerC
	peerC2.Name = "c2"
	peerC2.AllowedIPs = append([]string{"10.7.3.0/24"}, peerC.AllowedIPs...)
	if err := l.UpdatePeers([]PeerConfig{peerC2}); err != nil {
		t.Fatal(err)
	}
	peerOf(t, l, "10.7.0.2", "")
	peerOf(t, l, "10.7.3.9", "c2")
	peerOf(t, l, "10.7.0.3", "c2")
	before := l.Stats().NoPeer
	writeLink(t, l, udp("10.7.0.1", "10.7.0.2", "to removed b"))
	if got := l.Stats().NoPeer; got != before+1 {
		t.Errorf("NoPeer = %d after writing to a removed peer, want %d", got, before+1)
	}
	// b still holds its old session, but the link has forgotten it: what b
	// sends is dropped. Wait until b has put it on the wire, so that c's
	// packet reaches the link's socket after it.
	tx := b.txBytes(t)
	b.send(t, udp("10.7.0.2", "10.7.0.1", "from removed b"))
	waitFor(t, "b to send", func() bool { return b.txBytes(t) > tx })
	fromC2 := udp("10.7.0.3", "10.7.0.1", "c after the update")
	c.send(t, fromC2)
	expect(t, recv, fromC2, "c→link after b's removal (b's packet must not come first)")
	toNew := udp("10.7.0.1", "10.7.3.9", "to c's new prefix")
	writeLink(t, l, toNew)
	expect(t, c.received, toNew, "link→c's new prefix")
	if s := statsOf(t, l, "c2"); !s.LastHandshake.Equal(hsC) {
		t.Errorf("c's handshake changed from %v to %v: its session was touched", hsC, s.LastHandshake)
	}

	// b comes back, now with an endpoint so the link can start the
	// handshake itself; indexes follow the new list.
	peerB.Endpoint = fmt.Sprintf("127.0.0.1:%d", b.port(t))
	if err := l.UpdatePeers([]PeerConfig{peerC2, peerB}); err != nil {
		t.Fatal(err)
	}
	if i, ok := l.PeerFor(netip.MustParseAddr("10.7.0.2")); !ok || i != 1 || l.PeerName(i) != "b" {
		t.Errorf("PeerFor(10.7.0.2) = %d, %v after re-adding b as peer[1]", i, ok)
	}
	again := udp("10.7.0.1", "10.7.0.2", "b again")
	writeLink(t, l, again)
	expect(t, b.received, again, "link→b after re-adding it")
	if s := statsOf(t, l, "c2"); !s.LastHandshake.Equal(hsC) {
		t.Errorf("c's handshake changed when b was re-added")
	}
}

// TestUpdatePeersUAPI checks the lines UpdatePeers sends for each kind of
// change: only what differs, update_only for kept peers.
func TestUpdatePeersUAPI(t *testing.T) {
	_, pa := mustKey(t)
	ka, _ := parseKey(pa)
	old := peerSpec{name: "a", pub: ka, allowed: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}, keepalive: 25}
	hexA := b64hex(t, pa)
	for _, tc := range []struct {
		name string
		mut  func(p *peerSpec)
		want string
	}{
		{"unchanged", func(p *peerSpec) {}, ""},
		{"renamed only", func(p *peerSpec) { p.name = "z" }, ""},
		{"allowed ips", func(p *peerSpec) { p.allowed = []netip.Prefix{netip.MustParsePrefix("fd00::/64")} },
			"public_key=" + hexA + "\nupdate_only=true\nreplace_allowed_ips=true\nallowed_ip=fd00::/64\n"},
		{"keepalive off", func(p *peerSpec) { p.keepalive = 0 },
			"public_key=" + hexA + "\nupdate_only=true\npersistent_keepalive_interval=0\n"},
		{"endpoint", func(p *peerSpec) { p.endpoint = netip.MustParseAddrPort("[2001:db8::1]:51820") },
			"public_key=" + hexA + "\nupdate_only=true\nendpoint=[2001:db8::1]:51820\n"},
		{"psk", func(p *peerSpec) { p.psk = key{0xab} },
			"public_key=" + hexA + "\nupdate_only=true\npreshared_key=ab" + strings.Repeat("00", 31) + "\n"},
	} {
		p := old
		tc.mut(&p)
		var b strings.Builder
		writePeer(&b, &p, &old)
		if b.String() != tc.want {
			t.Errorf("%s:\n%s\nwant:\n%s", tc.name, b.String(), tc.want)
		}
	}
	var b strings.Builder
	writePeer(&b, &old, nil)
	want := "public_key=" + hexA + "\npersistent_keepalive_interval=25\nallowed_ip=10.0.0.0/24\n"
	if b.String() != want {
		t.Errorf("new peer:\n%s\nwant:\n%s", b.String(), want)
	}
}
