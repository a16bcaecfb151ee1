package alg

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"tungate/conntrack"
	"tungate/packet"
)

// moveState saves from's table with the registry as codec and restores it
// into to's.
func moveState(t *testing.T, from, to *gateway) *conntrack.RestoreReport {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := from.tbl.SaveState(f, conntrack.StateOptions{Host: "h", Codecs: []conntrack.StateCodec{from.m}}); err != nil {
		t.Fatal(err)
	}
	f.Seek(0, io.SeekStart)
	rep, err := to.tbl.RestoreState(f, conntrack.StateOptions{Host: "h", Codecs: []conntrack.StateCodec{to.m}})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestStateFTPAcrossRestart: an FTP control connection whose PORT/EPRT was
// rewritten (a length change: sequence offsets) goes on after a restore:
// retransmitting the announcement gets the same rewrite, later segments
// are shifted by the same offsets, the half line held across keeps being
// parsed, and the data connection the announcement expected comes in
// RELATED and follows the master's NAT.
func TestStateFTPAcrossRestart(t *testing.T) {
	for _, mc := range []modeCase{modeCases[0], modeCases[3]} {
		t.Run(mc.name, func(t *testing.T) {
			g1 := mc.gateway(t)
			x := g1.open(mc.cli, mc.srv, mc.real)
			x.send(false, "220 (vsFTPd 3.0.5)\r\n")
			x.send(true, "USER anonymous\r\n")
			x.send(false, "331 Please specify the password.\r\n")
			cmdSeq := x.c.snd
			if sg := x.send(true, mc.cmd); string(sg.payload) != mc.want {
				t.Fatalf("sent %q, want %q", sg.payload, mc.want)
			}
			x.send(false, "200 OK\r\n")
			x.send(true, "LI") // a line the restart cuts in two

			g2 := mc.gateway(t)
			rep := moveState(t, g1, g2)
			if rep.Restored != 1 || rep.RestoredExpectations != 1 || len(rep.Dropped) != 0 {
				t.Fatalf("report %+v, want the control connection and its expectation", rep)
			}
			ctrl, _ := g2.tbl.Lookup(x.ctrl.Tuple(conntrack.DirOriginal))
			if ctrl == nil {
				t.Fatal("control connection not restored")
			}
			if ctrl.Helper() != "ftp" || ctrl.Status()&conntrack.StatusSeqAdjust == 0 {
				t.Fatalf("restored control connection: helper %q status %#x", ctrl.Helper(), ctrl.Status())
			}
			a, b := x.ctrl.Ext().HelperData.(*connState), ctrl.Ext().HelperData.(*connState)
			if !reflect.DeepEqual(a.tcp, b.tcp) || !reflect.DeepEqual(a.x.State, b.x.State) {
				t.Fatalf("helper state differs:\n%+v %+v\nwant\n%+v %+v", b.tcp, b.x.State, a.tcp, a.x.State)
			}
			if x.ctrl.Ext().SeqAdj != ctrl.Ext().SeqAdj {
				t.Fatalf("sequence offsets %+v, want %+v", ctrl.Ext().SeqAdj, x.ctrl.Ext().SeqAdj)
			}
			x.g, x.ctrl = g2, ctrl

			// The announcement again, as a retransmission: rewritten the
			// same way, at the same place.
			out, _ := x.sendRaw(true, cmdSeq, mc.cmd)
			if out == nil {
				t.Fatal("retransmitted announcement dropped")
			}
			x.retransmitted(false, out)
			x.send(true, "ST\r\n")
			x.send(false, "150 Here comes the directory listing.\r\n")

			out, res := g2.fwd(buildTCP(ap(mc.dataFrom), ap(mc.dataTo), 77, 0, packet.TCPSyn, nil, nil))
			if out == nil || res.Info != conntrack.Related || res.Conn.Master() != ctrl {
				t.Fatalf("data connection: delivered %v, info %v, master ok %v", out != nil, res.Info, res.Conn != nil && res.Conn.Master() == ctrl)
			}
			var p packet.Parsed
			_ = p.Decode(out)
			if got := netip.AddrPortFrom(p.DstIP(), p.DstPort); got != ap(mc.wantDataAt) {
				t.Errorf("data connection delivered to %v, want %v", got, mc.wantDataAt)
			}
			if fmt.Sprint(g2.nat.binds) != fmt.Sprint(mc.wantBind) {
				t.Errorf("restored expectation bound %+v, want %+v", g2.nat.binds, mc.wantBind)
			}
		})
	}
}

// TestStateUnknownHelperDropped: a connection whose helper this build does
// not have is dropped with the reason "helper".
func TestStateUnknownHelperDropped(t *testing.T) {
	g1 := modeCases[0].gateway(t)
	x := g1.open(modeCases[0].cli, modeCases[0].srv, modeCases[0].real)
	x.ctrl.Ext().HelperData.(*connState).name = "sip"
	x.ctrl.Ext().Helper = "sip"
	g2 := modeCases[0].gateway(t)
	rep := moveState(t, g1, g2)
	if rep.Dropped["helper"] != 1 || g2.tbl.Count() != 0 {
		t.Fatalf("report %+v, table %d: want the connection dropped for its helper", rep, g2.tbl.Count())
	}
}
