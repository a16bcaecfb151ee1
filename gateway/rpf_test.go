package gateway

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"go.uber.org/zap"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"tungate/packet"
)

// rpfLinks is linksConf with a reverse-path mode on each link; routes
// holds the [[route]] tables (linksConf's are the two default routes).
func rpfLinks(lanMode, wanMode, routes string) string {
	return fmt.Sprintf(`
[[interface]]
name = "lan"
tun = "lan0"
addresses = ["10.10.0.1/24", "fd10::1/64"]
rpf = %q

[[interface]]
name = "wan"
tun = "wan0"
addresses = ["198.18.0.1/24", "2001:db8:1::1/64"]
rpf = %q
%s`, lanMode, wanMode, routes)
}

const defaultRoutes = `
[[route]]
to = "0.0.0.0/0"
interface = "wan"
[[route]]
to = "::/0"
interface = "wan"
`

func newRPFRig(t *testing.T, conf string) *punchRig {
	t.Helper()
	cfg, err := ParseConfig([]byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(cfg, Options{Logger: nopLogger(), Open: nullOpen})
	if err != nil {
		t.Fatal(err)
	}
	return &punchRig{t: t, g: g, lan: newWorker(g, g.Links()[0]), wan: newWorker(g, g.Links()[1])}
}

// publicSource returns a random global unicast address that is none of
// the test's own prefixes: what a LAN host forging sources would send.
func publicSource(r *rand.Rand, v6 bool) string {
	if v6 {
		var a [16]byte
		a[0], a[1] = 0x2a, byte(r.IntN(256))
		for i := 2; i < 16; i++ {
			a[i] = byte(r.IntN(256))
		}
		return netip.AddrFrom16(a).String()
	}
	for {
		a := [4]byte{byte(1 + r.IntN(222)), byte(r.IntN(256)), byte(r.IntN(256)), byte(1 + r.IntN(254))}
		switch a[0] {
		case 10, 100, 127, 169, 172, 192, 198:
			continue
		}
		return netip.AddrFrom4(a).String()
	}
}

// A LAN host flooding with forged public sources through masquerade: with
// the check off every packet is forwarded and costs a connection (and a
// NAT mapping); with rpf strict on the LAN link none reaches conntrack,
// each is counted, and the host's real address still works.
func TestRPFStopsSpoofedFlood(t *testing.T) {
	const n = 300
	const masq = "[[nat.masquerade]]\nout = \"wan\"\n"
	for _, fam := range []struct {
		name, host, dst, gw string
		v6                  bool
	}{
		{"ipv4", "10.10.0.2", "198.18.0.2", "198.18.0.1", false},
		{"ipv6", "fd10::2", "2001:db8:1::2", "2001:db8:1::1", true},
	} {
		for _, mode := range []string{"off", "strict"} {
			t.Run(fam.name+"/"+mode, func(t *testing.T) {
				r := newRPFRig(t, rpfLinks(mode, "off", defaultRoutes)+masq)
				rnd := rand.New(rand.NewPCG(1, 2))
				forwarded := 0
				for i := range n {
					pkt := udpPacket(publicSource(rnd, fam.v6), fam.dst, uint16(1024+i), 53, 64, false, []byte("flood"))
					sent := r.run(r.lan, pkt)
					for _, b := range sent[1] {
						p := mustDecode(t, b)
						if p.SrcIP() != netip.MustParseAddr(fam.gw) {
							t.Fatalf("forwarded with source %v, want the masquerade address", p.SrcIP())
						}
						forwarded++
					}
				}
				drops := r.g.Counters.Drops[DropRPF].Load()
				if mode == "off" {
					if forwarded != n || r.g.ct.Count() != n || drops != 0 {
						t.Fatalf("rpf off: forwarded %d, %d connections, %d rpf drops; want %d, %d, 0", forwarded, r.g.ct.Count(), drops, n, n)
					}
					return
				}
				if forwarded != 0 || r.g.ct.Count() != 0 || drops != n {
					t.Fatalf("rpf strict: forwarded %d, %d connections, %d rpf drops; want 0, 0, %d", forwarded, r.g.ct.Count(), drops, n)
				}
				sent := r.run(r.lan, udpPacket(fam.host, fam.dst, 5000, 53, 64, false, []byte("real")))
				if len(sent[1]) != 1 || r.g.ct.Count() != 1 {
					t.Fatalf("the host's own address: %d packets sent, %d connections; want 1, 1", len(sent[1]), r.g.ct.Count())
				}
			})
		}
	}
}

// Strict and loose differ where the route back exists but leaves through
// another link; both refuse the gateway's own addresses as sources; loose
// refuses only what has no route at all, which with a default route is
// nothing else.
func TestRPFStrictVersusLoose(t *testing.T) {
	type tcase struct {
		from          string // "lan" or "wan"
		src, dst      string
		strict, loose bool // passes
	}
	cases := []tcase{
		{"lan", "10.10.0.2", "198.18.0.2", true, true},
		{"wan", "198.18.0.2", "10.10.0.2", true, true},
		{"wan", "203.0.113.7", "10.10.0.2", true, true},   // back via the default route, on wan
		{"wan", "10.10.0.9", "10.10.0.2", false, true},    // a LAN source from the WAN
		{"lan", "203.0.113.7", "198.18.0.2", false, true}, // loose: the default route reaches it
		{"wan", "198.18.0.1", "10.10.0.2", false, false},  // the gateway's own addresses
		{"lan", "10.10.0.1", "198.18.0.2", false, false},
		{"lan", "fd10::2", "2001:db8:1::2", true, true},
		{"wan", "2001:db8:1::2", "fd10::2", true, true},
		{"wan", "2001:db8:99::7", "fd10::2", true, true},
		{"wan", "fd10::9", "fd10::2", false, true},
		{"lan", "2001:db8:99::7", "2001:db8:1::2", false, true},
		{"wan", "2001:db8:1::1", "fd10::2", false, false},
		{"lan", "fd10::1", "2001:db8:1::2", false, false},
	}
	run := func(t *testing.T, conf string, c tcase, pass bool, mode string) {
		t.Helper()
		r := newRPFRig(t, conf)
		w, out := r.lan, 1
		if c.from == "wan" {
			w, out = r.wan, 0
		}
		sent := r.run(w, udpPacket(c.src, c.dst, 1234, 53, 64, false, []byte("x")))
		dropped := r.g.Counters.Drops[DropRPF].Load()
		if pass && (len(sent[out]) != 1 || dropped != 0) {
			t.Errorf("%s: %s from %s: %d forwarded, %d rpf drops; want it forwarded", mode, c.src, c.from, len(sent[out]), dropped)
		}
		if !pass && (len(sent[out]) != 0 || dropped != 1 || r.g.ct.Count() != 0) {
			t.Errorf("%s: %s from %s: %d forwarded, %d rpf drops, %d connections; want it dropped before conntrack", mode, c.src, c.from, len(sent[out]), dropped, r.g.ct.Count())
		}
	}
	for _, c := range cases {
		run(t, rpfLinks("strict", "strict", defaultRoutes), c, c.strict, "strict")
		run(t, rpfLinks("loose", "loose", defaultRoutes), c, c.loose, "loose")
		run(t, rpfLinks("off", "off", defaultRoutes), c, true, "off")
	}
	// Without a default route loose mode has something to refuse: sources
	// no route leads back to.
	noDefault := rpfLinks("loose", "loose", "")
	for _, c := range []tcase{
		{"lan", "203.0.113.7", "198.18.0.2", false, false},
		{"lan", "2001:db8:99::7", "2001:db8:1::2", false, false},
		{"wan", "10.10.0.9", "10.10.0.2", true, true},
		{"wan", "fd10::9", "fd10::2", true, true},
	} {
		run(t, noDefault, c, c.loose, "loose, no default route")
	}
}

func TestRPFConfig(t *testing.T) {
	_, err := ParseConfig([]byte(rpfLinks("strcit", "loose", "")))
	if err == nil || !strings.Contains(err.Error(), `interface[0].rpf: unknown mode "strcit" (did you mean "strict"?)`) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "6:7:") {
		t.Fatalf("error not located at the value: %v", err)
	}
}

