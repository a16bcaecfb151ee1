package alg

import (
	"net/netip"
	"testing"
	"time"

	"tungate/conntrack"
	"tungate/packet"
)

// TestExpectationReplacedByNewPORT: with max_expected 1 (the default) a
// new PORT replaces the waiting expectation, as in Linux; with 3, the
// fourth replaces the oldest.
func TestExpectationReplacedByNewPORT(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		cmd := func(p int) string {
			if v6 {
				return "EPRT |2|fd10::2|" + itoa(p) + "|\r\n"
			}
			return "PORT 10,10,0,2," + itoa(p>>8) + "," + itoa(p&0xff) + "\r\n"
		}
		g, x := masqGateway(t, v6, nil)
		x.send(true, cmd(40001))
		x.send(true, cmd(40002))
		es := g.expectations()
		if len(es) != 1 || es[0].Tuple.DstPort != 40002 {
			t.Fatalf("v6=%v: expectations %d (port %d), want one for 40002", v6, len(es), es[0].Tuple.DstPort)
		}
		g, x = masqGateway(t, v6, &FTPConfig{MaxExpected: 3})
		for p := 40001; p <= 40004; p++ {
			x.send(true, cmd(p))
		}
		ports := map[uint16]bool{}
		for _, e := range g.expectations() {
			ports[e.Tuple.DstPort] = true
		}
		if len(ports) != 3 || ports[40001] {
			t.Fatalf("v6=%v: ports %v, want 40002-40004", v6, ports)
		}
	}
}

// TestExpectationDiesWithMaster: deleting the control connection removes
// its expectations; a later data connection is NEW, not RELATED.
func TestExpectationDiesWithMaster(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		g, x := masqGateway(t, v6, nil)
		if v6 {
			x.send(false, "229 Entering Extended Passive Mode (|||5001|)\r\n")
		} else {
			x.send(false, "227 Entering Passive Mode (198,18,0,2,19,137)\r\n")
		}
		if g.tbl.ExpectationCount() != 1 {
			t.Fatal("no expectation")
		}
		g.tbl.Delete(x.ctrl)
		if n := g.tbl.ExpectationCount(); n != 0 {
			t.Fatalf("v6=%v: %d expectations outlive their master", v6, n)
		}
		from, to := "10.10.0.2:40002", "198.18.0.2:5001"
		if v6 {
			from, to = "[fd10::2]:40002", "[2001:db8:1::2]:5001"
		}
		_, res := g.fwd(buildTCP(ap(from), ap(to), 1, 0, packet.TCPSyn, nil, nil))
		if res.Info != conntrack.New || res.Conn.Master() != nil {
			t.Fatalf("v6=%v: data connection after the master died: %v", v6, res.Info)
		}
	}
}

// TestExpectationTimeout: an expectation lapses after the configured
// timeout.
func TestExpectationTimeout(t *testing.T) {
	g, x := masqGateway(t, false, &FTPConfig{Timeout: conntrack.Duration(2 * time.Second)})
	x.send(true, "PORT 10,10,0,2,156,65\r\n")
	es := g.expectations()
	if len(es) != 1 {
		t.Fatal("no expectation")
	}
	now := g.tbl.Now()
	if left := time.Duration(es[0].Expires - now); left <= time.Second || left > 2*time.Second {
		t.Fatalf("expectation expires in %v, want about 2s", left)
	}
	g.tbl.GC(now+int64(3*time.Second), 1)
	if n := g.tbl.ExpectationCount(); n != 0 {
		t.Fatalf("%d expectations after their timeout", n)
	}
}

