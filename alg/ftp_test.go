package alg

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"tungate/conntrack"
	"tungate/packet"
)

// modeCase is one FTP mode through one NAT setup.
type modeCase struct {
	name           string
	cli, srv, real string // client, server as the client addresses it, server's real address
	masq           []string
	dnat           bool
	fromClient     bool // the announcement is a client command
	cmd, want      string
	dataFrom       string // the data connection's first packet, as sent
	dataTo         string
	wantDataAt     string // where the gateway delivers it
	wantExp        conntrack.Tuple
	wantBind       []bind
	takenPorts     []uint16
}

func tup(src, dst string, dport uint16, fam uint8) conntrack.Tuple {
	return conntrack.Tuple{Src: addr(src), Dst: addr(dst), DstPort: dport, Proto: packet.ProtoTCP, Family: fam}
}

var modeCases = []modeCase{
	{
		name: "PORT/v4/masquerade", cli: "10.10.0.2:40000", srv: "198.18.0.2:21", real: "198.18.0.2:21",
		masq: []string{"198.18.0.1"}, fromClient: true,
		cmd: "PORT 10,10,0,2,156,65\r\n", want: "PORT 198,18,0,1,156,65\r\n",
		dataFrom: "198.18.0.2:20", dataTo: "198.18.0.1:40001", wantDataAt: "10.10.0.2:40001",
		wantExp:  tup("198.18.0.2", "198.18.0.1", 40001, 4),
		wantBind: []bind{{addr: addr("10.10.0.2"), port: 40001}},
	},
	{
		name: "PORT/v4/masquerade/port-taken", cli: "10.10.0.2:40000", srv: "198.18.0.2:21", real: "198.18.0.2:21",
		masq: []string{"198.18.0.1"}, fromClient: true, takenPorts: []uint16{40001, 40002},
		cmd: "port 10,10,0,2,156,65\r\n", want: "port 198,18,0,1,156,67\r\n",
		dataFrom: "198.18.0.2:20", dataTo: "198.18.0.1:40003", wantDataAt: "10.10.0.2:40001",
		wantExp:  tup("198.18.0.2", "198.18.0.1", 40003, 4),
		wantBind: []bind{{addr: addr("10.10.0.2"), port: 40001}},
	},
	{
		name: "EPRT1/v4/masquerade", cli: "10.10.0.2:40000", srv: "198.18.0.2:21", real: "198.18.0.2:21",
		masq: []string{"198.18.0.1"}, fromClient: true,
		cmd: "EPRT |1|10.10.0.2|40001|\r\n", want: "EPRT |1|198.18.0.1|40001|\r\n",
		dataFrom: "198.18.0.2:2020", dataTo: "198.18.0.1:40001", wantDataAt: "10.10.0.2:40001",
		wantExp:  tup("198.18.0.2", "198.18.0.1", 40001, 4),
		wantBind: []bind{{addr: addr("10.10.0.2"), port: 40001}},
	},
	{
		name: "EPRT2/v6/masquerade", cli: "[fd10::2]:40000", srv: "[2001:db8:1::2]:21", real: "[2001:db8:1::2]:21",
		masq: []string{"2001:db8:1::1"}, fromClient: true,
		cmd: "EPRT |2|fd10::2|40001|\r\n", want: "EPRT |2|2001:0db8:0001:0000:0000:0000:0000:0001|40001|\r\n",
		dataFrom: "[2001:db8:1::2]:20", dataTo: "[2001:db8:1::1]:40001", wantDataAt: "[fd10::2]:40001",
		wantExp:  tup("2001:db8:1::2", "2001:db8:1::1", 40001, 6),
		wantBind: []bind{{addr: addr("fd10::2"), port: 40001}},
	},
	{
		name: "PASV/v4/masquerade", cli: "10.10.0.2:40000", srv: "198.18.0.2:21", real: "198.18.0.2:21",
		masq: []string{"198.18.0.1"},
		cmd:  "227 Entering Passive Mode (198,18,0,2,19,137).\r\n", want: "227 Entering Passive Mode (198,18,0,2,19,137).\r\n",
		dataFrom: "10.10.0.2:40002", dataTo: "198.18.0.2:5001", wantDataAt: "198.18.0.2:5001",
		wantExp:  tup("10.10.0.2", "198.18.0.2", 5001, 4),
		wantBind: []bind{{src: true, addr: addr("198.18.0.1"), port: 40002}},
	},
	{
		name: "EPSV/v6/masquerade", cli: "[fd10::2]:40000", srv: "[2001:db8:1::2]:21", real: "[2001:db8:1::2]:21",
		masq: []string{"2001:db8:1::1"},
		cmd:  "229 Entering Extended Passive Mode (|||5001|)\r\n", want: "229 Entering Extended Passive Mode (|||5001|)\r\n",
		dataFrom: "[fd10::2]:40002", dataTo: "[2001:db8:1::2]:5001", wantDataAt: "[2001:db8:1::2]:5001",
		wantExp:  tup("fd10::2", "2001:db8:1::2", 5001, 6),
		wantBind: []bind{{src: true, addr: addr("2001:db8:1::1"), port: 40002}},
	},
	{
		name: "EPSV/v4/no-NAT", cli: "10.10.0.2:40000", srv: "10.20.0.2:21", real: "10.20.0.2:21",
		cmd: "229 Extended Passive Mode OK (!!!5001!)\r\n", want: "229 Extended Passive Mode OK (!!!5001!)\r\n",
		dataFrom: "10.10.0.2:40002", dataTo: "10.20.0.2:5001", wantDataAt: "10.20.0.2:5001",
		wantExp: tup("10.10.0.2", "10.20.0.2", 5001, 4),
	},
	{
		name: "PORT/v4/no-NAT", cli: "10.10.0.2:40000", srv: "10.20.0.2:21", real: "10.20.0.2:21", fromClient: true,
		cmd: "PORT 10,10,0,2,156,65\r\n", want: "PORT 10,10,0,2,156,65\r\n",
		dataFrom: "10.20.0.2:20", dataTo: "10.10.0.2:40001", wantDataAt: "10.10.0.2:40001",
		wantExp: tup("10.20.0.2", "10.10.0.2", 40001, 4),
	},
	{
		name: "EPRT2/v6/no-NAT", cli: "[fd10::2]:40000", srv: "[2001:db8:1::2]:21", real: "[2001:db8:1::2]:21", fromClient: true,
		cmd: "EPRT |2|fd10::2|40001|\r\n", want: "EPRT |2|fd10::2|40001|\r\n",
		dataFrom: "[2001:db8:1::2]:20", dataTo: "[fd10::2]:40001", wantDataAt: "[fd10::2]:40001",
		wantExp: tup("2001:db8:1::2", "fd10::2", 40001, 6),
	},
	{
		name: "PASV/v4/DNAT-server", cli: "203.0.113.5:40000", srv: "198.18.0.1:21", real: "10.10.0.5:21", dnat: true,
		cmd: "227 Entering Passive Mode (10,10,0,5,19,137)\r\n", want: "227 Entering Passive Mode (198,18,0,1,19,137)\r\n",
		dataFrom: "203.0.113.5:40002", dataTo: "198.18.0.1:5001", wantDataAt: "10.10.0.5:5001",
		wantExp:  tup("203.0.113.5", "198.18.0.1", 5001, 4),
		wantBind: []bind{{addr: addr("10.10.0.5"), port: 5001}},
	},
	{
		name: "PASV-bare/v4/DNAT-server", cli: "203.0.113.5:40000", srv: "198.18.0.1:21", real: "10.10.0.5:21", dnat: true,
		takenPorts: []uint16{5001},
		cmd:        "227 Entering Passive Mode 10,10,0,5,19,137\r\n", want: "227 Entering Passive Mode 198,18,0,1,19,138\r\n",
		dataFrom: "203.0.113.5:40002", dataTo: "198.18.0.1:5002", wantDataAt: "10.10.0.5:5001",
		wantExp:  tup("203.0.113.5", "198.18.0.1", 5002, 4),
		wantBind: []bind{{addr: addr("10.10.0.5"), port: 5001}},
	},
	{
		name: "EPSV/v6/DNAT-server", cli: "[2001:db8:9::5]:40000", srv: "[2001:db8:1::1]:21", real: "[fd10::5]:21", dnat: true,
		takenPorts: []uint16{5001},
		cmd:        "229 Entering Extended Passive Mode (|||5001|)\r\n", want: "229 Entering Extended Passive Mode (|||5002|)\r\n",
		dataFrom: "[2001:db8:9::5]:40002", dataTo: "[2001:db8:1::1]:5002", wantDataAt: "[fd10::5]:5001",
		wantExp:  tup("2001:db8:9::5", "2001:db8:1::1", 5002, 6),
		wantBind: []bind{{addr: addr("fd10::5"), port: 5001}},
	},
	{
		name: "PORT/v4/DNAT-server", cli: "203.0.113.5:40000", srv: "198.18.0.1:21", real: "10.10.0.5:21", dnat: true, fromClient: true,
		cmd: "PORT 203,0,113,5,156,65\r\n", want: "PORT 203,0,113,5,156,65\r\n",
		dataFrom: "10.10.0.5:20", dataTo: "203.0.113.5:40001", wantDataAt: "203.0.113.5:40001",
		wantExp:  tup("10.10.0.5", "203.0.113.5", 40001, 4),
		wantBind: []bind{{src: true, addr: addr("198.18.0.1"), port: 20}},
	},
}

