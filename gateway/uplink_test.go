package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"tungate/conntrack"
	"tungate/link"
	"tungate/link/uplink"
	"tungate/packet"
)

// uplinkConf is the rootless layout: the container (10.0.2.100, fd00::100)
// on lan, a real uplink wan with slirp4netns's virtual addresses, default
// routes to wan and a stateful forward policy. %s is the resolv.conf path,
// %d a TCP port the filter rejects.
const uplinkConf = `
[[interface]]
name = "lan"
tun = "ctr0"
addresses = ["10.0.2.1/24", "fd00::1/64"]

[[interface]]
name = "wan"
kind = "uplink"
allow_host_loopback = true
host_loopback = ["10.0.2.2", "fd00::2"]
dns = ["10.0.2.3", "fd00::3"]
resolv_conf = %q
udp_timeout = "30s"

[[route]]
to = "0.0.0.0/0"
interface = "wan"
[[route]]
to = "::/0"
interface = "wan"

[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { in = "lan", proto = "tcp", dport = %d, action = "reject" },
  { in = "lan", ct_state = ["new"], action = "accept" },
]
`

// uplinkGateway runs a gateway whose lan is an in-memory host and whose
// wan is a real uplink (host sockets of this process).
func uplinkGateway(t *testing.T, resolver string, rejectPort int) (*Gateway, *host) {
	t.Helper()
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver "+resolver+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lan := newHost(t, 1500, "10.0.2.100", "fd00::100")
	return runUplinkGateway(t, fmt.Sprintf(uplinkConf, rc, rejectPort), lan), lan
}

// runUplinkGateway runs conf until the test ends: its uplinks are real
// (host sockets of this process), its one TUN interface is lan.
func runUplinkGateway(t *testing.T, conf string, lan *host) *Gateway {
	t.Helper()
	cfg, err := ParseConfig([]byte(conf))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	g, err := New(cfg, Options{
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
		Open: func(ic *InterfaceConfig, log *zap.Logger) (link.Link, error) {
			if ic.IsUplink() {
				return openLink(ic, log)
			}
			return link.FromTUN(lan.dev), nil
		},
	})
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	for i, l := range g.Links() {
		if _, ok := l.Dev.(*uplink.Link); cfg.Interface[i].IsUplink() && !ok {
			t.Fatalf("%s is a %T, want *uplink.Link", l.Name, l.Dev)
		}
	}
	runUntilCleanup(t, g)
	return g
}

// findConn returns a live connection whose original tuple matches.
func findConn(g *Gateway, proto uint8, src netip.Addr, dst netip.AddrPort) *conntrack.Conn {
	var found *conntrack.Conn
	g.Table().Range(func(c *conntrack.Conn) bool {
		o := c.Tuple(conntrack.DirOriginal)
		if o.Proto == proto && o.SrcAddr() == src && o.DstAddr() == dst.Addr() && o.DstPort == dst.Port() {
			found = c
			return false
		}
		return true
	})
	return found
}

