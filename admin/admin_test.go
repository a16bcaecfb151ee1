package admin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"tungate/admin/admintest"
	"tungate/conntrack"
	"tungate/gateway"
)

// serve starts an admin server for g on a socket in a temporary directory.
func serve(t *testing.T, g *gateway.Gateway) (*Server, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "admin.sock")
	s, err := Listen(g, sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, sock
}

func do(t *testing.T, sock string, req *Request) (string, string, error) {
	t.Helper()
	var out bytes.Buffer
	msg, err := Do(context.Background(), sock, req, &out)
	return out.String(), msg, err
}

func mustDo(t *testing.T, sock string, req *Request) string {
	t.Helper()
	out, _, err := do(t, sock, req)
	if err != nil {
		t.Fatalf("%+v: %v", req, err)
	}
	return out
}

func u16(v uint16) *uint16 { return &v }

// knownTable fills a null gateway's table with five connections of known
// shape and returns them by name.
func knownTable(t *testing.T) (*gateway.Gateway, map[string]*conntrack.Conn) {
	g := admintest.NullGateway(t, 4096)
	tab := g.Table()
	c := map[string]*conntrack.Conn{
		// a masqueraded, assured TCP flow
		"a": admintest.Insert(t, tab, admintest.Conn{Src: "10.10.0.2", Dst: "198.18.0.2", Sport: 40000, Dport: 80, Proto: 6,
			ReplyDst: "198.18.0.1", Status: conntrack.StatusSeenReply | conntrack.StatusAssured | conntrack.StatusSrcNAT, Mark: 1}),
		// an unreplied UDP query
		"b": admintest.Insert(t, tab, admintest.Conn{Src: "10.10.0.3", Dst: "198.18.0.9", Sport: 5353, Dport: 53, Proto: 17, Mark: 0x12}),
		// IPv6 TCP
		"c": admintest.Insert(t, tab, admintest.Conn{Src: "fd10::2", Dst: "2001:db8:1::2", Sport: 40001, Dport: 443, Proto: 6,
			Status: conntrack.StatusSeenReply}),
		// ICMP echo
		"d": admintest.Insert(t, tab, admintest.Conn{Src: "10.10.0.2", Dst: "198.18.0.2", Sport: 7, Dport: 8 << 8, Proto: 1}),
		// a port forward (DNAT) from outside
		"e": admintest.Insert(t, tab, admintest.Conn{Src: "198.18.0.5", Dst: "198.18.0.1", Sport: 1234, Dport: 8080, Proto: 6,
			ReplySrc: "10.10.0.3", Status: conntrack.StatusDstNAT}),
	}
	return g, c
}

// names returns which of conns the JSON list holds, sorted.
func names(t *testing.T, out string, conns map[string]*conntrack.Conn) []string {
	t.Helper()
	var list []ConnJSON
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("ct list -o json is not JSON: %v\n%s", err, out)
	}
	var got []string
	for _, j := range list {
		for n, c := range conns {
			if conntrack.ConnID(c) == j.ID {
				got = append(got, n)
			}
		}
	}
	slices.Sort(got)
	return got
}