func (mc *modeCase) gateway(t *testing.T) *gateway {
	g := newGateway(t, Config{FTP: &FTPConfig{}})
	if len(mc.masq) > 0 {
		inside := "10.10.0.0/24"
		if strings.Contains(mc.cli, ":") && strings.HasPrefix(mc.cli, "[") {
			inside = "fd10::/64"
		}
		g.masquerade(inside, mc.masq...)
	}
	if mc.dnat {
		g.dnatFrom, g.dnatTo = ap(mc.srv), ap(mc.real)
	}
	for _, p := range mc.takenPorts {
		g.nat.taken[p] = true
	}
	return g
}

func TestFTPModes(t *testing.T) {
	for _, mc := range modeCases {
		t.Run(mc.name, func(t *testing.T) {
			g := mc.gateway(t)
			x := g.open(mc.cli, mc.srv, mc.real)
			if got := x.ctrl.Helper(); got != "ftp" {
				t.Fatalf("control connection helper %q, want ftp", got)
			}
			line := string(g.tbl.AppendConn(nil, x.ctrl, g.tbl.Now()))
			if !strings.Contains(line, " helper=ftp ") {
				t.Errorf("ct list line lacks helper=ftp: %s", line)
			}
			x.send(false, "220 (vsFTPd 3.0.5)\r\n")
			x.send(true, "USER anonymous\r\n")
			sg := x.send(mc.fromClient, mc.cmd)
			if string(sg.payload) != mc.want {
				t.Fatalf("sent %q, want %q", sg.payload, mc.want)
			}
			es := g.expectations()
			if len(es) != 1 {
				t.Fatalf("%d expectations, want 1", len(es))
			}
			e := es[0]
			if e.Tuple != mc.wantExp {
				t.Errorf("expectation tuple %+v, want %+v", e.Tuple, mc.wantExp)
			}
			wantMask := conntrack.FullMask
			wantMask.SrcPort = 0
			if e.Mask != wantMask {
				t.Errorf("expectation mask %+v, want the source port wildcarded", e.Mask)
			}
			if e.Master != x.ctrl || e.Helper != "ftp" {
				t.Errorf("expectation master/helper wrong: %v %q", e.Master == x.ctrl, e.Helper)
			}
			exp := string(g.tbl.AppendExpectation(nil, e, g.tbl.Now()))
			if !strings.Contains(exp, "helper=ftp") || !strings.HasPrefix(exp, "29") {
				t.Errorf("expect line %q: want ~300 s left and helper=ftp", exp)
			}
			// The rest of the session still flows, both ways, after any
			// length change.
			x.send(!mc.fromClient, "200 OK\r\n")
			x.send(true, "LIST\r\n")
			x.send(false, "150 Here comes the directory listing.\r\n")

			out, res := g.fwd(buildTCP(ap(mc.dataFrom), ap(mc.dataTo), 77, 0, packet.TCPSyn, nil, nil))
			if out == nil {
				t.Fatal("data connection SYN dropped")
			}
			if res.Info != conntrack.Related {
				t.Errorf("data connection info %v, want RELATED", res.Info)
			}
			dc := res.Conn
			if dc.Master() != x.ctrl || dc.Status()&conntrack.StatusExpected == 0 {
				t.Errorf("data connection: master %v, status %#x; want the control connection and EXPECTED", dc.Master() == x.ctrl, dc.Status())
			}
			var p packet.Parsed
			_ = p.Decode(out)
			if got := netip.AddrPortFrom(p.DstIP(), p.DstPort); got != ap(mc.wantDataAt) {
				t.Errorf("data connection delivered to %v, want %v", got, mc.wantDataAt)
			}
			if fmt.Sprint(g.nat.binds) != fmt.Sprint(mc.wantBind) {
				t.Errorf("NAT binds %+v, want %+v", g.nat.binds, mc.wantBind)
			}
			if n := g.tbl.ExpectationCount(); n != 0 {
				t.Errorf("%d expectations left after the data connection came", n)
			}
			// The data connection's reply comes back as ESTABLISHED_REPLY.
			rt := dc.Tuple(conntrack.DirReply)
			_, rres := g.fwd(buildTCP(netip.AddrPortFrom(rt.SrcAddr(), rt.SrcPort), netip.AddrPortFrom(rt.DstAddr(), rt.DstPort), 9, 78, packet.TCPSyn|packet.TCPAck, nil, nil))
			if rres.Conn != dc || rres.Info != conntrack.EstablishedReply {
				t.Errorf("data reply: info %v, same conn %v", rres.Info, rres.Conn == dc)
			}
		})
	}
}
