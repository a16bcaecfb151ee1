//go:build linux

package e2e

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ftpMode is one way curl sets up the FTP data connection.
type ftpMode struct {
	name   string
	args   []string
	active bool // the server connects back to the client: needs the helper through NAT
}

var ftpModes = []ftpMode{
	{"epsv", []string{"--ftp-pasv"}, false},
	{"pasv", []string{"--ftp-pasv", "--disable-epsv"}, false},
	{"eprt", []string{"-P", "-"}, true},
	{"port", []string{"-P", "-", "--disable-eprt"}, true},
}

// ftpFile is the size of the file downloaded in every mode.
const ftpFile = 4 << 20

// TestFTPThroughNAT downloads a file from vsftpd in the server namespace
// through the masquerading gateway with the stateful policy, in passive
// (EPSV, PASV) and active (EPRT, PORT) modes over IPv4 and IPv6. With the
// FTP helper every mode works: it rewrites PORT/EPRT to the masquerade
// address and its expectation lets the server's data connection in as
// RELATED. Without the helper the active modes fail (vsftpd refuses a
// PORT address that is not the peer's, and the policy would drop the
// connection anyway) while the passive ones still work.
func TestFTPThroughNAT(t *testing.T) {
	needNetAdmin(t)
	needTools(t, "curl", "vsftpd", "ss")
	bin := gatewayBinary(t)
	tp := newTopology(t, newNames("ft"))
	cfg := gwConfig{
		Lan: tunByName(tp.lan), Wan: tunByName(tp.wan),
		Masquerade: true, MasqSrc: []string{"10.10.0.0/24", "fd10::/64"},
		Stateful: true, FTP: true,
	}
	g := startGateway(t, bin, workDir(t, -1), gatewaySpec{cfg: cfg, tuns: []string{tp.lan, tp.wan}})
	g.wire(t, tp, false)

	dir := workDir(t, -1)
	pub := filepath.Join(dir, "pub")
	if err := os.Mkdir(pub, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := writeRandomFile(t, filepath.Join(pub, "file.bin"), ftpFile)
	startVsftpd(t, tp.server, dir, "198.18.0.2")
	startVsftpd(t, tp.server, dir, "2001:db8:1::2")

	urls := []struct{ family, url string }{
		{"ipv4", "ftp://198.18.0.2/file.bin"},
		{"ipv6", "ftp://[2001:db8:1::2]/file.bin"},
	}
	for _, u := range urls {
		for _, m := range ftpModes {
			t.Run("helper/"+u.family+"/"+m.name, func(t *testing.T) {
				if err := ftpGet(tp.client, u.url, m, sum, 60*time.Second); err != nil {
					t.Error(err)
				}
			})
		}
	}
	if t.Failed() {
		out, err := g.ctl("ct", "expect")
		t.Logf("tungate ct expect (%v):\n%s", err, out)
	}

	// The helper on connections whose handshake a synproxy rule made:
	// the helper's rewrites of PORT/EPRT and the proxy's translation of
	// the server's sequence numbers add up. Its devices go away with the
	// gateway, so the new one's are wired up again; the servers keep
	// listening.
	g.stop()
	cfg.SynProxy = true
	g = startGateway(t, bin, workDir(t, -1), gatewaySpec{cfg: cfg, tuns: []string{tp.lan, tp.wan}})
	g.wire(t, tp, false)
	for _, u := range urls {
		for _, m := range ftpModes {
			t.Run("synproxy/"+u.family+"/"+m.name, func(t *testing.T) {
				if err := ftpGet(tp.client, u.url, m, sum, 60*time.Second); err != nil {
					t.Error(err)
				}
			})
		}
	}
	if st := g.statsJSON(t, "stats"); st["synproxy_conn_open"] < uint64(len(urls)*len(ftpModes)) {
		t.Errorf("%d connections proxied, want at least one per download", st["synproxy_conn_open"])
	}

	// The same gateway without the helper.
	g.stop()
	cfg.FTP, cfg.SynProxy = false, false
	g = startGateway(t, bin, workDir(t, -1), gatewaySpec{cfg: cfg, tuns: []string{tp.lan, tp.wan}})
	g.wire(t, tp, false)
	for _, u := range urls {
		for _, m := range ftpModes {
			t.Run("nohelper/"+u.family+"/"+m.name, func(t *testing.T) {
				// Refused active modes fail at once over IPv4, but curl
				// sits out its whole --max-time after a refused EPRT
				// over IPv6: keep that short.
				maxTime := 30 * time.Second
				if m.active {
					maxTime = 5 * time.Second
				}
				err := ftpGet(tp.client, u.url, m, sum, maxTime)
				switch {
				case m.active && err == nil:
					t.Errorf("active mode worked through NAT without the FTP helper")
				case !m.active && err != nil:
					t.Errorf("passive mode needs no helper: %v", err)
				}
			})
		}
	}
}

// ftpGet downloads url anonymously with curl from namespace ns in mode m
// and checks the file's hash.
func ftpGet(ns, url string, m ftpMode, want [sha256.Size]byte, maxTime time.Duration) error {
	got := filepath.Join(os.TempDir(), fmt.Sprintf("tungate-e2e-ftp-%d-%s", os.Getpid(), m.name))
	defer os.Remove(got)
	args := append(append([]string{"-o", got}, m.args...), url)
	if out, err := curl(ns, maxTime, args...); err != nil {
		return fmt.Errorf("curl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if ok, why := sameFile(got, want); !ok {
		return fmt.Errorf("curl %s %s: %s", strings.Join(m.args, " "), url, why)
	}
	return nil
}

// startVsftpd runs an anonymous, read-only vsftpd on addr:21 in namespace
// ns serving dir/pub, and returns once it listens. Active mode connects
// from an ephemeral port (connect_from_port_20=NO), as a server without
// CAP_NET_BIND_SERVICE would.
func startVsftpd(t *testing.T, ns, dir, addr string) {
	t.Helper()
	v6 := strings.Contains(addr, ":")
	tag := "v4"
	listen := "listen=YES\nlisten_ipv6=NO\nlisten_address=" + addr
	if v6 {
		tag = "v6"
		listen = "listen=NO\nlisten_ipv6=YES\nlisten_address6=" + addr
	}
	empty := filepath.Join(dir, "empty-"+tag)
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "vsftpd-"+tag+".log")
	conf := filepath.Join(dir, "vsftpd-"+tag+".conf")
	body := listen + `
listen_port=21
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root=` + filepath.Join(dir, "pub") + `
local_enable=NO
write_enable=NO
pasv_enable=YES
pasv_min_port=30000
pasv_max_port=30999
port_enable=YES
connect_from_port_20=NO
secure_chroot_dir=` + empty + `
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
xferlog_enable=YES
log_ftp_protocol=YES
vsftpd_log_file=` + logPath + "\n"
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	argv := inNS(ns, "vsftpd", conf)
	cmd := exec.Command(argv[0], argv[1:]...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("vsftpd %s output:\n%s\nlog:\n%s", addr, out.String(), b)
		}
	})
	waitFor(t, 10*time.Second, "vsftpd on "+addr+" in "+ns, func() (bool, string) {
		select {
		case <-done:
			t.Fatalf("vsftpd on %s exited: %s", addr, out.String())
		default:
		}
		ss, err := run(cmdTimeout, inNS(ns, "ss", "-Hltn", "sport = :21")...)
		return err == nil && strings.Contains(ss, addr), "ss: " + ss
	})
}
