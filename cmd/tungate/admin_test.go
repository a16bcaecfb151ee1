package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tungate/admin"
	"tungate/admin/admintest"
	"tungate/conntrack"
)

// cli runs a command line and returns its exit status, stdout and stderr.
func cli(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// Every admin subcommand, through the real socket of a running in-process
// gateway, in text and JSON.
func TestAdminCommands(t *testing.T) {
	_, _, g, gwConf := admintest.TwoLinks(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	srv, err := admin.Listen(g, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	// A config naming the socket, for -c and $TUNGATE_CONFIG.
	conf := filepath.Join(dir, "gw.toml")
	b, _ := os.ReadFile(gwConf)
	os.WriteFile(conf, append([]byte("[admin]\nsocket = \""+sock+"\"\n"), b...), 0o600)

	tab := g.Table()
	web := admintest.Insert(t, tab, admintest.Conn{Src: "10.10.0.2", Dst: "198.18.0.2", Sport: 40000, Dport: 80, Proto: 6,
		ReplyDst: "198.18.0.1", Status: conntrack.StatusSeenReply | conntrack.StatusAssured | conntrack.StatusSrcNAT})
	admintest.Insert(t, tab, admintest.Conn{Src: "10.10.0.3", Dst: "198.18.0.9", Sport: 5353, Dport: 53, Proto: 17})
	admintest.Insert(t, tab, admintest.Conn{Src: "fd10::2", Dst: "2001:db8:1::2", Sport: 40001, Dport: 443, Proto: 6})
	exp := &conntrack.Expectation{Master: web, Helper: "ftp", Mask: conntrack.FullMask,
		Tuple: conntrack.Tuple{Src: web.Tuple(conntrack.DirReply).Src, Dst: web.Tuple(conntrack.DirReply).Dst, SrcPort: 20, DstPort: 50000, Proto: 6, Family: 4}}
	if err := tab.Expect(exp, 0); err != nil {
		t.Fatal(err)
	}

	type tc struct {
		args     []string
		code     int
		out, err []string // substrings
		lines    int      // stdout lines, -1: any
	}
	S := []string{"--socket", sock}
	with := func(a ...string) []string { return append(a, S...) }
	for _, c := range []tc{
		// the forms the conformance suite and e2e tests use
		{with("ct", "list"), 0, []string{"tcp      6 ", "src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=80 ", "[ASSURED]", "udp      17 "}, nil, 3},
		{[]string{"ct", "list", "-c", conf}, 0, []string{"dport=443"}, nil, 3},
		{with("ct", "expect"), 0, []string{"dport=50000", "master-src=10.10.0.2"}, nil, 1},
		{with("ct", "stats"), 0, []string{"insert=3 ", "entries=3 max=4096 expectations=1"}, nil, 2},
		{with("stats"), 0, []string{"forwarded ", "nat_snat "}, nil, -1},
		{with("rules"), 0, []string{"accept"}, nil, -1},
		// filters
		{with("ct", "list", "-p", "udp", "--dport", "53"), 0, []string{"sport=5353 dport=53"}, nil, 1},
		{with("ct", "list", "-f", "ipv6"), 0, []string{"dst=2001:db8:1::2"}, nil, 1},
		{with("ct", "list", "-s", "10.10.0.0/24", "-u", "ASSURED,SNAT", "-r", "198.18.0.2", "-q", "198.18.0.1"), 0, []string{"dport=80"}, nil, 1},
		{with("ct", "list", "--orig-src", "10.10.0.3", "--orig-port-dst", "53"), 0, []string{"dport=53"}, nil, 1},
		{with("ct", "list", "--reply-port-src", "443", "--state", "NONE"), 0, []string{"dport=443"}, nil, 1},
		{with("ct", "list", "-n"), 0, []string{"dport=80"}, nil, 1},
		{with("ct", "list", "-g"), 0, nil, nil, 0},
		{with("ct", "list", "-m", "0"), 0, nil, nil, 3},
		{with("ct", "list", "--helper", "ftp"), 0, nil, nil, 0},
		{with("ct", "list", "-o", "id", "--dport", "80"), 0, []string{" id="}, nil, 1},
		{with("ct", "count"), 0, []string{"3\n"}, nil, 1},
		{with("ct", "count", "-p", "tcp", "-o", "json"), 0, []string{`{"count":2}`}, nil, 1},
		{with("expect", "list", "--helper", "ftp", "--dport", "50000"), 0, []string{"dport=50000"}, nil, 1},
		{with("expect", "list", "--tuple-dst", "198.18.0.1"), 0, []string{"dport=50000"}, nil, 1},
		{with("status"), 0, []string{"uptime:", "config:      " + gwConf, "interfaces:", "  lan ", "routes:", "conntrack:   3/4096 entries"}, nil, -1},
		{with("reload"), 0, []string{"reloaded"}, nil, 1},
		{with("reload", "--dry-run"), 0, []string{"no changes\n", "dry run: 0 changes would apply; nothing was changed"}, nil, 2},
		// usage errors: exit 2, before connecting
		{with("ct", "list", "-s", "10.0.0.300"), 2, nil, []string{`src: "10.0.0.300" is not an address or prefix`}, 0},
		{with("ct", "list", "--state", "ESTABLISED"), 2, nil, []string{`unknown state "ESTABLISED"`}, 0},
		{with("ct", "list", "--dport", "70000"), 2, nil, []string{`"70000" is not a port`}, 0},
		{with("ct", "list", "-o", "yaml"), 2, nil, []string{`unknown output format "yaml"`}, 0},
		{with("ct", "list", "--bogus"), 2, nil, []string{"unknown flag: --bogus"}, 0},
		{with("ct", "delete"), 2, nil, []string{"needs a filter"}, 0},
		{with("expect", "delete"), 2, nil, []string{"needs a filter"}, 0},
		{with("ct", "events", "-e", "NEW", "--id", "x"), 2, nil, []string{`--id: "x" is not a 32-bit number`}, 0},
		{with("expect", "bogus"), 2, nil, []string{`unknown subcommand "bogus"`}, 0},
	} {
		code, out, errs := cli(c.args...)
		bad := code != c.code
		for _, w := range c.out {
			bad = bad || !strings.Contains(out, w)
		}
		for _, w := range c.err {
			bad = bad || !strings.Contains(errs, w)
		}
		if c.lines >= 0 && strings.Count(out, "\n") != c.lines {
			bad = true
		}
		if bad {
			t.Errorf("tungate %s: exit %d\nstdout:\n%s\nstderr: %s\nwant exit %d, stdout %q (%d lines), stderr %q",
				strings.Join(c.args, " "), code, out, errs, c.code, c.out, c.lines, c.err)
		}
	}

	// JSON forms decode.
	for _, args := range [][]string{{"ct", "list", "-o", "json"}, {"expect", "list", "-o", "json"}, {"status", "-o", "json"},
		{"ct", "stats", "-o", "json"}, {"stats", "-o", "json"}} {
		code, out, errs := cli(with(args...)...)
		if code != 0 || !json.Valid([]byte(out)) {
			t.Errorf("tungate %v: exit %d, invalid JSON:\n%s\n%s", args, code, out, errs)
		}
	}
	var list []admin.ConnJSON
	_, out, _ := cli(with("ct", "list", "-o", "json", "-p", "tcp", "-f", "ipv4")...)
	if json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].Reply.Dst != "198.18.0.1" || *list[0].Orig.Dport != 80 ||
		list[0].ID != conntrack.ConnID(web) || strings.Join(list[0].Status, ",") != "SEEN_REPLY,ASSURED,CONFIRMED,SRC_NAT" {
		t.Errorf("ct list -o json: %s", out)
	}

	// The default: $TUNGATE_CONFIG's socket, no flag needed.
	t.Setenv("TUNGATE_CONFIG", conf)
	if code, out, errs := cli("ct", "count"); code != 0 || out != "3\n" {
		t.Errorf("ct count via $TUNGATE_CONFIG: %d %q %q", code, out, errs)
	}

	// Deleting: exactly the filtered entries, each printed, the count on stderr.
	code, out, errs := cli(with("ct", "delete", "-p", "udp")...)
	if code != 0 || strings.Count(out, "\n") != 1 || !strings.Contains(out, "dport=53") || !strings.Contains(errs, "1 flow entries have been deleted.") || tab.Count() != 2 {
		t.Errorf("ct delete -p udp: %d %q %q, %d left", code, out, errs, tab.Count())
	}
	id := conntrack.ConnID(web)
	if code, _, errs := cli(with("ct", "delete", "--id", itoa(id))...); code != 0 || !strings.Contains(errs, "1 flow entries") || tab.Count() != 1 {
		t.Errorf("ct delete --id: %d %q, %d left", code, errs, tab.Count())
	}
	if code, _, _ := cli(with("expect", "delete", "--helper", "ftp")...); code != 0 || tab.ExpectationCount() != 0 {
		t.Errorf("expect delete: %d, %d left", code, tab.ExpectationCount())
	}
	tab.Expect(&conntrack.Expectation{Master: web, Mask: exp.Mask, Tuple: exp.Tuple}, 0)
	if code, _, _ := cli(with("expect", "flush")...); code != 0 || tab.ExpectationCount() != 0 {
		t.Errorf("expect flush: %d, %d left", code, tab.ExpectationCount())
	}
	if code, _, errs := cli(with("ct", "flush")...); code != 0 || tab.Count() != 0 || !strings.Contains(errs, "emptied") {
		t.Errorf("ct flush: %d %q, %d left", code, errs, tab.Count())
	}

	// ct events streams until the gateway closes the session.
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	var evErr bytes.Buffer
	go func() {
		done <- run(with("ct", "events", "-e", "NEW", "-p", "udp"), pw, &evErr)
		pw.Close()
	}()
	lines := make(chan string, 64)
	go func() {
		b := make([]byte, 4096)
		var acc string
		for {
			n, err := pr.Read(b)
			acc += string(b[:n])
			for {
				i := strings.IndexByte(acc, '\n')
				if i < 0 {
					break
				}
				lines <- acc[:i]
				acc = acc[i+1:]
			}
			if err != nil {
				close(lines)
				return
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for seen := false; !seen; {
		if time.Now().After(deadline) {
			t.Fatal("ct events showed no NEW event")
		}
		c := admintest.Insert(t, tab, admintest.Conn{Src: "10.10.0.7", Dst: "198.18.0.7", Sport: 1, Dport: 2, Proto: 17})
		tab.Delete(c)
		select {
		case l := <-lines:
			if !strings.HasPrefix(l, "    [NEW] udp      17 ") || !strings.Contains(l, "src=10.10.0.7") {
				t.Fatalf("ct events line %q", l)
			}
			seen = true
		case <-time.After(20 * time.Millisecond):
		}
	}
	srv.Close()
	select {
	case code := <-done:
		if code != 1 || !strings.Contains(evErr.String(), "closed the connection") {
			t.Errorf("ct events after the server closed: %d %q", code, evErr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ct events did not end when the server closed")
	}
}

func itoa(v uint32) string { b, _ := json.Marshal(v); return string(b) }

// Help, completion and man pages come from the command tree.
func TestHelpCompletionMan(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--help"}, "Running gateway (admin socket):"},
		{[]string{"ct", "list", "--help"}, "--reply-port-dst"},
		{[]string{"ct", "events", "--help"}, "[LOST] N events lost"},
		{[]string{"ct", "delete", "--help"}, "At least one filter is required"},
		{[]string{"expect", "delete", "--help"}, "--tuple-src"},
		{[]string{"status", "--help"}, "--socket"},
		{[]string{"run", "--help"}, "SIGHUP"},
		{[]string{"check", "--help"}, "without opening a device"},
		{[]string{"reload", "--help"}, "untouched"},
		{[]string{"completion", "bash"}, "__start_tungate"},
		{[]string{"completion", "zsh"}, "#compdef tungate"},
		{[]string{"completion", "fish"}, "complete -c tungate"},
		{[]string{"version"}, "tungate dev"},
		{[]string{"--version"}, "tungate dev"},
		{[]string{"__complete", "ct", "list", "--state", ""}, "ESTABLISHED"},
		{[]string{"__complete", "ct", "list", "-p", ""}, "icmpv6"},
		{[]string{"__complete", "ct", "events", "-e", ""}, "DESTROY"},
	} {
		code, out, errs := cli(c.args...)
		if code != 0 || !strings.Contains(out, c.want) {
			t.Errorf("tungate %v: exit %d, stdout lacks %q:\n%.600s\n%s", c.args, code, c.want, out, errs)
		}
	}
	if code, _, _ := cli("completion", "tcsh"); code != 2 {
		t.Errorf("completion tcsh: exit %d", code)
	}
	dir := t.TempDir()
	if code, _, errs := cli("man", dir); code != 0 {
		t.Fatalf("man: %s", errs)
	}
	for _, page := range []string{"tungate.8", "tungate-ct-list.8", "tungate-ct-events.8", "tungate-expect-delete.8", "tungate-status.8"} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil || !bytes.Contains(b, []byte(".TH \"TUNGATE\" \"8\"")) {
			t.Errorf("man page %s: %v\n%.300s", page, err, b)
		}
	}
}
