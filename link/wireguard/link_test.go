package wireguard

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn/bindtest"

	"tungate/link"
)

// pair is a Link and a plain wireguard-go device joined by bindtest's
// in-memory binds: the link is 10.9.0.1/fd09::1, the remote ("far")
// 10.9.0.2/fd09::2 and 10.9.2.0/24.
type pair struct {
	l    *Link
	r    *remote
	recv <-chan []byte // what the link reads
}

func newPair(t *testing.T) *pair {
	return newPairWith(t, "", nil)
}

// newPairWith adds remoteExtra to the remote's UAPI peer section and lets
// mutate change the link's config.
func newPairWith(t *testing.T, remoteExtra string, mutate func(*Config)) *pair {
	t.Helper()
	binds := bindtest.NewChannelBinds()
	priv, pub := mustKey(t)
	// The remote learns the link's endpoint from its first handshake;
	// bindtest endpoint 2 is the link's bind seen from the remote.
	r := newRemote(t, binds[1], peerUAPI(t, pub, "127.0.0.1:2", "10.9.0.1/32", "fd09::1/128")+remoteExtra)
	cfg := Config{
		PrivateKey:     priv,
		AllowInlineKey: true,
		Peers: []PeerConfig{{
			Name:       "far",
			PublicKey:  r.pub,
			Endpoint:   "127.0.0.1:1", // the remote's bind, seen from the link
			AllowedIPs: []string{"10.9.0.2", "fd09::2/128", "10.9.2.0/24"},
		}},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	l, err := New("wgtest", cfg, Options{Bind: binds[0]})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &pair{l: l, r: r, recv: startReader(l)}
}

func TestTunnelBothWaysIPv4IPv6(t *testing.T) {
	p := newPair(t)
	// The first packet out starts the handshake and waits for it.
	out4 := udp("10.9.0.1", "10.9.0.2", "link to far over v4")
	writeLink(t, p.l, out4)
	expect(t, p.r.received, out4, "v4 link→remote")

	out6 := udp("fd09::1", "fd09::2", "link to far over v6")
	writeLink(t, p.l, out6)
	expect(t, p.r.received, out6, "v6 link→remote")

	in4 := udp("10.9.0.2", "10.9.0.1", "far to link over v4")
	p.r.send(t, in4)
	expect(t, p.recv, in4, "v4 remote→link")
	in6 := udp("fd09::2", "fd09::1", "far to link over v6")
	p.r.send(t, in6)
	expect(t, p.recv, in6, "v6 remote→link")

	// A batch of several packets arrives whole and in order.
	batch := [][]byte{
		udp("10.9.0.1", "10.9.2.7", "one"),
		udp("fd09::1", "fd09::2", "two"),
		udp("10.9.0.1", "10.9.0.2", "three"),
	}
	writeLink(t, p.l, batch...)
	for i, b := range batch {
		expect(t, p.r.received, b, fmt.Sprintf("batch packet %d", i))
	}

	// The sender of a decrypted packet is named by its source.
	for _, src := range []string{"10.9.0.2", "fd09::2", "10.9.2.200"} {
		i, ok := p.l.PeerFor(netip.MustParseAddr(src))
		if !ok || p.l.PeerName(i) != "far" {
			t.Errorf("PeerFor(%s) = %d, %v (%q); want far", src, i, ok, p.l.PeerName(i))
		}
	}
	if i, ok := p.l.PeerFor(netip.MustParseAddr("10.9.3.1")); ok {
		t.Errorf("PeerFor(10.9.3.1) = %d, true; want no peer", i)
	}
	if p.l.PeerName(1) != "" || p.l.PeerName(-1) != "" {
		t.Error("PeerName of a peer that does not exist is not empty")
	}

	st, err := p.l.PeerStats()
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Name != "far" || st[0].PublicKey != p.r.pub {
		t.Fatalf("PeerStats = %+v", st)
	}
	if st[0].LastHandshake.IsZero() || time.Since(st[0].LastHandshake) > time.Minute {
		t.Errorf("LastHandshake = %v, want just now", st[0].LastHandshake)
	}
	if st[0].RxBytes == 0 || st[0].TxBytes == 0 {
		t.Errorf("transfer rx %d tx %d, want both counted", st[0].RxBytes, st[0].TxBytes)
	}
	if s := p.l.Stats(); s != (Stats{}) {
		t.Errorf("Stats = %+v, want no drops", s)
	}
}

func TestWriteWithoutPeerDroppedAndCounted(t *testing.T) {
	p := newPair(t)
	noPeer4 := udp("10.9.0.1", "192.0.2.9", "nobody")
	noPeer6 := udp("fd09::1", "2001:db8::9", "nobody")
	junk := []byte{0x00, 0x01, 0x02}
	short4 := udp("10.9.0.1", "10.9.0.2", "")[:19]
	good := udp("10.9.0.1", "10.9.0.2", "somebody")
	writeLink(t, p.l, noPeer4, junk, noPeer6, short4, good)
	if s := p.l.Stats(); s.NoPeer != 2 || s.Malformed != 2 {
		t.Errorf("Stats = %+v, want NoPeer 2, Malformed 2", s)
	}
	// Only the routable packet came through, and it was the first.
	expect(t, p.r.received, good, "routable packet")

	// Contract violations are errors, not panics; a buffer shorter than
	// the offset is a malformed packet.
	if _, err := p.l.Write([][]byte{good}, -1); err == nil {
		t.Error("Write with a negative offset accepted")
	}
	if _, err := p.l.Read([][]byte{good}, nil, 0); err == nil {
		t.Error("Read with no sizes accepted")
	}
	if n, err := p.l.Write([][]byte{make([]byte, 4)}, link.Headroom); n != 1 || err != nil {
		t.Errorf("Write of a buffer shorter than the offset = %d, %v", n, err)
	}
	if s := p.l.Stats(); s.Malformed != 3 {
		t.Errorf("Malformed = %d, want 3", s.Malformed)
	}

	// A batch with nothing routable neither blocks nor reaches the device.
	writeLink(t, p.l, noPeer4)
	if s := p.l.Stats(); s.NoPeer != 3 {
		t.Errorf("NoPeer = %d, want 3", s.NoPeer)
	}
}

func TestSpoofedSourceNotDelivered(t *testing.T) {
	p := newPair(t)
	// The remote routes 10.9.0.1 to the link whatever the source; the
	// link's device must refuse sources outside the remote's allowed IPs.
	for _, spoof := range [][]byte{
		udp("10.9.3.3", "10.9.0.1", "spoofed v4"),
		udp("fd09::99", "fd09::1", "spoofed v6"),
	} {
		p.r.send(t, spoof)
	}
	legit := udp("10.9.2.9", "10.9.0.1", "legit")
	p.r.send(t, legit)
	// The device delivers one peer's packets in order, so had a spoofed
	// one passed it would be read first.
	expect(t, p.recv, legit, "first packet delivered")
	if n := p.l.Stats().SpoofedSource; n != 2 {
		t.Errorf("SpoofedSource = %d, want 2 (one IPv4, one IPv6)", n)
	}
}

func TestCloseUnblocksReadAndWrite(t *testing.T) {
	p := newPair(t)
	// A Write that cannot be delivered while the device is gone, and a
	// blocked Read, both return once the link closes.
	if err := p.l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-p.recv:
		if ok {
			t.Fatal("read a packet after Close")
		}
	case <-time.After(wait):
		t.Fatal("Read still blocked after Close")
	}
	bufs := make([][]byte, 1)
	sizes := make([]int, 1)
	bufs[0] = make([]byte, 100)
	if _, err := p.l.Read(bufs, sizes, link.Headroom); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Read after Close: %v, want os.ErrClosed", err)
	}
	pkt := append(make([]byte, link.Headroom), udp("10.9.0.1", "10.9.0.2", "late")...)
	if _, err := p.l.Write([][]byte{pkt}, link.Headroom); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close: %v, want os.ErrClosed", err)
	}
	if err := p.l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestMTUAndBatchSize(t *testing.T) {
	p := newPair(t)
	if mtu, err := p.l.MTU(); err != nil || mtu != DefaultMTU {
		t.Errorf("MTU = %d, %v; want %d", mtu, err, DefaultMTU)
	}
	if p.l.BatchSize() < 1 {
		t.Errorf("BatchSize = %d", p.l.BatchSize())
	}
}

