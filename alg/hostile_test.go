package alg

import (
	"strings"
	"testing"

	"tungate/conntrack"
	"tungate/packet"
)

// TestThirdPartyAddress: an announcement naming anyone but its sender
// opens nothing (FTP bounce, NAT slipstreaming) unless loose is set; then
// the expectation is for the named address, unrewritten.
func TestThirdPartyAddress(t *testing.T) {
	type tc struct {
		v6, nat, fromClient bool
		cmd                 string
		want                conntrack.Tuple // with loose
	}
	for _, c := range []tc{
		{false, true, true, "PORT 10,10,0,9,156,65\r\n", tup("198.18.0.2", "10.10.0.9", 40001, 4)},
		{false, false, true, "PORT 192,0,2,80,0,25\r\n", tup("10.20.0.2", "192.0.2.80", 25, 4)},
		{true, true, true, "EPRT |2|fd10::9|40001|\r\n", tup("2001:db8:1::2", "fd10::9", 40001, 6)},
		{false, true, false, "227 Entering Passive Mode (192,0,2,7,19,137)\r\n", tup("10.10.0.2", "192.0.2.7", 5001, 4)},
		{true, false, true, "EPRT |2|2001:db8:66::1|25|\r\n", tup("fd20::2", "2001:db8:66::1", 25, 6)},
	} {
		for _, loose := range []bool{false, true} {
			var g *gateway
			var x *session
			cfg := &FTPConfig{Loose: loose}
			if c.nat {
				g, x = masqGateway(t, c.v6, cfg)
			} else {
				g = newGateway(t, Config{FTP: cfg})
				if c.v6 {
					x = g.open("[fd10::2]:40000", "[fd20::2]:21", "[fd20::2]:21")
				} else {
					x = g.open("10.10.0.2:40000", "10.20.0.2:21", "10.20.0.2:21")
				}
			}
			sg := x.send(c.fromClient, c.cmd)
			if string(sg.payload) != c.cmd {
				t.Errorf("%q loose=%v: third-party announcement rewritten to %q", c.cmd, loose, sg.payload)
			}
			es := g.expectations()
			if !loose {
				if len(es) != 0 {
					t.Errorf("%q: expectation created without loose", c.cmd)
				}
				if g.m.Stats.Ignored.Load() != 1 {
					t.Errorf("%q: ignored count %d, want 1", c.cmd, g.m.Stats.Ignored.Load())
				}
				continue
			}
			if len(es) != 1 || es[0].Tuple != c.want {
				t.Errorf("%q loose: expectations %v, want one for %+v", c.cmd, es, c.want)
			}
		}
	}
}

// TestNoHelperNoParsing: a connection without the helper (port not
// configured, no rule) is never parsed, and never enters Process.
func TestNoHelperNoParsing(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		g := newGateway(t, Config{FTP: &FTPConfig{}})
		g.masquerade("10.10.0.0/24", "198.18.0.1")
		g.masquerade("fd10::/64", "2001:db8:1::1")
		cli, srv, cmd := "10.10.0.2:40000", "198.18.0.2:2121", "PORT 10,10,0,2,156,65\r\n"
		if v6 {
			cli, srv, cmd = "[fd10::2]:40000", "[2001:db8:1::2]:2121", "EPRT |2|fd10::2|40001|\r\n"
		}
		x := g.open(cli, srv, srv)
		if x.ctrl.Ext() != nil {
			t.Fatal("connection to an unconfigured port got an extension")
		}
		sg := x.send(true, cmd)
		if string(sg.payload) != cmd || g.tbl.ExpectationCount() != 0 {
			t.Fatalf("unhelped connection was parsed: %q, %d expectations", sg.payload, g.tbl.ExpectationCount())
		}
		if Wanted(&x.lastIn) {
			t.Fatal("Wanted is true for a connection without helper")
		}
		// An extension for NAT's own use does not make Process wanted.
		x.ctrl.EnsureExt().NAT = struct{}{}
		if Wanted(&x.lastIn) {
			t.Fatal("Wanted is true for a NAT-only extension")
		}
	}
}

