package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSynProxy runs Linux clients and servers through a gateway whose
// synproxy rule proxies every new TCP connection from the LAN: downloads
// and an upload with the kernel's own options (timestamps, SACK, window
// scaling) come through intact in both families, and SYN floods from
// random sources leave no half-open entries while new connections work.
func TestSynProxy(t *testing.T) {
	needNetAdmin(t)
	needTools(t, "hping3", "iperf3", "curl")
	bin := gatewayBinary(t)
	tp := newTopology(t, newNames("sp"))
	const max = 1024
	cfg := strings.Replace(floodConfig(tp.lan, tp.wan, fmt.Sprintf("max = %d", max), ""),
		`  { in = "lan", ct_state = ["new"], action = "accept" },`,
		`  { in = "lan", proto = "tcp", ct_state = ["new"], action = "synproxy" },
  { in = "lan", ct_state = ["new"], action = "accept" },`, 1)
	if !strings.Contains(cfg, "synproxy") {
		t.Fatal("the synproxy rule did not go into the config")
	}
	g := startGateway(t, bin, workDir(t, -1), gatewaySpec{
		cfg:  gwConfig{Raw: cfg},
		tuns: []string{tp.lan, tp.wan},
	})
	g.wire(t, tp, false)
	root := t.TempDir()
	body := make([]byte, 8<<20)
	rand.Read(body)
	if err := os.WriteFile(filepath.Join(root, "big"), body, 0o644); err != nil {
		t.Fatal(err)
	}
	startHTTPServer(t, tp.server, root)

	for _, host := range []string{"198.18.0.2", "[2001:db8:1::2]"} {
		out, err := curl(tp.client, 30*time.Second, "http://"+host+":8080/big")
		if err != nil || sha256.Sum256([]byte(out)) != sha256.Sum256(body) {
			t.Fatalf("download from %s through the proxy: %d bytes of %d, %v", host, len(out), len(body), err)
		}
	}
	srv := startBackground(t, inNS(tp.server, "iperf3", "-s", "-1", "-B", "198.18.0.2")...)
	time.Sleep(300 * time.Millisecond) // iperf3 -s has no ready signal
	up, err := run(20*time.Second, inNS(tp.client, "iperf3", "-c", "198.18.0.2", "-t", "2", "-J")...)
	if err != nil {
		t.Fatalf("iperf3 upload through the proxy: %v\n%s\nserver: %s\nct:\n%s", err, up, srv.output(), ctOut(g))
	}
	if _, total, err := iperfIntervals(up); err != nil || total <= 0 {
		t.Fatalf("iperf3 upload: %v\n%s", err, up)
	}
	st := g.statsJSON(t, "stats")
	if st["synproxy_conn_open"] < 3 || st["drop_synproxy"] != 0 {
		t.Fatalf("after 3 connections: %d opened by the proxy, %d dropped by it", st["synproxy_conn_open"], st["drop_synproxy"])
	}

	flood := func(t *testing.T, argv []string, peer, want string) {
		before, ctBefore := g.statsJSON(t, "stats"), g.statsJSON(t, "ct", "stats")
		fl := startBackground(t, inNS(tp.client, argv...)...)
		time.Sleep(time.Second)
		for i := range 3 {
			out, err := curl(tp.client, 10*time.Second, peer)
			if err != nil || strings.TrimSpace(out) != want {
				t.Errorf("new connection %d during the flood: %q, %v", i, out, err)
			}
		}
		ct := g.statsJSON(t, "ct", "stats")
		time.Sleep(time.Second)
		fl.stop()
		after := g.statsJSON(t, "stats")
		answered := after["synproxy_syn_received"] - before["synproxy_syn_received"]
		t.Logf("%d SYNs answered with a cookie; ct stats %v", answered, ct)
		if answered < 5*max {
			t.Errorf("%d SYNs answered with a cookie; want at least 5 × max (%d)", answered, 5*max)
		}
		// The flood's SYNs make no entries: what the table holds is the
		// connections above (in TIME_WAIT) and the curl ones.
		if ct["entries"] > 64 {
			t.Errorf("table holds %d entries under the flood, want the few real connections", ct["entries"])
		}
		if ed := ct["early_drop"] - ctBefore["early_drop"]; ed != 0 {
			t.Errorf("%d early drops: the flood took table entries", ed)
		}
	}
	t.Run("ipv4", func(t *testing.T) {
		flood(t, []string{"hping3", "-S", "-p", "80", "--rand-source", "-i", "u50", "198.18.0.3"},
			"http://198.18.0.2:8080/peer", "198.18.0.1")
	})
	t.Run("ipv6", func(t *testing.T) {
		flood(t, []string{floodgen(t), "syn", "-i", tp.lan, "-src", "fd10::/64",
			"-dst", "2001:db8:1::3", "-dport", "80", "-rate", "20000", "-d", "3s"},
			"http://[2001:db8:1::2]:8080/peer", "2001:db8:1::1")
	})
}

// ctOut is `tungate ct list` for a failure message.
func ctOut(g *gateway) string {
	out, err := g.ctl("ct", "list")
	if err != nil {
		return err.Error() + ": " + out
	}
	return out
}
