package gateway

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"tungate/conntrack"
	"tungate/internal/packettest"
	"tungate/link"
	"tungate/packet"
)

// memLink is an in-memory link: the test injects what the far side sends
// and reads what the gateway wrote to it.
type memLink struct {
	in     chan []byte
	out    chan []byte
	done   chan struct{}
	once   sync.Once
	closed chan struct{} // closed by Close, for tests that watch it
}

func newMemLink() *memLink {
	return &memLink{in: make(chan []byte, 64), out: make(chan []byte, 4096), done: make(chan struct{}), closed: make(chan struct{})}
}

func (m *memLink) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case b := <-m.in:
		sizes[0] = copy(bufs[0][offset:], b)
		return 1, nil
	case <-m.done:
		return 0, os.ErrClosed
	}
}

func (m *memLink) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		select {
		case m.out <- bytes.Clone(b[offset:]):
		default: // a test that does not read loses packets, never blocks the gateway
		}
	}
	return len(bufs), nil
}

func (m *memLink) BatchSize() int    { return 1 }
func (m *memLink) MTU() (int, error) { return 1500, nil }
func (m *memLink) isClosed() bool    { return chanClosed(m.closed) }
func chanClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
func (m *memLink) Close() error { m.once.Do(func() { close(m.done); close(m.closed) }); return nil }

var _ link.Link = (*memLink)(nil)

// reloadRig is a running in-process gateway whose links are memLinks,
// found by their TUN name, so a reload that opens an interface gets one.
type reloadRig struct {
	t     *testing.T
	g     *Gateway
	mu    sync.Mutex // guards devs
	devs  map[string]*memLink
	level zap.AtomicLevel
	logs  *observer.ObservedLogs
}

func newReloadRig(t *testing.T, conf string) *reloadRig {
	t.Helper()
	r := &reloadRig{t: t, devs: map[string]*memLink{}, level: zap.NewAtomicLevelAt(zap.InfoLevel)}
	cfg, err := ParseConfig([]byte(conf))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	r.logs = logs
	g, err := New(cfg, Options{Logger: zap.New(core).WithOptions(zap.IncreaseLevel(r.level)), LogLevel: &r.level, Open: r.open})
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	r.g = g
	runUntilCleanup(t, g)
	return r
}

func (r *reloadRig) open(ic *InterfaceConfig, _ *zap.Logger) (link.Link, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.devs[ic.TUN]
	if d == nil || d.isClosed() {
		d = newMemLink()
		r.devs[ic.TUN] = d
	}
	return d, nil
}

func (r *reloadRig) dev(tun string) *memLink {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.devs[tun]
	if d == nil {
		r.t.Fatalf("no device %q", tun)
	}
	return d
}

// reload parses conf and applies it.
func (r *reloadRig) reload(conf string, opt ReloadOptions) (*Plan, error) {
	r.t.Helper()
	cfg, err := ParseConfig([]byte(conf))
	if err != nil {
		r.t.Fatalf("config: %v", err)
	}
	return r.g.ApplyConfig(cfg, opt)
}

// send injects pkt as sent by the far side of device tun.
func (r *reloadRig) send(tun string, pkt []byte) { r.dev(tun).in <- pkt }

// recv waits for the first packet the gateway writes to tun that match
// accepts, skipping others.
func (r *reloadRig) recv(tun string, match func(p *packet.Parsed) bool) *packet.Parsed {
	r.t.Helper()
	d := r.dev(tun)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case b := <-d.out:
			p := new(packet.Parsed)
			if p.Decode(b) == nil && match(p) {
				return p
			}
		case <-deadline:
			r.t.Fatalf("nothing matching reached %s", tun)
			return nil
		}
	}
}

// dropped sends pkt on tun and waits until the drop counter for reason
// went up.
func (r *reloadRig) dropped(tun string, pkt []byte, reason DropReason) {
	r.t.Helper()
	before := r.g.Counters.Drops[reason].Load()
	r.send(tun, pkt)
	eventually(r.t, 5*time.Second, "drop "+reason.String(), func() bool { return r.g.Counters.Drops[reason].Load() > before })
}