// TestMalformedAnnouncements: absurd numbers are ignored (counted), the
// packet passes untouched, nothing is expected.
func TestMalformedAnnouncements(t *testing.T) {
	client := []string{
		"PORT 256,10,0,2,156,65\r\n",
		"PORT 10,10,0,2,256,1\r\n",
		"PORT 10,10,0,2,-1,65\r\n",
		"PORT -10,10,0,2,156,65\r\n",
		"PORT 10,10,0,2,99999999999999999999999,65\r\n",
		"PORT 10,10,0,2,156,4294967361\r\n",
		"PORT 0010,10,0,2,156,65\r\n",
		"PORT 10,10,0,2,0,0\r\n",
		"PORT 10,10,0,2,156\r\n",
		"PORT 10,10,0,2,156,65,7\r\n",
		"PORT 10,10,0,2,156,65 junk\r\n",
		"PORT \r\n",
		"EPRT |1|10.10.0.2|70000|\r\n",
		"EPRT |1|10.10.0.2|0|\r\n",
		"EPRT |1|10.10.0.2|-5|\r\n",
		"EPRT |1|10.10.0.2|123456|\r\n",
		"EPRT |1|10.10.0.256|40001|\r\n",
		"EPRT |1|10.10.0|40001|\r\n",
		"EPRT |3|10.10.0.2|40001|\r\n",
		"EPRT |2|10.10.0.2|40001|\r\n",
		"EPRT |1|10.10.0.2|40001\r\n",
		"EPRT 1|10.10.0.2|40001|\r\n",
		"EPRT |1|" + strings.Repeat("1", 300) + "|40001|\r\n",
	}
	server := []string{
		"227 Entering Passive Mode (300,18,0,2,19,137)\r\n",
		"227 Entering Passive Mode (198,18,0,2,19,1370)\r\n",
		"227 Entering Passive Mode (198,18,0,2,0,0)\r\n",
		"227 Entering Passive Mode\r\n",
		"229 Entering Extended Passive Mode (|||0|)\r\n",
		"229 Entering Extended Passive Mode (|||65536|)\r\n",
		"229 Entering Extended Passive Mode (|||-1|)\r\n",
		"229 Entering Extended Passive Mode (||5001|)\r\n",
		"229 Entering Extended Passive Mode (|||" + strings.Repeat("9", 40) + "|)\r\n",
	}
	g, x := masqGateway(t, false, nil)
	for _, c := range client {
		if sg := x.send(true, c); string(sg.payload) != c {
			t.Errorf("%q rewritten to %q", c, sg.payload)
		}
	}
	for _, c := range server {
		if sg := x.send(false, c); string(sg.payload) != c {
			t.Errorf("%q rewritten to %q", c, sg.payload)
		}
	}
	if n := g.tbl.ExpectationCount(); n != 0 {
		t.Errorf("%d expectations from malformed announcements", n)
	}
	if got, want := g.m.Stats.Ignored.Load(), uint64(len(client)+len(server)); got != want {
		t.Errorf("ignored %d, want %d", got, want)
	}
	// IPv4 forms on an IPv6 connection, and |1| there, are ignored too.
	g, x = masqGateway(t, true, nil)
	x.send(true, "PORT 10,10,0,2,156,65\r\n")
	x.send(true, "EPRT |1|10.10.0.2|40001|\r\n")
	x.send(false, "227 Entering Passive Mode (198,18,0,2,19,137)\r\n")
	if n := g.tbl.ExpectationCount(); n != 0 || g.m.Stats.Ignored.Load() != 3 {
		t.Errorf("foreign-family announcements: %d expectations, %d ignored", n, g.m.Stats.Ignored.Load())
	}
}

// TestNotAtLineStart: a command is recognised only at the start of a
// line, however the text falls into segments (the NAT slipstreaming
// trick puts it at the start of a segment in mid-line).
func TestNotAtLineStart(t *testing.T) {
	g, x := masqGateway(t, false, nil)
	for _, s := range []string{
		"NOOP PORT 10,10,0,2,156,65\r\n",
		"XPORT 10,10,0,2,156,65\r\n",
		" PORT 10,10,0,2,156,65\r\n",
		"PORT\t10,10,0,2,156,65\r\n", // RFC 959: SP, nothing else
		"STOR a\rPORT 10,10,0,2,156,65\r\n",
		"200 ok 227 Entering Passive Mode (10,10,0,2,19,137)\r\n",
	} {
		x.send(true, s)
	}
	x.send(true, "POST /x HTTP/1.1 ")
	x.send(true, "PORT 10,10,0,2,156,65\r\n")
	if n := g.tbl.ExpectationCount(); n != 0 {
		t.Fatalf("%d expectations from text not at a line start", n)
	}
	x.send(true, "PORT 10,10,0,2,156,65\r\n")
	if n := g.tbl.ExpectationCount(); n != 1 {
		t.Fatalf("the real command after them: %d expectations", n)
	}
}

// TestLongLine: a line longer than the buffer is not parsed, whatever it
// contains, split or not, and the connection goes on; the next line is.
func TestLongLine(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		g, x := masqGateway(t, v6, nil)
		cmd := "PORT 10,10,0,2,156,65\r\n"
		if v6 {
			cmd = "EPRT |2|fd10::2|40001|\r\n"
		}
		long := "SITE " + strings.Repeat("A", 3000) + "\r\n" + cmd[:4]
		// In pieces: the long line crosses several segments and grows
		// beyond maxLine while held.
		for i := 0; i < len(long); i += 700 {
			x.send(true, long[i:min(i+700, len(long))])
		}
		x.send(true, cmd[4:])
		if n := g.tbl.ExpectationCount(); n != 1 {
			t.Fatalf("v6=%v: command after the long line: %d expectations", v6, n)
		}
		// A long line whose tail looks like a command is not one.
		x.send(true, strings.Repeat("B", 1500)+cmd)
		x.send(true, strings.Repeat("C", 900))
		x.send(true, strings.Repeat("C", 900)+"\r\n"+cmd)
		if got := g.m.Stats.LongLines.Load(); got < 2 {
			t.Errorf("v6=%v: long lines counted %d", v6, got)
		}
		es := g.expectations()
		if len(es) != 1 {
			t.Fatalf("v6=%v: %d expectations", v6, len(es))
		}
		cs := x.ctrl.Ext().HelperData.(*connState)
		st := cs.x.State.(*ftpState)
		for d := range st.dir {
			if c := cap(st.dir[d].line); c > maxLine {
				t.Errorf("line buffer grew to %d", c)
			}
		}
	}
}

