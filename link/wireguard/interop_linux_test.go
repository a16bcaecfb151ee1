package wireguard

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"

	"tungate/link"
)

// TestInteropDebianWireguardGo runs Debian's wireguard-go and wg(8) in a
// network namespace of its own and pings through the tunnel to this
// package's link, which answers echo requests, over IPv4 and IPv6.
func TestInteropDebianWireguardGo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	for _, bin := range []string{"wireguard-go", "wg", "ip", "ping"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (apt-get install wireguard-go wireguard-tools iproute2 iputils-ping)", bin)
		}
	}
	ns := fmt.Sprintf("tgwg%d", os.Getpid())
	ifname := ns // one name per test process; at most 15 characters
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	inNS := func(args ...string) string {
		t.Helper()
		return run(append([]string{"ip", "netns", "exec", ns}, args...)...)
	}
	run("ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	inNS("ip", "link", "set", "lo", "up")

	wgGo := exec.Command("ip", "netns", "exec", ns, "wireguard-go", ifname)
	wgGo.Env = append(os.Environ(), "WG_PROCESS_FOREGROUND=1")
	var wgLog bytes.Buffer
	wgGo.Stdout, wgGo.Stderr = &wgLog, &wgLog
	if err := wgGo.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		wgGo.Process.Kill()
		wgGo.Wait()
		os.Remove("/var/run/wireguard/" + ifname + ".sock")
	})
	waitFor(t, "wireguard-go to create "+ifname, func() bool {
		return exec.Command("ip", "netns", "exec", ns, "wg", "show", ifname).Run() == nil
	})

	// Keys: ours from GenKey must be what wg pubkey derives, and theirs
	// from wg genkey what PubKey derives.
	ourPriv, ourPub := mustKey(t)
	if got := strings.TrimSpace(pipeTo(t, ourPriv, "wg", "pubkey")); got != ourPub {
		t.Fatalf("wg pubkey of GenKey's key = %s, PubKey says %s", got, ourPub)
	}
	theirPriv := strings.TrimSpace(run("wg", "genkey"))
	theirPub, err := PubKey(theirPriv)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(pipeTo(t, theirPriv, "wg", "pubkey")); got != theirPub {
		t.Fatalf("PubKey = %s, wg pubkey says %s", theirPub, got)
	}

	// Our link's socket must live in the namespace too: open it from a
	// thread switched into the namespace. The thread is never switched
	// back; the goroutine exits locked, so the runtime discards it.
	type made struct {
		l   *Link
		err error
	}
	ch := make(chan made)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			err = unix.Setns(fd, unix.CLONE_NEWNET)
			unix.Close(fd)
		}
		if err != nil {
			ch <- made{err: err}
			return
		}
		l, err := New("tgwg-link", Config{PrivateKey: ourPriv, AllowInlineKey: true}, Options{Bind: conn.NewDefaultBind()})
		ch <- made{l, err}
	}()
	m := <-ch
	if m.err != nil {
		t.Fatal(m.err)
	}
	l := m.l
	t.Cleanup(func() { l.Close() })
	st, err := l.state()
	if err != nil {
		t.Fatal(err)
	}

	keyFile := writeFile(t, theirPriv, 0o600)
	inNS("wg", "set", ifname, "private-key", keyFile, "peer", ourPub,
		"allowed-ips", "10.99.0.2/32,fd99::2/128", "endpoint", fmt.Sprintf("127.0.0.1:%d", st.port))
	inNS("ip", "addr", "add", "10.99.0.1/24", "dev", ifname)
	inNS("ip", "addr", "add", "fd99::1/64", "dev", ifname, "nodad")
	inNS("ip", "link", "set", ifname, "up")
	theirPort, err := strconv.Atoi(strings.TrimSpace(inNS("wg", "show", ifname, "listen-port")))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.UpdatePeers([]PeerConfig{{
		Name:       "debian",
		PublicKey:  theirPub,
		Endpoint:   fmt.Sprintf("127.0.0.1:%d", theirPort),
		AllowedIPs: []string{"10.99.0.1/32", "fd99::1/128"},
	}}); err != nil {
		t.Fatal(err)
	}
	go echoResponder(l)

	inNS("ping", "-c", "1", "-W", "10", "10.99.0.2")
	inNS("ping", "-6", "-c", "1", "-W", "10", "fd99::2")

	// Our Show and wg show of the other end print the same lines.
	var ours bytes.Buffer
	if err := l.Show(&ours); err != nil {
		t.Fatal(err)
	}
	theirs := inNS("wg", "show", ifname)
	if a, b := labels(ours.String()), labels(theirs); a != b {
		t.Errorf("Show lines %q differ from wg show's %q\nours:\n%s\nwg show:\n%s", a, b, ours.String(), theirs)
	}
	hs := regexp.MustCompile(`(?m)^  latest handshake: (Now|\d+ seconds? ago)$`)
	if !hs.MatchString(ours.String()) || !hs.MatchString(theirs) {
		t.Errorf("handshake lines differ in form:\nours:\n%s\nwg show:\n%s", ours.String(), theirs)
	}
	t.Logf("ours:\n%s\nwg show:\n%s", ours.String(), theirs)
}

// labels is the sequence of "label:" line starts of wg show output.
func labels(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if k, _, ok := strings.Cut(line, ": "); ok {
			out = append(out, k)
		}
	}
	return strings.Join(out, "|")
}

func pipeTo(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin = strings.NewReader(stdin + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return string(out)
}

// echoResponder answers ICMP and ICMPv6 echo requests read from l until it
// closes: the far end of the pings.
func echoResponder(l *Link) {
	bufs := make([][]byte, l.BatchSize())
	sizes := make([]int, len(bufs))
	for i := range bufs {
		bufs[i] = make([]byte, link.Headroom+2048)
	}
	for {
		n, err := l.Read(bufs, sizes, link.Headroom)
		if err != nil {
			return
		}
		var replies [][]byte
		for i := 0; i < n; i++ {
			if r := echoReply(bufs[i][link.Headroom : link.Headroom+sizes[i]]); r != nil {
				replies = append(replies, append(make([]byte, link.Headroom), r...))
			}
		}
		if len(replies) > 0 {
			l.Write(replies, link.Headroom)
		}
	}
}

// echoReply turns an echo request into its reply, or returns nil.
func echoReply(p []byte) []byte {
	p = bytes.Clone(p)
	switch {
	case len(p) >= 28 && p[0] == 0x45 && p[9] == 1 && p[20] == 8:
		s := append([]byte(nil), p[12:16]...)
		copy(p[12:16], p[16:20])
		copy(p[16:20], s)
		p[20] = 0
		p[22], p[23] = 0, 0
		binary.BigEndian.PutUint16(p[22:], ^sum(p[20:]))
		return p
	case len(p) >= 48 && p[0]>>4 == 6 && p[6] == 58 && p[40] == 128:
		s := append([]byte(nil), p[8:24]...)
		copy(p[8:24], p[24:40])
		copy(p[24:40], s)
		p[40] = 129
		p[42], p[43] = 0, 0
		// The ICMPv6 checksum covers a pseudo-header (RFC 8200 8.1).
		var ph [40]byte
		copy(ph[:32], p[8:40])
		binary.BigEndian.PutUint32(ph[32:], uint32(len(p)-40))
		ph[39] = 58
		body := append(ph[:], p[40:]...)
		binary.BigEndian.PutUint16(p[42:], ^sum(body))
		return p
	}
	return nil
}
