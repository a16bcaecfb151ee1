package privs

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/zap"

	"tungate/link/tun"
)

// childEnv makes the test binary the child of TestDrop: it opens a TUN,
// drops (keeping CAP_NET_ADMIN when the value is "keep") and reports.
const childEnv = "TUNGATE_PRIVS_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(child(mode == "keep"))
	}
	os.Exit(m.Run())
}

// report is what the child saw after the drop.
type report struct {
	// Threads maps each thread's id to its Cap* and NoNewPrivs lines.
	Threads map[string]map[string]string
	// SecondTUN is the error creating another TUN ("" if it worked).
	SecondTUN string
	EPERM     bool
	// FirstTUN is the error using the TUN opened before the drop.
	FirstTUN string
	// BoundingDropped is Drop's Result.BoundingDropped.
	BoundingDropped bool
}

func child(keep bool) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 1 }
	first, err := tun.Open(tun.Config{Name: "tgpriv0", MTU: 1500}, zap.NewNop())
	if err != nil {
		return fail(err)
	}
	defer first.Close()
	// More threads than the one dropping: each must lose its capabilities.
	started := make(chan struct{})
	for range 4 {
		go func() {
			runtime.LockOSThread()
			started <- struct{}{}
			select {}
		}()
	}
	for range 4 {
		<-started
	}
	res, err := Drop(keep)
	if err != nil {
		return fail(err)
	}
	r := report{BoundingDropped: res.BoundingDropped}
	r.Threads = map[string]map[string]string{}
	tasks, _ := filepath.Glob("/proc/self/task/*/status")
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			return fail(err)
		}
		m := map[string]string{}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (strings.HasPrefix(k, "Cap") || k == "NoNewPrivs") {
				m[k] = strings.TrimSpace(v)
			}
		}
		r.Threads[filepath.Base(filepath.Dir(f))] = m
	}
	second, err := tun.Open(tun.Config{Name: "tgpriv1", MTU: 1500}, zap.NewNop())
	if err == nil {
		second.Close()
	} else {
		r.SecondTUN, r.EPERM = err.Error(), errors.Is(err, syscall.EPERM)
	}
	if _, err := first.Write([][]byte{make([]byte, 16+20)}, 16); err != nil && !errors.Is(err, syscall.EINVAL) {
		r.FirstTUN = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

// runChild runs the child as root in a network namespace of its own, so
// its TUNs never show up on the host.
func runChild(t *testing.T, mode string) report {
	t.Helper()
	return runChildAs(t, mode, os.Args[0], &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET})
}

func runChildAs(t *testing.T, mode, bin string, attr *syscall.SysProcAttr) report {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test creates TUN devices and drops root's capabilities: run it as root")
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	cmd.SysProcAttr = attr
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v: %s", err, stderr.String())
	}
	var r report
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("child output %q: %v", out, err)
	}
	if len(r.Threads) < 5 {
		t.Fatalf("child saw %d threads, want at least 5", len(r.Threads))
	}
	return r
}

func capMask(t *testing.T, hex string) uint64 {
	v, err := strconv.ParseUint(hex, 16, 64)
	if err != nil {
		t.Fatalf("capability mask %q: %v", hex, err)
	}
	return v
}

func TestDropAll(t *testing.T) {
	r := runChild(t, "all")
	if !r.BoundingDropped {
		t.Error("root: Drop reports the bounding set kept")
	}
	for tid, m := range r.Threads {
		for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
			if capMask(t, m[k]) != 0 {
				t.Errorf("thread %s: %s = %s, want 0", tid, k, m[k])
			}
		}
		if m["NoNewPrivs"] != "1" {
			t.Errorf("thread %s: NoNewPrivs = %q", tid, m["NoNewPrivs"])
		}
	}
	if !r.EPERM {
		t.Errorf("creating a TUN after the drop: %q, want EPERM", r.SecondTUN)
	}
	if r.FirstTUN != "" {
		t.Errorf("the TUN opened before the drop: %s", r.FirstTUN)
	}
}

func TestDropKeepNetAdmin(t *testing.T) {
	r := runChild(t, "keep")
	const netAdmin = 1 << 12
	for tid, m := range r.Threads {
		for k, want := range map[string]uint64{"CapInh": 0, "CapPrm": netAdmin, "CapEff": netAdmin, "CapBnd": netAdmin, "CapAmb": 0} {
			if got := capMask(t, m[k]); got != want {
				t.Errorf("thread %s: %s = %#x, want %#x", tid, k, got, want)
			}
		}
		if m["NoNewPrivs"] != "1" {
			t.Errorf("thread %s: NoNewPrivs = %q", tid, m["NoNewPrivs"])
		}
	}
	if r.SecondTUN != "" {
		t.Errorf("creating a TUN with CAP_NET_ADMIN kept: %s", r.SecondTUN)
	}
}

// TestDropUnprivileged is the systemd unit's case: a service user holding
// CAP_NET_ADMIN only as an ambient capability, without CAP_SETPCAP, so
// its bounding set is the service manager's business. Everything it holds
// still goes.
func TestDropUnprivileged(t *testing.T) {
	// The test binary must be executable by the user.
	dir, err := os.MkdirTemp("", "privs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "privs.test")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	const capNetAdmin = 12
	r := runChildAs(t, "all", bin, &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWNET,
		Credential:  &syscall.Credential{Uid: 65534, Gid: 65534},
		AmbientCaps: []uintptr{capNetAdmin},
	})
	if r.BoundingDropped {
		t.Error("the bounding set was dropped without CAP_SETPCAP")
	}
	for tid, m := range r.Threads {
		for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapAmb"} {
			if capMask(t, m[k]) != 0 {
				t.Errorf("thread %s: %s = %s, want 0", tid, k, m[k])
			}
		}
		if m["NoNewPrivs"] != "1" {
			t.Errorf("thread %s: NoNewPrivs = %q", tid, m["NoNewPrivs"])
		}
	}
	if !r.EPERM {
		t.Errorf("creating a TUN after the drop: %q, want EPERM", r.SecondTUN)
	}
}
