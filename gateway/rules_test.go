package gateway

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"tungate/link"
)

const filterRules = `
[[nat.masquerade]]
out = "wan"

[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { ct_state = ["invalid"], action = "drop" },
  { proto = "tcp", dport = 81, action = "reject" },
  { proto = "udp", dport = 82, action = "reject" },
  { in = "lan", ct_state = ["new"], action = "accept" },
]
`

// fileGateway runs a gateway from a config file, so Reload can re-read it.
func fileGateway(t *testing.T, conf string, hosts ...*host) (*Gateway, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gw.toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	g, err := New(cfg, Options{
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel+1)),
		Open: func(*InterfaceConfig, *zap.Logger) (link.Link, error) {
			d := hosts[i].dev
			i++
			return link.FromTUN(d), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("gateway did not stop")
		}
	})
	return g, path
}

func rulesGateway(t *testing.T) (client, server *host, g *Gateway, path string) {
	client = newHost(t, 1500, "10.10.0.2", "fd10::2")
	server = newHost(t, 1500, "198.18.0.2", "2001:db8:1::2")
	conf := linksConf + filterRules
	g, path = fileGateway(t, conf, client, server)
	return client, server, g, path
}

func TestRejectObservedByClient(t *testing.T) {
	client, _, _, _ := rulesGateway(t)
	for _, dst := range []string{"198.18.0.2:81", "[2001:db8:1::2]:81"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := client.Net.DialContextTCPAddrPort(ctx, netip.MustParseAddrPort(dst))
		cancel()
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("dial %s: %v, want connection refused (RST)", dst, err)
		}
	}
	cc, err := client.Net.DialUDPAddrPort(netip.AddrPort{}, netip.MustParseAddrPort("198.18.0.2:82"))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	buf := make([]byte, 10)
	for try := 0; ; try++ {
		_, werr := cc.Write([]byte("x"))
		cc.SetReadDeadline(time.Now().Add(time.Second))
		_, rerr := cc.Read(buf)
		if errors.Is(werr, syscall.ECONNREFUSED) || (rerr != nil && strings.Contains(rerr.Error(), "refused")) ||
			(werr != nil && strings.Contains(werr.Error(), "refused")) {
			break
		}
		if try == 4 {
			t.Fatalf("UDP reject not seen: %v %v", werr, rerr)
		}
	}
}

func TestInvalidDroppedEndToEnd(t *testing.T) {
	client, server, g, _ := rulesGateway(t)
	bad := tcpPacket("10.10.0.2", "198.18.0.2", 4444, 80, 1, 0, header.TCPFlagSyn|header.TCPFlagFin, 0)
	leaked := server.expect(func(b []byte) bool { return len(b) > 22 && b[9] == 6 && b[20] == 0x11 && b[21] == 0x5c })
	control := server.expect(func(b []byte) bool { return len(b) > 24 && b[9] == 17 && b[22] == 0 && b[23] == 9 })
	client.send(bad)
	// A later datagram from the same link is handled after it.
	client.send(udpPacket("10.10.0.2", "198.18.0.2", 5555, 9, 64, false, []byte("control")))
	wait(t, control, "control datagram at the server")
	select {
	case b := <-leaked:
		t.Fatalf("INVALID SYN+FIN was forwarded: %x", b)
	default:
	}
	if g.Counters.Drops[DropFilter].Load() == 0 || g.ct.Stats.Invalid.Load() == 0 {
		t.Fatalf("drop not counted: filter %d invalid %d", g.Counters.Drops[DropFilter].Load(), g.ct.Stats.Invalid.Load())
	}
}

// Reloading the rules under a running transfer loses no byte and keeps the
// connection; a broken config keeps the old rules.
func TestReloadUnderTraffic(t *testing.T) {
	client, server, g, path := rulesGateway(t)
	ln, err := server.Net.ListenTCPAddrPort(netip.MustParseAddrPort("198.18.0.2:9000"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sum := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		h := sha256.New()
		io.Copy(h, c)
		var s [32]byte
		copy(s[:], h.Sum(nil))
		sum <- s
	}()
	data := make([]byte, 32<<20)
	rand.Read(data)
	c, err := client.Net.DialTCPAddrPort(netip.MustParseAddrPort("198.18.0.2:9000"))
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		c.CloseWrite()
		sent <- err
	}()
	reloads := 0
	first := g.Rules()
loop:
	for {
		select {
		case err := <-sent:
			if err != nil {
				t.Fatal(err)
			}
			break loop
		default:
		}
		if err := g.Reload(); err != nil {
			t.Fatalf("reload: %v", err)
		}
		reloads++
	}
	select {
	case s := <-sum:
		if s != sha256.Sum256(data) {
			t.Fatal("bytes lost or changed across reloads")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("transfer did not finish")
	}
	c.Close()
	if reloads < 2 || g.Rules() == first {
		t.Fatalf("only %d reloads during the transfer", reloads)
	}
	// A broken config is refused and the running rules stay.
	running := g.Rules()
	os.WriteFile(path, []byte(linksConf+
		"[filter.forward]\nrules = [ { ct_state = [\"establised\"], action = \"accept\" } ]\n"), 0o600)
	err = g.Reload()
	if err == nil || !strings.Contains(err.Error(), `unknown state "establised"`) {
		t.Fatalf("broken reload: %v", err)
	}
	if g.Rules() != running {
		t.Fatal("a failed reload replaced the rules")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := client.Net.DialContextTCPAddrPort(ctx, netip.MustParseAddrPort("198.18.0.2:81")); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("old rules not in force after a failed reload: %v", err)
	}
}

// The rules dump shows the running rules (the admin package serves it;
// admin's tests cover the socket).
func TestRulesDump(t *testing.T) {
	_, _, g, _ := rulesGateway(t)
	var b strings.Builder
	if err := g.Rules().Dump(&b); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "dport 81") || !strings.Contains(out, "reject") {
		t.Fatalf("rules dump:\n%s", out)
	}
}

