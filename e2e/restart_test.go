//go:build linux

package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// udpEchoScript answers each datagram on the given ports with the source
// address and port it came from, as "ADDR PORT" (IPv4-mapped shown plain).
const udpEchoScript = `
import socket, sys, threading
def serve(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    while True:
        data, addr = s.recvfrom(2048)
        host = addr[0][7:] if addr[0].startswith("::ffff:") else addr[0]
        s.sendto(("%s %d" % (host, addr[1])).encode(), addr)
ports = [int(p) for p in sys.argv[2:]]
for p in ports[1:]:
    threading.Thread(target=serve, args=(p,), daemon=True).start()
open(sys.argv[1], "w").close()
serve(ports[0])
`

// udpAskScript sends one datagram from SRC:SPORT to DST:DPORT and prints
// the answer (the server's view of the sender), retrying a few times.
const udpAskScript = `
import socket, sys
src, sport, dst, dport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
fam = socket.AF_INET6 if ":" in src else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((src, sport))
s.settimeout(1)
for _ in range(10):
    s.sendto(b"hello", (dst, dport))
    try:
        print(s.recv(2048).decode())
        sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)
`

// pacedServerScript (READY FILE PORT) serves FILE to every TCP connection on PORT at about
// 1.6 MB/s (32 KiB every 20 ms), so a transfer lasts seconds whatever the
// receiver's buffers, then closes.
const pacedServerScript = `
import socket, sys, threading, time
data = open(sys.argv[2], "rb").read()
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[3])))
s.listen(8)
open(sys.argv[1], "w").close()
def handle(c):
    for i in range(0, len(data), 32768):
        c.sendall(data[i:i + 32768])
        time.sleep(0.02)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
`

// fetchScript reads everything DST:PORT sends into OUT, flushing as it
// goes so the test can watch the progress.
const fetchScript = `
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
with open(sys.argv[3], "wb") as f:
    while True:
        b = c.recv(65536)
        if not b:
            break
        f.write(b)
        f.flush()
`

// udpAsk returns the "ADDR PORT" the server saw for a datagram from
// src:sport.
func udpAsk(t *testing.T, ns, src, sport, dst, dport string) string {
	t.Helper()
	return strings.TrimSpace(mustRun(t, inNS(ns, python(), "-c", udpAskScript, src, sport, dst, dport)...))
}