func TestListFilters(t *testing.T) {
	g, conns := knownTable(t)
	_, sock := serve(t, g)
	idA := conntrack.ConnID(conns["a"])
	for _, c := range []struct {
		f    Filter
		want string
	}{
		{Filter{}, "a b c d e"},
		{Filter{Proto: "tcp"}, "a c e"},
		{Filter{Proto: "6", Family: "ipv4"}, "a e"},
		{Filter{Family: "ipv6"}, "c"},
		{Filter{Src: "10.10.0.0/24"}, "a b d"},
		{Filter{Dst: "198.18.0.2"}, "a d"},
		{Filter{Dst: "2001:db8:1::/48"}, "c"},
		{Filter{ReplyDst: "198.18.0.1"}, "a"},
		{Filter{ReplySrc: "10.10.0.3"}, "e"},
		{Filter{Dport: u16(80)}, "a"},
		{Filter{Sport: u16(5353)}, "b"},
		{Filter{ReplyDport: u16(40000)}, "a"},
		{Filter{ReplySport: u16(443)}, "c"},
		{Filter{Status: []string{"assured"}}, "a"},
		{Filter{Status: []string{"SEEN_REPLY"}}, "a c"},
		{Filter{Status: []string{"UNREPLIED"}}, "b d e"},
		{Filter{Status: []string{"snat"}}, "a"},
		{Filter{Status: []string{"DNAT"}}, "e"},
		{Filter{AnyNAT: true}, "a e"},
		{Filter{Mark: "0x12"}, "b"},
		{Filter{Mark: "0x10/0xf0"}, "b"},
		{Filter{Mark: "1"}, "a"},
		{Filter{State: []string{"NONE"}}, "a c e"},
		{Filter{State: []string{"established"}}, ""},
		{Filter{Helper: "ftp"}, ""},
		{Filter{ID: &idA}, "a"},
		{Filter{Proto: "tcp", Src: "10.10.0.0/24", Dport: u16(80), Status: []string{"ASSURED"}}, "a"},
	} {
		f := c.f
		out := mustDo(t, sock, &Request{Cmd: "ct list", Output: "json", Filter: &f})
		got := strings.Join(names(t, out, conns), " ")
		if got != c.want {
			t.Errorf("filter %+v: got [%s], want [%s]", c.f, got, c.want)
		}
		// text: one conntrack -L line per match
		text := mustDo(t, sock, &Request{Cmd: "ct list", Filter: &f})
		lines := strings.Fields(c.want)
		if n := strings.Count(text, "\n"); n != len(lines) {
			t.Errorf("filter %+v: %d text lines, want %d:\n%s", c.f, n, len(lines), text)
		}
		for _, n := range lines {
			var b []byte
			want := string(g.Table().AppendConn(b, conns[n], g.Table().Now()))
			// the timeout may tick between the two
			if !strings.Contains(text, want[20:]) {
				t.Errorf("filter %+v: text lacks %q:\n%s", c.f, want, text)
			}
		}
		cnt := mustDo(t, sock, &Request{Cmd: "ct count", Filter: &f})
		if strings.TrimSpace(cnt) != itoa(len(lines)) {
			t.Errorf("filter %+v: ct count %q, want %d", c.f, cnt, len(lines))
		}
	}
	// id output and the conntrack line format
	out := mustDo(t, sock, &Request{Cmd: "ct list", Output: "id", Filter: &Filter{ID: &idA}})
	if !strings.HasPrefix(out, "tcp      6 ") || !strings.Contains(out, "[ASSURED] mark=1 use=1 id="+itoa(int(idA))+"\n") {
		t.Errorf("ct list -o id: %q", out)
	}
	out = mustDo(t, sock, &Request{Cmd: "ct list", Output: "json", Filter: &Filter{Proto: "icmp"}})
	var l []ConnJSON
	json.Unmarshal([]byte(out), &l)
	if len(l) != 1 || *l[0].Orig.Type != 8 || *l[0].Orig.ICMPID != 7 || l[0].Orig.Sport != nil || l[0].Family != "ipv4" {
		t.Errorf("icmp json: %s", out)
	}
	if out := mustDo(t, sock, &Request{Cmd: "ct count", Output: "json"}); out != "{\"count\":5}\n" {
		t.Errorf("ct count -o json: %q", out)
	}
	// bad filters are errors that name the field
	for _, f := range []Filter{{Src: "10.0.0.300"}, {Proto: "bogus"}, {State: []string{"ESTABLISED"}}, {Status: []string{"nope"}},
		{Mark: "x"}, {Family: "ipx"}, {Family: "ipv6", Src: "10.0.0.1"}, {Proto: "icmp", Dport: u16(1)}} {
		if _, _, err := do(t, sock, &Request{Cmd: "ct list", Filter: &f}); err == nil {
			t.Errorf("filter %+v accepted", f)
		}
	}
	if _, _, err := do(t, sock, &Request{Cmd: "frobnicate"}); err == nil || !strings.Contains(err.Error(), `unknown command "frobnicate"`) {
		t.Errorf("unknown command: %v", err)
	}
}