// A container on a TUN reaches the host's loopback services through the
// uplink's host_loopback address, over both families: HTTP (TCP spliced
// to a host socket, data intact), UDP echo and DNS through the virtual
// resolver. Every flow is in the conntrack table, and the uplink's
// counters are in the metrics and in UplinkStats.
func TestUplinkReachesHostLoopback(t *testing.T) {
	// The fake resolver: a loopback address of its own (port 53 needs root,
	// which these tests have) so it clashes with no real one.
	resolver := fmt.Sprintf("127.%d.%d.53", 100+os.Getpid()%100, os.Getpid()/100%250)
	dns, err := net.ListenPacket("udp", resolver+":53")
	if err != nil {
		t.Fatal(err)
	}
	defer dns.Close()
	go echoUDP(dns, "dns:")
	g, lan := uplinkGateway(t, resolver, 9)

	body := make([]byte, 1<<20)
	rand.Read(body)
	sum := sha256.Sum256(body)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	}))
	ln6, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Close()
	go http.Serve(ln6, srv.Config.Handler)
	defer ln6.Close()
	port4 := uint16(srv.Listener.Addr().(*net.TCPAddr).Port)
	port6 := uint16(ln6.Addr().(*net.TCPAddr).Port)

	udp4, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp4.Close()
	go echoUDP(udp4, "echo:")
	udp6, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp6.Close()
	go echoUDP(udp6, "echo:")

	for _, fam := range []struct {
		name           string
		ctr, lo, dns   netip.Addr
		httpPort, echo uint16
	}{
		{"v4", netip.MustParseAddr("10.0.2.100"), netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("10.0.2.3"),
			port4, uint16(udp4.LocalAddr().(*net.UDPAddr).Port)},
		{"v6", netip.MustParseAddr("fd00::100"), netip.MustParseAddr("fd00::2"), netip.MustParseAddr("fd00::3"),
			port6, uint16(udp6.LocalAddr().(*net.UDPAddr).Port)},
	} {
		t.Run(fam.name, func(t *testing.T) {
			dst := netip.AddrPortFrom(fam.lo, fam.httpPort)
			client := &http.Client{Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return lan.Net.DialContextTCPAddrPort(ctx, dst)
				},
				DisableKeepAlives: true,
			}, Timeout: 20 * time.Second}
			resp, err := client.Get("http://" + dst.String() + "/")
			if err != nil {
				t.Fatalf("GET through the uplink: %v", err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || sha256.Sum256(got) != sum {
				t.Fatalf("body: %d bytes, err %v, intact %v", len(got), err, sha256.Sum256(got) == sum)
			}
			if findConn(g, packet.ProtoTCP, fam.ctr, dst) == nil {
				t.Errorf("no conntrack entry for %s → %s", fam.ctr, dst)
			}

			udp := []struct {
				dst    netip.AddrPort
				prefix string
			}{{netip.AddrPortFrom(fam.lo, fam.echo), "echo:"}}
			// The IPv6 resolver would have to be [::1]:53, which the
			// uplink package's own tests use at the same time; they
			// cover IPv6 DNS.
			if fam.name == "v4" {
				udp = append(udp, struct {
					dst    netip.AddrPort
					prefix string
				}{netip.AddrPortFrom(fam.dns, 53), "dns:"})
			}
			for _, c := range udp {
				uc, err := lan.Net.DialUDPAddrPort(netip.AddrPort{}, c.dst)
				if err != nil {
					t.Fatal(err)
				}
				msg := []byte("hello " + c.dst.String())
				buf := make([]byte, 1500)
				// UDP may lose the first datagram while the host socket
				// opens; resend until answered or the deadline passes.
				var n int
				for end := time.Now().Add(10 * time.Second); ; {
					if _, err := uc.Write(msg); err != nil {
						t.Fatal(err)
					}
					uc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
					if n, err = uc.Read(buf); err == nil || time.Now().After(end) {
						break
					}
				}
				if err != nil || string(buf[:n]) != c.prefix+string(msg) {
					t.Fatalf("UDP %s: got %q, err %v", c.dst, buf[:n], err)
				}
				if findConn(g, packet.ProtoUDP, fam.ctr, c.dst) == nil {
					t.Errorf("no conntrack entry for UDP %s → %s", fam.ctr, c.dst)
				}
				uc.Close()
			}
		})
	}

	st, ok := g.UplinkStats(1)
	if !ok || st["udp_sockets"] == 0 {
		t.Errorf("uplink stats %v (ok %v): want open UDP sockets", st, ok)
	}
	if _, ok := g.UplinkStats(0); ok {
		t.Error("lan reported as an uplink")
	}
	if n := testutil.CollectAndCount(newCollector(g), "tungate_uplink_udp_sockets", "tungate_uplink_dials_refused_total"); n != 2 {
		t.Errorf("uplink metrics: %d series, want 2", n)
	}
	if problems, err := testutil.CollectAndLint(newCollector(g)); err != nil || len(problems) > 0 {
		t.Errorf("metrics lint: %v %v", problems, err)
	}
}

// echoUDP answers every datagram with prefix and the datagram.
func echoUDP(c net.PacketConn, prefix string) {
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		c.WriteTo(append([]byte(prefix), buf[:n]...), from)
	}
}