// TestRestartKeepsConnections stops and starts the real binary with
// [conntrack] state_file while TCP transfers through masquerade are
// running, IPv4 and IPv6. The TUN descriptors are held across the restart
// by the test, as systemd's file descriptor store or a supervisor would
// hold them (tun_fd), so the devices and the namespaces' routes stay.
// The transfers complete with every byte intact (sha256), and a UDP
// mapping whose external port differs from its internal one (another
// host took that port first) keeps its external port: for the flow
// itself and for a new flow of the same endpoint (endpoint-independent
// mapping). Without the state file the gateway would drop the server's
// segments (the forward policy drops new connections from wan) and give
// the endpoint a fresh port.
func TestRestartKeepsConnections(t *testing.T) {
	needNetAdmin(t)
	bin := gatewayBinary(t)
	tp := newTopology(t, newNames("rs"))
	lan, wan := openTUN(t, tp.lan), openTUN(t, tp.wan)
	dir := workDir(t, -1)
	spec := gatewaySpec{
		cfg: gwConfig{Lan: "tun_fd = 3", Wan: "tun_fd = 4", Masquerade: true, Stateful: true,
			StateFile: "ct.state"},
		tuns:       []string{tp.lan, tp.wan},
		extraFiles: []*os.File{lan, wan},
	}
	g1 := startGateway(t, bin, dir, spec)
	g1.wire(t, tp, false)
	mustRun(t, "ip", "-n", tp.client, "addr", "add", "10.10.0.3/24", "dev", tp.lan)
	mustRun(t, "ip", "-n", tp.client, "-6", "addr", "add", "fd10::3/64", "dev", tp.lan, "nodad")

	big := filepath.Join(t.TempDir(), "big.bin")
	sum := writeRandomFile(t, big, bigFile)
	startScript(t, tp.server, "the paced TCP server", pacedServerScript, big, "8081")
	startScript(t, tp.server, "the UDP echo server", udpEchoScript, "7000", "7001")

	// UDP: the other host takes port 5555 first, so the client's mapping
	// of 5555 gets another external port.
	udpBefore := map[string]string{}
	for _, f := range families {
		other := strings.Replace(f.client, ".2", ".3", 1)
		if f.name == "ipv6" {
			other = "fd10::3"
		}
		if got := udpAsk(t, tp.client, other, "5555", f.server, "7000"); got != f.wanGW+" 5555" {
			t.Fatalf("%s: the first host's flow left as %q, want port 5555 kept", f.name, got)
		}
		got := udpAsk(t, tp.client, f.client, "5555", f.server, "7000")
		if got == f.wanGW+" 5555" || !strings.HasPrefix(got, f.wanGW+" ") {
			t.Fatalf("%s: the second flow left as %q, want another port of %s", f.name, got, f.wanGW)
		}
		udpBefore[f.name] = got
	}

	// TCP: paced downloads, so the restart falls in the middle.
	type dl struct {
		path string
		cmd  *exec.Cmd
		out  bytes.Buffer
		done chan error
	}
	dls := map[string]*dl{}
	for _, f := range families {
		d := &dl{path: filepath.Join(t.TempDir(), "big.bin"), done: make(chan error, 1)}
		argv := inNS(tp.client, python(), "-c", fetchScript, f.server, "8081", d.path)
		d.cmd = exec.Command(argv[0], argv[1:]...)
		d.cmd.Stdout, d.cmd.Stderr = &d.out, &d.out
		if err := d.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { d.done <- d.cmd.Wait() }()
		t.Cleanup(func() { d.cmd.Process.Kill() })
		dls[f.name] = d
	}
	for name, d := range dls {
		waitFor(t, 30*time.Second, name+" download to be under way", func() (bool, string) {
			fi, err := os.Stat(d.path)
			if err != nil {
				return false, err.Error()
			}
			return fi.Size() >= 1<<20, "only " + fi.Name() + " so far"
		})
	}

	g1.stop()
	log1 := g1.logText()
	saved := regexp.MustCompile(`state file saved.*"connections": (\d+)`).FindStringSubmatch(log1)
	if saved == nil {
		t.Fatalf("the stopped gateway did not save its state:\n%s", log1)
	}
	for name, d := range dls {
		fi, _ := os.Stat(d.path)
		if fi != nil && fi.Size() >= bigFile {
			t.Fatalf("%s download finished before the restart: the test proves nothing", name)
		}
	}

	g2 := startGateway(t, bin, dir, spec)
	if m := regexp.MustCompile(`state file restored.*"connections": (\d+)`).FindStringSubmatch(g2.logText()); m == nil || m[1] == "0" {
		t.Fatalf("the new gateway restored nothing:\n%s", g2.logText())
	}
	list, err := g2.ctl("ct", "list", "-p", "tcp")
	if err != nil || !strings.Contains(list, "dport=8081") {
		t.Fatalf("restored table has no HTTP flow: %v\n%s", err, list)
	}

	for name, d := range dls {
		select {
		case err := <-d.done:
			if err != nil {
				t.Errorf("%s download across the restart: %v\n%s", name, err, d.out.String())
			} else if ok, why := sameFile(d.path, sum); !ok {
				t.Errorf("%s download across the restart: %s", name, why)
			}
		case <-time.After(150 * time.Second):
			t.Fatalf("%s download did not finish", name)
		}
	}
	for _, f := range families {
		if got := udpAsk(t, tp.client, f.client, "5555", f.server, "7000"); got != udpBefore[f.name] {
			t.Errorf("%s: the UDP flow leaves as %q after the restart, want %q", f.name, got, udpBefore[f.name])
		}
		if got := udpAsk(t, tp.client, f.client, "5555", f.server, "7001"); got != udpBefore[f.name] {
			t.Errorf("%s: a new flow of the same endpoint leaves as %q after the restart, want its mapping %q", f.name, got, udpBefore[f.name])
		}
	}
	g2.stop()
}

// startScript runs a Python server script in namespace ns with a ready
// file as its first argument, then args, and returns once the script has
// created the file (it listens).
func startScript(t *testing.T, ns, what, script string, args ...string) {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	var out bytes.Buffer
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, python(), "-c", script, ready}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("%s output:\n%s", what, out.String())
		}
	})
	waitFor(t, 10*time.Second, what, func() (bool, string) {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("%s exited: %v\n%s", what, err, out.String())
		default:
		}
		_, err := os.Stat(ready)
		return err == nil, "no ready file yet"
	})
}
