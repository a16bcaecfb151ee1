package gateway

import (
	"context"
	"hash/crc32"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"tungate/internal/packettest"
	"tungate/link"
	"tungate/packet"
)

// chanLink is a link fed and drained through channels, one packet at a
// time; a new one stands for the same device after a restart.
type chanLink struct {
	in, out chan []byte
	done    chan struct{}
	once    sync.Once
}

func newChanLink() *chanLink {
	return &chanLink{in: make(chan []byte, 16), out: make(chan []byte, 64), done: make(chan struct{})}
}

func (l *chanLink) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case b := <-l.in:
		sizes[0] = copy(bufs[0][offset:], b)
		return 1, nil
	case <-l.done:
		return 0, os.ErrClosed
	}
}

func (l *chanLink) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		select {
		case l.out <- append([]byte(nil), b[offset:]...):
		default: // a full test queue drops, as a device would
		}
	}
	return len(bufs), nil
}

func (l *chanLink) BatchSize() int    { return 1 }
func (l *chanLink) MTU() (int, error) { return 1500, nil }
func (l *chanLink) Close() error      { l.once.Do(func() { close(l.done) }); return nil }
func (l *chanLink) send(b []byte)     { l.in <- b }
func (l *chanLink) recv(t *testing.T) packet.Parsed {
	t.Helper()
	select {
	case b := <-l.out:
		var p packet.Parsed
		if err := p.Decode(b); err != nil {
			t.Fatal(err)
		}
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no packet came out")
	}
	return packet.Parsed{}
}

// quiet asserts that the packet just given went nowhere on l: the
// gateway counted it as dropped or as its own (a packet to its address
// that no mapping takes), and l got nothing.
func (l *chanLink) quiet(t *testing.T, g *Gateway, before uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for dropped(g)+g.Counters.Local.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("packet neither dropped nor taken as the gateway's own")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case b := <-l.out:
		t.Fatalf("unexpected packet forwarded: % x", b[:20])
	default:
	}
}

func dropped(g *Gateway) uint64 {
	var n uint64
	for i := range g.Counters.Drops {
		n += g.Counters.Drops[i].Load()
	}
	return n
}

const stateConf = `
[conntrack]
max = 4096
state_file = "ct.state"

[[interface]]
name = "lan"
tun = "lan0"
addresses = ["10.10.0.1/24", "fd10::1/64"]

[[interface]]
name = "wan"
tun = "wan0"
addresses = ["198.18.0.1/24", "2001:db8:1::1/64"]

[[route]]
to = "0.0.0.0/0"
interface = "wan"
[[route]]
to = "::/0"
interface = "wan"

[[nat.masquerade]]
out = "wan"

[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { in = "lan", ct_state = ["new"], action = "accept" },
]
`