// The check's cost on an established flow: BenchmarkForward/ipv4-tcp with
// rpf strict on the LAN link.
func BenchmarkForwardRPF(b *testing.B) {
	for _, mode := range []string{"off", "strict", "loose"} {
		b.Run("ipv4-tcp-"+mode, func(b *testing.B) {
			cfg, err := ParseConfig([]byte(rpfLinks(mode, mode, defaultRoutes)))
			if err != nil {
				b.Fatal(err)
			}
			g, err := New(cfg, Options{Logger: nopLogger(), Open: nullOpen})
			if err != nil {
				b.Fatal(err)
			}
			syn := tcpPacket("10.10.0.2", "198.18.0.2", 40000, 80, 1000, 0, header.TCPFlagSyn, 0)
			synack := tcpPacket("198.18.0.2", "10.10.0.2", 80, 40000, 5000, 1001, header.TCPFlagSyn|header.TCPFlagAck, 0)
			lan := newWorker(g, g.Links()[0])
			wan := newWorker(g, g.Links()[1])
			lan.rs, wan.rs = g.Rules(), g.Rules()
			lan.now, wan.now = g.ct.Now(), g.ct.Now()
			runPacket(lan, syn)
			runPacket(wan, synack)
			ack := tcpPacket("10.10.0.2", "198.18.0.2", 40000, 80, 1001, 5001, header.TCPFlagAck, 64)
			benchForward(b, g, ack, nil)
		})
	}
}

