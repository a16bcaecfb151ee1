package netns

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// The test binary plays three more parts, chosen by its environment: the
// package's helper (MaybeChild), a probe run as the command in a
// namespace, and a rootless "container" the attach tests attach to.
const (
	testRoleEnv = "TGNS_TEST_ROLE"
	innerEnv    = "TGNS_INNER"
)

func TestMain(m *testing.M) {
	MaybeChild()
	switch os.Getenv(testRoleEnv) {
	case "probe":
		os.Exit(probeMain())
	case "container":
		os.Exit(containerMain())
	case "restricted":
		os.Exit(restrictedMain())
	}
	os.Exit(m.Run())
}

// waitFor bounds every wait on the kernel or a child.
const waitFor = 15 * time.Second

// probeResult is what a probe saw from inside its namespace.
type probeResult struct {
	Netns, Userns string // readlink of /proc/self/ns/{net,user}
	UID           int
	LoUp          bool
	Up            bool
	MTU           int
	Addrs         []string // prefixes on the TUN
	Routes        []string // "DST via GW" or "DST" (main table, the TUN's)
	Err           string   `json:",omitempty"`
}

// probe reads the TUN named by TGNS_PROBE_TUN through netlink and sends a
// datagram "probe" to each of TGNS_PROBE_SEND (comma-separated ip:port).
func probe() probeResult {
	var r probeResult
	// The thread's: probeIn runs on a thread in another namespace.
	r.Netns, _ = os.Readlink("/proc/thread-self/ns/net")
	r.Userns, _ = os.Readlink("/proc/thread-self/ns/user")
	r.UID = os.Getuid()
	fail := func(err error) probeResult { r.Err = err.Error(); return r }
	h, err := netlink.NewHandle()
	if err != nil {
		return fail(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fail(err)
	}
	r.LoUp = lo.Attrs().Flags&net.FlagUp != 0
	l, err := h.LinkByName(os.Getenv("TGNS_PROBE_TUN"))
	if err != nil {
		return fail(err)
	}
	r.Up, r.MTU = l.Attrs().Flags&net.FlagUp != 0, l.Attrs().MTU
	addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return fail(err)
	}
	for _, a := range addrs {
		r.Addrs = append(r.Addrs, a.IPNet.String())
	}
	routes, err := h.RouteList(l, netlink.FAMILY_ALL)
	if err != nil {
		return fail(err)
	}
	for _, rt := range routes {
		dst := "default"
		if rt.Dst != nil {
			if ones, _ := rt.Dst.Mask.Size(); ones != 0 {
				dst = rt.Dst.String()
			}
		}
		if rt.Gw != nil {
			dst += " via " + rt.Gw.String()
		}
		r.Routes = append(r.Routes, dst)
	}
	for _, to := range strings.Split(os.Getenv("TGNS_PROBE_SEND"), ",") {
		if to == "" {
			continue
		}
		c, err := net.Dial("udp", to)
		if err != nil {
			return fail(err)
		}
		_, err = c.Write([]byte("probe"))
		c.Close()
		if err != nil {
			return fail(fmt.Errorf("send to %s: %w", to, err))
		}
	}
	return r
}

func probeMain() int {
	json.NewEncoder(os.Stdout).Encode(probe())
	code, _ := strconv.Atoi(os.Getenv("TGNS_PROBE_EXIT"))
	return code
}

// containerMain stands for a rootless container: it runs in namespaces of
// its own, probes when a line comes on stdin and exits at its end.
func containerMain() int {
	in := bufio.NewScanner(os.Stdin)
	fmt.Println("up")
	for in.Scan() {
		json.NewEncoder(os.Stdout).Encode(probe())
	}
	return 0
}

// restrictedMain runs as root of a user namespace of its own: it forbids
// user namespaces below it (user.max_user_namespaces is per namespace and
// checked up the chain), then tries Spawn, which must fail with the
// diagnosis read from the same sysctl. It prints the error.
func restrictedMain() int {
	if err := os.WriteFile("/proc/sys/user/max_user_namespaces", []byte("0\n"), 0); err != nil {
		fmt.Println("write sysctl:", err)
		return 2
	}
	s, err := Spawn(context.Background(), Spec{Args: []string{"true"}})
	if err == nil {
		s.Close()
		fmt.Println("Spawn succeeded")
		return 1
	}
	fmt.Println(err)
	if !errors.Is(err, ErrUsernsRestricted) {
		return 1
	}
	return 0
}

var seq atomic.Int32

// uniqueName is a name (user, namespace) no other test process uses.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s%d-%d", prefix, os.Getpid()%100000, seq.Add(1))
}

// asUnprivileged makes the calling test run as an ordinary user. Run as
// root, it creates a system user, copies the test binary where that user
// can execute it, runs the calling test there as that user (with env
// added), checks that it passed and that the user has no process left, and
// returns true: the caller returns. Run as any other user (the copy), it
// returns false and the test proceeds.
func asUnprivileged(t *testing.T, env ...string) bool {
	t.Helper()
	if os.Geteuid() != 0 {
		return false
	}
	name := strings.ReplaceAll(uniqueName("tgns"), "-", "x")
	if out, err := exec.Command("useradd", "-M", "-r", "-s", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)

	dir, err := os.MkdirTemp("", "tgns")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "netns.test")
	copyFile(t, "/proc/self/exe", bin, 0o755)

	cmd := exec.Command(bin, "-test.run", "^"+regexp.QuoteMeta(t.Name())+"$", "-test.v", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), innerEnv+"=1", "HOME=/", "TMPDIR=/tmp", "USER="+name)
	cmd.Env = append(cmd.Env, env...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	t.Logf("as %s (uid %d):\n%s", name, uid, out)
	if err != nil {
		t.Errorf("the test as uid %d failed: %v", uid, err)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Errorf("the test as uid %d did not report a pass", uid)
	}
	if pids := processesOf(uid); len(pids) > 0 {
		t.Errorf("uid %d still has processes %v after its test", uid, pids)
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
	}
	return true
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// processesOf lists the processes whose real uid is uid.
func processesOf(uid int) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" && f[1] == strconv.Itoa(uid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// childrenOf lists the live processes whose parent is pid.
func childrenOf(pid int) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The parent is the second field after the parenthesised name.
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 {
			if f := strings.Fields(s[i+1:]); len(f) > 1 && f[1] == strconv.Itoa(pid) {
				pids = append(pids, p)
			}
		}
	}
	return pids
}

// holders lists what in /proc still refers to a namespace ("net:[N]"): a
// process in it or a descriptor of it. The namespace is freed when the
// list is empty (nothing else here bind-mounts it).
func holders(ns string) []string {
	var found []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		dir := "/proc/" + e.Name()
		for _, k := range []string{"net", "user", "mnt"} {
			if l, _ := os.Readlink(dir + "/ns/" + k); l == ns {
				found = append(found, dir+"/ns/"+k)
			}
		}
		fds, _ := os.ReadDir(dir + "/fd")
		for _, fd := range fds {
			if l, _ := os.Readlink(dir + "/fd/" + fd.Name()); l == ns {
				found = append(found, dir+"/fd/"+fd.Name())
			}
		}
	}
	return found
}

// eventually polls cond until it holds or waitFor passes.
func eventually(cond func() bool) bool {
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