func TestShowShape(t *testing.T) {
	p := newPair(t)
	out := udp("10.9.0.1", "10.9.0.2", "x")
	writeLink(t, p.l, out)
	expect(t, p.r.received, out, "handshake packet")
	var b bytes.Buffer
	if err := p.l.Show(&b); err != nil {
		t.Fatal(err)
	}
	pub, _ := PubKey(p.l.privateKeyForTest(t))
	want := []string{
		`interface: wgtest`,
		`  public key: ` + regexp.QuoteMeta(pub),
		`  private key: \(hidden\)`,
		`  listening port: \d+`,
		``,
		`peer: ` + regexp.QuoteMeta(p.r.pub),
		`  endpoint: 127\.0\.0\.1:\d+`,
		`  allowed ips: ((10\.9\.0\.2/32|10\.9\.2\.0/24|fd09::2/128)(, |$)){3}`,
		`  latest handshake: (Now|\d+ seconds? ago)`,
		`  transfer: \d+ B received, \d+ B sent`,
	}
	got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(got) != len(want) {
		t.Fatalf("Show printed %d lines, want %d:\n%s", len(got), len(want), b.String())
	}
	for i := range want {
		if !regexp.MustCompile("^" + want[i] + "$").MatchString(got[i]) {
			t.Errorf("line %d = %q, want /%s/", i+1, got[i], want[i])
		}
	}
}

