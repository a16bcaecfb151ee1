package main

import (
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tungate/admin"
	"tungate/admin/admintest"
	"tungate/internal/pcapng"
)

const setConf = `
[sets]
blocked = ["203.0.113.0/24"]
`

// adminGateway runs a gateway with a set on two netstack hosts, its admin
// socket, and a config file naming the socket (for -c).
func adminGateway(t *testing.T) (sock, conf string, client, server *admintest.Host) {
	client = admintest.NewHost(t, "10.10.0.2", "fd10::2")
	server = admintest.NewHost(t, "198.18.0.2", "2001:db8:1::2")
	g, gwConf := admintest.Gateway(t, admintest.Config+setConf, client, server)
	dir := t.TempDir()
	sock = filepath.Join(dir, "admin.sock")
	srv, err := admin.Listen(g, sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	conf = filepath.Join(dir, "gw.toml")
	b, _ := os.ReadFile(gwConf)
	os.WriteFile(conf, append([]byte("[admin]\nsocket = \""+sock+"\"\n"), b...), 0o600)
	return sock, conf, client, server
}

// tungate set add|del|list through the real socket, text and JSON, with
// --socket and -c.
func TestSetCommands(t *testing.T) {
	sock, conf, _, _ := adminGateway(t)
	S := []string{"--socket", sock}
	with := func(a ...string) []string { return append(a, S...) }
	for _, c := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{with("set", "add", "blocked", "198.51.100.7", "2001:db8:bad::/48", "--timeout", "10m"), 0, "", "2 elements added to set blocked\n"},
		{[]string{"set", "add", "blocked", "198.51.100.8", "-c", conf}, 0, "", "1 element added to set blocked\n"},
		{with("set", "list", "blocked"), 0, "198.51.100.7 runtime expires 10m\n198.51.100.8 runtime\n203.0.113.0/24 file\n2001:db8:bad::/48 runtime expires 10m\n", ""},
		{with("set", "ls"), 0, "set blocked:\n  198.51.100.7 runtime expires 10m\n  198.51.100.8 runtime\n  203.0.113.0/24 file\n  2001:db8:bad::/48 runtime expires 10m\n", ""},
		{with("set", "del", "blocked", "198.51.100.8"), 0, "", "1 element deleted from set blocked\n"},
		{with("set", "del", "blocked", "203.0.113.0/24"), 1, "", `set "blocked": cannot delete 203.0.113.0/24: it is in the config file; remove it there and reload (set del removes only elements added at runtime)`},
		{with("set", "add", "nope", "192.0.2.1"), 1, "", `set "nope": no such set in the config (sets: blocked)`},
		{with("set", "add", "blocked", "192.0.2.1/8"), 1, "", `bad set element "192.0.2.1/8": host bits set`},
		{with("set", "add", "blocked"), 2, "", "requires at least 2 arg(s)"},
		{with("set", "add", "blocked", "192.0.2.1", "--timeout", "-1s"), 2, "", "--timeout: -1s is negative"},
		{with("set", "list", "-o", "yaml"), 2, "", `unknown output format "yaml"`},
		{with("set", "bogus"), 2, "", `unknown subcommand "bogus"`},
		{with("status"), 0, "runtime:     2 set elements on top of the config file\n  set blocked 198.51.100.7 expires 10m\n  set blocked 2001:db8:bad::/48 expires 10m\n", ""},
	} {
		code, out, errs := cli(c.args...)
		if code != c.code || !strings.Contains(out, c.out) || !strings.Contains(errs, c.err) {
			t.Errorf("tungate %s: exit %d\nstdout:\n%s\nstderr: %s\nwant exit %d, stdout %q, stderr %q",
				strings.Join(c.args, " "), code, out, errs, c.code, c.out, c.err)
		}
	}
	code, out, errs := cli(with("set", "list", "blocked", "-o", "json")...)
	var sets []admin.SetJSON
	if err := json.Unmarshal([]byte(out), &sets); code != 0 || err != nil || len(sets) != 1 || len(sets[0].Elements) != 3 ||
		sets[0].Elements[0].Element != "198.51.100.7" || sets[0].Elements[0].Origin != "runtime" || sets[0].Elements[0].ExpiresIn == nil {
		t.Fatalf("set list -o json: exit %d %v\n%s%s", code, err, out, errs)
	}
	code, out, errs = cli(with("set", "add", "blocked", "192.0.2.9", "-o", "json")...)
	var added struct {
		Set   string   `json:"set"`
		Added []string `json:"added"`
	}
	if err := json.Unmarshal([]byte(out), &added); code != 0 || err != nil || added.Set != "blocked" || len(added.Added) != 1 {
		t.Fatalf("set add -o json: exit %d %v\n%s%s", code, err, out, errs)
	}
	code, out, _ = cli(with("set", "del", "blocked", "192.0.2.9", "-o", "json")...)
	if code != 0 || !json.Valid([]byte(out)) || !strings.Contains(out, `"deleted":["192.0.2.9"]`) {
		t.Fatalf("set del -o json: exit %d\n%s", code, out)
	}
}