// stateGateway starts a gateway on conf (written to dir, so the state
// file resolves beside it) over fresh channel links.
func stateGateway(t *testing.T, dir, conf string, log *zap.Logger) (g *Gateway, lan, wan *chanLink, stop func()) {
	t.Helper()
	path := filepath.Join(dir, "gw.toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	lan, wan = newChanLink(), newChanLink()
	links := []link.Link{lan, wan}
	i := 0
	g, err = New(cfg, Options{Logger: log, Open: func(*InterfaceConfig, *zap.Logger) (link.Link, error) {
		l := links[i]
		i++
		return l, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("gateway did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return g, lan, wan, stop
}

func udpPkt(src, dst string, payload string) []byte {
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	return packettest.Build(packettest.IP{V6: s.Addr().Is6(), Src: s.Addr().String(), Dst: d.Addr().String(), TTL: 64},
		packettest.UDP{SPort: s.Port(), DPort: d.Port()}, []byte(payload))
}

func tcpPkt(src, dst string, flags uint8, seq, ack uint32, payload string) []byte {
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	return packettest.Build(packettest.IP{V6: s.Addr().Is6(), Src: s.Addr().String(), Dst: d.Addr().String(), TTL: 64},
		packettest.TCP{SPort: s.Port(), DPort: d.Port(), Seq: seq, Ack: ack, Flags: flags, Win: 65535}, []byte(payload))
}

// TestStateFileAcrossGatewayRestart: masqueraded UDP and TCP flows (IPv4
// and IPv6) survive a stop, SaveState and a new gateway on the same
// config: the server's next packets are let in by the restored entries
// (the filter drops anything new from wan) and reach the clients through
// the restored NAT, and a new flow is not given a restored port.
func TestStateFileAcrossGatewayRestart(t *testing.T) {
	dir := t.TempDir()
	g1, lan, wan, stop := stateGateway(t, dir, stateConf, zap.NewNop())
	type flow struct{ cli, srv, ext string }
	var flows []flow
	for _, f := range []struct{ cli, srv string }{{"10.10.0.2:5000", "198.18.0.2:53"}, {"[fd10::2]:5000", "[2001:db8:1::2]:53"}} {
		lan.send(udpPkt(f.cli, f.srv, "query"))
		p := wan.recv(t)
		flows = append(flows, flow{f.cli, f.srv, netip.AddrPortFrom(p.SrcIP(), p.SrcPort).String()})
	}
	// A TCP connection: handshake, and data both ways.
	const cli, srv = "10.10.0.2:40000", "198.18.0.2:80"
	lan.send(tcpPkt(cli, srv, packet.TCPSyn, 100, 0, ""))
	syn := wan.recv(t)
	tcpExt := netip.AddrPortFrom(syn.SrcIP(), syn.SrcPort).String()
	wan.send(tcpPkt(srv, tcpExt, packet.TCPSyn|packet.TCPAck, 900, 101, ""))
	lan.recv(t)
	lan.send(tcpPkt(cli, srv, packet.TCPAck|packet.TCPPsh, 101, 901, "GET /"))
	wan.recv(t)
	stop()
	rep, err := g1.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	if rep.Conns != 3 {
		t.Fatalf("saved %d connections, want 3", rep.Conns)
	}
	if fi, err := os.Stat(filepath.Join(dir, "ct.state")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file beside the config: %v %v", fi, err)
	}

	g2, lan2, wan2, _ := stateGateway(t, dir, stateConf, zap.NewNop())
	if n := g2.state.restored.Load(); n != 3 || g2.Table().Count() != 3 {
		t.Fatalf("restored %d (table %d), want 3", n, g2.Table().Count())
	}
	for _, f := range flows {
		wan2.send(udpPkt(f.srv, f.ext, "answer"))
		p := lan2.recv(t)
		if got := netip.AddrPortFrom(p.DstIP(), p.DstPort).String(); got != f.cli {
			t.Fatalf("answer to %s reached %s, want %s", f.ext, got, f.cli)
		}
	}
	wan2.send(tcpPkt(srv, tcpExt, packet.TCPAck|packet.TCPPsh, 901, 106, "200 OK"))
	p := lan2.recv(t)
	if got := netip.AddrPortFrom(p.DstIP(), p.DstPort).String(); got != cli || string(p.Payload()) != "200 OK" {
		t.Fatalf("server data reached %s (%q), want %s", got, p.Payload(), cli)
	}
	// Another client from the same port: not given the restored mapping.
	lan2.send(udpPkt("10.10.0.3:5000", "198.18.0.2:53", "query"))
	q := wan2.recv(t)
	if got := netip.AddrPortFrom(q.SrcIP(), q.SrcPort).String(); got == flows[0].ext {
		t.Fatalf("a new client was given the restored mapping %s", got)
	}
	if got := metricValue(t, g2, "tungate_statefile_restored_entries_total", ""); got != 3 {
		t.Errorf("restored_entries_total %v, want 3", got)
	}
	if got := metricValue(t, g1, "tungate_statefile_saves_total", "ok"); got != 1 {
		t.Errorf("saves_total{result=ok} %v, want 1", got)
	}

	// A restart whose config no longer masquerades drops every entry
	// with a NAT binding, counted by reason.
	noMasq := strings.Replace(stateConf, "[[nat.masquerade]]\nout = \"wan\"\n", "", 1)
	if noMasq == stateConf {
		t.Fatal("test config has no masquerade to remove")
	}
	g4, _, _, _ := stateGateway(t, dir, noMasq, zap.NewNop())
	if got := metricValue(t, g4, "tungate_statefile_dropped_entries_total", "nat_rule"); got != 3 || g4.Table().Count() != 0 {
		t.Errorf("dropped_entries_total{reason=nat_rule} %v, table %d: want all 3 dropped", got, g4.Table().Count())
	}

	// Without the state file the same answer is dropped: the check above
	// is about the restore, not the filter.
	if err := os.Remove(filepath.Join(dir, "ct.state")); err != nil {
		t.Fatal(err)
	}
	g3, lan3, wan3, _ := stateGateway(t, t.TempDir(), stateConf, zap.NewNop())
	before := dropped(g3) + g3.Counters.Local.Load()
	wan3.send(udpPkt(flows[0].srv, flows[0].ext, "answer"))
	lan3.quiet(t, g3, before)
}

// metricValue gathers g's state file metrics and returns the value of
// name with the label value lv ("" for none).
func metricValue(t *testing.T, g *Gateway, name, lv string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(newStateCollector(g))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if lv == "" && len(m.GetLabel()) == 0 || len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == lv {
				if m.GetCounter() != nil {
					return m.GetCounter().GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s{%q}", name, lv)
	return 0
}

// TestStateFileIgnoredWhenBad: a state file that is not one, or is
// damaged, or comes from another host, is logged with its reason and
// ignored; the gateway starts with an empty table.
func TestStateFileIgnoredWhenBad(t *testing.T) {
	dir := t.TempDir()
	// A good file first, to damage.
	g1, lan, wan, stop := stateGateway(t, dir, stateConf, zap.NewNop())
	lan.send(udpPkt("10.10.0.2:5000", "198.18.0.2:53", "query"))
	wan.recv(t)
	stop()
	if _, err := g1.SaveState(); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(dir, "ct.state"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, want string
		data       []byte
	}{
		{"empty", "empty", nil},
		{"not a state file", "not a tungate state file", []byte("hello, world\n")},
		{"truncated", "cut short", good[:len(good)-3]},
		{"flipped byte", "checksum", func() []byte { b := append([]byte(nil), good...); b[len(b)-2] ^= 1; return b }()},
		{"other host", "written on host", func() []byte {
			b := append([]byte(nil), good...)
			// The host identity starts at byte 12; change its first
			// character and the header checksum with it.
			b[12] ^= 1
			fixStateHeader(b)
			return b
		}()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, "ct.state"), tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			core, logs := observer.New(zap.InfoLevel)
			g, _, _, _ := stateGateway(t, dir, stateConf, zap.New(core))
			if g.Table().Count() != 0 || g.state.refused.Load() != 1 {
				t.Fatalf("table %d, refused %d: want an empty table and one refusal", g.Table().Count(), g.state.refused.Load())
			}
			found := false
			for _, e := range logs.FilterMessageSnippet("state file ignored").All() {
				if strings.Contains(e.ContextMap()["error"].(string), tc.want) {
					found = true
				}
			}
			if !found {
				t.Fatalf("no log line saying %q: %v", tc.want, logs.All())
			}
		})
	}
}

// fixStateHeader recomputes a state file header's checksum.
func fixStateHeader(b []byte) {
	hl := int(b[10]) | int(b[11])<<8
	end := 12 + hl + 36
	sum := crc32.Checksum(b[:end], crc32.MakeTable(crc32.Castagnoli))
	b[end], b[end+1], b[end+2], b[end+3] = byte(sum), byte(sum>>8), byte(sum>>16), byte(sum>>24)
}

// TestStateFileDirChecked: a state file in a directory that does not
// exist, or that every user can write, is a config error naming the key.
func TestStateFileDirChecked(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o1777)
	for _, tc := range []struct{ path, want string }{
		{filepath.Join(dir, "missing", "ct.state"), "does not exist"},
		{filepath.Join(open, "ct.state"), "another user could replace the file"},
	} {
		conf := strings.Replace(stateConf, `state_file = "ct.state"`, `state_file = "`+tc.path+`"`, 1)
		path := filepath.Join(dir, "gw.toml")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadConfig(path)
		if err == nil || !strings.Contains(err.Error(), "conntrack.state_file") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("state_file %s: %v, want an error saying %q", tc.path, err, tc.want)
		}
	}
}

// TestStateFileKeepsRuntimeLayer: set elements added at run time come
// back with the connections after a restart, with their expiry.
func TestStateFileKeepsRuntimeLayer(t *testing.T) {
	dir := t.TempDir()
	conf := stateConf + "\n[sets]\nblocked = [\"192.0.2.1\"]\n"
	g1, _, _, stop := stateGateway(t, dir, conf, zap.NewNop())
	add := []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32"), netip.MustParsePrefix("2001:db8:9::/48")}
	if err := g1.SetAdd("blocked", add[:1], 0); err != nil {
		t.Fatal(err)
	}
	if err := g1.SetAdd("blocked", add[1:], time.Hour); err != nil {
		t.Fatal(err)
	}
	stop()
	if _, err := g1.SaveState(); err != nil {
		t.Fatal(err)
	}
	g2, _, _, _ := stateGateway(t, dir, conf, zap.NewNop())
	got := g2.RuntimeState().Sets
	if len(got) != 2 {
		t.Fatalf("runtime layer after restart: %+v, want the 2 added elements", got)
	}
	els, _, err := g2.SetList("blocked")
	if err != nil {
		t.Fatal(err)
	}
	var runtime int
	for _, e := range els {
		if e.Runtime {
			runtime++
		}
	}
	if runtime != 2 {
		t.Fatalf("set list after restart: %+v, want 2 runtime elements", els)
	}
}