func itoa(n int) string { return strings.TrimSpace(strings.Repeat(" ", 0) + fmtInt(n)) }

func fmtInt(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestDelete(t *testing.T) {
	g, conns := knownTable(t)
	_, sock := serve(t, g)
	if _, _, err := do(t, sock, &Request{Cmd: "ct delete"}); err == nil {
		t.Fatal("ct delete without a filter deleted")
	}
	out, msg, err := do(t, sock, &Request{Cmd: "ct delete", Filter: &Filter{Proto: "tcp", Family: "ipv4"}})
	if err != nil || msg != "2 flow entries have been deleted." || strings.Count(out, "\n") != 2 {
		t.Fatalf("ct delete: %v %q\n%s", err, msg, out)
	}
	left := names(t, mustDo(t, sock, &Request{Cmd: "ct list", Output: "json"}), conns)
	if strings.Join(left, " ") != "b c d" || g.Table().Count() != 3 {
		t.Fatalf("after deleting ipv4 tcp: %v (count %d)", left, g.Table().Count())
	}
	id := conntrack.ConnID(conns["c"])
	if _, msg, err := do(t, sock, &Request{Cmd: "ct delete", Filter: &Filter{ID: &id}}); err != nil || msg != "1 flow entries have been deleted." {
		t.Fatalf("delete by id: %v %q", err, msg)
	}
	if _, msg, _ := do(t, sock, &Request{Cmd: "ct delete", Filter: &Filter{ID: &id}}); msg != "0 flow entries have been deleted." {
		t.Fatalf("deleting a gone id: %q", msg)
	}
	if _, msg, err := do(t, sock, &Request{Cmd: "ct flush"}); err != nil || !strings.Contains(msg, "emptied (2 entries)") || g.Table().Count() != 0 {
		t.Fatalf("ct flush: %v %q, %d left", err, msg, g.Table().Count())
	}
}

func TestExpectations(t *testing.T) {
	g, conns := knownTable(t)
	_, sock := serve(t, g)
	tab := g.Table()
	mk := func(port uint16, helper string) *conntrack.Expectation {
		m := conns["a"]
		e := &conntrack.Expectation{Master: m, Helper: helper, Mask: conntrack.FullMask,
			Tuple: conntrack.Tuple{Src: m.Tuple(conntrack.DirReply).Src, Dst: m.Tuple(conntrack.DirReply).Dst, SrcPort: 20, DstPort: port, Proto: 6, Family: 4}}
		e.Mask.SrcPort = 0
		if err := tab.Expect(e, 0); err != nil {
			t.Fatal(err)
		}
		return e
	}
	e1 := mk(50000, "ftp")
	mk(50001, "other")
	out := mustDo(t, sock, &Request{Cmd: "expect list"})
	if strings.Count(out, "\n") != 2 || !strings.Contains(out, "dport=50000") || !strings.Contains(out, "master-src=10.10.0.2") {
		t.Fatalf("expect list:\n%s", out)
	}
	// the old command line form
	if legacy := mustDo(t, sock, &Request{Cmd: "expect list", Filter: &Filter{Helper: "ftp"}}); strings.Count(legacy, "\n") != 1 {
		t.Fatalf("expect list --helper ftp:\n%s", legacy)
	}
	var l []ExpectJSON
	if err := json.Unmarshal([]byte(mustDo(t, sock, &Request{Cmd: "expect list", Output: "json"})), &l); err != nil || len(l) != 2 ||
		l[0].ID != conntrack.ExpectationID(e1) || *l[0].Tuple.Dport != 50000 || l[0].MasterID != conntrack.ConnID(conns["a"]) {
		t.Fatalf("expect list -o json: %v %+v", err, l)
	}
	if _, _, err := do(t, sock, &Request{Cmd: "expect list", Filter: &Filter{State: []string{"NONE"}}}); err == nil {
		t.Fatal("a state filter on expectations was accepted")
	}
	id := conntrack.ExpectationID(e1)
	if _, msg, err := do(t, sock, &Request{Cmd: "expect delete", Filter: &Filter{ID: &id}}); err != nil || msg != "1 expectations have been deleted." {
		t.Fatalf("expect delete --id: %v %q", err, msg)
	}
	if out := mustDo(t, sock, &Request{Cmd: "expect list"}); strings.Count(out, "\n") != 1 || strings.Contains(out, "dport=50000") {
		t.Fatalf("after delete:\n%s", out)
	}
	if _, msg, err := do(t, sock, &Request{Cmd: "expect flush"}); err != nil || !strings.Contains(msg, "(1 entries)") || tab.ExpectationCount() != 0 {
		t.Fatalf("expect flush: %v %q", err, msg)
	}
}

// The old one-line protocol still answers, framed.
func TestLegacyLine(t *testing.T) {
	g, _ := knownTable(t)
	_, sock := serve(t, g)
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("ct list json\n"))
	var out bytes.Buffer
	if _, err := readFrames(c, &out); err != nil || !json.Valid(out.Bytes()) || strings.Count(out.String(), `"id"`) != 5 {
		t.Fatalf("legacy ct list json: %v\n%s", err, out.String())
	}
}