// TestTenThousandPORTs: a hostile client cannot grow memory: at most
// max_expected expectations exist, the remembered rewrites and the line
// buffer stay bounded, and the session stays consistent. Segments carry
// seven commands and the start of an eighth; one with more commands than
// a segment may have rewritten is dropped without a trace.
func TestTenThousandPORTs(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		g, x := masqGateway(t, v6, nil)
		cmd := func(i int) string {
			p := 1024 + i%60000
			if v6 {
				return "EPRT |2|fd10::2|" + itoa(p) + "|\r\n"
			}
			return "PORT 10,10,0,2," + itoa(p>>8) + "," + itoa(p&0xff) + "\r\n"
		}
		var want strings.Builder
		carry := ""
		for i := 0; i < 10000; i += 7 {
			var b strings.Builder
			first := i
			if carry != "" {
				b.WriteString(carry) // the rest of cmd(i)
				first++
			}
			for j := first; j < min(i+7, 10000); j++ {
				b.WriteString(cmd(j))
			}
			carry = ""
			if i+7 < 10000 {
				next := cmd(i + 7)
				b.WriteString(next[:4])
				carry = next[4:]
			}
			before := len(x.s.got)
			if sg := x.send(true, b.String()); sg.dropped {
				t.Fatalf("v6=%v: segment %d dropped", v6, i/7)
			}
			want.WriteString(string(x.s.got[before:]))
			if i%700 == 0 {
				x.ack(false) // keep within the server's window
			}
		}
		if strings.Contains(want.String(), "10,10,0,2") || strings.Contains(want.String(), "fd10::2") {
			t.Errorf("v6=%v: an internal address reached the server", v6)
		}
		if n := g.tbl.ExpectationCount(); n != 1 {
			t.Errorf("v6=%v: %d expectations, want 1", v6, n)
		}
		cs := x.ctrl.Ext().HelperData.(*connState)
		if n := len(cs.tcp[conntrack.DirOriginal].rewrites); n > maxRewrites {
			t.Errorf("v6=%v: %d rewrites remembered", v6, n)
		}
		if got := g.m.Stats.Mangled.Load(); got != 10000 {
			t.Errorf("v6=%v: %d rewrites for 10000 commands", v6, got)
		}
		x.send(false, "200 ok\r\n")

		// Twenty rewrites in one segment: dropped, nothing kept.
		var b strings.Builder
		for j := range 20 {
			b.WriteString(cmd(j))
		}
		adj := x.ctrl.Ext().SeqAdj
		start := x.c.snd
		if sg := x.send(true, b.String()); !sg.dropped {
			t.Fatalf("v6=%v: segment with 20 rewrites passed", v6)
		}
		if x.ctrl.Ext().SeqAdj != adj || len(cs.tcp[conntrack.DirOriginal].rewrites) > maxRewrites {
			t.Fatalf("v6=%v: the dropped segment left a sequence adjustment or rewrites behind", v6)
		}
		// Resent in smaller segments, it goes through.
		x.c.snd = start
		for j := 0; j < 20; j += 5 {
			var b strings.Builder
			for k := j; k < j+5; k++ {
				b.WriteString(cmd(k))
			}
			if sg := x.send(true, b.String()); sg.dropped {
				t.Fatalf("v6=%v: resent part dropped", v6)
			}
		}
		x.send(false, "200 ok\r\n")
	}
}

func itoa(v int) string {
	if v == 0 {
		return "0"
	}
	var b []byte
	for ; v > 0; v /= 10 {
		b = append([]byte{byte('0' + v%10)}, b...)
	}
	return string(b)
}

// TestNoRoomToGrow: a packet whose buffer cannot grow is dropped rather
// than sent unrewritten, and no expectation stays behind.
func TestNoRoomToGrow(t *testing.T) {
	g, x := masqGateway(t, false, nil)
	b := buildTCP(x.c.me, x.c.peer, x.c.snd, x.c.rcv, packet.TCPAck, nil, []byte("PORT 10,10,0,2,156,65\r\n"))
	b = b[:len(b):len(b)]
	if out, _ := g.fwd(b); out != nil {
		t.Fatal("unrewritable packet passed")
	}
	if n := g.tbl.ExpectationCount(); n != 0 {
		t.Fatalf("%d expectations left after the failed rewrite", n)
	}
	// The retransmission with room goes through rewritten.
	sg := x.send(true, "PORT 10,10,0,2,156,65\r\n")
	if string(sg.payload) != "PORT 198,18,0,1,156,65\r\n" || g.tbl.ExpectationCount() != 1 {
		t.Fatalf("retransmission: %q, %d expectations", sg.payload, g.tbl.ExpectationCount())
	}
}