// The connection table during a live transfer and after close.
func TestConntrackLiveAndTimeWait(t *testing.T) {
	client, server, g, _ := rulesGateway(t)
	ln, err := server.Net.ListenTCPAddrPort(netip.MustParseAddrPort("198.18.0.2:7000"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvDone := make(chan struct{})
	go func() {
		defer close(srvDone)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		r := bufio.NewReader(c)
		r.ReadString('\n')
		c.Write([]byte("bye\n"))
		io.Copy(io.Discard, r)
		c.Close()
	}()
	c, err := client.Net.DialTCPAddrPort(netip.MustParseAddrPort("198.18.0.2:7000"))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("hello\n"))
	bufio.NewReader(c).ReadString('\n')
	find := func(want string) bool {
		for _, l := range ctLines(g) {
			if strings.Contains(l, "dport=7000 ") && strings.Contains(l, want) {
				return true
			}
		}
		return false
	}
	eventually(t, 5*time.Second, "ESTABLISHED [ASSURED] entry", func() bool {
		return find("ESTABLISHED") && find("[ASSURED]") && find("dst=198.18.0.1 sport=7000")
	})
	c.Close()
	<-srvDone
	eventually(t, 10*time.Second, "TIME_WAIT entry after close", func() bool { return find("TIME_WAIT") })
}

func TestMetricsAndStats(t *testing.T) {
	client, _, g, _ := rulesGateway(t)
	ping(t, client, "10.10.0.2", "198.18.0.2")
	addr, err := g.ServeMetrics("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"tungate_forwarded_packets_total 2", `tungate_dropped_packets_total{reason="no_route"} 0`,
		"tungate_conntrack_entries 1", "tungate_conntrack_entries_max ", "tungate_nat_snat_total 1",
		"# TYPE tungate_nat_mappings gauge", "tungate_nat_mappings 1", `tungate_interface_receive_packets_total{interface="lan"} 1`,
		`tungate_interface_transmit_packets_total{interface="lan"} 1`, "tungate_conntrack_insert_total 1",
		// The ops collector is served too.
		`tungate_reloads_total{result="success"} 0`, "# TYPE tungate_rule_hits_total counter", "tungate_helper_expectations_created_total 0"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	// promlint: naming conventions, counter suffixes, units, help text.
	problems, err := testutil.CollectAndLint(newCollector(g))
	if err != nil || len(problems) > 0 {
		t.Fatalf("metrics lint: %v %+v", err, problems)
	}
	m := g.Stats()
	if m["nat_snat"] != 1 || m["forwarded"] == 0 {
		t.Fatalf("stats: %v", m)
	}
	if k := g.LinkCounters(0); k.RxPackets == 0 || k.RxBytes < 28*k.RxPackets || k.TxPackets == 0 {
		t.Fatalf("lan counters %+v", k)
	}
}

// raw notrack: the packet is UNTRACKED (no entry), and forward rules see it
// as such.
func TestNotrackUntracked(t *testing.T) {
	client := newHost(t, 1500, "10.10.0.2")
	server := newHost(t, 1500, "198.18.0.2")
	conf := linksConf + `
[raw.prerouting]
rules = [ { proto = "udp", dport = 4789, action = "notrack" } ]
[filter.forward]
policy = "drop"
rules = [ { ct_state = ["untracked"], action = "accept" } ]
`
	g := testGateway(t, conf, client, server)
	// A listener, so the server answers no port unreachable (which, about
	// an untracked packet, would be INVALID and dropped too).
	sc, err := server.Net.ListenUDPAddrPort(netip.MustParseAddrPort("198.18.0.2:4789"))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	got := server.expect(func(b []byte) bool { return len(b) > 23 && b[9] == 17 && b[22] == 0x12 && b[23] == 0xb5 })
	client.send(udpPacket("10.10.0.2", "198.18.0.2", 5555, 4789, 64, false, []byte("vxlan")))
	wait(t, got, "the untracked datagram at the server")
	if n := g.ct.Count(); n != 0 {
		t.Fatalf("%d connections tracked for an untracked packet: %v", n, ctLines(g))
	}
	client.send(udpPacket("10.10.0.2", "198.18.0.2", 5555, 53, 64, false, []byte("dns")))
	eventually(t, 5*time.Second, "the tracked datagram dropped by the policy", func() bool {
		return g.Counters.Drops[DropFilter].Load() == 1
	})
}