// TestTFTP: a read or write request makes the server's answer from a new
// port RELATED, with NAT followed; other opcodes expect nothing.
func TestTFTP(t *testing.T) {
	type tc struct {
		name             string
		cli, srv, real   string
		masq             []string
		inside           string
		op               byte
		reply            string // the server's answer: from, to as sent
		replyTo, wantsAt string
	}
	for _, c := range []tc{
		{"RRQ/v4/masq", "10.10.0.2:3333", "198.18.0.2:69", "198.18.0.2:69", []string{"198.18.0.1"}, "10.10.0.0/24", 1,
			"198.18.0.2:4444", "198.18.0.1:3333", "10.10.0.2:3333"},
		{"WRQ/v6/masq", "[fd10::2]:3333", "[2001:db8:1::2]:69", "[2001:db8:1::2]:69", []string{"2001:db8:1::1"}, "fd10::/64", 2,
			"[2001:db8:1::2]:4444", "[2001:db8:1::1]:3333", "[fd10::2]:3333"},
		{"RRQ/v4/plain", "10.10.0.2:3333", "10.20.0.2:69", "10.20.0.2:69", nil, "", 1,
			"10.20.0.2:4444", "10.10.0.2:3333", "10.10.0.2:3333"},
		{"RRQ/v6/DNAT", "[2001:db8:9::5]:3333", "[2001:db8:1::1]:69", "[fd10::5]:69", nil, "", 1,
			"[fd10::5]:4444", "[2001:db8:9::5]:3333", "[2001:db8:9::5]:3333"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newGateway(t, Config{TFTP: &TFTPConfig{}})
			if c.masq != nil {
				g.masquerade(c.inside, c.masq...)
			}
			if c.srv != c.real {
				g.dnatFrom, g.dnatTo = ap(c.srv), ap(c.real)
			}
			req := append([]byte{0, c.op}, "boot.img\x00octet\x00"...)
			out, res := g.fwd(buildUDP(ap(c.cli), ap(c.srv), req))
			if out == nil || res.Conn.Helper() != "tftp" {
				t.Fatalf("request: passed %v, helper %q", out != nil, res.Conn.Helper())
			}
			es := g.expectations()
			if len(es) != 1 || es[0].Tuple.Proto != packet.ProtoUDP || es[0].Mask.SrcPort != 0 {
				t.Fatalf("expectations %+v", es)
			}
			out, res = g.fwd(buildUDP(ap(c.reply), ap(c.replyTo), []byte{0, 3, 0, 1, 'x'}))
			if res.Info != conntrack.Related || res.Conn.Master() == nil {
				t.Fatalf("server's answer from a new port: %v", res.Info)
			}
			var p packet.Parsed
			_ = p.Decode(out)
			if got := netip.AddrPortFrom(p.DstIP(), p.DstPort); got != ap(c.wantsAt) {
				t.Fatalf("answer delivered to %v, want %v", got, c.wantsAt)
			}
			if c.srv != c.real {
				// The client must see the answer from the address it asked.
				if p.SrcIP() != ap(c.srv).Addr() {
					t.Fatalf("answer from %v, want %v", p.SrcIP(), ap(c.srv).Addr())
				}
			}
		})
	}
	// DATA, ACK and ERROR packets, and replies, expect nothing.
	g := newGateway(t, Config{TFTP: &TFTPConfig{}})
	for _, op := range []byte{3, 4, 5, 6, 0, 255} {
		g.fwd(buildUDP(ap("10.10.0.2:3333"), ap("10.20.0.2:69"), []byte{0, op, 0, 1}))
	}
	g.fwd(buildUDP(ap("10.10.0.2:3333"), ap("10.20.0.2:69"), []byte{0}))
	g.fwd(buildUDP(ap("10.20.0.2:69"), ap("10.10.0.2:3333"), []byte{0, 1, 'a', 0}))
	if n := g.tbl.ExpectationCount(); n != 0 {
		t.Fatalf("%d expectations from non-requests", n)
	}
}

