package admin

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tungate/admin/admintest"
	"tungate/gateway"
)

// setsConfig is admintest.Config with a set whose destinations are dropped
// before anything else, established flows too (as fail2ban's rules are).
const setsConfig = admintest.Config + `
[sets]
blocked = ["203.0.113.0/24", "2001:db8:bad::/48"]
`

func withSetRule(conf string) string {
	return strings.Replace(conf, `rules = [
  { ct_state = ["established", "related"], action = "accept" },`, `rules = [
  { dst = ["@blocked"], action = "drop" },
  { ct_state = ["established", "related"], action = "accept" },`, 1)
}

// testClock is an injectable clock for the runtime layer.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// udpSink counts the datagrams a server receives on one port.
type udpSink struct{ n atomic.Int64 }

func listenSink(t *testing.T, server *admintest.Host, addr string, port uint16) *udpSink {
	t.Helper()
	ln, err := server.Net.ListenUDPAddrPort(netip.AddrPortFrom(netip.MustParseAddr(addr), port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &udpSink{}
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := ln.ReadFrom(buf); err != nil {
				return
			}
			s.n.Add(1)
		}
	}()
	return s
}

// sendOne sends one datagram from the client to dst:port and reports
// whether the gateway forwarded it (true) or the @blocked rule (the first
// of filter.forward) dropped it (false), waiting for whichever happens.
func sendOne(t *testing.T, g *gateway.Gateway, client *admintest.Host, sink *udpSink, dst string, port uint16) bool {
	t.Helper()
	c, err := client.Net.DialUDPAddrPort(netip.AddrPort{}, netip.AddrPortFrom(netip.MustParseAddr(dst), port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	blockedHits := func() uint64 { return g.Rules().Counters("filter.forward")[0].Packets }
	got, drops := sink.n.Load(), blockedHits()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if sink.n.Load() > got {
			return true
		}
		if blockedHits() > drops {
			return false
		}
		time.Sleep(time.Millisecond) // polling a counter, not waiting for time to pass
	}
	t.Fatalf("datagram to %s:%d neither arrived nor was dropped", dst, port)
	return false
}

// A set element added at runtime changes the verdict of the next packet,
// deleting it reverts that, both families; the file's elements cannot be
// deleted; errors are clear.
func TestSetAddDelete(t *testing.T) {
	client := admintest.NewHost(t, "10.10.0.2", "fd10::2")
	server := admintest.NewHost(t, "198.18.0.2", "2001:db8:1::2")
	g, _ := admintest.Gateway(t, withSetRule(setsConfig), client, server)
	_, sock := serve(t, g)
	sink4 := listenSink(t, server, "198.18.0.2", 7000)
	sink6 := listenSink(t, server, "2001:db8:1::2", 7000)
	if !sendOne(t, g, client, sink4, "198.18.0.2", 7000) || !sendOne(t, g, client, sink6, "2001:db8:1::2", 7000) {
		t.Fatal("dropped before any set change")
	}
	out, msg, err := do(t, sock, &Request{Cmd: "set add", Set: "blocked", Elements: []string{"198.18.0.2", "2001:db8:1::/64"}})
	if err != nil || out != "" || msg != "2 elements added to set blocked" {
		t.Fatalf("set add: %q %q %v", out, msg, err)
	}
	if sendOne(t, g, client, sink4, "198.18.0.2", 7000) {
		t.Fatal("v4 packet forwarded after set add")
	}
	if sendOne(t, g, client, sink6, "2001:db8:1::2", 7000) {
		t.Fatal("v6 packet forwarded after set add")
	}
	list := mustDo(t, sock, &Request{Cmd: "set list", Set: "blocked"})
	want := "198.18.0.2 runtime\n203.0.113.0/24 file\n2001:db8:1::/64 runtime\n2001:db8:bad::/48 file\n"
	if list != want {
		t.Fatalf("set list:\n%s\nwant:\n%s", list, want)
	}
	var sets []SetJSON
	if err := json.Unmarshal([]byte(mustDo(t, sock, &Request{Cmd: "set list", Output: "json"})), &sets); err != nil ||
		len(sets) != 1 || sets[0].Set != "blocked" || len(sets[0].Elements) != 4 || sets[0].Elements[0].Origin != "runtime" || sets[0].Elements[0].Expires != nil {
		t.Fatalf("set list -o json: %+v %v", sets, err)
	}
	// The file's element is refused, and the request changes nothing.
	_, _, err = do(t, sock, &Request{Cmd: "set del", Set: "blocked", Elements: []string{"198.18.0.2", "203.0.113.0/24"}})
	if err == nil || !strings.Contains(err.Error(), `set "blocked": cannot delete 203.0.113.0/24: it is in the config file`) {
		t.Fatalf("set del of a file element: %v", err)
	}
	if sendOne(t, g, client, sink4, "198.18.0.2", 7000) {
		t.Fatal("a refused delete changed the set")
	}
	out = mustDo(t, sock, &Request{Cmd: "set del", Set: "blocked", Elements: []string{"198.18.0.2"}, Output: "json"})
	var del struct {
		Set     string   `json:"set"`
		Deleted []string `json:"deleted"`
	}
	if err := json.Unmarshal([]byte(out), &del); err != nil || del.Set != "blocked" || len(del.Deleted) != 1 || del.Deleted[0] != "198.18.0.2" {
		t.Fatalf("set del -o json: %q %v", out, err)
	}
	if !sendOne(t, g, client, sink4, "198.18.0.2", 7000) {
		t.Fatal("v4 packet dropped after set del")
	}
	if sendOne(t, g, client, sink6, "2001:db8:1::2", 7000) {
		t.Fatal("v6 element went with the v4 one")
	}
	for _, c := range []struct {
		req  Request
		want string
	}{
		{Request{Cmd: "set add", Set: "blokced", Elements: []string{"192.0.2.1"}}, `set "blokced": no such set in the config (did you mean "blocked"?)`},
		{Request{Cmd: "set add", Set: "zzz", Elements: []string{"192.0.2.1"}}, `set "zzz": no such set in the config (sets: blocked)`},
		{Request{Cmd: "set list", Set: "zzz"}, `no such set`},
		{Request{Cmd: "set add", Set: "blocked", Elements: []string{"10.0.0.1/8"}}, `bad set element "10.0.0.1/8": host bits set`},
		{Request{Cmd: "set add", Set: "blocked", Elements: []string{"80"}}, `bad set element "80"`},
		{Request{Cmd: "set add", Set: "blocked", Elements: []string{"192.0.2.1"}, Timeout: "soon"}, `timeout: "soon" is not a duration`},
		{Request{Cmd: "set add", Set: "blocked"}, "needs at least one element"},
		{Request{Cmd: "set add", Elements: []string{"192.0.2.1"}}, "needs a set name"},
		{Request{Cmd: "set del", Set: "blocked", Elements: []string{"192.0.2.1"}, Timeout: "1m"}, "set del takes no timeout"},
		{Request{Cmd: "set del", Set: "blocked", Elements: []string{"192.0.2.1"}}, "cannot delete 192.0.2.1: not in the set"},
	} {
		if _, _, err := do(t, sock, &c.req); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.req, err, c.want)
		}
	}
}

