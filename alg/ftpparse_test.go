package alg

import (
	"bytes"
	"testing"

	"tungate/conntrack"
)

func TestParseForms(t *testing.T) {
	orig, reply := conntrack.DirOriginal, conntrack.DirReply
	for _, c := range []struct {
		d    conntrack.Dir
		line string
		kind ftpKind
		addr string
		port uint16
		arg  string
	}{
		{orig, "PORT 10,10,0,2,156,65\r\n", ftpPORT, "10.10.0.2", 40001, "10,10,0,2,156,65"},
		{orig, "port  10,10,0,2,156,65 \r\n", ftpPORT, "10.10.0.2", 40001, "10,10,0,2,156,65"},
		{orig, "PORT 10,10,0,2,156,65\n", ftpPORT, "10.10.0.2", 40001, "10,10,0,2,156,65"},
		{orig, "EPRT |1|132.235.1.2|6275|\r\n", ftpEPRT, "132.235.1.2", 6275, "|1|132.235.1.2|6275|"},
		{orig, "eprt !2!1080::8:800:200c:417a!5282!\r\n", ftpEPRT, "1080::8:800:200c:417a", 5282, "!2!1080::8:800:200c:417a!5282!"},
		{reply, "227 Entering Passive Mode (198,18,0,2,19,137).\r\n", ftpPASV, "198.18.0.2", 5001, "198,18,0,2,19,137"},
		{reply, "227 Entering Passive Mode 198,18,0,2,19,137\r\n", ftpPASV, "198.18.0.2", 5001, "198,18,0,2,19,137"},
		{reply, "227 =198,18,0,2,19,137\r\n", ftpPASV, "198.18.0.2", 5001, "198,18,0,2,19,137"},
		{reply, "227 Passive mode v2 (198,18,0,2,19,137) ok\r\n", ftpPASV, "198.18.0.2", 5001, "198,18,0,2,19,137"},
		{reply, "227 Entering Passive Mode (1,2,3,4,5,6) and 7,8,9,10,11,12\r\n", ftpPASV, "1.2.3.4", 1286, "1,2,3,4,5,6"},
		{reply, "229 Entering Extended Passive Mode (|||6446|)\r\n", ftpEPSV, "", 6446, "|||6446|"},
		{reply, "229 Entering Extended Passive Mode |||6446|\r\n", ftpEPSV, "", 6446, "|||6446|"},
		{reply, "229 EPSV ok (!!!65535!)\r\n", ftpEPSV, "", 65535, "!!!65535!"},
	} {
		cmd, ok, _ := parseFTPLine([]byte(c.line), c.d)
		if !ok || cmd.kind != c.kind || cmd.port != c.port {
			t.Errorf("%q: %+v ok=%v", c.line, cmd, ok)
			continue
		}
		if c.addr != "" && cmd.addr != addr(c.addr) {
			t.Errorf("%q: address %v", c.line, cmd.addr.NetIP(cmd.family))
		}
		if got := c.line[cmd.start:cmd.end]; got != c.arg {
			t.Errorf("%q: argument %q, want %q", c.line, got, c.arg)
		}
		// Commands are never looked for in the other direction.
		if _, ok, bad := parseFTPLine([]byte(c.line), 1-c.d); ok || bad {
			t.Errorf("%q parsed in the wrong direction", c.line)
		}
	}
}

// FuzzParseFTPLine: the parser never panics, its argument range lies in
// the line, and a rewrite of that range with the parsed values parses back
// to the same announcement.
func FuzzParseFTPLine(f *testing.F) {
	for _, s := range []string{
		"PORT 10,10,0,2,156,65\r\n", "EPRT |1|10.10.0.2|40001|\r\n", "EPRT |2|fd10::2|1|\r\n",
		"227 Entering Passive Mode (198,18,0,2,19,137).\r\n", "227 =1,2,3,4,5,6\n",
		"229 Entering Extended Passive Mode (|||6446|)\r\n", "PORT 999,1,1,1,1,1\r\n", "229 (|||\r\n",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, line []byte, reply bool) {
		d := conntrack.DirOriginal
		if reply {
			d = conntrack.DirReply
		}
		cmd, ok, bad := parseFTPLine(line, d)
		if s := argStart(line, d); s >= len(line) {
			t.Fatalf("argStart %d beyond the line", s)
		}
		if !ok {
			return
		}
		if bad || cmd.start < 0 || cmd.end > len(line) || cmd.start >= cmd.end || cmd.port == 0 {
			t.Fatalf("%q: %+v", line, cmd)
		}
		if s := argStart(line, d); s < 0 || s > cmd.start {
			t.Fatalf("%q: argStart %d after the argument at %d", line, s, cmd.start)
		}
		if cmd.kind == ftpEPSV {
			cmd.family = 4
		}
		arg := appendArg(nil, &cmd, cmd.addr, cmd.port)
		again := append(append(append([]byte(nil), line[:cmd.start]...), arg...), line[cmd.end:]...)
		c2, ok, _ := parseFTPLine(again, d)
		if !ok || c2.kind != cmd.kind || c2.port != cmd.port || (cmd.kind != ftpEPSV && c2.addr != cmd.addr) {
			t.Fatalf("%q rewritten as %q parses to %+v", line, again, c2)
		}
		if !bytes.Equal(again[c2.start:c2.end], arg) {
			t.Fatalf("%q: rewritten argument %q found as %q", again, arg, again[c2.start:c2.end])
		}
	})
}
