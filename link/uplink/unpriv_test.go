package uplink

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

// unprivTests run again as an ordinary user: the uplink needs no
// privilege, and these prove it for UDP, ICMP and TCP.
var unprivTests = []string{
	"TestWhoAmI", "TestUDPEcho", "TestUDPMapping", "TestUDPPortUnreachable",
	"TestICMPEcho", "TestTCPGet", "TestTCPHalfClose", "TestTCPRefused",
}

// TestWhoAmI guards the unprivileged run: it fails there if the tests run
// as root after all.
func TestWhoAmI(t *testing.T) {
	if os.Getenv("UPLINK_UNPRIV") != "" && (os.Geteuid() == 0 || os.Getegid() == 0) {
		t.Fatalf("unprivileged run has uid %d gid %d", os.Geteuid(), os.Getegid())
	}
}

// TestUnprivileged runs unprivTests as a user made for the purpose, in a
// network namespace of their own whose ping_group_range admits the user
// (the root test prepares it, then drops privileges with setpriv).
func TestUnprivileged(t *testing.T) {
	if os.Getenv("UPLINK_UNPRIV") != "" {
		return
	}
	if os.Geteuid() != 0 {
		t.Fatal("this test creates a user; run the tests as root (they are run as that user inside)")
	}
	name := fmt.Sprintf("tgtest%d", os.Getpid())
	run(t, "useradd", "-M", "-r", "-s", "/usr/sbin/nologin", name)
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	// The test binary, where the user can execute it.
	dir, err := os.MkdirTemp("", "uplink-unpriv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "uplink.test")
	if err := copyFile(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	script := `set -e
ip link set lo up
echo "0 2147483647" > /proc/sys/net/ipv4/ping_group_range
cd "$DIR"
exec setpriv --reuid="$U" --regid="$G" --clear-groups -- "$BIN" -test.v -test.count=1 -test.run="$RUN"`
	cmd := exec.Command("unshare", "-n", "--", "sh", "-c", script)
	cmd.Env = append(os.Environ(), "UPLINK_UNPRIV=1", "UPLINK_PREPARED=1", "UPLINK_NETNS=TestICMPEcho",
		"DIR="+dir, "U="+u.Uid, "G="+u.Gid, "BIN="+bin, "HOME="+dir,
		"RUN=^("+strings.Join(unprivTests, "|")+")$")
	out, err := cmd.CombinedOutput()
	t.Logf("as %s (uid %s):\n%s", name, u.Uid, out)
	if err != nil {
		t.Fatalf("unprivileged run failed: %v", err)
	}
	for _, name := range unprivTests {
		if !strings.Contains(string(out), "--- PASS: "+name+" ") {
			t.Errorf("%s did not pass unprivileged", name)
		}
	}
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