// tungate capture -w FILE --count N writes a pcapng file that parses (our
// reader and tcpdump's), with the packets' directions and verdicts; without
// -w it prints a line per packet.
func TestCaptureCommand(t *testing.T) {
	sock, _, client, server := adminGateway(t)
	file := filepath.Join(t.TempDir(), "lan.pcapng")
	type result struct {
		code      int
		out, errs string
	}
	run := func(args ...string) <-chan result {
		ch := make(chan result, 1)
		go func() {
			code, out, errs := cli(append(args, "--socket", sock)...)
			ch <- result{code, out, errs}
		}()
		return ch
	}
	wait := func(ch <-chan result) result {
		t.Helper()
		// Traffic until the capture has its packets and ends.
		uc, err := client.Net.DialUDPAddrPort(netip.AddrPort{}, netip.MustParseAddrPort("198.18.0.2:7400"))
		if err != nil {
			t.Fatal(err)
		}
		defer uc.Close()
		ln, err := server.Net.ListenUDPAddrPort(netip.MustParseAddrPort("198.18.0.2:7400"))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := ln.ReadFrom(buf)
				if err != nil {
					return
				}
				ln.WriteTo(buf[:n], from)
			}
		}()
		deadline := time.After(20 * time.Second)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case r := <-ch:
				return r
			case <-tick.C:
				uc.Write([]byte("hello"))
			case <-deadline:
				t.Fatal("capture did not end")
			}
		}
	}
	r := wait(run("capture", "lan", "-w", file, "--count", "4", "--proto", "udp", "--host", "198.18.0.2"))
	if r.code != 0 || !strings.Contains(r.errs, "4 packets captured on lan, 0 dropped") {
		t.Fatalf("capture: exit %d\n%s%s", r.code, r.out, r.errs)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := pcapng.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var in, out int
	for {
		p, err := rd.Next()
		if err != nil {
			break
		}
		switch {
		case p.Dir == pcapng.DirInbound && p.Comment == "accept: forwarded to wan":
			in++
		case p.Dir == pcapng.DirOutbound && p.Comment == "sent":
			out++
		default:
			t.Errorf("unexpected packet %+v", p)
		}
	}
	if in+out != 4 || in == 0 || out == 0 || len(rd.Stats) != 1 {
		t.Fatalf("%d in, %d out, stats %+v", in, out, rd.Stats)
	}
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Fatal("tcpdump is not installed (scripts/test-deps.sh installs it)")
	}
	td, err := exec.Command(tcpdump, "-nn", "-r", file).CombinedOutput()
	if err != nil || strings.Count(string(td), "UDP, length 5") != 4 {
		t.Fatalf("tcpdump -r: %v\n%s", err, td)
	}
	// Text form.
	r = wait(run("capture", "lan", "--count", "2", "--proto", "udp"))
	if r.code != 0 || strings.Count(r.out, "\n") != 2 || !strings.Contains(r.out, "UDP, length 33") {
		t.Fatalf("capture text: exit %d\n%s%s", r.code, r.out, r.errs)
	}
	if !strings.Contains(r.out, "In  IP 10.10.0.2.") || !strings.Contains(r.out, " > 198.18.0.2.7400: UDP, length 33 [accept: forwarded to wan]") {
		t.Fatalf("capture text:\n%s", r.out)
	}
	for _, c := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"capture", "dmz", "--socket", sock}, 1, `capture: no interface "dmz"`},
		{[]string{"capture", "--socket", sock}, 2, "accepts 1 arg(s)"},
		{[]string{"capture", "lan", "--count", "-1", "--socket", sock}, 2, "--count: -1 is negative"},
		{[]string{"capture", "lan", "--port", "70000", "--socket", sock}, 1, "capture: port: 70000 is not a port"},
	} {
		code, _, errs := cli(c.args...)
		if code != c.code || !strings.Contains(errs, c.err) {
			t.Errorf("tungate %v: exit %d %s", c.args, code, errs)
		}
	}
}