// privateKeyForTest reads the device's private key back through the UAPI.
func (l *Link) privateKeyForTest(t *testing.T) string {
	t.Helper()
	s, err := l.state()
	if err != nil {
		t.Fatal(err)
	}
	return s.private.String()
}

func TestShowFormat(t *testing.T) {
	// Expected lines are as wireguard-tools' wg show prints them (checked
	// against wg v1.0.20210914 on a wireguard-go interface).
	priv, _ := mustKey(t)
	pk, _ := parseKey(priv)
	_, pubA := mustKey(t)
	_, pubB := mustKey(t)
	_, pubC := mustKey(t)
	ka, _ := parseKey(pubA)
	kb, _ := parseKey(pubB)
	kc, _ := parseKey(pubC)
	now := time.Unix(1_000_000, 0)
	s := &devState{
		private: pk,
		port:    51999,
		fwmark:  0x20,
		peers: []peerState{
			{pub: ka, endpoint: "[::1]:51000", allowed: []string{"10.0.0.2/32", "fd00::2/128"}, psk: key{1}, tx: 148, keepalive: 1},
			{pub: kb, endpoint: "127.0.0.1:5", keepalive: 25, rx: 1536, tx: 3 << 20, handshake: now.Add(-(3600 + 2*60 + 1) * time.Second)},
			{pub: kc, allowed: []string{"10.1.0.0/16"}, handshake: now, rx: 5 << 30, tx: 7 << 40, keepalive: 65},
		},
	}
	order := map[key]int{ka: 0, kb: 1, kc: 2}
	var b bytes.Buffer
	if err := writeShow(&b, "wg7", s, order, now); err != nil {
		t.Fatal(err)
	}
	want := "interface: wg7\n" +
		"  public key: " + publicKey(pk).String() + "\n" +
		"  private key: (hidden)\n" +
		"  listening port: 51999\n" +
		"  fwmark: 0x20\n" +
		"\n" +
		"peer: " + pubC + "\n" +
		"  allowed ips: 10.1.0.0/16\n" +
		"  latest handshake: Now\n" +
		"  transfer: 5.00 GiB received, 7.00 TiB sent\n" +
		"  persistent keepalive: every 1 minute, 5 seconds\n" +
		"\n" +
		"peer: " + pubB + "\n" +
		"  endpoint: 127.0.0.1:5\n" +
		"  allowed ips: (none)\n" +
		"  latest handshake: 1 hour, 2 minutes, 1 second ago\n" +
		"  transfer: 1.50 KiB received, 3.00 MiB sent\n" +
		"  persistent keepalive: every 25 seconds\n" +
		"\n" +
		"peer: " + pubA + "\n" +
		"  preshared key: (hidden)\n" +
		"  endpoint: [::1]:51000\n" +
		"  allowed ips: 10.0.0.2/32, fd00::2/128\n" +
		"  transfer: 0 B received, 148 B sent\n" +
		"  persistent keepalive: every 1 second\n"
	if b.String() != want {
		t.Errorf("Show:\n%s\nwant:\n%s", b.String(), want)
	}
	if got := prettyTime(2*365*86400 + 86400); got != "2 years, 1 day" {
		t.Errorf("prettyTime = %q", got)
	}
}

