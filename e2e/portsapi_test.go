//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// portsAPIConfig: command mode with an uplink, no forward in the file and
// the rootlesskit-shaped ports API on a socket beside it. The container's
// IPv6 subnet is not fd00::/64, which holds this host's own address.
const portsAPIConfig = `
[admin]
socket = "admin.sock"
ports_api = "ports.sock"
metrics = ""

[[interface]]
name = "lan"
addresses = ["10.0.2.1/24", "fd01::1/64"]

[namespace]
interface = "lan"
addresses = ["10.0.2.100/24", "fd01::100/64"]

[[interface]]
name = "wan"
kind = "uplink"

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
  { in = "lan", ct_state = ["new"], action = "accept" },
  { in = "wan", ct_status = ["dnat"], action = "accept" },
]
`

// TestPortsAPI drives the ports API the way a container runtime does,
// with an HTTP client on its unix socket: a forward added at run time
// reaches the container's server, which sees the real client address over
// IPv4 and IPv6, also after a reload; the list and status show it; once
// deleted the host port is closed. The gateway runs as nobody in command mode.
func TestPortsAPI(t *testing.T) {
	needNetAdmin(t)
	needTools(t, "curl", "setpriv", "unshare", "ip")
	bin := gatewayBinary(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, err := strconv.Atoi(nobody.Uid)
	if err != nil {
		t.Fatal(err)
	}
	dir := workDir(t, uid)
	devDir := mkdirAll(t, filepath.Join(dir, "dev"))
	www := mkdirAll(t, filepath.Join(dir, "www"))
	cfg := filepath.Join(dir, "ports.toml")
	if err := os.WriteFile(cfg, []byte(portsAPIConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs("../scripts/peer-httpd.py")
	if err != nil {
		t.Fatal(err)
	}
	ready, done := filepath.Join(dir, "ready"), filepath.Join(dir, "done")
	// The container: a server on port 8080 until the test is done.
	inside := fmt.Sprintf(`%s %s 8080 %s %s & while [ ! -e %s ]; do sleep 0.1; done; kill $!`, python(), script, www, ready, done)
	argv := withOpenDevTun(devDir, asNobody([]string{bin, "run", "-c", cfg, "--", "sh", "-c", inside}))
	var log bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		os.WriteFile(done, nil, 0o644)
		select {
		case <-exited:
		case <-time.After(stopTimeout):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("gateway output:\n%s", log.String())
		}
	})
	sock := filepath.Join(dir, "ports.sock")
	waitFor(t, startTimeout, "the ports API socket and the server inside", func() (bool, string) {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("command mode exited: %v\n%s", err, log.String())
		default:
		}
		_, e1 := os.Stat(sock)
		_, e2 := os.Stat(ready)
		return e1 == nil && e2 == nil, fmt.Sprint(e1, e2)
	})

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	call := func(method, path string, body any) (int, []byte) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequest(method, "http://rootlesskit"+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	free, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	port := free.Addr().(*net.TCPAddr).Port
	free.Close()
	code, b := call("POST", "/v1/ports", map[string]any{"proto": "tcp", "parentPort": port, "childPort": 8080})
	var st struct {
		ID   int `json:"id"`
		Spec struct {
			Proto      string `json:"proto"`
			ParentPort int    `json:"parentPort"`
			ChildPort  int    `json:"childPort"`
		} `json:"spec"`
	}
	if code != http.StatusCreated || json.Unmarshal(b, &st) != nil || st.ID == 0 || st.Spec.ParentPort != port || st.Spec.ChildPort != 8080 {
		t.Fatalf("POST /v1/ports: %d %s", code, b)
	}
	// A second forward of the same port is refused with rootlesskit's
	// error shape.
	if code, b := call("POST", "/v1/ports", map[string]any{"proto": "tcp", "parentPort": port, "childPort": 80}); code != http.StatusBadRequest || !strings.Contains(string(b), `"message"`) {
		t.Errorf("duplicate POST: %d %s, want 400 with a message", code, b)
	}
	code, b = call("GET", "/v1/ports", nil)
	var list []json.RawMessage
	if code != http.StatusOK || json.Unmarshal(b, &list) != nil || len(list) != 1 || !strings.Contains(string(b), fmt.Sprintf(`"parentPort":%d`, port)) {
		t.Errorf("GET /v1/ports: %d %s", code, b)
	}

	// A reload keeps the runtime layer.
	if out, err := run(cmdTimeout, bin, "reload", "-c", cfg); err != nil {
		t.Fatalf("reload: %v\n%s", err, out)
	}

	// The real client address reaches the container, IPv4 and IPv6.
	c4, c6 := "", ""
	if as, err := net.InterfaceAddrs(); err == nil {
		for _, a := range as {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.IsGlobalUnicast() {
				if ipn.IP.To4() != nil && c4 == "" {
					c4 = ipn.IP.String()
				} else if ipn.IP.To4() == nil && c6 == "" {
					c6 = ipn.IP.String()
				}
			}
		}
	}
	if c4 == "" || c6 == "" {
		t.Fatal("the host needs a global IPv4 and IPv6 address for the forward's clients")
	}
	for _, c := range []string{c4, c6} {
		url := fmt.Sprintf("http://%s/peer", net.JoinHostPort(c, strconv.Itoa(port)))
		peer, err := run(30*time.Second, "curl", "-sS", "-g", "--max-time", "20", "--interface", c, url)
		if err != nil || strings.TrimSpace(peer) != c {
			t.Errorf("GET %s through the runtime forward: %q, %v; want the client's address %s", url, peer, err, c)
		}
	}
	if out, err := run(cmdTimeout, bin, "status", "-c", cfg); err != nil || !strings.Contains(out, fmt.Sprintf("id=%d tcp :%d -> [namespace]:8080 via wan", st.ID, port)) {
		t.Errorf("status does not list the runtime forward (%v):\n%s", err, out)
	}

	if code, b := call("DELETE", fmt.Sprintf("/v1/ports/%d", st.ID), nil); code != http.StatusOK {
		t.Fatalf("DELETE: %d %s", code, b)
	}
	if code, _ := call("DELETE", fmt.Sprintf("/v1/ports/%d", st.ID), nil); code != http.StatusNotFound {
		t.Errorf("second DELETE: %d, want 404", code)
	}
	if code, b := call("GET", "/v1/ports", nil); code != http.StatusOK || strings.TrimSpace(string(b)) != "[]" {
		t.Errorf("GET after DELETE: %d %s, want []", code, b)
	}
	waitFor(t, 5*time.Second, "the host port to close", func() (bool, string) {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(c4, strconv.Itoa(port)), time.Second)
		if err == nil {
			c.Close()
			return false, "still accepting"
		}
		return true, ""
	})
}