// TestAssign: ports by the server's real port, rule names, protocol
// checks, no helper by port for expected connections.
func TestAssign(t *testing.T) {
	// No [helpers.ftp] table: registered for rules, no port assignment.
	g := newGateway(t, Config{})
	if got := g.m.Names(); len(got) != 2 || got[0] != "ftp" || got[1] != "tftp" {
		t.Fatalf("Names() = %v", got)
	}
	x := g.open("10.10.0.2:40000", "10.20.0.2:21", "10.20.0.2:21")
	if x.ctrl.Helper() != "" {
		t.Fatal("helper assigned by port without the table")
	}
	g.ruleHelper = "ftp"
	x = g.open("10.10.0.2:40001", "10.20.0.2:2121", "10.20.0.2:2121")
	if x.ctrl.Helper() != "ftp" {
		t.Fatal("rule helper not assigned")
	}
	x.send(true, "PORT 10,10,0,2,156,65\r\n")
	if g.tbl.ExpectationCount() != 1 {
		t.Fatal("rule-assigned helper does not parse")
	}
	for _, name := range []string{"tftp", "sip", "FTP"} {
		g.ruleHelper = name
		x = g.open("10.10.0.2:40002", "10.20.0.2:2121", "10.20.0.2:2121")
		if x.ctrl.Helper() != "" {
			t.Errorf("rule helper %q attached to a TCP connection", name)
		}
	}

	// Port forward: the helper follows the server's real port.
	g = newGateway(t, Config{FTP: &FTPConfig{}})
	g.dnatFrom, g.dnatTo = ap("198.18.0.1:2121"), ap("10.10.0.5:21")
	if x = g.open("203.0.113.5:40000", "198.18.0.1:2121", "10.10.0.5:21"); x.ctrl.Helper() != "ftp" {
		t.Fatal("DNATed connection to port 21 lacks the helper")
	}
	g.dnatFrom, g.dnatTo = ap("198.18.0.1:21"), ap("10.10.0.5:2121")
	if x = g.open("203.0.113.5:40001", "198.18.0.1:21", "10.10.0.5:2121"); x.ctrl.Helper() != "" {
		t.Fatal("connection DNATed away from port 21 got the helper")
	}

	// An expected connection to a helper port gets no helper by port.
	g = newGateway(t, Config{FTP: &FTPConfig{}})
	x = g.open("10.10.0.2:40000", "10.20.0.2:21", "10.20.0.2:21")
	x.send(true, "PORT 10,10,0,2,0,21\r\n")
	_, res := g.fwd(buildTCP(ap("10.20.0.2:20"), ap("10.10.0.2:21"), 1, 0, packet.TCPSyn, nil, nil))
	if res.Info != conntrack.Related || res.Conn.Helper() != "" {
		t.Fatalf("expected connection: %v, helper %q", res.Info, res.Conn.Helper())
	}
	// Confirmed connections are never (re)assigned.
	g.m.Assign(x.ctrl, nil, "tftp")
	if x.ctrl.Helper() != "ftp" {
		t.Fatal("confirmed connection reassigned")
	}
}

// TestRegister: names and ports are unique.
func TestRegister(t *testing.T) {
	g := newGateway(t, Config{FTP: &FTPConfig{}})
	if err := g.m.Register(newFTP(FTPConfig{})); err == nil {
		t.Error("second ftp registered")
	}
	if err := g.m.Register(&namedTFTP{tftpHelper: newTFTP(TFTPConfig{}), name: "tftp2"}, 69); err != nil {
		t.Errorf("tftp2 on port 69 while tftp has no ports: %v", err)
	}
	if err := g.m.Register(&namedTFTP{tftpHelper: newTFTP(TFTPConfig{}), name: "tftp3"}, 69); err == nil {
		t.Error("two helpers on UDP port 69")
	}
	if err := g.m.Register(&namedTFTP{tftpHelper: newTFTP(TFTPConfig{}), name: "x"}, 70000); err == nil {
		t.Error("port 70000 accepted")
	}
}

type namedTFTP struct {
	*tftpHelper
	name string
}

func (n *namedTFTP) Name() string { return n.name }

// TestConcurrentControlConnections: control connections of different
// clients run in parallel through one masquerade address; all announce
// the same port, and each gets its own external data port.
func TestConcurrentControlConnections(t *testing.T) {
	base := newGateway(t, Config{FTP: &FTPConfig{}}).masquerade("10.10.0.0/16", "198.18.0.1")
	const clients = 8
	t.Run("clients", func(t *testing.T) {
		for i := range clients {
			t.Run(itoa(i), func(t *testing.T) {
				t.Parallel()
				g := &gateway{t: t, tbl: base.tbl, m: base.m, nat: base.nat, inside: base.inside, masqTo: base.masqTo}
				x := g.open("10.10."+itoa(i)+".2:"+itoa(40000+i), "198.18.0.2:21", "198.18.0.2:21")
				for range 100 {
					x.send(true, "PORT 10,10,"+itoa(i)+",2,156,65\r\n")
					x.send(false, "200 PORT command successful\r\n")
				}
			})
		}
	})
	es := base.expectations()
	ports := map[uint16]bool{}
	for _, e := range es {
		ports[e.Tuple.DstPort] = true
	}
	if len(es) != clients || len(ports) != clients {
		t.Fatalf("%d expectations on %d distinct ports, want %d and %d", len(es), len(ports), clients, clients)
	}
}
