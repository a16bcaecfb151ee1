//go:build linux

package e2e

import (
	"debug/elf"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// containerUser is an unprivileged user made for one test, with the
// subordinate ids a rootless runtime maps into its user namespace and a
// home directory holding all of the runtime's state, so that nothing of it
// outlives the test.
type containerUser struct {
	name     string
	uid, gid int
	home     string
}

// newContainerUser creates the user. When the test ends every process of
// the user is killed (the runtimes leave some behind: podman's pause
// process keeps its user namespace), then its home and the user with its
// subordinate ids are removed.
func newContainerUser(t *testing.T, tag string) *containerUser {
	t.Helper()
	needTools(t, "setpriv", "useradd", "usermod", "userdel", "newuidmap", "newgidmap")
	name := string(newNames(tag)) + "u"
	exec.Command("userdel", "-f", name).Run() // a leftover of a crashed run
	mustRun(t, "useradd", "-M", "-r", "-s", "/usr/sbin/nologin", name)
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", "-f", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v %s", name, err, out)
		}
	})
	u := &containerUser{name: name}
	var err error
	if u.uid, err = strconv.Atoi(strings.TrimSpace(mustRun(t, "id", "-u", name))); err != nil {
		t.Fatal(err)
	}
	if u.gid, err = strconv.Atoi(strings.TrimSpace(mustRun(t, "id", "-g", name))); err != nil {
		t.Fatal(err)
	}
	// 65536 ids, as useradd gives a login user; userdel takes them back.
	// Ranges of different users may overlap (newuidmap checks only that
	// the range is the caller's); per pid they rarely do.
	first := 1<<20 + (os.Getpid()&0x1fff)<<16
	ids := fmt.Sprintf("%d-%d", first, first+65535)
	mustRun(t, "usermod", "--add-subuids", ids, "--add-subgids", ids, name)
	u.home = workDir(t, u.uid)
	t.Cleanup(func() { killUserProcesses(t, u.uid) })
	if err := os.Chown(u.home, u.uid, u.gid); err != nil {
		t.Fatal(err)
	}
	// XDG_RUNTIME_DIR must exist and be the user's alone, or podman falls
	// back to directories under /tmp that the test would not remove.
	for _, d := range []string{"run", "tmp"} {
		u.mkdir(t, d)
		os.Chmod(filepath.Join(u.home, d), 0o700)
	}
	return u
}

// mkdir makes directory rel under the user's home, owned by the user.
func (u *containerUser) mkdir(t *testing.T, rel string) string {
	t.Helper()
	dir := filepath.Join(u.home, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, u.uid, u.gid); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeFile writes a file under the user's home, owned by the user.
func (u *containerUser) writeFile(t *testing.T, rel, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(u.home, rel)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, u.uid, u.gid); err != nil {
		t.Fatal(err)
	}
	return path
}

// as runs argv as the user, without supplementary groups or capabilities,
// with an environment pointing every per-user directory into its home.
func (u *containerUser) as(argv ...string) []string {
	return append([]string{
		"setpriv", "--reuid=" + strconv.Itoa(u.uid), "--regid=" + strconv.Itoa(u.gid), "--clear-groups", "--",
		"env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + u.home, "USER=" + u.name, "LOGNAME=" + u.name,
		"XDG_RUNTIME_DIR=" + filepath.Join(u.home, "run"),
		"XDG_DATA_HOME=" + filepath.Join(u.home, "data"),
		"XDG_CONFIG_HOME=" + filepath.Join(u.home, "config"),
	}, argv...)
}

// podman is a rootless podman command of the user. Its storage and run
// state are named explicitly, under the user's home. runc and cgroupfs:
// this machine mounts cgroups hybrid (v1 controllers plus a v2 tree with
// a controller), which crun, podman's default runtime, refuses ("cgroups
// in hybrid mode not supported"), and there is no systemd user session.
func (u *containerUser) podman(args ...string) []string {
	return u.as(append([]string{"podman",
		"--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
		"--root", filepath.Join(u.home, "storage"),
		"--runroot", filepath.Join(u.home, "runroot"),
		"--tmpdir", filepath.Join(u.home, "tmp"),
	}, args...)...)
}