func TestCtStats(t *testing.T) {
	g, _ := knownTable(t)
	_, sock := serve(t, g)
	out := mustDo(t, sock, &Request{Cmd: "ct stats"})
	for _, bad := range []string{"search_restart", "clash_resolve", "chaintoolong"} {
		if strings.Contains(out, bad) {
			t.Errorf("ct stats shows %s, which nothing counts:\n%s", bad, out)
		}
	}
	for _, want := range []string{"cpu=0   \tfound=0 invalid=0 insert=5 insert_failed=0 drop=0 early_drop=0 error=0\n", "entries=5 max=4096 expectations=0 "} {
		if !strings.Contains(out, want) {
			t.Errorf("ct stats lacks %q:\n%s", want, out)
		}
	}
	var m map[string]uint64
	if err := json.Unmarshal([]byte(mustDo(t, sock, &Request{Cmd: "ct stats", Output: "json"})), &m); err != nil || m["insert"] != 5 || m["max"] != 4096 {
		t.Errorf("ct stats -o json: %v %v", err, m)
	}
}

// udpEcho has the server echo UDP on port and the client exchange one
// datagram through the gateway.
func udpEcho(t *testing.T, client, server *admintest.Host, port uint16) {
	t.Helper()
	ln, err := server.Net.ListenUDPAddrPort(netip.AddrPortFrom(netip.MustParseAddr("198.18.0.2"), port))
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
	c, err := client.Net.DialUDPAddrPort(netip.AddrPort{}, netip.AddrPortFrom(netip.MustParseAddr("198.18.0.2"), port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 64)
	for try := 0; try < 50; try++ {
		c.Write([]byte("ping"))
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := c.Read(buf); err == nil && string(buf[:n]) == "ping" {
			return
		}
	}
	t.Fatalf("no UDP echo through the gateway on port %d", port)
}

// lines streams a request's output line by line until the test ends.
func lines(t *testing.T, sock string, req *Request) <-chan string {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	go func() {
		_, err := Do(ctx, sock, req, pw)
		pw.CloseWithError(err)
	}()
	ch := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			ch <- sc.Text()
		}
		close(ch)
	}()
	t.Cleanup(func() { cancel(); pr.Close() })
	return ch
}

// waitLine returns the first line from ch that has every one of want.
func waitLine(t *testing.T, ch <-chan string, seen *[]string, want ...string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended waiting for %q; saw:\n%s", want, strings.Join(*seen, "\n"))
			}
			*seen = append(*seen, l)
			all := true
			for _, w := range want {
				all = all && strings.Contains(l, w)
			}
			if all {
				return l
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %q; saw:\n%s", want, strings.Join(*seen, "\n"))
		}
	}
}

