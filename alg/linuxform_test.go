package alg

import (
	"testing"
)

// TestLinuxRewriteForm: rewritten announcements carry exactly the bytes
// Linux's nf_nat_ftp writes ('|' delimiters, %pI6, numbers in normal
// form), also for a sender whose own address NAT left alone, as long as
// the connection has any NAT; the stream's sequence numbers follow every
// length change (deliver checks each segment and ack).
func TestLinuxRewriteForm(t *testing.T) {
	type tc struct {
		name       string
		v6, dnat   bool
		fromClient bool
		cmd, want  string
	}
	for _, c := range []tc{
		{"EPRT!/v4", false, false, true, "EPRT !1!10.10.0.2!40001!\r\n", "EPRT |1|198.18.0.1|40001|\r\n"},
		{"EPRT!/v6", true, false, true, "EPRT !2!fd10::2!40001!\r\n", "EPRT |2|2001:0db8:0001:0000:0000:0000:0000:0001|40001|\r\n"},
		{"229!/v4", false, false, false, "229 Entering Extended Passive Mode (!!!5001!)\r\n", "229 Entering Extended Passive Mode (|||5001|)\r\n"},
		{"229#/v6", true, false, false, "229 Entering Extended Passive Mode (###05001#)\r\n", "229 Entering Extended Passive Mode (|||5001|)\r\n"},
		// The server's address is real (masquerade): normalised anyway.
		{"227-zeros/masq", false, false, false, "227 Entering Passive Mode (198,018,000,002,019,137).\r\n", "227 Entering Passive Mode (198,18,0,2,19,137).\r\n"},
		// A DNATed server's own address is translated; the client's is
		// not, and its PORT is normalised.
		{"PORT-zeros/dnat", false, true, true, "PORT 203,000,113,005,156,065\r\n", "PORT 203,0,113,5,156,65\r\n"},
		{"EPRT-v6/dnat", true, true, true, "EPRT |2|2001:db8:9::5|40001|\r\n", "EPRT |2|2001:0db8:0009:0000:0000:0000:0000:0005|40001|\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var g *gateway
			var x *session
			switch {
			case c.dnat && c.v6:
				g = newGateway(t, Config{FTP: &FTPConfig{}})
				g.dnatFrom, g.dnatTo = ap("[2001:db8:1::1]:21"), ap("[fd10::5]:21")
				x = g.open("[2001:db8:9::5]:40000", "[2001:db8:1::1]:21", "[fd10::5]:21")
			case c.dnat:
				g = newGateway(t, Config{FTP: &FTPConfig{}})
				g.dnatFrom, g.dnatTo = ap("198.18.0.1:21"), ap("10.10.0.5:21")
				x = g.open("203.0.113.5:40000", "198.18.0.1:21", "10.10.0.5:21")
			default:
				g, x = masqGateway(t, c.v6, nil)
			}
			x.send(false, "220 hello\r\n")
			sg := x.send(c.fromClient, c.cmd)
			if string(sg.payload) != c.want {
				t.Fatalf("sent %q, want %q", sg.payload, c.want)
			}
			if n := g.tbl.ExpectationCount(); n != 1 {
				t.Fatalf("%d expectations, want 1", n)
			}
			// Both ways go on with the offset applied (or none).
			for range 3 {
				x.send(!c.fromClient, "200 OK\r\n")
				x.send(c.fromClient, "NOOP\r\n")
			}
			x.ack(true)
			x.ack(false)
		})
	}
}

// TestNoNATNoRewrite: without any NAT nothing is normalised (Linux calls
// nf_nat_ftp only for a connection with NAT status).
func TestNoNATNoRewrite(t *testing.T) {
	g, x := plainGateway(t, false)
	for _, c := range []struct {
		fromClient bool
		line       string
	}{
		{false, "227 Entering Passive Mode (010,020,000,002,019,137).\r\n"},
		{true, "EPRT !1!10.10.0.2!40001!\r\n"},
		{true, "PORT 010,010,000,002,156,065\r\n"},
	} {
		sg := x.send(c.fromClient, c.line)
		if string(sg.payload) != c.line {
			t.Fatalf("without NAT %q became %q", c.line, sg.payload)
		}
	}
	if n := g.m.Stats.Mangled.Load(); n != 0 {
		t.Errorf("%d rewrites without NAT", n)
	}
}