// killUserProcesses kills every process running as uid and waits until
// only zombies are left (whoever reaps them, the uid's programs are done).
func killUserProcesses(t *testing.T, uid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := userProcesses(uid)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("processes of uid %d survive SIGKILL: %v", uid, pids)
			return
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// userProcesses lists the live (not zombie) processes whose real uid is uid.
func userProcesses(uid int) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		var state string
		var ruid = -1
		for _, line := range strings.Split(string(st), "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) >= 2 && f[0] == "State:":
				state = f[1]
			case len(f) >= 2 && f[0] == "Uid:":
				ruid, _ = strconv.Atoi(f[1])
			}
		}
		if ruid == uid && state != "Z" {
			pids = append(pids, pid)
		}
	}
	return pids
}

// containerConfig is configs/rootless.toml cut to what the container tests
// use: the container's TUN made in a namespace handed over with --netns,
// an uplink reaching the host's loopback as 10.0.2.2 and fd01::2, and
// port forwards to the container's port 8080 over IPv4 and IPv6. The
// container's IPv6 subnet is not fd00::/64, which holds this host's own
// address. %[1]d is the forwarded host port.
const containerConfig = `
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
allow_host_loopback = true
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
dport = %[1]d
to = "10.0.2.100:8080"
[[nat.dnat]]
in = "wan"
proto = "tcp"
dport = %[1]d
to = "[fd01::100]:8080"

[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { ct_state = ["invalid"], action = "drop" },
  { in = "lan", ct_state = ["new"], action = "accept" },
  { in = "wan", ct_status = ["dnat"], action = "accept" },
]
`

// peerCGI is a CGI program for busybox httpd: it answers with the address
// of the client the server sees.
const peerCGI = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n%s\\n' \"$REMOTE_ADDR\"\n"

// freePort returns a TCP port free on every host address just now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// hostServers serves a body of its own on the host's 127.0.0.1 and ::1 and
// returns the bodies and ports: what a container reaches through the
// uplink as 10.0.2.2 and fd01::2.
func hostServers(t *testing.T) (bodies [2]string, ports [2]int) {
	t.Helper()
	for i, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf("tungate-%s-%d-%d", []string{"v4", "v6"}[i], os.Getpid(), time.Now().UnixNano())
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		bodies[i], ports[i] = body, ln.Addr().(*net.TCPAddr).Port
	}
	return bodies, ports
}

// hostAddrs returns a global IPv4 and IPv6 address of the host, the port
// forwards' clients.
func hostAddrs(t *testing.T) (c4, c6 string) {
	t.Helper()
	as, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.IsGlobalUnicast() {
			if ipn.IP.To4() != nil && c4 == "" {
				c4 = ipn.IP.String()
			} else if ipn.IP.To4() == nil && c6 == "" {
				c6 = ipn.IP.String()
			}
		}
	}
	if c4 == "" || c6 == "" {
		t.Fatal("the host needs a global IPv4 and IPv6 address for the port forwards' clients")
	}
	return c4, c6
}

// expectPeer fetches peerCGI through host port port from client address c
// and checks that the server in the container saw c itself. busybox httpd
// listens on [::], so it writes an IPv4 client as [::ffff:a.b.c.d].
func expectPeer(t *testing.T, c string, port int) {
	t.Helper()
	url := fmt.Sprintf("http://%s/cgi-bin/peer", net.JoinHostPort(c, strconv.Itoa(port)))
	out, err := run(30*time.Second, "curl", "-sS", "-g", "--max-time", "20", "--interface", c, url)
	seen, perr := netip.ParseAddr(strings.Trim(strings.TrimSpace(out), "[]"))
	if err != nil || perr != nil || seen.Unmap().String() != c {
		t.Errorf("GET %s through the port forward: %q, %v; want the client's address %s", url, out, err, c)
	}
}