func TestEventsLive(t *testing.T) {
	client, server, g, _ := admintest.TwoLinks(t)
	_, sock := serve(t, g)
	text := lines(t, sock, &Request{Cmd: "ct events", Filter: &Filter{Proto: "tcp", Dport: u16(7000)}})
	js := lines(t, sock, &Request{Cmd: "ct events", Output: "json", Events: []string{"NEW", "DESTROY"}, Filter: &Filter{Dport: u16(7000)}})
	// Both streams are subscribed once a probe connection's NEW reaches
	// them (the request is asynchronous).
	var seen, jseen []string
	deadline := time.Now().Add(10 * time.Second)
	for textOn, jsOn := false, false; !textOn || !jsOn; {
		if time.Now().After(deadline) {
			t.Fatalf("event streams not subscribed (text %v, json %v)", textOn, jsOn)
		}
		p := admintest.Insert(t, g.Table(), admintest.Conn{Src: "10.99.0.1", Dst: "10.99.0.2", Sport: 1, Dport: 7000, Proto: 6})
		g.Table().Delete(p)
		for wait := time.After(10 * time.Millisecond); ; {
			select {
			case l := <-text:
				seen = append(seen, l)
				textOn = textOn || strings.Contains(l, "src=10.99.0.1")
				continue
			case l := <-js:
				jseen = append(jseen, l)
				jsOn = jsOn || strings.Contains(l, "10.99.0.1")
				continue
			case <-wait:
			}
			break
		}
	}
	ln, err := server.Net.ListenTCPAddrPort(netip.MustParseAddrPort("198.18.0.2:7000"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			io.Copy(io.Discard, c)
		}
	}()
	// The streams may not be subscribed yet when the first SYN goes out:
	// dial until a NEW shows up.
	var c net.Conn
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err = client.Net.DialContextTCPAddrPort(ctx, netip.MustParseAddrPort("198.18.0.2:7000"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitLine(t, text, &seen, "    [NEW] tcp      6 ", "SYN_SENT", "dport=7000", "[UNREPLIED]")
	upd := waitLine(t, text, &seen, " [UPDATE] tcp      6 ", "dport=7000")
	if !strings.Contains(upd, "SYN_RECV") && !strings.Contains(upd, "ESTABLISHED") {
		t.Errorf("first update: %q", upd)
	}
	waitLine(t, text, &seen, " [UPDATE] tcp      6 ", "ESTABLISHED", "[ASSURED]")
	if _, msg, err := do(t, sock, &Request{Cmd: "ct delete", Filter: &Filter{Dport: u16(7000)}}); err != nil || msg != "1 flow entries have been deleted." {
		t.Fatalf("ct delete: %v %q", err, msg)
	}
	d := waitLine(t, text, &seen, "[DESTROY] tcp      6 src=10.10.0.2 dst=198.18.0.2 ", "dport=7000", "[ASSURED]")
	if strings.Contains(d, "ESTABLISHED") {
		t.Errorf("DESTROY line shows a state: %q", d)
	}
	// JSON: NEW then DESTROY, no UPDATE.
	var types []string
	for len(types) < 2 {
		l := waitLine(t, js, &jseen, `"type"`)
		if strings.Contains(l, "10.99.0.1") {
			continue // the probes
		}
		var ev EventJSON
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("event JSON %q: %v", l, err)
		}
		if ev.Conn == nil || *ev.Conn.Orig.Dport != 7000 {
			t.Fatalf("event %q", l)
		}
		types = append(types, ev.Type)
	}
	if strings.Join(types, ",") != "NEW,DESTROY" {
		t.Fatalf("json events %v, want NEW,DESTROY", types)
	}
}

// A reader that stops reading costs the datapath nothing: events it cannot
// take are dropped and counted, forwarding goes on, and the reader is told
// how many it lost when it reads again.
func TestEventsStuckReader(t *testing.T) {
	client, server, g, _ := admintest.TwoLinks(t)
	_, sock := serve(t, g)
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte(`{"cmd":"ct events"}` + "\n"))
	tab := g.Table()
	// Wait until the stream is subscribed: a probe's event arrives (the
	// bufio.Reader keeps what Peek saw for the frame reader below).
	br := bufio.NewReader(c)
	for {
		p := admintest.Insert(t, tab, admintest.Conn{Src: "10.99.0.1", Dst: "10.99.0.2", Sport: 1, Dport: 2, Proto: 17})
		tab.Delete(p)
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := br.Peek(5); err == nil {
			break
		}
	}
	c.SetReadDeadline(time.Time{})
	// Now read nothing while 40000 events happen.
	lost0 := tab.Stats.EventsLost.Load()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 20000; i++ {
			cn := admintest.Insert(t, tab, admintest.Conn{Src: "10.10.0.9", Dst: "198.18.0.9", Sport: uint16(1024 + i%60000), Dport: uint16(1 + i/60000), Proto: 17})
			tab.Delete(cn)
		}
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("event emission blocked behind a stuck reader")
	}
	lost := tab.Stats.EventsLost.Load() - lost0
	if lost == 0 {
		t.Fatal("no events lost although the reader read nothing")
	}
	udpEcho(t, client, server, 9001) // forwarding goes on
	// The reader resumes and learns what it missed.
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	var got uint64
	framed, fw := io.Pipe()
	go func() { _, err := readFrames(br, fw); fw.CloseWithError(err) }()
	sc := bufio.NewScanner(framed)
	for sc.Scan() {
		l := sc.Text()
		if rest, ok := strings.CutPrefix(l, "[LOST] "); ok {
			var n uint64
			for _, ch := range rest {
				if ch < '0' || ch > '9' {
					break
				}
				n = n*10 + uint64(ch-'0')
			}
			got += n
			if got > 0 {
				break
			}
		}
	}
	if all := tab.Stats.EventsLost.Load() - lost0; got == 0 || got > all {
		t.Fatalf("reader told of %d lost events; the table lost %d", got, all)
	}
}