// Elements with a timeout expire on the gateway's clock (injected here),
// without any command; set list shows the time left as nft does.
func TestSetTimeout(t *testing.T) {
	clk := &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	client := admintest.NewHost(t, "10.10.0.2", "fd10::2")
	server := admintest.NewHost(t, "198.18.0.2", "2001:db8:1::2")
	g, _ := admintest.GatewayOptions(t, withSetRule(setsConfig), gateway.Options{Clock: clk.now}, client, server)
	_, sock := serve(t, g)
	sink := listenSink(t, server, "198.18.0.2", 7001)
	mustDo(t, sock, &Request{Cmd: "set add", Set: "blocked", Elements: []string{"198.18.0.2"}, Timeout: "10m"})
	clk.advance(2 * time.Second)
	if l := mustDo(t, sock, &Request{Cmd: "set list", Set: "blocked"}); !strings.Contains(l, "198.18.0.2 runtime expires 9m58s\n") {
		t.Fatalf("set list:\n%s", l)
	}
	var sets []SetJSON
	json.Unmarshal([]byte(mustDo(t, sock, &Request{Cmd: "set list", Set: "blocked", Output: "json"})), &sets)
	if len(sets) != 1 || sets[0].Elements[0].ExpiresIn == nil || *sets[0].Elements[0].ExpiresIn != 598 {
		t.Fatalf("set list -o json: %+v", sets)
	}
	if sendOne(t, g, client, sink, "198.18.0.2", 7001) {
		t.Fatal("forwarded before the timeout")
	}
	clk.advance(10 * time.Minute)
	// The sweeper notices within its interval; nothing is asked of it.
	deadline := time.Now().Add(10 * time.Second)
	for len(g.RuntimeState().Sets) != 0 || !sendOne(t, g, client, sink, "198.18.0.2", 7001) {
		if time.Now().After(deadline) {
			t.Fatalf("element did not expire: %+v", g.RuntimeState())
		}
		time.Sleep(time.Millisecond) // polling the condition
	}
	if l := mustDo(t, sock, &Request{Cmd: "set list", Set: "blocked"}); strings.Contains(l, "198.18.0.2") {
		t.Fatalf("expired element listed:\n%s", l)
	}
}