// startAttached starts `tungate run -c cfg --netns … --userns …` as u,
// with a /dev/net/tun the user may open (devTunShim), and waits for "1"
// on its --ready-fd. The gateway is stopped when the test ends unless it
// has exited by itself.
func startAttached(t *testing.T, u *containerUser, bin, cfg, netnsPath, usernsPath string) *background {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	devDir := u.mkdir(t, "dev-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	argv := withOpenDevTun(devDir, u.as(bin, "run", "-c", cfg,
		"--netns", netnsPath, "--userns", usernsPath, "--ready-fd", "3"))
	b := &background{done: make(chan struct{})}
	b.cmd = exec.Command(argv[0], argv[1:]...)
	b.cmd.Stdout, b.cmd.Stderr = b, b
	b.cmd.ExtraFiles = []*os.File{w} // descriptor 3
	if err := b.cmd.Start(); err != nil {
		w.Close()
		t.Fatalf("%v: %v", argv, err)
	}
	w.Close()
	go func() { b.err = b.cmd.Wait(); close(b.done) }()
	t.Cleanup(func() {
		b.stop()
		if t.Failed() {
			t.Logf("tungate output:\n%s", b.output())
		}
	})
	r.SetReadDeadline(time.Now().Add(startTimeout))
	got := make([]byte, 1)
	if n, err := r.Read(got); n != 1 || got[0] != '1' {
		t.Fatalf("tungate --ready-fd: read %q, %v\n%s", got[:n], err, b.output())
	}
	return b
}

// expectExit waits for the gateway to exit by itself, successfully: it
// stops when the namespace it serves goes away.
func expectExit(t *testing.T, b *background, why string) {
	t.Helper()
	b.wait(t, 15*time.Second, "tungate after "+why)
	if b.err != nil {
		t.Errorf("tungate after %s: %v\n%s", why, b.err, b.output())
	}
	if !strings.Contains(b.output(), "the namespace is gone") {
		t.Errorf("tungate did not log the namespace going away:\n%s", b.output())
	}
}

// busyboxRootfs makes a container root filesystem of the static busybox,
// with a web root /www whose cgi-bin/peer is peerCGI: podman runs it with
// --rootfs, no image and no registry needed.
func busyboxRootfs(t *testing.T, u *containerUser) string {
	t.Helper()
	// The rootfs has no dynamic loader: the binary must be static.
	f, err := elf.Open("/bin/busybox")
	if err != nil {
		t.Fatalf("%v (scripts/test-deps.sh installs busybox-static)", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("/bin/busybox is linked dynamically: install busybox-static (scripts/test-deps.sh)")
		}
	}
	f.Close()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	root := u.mkdir(t, "rootfs")
	for _, d := range []string{"bin", "proc", "sys", "dev", "etc", "tmp", "www", "www/cgi-bin"} {
		u.mkdir(t, filepath.Join("rootfs", d))
	}
	u.writeFile(t, "rootfs/bin/busybox", string(bb), 0o755)
	for _, app := range []string{"sh", "wget", "httpd", "ip", "sleep", "cat"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", app)); err != nil {
			t.Fatal(err)
		}
	}
	u.writeFile(t, "rootfs/www/cgi-bin/peer", peerCGI, 0o755)
	return root
}