func udp4(src, dst string, sport, dport uint16) []byte {
	return packettest.Build(packettest.IP{Src: src, Dst: dst}, packettest.UDP{SPort: sport, DPort: dport}, []byte("x"))
}

func isUDP(dst string, dport uint16) func(p *packet.Parsed) bool {
	return func(p *packet.Parsed) bool {
		return p.Proto == packet.ProtoUDP && p.DstIP().String() == dst && p.DstPort == dport
	}
}

// reloadBase is the running config of the reload tests: lan and wan,
// masquerade out of wan, new connections only from lan.
const reloadBase = `
[[interface]]
name = "lan"
tun = "m-lan"
addresses = ["10.10.0.1/24", "fd10::1/64"]

[[interface]]
name = "wan"
tun = "m-wan"
addresses = ["198.18.0.1/24", "2001:db8:1::1/64"]

[[route]]
to = "0.0.0.0/0"
interface = "wan"

[[nat.masquerade]]
out = "wan"
src = ["10.10.0.0/24"]

[conntrack]
per_source_max = 50
[conntrack.timeouts]
udp = "30s"

[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { in = "lan", action = "accept" },
]
`

// forwards checks the base behaviour: a new flow from lan goes out of wan
// masqueraded. (Not to port 53: DNS flows have a timeout of their own.)
func (r *reloadRig) forwards(sport uint16) {
	r.t.Helper()
	r.send("m-lan", udp4("10.10.0.2", "198.18.0.2", sport, 4444))
	p := r.recv("m-wan", isUDP("198.18.0.2", 4444))
	if p.SrcIP().String() != "198.18.0.1" {
		r.t.Fatalf("forwarded from %v, want masqueraded to 198.18.0.1", p.SrcIP())
	}
}

