//go:build linux

package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// uplinkConfig is configs/rootless.toml's layout: the container's TUN lan
// and the uplink wan, which reaches the host's loopback as 10.0.2.2 and
// fd00::2, with a port forward to the container's port 8080. The first
// %s is the admin socket.
const uplinkConfig = `[log]
level = "info"

[admin]
socket = "%s"
metrics = ""

[[interface]]
name = "lan"
tun = "` + "%s" + `"
addresses = ["10.0.2.1/24", "fd00::1/64"]

[[interface]]
name = "wan"
kind = "uplink"
allow_host_loopback = true
host_loopback = ["10.0.2.2", "fd00::2"]

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
to = "10.0.2.100:8080"

[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { ct_state = ["invalid"], action = "drop" },
  { in = "lan", ct_state = ["new"], action = "accept" },
  { in = "wan", ct_status = ["dnat"], action = "accept" },
]
`

// TestRootlessUplink runs the gateway binary as an unprivileged user made
// for the test, attached to a TUN root made for that user, with an uplink
// as its way out. A client in a namespace of its own behind the TUN (the
// container) fetches a file from an HTTP server on the host's loopback,
// over IPv4 and IPv6, through the uplink's host_loopback addresses: the
// uplink's host sockets are the unprivileged user's.
func TestRootlessUplink(t *testing.T) {
	needNetAdmin(t)
	needTools(t, "curl", "setpriv", "unshare", "useradd", "userdel")
	bin := gatewayBinary(t)
	n := newNames("up")
	user := string(n) + "u"
	exec.Command("userdel", user).Run() // a leftover of a crashed run
	mustRun(t, "useradd", "-M", "-r", "-s", "/usr/sbin/nologin", user)
	t.Cleanup(func() { exec.Command("userdel", user).Run() })
	uid, err := strconv.Atoi(strings.TrimSpace(mustRun(t, "id", "-u", user)))
	if err != nil {
		t.Fatal(err)
	}
	gid, err := strconv.Atoi(strings.TrimSpace(mustRun(t, "id", "-g", user)))
	if err != nil {
		t.Fatal(err)
	}

	ctr, lan := n.get("c"), n.get("l")
	addNetns(t, ctr)
	delLinkAtEnd(t, lan)
	mustRun(t, "ip", "tuntap", "add", "dev", lan, "mode", "tun", "user", strconv.Itoa(uid), "vnet_hdr")

	body := make([]byte, 4<<20)
	rand.Read(body)
	sum := sha256.Sum256(body)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) })}
	var ports []int
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	t.Cleanup(func() { srv.Close() })

	free, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	fwd := free.Addr().(*net.TCPAddr).Port
	free.Close()

	dir := workDir(t, uid)
	devDir := mkdirAll(t, filepath.Join(dir, "dev"))
	g := startGateway(t, bin, dir, gatewaySpec{
		cfg:  gwConfig{Raw: fmt.Sprintf(uplinkConfig, "%s", lan, fwd)},
		tuns: []string{lan},
		argv: func(gw []string) []string {
			return withOpenDevTun(devDir, append([]string{"setpriv", "--reuid=" + strconv.Itoa(uid),
				"--regid=" + strconv.Itoa(gid), "--clear-groups", "--"}, gw...))
		},
	})
	expectUID(t, g, uid)

	// The container's side: the TUN moves into its namespace.
	for _, st := range [][]string{
		{"link", "set", lan, "netns", ctr},
		{"-n", ctr, "addr", "add", "10.0.2.100/24", "dev", lan},
		{"-n", ctr, "-6", "addr", "add", "fd00::100/64", "dev", lan, "nodad"},
		{"-n", ctr, "link", "set", lan, "up"},
		{"-n", ctr, "route", "add", "default", "via", "10.0.2.1", "dev", lan},
		{"-n", ctr, "-6", "route", "add", "default", "via", "fd00::1", "dev", lan},
	} {
		mustRun(t, append([]string{"ip"}, st...)...)
	}

	for i, url := range []string{
		fmt.Sprintf("http://10.0.2.2:%d/", ports[0]),
		fmt.Sprintf("http://[fd00::2]:%d/", ports[1]),
	} {
		out := filepath.Join(t.TempDir(), fmt.Sprint("got", i))
		if msg, err := curl(ctr, 30*time.Second, "-o", out, url); err != nil {
			t.Fatalf("curl %s from the container: %v\n%s", url, err, msg)
		}
		got, err := os.ReadFile(out)
		if err != nil || sha256.Sum256(got) != sum {
			t.Fatalf("%s: %d bytes (want %d), intact %v", url, len(got), len(body), sha256.Sum256(got) == sum)
		}
	}
	// The port forward: a client on a host address reaches the container's
	// server through the unprivileged gateway's listener, and the server
	// sees the client's own address.
	hostIP := ""
	if as, err := net.InterfaceAddrs(); err == nil {
		for _, a := range as {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && ipn.IP.IsGlobalUnicast() {
				hostIP = ipn.IP.String()
				break
			}
		}
	}
	if hostIP == "" {
		t.Fatal("the host has no global IPv4 address for the port forward's client")
	}
	startHTTPServer(t, ctr, t.TempDir())
	peer, err := run(40*time.Second, "curl", "-sS", "--max-time", "30", "--interface", hostIP,
		fmt.Sprintf("http://%s:%d/peer", hostIP, fwd))
	if err != nil || strings.TrimSpace(peer) != hostIP {
		t.Errorf("GET /peer through the port forward: %q, %v; want the client's address %s", peer, err, hostIP)
	}

	// The flows went through the gateway's conntrack and its uplink.
	ct, err := g.ctl("ct", "list")
	if err != nil {
		t.Fatalf("ct list: %v\n%s", err, ct)
	}
	for _, want := range []string{"dst=10.0.2.2 sport", fmt.Sprintf("dport=%d", ports[0]), "dst=fd00::2 sport"} {
		if !strings.Contains(ct, want) {
			t.Errorf("ct list has no %q:\n%s", want, ct)
		}
	}
	st, err := g.ctl("status")
	if err != nil || !strings.Contains(st, "uplink mtu=65520") {
		t.Errorf("status (%v) does not show the uplink:\n%s", err, st)
	}
}