// TestPartialWordDropped: where the sender's announcements are rewritten
// (its address is translated), a segment at a line start holding no more
// than the start of an announcement's word is dropped, as Linux's
// find_pattern reports a partial match; the resent whole line passes
// rewritten. Elsewhere such segments pass.
func TestPartialWordDropped(t *testing.T) {
	for _, c := range []struct {
		part    string
		dropped bool
	}{
		{"P", true}, {"po", true}, {"PoR", true}, {"PORT", true}, {"PORT ", true}, {"PORT   ", true},
		{"E", true}, {"EPRT", true}, {"eprt ", true},
		{"PX", false}, {"PORTS", false}, {"NOOP\r\nPO", false}, {" PO", false},
	} {
		g, x := masqGateway(t, false, nil)
		x.send(true, "NOOP\r\n")
		start := x.c.snd
		sg := x.send(true, c.part)
		if sg.dropped != c.dropped {
			t.Fatalf("%q: dropped %v, want %v", c.part, sg.dropped, c.dropped)
		}
		if !sg.dropped {
			continue
		}
		if g.m.Stats.Held.Load() != 1 {
			t.Errorf("%q: Held %d, want 1", c.part, g.m.Stats.Held.Load())
		}
		out, _ := x.sendRaw(true, start, "PORT 10,10,0,2,156,65\r\n")
		if out == nil {
			t.Fatalf("%q: the whole line resent was dropped", c.part)
		}
		if sg := x.deliver(x.s, out); string(sg.payload) != "PORT 198,18,0,1,156,65\r\n" {
			t.Fatalf("%q: resent line reached the server as %q", c.part, sg.payload)
		}
		if n := g.tbl.ExpectationCount(); n != 1 {
			t.Fatalf("%q: %d expectations", c.part, n)
		}
	}
	// The reply direction of a DNATed server: "227 "/"229 ".
	for _, part := range []string{"2", "22", "227", "229 ", "227  "} {
		g := newGateway(t, Config{FTP: &FTPConfig{}})
		g.dnatFrom, g.dnatTo = ap("198.18.0.1:21"), ap("10.10.0.5:21")
		x := g.open("203.0.113.5:40000", "198.18.0.1:21", "10.10.0.5:21")
		x.send(false, "220 hello\r\n")
		if sg := x.send(false, part); !sg.dropped {
			t.Fatalf("server %q passed", part)
		}
	}
	// Not translated (masquerade: the server; no NAT: anyone): passes.
	_, x := masqGateway(t, false, nil)
	if sg := x.send(false, "22"); sg.dropped {
		t.Fatal("untranslated server's \"22\" dropped")
	}
	_, x = plainGateway(t, true)
	if sg := x.send(true, "PO"); sg.dropped {
		t.Fatal("\"PO\" dropped without NAT")
	}
}

// TestUntranslatedSplitPasses: a masqueraded connection's server (its
// address real) sends a 227 in two parts: both pass as sent (nothing
// held), and the expectation comes with the line end; whole, the same
// line would have been normalised.
func TestUntranslatedSplitPasses(t *testing.T) {
	g, x := masqGateway(t, false, nil)
	line := "227 Entering Passive Mode (198,018,0,2,19,137).\r\n"
	for _, part := range []string{line[:32], line[32:]} {
		if sg := x.send(false, part); sg.dropped || string(sg.payload) != part {
			t.Fatalf("part %q: dropped %v, delivered %q", part, sg.dropped, sg.payload)
		}
	}
	es := g.expectations()
	if len(es) != 1 || es[0].Tuple != tup("10.10.0.2", "198.18.0.2", 5001, 4) {
		t.Fatalf("expectations %+v", es)
	}
}