func TestReloadLiveKeys(t *testing.T) {
	for _, c := range []struct {
		name string
		// edit turns the base config into the new one.
		edit func(string) string
		// path is a key path the plan must list.
		path string
		// check asserts the datapath now behaves by the new config.
		check func(t *testing.T, r *reloadRig)
	}{
		{"filter rules", func(s string) string {
			return strings.Replace(s, `{ in = "lan", action = "accept" }`, `{ in = "wan", action = "accept" }`, 1)
		},
			"filter.forward.rules[1].in", func(t *testing.T, r *reloadRig) {
				r.dropped("m-lan", udp4("10.10.0.2", "198.18.0.2", 5000, 53), DropFilter)
				r.send("m-wan", udp4("198.18.0.2", "10.10.0.2", 53, 5000))
				r.recv("m-lan", isUDP("10.10.0.2", 5000))
			}},
		{"sets", func(s string) string {
			return strings.Replace(s, `  { in = "lan", action = "accept" },`, `  { dst = ["@blocked"], action = "drop" },
  { in = "lan", action = "accept" },`, 1) + "[sets]\nblocked = [\"198.18.0.9\"]\n"
		}, "sets.blocked", func(t *testing.T, r *reloadRig) {
			r.dropped("m-lan", udp4("10.10.0.2", "198.18.0.9", 5000, 53), DropFilter)
			r.forwards(5001)
		}},
		{"nat rules", func(s string) string {
			return strings.Replace(s, "[[nat.masquerade]]\nout = \"wan\"", "[[nat.snat]]\nout = \"wan\"\nto = \"198.18.0.77\"", 1)
		}, "nat.snat", func(t *testing.T, r *reloadRig) {
			// The flow made before the reload keeps its binding ...
			r.send("m-lan", udp4("10.10.0.2", "198.18.0.2", 4000, 4444))
			if p := r.recv("m-wan", isUDP("198.18.0.2", 4444)); p.SrcIP().String() != "198.18.0.1" {
				t.Fatalf("existing flow now from %v, want its old 198.18.0.1", p.SrcIP())
			}
			// ... a new one gets the new rule.
			r.send("m-lan", udp4("10.10.0.2", "198.18.0.2", 4001, 53))
			if p := r.recv("m-wan", isUDP("198.18.0.2", 53)); p.SrcIP().String() != "198.18.0.77" {
				t.Fatalf("new flow from %v, want 198.18.0.77", p.SrcIP())
			}
		}},
		{"helper ports", func(s string) string { return s + "[helpers.ftp]\nports = [2121]\n" }, "helpers.ftp.ports",
			func(t *testing.T, r *reloadRig) {
				r.send("m-lan", packettest.Build(packettest.IP{Src: "10.10.0.2", Dst: "198.18.0.2"},
					packettest.TCP{SPort: 40000, DPort: 2121, Seq: 1, Flags: 0x02, Win: 65535}, nil))
				r.recv("m-wan", func(p *packet.Parsed) bool { return p.Proto == packet.ProtoTCP && p.DstPort == 2121 })
				if h := connBySport(r.g.Table(), 40000).Helper(); h != "ftp" {
					t.Fatalf("connection to 2121 has helper %q, want ftp", h)
				}
			}},
		{"conntrack timeouts", func(s string) string { return strings.Replace(s, `udp = "30s"`, `udp = "7s"`, 1) },
			"conntrack.timeouts.udp", func(t *testing.T, r *reloadRig) {
				c := connBySport(r.g.Table(), 4000)
				if left := time.Duration(c.Expires() - r.g.Table().Now()); left < 20*time.Second {
					t.Fatalf("the entry changed its timeout before its next packet (%v left)", left)
				}
				r.forwards(4000)
				eventually(t, 5*time.Second, "the new timeout", func() bool {
					left := time.Duration(c.Expires() - r.g.Table().Now())
					return left > 0 && left <= 7*time.Second
				})
			}},
		{"conntrack max", func(s string) string { return strings.Replace(s, "[conntrack]\n", "[conntrack]\nmax = 1\n", 1) },
			"conntrack.max", func(t *testing.T, r *reloadRig) {
				// The table holds the flow made before; a new, assured-less
				// one either evicts it early or is refused: never two.
				r.send("m-lan", udp4("10.10.0.2", "198.18.0.2", 4002, 53))
				eventually(t, 5*time.Second, "the new limit", func() bool {
					return r.g.Counters.Drops[DropCtFull].Load() > 0 || r.g.ct.Stats.EarlyDrop.Load() > 0
				})
				if n := r.g.Table().Count(); n > 1 {
					t.Fatalf("%d entries over max 1", n)
				}
			}},
		{"per_source_max", func(s string) string { return strings.Replace(s, "per_source_max = 50", "per_source_max = 1", 1) },
			"conntrack.per_source_max", func(t *testing.T, r *reloadRig) {
				r.dropped("m-lan", udp4("10.10.0.2", "198.18.0.2", 4003, 53), DropPerSource)
			}},
		{"icmp rate", func(s string) string { return s + "[icmp]\nrate = 0.001\nburst = 1\n" }, "icmp.rate",
			func(t *testing.T, r *reloadRig) {
				ttl1 := packettest.Build(packettest.IP{Src: "10.10.0.2", Dst: "198.18.0.2", TTL: 1}, packettest.UDP{SPort: 1, DPort: 2}, nil)
				before := r.g.Counters.ICMPLimit.Load()
				for range 3 {
					r.dropped("m-lan", ttl1, DropTTL)
				}
				if r.g.Counters.ICMPLimit.Load()-before != 2 {
					t.Fatalf("%d time-exceeded errors limited, want 2 of 3 (burst 1)", r.g.Counters.ICMPLimit.Load()-before)
				}
			}},
		{"log level", func(s string) string { return s + "[log]\nlevel = \"debug\"\n" }, "log.level",
			func(t *testing.T, r *reloadRig) {
				if !r.g.Logger().Core().Enabled(zapcore.DebugLevel) {
					t.Fatal("debug is not enabled after the reload")
				}
			}},
		{"routes", func(s string) string { return s + "[[route]]\nto = \"203.0.113.0/24\"\ninterface = \"lan\"\n" }, "route[1].to",
			func(t *testing.T, r *reloadRig) {
				r.send("m-wan", udp4("198.18.0.2", "203.0.113.5", 53, 6000))
				// The filter drops it (new from wan): what matters is the
				// route; a reply from lan's side through it is forwarded.
				r.send("m-lan", udp4("203.0.113.5", "198.18.0.2", 6001, 53))
				r.recv("m-wan", isUDP("198.18.0.2", 53))
				r.send("m-wan", udp4("198.18.0.2", "203.0.113.5", 53, 6001))
				r.recv("m-lan", isUDP("203.0.113.5", 6001))
			}},
		{"interface addresses", func(s string) string {
			return strings.Replace(s, `"10.10.0.1/24", "fd10::1/64"`, `"10.10.0.1/24", "10.40.0.1/24", "fd10::1/64"`, 1)
		}, "interface[0].addresses", func(t *testing.T, r *reloadRig) {
			r.send("m-wan", packettest.Build(packettest.IP{Src: "198.18.0.2", Dst: "10.40.0.1"}, packettest.ICMP{Type: 8, Rest: 7 << 16}, []byte("ping")))
			r.recv("m-wan", func(p *packet.Parsed) bool { return p.IsEcho() && p.ICMPType == 0 && p.SrcIP().String() == "10.40.0.1" })
		}},
		{"clamp_mss", func(s string) string {
			return strings.Replace(s, `tun = "m-wan"`, "tun = \"m-wan\"\nclamp_mss = true", 1)
		},
			"interface[1].clamp_mss", func(t *testing.T, r *reloadRig) {
				// MSS option 8960, clamped to what 1500 carries.
				r.send("m-lan", packettest.Build(packettest.IP{Src: "10.10.0.2", Dst: "198.18.0.2"},
					packettest.TCP{SPort: 40001, DPort: 80, Seq: 1, Flags: 0x02, Win: 65535, Opts: []byte{2, 4, 0x23, 0x00}}, nil))
				p := r.recv("m-wan", func(p *packet.Parsed) bool { return p.Proto == packet.ProtoTCP && p.SrcPort != 0 && p.DstPort == 80 })
				b := p.Bytes()
				if o := p.L4Off + 20; len(b) < o+4 || b[o] != 2 || int(b[o+2])<<8|int(b[o+3]) != 1460 {
					t.Fatalf("SYN options % x, want MSS 1460", b[p.L4Off+20:])
				}
			}},
		{"raw rules", func(s string) string {
			return strings.Replace(s, `{ ct_state = ["established", "related"], action = "accept" },`,
				`{ ct_state = ["established", "related", "untracked"], action = "accept" },`, 1) +
				"[raw.prerouting]\nrules = [ { proto = \"udp\", dport = 4789, action = \"notrack\" } ]\n"
		}, "raw.prerouting", func(t *testing.T, r *reloadRig) {
			r.send("m-lan", udp4("10.10.0.2", "198.18.0.2", 4500, 4789))
			// Untracked, so not masqueraded either.
			if p := r.recv("m-wan", isUDP("198.18.0.2", 4789)); p.SrcIP().String() != "10.10.0.2" {
				t.Fatalf("untracked packet from %v", p.SrcIP())
			}
			if connBySport(r.g.Table(), 4500) != nil {
				t.Fatal("the notrack packet made a connection")
			}
		}},
		{"rpf", func(s string) string {
			return strings.Replace(s, `tun = "m-wan"`, "tun = \"m-wan\"\nrpf = \"strict\"", 1)
		},
			"interface[1].rpf", func(t *testing.T, r *reloadRig) {
				r.dropped("m-wan", udp4("10.10.0.9", "198.18.0.1", 53, 53), DropRPF)
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newReloadRig(t, reloadBase)
			r.forwards(4000)
			plan, err := r.reload(c.edit(reloadBase), ReloadOptions{})
			if err != nil {
				t.Fatalf("reload: %v", err)
			}
			if !planHas(plan, c.path) {
				t.Fatalf("plan lacks %s:\n%s", c.path, planText(plan))
			}
			if r.g.Config() != plan.cfg {
				t.Fatal("Config() is not the config that runs")
			}
			c.check(t, r)
		})
	}
}