// A reject rule on a flow that would leave by the uplink refuses it at
// once with a RST, although the host service is there; and deleting a
// spliced TCP flow's conntrack entry resets it on both sides.
func TestUplinkRejectAndCtDelete(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	rej, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer rej.Close()
	rejPort := uint16(rej.Addr().(*net.TCPAddr).Port)
	g, lan := uplinkGateway(t, "127.0.0.1", int(rejPort))
	lo := netip.MustParseAddr("10.0.2.2")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	if c, err := lan.Net.DialContextTCPAddrPort(ctx, netip.AddrPortFrom(lo, rejPort)); err == nil {
		c.Close()
		t.Fatal("rejected connection went through")
	} else if !errors.Is(err, syscall.ECONNREFUSED) && !strings.Contains(err.Error(), "refused") {
		t.Fatalf("rejected dial: %v, want connection refused", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("reject took %v", d)
	}

	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	dst := netip.AddrPortFrom(lo, port)
	cc, err := lan.Net.DialContextTCPAddrPort(context.Background(), dst)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var sc net.Conn
	select {
	case sc = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("host server accepted nothing")
	}
	defer sc.Close()
	if _, err := cc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	sc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.ReadFull(sc, buf[:4]); err != nil || !bytes.Equal(buf[:n], []byte("ping")) {
		t.Fatalf("spliced data: %q %v", buf[:n], err)
	}

	var c *conntrack.Conn
	eventually(t, 5*time.Second, "the flow's conntrack entry", func() bool {
		c = findConn(g, packet.ProtoTCP, netip.MustParseAddr("10.0.2.100"), dst)
		return c != nil
	})
	if n := g.Table().DeleteMatching(func(x *conntrack.Conn) bool { return x == c }); n != 1 {
		t.Fatalf("deleted %d entries", n)
	}
	// Both ends see the flow end: the host server at once (a reset), the
	// container at its next segment. The uplink's own reset cannot reach
	// it: with the entry gone the reset is INVALID and the filter drops
	// it, as Linux would. The next segment is picked up as a new flow
	// (tcp_loose) and the uplink's stack, which has no such connection
	// any more, answers it with a reset.
	sc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := sc.Read(buf); err == nil || os.IsTimeout(err) {
		t.Errorf("host side after ct delete: %v, want the connection closed", err)
	}
	cc.Write([]byte("more"))
	cc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := cc.Read(buf); err == nil || os.IsTimeout(err) {
		t.Errorf("container side after ct delete: %v, want the connection closed", err)
	}
}

// The uplink's keys are checked at their position, only an uplink takes
// them, and NAT rules that cannot apply on an uplink are refused where
// they name it.
func TestUplinkConfigErrors(t *testing.T) {
	const up = `[[interface]]
name = "lan"
tun = "t0"
addresses = ["10.0.2.1/24"]

[[interface]]
name = "wan"
kind = "uplink"
`
	for _, tc := range []struct {
		name, text, pos, path, reason string
	}{
		{"unknown kind", strings.Replace(up, `"uplink"`, `"uplnk"`, 1), "8:8", "interface[1].kind", `unknown kind "uplnk" (did you mean "uplink"?)`},
		{"uplink key on a tun", strings.Replace(up, `tun = "t0"`, "tun = \"t0\"\ndns = [\"10.0.2.3\"]", 1), "4:7", "interface[0].dns", `is a key of uplink interfaces, not of kind "tun"`},
		{"tun on an uplink", up + "tun = \"t1\"\n", "9:7", "interface[1].tun", "is a key of tun interfaces, not of kind"},
		{"bad dns", up + "dns = [\"10.0.2.3\", \"10.0.2.4\"]\n", "9:20", "interface[1].dns[1]", "one address per family"},
		{"loopback host_loopback", up + "host_loopback = [\"127.0.0.1\"]\n", "9:18", "interface[1].host_loopback[0]", "not loopback"},
		{"mtu", up + "mtu = 1000\n", "9:7", "interface[1].mtu", "out of range"},
		{"udp_timeout", up + "udp_timeout = \"10ms\"\n", "9:15", "interface[1].udp_timeout", "below one second"},
		{"negative max_flows", up + "max_flows = -1\n", "9:13", "interface[1].max_flows", "must not be negative"},
		{"negative max_forwards_per_source", up + "max_forwards_per_source = -1\n", "9:27", "interface[1].max_forwards_per_source", "must not be negative"},
		{"masquerade", up + "[[nat.masquerade]]\nout = \"wan\"\n", "10:7", "nat.masquerade[0].out", "masquerade is implicit"},
		{"snat", up + "[[nat.snat]]\nout = \"wan\"\nto = \"192.0.2.1\"\n", "10:7", "nat.snat[0].out", "masquerade is implicit"},
		{"dnat without proto", up + "[[nat.dnat]]\nin = \"wan\"\ndport = 8080\nto = \"10.0.2.100:80\"\n", "10:6", "nat.dnat[0].in", `needs proto = "tcp" or "udp"`},
		{"dnat range", up + "[[nat.dnat]]\nin = \"wan\"\nproto = \"tcp\"\ndport = \"8080-8081\"\nto = \"10.0.2.100:80\"\n", "12:9", "nat.dnat[0].dport", "needs one port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _, err := checkFile(t, tc.text)
			if err == nil {
				t.Fatal("no error")
			}
			want := f + ":" + tc.pos + ": " + tc.path + ": "
			if got := err.Error(); !strings.HasPrefix(got, want) || !strings.Contains(got, tc.reason) || strings.Contains(got, "\n") {
				t.Errorf("got  %s\nwant %s…%s", got, want, tc.reason)
			}
		})
	}
	// A valid uplink gets the uplink's defaults; a TCP port forward from
	// it is fine.
	_, c, err := checkFile(t, up+"allow_host_loopback = true\nhost_loopback = [\"10.0.2.2\"]\n[[nat.masquerade]]\nout = \"lan\"\n"+
		"[[nat.dnat]]\nin = \"wan\"\nproto = \"tcp\"\ndport = 8080\nto = \"10.0.2.100:80\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if ic := &c.Interface[1]; ic.MTU != uplink.DefaultMTU || ic.UplinkConfig().MaxPendingDials != uplink.DefaultMaxPendingDials || c.Interface[0].Kind != KindTUN {
		t.Errorf("defaults: mtu %d, uplink %+v, lan kind %q", ic.MTU, ic.UplinkConfig(), c.Interface[0].Kind)
	}
}