// TestPodman runs rootless podman as an unprivileged user made for the
// test, with tungate as the container's network, the two ways
// docs/rootless.md describes: a container started with --network none
// whose namespaces tungate attaches to, and containers joining a network
// namespace that tungate serves with --network ns:PATH. Inside, busybox
// wget reaches HTTP servers on the host's loopback through the uplink
// (IPv4 and IPv6); from the host, the configured port forwards reach
// busybox httpd in the container, which sees each client's own address.
// tungate exits by itself when the namespace goes away. The container is
// a busybox directory run with --rootfs: there is no registry here.
func TestPodman(t *testing.T) {
	needNetAdmin(t)
	needTools(t, "podman", "runc", "curl", "unshare")
	bin := gatewayBinary(t)
	u := newContainerUser(t, "pm")
	rootfs := busyboxRootfs(t, u)
	bodies, hostPorts := hostServers(t)
	c4, c6 := hostAddrs(t)
	urls := []string{
		fmt.Sprintf("http://10.0.2.2:%d/", hostPorts[0]),
		fmt.Sprintf("http://[fd01::2]:%d/", hostPorts[1]),
	}
	podman := func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := run(60*time.Second, u.podman(args...)...)
		if err != nil {
			t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	t.Run("network_none", func(t *testing.T) {
		fwd := freePort(t)
		cfg := u.writeFile(t, "none.toml", fmt.Sprintf(containerConfig, fwd), 0o644)
		name := string(newNames("pm")) + "-web"
		run(cmdTimeout, u.podman("rm", "-f", "-t", "0", name)...)
		t.Cleanup(func() { run(cmdTimeout, u.podman("rm", "-f", "-t", "0", name)...) })
		podman(t, "run", "-d", "--name", name, "--network", "none", "--rootfs", rootfs,
			"httpd", "-f", "-p", "8080", "-h", "/www")
		pid := strings.TrimSpace(podman(t, "inspect", "-f", "{{.State.Pid}}", name))
		if _, err := strconv.Atoi(pid); err != nil {
			t.Fatalf("podman inspect gives pid %q", pid)
		}
		g := startAttached(t, u, bin, cfg, "/proc/"+pid+"/ns/net", "/proc/"+pid+"/ns/user")

		for i, url := range urls {
			if got := podman(t, "exec", name, "wget", "-qO-", url); got != bodies[i] {
				t.Errorf("wget %s in the container: %q, want %q", url, got, bodies[i])
			}
		}
		addr := podman(t, "exec", name, "ip", "-o", "addr", "show", "dev", "tun0")
		for _, want := range []string{"10.0.2.100/24", "fd01::100/64"} {
			if !strings.Contains(addr, want) {
				t.Errorf("the container's tun0 lacks %s:\n%s", want, addr)
			}
		}
		expectPeer(t, c4, fwd)
		expectPeer(t, c6, fwd)
		ct, err := run(cmdTimeout, bin, "ct", "list", "-c", cfg)
		if err != nil {
			t.Fatalf("ct list: %v\n%s", err, ct)
		}
		// The uplink's flow, and the forward's with the client kept as the
		// reply's destination.
		for _, want := range []string{
			"dst=10.0.2.2 sport=", fmt.Sprintf("dport=%d", hostPorts[0]),
			fmt.Sprintf("src=10.0.2.100 dst=%s sport=8080", c4),
		} {
			if !strings.Contains(ct, want) {
				t.Errorf("ct list has no %q:\n%s", want, ct)
			}
		}

		podman(t, "rm", "-f", "-t", "0", name)
		expectExit(t, g, "podman rm")
	})

	t.Run("network_ns_path", func(t *testing.T) {
		fwd := freePort(t)
		cfg := u.writeFile(t, "ns.toml", fmt.Sprintf(containerConfig, fwd), 0o644)
		// The namespace belongs to podman's user namespace: made inside
		// podman unshare, held by a process whose /proc entry names it.
		pidFile := filepath.Join(u.home, "holder.pid")
		holder := startBackground(t, u.podman("unshare", "unshare", "--net", "sh", "-c",
			`echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec sleep 600`, pidFile)...)
		var pid int
		waitFor(t, startTimeout, "the namespace holder", func() (bool, string) {
			b, err := os.ReadFile(pidFile)
			if err != nil {
				return false, err.Error() + "\n" + holder.output()
			}
			pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
			return err == nil, fmt.Sprint(err)
		})
		nsPath := fmt.Sprintf("/proc/%d/ns/net", pid)
		g := startAttached(t, u, bin, cfg, nsPath, fmt.Sprintf("/proc/%d/ns/user", pid))

		// Two containers on the one network: a server, and a client.
		name := string(newNames("pm")) + "-ns"
		run(cmdTimeout, u.podman("rm", "-f", "-t", "0", name)...)
		t.Cleanup(func() { run(cmdTimeout, u.podman("rm", "-f", "-t", "0", name)...) })
		podman(t, "run", "-d", "--name", name, "--network", "ns:"+nsPath, "--rootfs", rootfs,
			"httpd", "-f", "-p", "8080", "-h", "/www")
		out := podman(t, "run", "--rm", "--network", "ns:"+nsPath, "--rootfs", rootfs,
			"sh", "-c", "ip -o addr show dev tun0 && wget -qO- "+urls[0]+" && echo && wget -qO- "+urls[1])
		for _, want := range []string{"10.0.2.100/24", "fd01::100/64", bodies[0], bodies[1]} {
			if !strings.Contains(out, want) {
				t.Errorf("the client container's output lacks %q:\n%s", want, out)
			}
		}
		expectPeer(t, c4, fwd)
		expectPeer(t, c6, fwd)

		podman(t, "rm", "-f", "-t", "0", name)
		syscall.Kill(pid, syscall.SIGKILL)
		expectExit(t, g, "the namespace holder ended")
	})
}

// TestRootlesskit runs tungate alongside rootlesskit as an unprivileged
// user made for the test: rootlesskit (--net=host) makes the user
// namespace with the user's subordinate ids, the program inside it
// unshares a network namespace of its own, and tungate attaches to that
// namespace from outside, as slirp4netns does for rootlesskit. Port
// forwards are driven through tungate's rootlesskit-shaped ports API with
// rootlesskit's own client, rootlessctl: added, listed (table and JSON),
// used (the servers inside, busybox httpd over TCP and a UDP one, see the
// real client address, IPv4 and IPv6), refused when they clash (rootlessctl shows tungate's
// message) and removed (the host port closes). The program inside also
// reaches a server on the host's loopback through the uplink.
func TestRootlesskit(t *testing.T) {
	needNetAdmin(t)
	needTools(t, "rootlesskit", "rootlessctl", "nsenter", "busybox", "curl", "unshare")
	bin := gatewayBinary(t)
	u := newContainerUser(t, "rk")
	u.mkdir(t, "www")
	u.mkdir(t, "www/cgi-bin")
	u.writeFile(t, "www/cgi-bin/peer", peerCGI, 0o755)
	bodies, hostPorts := hostServers(t)
	c4, c6 := hostAddrs(t)
	// No [[nat.dnat]] is used here: its port is merely taken.
	cfg := u.writeFile(t, "rk.toml", fmt.Sprintf(containerConfig, freePort(t)), 0o644)

	pidFile := filepath.Join(u.home, "inside.pid")
	// Two servers in the namespace: busybox httpd (TCP 8080) and a UDP
	// one answering with the client address it sees (8053); the UDP
	// server's pid file is written first.
	kit := startBackground(t, u.as("rootlesskit", "--net=host", "--state-dir", filepath.Join(u.home, "rk"),
		"unshare", "--net", "sh", "-c",
		`"$2" -c "$3" & echo $! > "$0.udp" && echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec busybox httpd -f -p 8080 -h "$1"`,
		pidFile, filepath.Join(u.home, "www"), python(), udpPeerServer)...)
	var pid int
	waitFor(t, startTimeout, "the program inside rootlesskit", func() (bool, string) {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false, err.Error() + "\n" + kit.output()
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil, fmt.Sprint(err)
	})
	g := startAttached(t, u, bin, cfg, fmt.Sprintf("/proc/%d/ns/net", pid), fmt.Sprintf("/proc/%d/ns/user", pid))

	// The way out, from inside rootlesskit's namespaces.
	for i, url := range []string{
		fmt.Sprintf("http://10.0.2.2:%d/", hostPorts[0]),
		fmt.Sprintf("http://[fd01::2]:%d/", hostPorts[1]),
	} {
		argv := u.as("nsenter", "--user", "--net", "-t", strconv.Itoa(pid), "busybox", "wget", "-qO-", url)
		if got, err := run(30*time.Second, argv...); err != nil || got != bodies[i] {
			t.Errorf("wget %s inside rootlesskit: %q, %v; want %q", url, got, err, bodies[i])
		}
	}

	sock := filepath.Join(u.home, "ports.sock")
	ctl := func(args ...string) (string, error) {
		return run(cmdTimeout, u.as(append([]string{"rootlessctl", "--socket", sock}, args...)...)...)
	}
	mustCtl := func(args ...string) string {
		t.Helper()
		out, err := ctl(args...)
		if err != nil {
			t.Fatalf("rootlessctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	p4, p6, u4, u6 := freePort(t), freePort(t), freeUDPPort(t), freeUDPPort(t)
	ids := strings.Fields(mustCtl("add-ports",
		fmt.Sprintf("0.0.0.0:%d:8080/tcp", p4), fmt.Sprintf("[::]:%d:8080/tcp6", p6),
		fmt.Sprintf("0.0.0.0:%d:8053/udp", u4), fmt.Sprintf("[::]:%d:8053/udp6", u6)))
	if len(ids) != 4 {
		t.Fatalf("add-ports printed ids %q, want four", ids)
	}
	table := mustCtl("list-ports")
	for _, row := range [][]string{
		{ids[0], "tcp", "0.0.0.0", strconv.Itoa(p4), "8080"},
		{ids[1], "tcp6", "::", strconv.Itoa(p6), "8080"},
		{ids[2], "udp", "0.0.0.0", strconv.Itoa(u4), "8053"},
		{ids[3], "udp6", "::", strconv.Itoa(u6), "8053"},
	} {
		if !hasRow(table, row) {
			t.Errorf("list-ports has no row %v:\n%s", row, table)
		}
	}
	js := mustCtl("list-ports", "--json")
	for _, want := range []string{
		fmt.Sprintf(`{"id":%s,"spec":{"proto":"tcp","parentIP":"0.0.0.0","parentPort":%d,"childPort":8080}}`, ids[0], p4),
		fmt.Sprintf(`{"id":%s,"spec":{"proto":"tcp6","parentIP":"::","parentPort":%d,"childPort":8080}}`, ids[1], p6),
	} {
		if !strings.Contains(js, want) {
			t.Errorf("list-ports --json has no %s:\n%s", want, js)
		}
	}
	if info := mustCtl("info"); !strings.Contains(info, "Port Driver: tungate") {
		t.Errorf("info does not name tungate's port driver:\n%s", info)
	}

	expectPeer(t, c4, p4)
	expectPeer(t, c6, p6)
	expectUDPPeer(t, c4, u4)
	expectUDPPeer(t, c6, u6)

	// A clash is refused with tungate's own words.
	if out, err := ctl("add-ports", fmt.Sprintf("0.0.0.0:%d:8080/tcp", p4)); err == nil || !strings.Contains(out, "forwarded already") {
		t.Errorf("a second forward of port %d: %v\n%s", p4, err, out)
	}

	mustCtl(append([]string{"remove-ports"}, ids...)...)
	if table := mustCtl("list-ports"); len(strings.Split(strings.TrimSpace(table), "\n")) != 1 {
		t.Errorf("list-ports after remove-ports is more than its header:\n%s", table)
	}
	waitFor(t, 5*time.Second, "the host ports to close", func() (bool, string) {
		for _, a := range []string{net.JoinHostPort(c4, strconv.Itoa(p4)), net.JoinHostPort(c6, strconv.Itoa(p6))} {
			if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
				c.Close()
				return false, a + " still accepts"
			}
		}
		return true, ""
	})

	// The programs' end takes their network namespace, and tungate, along.
	if b, err := os.ReadFile(pidFile + ".udp"); err == nil {
		if udpPid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			syscall.Kill(udpPid, syscall.SIGKILL)
		}
	}
	syscall.Kill(pid, syscall.SIGKILL)
	expectExit(t, g, "the program inside rootlesskit ended")
	kit.wait(t, 15*time.Second, "rootlesskit after its program ended")
}

// hasRow reports whether a line of table has exactly the fields of row.
func hasRow(table string, row []string) bool {
	for _, line := range strings.Split(table, "\n") {
		if strings.Join(strings.Fields(line), " ") == strings.Join(row, " ") {
			return true
		}
	}
	return false
}

// udpPeerServer answers each datagram with the address of its sender as
// the server sees it (an IPv4 sender as ::ffff:a.b.c.d).
const udpPeerServer = `import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 8053))
while True:
    b, a = s.recvfrom(2048)
    s.sendto(a[0].encode(), a)
`

// freeUDPPort returns a UDP port free on every host address just now.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// expectUDPPeer sends datagrams from client address c to host port port
// until udpPeerServer answers (one may be lost), and checks that the
// server saw c itself.
func expectUDPPeer(t *testing.T, c string, port int) {
	t.Helper()
	conn, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(c)}, &net.UDPAddr{IP: net.ParseIP(c), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 256)
	var seen string
	waitFor(t, 10*time.Second, fmt.Sprintf("an answer over UDP from %s to port %d", c, port), func() (bool, string) {
		if _, err := conn.Write([]byte("peer?")); err != nil {
			return false, err.Error()
		}
		conn.SetReadDeadline(time.Now().Add(time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			return false, err.Error()
		}
		seen = string(buf[:n])
		return true, ""
	})
	if a, err := netip.ParseAddr(seen); err != nil || a.Unmap().String() != c {
		t.Errorf("UDP through the port forward from %s: the server saw %q, want the client's address", c, seen)
	}
}