func TestReloadRefused(t *testing.T) {
	// Each new config also stops lan's new flows: after the refusal they
	// must still be forwarded, so nothing of the refused reload applied.
	block := func(s string) string {
		return strings.Replace(s, `{ in = "lan", action = "accept" }`, `{ in = "wan", action = "accept" }`, 1)
	}
	for _, c := range []struct {
		name  string
		edit  func(string) string
		probe *tunProbe
		path  string
	}{
		{"admin socket", func(s string) string { return s + "[admin]\nsocket = \"/tmp/x.sock\"\n" }, nil, "admin.socket"},
		{"admin metrics", func(s string) string { return s + "[admin]\nmetrics = \"127.0.0.1:1\"\n" }, nil, "admin.metrics"},
		{"keep_net_admin", func(s string) string { return s + "[admin]\nkeep_net_admin = true\n" }, nil, "admin.keep_net_admin"},
		{"log format", func(s string) string { return s + "[log]\nformat = \"json\"\n" }, nil, "log.format"},
		{"mtu", func(s string) string { return strings.Replace(s, `tun = "m-lan"`, "tun = \"m-lan\"\nmtu = 1400", 1) }, nil, "interface[0].mtu"},
		{"buckets", func(s string) string { return strings.Replace(s, "[conntrack]\n", "[conntrack]\nbuckets = 4096\n", 1) }, nil, "conntrack.buckets"},
		{"per_source_max off", func(s string) string { return strings.Replace(s, "per_source_max = 50", "", 1) }, nil, "conntrack.per_source_max"},
		{"tun under a running link", func(s string) string { return strings.Replace(s, `tun = "m-lan"`, `tun = "m-lan2"`, 1) }, nil, "interface[0].tun"},
		{"new TUN without CAP_NET_ADMIN", func(s string) string {
			return s + "[[interface]]\nname = \"dmz\"\ntun = \"m-dmz\"\naddresses = [\"10.30.0.1/24\"]\n"
		}, &tunProbe{exists: func(string) bool { return false }, canCreate: func() bool { return false }}, "interface[2]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newReloadRig(t, reloadBase)
			r.g.tunProbe = c.probe
			running := r.g.Config()
			plan, err := r.reload(block(c.edit(reloadBase)), ReloadOptions{})
			if err == nil || !strings.Contains(err.Error(), c.path+":") {
				t.Fatalf("reload: %v, want a refusal naming %s", err, c.path)
			}
			if !planHas(plan, "filter.forward.rules[1].in") {
				t.Fatalf("plan lacks the live change:\n%s", planText(plan))
			}
			if r.g.Config() != running {
				t.Fatal("a refused reload replaced the config")
			}
			if res := r.g.LastReload(); res == nil || res.Err == nil {
				t.Fatal("the refusal is not recorded")
			}
			r.forwards(4100)
			if c.name == "new TUN without CAP_NET_ADMIN" && !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
				t.Fatalf("refusal does not give the reason: %v", err)
			}
		})
	}
}