// hostAddrs returns a global unicast address of each family of this host
// (not loopback): port forward clients need one, since a loopback client
// has no address the container could see.
func hostAddrs(t *testing.T) (v4, v6 netip.Addr) {
	t.Helper()
	as, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		p, err := netip.ParsePrefix(a.String())
		if err != nil || !p.Addr().IsGlobalUnicast() {
			continue
		}
		if p.Addr().Is4() && !v4.IsValid() {
			v4 = p.Addr()
		}
		if p.Addr().Is6() && !v6.IsValid() {
			v6 = p.Addr()
		}
	}
	if !v4.IsValid() || !v6.IsValid() {
		t.Fatalf("the host needs a global IPv4 and IPv6 address for port forward clients; has %v", as)
	}
	return v4, v6
}

// A port forward on the uplink: tungate listens on the host port and the
// server inside sees the real client address, over IPv4 and IPv6; the
// forward's conntrack entry is a DNAT one arriving on the uplink.
func TestUplinkPortForward(t *testing.T) {
	c4, c6 := hostAddrs(t)
	free, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	free2, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	free3, err := net.ListenPacket("udp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	port, port2, port3 := free.Addr().(*net.TCPAddr).Port, free2.Addr().(*net.TCPAddr).Port, free3.LocalAddr().(*net.UDPAddr).Port
	free.Close()
	free2.Close()
	free3.Close()
	conf := fmt.Sprintf(`
[[interface]]
name = "lan"
tun = "ctr0"
addresses = ["10.0.2.1/24", "fd01::1/64"]

[[interface]]
name = "wan"
kind = "uplink"
host_loopback = ["10.0.2.2", "fd01::2"]

[[route]]
to = "0.0.0.0/0"
interface = "wan"
[[route]]
to = "::/0"
interface = "wan"

[[nat.dnat]]
in = "wan"
proto = "tcp"
dport = %d
to = "10.0.2.100:80"
[[nat.dnat]]
in = "wan"
proto = "tcp"
dport = %d
to = "[fd01::100]:80"
[[nat.dnat]]
in = "wan"
proto = "tcp"
dport = %d
to = "10.0.2.100:81"
[[nat.dnat]]
in = "wan"
proto = "udp"
dport = %d
to = "10.0.2.100:53"
[[nat.dnat]]
in = "wan"
proto = "udp"
dport = %d
to = "[fd01::100]:53"

[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { in = "wan", ct_status = ["dnat"], action = "accept" },
  { in = "lan", ct_state = ["new"], action = "accept" },
]
`, port, port, port2, port3, port3)
	lan := newHost(t, 1500, "10.0.2.100", "fd01::100")
	g := runUplinkGateway(t, conf, lan)

	// The server inside answers each connection with the peer it saw.
	for _, a := range []string{"10.0.2.100:80", "[fd01::100]:80"} {
		ln, err := lan.Net.ListenTCPAddrPort(netip.MustParseAddrPort(a))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintf(c, "%s\n", c.RemoteAddr())
				c.Close()
			}
		}()
	}
	// A loopback client has no address the container could answer: it
	// appears as the host_loopback address, and its connection to the
	// host's loopback as one to the gateway's own address.
	for _, tc := range []struct{ client, seen, dst netip.Addr }{
		{c4, c4, c4},
		{c6, c6, c6},
		{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("10.0.2.1")},
		{netip.IPv6Loopback(), netip.MustParseAddr("fd01::2"), netip.MustParseAddr("fd01::1")},
	} {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(tc.client, 0)), Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", netip.AddrPortFrom(tc.client, uint16(port)).String())
		if err != nil {
			t.Fatalf("connect to the forward from %s: %v", tc.client, err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		c.Close()
		want := netip.AddrPortFrom(tc.seen, uint16(c.LocalAddr().(*net.TCPAddr).Port)).String() + "\n"
		if err != nil || string(b) != want {
			t.Fatalf("the server inside saw %q (%v), want the client as %q", b, err, want)
		}
		ct := findConn(g, packet.ProtoTCP, tc.seen, netip.AddrPortFrom(tc.dst, uint16(port)))
		if ct == nil {
			t.Fatalf("no conntrack entry for the forward from %s", tc.seen)
		}
		if r := ct.Tuple(conntrack.DirReply); r.SrcPort != 80 {
			t.Errorf("forward from %s: reply tuple %v, want from the container's port 80", tc.client, r)
		}
	}
	if st, _ := g.UplinkStats(1); st["forwards"] != 4 {
		t.Errorf("uplink forwards %d, want 4", st["forwards"])
	}

	// UDP: the server inside answers each datagram with the peer it saw;
	// the answer leaves through the forward's socket.
	for _, a := range []string{"10.0.2.100:53", "[fd01::100]:53"} {
		uc, err := lan.Net.ListenUDPAddrPort(netip.MustParseAddrPort(a))
		if err != nil {
			t.Fatal(err)
		}
		defer uc.Close()
		go func() {
			buf := make([]byte, 1500)
			for {
				_, from, err := uc.ReadFrom(buf)
				if err != nil {
					return
				}
				uc.WriteTo([]byte(from.String()), from)
			}
		}()
	}
	for _, tc := range []struct{ client, seen netip.Addr }{
		{c4, c4}, {c6, c6},
		{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.0.2.2")},
		{netip.IPv6Loopback(), netip.MustParseAddr("fd01::2")},
	} {
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(tc.client, 0)),
			net.UDPAddrFromAddrPort(netip.AddrPortFrom(tc.client, uint16(port3))))
		if err != nil {
			t.Fatal(err)
		}
		want := netip.AddrPortFrom(tc.seen, uint16(c.LocalAddr().(*net.UDPAddr).Port)).String()
		buf := make([]byte, 1500)
		var n int
		for end := time.Now().Add(5 * time.Second); ; {
			c.Write([]byte("who am i"))
			c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if n, err = c.Read(buf); err == nil || time.Now().After(end) {
				break
			}
		}
		c.Close()
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("UDP forward from %s: the server inside saw %q (%v), want %q", tc.client, buf[:n], err, want)
		}
	}

	// ct delete of a forwarded flow closes it on both sides too.
	accepted := make(chan net.Conn, 1)
	hold, err := lan.Net.ListenTCPAddrPort(netip.MustParseAddrPort("10.0.2.100:81"))
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	go func() {
		if c, err := hold.Accept(); err == nil {
			accepted <- c
		}
	}()
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(c4, 0)), Timeout: 5 * time.Second}
	hc, err := d.Dial("tcp", netip.AddrPortFrom(c4, uint16(port2)).String())
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	var sc net.Conn
	select {
	case sc = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the server inside accepted nothing")
	}
	defer sc.Close()
	hc.Write([]byte("x"))
	buf := make([]byte, 8)
	sc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(sc, buf[:1]); err != nil {
		t.Fatal(err)
	}
	ct := findConn(g, packet.ProtoTCP, c4, netip.AddrPortFrom(c4, uint16(port2)))
	if ct == nil {
		t.Fatal("no conntrack entry for the held forward")
	}
	g.Table().DeleteMatching(func(x *conntrack.Conn) bool { return x == ct })
	hc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := hc.Read(buf); err == nil || os.IsTimeout(err) {
		t.Errorf("host client after ct delete: %v, want the connection closed", err)
	}
	sc.Write([]byte("more"))
	sc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := sc.Read(buf); err == nil || os.IsTimeout(err) {
		t.Errorf("server inside after ct delete: %v, want the connection closed", err)
	}
}

