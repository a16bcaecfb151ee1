package wireguard

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"golang.zx2c4.com/wireguard/conn/bindtest"
)

// uapiLink is a Link named uniquely for this test process, with one peer,
// on an in-memory bind (the UAPI does not care where packets go).
func uapiLink(t *testing.T, suffix string) (*Link, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the UAPI socket lives in " + UAPIDir)
	}
	if _, err := exec.LookPath("wg"); err != nil {
		t.Fatalf("wg is not installed (scripts/test-deps.sh installs wireguard-tools): %v", err)
	}
	name := fmt.Sprintf("tgu%x%s", os.Getpid()&0xffff, suffix)
	priv, _ := mustKey(t)
	_, peerPub := mustKey(t)
	binds := bindtest.NewChannelBinds()
	l, err := New(name, Config{
		PrivateKey: priv, AllowInlineKey: true,
		Peers: []PeerConfig{{Name: "alice", PublicKey: peerPub, AllowedIPs: []string{"10.9.0.2/32", "fd09::2/128"}}},
	}, Options{Bind: binds[0]})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	os.Remove(filepath.Join(UAPIDir, name+".sock")) // a crashed run's
	t.Cleanup(func() { os.Remove(filepath.Join(UAPIDir, name+".sock")) })
	return l, name
}

// TestUAPIShowWithWg: the standard wg tool reads the link through its
// socket (mode 0600); wg set is refused, with the hint on wg's standard
// error, and changes nothing; Close removes the socket.
func TestUAPIShowWithWg(t *testing.T) {
	l, name := uapiLink(t, "s")
	var refused atomic.Int32
	if err := l.ServeUAPI("edit tungate.toml and run `tungate reload`", func(int32) { refused.Add(1) }); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(UAPIDir, name+".sock")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want a socket with 0600", path, fi.Mode())
	}
	out, err := exec.Command("wg", "show", name).CombinedOutput()
	if err != nil {
		t.Fatalf("wg show %s: %v\n%s", name, err, out)
	}
	pub := l.pub.String()
	for _, want := range []string{"interface: " + name, "public key: " + pub, "listening port:", "allowed ips: 10.9.0.2/32, fd09::2/128"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("wg show lacks %q:\n%s", want, out)
		}
	}
	// Without a name, wg lists every userspace interface it finds there.
	if out, err := exec.Command("wg", "show", "interfaces").CombinedOutput(); err != nil || !strings.Contains(string(out), name) {
		t.Errorf("wg show interfaces: %v %q, want %s among them", err, out, name)
	}

	cmd := exec.Command("wg", "set", name, "listen-port", "4242")
	out, err = cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("wg set succeeded:\n%s", out)
	}
	for _, want := range []string{"Read-only file system", "tungate reload", name + " is read-only"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("wg set's output lacks %q:\n%s", want, out)
		}
	}
	if refused.Load() != 1 {
		t.Errorf("onRefuse called %d times, want 1", refused.Load())
	}
	if out, _ := exec.Command("wg", "show", name, "listen-port").CombinedOutput(); strings.TrimSpace(string(out)) == "4242" {
		t.Error("wg set changed the listen port")
	}

	l.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket still there after Close: %v", err)
	}
	if out, err := exec.Command("wg", "show", name).CombinedOutput(); err == nil {
		t.Errorf("wg show after Close succeeded:\n%s", out)
	}
}

// TestUAPIStaleAndLive: a socket file nobody answers on (its process
// died) is replaced; one a live process answers on is refused and left.
func TestUAPIStaleAndLive(t *testing.T) {
	l, name := uapiLink(t, "x")
	path := filepath.Join(UAPIDir, name+".sock")
	if err := os.MkdirAll(UAPIDir, 0o755); err != nil {
		t.Fatal(err)
	}

	live, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.ServeUAPI("", nil); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("ServeUAPI beside a live socket: %v, want an in-use error", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the live socket was removed: %v", err)
	}
	live.SetUnlinkOnClose(false)
	live.Close() // now stale: the file stays, nobody listens

	if err := l.ServeUAPI("", nil); err != nil {
		t.Fatalf("ServeUAPI over a stale socket: %v", err)
	}
	if out, err := exec.Command("wg", "show", name, "public-key").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != l.pub.String() {
		t.Fatalf("wg show over the replaced socket: %v %q", err, out)
	}
}