// A reload keeps the runtime layer, also when the file's set changes, and
// status lists the layer apart from the file.
func TestSetReloadKeepsRuntime(t *testing.T) {
	client := admintest.NewHost(t, "10.10.0.2", "fd10::2")
	server := admintest.NewHost(t, "198.18.0.2", "2001:db8:1::2")
	g, path := admintest.Gateway(t, withSetRule(setsConfig), client, server)
	srv, sock := serve(t, g)
	sink := listenSink(t, server, "198.18.0.2", 7002)
	mustDo(t, sock, &Request{Cmd: "set add", Set: "blocked", Elements: []string{"198.18.0.2"}, Timeout: "1h"})
	mustDo(t, sock, &Request{Cmd: "set add", Set: "blocked", Elements: []string{"2001:db8:1::2"}})
	// The new file has other elements in the set.
	next := strings.Replace(withSetRule(setsConfig), `blocked = ["203.0.113.0/24", "2001:db8:bad::/48"]`, `blocked = ["192.0.2.0/24"]`, 1)
	if err := os.WriteFile(path, []byte(next), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if sendOne(t, g, client, sink, "198.18.0.2", 7002) {
		t.Fatal("runtime element lost by the reload")
	}
	l := mustDo(t, sock, &Request{Cmd: "set list", Set: "blocked"})
	if !strings.Contains(l, "192.0.2.0/24 file\n") || strings.Contains(l, "203.0.113.0/24") || !strings.Contains(l, "198.18.0.2 runtime expires 1h\n") {
		t.Fatalf("set list after reload:\n%s", l)
	}
	st := mustDo(t, sock, &Request{Cmd: "status"})
	if !strings.Contains(st, "runtime:     2 set elements on top of the config file\n  set blocked 198.18.0.2 expires 1h\n  set blocked 2001:db8:1::2\n") {
		t.Fatalf("status:\n%s", st)
	}
	var js Status
	if err := json.Unmarshal([]byte(mustDo(t, sock, &Request{Cmd: "status", Output: "json"})), &js); err != nil ||
		len(js.Runtime.SetElements) != 2 || js.Runtime.SetElements[0].Element != "198.18.0.2" || !js.Runtime.SetElements[0].InConfig ||
		js.Runtime.SetElements[0].ExpiresIn == nil || js.Runtime.SetElements[1].ExpiresIn != nil {
		t.Fatalf("status -o json runtime: %+v %v", js.Runtime, err)
	}
	// A reload that drops the set keeps its runtime elements, shown as
	// such, and one that brings it back applies them again.
	noSet := strings.Replace(admintest.Config, "[helpers.ftp]", "[sets]\nother = []\n[helpers.ftp]", 1)
	os.WriteFile(path, []byte(noSet), 0o600)
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if st := mustDo(t, sock, &Request{Cmd: "status"}); !strings.Contains(st, "set blocked 2001:db8:1::2 (set not in the running config)") {
		t.Fatalf("status without the set:\n%s", st)
	}
	if l := mustDo(t, sock, &Request{Cmd: "set list"}); !strings.Contains(l, "set other:\nset blocked:\n  198.18.0.2 runtime expires 1h\n") {
		t.Fatalf("set list of every set:\n%s", l)
	}
	os.WriteFile(path, []byte(next), 0o600)
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if sendOne(t, g, client, sink, "198.18.0.2", 7002) {
		t.Fatal("runtime element not applied when its set came back")
	}
	// The snapshot the state file saves, restored into a fresh gateway.
	state := g.RuntimeState()
	b, err := json.Marshal(state)
	if err != nil {
		t.Fatal(err)
	}
	var back gateway.RuntimeState
	if err := json.Unmarshal(b, &back); err != nil || len(back.Sets) != 2 || back.Sets[0].Expires.IsZero() {
		t.Fatalf("state round trip: %s %v", b, err)
	}
	g2 := admintest.NullGateway(t, 16)
	if _, err := g2.RestoreRuntime(back); err != nil {
		t.Fatal(err)
	}
	if got := g2.RuntimeState(); len(got.Sets) != 2 {
		t.Fatalf("restored: %+v", got)
	}
}

// Sets changed from many clients at once: every change lands, none is
// lost to another.
func TestSetConcurrentChanges(t *testing.T) {
	g2, _ := admintest.Gateway(t, withSetRule(setsConfig), admintest.NewHost(t, "10.10.0.2"), admintest.NewHost(t, "198.18.0.2"))
	_, sock := serve(t, g2)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}).String()
			_, err := Do(context.Background(), sock, &Request{Cmd: "set add", Set: "blocked", Elements: []string{a}}, &strings.Builder{})
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(g2.RuntimeState().Sets); n != 16 {
		t.Fatalf("%d of 16 elements", n)
	}
	if l := mustDo(t, sock, &Request{Cmd: "set list", Set: "blocked"}); strings.Count(l, " runtime\n") != 16 || strings.Count(l, " file\n") != 2 {
		t.Fatalf("set list:\n%s", l)
	}
}