// Reordered and renamed interfaces keep their links: rules, NAT and
// routes follow the device, never the position.
func TestReloadReorderRename(t *testing.T) {
	r := newReloadRig(t, reloadBase)
	r.forwards(4000)
	lanRx := r.g.LinkCounters(0).RxPackets
	swapped := `
[[interface]]
name = "outside"
tun = "m-wan"
addresses = ["198.18.0.1/24", "2001:db8:1::1/64"]

[[interface]]
name = "inside"
tun = "m-lan"
addresses = ["10.10.0.1/24", "fd10::1/64"]

[[route]]
to = "0.0.0.0/0"
interface = "outside"

[[nat.masquerade]]
out = "outside"
src = ["10.10.0.0/24"]

[conntrack]
per_source_max = 50
[conntrack.timeouts]
udp = "30s"

[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { in = "inside", action = "accept" },
]
`
	plan, err := r.reload(swapped, ReloadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !planHas(plan, "interface[0].name") || !planHas(plan, "interface[1]") {
		t.Fatalf("plan:\n%s", planText(plan))
	}
	// in = "inside" is the device m-lan, now at position 1.
	r.forwards(4001)
	r.dropped("m-wan", udp4("198.18.0.2", "10.10.0.2", 53, 7000), DropFilter)
	if got := r.g.LinkCounters(1).RxPackets; got <= lanRx {
		t.Fatalf("m-lan's counters did not follow it to position 1: %d", got)
	}
	if l := r.g.Links(); l[0].Name != "outside" || l[0].Dev != link.Link(r.dev("m-wan")) || l[1].Dev != link.Link(r.dev("m-lan")) {
		t.Fatalf("links in config order: %q %q", l[0].Name, l[1].Name)
	}
	for _, d := range []string{"m-lan", "m-wan"} {
		if r.dev(d).isClosed() {
			t.Fatalf("%s was closed by a reorder", d)
		}
	}
}

const dmz = `
[[interface]]
name = "dmz"
tun = "m-dmz"
addresses = ["10.30.0.1/24"]
`

// An interface added by a reload is opened and forwards; removed again, it
// is closed and its connections are deleted.
func TestReloadAddRemoveInterface(t *testing.T) {
	r := newReloadRig(t, reloadBase)
	withDMZ := strings.Replace(reloadBase, "[[route]]", dmz+"\n[[route]]", 1)
	withDMZ = strings.Replace(withDMZ, `{ in = "lan", action = "accept" },`, `{ in = "lan", action = "accept" },
  { in = "dmz", action = "accept" },`, 1)
	plan, err := r.reload(withDMZ, ReloadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !planHas(plan, "interface[2]") {
		t.Fatalf("plan:\n%s", planText(plan))
	}
	r.send("m-dmz", udp4("10.30.0.2", "198.18.0.2", 8000, 53))
	r.recv("m-wan", isUDP("198.18.0.2", 53))
	r.send("m-wan", udp4("198.18.0.2", "10.30.0.2", 53, 8000))
	r.recv("m-dmz", isUDP("10.30.0.2", 8000))
	r.forwards(8001)
	if connBySport(r.g.Table(), 8000) == nil {
		t.Fatal("no connection from dmz")
	}
	dev := r.dev("m-dmz")
	if _, err := r.reload(reloadBase, ReloadOptions{}); err != nil {
		t.Fatal(err)
	}
	if !dev.isClosed() {
		t.Fatal("the removed interface's device is open")
	}
	if connBySport(r.g.Table(), 8000) != nil {
		t.Fatal("the removed interface's connection is still there")
	}
	if connBySport(r.g.Table(), 8001) == nil {
		t.Fatal("lan's connection went with dmz")
	}
	r.forwards(8002)
	// Added again, it is a new device with a new slot.
	if _, err := r.reload(withDMZ, ReloadOptions{}); err != nil {
		t.Fatal(err)
	}
	r.send("m-dmz", udp4("10.30.0.2", "198.18.0.2", 8003, 53))
	r.recv("m-wan", isUDP("198.18.0.2", 53))
}

func TestReloadFlushNAT(t *testing.T) {
	r := newReloadRig(t, reloadBase)
	r.forwards(4000)
	next := strings.Replace(reloadBase, "[[nat.masquerade]]\nout = \"wan\"", "[[nat.snat]]\nout = \"wan\"\nto = \"198.18.0.77\"", 1)
	plan, err := r.reload(next, ReloadOptions{FlushNAT: true})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Deleted != 1 || connBySport(r.g.Table(), 4000) != nil {
		t.Fatalf("%d deleted, want the NATed connection", plan.Deleted)
	}
	// The flow's next packet is a new connection under the new rule.
	r.send("m-lan", udp4("10.10.0.2", "198.18.0.2", 4000, 53))
	if p := r.recv("m-wan", isUDP("198.18.0.2", 53)); p.SrcIP().String() != "198.18.0.77" {
		t.Fatalf("flow after flush from %v, want 198.18.0.77", p.SrcIP())
	}
}

func TestReloadDryRun(t *testing.T) {
	r := newReloadRig(t, reloadBase)
	running := r.g.Config()
	next := strings.Replace(reloadBase, `udp = "30s"`, `udp = "45s"`, 1) + "[admin]\nsocket = \"/tmp/y.sock\"\n"
	plan, err := r.reload(next, ReloadOptions{DryRun: true})
	if err == nil {
		t.Fatal("dry run of a refused change reports no refusal")
	}
	var b bytes.Buffer
	plan.WriteText(&b)
	for _, want := range []string{
		"~ conntrack.timeouts.udp: 30s -> 45s  [live]",
		"+ admin.socket = /tmp/y.sock  [refused: the admin socket is bound at start",
	} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("dry run output lacks %q:\n%s", want, b.String())
		}
	}
	if r.g.Config() != running || r.g.LastReload() != nil {
		t.Fatal("a dry run changed something")
	}
	if to := time.Duration(r.g.Table().Config().Timeouts.UDP); to != 30*time.Second {
		t.Fatalf("a dry run set the timeout to %v", to)
	}
}