func mustDecode(t *testing.T, b []byte) *packet.Parsed {
	t.Helper()
	var p packet.Parsed
	if err := p.Decode(b); err != nil {
		t.Fatalf("decode %x: %v", b, err)
	}
	return &p
}

// BenchmarkReversePathLookup is the check without its cache: a new source
// every packet, as in a flood of forged ones.
func BenchmarkReversePathLookup(b *testing.B) {
	for _, src := range []string{"10.10.0.2", "203.0.113.7", "fd10::2", "2001:db8:99::7"} {
		b.Run(src, func(b *testing.B) {
			cfg, err := ParseConfig([]byte(rpfLinks("strict", "strict", defaultRoutes)))
			if err != nil {
				b.Fatal(err)
			}
			g, err := New(cfg, Options{Logger: nopLogger(), Open: nullOpen})
			if err != nil {
				b.Fatal(err)
			}
			w := newWorker(g, g.Links()[0])
			var p packet.Parsed
			if err := p.Decode(udpPacket(src, "198.18.0.2", 1, 2, 64, false, nil)); err != nil {
				b.Fatal(err)
			}
			want := strings.HasPrefix(src, "10.") || strings.HasPrefix(src, "fd10")
			b.ReportAllocs()
			for b.Loop() {
				w.rpValid = false
				if w.reversePath(&p) != want {
					b.Fatal("wrong verdict")
				}
			}
		})
	}
}

// A reload changes the check live; per_source_max cannot be turned on
// live (existing connections were never counted), so that reload is
// refused whole, naming the key, and nothing of it applies.
func TestRPFReloadLive(t *testing.T) {
	cfg, err := ParseConfig([]byte(rpfLinks("off", "off", defaultRoutes)))
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(cfg, Options{Logger: zap.NewNop(), Open: nullOpen})
	if err != nil {
		t.Fatal(err)
	}
	refused, err := ParseConfig([]byte(rpfLinks("strict", "off", defaultRoutes) + "[conntrack]\nper_source_max = 10\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.ReloadConfig(refused); err == nil || !strings.Contains(err.Error(), "conntrack.per_source_max") {
		t.Fatalf("reload turning per_source_max on: %v, want a refusal naming the key", err)
	}
	if g.Links()[0].rpf != rpfOff || g.srcLimit != nil || g.Config() != cfg {
		t.Fatal("a refused reload changed the running settings")
	}
	next, err := ParseConfig([]byte(rpfLinks("strict", "off", defaultRoutes)))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.ReloadConfig(next); err != nil {
		t.Fatal(err)
	}
	if g.Links()[0].rpf != rpfStrict || g.Config() != next {
		t.Fatal("the rpf change did not apply")
	}
}