// On an uplink masquerade is implicit: ct list shows a flow's reply tuple
// to the host address and socket port the flow left from, which is the
// peer the host's server saw, over TCP and UDP and both families.
func TestUplinkCtListShowsHostSide(t *testing.T) {
	g, lan := uplinkGateway(t, "127.0.0.53", 9)
	for _, fam := range []struct {
		lo, ctr, virt netip.Addr
	}{
		{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.0.2.100"), netip.MustParseAddr("10.0.2.2")},
		{netip.IPv6Loopback(), netip.MustParseAddr("fd00::100"), netip.MustParseAddr("fd00::2")},
	} {
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(fam.lo, 0)))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		peers := make(chan netip.AddrPort, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			peers <- c.RemoteAddr().(*net.TCPAddr).AddrPort()
			io.Copy(io.Discard, c)
		}()
		dst := netip.AddrPortFrom(fam.virt, uint16(ln.Addr().(*net.TCPAddr).Port))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := lan.Net.DialContextTCPAddrPort(ctx, dst)
		cancel()
		if err != nil {
			t.Fatalf("dial %s through the uplink: %v", dst, err)
		}
		defer c.Close()
		var peer netip.AddrPort
		select {
		case peer = <-peers:
		case <-time.After(10 * time.Second):
			t.Fatal("the host server accepted nothing")
		}
		expectHostSide(t, g, packet.ProtoTCP, fam.ctr, dst, netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port()))

		u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(fam.lo, 0)))
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		udst := netip.AddrPortFrom(fam.virt, uint16(u.LocalAddr().(*net.UDPAddr).Port))
		uc, err := lan.Net.DialUDPAddrPort(netip.AddrPort{}, udst)
		if err != nil {
			t.Fatal(err)
		}
		defer uc.Close()
		buf := make([]byte, 64)
		var from netip.AddrPort
		for end := time.Now().Add(10 * time.Second); ; {
			uc.Write([]byte("hi"))
			u.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			_, from, err = u.ReadFromUDPAddrPort(buf)
			if err == nil || time.Now().After(end) {
				break
			}
		}
		if err != nil {
			t.Fatalf("no datagram through the uplink to %s: %v", udst, err)
		}
		expectHostSide(t, g, packet.ProtoUDP, fam.ctr, udst, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
	}
}