func planHas(p *Plan, path string) bool {
	for _, c := range p.Changes {
		if c.Path == path || strings.HasPrefix(c.Path, path+".") || strings.HasPrefix(c.Path, path+"[") {
			return true
		}
	}
	return false
}

func planText(p *Plan) string {
	var b bytes.Buffer
	p.WriteText(&b)
	return b.String()
}

// connBySport returns the connection whose original source port is sport.
func connBySport(t *conntrack.Table, sport uint16) *conntrack.Conn {
	var found *conntrack.Conn
	t.Range(func(c *conntrack.Conn) bool {
		if c.Tuple(conntrack.DirOriginal).SrcPort == sport {
			found = c
			return false
		}
		return true
	})
	return found
}

// A plan never shows an inline private key.
func TestPlanRedactsKeys(t *testing.T) {
	if got := redact("interface[2].private_key", "aGVsbG8="); got != "(secret)" {
		t.Fatalf("private key shown as %q", got)
	}
	if got := redact("interface[2].private_key_file", "/etc/k"); got != "/etc/k" {
		t.Fatalf("key file shown as %q", got)
	}
}

// The [namespace] section and its interface are set up at start: a change
// there is refused, naming the key.
func TestReloadRefusesNamespace(t *testing.T) {
	const conf = `
[[interface]]
name = "wan"
tun = "m-wan"
addresses = ["198.18.0.1/24"]
[[interface]]
name = "ctr"
addresses = ["10.0.2.2/24"]
[namespace]
interface = "ctr"
addresses = ["10.0.2.100/24"]
`
	r := newReloadRig(t, conf)
	running := r.g.Config()
	_, err := r.reload(strings.Replace(conf, `"10.0.2.100/24"`, `"10.0.2.101/24"`, 1), ReloadOptions{})
	if err == nil || !strings.Contains(err.Error(), "namespace.addresses:") {
		t.Fatalf("reload: %v, want a refusal naming namespace.addresses", err)
	}
	// Its interface keeps its device across a reorder like any other.
	swapped := `
[[interface]]
name = "ctr"
addresses = ["10.0.2.2/24"]
[[interface]]
name = "wan"
tun = "m-wan"
addresses = ["198.18.0.1/24"]
[namespace]
interface = "ctr"
addresses = ["10.0.2.100/24"]
`
	if r.g.Config() != running {
		t.Fatal("the refused reload replaced the config")
	}
	if _, err := r.reload(swapped, ReloadOptions{}); err != nil {
		t.Fatal(err)
	}
	if l := r.g.Links(); l[0].Dev != link.Link(r.dev("")) || l[1].Dev != link.Link(r.dev("m-wan")) {
		t.Fatal("the namespace interface did not keep its device")
	}
}
