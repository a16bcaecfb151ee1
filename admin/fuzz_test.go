package admin

import (
	"bytes"
	"io"
	"testing"
	"time"

	"go.uber.org/zap"

	"tungate/admin/admintest"
	"tungate/gateway"
)

// FuzzRequest feeds arbitrary request lines, JSON or the old one-line
// form, through parsing and the server's handler over a table with known
// entries: a request is answered or refused with an error, never a panic
// or a hang. `ct events` and `capture` are left out (they stream until
// the client goes), and so are reload and the flushes, which would only
// empty the table the next inputs need. The set commands run against a
// set "blocked".
func FuzzRequest(f *testing.F) {
	for _, seed := range []string{
		"ct list", "ct list json", "ct expect", "ct stats", "status", "stats", "rules", "wg show",
		`{"cmd":"ct list","output":"json","filter":{"proto":"tcp","src":"10.10.0.0/24","dport":80}}`,
		`{"cmd":"ct count","filter":{"status":["ASSURED"],"mark":"0x12/0xff"}}`,
		`{"cmd":"ct delete","filter":{"id":7}}`,
		`{"cmd":"expect list","output":"id","filter":{"family":"ipv6"}}`,
		`{"cmd":"ct list","filter":{"reply_src":"::/0","state":"ESTABLISHED","helper":"ftp"}}`,
		`{"cmd":"ct list","output":"yaml"}`, `{"cmd":`, "", "\x00\xff",
		`{"cmd":"set add","set":"blocked","elements":["192.0.2.1","2001:db8::/32"],"timeout":"10m"}`,
		`{"cmd":"set del","set":"blocked","elements":["192.0.2.1"]}`,
		`{"cmd":"set del","set":"blocked","elements":["203.0.113.0/24"]}`,
		`{"cmd":"set list","set":"blocked","output":"json"}`, "set list",
		`{"cmd":"set add","set":"nope","elements":["10.0.0.1/8"],"timeout":"-1s"}`,
	} {
		f.Add(seed)
	}
	g := admintest.NullGateway(f, 4096)
	cfg, err := gateway.ParseConfig([]byte(admintest.Config + "[sets]\nblocked = [\"203.0.113.0/24\"]\n"))
	if err != nil {
		f.Fatal(err)
	}
	if err := g.ReloadConfig(cfg); err != nil {
		f.Fatal(err)
	}
	tab := g.Table()
	s := &Server{g: g, log: zap.NewNop(), started: time.Now()}
	refill := func(t *testing.T) {
		if tab.Count() > 0 {
			return
		}
		admintest.Insert(t, tab, admintest.Conn{Src: "10.10.0.2", Dst: "198.18.0.2", Sport: 40000, Dport: 80, Proto: 6})
		admintest.Insert(t, tab, admintest.Conn{Src: "fd10::2", Dst: "2001:db8:1::2", Sport: 5353, Dport: 53, Proto: 17, Mark: 0x12})
	}
	f.Fuzz(func(t *testing.T, line string) {
		refill(t)
		req, err := parseRequest(line)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("a refused request needs a reason")
			}
			return
		}
		switch req.Cmd {
		case "ct events", "reload", "ct flush", "expect flush", "capture":
			return
		}
		var out bytes.Buffer
		fw := newFrameWriter(&out)
		if _, err := s.handle(nil, fw, req); err != nil && err.Error() == "" {
			t.Fatal("an error without a reason")
		}
		fw.end(frameOK, "")
		// What the server wrote is a stream the client reads to its end.
		if _, err := readFrames(&out, io.Discard); err != nil {
			t.Fatalf("the server's own answer to %q does not read back: %v", line, err)
		}
	})
}

// FuzzReadFrames: the client reads whatever a socket hands it without a
// panic, and a stream without its end frame is an error, never success.
func FuzzReadFrames(f *testing.F) {
	var good bytes.Buffer
	fw := newFrameWriter(&good)
	fw.WriteString("tcp 6 10 ESTABLISHED src=10.0.0.1\n")
	fw.end(frameOK, "done")
	f.Add(good.Bytes())
	f.Add([]byte{frameData, 0, 0, 0, 3, 'a', 'b'})
	f.Add([]byte{frameError, 0, 0, 0, 2, 'n', 'o'})
	f.Add([]byte{frameData, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := readFrames(bytes.NewReader(b), io.Discard)
		if err == nil && !bytes.Contains(b, []byte{frameOK}) {
			t.Fatalf("a stream without an OK frame read as success: %q", b)
		}
	})
}