// expectHostSide checks that the listing of the flow from ctr to dst shows
// host as its reply destination, in the text line and ShownReplyOf.
func expectHostSide(t *testing.T, g *Gateway, proto uint8, ctr netip.Addr, dst, host netip.AddrPort) {
	t.Helper()
	c := findConn(g, proto, ctr, dst)
	if c == nil {
		t.Fatalf("no conntrack entry for %s → %s", ctr, dst)
	}
	// The uplink registers a TCP connection's host socket just after the
	// container's handshake completes.
	eventually(t, 5*time.Second, "the host side in the shown reply", func() bool {
		r := g.Table().ShownReplyOf(c)
		return r.DstAddr() == host.Addr()
	})
	r := g.Table().ShownReplyOf(c)
	if r.DstAddr() != host.Addr() || r.DstPort != host.Port() || r.SrcAddr() != dst.Addr() || r.SrcPort != dst.Port() {
		t.Errorf("shown reply %s:%d → %s:%d, want %s → %s (the host socket)", r.SrcAddr(), r.SrcPort, r.DstAddr(), r.DstPort, dst, host)
	}
	line := string(g.Table().AppendConn(nil, c, g.Table().Now()))
	want := fmt.Sprintf("src=%s dst=%s sport=%d dport=%d", dst.Addr(), host.Addr(), dst.Port(), host.Port())
	if !strings.Contains(line, want) {
		t.Errorf("ct list line %q lacks the host side %q", line, want)
	}
	// The table itself keeps the tuple the datapath matches replies by.
	if tr := c.Tuple(conntrack.DirReply); tr.DstAddr() != ctr {
		t.Errorf("the table's reply tuple changed to %s", tr.DstAddr())
	}
}

