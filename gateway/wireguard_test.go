package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"tungate/conntrack"
	"tungate/link"
	"tungate/link/wireguard"
	"tungate/packet"
	"tungate/rules"
)

// wgPeer is a road warrior or a site: a netstack host behind a plain
// wireguard-go device that talks to the gateway's wireguard interface over
// loopback UDP.
type wgPeer struct {
	*host
	dev  *device.Device
	priv string
	pub  string
}

func wgKeys(t testing.TB) (priv, pub string) {
	t.Helper()
	priv, err := wireguard.GenKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err = wireguard.PubKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

func hexKey(t testing.TB, b64 string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// newWGPeer makes the peer's host (its tunnel MTU mtu) and keys; start
// connects it once the gateway listens.
func newWGPeer(t *testing.T, mtu int, addrs ...string) *wgPeer {
	p := &wgPeer{host: newHost(t, mtu, addrs...)}
	p.priv, p.pub = wgKeys(t)
	return p
}

// start brings the peer's device up with the gateway (public key gwPub,
// UDP port gwPort on loopback) as its one peer, routing everything to it.
func (p *wgPeer) start(t *testing.T, gwPub string, gwPort int) {
	t.Helper()
	p.dev = device.NewDevice(p.host.dev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
	cfg := fmt.Sprintf("private_key=%s\nlisten_port=0\npublic_key=%s\nendpoint=127.0.0.1:%d\nallowed_ip=0.0.0.0/0\nallowed_ip=::/0\npersistent_keepalive_interval=1\n",
		hexKey(t, p.priv), hexKey(t, gwPub), gwPort)
	if err := p.dev.IpcSet(cfg); err != nil {
		t.Fatal(err)
	}
	if err := p.dev.Up(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.dev.Close)
}

// writeKey writes a private key file as tungate wants it (mode 0600).
func writeKey(t testing.TB, priv string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "wg.key")
	if err := os.WriteFile(path, []byte(priv+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// wgRig is a gateway with a WAN link to a netstack host and a wireguard
// interface wg0 whose peers are wgPeers.
type wgRig struct {
	g       *Gateway
	wan     *host
	peers   map[string]*wgPeer
	pub     string
	keyFile string
	conf    string
}

// wgConf is the rig's config; %s are the key file, the peer blocks and the
// rules.
const wgConf = `
[[interface]]
name = "wan"
tun = "tgwan"
addresses = ["203.0.113.1/24", "2001:db8:2::1/64"]

[[interface]]
name = "wg0"
kind = "wireguard"
private_key_file = %q
addresses = ["10.8.0.1/24", "fd08::1/64"]
%s
[[route]]
to = "0.0.0.0/0"
interface = "wan"
[[route]]
to = "::/0"
interface = "wan"

[[nat.masquerade]]
out = "wan"

%s`

// peerBlock is the [[interface.peer]] of a wgPeer with the given name and
// allowed IPs.
func peerBlock(name, pub string, allowed ...string) string {
	q := make([]string, len(allowed))
	for i, a := range allowed {
		q[i] = strconv.Quote(a)
	}
	return fmt.Sprintf("[[interface.peer]]\nname = %q\npublic_key = %q\nallowed_ips = [%s]\n\n", name, pub, strings.Join(q, ", "))
}

// newWGRig starts a gateway whose wg0 has the peers named in peerAddrs
// (name → allowed IPs; the first two of each are the peer host's own
// addresses), wan MTU 1500, the peers' own tunnel MTU peerMTU.
func newWGRig(t *testing.T, peerMTU int, rulesText string, names []string, peerAddrs map[string][]string) *wgRig {
	t.Helper()
	r := &wgRig{wan: newHost(t, 1500, "203.0.113.2", "2001:db8:2::2"), peers: map[string]*wgPeer{}}
	priv, pub := wgKeys(t)
	r.pub, r.keyFile = pub, writeKey(t, priv)
	var blocks strings.Builder
	for _, n := range names {
		a := peerAddrs[n]
		p := newWGPeer(t, peerMTU, strings.TrimSuffix(a[0], "/32"), strings.TrimSuffix(a[1], "/128"))
		r.peers[n] = p
		blocks.WriteString(peerBlock(n, p.pub, a...))
	}
	r.conf = fmt.Sprintf(wgConf, r.keyFile, blocks.String(), rulesText)
	cfg, err := ParseConfig([]byte(r.conf))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, r.conf)
	}
	g, err := New(cfg, Options{
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
		Open: func(ic *InterfaceConfig, log *zap.Logger) (link.Link, error) {
			if ic.Kind == KindWireGuard {
				return openLink(ic, log) // the real path: host UDP on loopback
			}
			return link.FromTUN(r.wan.dev), nil
		},
	})
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	r.g = g
	runUntilCleanup(t, g)
	port := r.port(t)
	for _, n := range names {
		r.peers[n].start(t, pub, port)
	}
	return r
}

func (r *wgRig) wg(t testing.TB) *wireguard.Link {
	t.Helper()
	l, ok := r.g.Links()[1].Dev.(*wireguard.Link)
	if !ok {
		t.Fatalf("wg0 is a %T", r.g.Links()[1].Dev)
	}
	return l
}

var listenPort = regexp.MustCompile(`listening port: (\d+)`)

// port is the UDP port the gateway's wg0 listens on (listen_port 0).
func (r *wgRig) port(t testing.TB) int {
	t.Helper()
	var b bytes.Buffer
	if err := r.wg(t).Show(&b); err != nil {
		t.Fatal(err)
	}
	m := listenPort.FindStringSubmatch(b.String())
	if m == nil {
		t.Fatalf("no port in\n%s", b.String())
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

var twoPeers = map[string][]string{
	"alice": {"10.8.0.2/32", "fd08::2/128"},
	"bob":   {"10.8.0.3/32", "fd08::3/128"},
}

// TestWireGuardRoadWarrior: a peer's handshake, ping and TCP through the
// tunnel to a WAN server, masqueraded, over IPv4 and IPv6 inside.
func TestWireGuardRoadWarrior(t *testing.T) {
	r := newWGRig(t, 1420, "", []string{"alice"}, twoPeers)
	alice := r.peers["alice"].host
	ping(t, alice, "10.8.0.2", "203.0.113.2")
	ping(t, alice, "fd08::2", "2001:db8:2::2")
	ping(t, alice, "10.8.0.2", "10.8.0.1") // the gateway itself, through the tunnel
	peerServer(t, r.wan, "203.0.113.2:80")
	peerServer(t, r.wan, "[2001:db8:2::2]:80")
	if got := askPeer(t, alice, "203.0.113.2:80"); !strings.HasPrefix(got, "203.0.113.1:") {
		t.Fatalf("server saw %s, want the gateway's address", got)
	}
	if got := askPeer(t, alice, "[2001:db8:2::2]:80"); !strings.HasPrefix(got, "[2001:db8:2::1]:") {
		t.Fatalf("server saw %s over IPv6, want the gateway's address", got)
	}
	transfer(t, alice, r.wan, netip.MustParseAddrPort("203.0.113.2:9000"), 256<<10)
	st, err := r.wg(t).PeerStats()
	if err != nil || len(st) != 1 || st[0].Name != "alice" || st[0].LastHandshake.IsZero() {
		t.Fatalf("peer stats %+v, %v", st, err)
	}
}

// TestWireGuardPerPeerRules: the same flow is rejected for one peer and
// accepted for another, by name and by peer set; the log names the peer.
func TestWireGuardPerPeerRules(t *testing.T) {
	r := newWGRig(t, 1420, `
[peer_sets]
laptops = ["bob"]

[filter.forward]
rules = [
  { peer = "@laptops", proto = "tcp", dport = 80, action = "reject" },
  { peer = "alice", proto = "tcp", dport = 80, action = "accept" },
]`, []string{"alice", "bob"}, twoPeers)
	peerServer(t, r.wan, "203.0.113.2:80")
	peerServer(t, r.wan, "[2001:db8:2::2]:80")
	if got := askPeer(t, r.peers["alice"].host, "203.0.113.2:80"); !strings.HasPrefix(got, "203.0.113.1:") {
		t.Fatalf("alice: server saw %q", got)
	}
	// The connection remembers its peer: ct list's peer= field.
	var lines []string
	r.g.ct.Range(func(c *conntrack.Conn) bool {
		if c.Tuple(conntrack.DirOriginal).Proto == packet.ProtoTCP {
			lines = append(lines, string(r.g.ct.AppendConn(nil, c, r.g.ct.Now())))
		}
		return true
	})
	if len(lines) == 0 || !strings.Contains(lines[0], " peer=alice ") {
		t.Errorf("ct list of alice's connection: %q, want a peer=alice field", lines)
	}
	for _, dst := range []string{"203.0.113.2:80", "[2001:db8:2::2]:80"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := r.peers["bob"].Net.DialContextTCPAddrPort(ctx, netip.MustParseAddrPort(dst))
		cancel()
		if err == nil {
			c.Close()
			t.Fatalf("bob reached %s", dst)
		}
		if !strings.Contains(err.Error(), "refused") {
			t.Fatalf("bob to %s: %v, want connection refused (the reject's RST)", dst, err)
		}
	}
	if n := r.g.Rules().Counters("filter.forward")[0].Packets; n < 2 {
		t.Errorf("reject rule counted %d packets", n)
	}
}

// TestWireGuardSpoofAndNoPeer: a packet whose inner source is another
// peer's address never gets through; one routed to the tunnel that no peer
// takes is dropped, counted and answered host unreachable.
func TestWireGuardSpoofAndNoPeer(t *testing.T) {
	r := newWGRig(t, 1420, "", []string{"alice", "bob"}, twoPeers)
	alice := r.peers["alice"].host
	ping(t, alice, "10.8.0.2", "203.0.113.2") // the session is up
	// Masquerade hides the sources at the WAN host: the payloads tell.
	isUDP := func(payload string) func([]byte) bool {
		return func(b []byte) bool {
			var p packet.Parsed
			return p.Decode(b) == nil && p.Proto == packet.ProtoUDP && p.DstPort == 7777 && bytes.HasSuffix(b, []byte(payload))
		}
	}
	for _, fam := range [][3]string{{"10.8.0.3", "10.8.0.2", "203.0.113.2"}, {"fd08::3", "fd08::2", "2001:db8:2::2"}} {
		spoofed := r.wan.expect(isUDP("spoof"))
		legit := r.wan.expect(isUDP("legit"))
		// bob's address from alice, then alice's own: one session, in
		// order, so once the second is through the first had its chance.
		alice.send(udpPacket(fam[0], fam[2], 1000, 7777, 64, false, []byte("spoof")))
		alice.send(udpPacket(fam[1], fam[2], 1000, 7777, 64, false, []byte("legit")))
		wait(t, legit, "alice's own packet")
		select {
		case <-spoofed:
			t.Fatalf("a packet with bob's source %s came out of alice's session", fam[0])
		default:
		}
	}
	// No peer holds 10.8.0.99, though wg0's connected route does.
	before := r.g.Counters.Drops[DropNoPeer].Load()
	for _, fam := range [][2]string{{"203.0.113.2", "10.8.0.99"}, {"2001:db8:2::2", "fd08::99"}} {
		v := uint8(4)
		code := uint8(1) // host unreachable
		if strings.Contains(fam[0], ":") {
			v, code = 6, 3 // address unreachable
		}
		unreach := r.wan.expect(icmpMatch(v, map[uint8]uint8{4: 3, 6: 1}[v], code))
		r.wan.send(udpPacket(fam[0], fam[1], 1000, 7777, 64, false, []byte("x")))
		wait(t, unreach, "host unreachable for "+fam[1])
	}
	if got := r.g.Counters.Drops[DropNoPeer].Load() - before; got != 2 {
		t.Errorf("no_peer drops %d, want 2", got)
	}
	if got := r.g.Counters.Snapshot()["drop_no_peer"]; got != 2 {
		t.Errorf("stats drop_no_peer = %d, want 2", got)
	}
	addr, err := r.g.ServeMetrics("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// The gateway caught both before the link had to.
	for _, want := range []string{`tungate_dropped_packets_total{reason="no_peer"} 2`,
		`tungate_wireguard_dropped_packets_total{interface="wg0",reason="no_peer"} 0`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Per peer: alice has a session and traffic both ways; bob is listed.
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`tungate_wireguard_peer_last_handshake_seconds\{interface="wg0",peer="alice"\} [1-9]`),
		regexp.MustCompile(`tungate_wireguard_peer_receive_bytes_total\{interface="wg0",peer="alice"\} [1-9]`),
		regexp.MustCompile(`tungate_wireguard_peer_transmit_bytes_total\{interface="wg0",peer="alice"\} [1-9]`),
		regexp.MustCompile(`tungate_wireguard_peer_last_handshake_seconds\{interface="wg0",peer="bob"\} `),
	} {
		if !want.Match(body) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestWireGuardReloadRemovesPeer: a reload without bob cuts bob only;
// alice's session goes on without a new handshake.
func TestWireGuardReloadRemovesPeer(t *testing.T) {
	r := newWGRig(t, 1420, `
[filter.forward]
rules = [ { peer = "bob", proto = "udp", dport = 9, action = "drop" } ]`, []string{"alice", "bob"}, twoPeers)
	alice, bob := r.peers["alice"].host, r.peers["bob"].host
	ping(t, alice, "10.8.0.2", "203.0.113.2")
	ping(t, bob, "10.8.0.3", "203.0.113.2")
	hs := func(name string) time.Time {
		st, err := r.wg(t).PeerStats()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range st {
			if s.Name == name {
				return s.LastHandshake
			}
		}
		return time.Time{}
	}
	aliceHS := hs("alice")

	// A rule naming bob must go with him: the reload fails and keeps all.
	noBob := strings.Replace(r.conf, peerBlock("bob", r.peers["bob"].pub, twoPeers["bob"]...), "", 1)
	cfg, err := ParseConfig([]byte(noBob))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.g.ReloadConfig(cfg); err == nil || !strings.Contains(err.Error(), `unknown peer "bob"`) {
		t.Fatalf("reload with a rule naming a removed peer: %v", err)
	}
	ping(t, bob, "10.8.0.3", "203.0.113.2")

	cfg, err = ParseConfig([]byte(strings.Replace(noBob, `peer = "bob"`, `peer = "alice"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.g.ReloadConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if got := r.wg(t).PeerName(0); got != "alice" || r.wg(t).PeerName(1) != "" {
		t.Fatalf("peers after reload: %q %q", got, r.wg(t).PeerName(1))
	}
	// Traffic to bob's address has no peer now; alice goes on.
	unreach := r.wan.expect(icmpMatch(4, 3, 1))
	r.wan.send(udpPacket("203.0.113.2", "10.8.0.3", 1000, 7777, 64, false, []byte("x")))
	wait(t, unreach, "host unreachable for bob's address")
	ping(t, alice, "10.8.0.2", "203.0.113.2")
	ping(t, alice, "fd08::2", "2001:db8:2::2")
	if got := hs("alice"); !got.Equal(aliceHS) {
		t.Errorf("alice's handshake changed from %v to %v: her session was touched", aliceHS, got)
	}
	// The rule now names alice, index 0 where bob was index 1 before:
	// her packets to port 9 are the ones it counts.
	alice.send(udpPacket("10.8.0.2", "203.0.113.2", 1000, 9, 64, false, []byte("discard")))
	eventually(t, 10*time.Second, "alice's packet counted by the rule naming her", func() bool {
		return r.g.Rules().Counters("filter.forward")[0].Packets == 1
	})
	// The running config has the new peers: applying them again is a
	// no-op.
	if changed, err := r.g.ApplyPeers(cfg); err != nil || len(changed) != 0 {
		t.Errorf("applying the same peers again: %v, %v", changed, err)
	}
}

// TestWireGuardClampMSS: a peer whose own tunnel MTU is 1500 behind the
// gateway's 1420-byte wg0, and a WAN host whose firewall drops ICMP, so
// PMTU discovery cannot work: 1 MiB goes through intact from the WAN into
// the tunnel because the SYNs' MSS is clamped.
func TestWireGuardClampMSS(t *testing.T) {
	r := newWGRig(t, 1500, "", []string{"alice"}, twoPeers)
	r.wan.dev.mu.Lock()
	r.wan.dev.drop = func(b []byte) bool {
		var p packet.Parsed
		return p.Decode(b) == nil && p.IsICMP() && !p.IsEcho()
	}
	r.wan.dev.mu.Unlock()
	alice := r.peers["alice"].host
	ping(t, alice, "10.8.0.2", "203.0.113.2")
	for _, tc := range []struct {
		dst string
		mss uint16
	}{{"10.8.0.2:9000", 1380}, {"[fd08::2]:9000", 1360}} {
		syn := r.wan.expect(func(b []byte) bool {
			var p packet.Parsed
			return p.Decode(b) == nil && p.Proto == packet.ProtoTCP && p.TCPFlags&packet.TCPSyn != 0 && p.SrcPort == 9000
		})
		transfer(t, r.wan, alice, netip.MustParseAddrPort(tc.dst), 1<<20)
		b := wait(t, syn, "SYN-ACK at the WAN host")
		var p packet.Parsed
		if err := p.Decode(b); err != nil {
			t.Fatal(err)
		}
		if got := mssOption(p.TCPOptions()); got != tc.mss {
			t.Errorf("%s: SYN-ACK MSS %d at the WAN host, want %d", tc.dst, got, tc.mss)
		}
		if !p.L4ChecksumValid() {
			t.Errorf("%s: clamped SYN-ACK has a bad checksum", tc.dst)
		}
	}
	if n := r.g.Counters.Drops[DropMTU].Load(); n != 0 {
		t.Errorf("%d packets too big for wg0 were dropped", n)
	}
}

// mssOption is the MSS option's value, 0 when absent.
func mssOption(o []byte) uint16 {
	for i := 0; i+1 < len(o); {
		switch {
		case o[i] == 0:
			return 0
		case o[i] == 1:
			i++
			continue
		case o[i] == 2 && o[i+1] == 4 && i+4 <= len(o):
			return uint16(o[i+2])<<8 | uint16(o[i+3])
		case o[i+1] < 2:
			return 0
		}
		i += int(o[i+1])
	}
	return 0
}

// fakePeers is a PeerIdentifier with a fixed list: every address is its
// first peer.
type fakePeers []string

func (f fakePeers) PeerFor(netip.Addr) (int, bool)      { return 0, len(f) > 0 }
func (f fakePeers) PeerForRaw([]byte, bool) (int, bool) { return 0, len(f) > 0 }
func (f fakePeers) PeerName(i int) string {
	if i < 0 || i >= len(f) {
		return ""
	}
	return f[i]
}

// A packet is never judged as another peer's while a reload has swapped
// the link's peer list but not yet the rules (or the other way round).
func TestPeerOfChecksNumbering(t *testing.T) {
	var p packet.Parsed
	if err := p.Decode(udpPacket("10.8.0.2", "203.0.113.2", 1, 2, 64, false, nil)); err != nil {
		t.Fatal(err)
	}
	compile := func(names ...string) *rules.Ruleset {
		rs, err := rules.Compile(rules.FilterConfig{}, rules.RawConfig{}, nil, rules.Env{Interfaces: []string{"wan", "wg0"}, Peers: [][]string{nil, names}})
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	for _, tc := range []struct {
		name  string
		link  fakePeers
		rules *rules.Ruleset
		want  int32
	}{
		{"same numbering", fakePeers{"alice", "bob"}, compile("alice", "bob"), 1},
		{"rules still old: index 0 was bob", fakePeers{"alice"}, compile("bob", "alice"), 0},
		{"rules know fewer peers", fakePeers{"carol"}, compile(), 1},
		{"no peer", fakePeers{}, compile("alice"), 0},
	} {
		w := &worker{in: 1, peers: tc.link, rs: tc.rules}
		if got := w.peerOf(&p); got != tc.want {
			t.Errorf("%s: peer %d, want %d", tc.name, got, tc.want)
		}
	}
}