// Only root and the gateway's own uid get in, whatever the socket's mode.
func TestPeerCredentials(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("needs root to act as another uid")
	}
	g, _ := knownTable(t)
	dir, err := os.MkdirTemp("", "tungate-admin-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	_, sock := serve(t, g)
	st, err := os.Stat(sock)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v %v", st.Mode(), err)
	}
	s2, err := Listen(g, filepath.Join(dir, "open.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	// Open the file to everyone: the credential check must still refuse.
	os.Chmod(s2.Addr(), 0o666)
	py := `import socket,sys
s=socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b'{"cmd":"ct count"}\n')
d=b''
while True:
    b=s.recv(4096)
    if not b: break
    d+=b
sys.stdout.buffer.write(d)`
	out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", py, s2.Addr()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "permission denied: uid 65534") {
		t.Fatalf("uid 65534 got: %v %q", err, out)
	}
	if out := mustDo(t, s2.Addr(), &Request{Cmd: "ct count"}); out != "5\n" {
		t.Fatalf("root got %q", out)
	}
}

func TestStatusAndReload(t *testing.T) {
	client, server, g, path := admintest.TwoLinks(t)
	_, sock := serve(t, g)
	udpEcho(t, client, server, 9002)
	// The echo's reply can reach the client before the worker that wrote
	// the request to wan has counted that write: ask until the counters
	// show both directions (a deadline, then the check below reports).
	var st Status
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st = Status{}
		if err := json.Unmarshal([]byte(mustDo(t, sock, &Request{Cmd: "status", Output: "json"})), &st); err != nil {
			t.Fatal(err)
		}
		if len(st.Interfaces) == 2 && st.Interfaces[1].Counters.TxPackets > 0 && st.Interfaces[0].Counters.TxBytes > 0 || time.Now().After(deadline) {
			break
		}
	}
	b, _ := os.ReadFile(path)
	sum := sha256.Sum256(b)
	if st.Config != path || st.ConfigSHA256 != hex.EncodeToString(sum[:]) || st.ConfigChanged || st.LastReload != nil {
		t.Errorf("status config: %+v", st)
	}
	if len(st.Interfaces) != 2 || st.Interfaces[0].Name != "lan" || st.Interfaces[0].Counters.RxPackets == 0 ||
		st.Interfaces[1].Counters.TxPackets == 0 || st.Interfaces[0].Counters.TxBytes == 0 {
		t.Errorf("status interfaces: %+v", st.Interfaces)
	}
	if st.Conntrack.Max != 4096 || st.Conntrack.Entries != g.Table().Count() || !slices.Contains(st.Helpers, "ftp") ||
		len(st.Routes) != 2 || st.Routes[1].To != "::/0" || st.NAT["mappings"] == 0 {
		t.Errorf("status: %+v", st)
	}
	// The masquerade rule (IPv4 sources only): TCP and UDP, the one UDP
	// flow's port held.
	wantPorts := []NATPortStatus{
		{Rule: "nat.masquerade[0]", Kind: "masquerade", Out: "wan", Family: "ipv4", Protocol: "tcp", Used: 0, Capacity: 65535},
		{Rule: "nat.masquerade[0]", Kind: "masquerade", Out: "wan", Family: "ipv4", Protocol: "udp", Used: 1, Capacity: 65535},
	}
	if !slices.Equal(st.NATPorts, wantPorts) {
		t.Errorf("status nat_ports %+v, want %+v", st.NATPorts, wantPorts)
	}
	if st.HelperStats != (gateway.HelperStats{}) || st.Reloads != (ReloadCounts{}) {
		t.Errorf("helper stats %+v, reloads %+v: want zeros before any FTP or reload", st.HelperStats, st.Reloads)
	}
	for _, key := range []string{`"nat_ports": [`, `"capacity": 65535`, `"helper_stats": {`, `"expectations_created": 0,`, `"reloads": {`} {
		if js := mustDo(t, sock, &Request{Cmd: "status", Output: "json"}); !strings.Contains(js, key) {
			t.Errorf("status JSON lacks %s:\n%s", key, js)
		}
	}
	text := mustDo(t, sock, &Request{Cmd: "status"})
	for _, want := range []string{"  nat.masquerade[0] masquerade out wan ipv4/udp: 1 / 65535 ports (0.0 %)\n",
		"  nat.masquerade[0] masquerade out wan ipv4/tcp: 0 / 65535 ports (0.0 %)\n",
		"             0 expectations created, 0 mangled (0 replayed), 0 ignored, 0 dropped (0 held), 0 long lines, 0 unrewritable\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("status lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "reloads:") {
		t.Errorf("status shows reload counts before any reload:\n%s", text)
	}
	for _, want := range []string{"uptime:", "config:      " + path + " sha256:" + st.ConfigSHA256[:16], "last reload: never",
		"conntrack:   ", "/4096 entries", "helpers:     ftp", "  lan      tun=lan0 mtu=1500 10.10.0.1/24 fd10::1/64", "rx ", "  ::/0                 via wan"} {
		if !strings.Contains(text, want) {
			t.Errorf("status lacks %q:\n%s", want, text)
		}
	}
	// A file change shows; a good reload records and rehashes; a bad one
	// records the error.
	os.WriteFile(path, append(b, []byte("\n# changed\n")...), 0o600)
	if !strings.Contains(mustDo(t, sock, &Request{Cmd: "status"}), "(changed on disk since loaded)") {
		t.Error("status does not show the changed file")
	}
	if _, msg, err := do(t, sock, &Request{Cmd: "reload"}); err != nil || msg != "reloaded" {
		t.Fatalf("reload: %v %q", err, msg)
	}
	text = mustDo(t, sock, &Request{Cmd: "status"})
	if !strings.Contains(text, " ok, 0 changes\n") || strings.Contains(text, "changed on disk") {
		t.Errorf("status after reload:\n%s", text)
	}
	os.WriteFile(path, []byte("[filter.forward]\npolicy = \"dorp\"\n"), 0o600)
	if _, _, err := do(t, sock, &Request{Cmd: "reload"}); err == nil {
		t.Fatal("a broken config reloaded")
	}
	if text = mustDo(t, sock, &Request{Cmd: "status"}); !strings.Contains(text, "failed: ") || !strings.Contains(text, "reloads:     1 applied, 1 failed or refused\n") {
		t.Errorf("status after a failed reload:\n%s", text)
	}
	if out := mustDo(t, sock, &Request{Cmd: "stats"}); !strings.Contains(out, "nat_snat ") || !strings.Contains(out, "forwarded ") {
		t.Errorf("stats:\n%s", out)
	}
	if out := mustDo(t, sock, &Request{Cmd: "rules"}); !strings.Contains(out, "accept") {
		t.Errorf("rules:\n%s", out)
	}
}
