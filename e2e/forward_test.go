//go:build linux

package e2e

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// family is one IP version's view of the conformance topology.
type family struct {
	name   string
	client string // the client's address
	lanGW  string // the gateway's address on lan
	wanGW  string // the gateway's address on wan (what masquerade makes the client)
	server string // the server's address
	url    string // http://server:8080
}

var families = []family{
	{"ipv4", "10.10.0.2", "10.10.0.1", "198.18.0.1", "198.18.0.2", "http://198.18.0.2:8080"},
	{"ipv6", "fd10::2", "fd10::1", "2001:db8:1::1", "2001:db8:1::2", "http://[2001:db8:1::2]:8080"},
}

// bigFile is the size of the file fetched through the gateway: several
// MiB, so that it spans many TCP windows, GRO/GSO batches and both
// directions' window tracking.
const bigFile = 8 << 20

// TestForwardCurlPing routes between a client and a server without NAT,
// with the forward policy accepting: HTTP (a small body and a multi-MiB
// file with checksum) and ping both ways through the gateway, and ping to
// the gateway's own addresses, over IPv4 and IPv6.
func TestForwardCurlPing(t *testing.T) {
	needNetAdmin(t)
	needTools(t, "curl", "ping")
	bin := gatewayBinary(t)
	tp := newTopology(t, newNames("fw"))
	g := startGateway(t, bin, workDir(t, -1), gatewaySpec{
		cfg:  gwConfig{Lan: tunByName(tp.lan), Wan: tunByName(tp.wan)},
		tuns: []string{tp.lan, tp.wan},
	})
	g.wire(t, tp, true)
	www := t.TempDir()
	sum := writeRandomFile(t, filepath.Join(www, "big.bin"), bigFile)
	startHTTPServer(t, tp.server, www)

	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			out, err := curl(tp.client, 20*time.Second, f.url+"/peer")
			if err != nil || strings.TrimSpace(out) != f.client {
				t.Errorf("GET /peer: %q, %v; want the client's own address %s (no NAT)", out, err, f.client)
			}
			got := filepath.Join(t.TempDir(), "big.bin")
			if out, err := curl(tp.client, 60*time.Second, "-o", got, f.url+"/big.bin"); err != nil {
				t.Errorf("GET /big.bin: %v\n%s", err, out)
			} else if ok, why := sameFile(got, sum); !ok {
				t.Errorf("GET /big.bin: %s", why)
			}
			expectPing(t, tp.client, f.server)
			expectPing(t, tp.server, f.client)
			expectPing(t, tp.client, f.lanGW)
			expectPing(t, tp.server, f.wanGW)
		})
	}
}

// TestMasqueradeCurl runs the conformance configuration: masquerade on
// wan and a stateful forward policy. The server has no route back to the
// LAN, so the transfers work only if the gateway rewrote the client to its
// wan address, which the server reports; `tungate ct list` shows the
// translated flows; and a connection the server starts is dropped.
func TestMasqueradeCurl(t *testing.T) {
	needNetAdmin(t)
	needTools(t, "curl", "ping")
	bin := gatewayBinary(t)
	tp := newTopology(t, newNames("mq"))
	g := startGateway(t, bin, workDir(t, -1), gatewaySpec{
		cfg:  gwConfig{Lan: tunByName(tp.lan), Wan: tunByName(tp.wan), Masquerade: true, Stateful: true},
		tuns: []string{tp.lan, tp.wan},
	})
	g.wire(t, tp, false)
	www := t.TempDir()
	sum := writeRandomFile(t, filepath.Join(www, "big.bin"), bigFile)
	startHTTPServer(t, tp.server, www)

	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			out, err := curl(tp.client, 20*time.Second, f.url+"/peer")
			if err != nil || strings.TrimSpace(out) != f.wanGW {
				t.Errorf("GET /peer: %q, %v; want the gateway's wan address %s", out, err, f.wanGW)
			}
			got := filepath.Join(t.TempDir(), "big.bin")
			if out, err := curl(tp.client, 60*time.Second, "-o", got, f.url+"/big.bin"); err != nil {
				t.Errorf("GET /big.bin: %v\n%s", err, out)
			} else if ok, why := sameFile(got, sum); !ok {
				t.Errorf("GET /big.bin: %s", why)
			}
			expectPing(t, tp.client, f.server)
		})
	}

	list, err := g.ctl("ct", "list")
	if err != nil {
		t.Fatalf("tungate ct list: %v\n%s", err, list)
	}
	for _, f := range families {
		// conntrack -L: original tuple (and its counters when accounting
		// is on), then the reply tuple, whose destination is the
		// masquerade address.
		flow := regexp.MustCompile(`(?m)^(?:ipv[46]\s+\d+\s+)?tcp\s+6\s+\d+\s+(?:[A-Z_]+\s+)?` +
			`src=` + regexp.QuoteMeta(f.client) + `\s+dst=` + regexp.QuoteMeta(f.server) + `\s+sport=\d+\s+dport=8080\s+` +
			`(?:packets=\d+\s+bytes=\d+\s+)?` +
			`src=` + regexp.QuoteMeta(f.server) + `\s+dst=` + regexp.QuoteMeta(f.wanGW) + `\s+sport=8080\s+dport=\d+`)
		if !flow.MatchString(list) {
			t.Errorf("tungate ct list has no %s HTTP flow %s -> %s masqueraded to %s:\n%s", f.name, f.client, f.server, f.wanGW, list)
		}
	}

	// With a route back, the server can address the client, but a new
	// connection from wan matches no accept rule.
	mustRun(t, "ip", "-n", tp.server, "route", "add", "10.10.0.0/24", "via", "198.18.0.1", "dev", tp.wan)
	mustRun(t, "ip", "-n", tp.server, "-6", "route", "add", "fd10::/64", "via", "2001:db8:1::1", "dev", tp.wan)
	for _, f := range families {
		if n, out := ping(tp.server, f.client); n != 0 {
			t.Errorf("ping %s from the server: %d answered; the forward policy should drop new connections from wan\n%s", f.client, n, out)
		}
	}
}