func TestGenKeyPubKey(t *testing.T) {
	// RFC 7748 section 6.1: Alice's key pair.
	pub, err := PubKey("dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=")
	if err != nil || pub != "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=" {
		t.Errorf("PubKey(RFC 7748 Alice) = %q, %v", pub, err)
	}
	priv, err := GenKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := parseKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if k[0]&7 != 0 || k[31]&0x80 != 0 || k[31]&0x40 == 0 {
		t.Errorf("GenKey %s is not clamped", priv)
	}
	other, _ := GenKey()
	if other == priv {
		t.Error("two GenKey calls gave the same key")
	}
	if _, err := PubKey("not a key"); err == nil {
		t.Error("PubKey accepted garbage")
	}
}

func TestDefaultBindOpensHostSocket(t *testing.T) {
	// Without an injected bind the link listens on an ordinary UDP port.
	priv, _ := mustKey(t)
	l, err := New("wgdefault", Config{PrivateKey: priv, AllowInlineKey: true}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, err := l.state()
	if err != nil {
		t.Fatal(err)
	}
	if s.port == 0 {
		t.Error("no listening port")
	}
	// A port in use is an error from New, not a link without a socket.
	priv2, _ := mustKey(t)
	if l2, err := New("wgbusy", Config{PrivateKey: priv2, AllowInlineKey: true, ListenPort: s.port}, Options{}); err == nil {
		l2.Close()
		t.Errorf("second link on port %d came up", s.port)
	} else if !strings.Contains(err.Error(), fmt.Sprintf("listen_port %d", s.port)) {
		t.Errorf("port in use: %v", err)
	}

	// A named endpoint is looked up when the peers are applied.
	_, pub := mustKey(t)
	if err := l.UpdatePeers([]PeerConfig{{Name: "named", PublicKey: pub, Endpoint: "localhost:4321"}}); err != nil {
		t.Fatal(err)
	}
	st, err := l.PeerStats()
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || (st[0].Endpoint != "127.0.0.1:4321" && st[0].Endpoint != "[::1]:4321") {
		t.Errorf("PeerStats = %+v, want localhost:4321 resolved", st)
	}
	err = l.UpdatePeers([]PeerConfig{{Name: "bad", PublicKey: pub, Endpoint: "no-such-host.invalid:4321"}})
	if err == nil || !strings.HasPrefix(err.Error(), `peer[0].endpoint: "no-such-host.invalid:4321": `) {
		t.Errorf("unresolvable endpoint: %v", err)
	}
}

func TestPresharedKeyKeepaliveMTU(t *testing.T) {
	psk, _ := mustKey(t) // a psk is any 32 random bytes
	pskFile := writeFile(t, psk, 0o600)
	p := newPairWith(t, "preshared_key="+b64hex(t, psk)+"\n", func(c *Config) {
		c.Peers[0].PresharedKeyFile = pskFile
		c.Peers[0].PersistentKeepalive = Keepalive(25 * time.Second)
		c.MTU = 1380
	})
	// The handshake only completes if both ends mix in the same psk.
	out := udp("10.9.0.1", "10.9.0.2", "with psk")
	writeLink(t, p.l, out)
	expect(t, p.r.received, out, "link→remote with a preshared key")
	in := udp("10.9.0.2", "10.9.0.1", "back with psk")
	p.r.send(t, in)
	expect(t, p.recv, in, "remote→link with a preshared key")
	var b bytes.Buffer
	if err := p.l.Show(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\n  preshared key: (hidden)\n", "\n  persistent keepalive: every 25 seconds\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("Show lacks %q:\n%s", want, b.String())
		}
	}
	if mtu, _ := p.l.MTU(); mtu != 1380 {
		t.Errorf("MTU = %d, want 1380", mtu)
	}
}
