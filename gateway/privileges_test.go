package gateway

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/zap"

	"tungate/link/tun"
)

// privsChildEnv makes the gateway test binary the child of
// TestDropPrivileges: it starts a gateway on kernel TUNs from the config
// file the variable names, drops privileges and reports.
const privsChildEnv = "TUNGATE_GATEWAY_PRIVS_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(privsChildEnv); path != "" {
		os.Exit(privsChild(path))
	}
	os.Exit(m.Run())
}

func privsChild(path string) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 1 }
	cfg, err := LoadConfig(path)
	if err != nil {
		return fail(err)
	}
	g, err := New(cfg, Options{Logger: zap.NewNop()})
	if err != nil {
		return fail(err)
	}
	defer g.Close()
	if err := g.DropPrivileges(); err != nil {
		return fail(err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fail(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "CapEff:") || strings.HasPrefix(line, "CapBnd:") {
			fmt.Println(strings.Join(strings.Fields(line), " "))
		}
	}
	l, err := tun.Open(tun.Config{Name: "tgprivx", MTU: 1500}, zap.NewNop())
	switch {
	case err == nil:
		l.Close()
		fmt.Println("tun: created")
	case errors.Is(err, syscall.EPERM):
		fmt.Println("tun: EPERM")
	default:
		fmt.Println("tun:", err)
	}
	return 0
}

// The gateway opens its kernel TUNs, then DropPrivileges leaves it nothing
// (or CAP_NET_ADMIN alone with [admin] keep_net_admin), so no further TUN
// can be created. The child runs as root in a network namespace of its
// own.
func TestDropPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test creates TUN devices: run it as root")
	}
	for _, c := range []struct {
		keep string
		want []string
	}{
		{"false", []string{"CapEff: 0000000000000000", "CapBnd: 0000000000000000", "tun: EPERM"}},
		{"true", []string{"CapEff: 0000000000001000", "CapBnd: 0000000000001000", "tun: created"}},
	} {
		t.Run("keep_net_admin="+c.keep, func(t *testing.T) {
			conf := strings.NewReplacer(`"lan0"`, `"tgprivlan"`, `"wan0"`, `"tgprivwan"`).Replace(linksConf) +
				"[admin]\nkeep_net_admin = " + c.keep + "\n"
			path := filepath.Join(t.TempDir(), "gw.toml")
			if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), privsChildEnv+"="+path)
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("child: %v: %s", err, stderr.String())
			}
			got := strings.Split(strings.TrimSpace(string(out)), "\n")
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Fatalf("child reported\n%s\nwant\n%s", out, strings.Join(c.want, "\n"))
			}
		})
	}
}