// Runtime forwards refuse what cannot work, naming the field, and a port
// is forwarded once; a removed forward's id is gone.
func TestRuntimeForwardErrors(t *testing.T) {
	g, _ := uplinkGateway(t, "127.0.0.53", 9)
	free, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	port := free.Addr().(*net.TCPAddr).Port
	free.Close()
	for _, tc := range []struct {
		f    RuntimeForward
		want string
	}{
		{RuntimeForward{Proto: "sctp", ParentPort: port, ChildPort: 80}, "proto"},
		{RuntimeForward{Proto: "tcp", ParentPort: 0, ChildPort: 80}, "parentPort"},
		{RuntimeForward{Proto: "tcp", ParentPort: port, ChildPort: 70000}, "childPort"},
		{RuntimeForward{Proto: "tcp", ParentPort: port, ChildPort: 80}, "childIP: needed"}, // no [namespace]
		{RuntimeForward{Proto: "tcp4", ParentPort: port, ChildIP: "fd00::100", ChildPort: 80}, "not an IPv4"},
		{RuntimeForward{Proto: "tcp", ParentIP: "bad", ParentPort: port, ChildIP: "10.0.2.100", ChildPort: 80}, "parentIP"},
		{RuntimeForward{Proto: "tcp", ParentPort: port, ChildIP: "10.0.2.100", ChildPort: 80, Interface: "lan"}, "no such uplink"},
	} {
		if _, err := g.AddForward(tc.f); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("AddForward(%+v) = %v, want an error with %q", tc.f, err, tc.want)
		}
	}
	f, err := g.AddForward(RuntimeForward{Proto: "tcp", ParentPort: port, ChildIP: "10.0.2.100", ChildPort: 80})
	if err != nil || f.ID == 0 || f.Interface != "wan" {
		t.Fatalf("AddForward: %+v, %v", f, err)
	}
	if _, err := g.AddForward(RuntimeForward{Proto: "tcp", ParentPort: port, ChildIP: "10.0.2.100", ChildPort: 81}); err == nil || !strings.Contains(err.Error(), "forwarded already") {
		t.Errorf("second forward of port %d: %v", port, err)
	}
	if fs := g.Forwards(); len(fs) != 1 || fs[0] != f {
		t.Errorf("Forwards = %+v, want [%+v]", fs, f)
	}
	if err := g.RemoveForward(f.ID); err != nil {
		t.Fatal(err)
	}
	if err := g.RemoveForward(f.ID); !errors.Is(err, ErrNoForward) {
		t.Errorf("second RemoveForward: %v, want ErrNoForward", err)
	}
	// The port is free again.
	eventually(t, 5*time.Second, "the forward's port to be free", func() bool {
		ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
		if err == nil {
			ln.Close()
		}
		return err == nil
	})
}

// An uplink's max_forwards_per_source follows [conntrack] per_source_max
// when unset: more forwarded connections from one client could never
// pass the datapath anyway.
func TestUplinkForwardsPerSourceDefault(t *testing.T) {
	const up = "[[interface]]\nname = \"lan\"\ntun = \"t0\"\naddresses = [\"10.0.2.1/24\"]\n\n[[interface]]\nname = \"wan\"\nkind = \"uplink\"\nmax_flows = 1000\n"
	for _, tc := range []struct {
		text string
		want int
	}{
		{up, 250},
		{up + "max_forwards_per_source = 7\n[conntrack]\nper_source_max = 20\n", 7},
		{up + "[conntrack]\nper_source_max = 20\n", 20},
	} {
		cfg, err := ParseConfig([]byte(tc.text))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Interface[1].UplinkConfig().MaxForwardsPerSource; got != tc.want {
			t.Errorf("%q: max_forwards_per_source %d, want %d", tc.text, got, tc.want)
		}
	}
}
