package nat

import (
	"errors"
	"testing"

	"tungate/conntrack"
	"tungate/packet"
)

// expect makes an expectation whose OnMatch binds the new connection, as
// the FTP helper does.
func expect(t *testing.T, r *rig, master *conntrack.Conn, tu conntrack.Tuple, mask conntrack.Mask, bind func(c *conntrack.Conn) error) *error {
	t.Helper()
	var bindErr error
	err := r.tbl.Expect(&conntrack.Expectation{
		Tuple: tu, Mask: mask, Master: master, Helper: "ftp",
		OnMatch: func(c *conntrack.Conn, _ *conntrack.Expectation) { bindErr = bind(c) },
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return &bindErr
}

func TestBindActiveFTPData(t *testing.T) {
	r := newRig(t, masqConf)
	ctl := r.tcpOpen("10.10.0.2:40000", "203.0.113.5:21", lan, wan)
	master, _ := r.tbl.Lookup(&conntrack.Tuple{Src: addr("10.10.0.2"), Dst: addr("203.0.113.5"), SrcPort: 40000, DstPort: 21, Proto: packet.ProtoTCP, Family: 4})
	if master == nil {
		t.Fatal("no control connection")
	}
	g := addr("198.18.0.1")
	if !r.e.PortAvailable(packet.ProtoTCP, g, 50000) {
		t.Fatal("50000 should be free")
	}
	// The client said PORT 10,10,0,2,156,219 (40155); the helper announced
	// 198.18.0.1:50000 instead and expects the server's connection there.
	mask := conntrack.FullMask
	mask.SrcPort = 0
	bindErr := expect(t, r, master, conntrack.Tuple{Src: addr("203.0.113.5"), Dst: g, DstPort: 50000, Proto: packet.ProtoTCP, Family: 4}, mask,
		func(c *conntrack.Conn) error { return r.e.Bind(c, ManipDst, addr("10.10.0.2"), 40155) })
	s := r.must(tcp("203.0.113.5:20", "198.18.0.1:50000", packet.TCPSyn, 1, 0), wan, lan)
	if *bindErr != nil {
		t.Fatal(*bindErr)
	}
	expectAddrs(t, "data SYN", s.v, "203.0.113.5:20", "10.10.0.2:40155")
	if s.res.Info != conntrack.Related || s.res.Conn.Master() != master {
		t.Fatalf("info %v", s.res.Info)
	}
	if r.e.PortAvailable(packet.ProtoTCP, g, 50000) {
		t.Fatal("bound port reported free")
	}
	back := r.must(tcp("10.10.0.2:40155", "203.0.113.5:20", packet.TCPSyn|packet.TCPAck, 7, 2), lan, wan)
	expectAddrs(t, "data SYN-ACK", back.v, "198.18.0.1:50000", "203.0.113.5:20")
	r.tbl.Delete(s.res.Conn)
	if !r.e.PortAvailable(packet.ProtoTCP, g, 50000) {
		t.Fatal("port not released with the data connection")
	}
	_ = ctl
}

func TestBindPassiveFollowsMaster(t *testing.T) {
	r := newRig(t, masqConf)
	r.tcpOpen("10.10.0.2:40000", "203.0.113.5:21", lan, wan)
	master, _ := r.tbl.Lookup(&conntrack.Tuple{Src: addr("10.10.0.2"), Dst: addr("203.0.113.5"), SrcPort: 40000, DstPort: 21, Proto: packet.ProtoTCP, Family: 4})
	// 227 Entering Passive Mode (203,0,113,5,117,48): the client connects
	// to 30000 and its source follows the master's translation.
	mask := conntrack.FullMask
	mask.SrcPort = 0
	bindErr := expect(t, r, master, conntrack.Tuple{Src: addr("10.10.0.2"), Dst: addr("203.0.113.5"), DstPort: 30000, Proto: packet.ProtoTCP, Family: 4}, mask,
		func(c *conntrack.Conn) error {
			return r.e.Bind(c, ManipSrc, master.Tuple(conntrack.DirReply).Dst, 0)
		})
	s := r.must(tcp("10.10.0.2:40200", "203.0.113.5:30000", packet.TCPSyn, 1, 0), lan, wan)
	if *bindErr != nil {
		t.Fatal(*bindErr)
	}
	expectAddrs(t, "passive data", s.v, "198.18.0.1:40200", "203.0.113.5:30000")
	// The port is held: another host's flow from 40200 gets another one.
	o := r.must(tcp("10.10.0.3:40200", "203.0.113.9:80", packet.TCPSyn, 1, 0), lan, wan)
	if o.v.src.Port() == 40200 {
		t.Fatal("bound port given to a mapping")
	}
}

func TestBindErrors(t *testing.T) {
	r := newRig(t, masqConf)
	// An existing mapping of 10.10.0.2:5000.
	r.must(udp("10.10.0.2:5000", "203.0.113.5:1", "q"), lan, wan)
	// One of 10.10.0.3:5000 (port 5002, the next even one).
	r.must(udp("10.10.0.3:5000", "203.0.113.5:1", "q"), lan, wan)
	newConn := func(src, dst string) *conntrack.Conn {
		var p packet.Parsed
		if err := p.Decode(udp(src, dst, "x").bytes()); err != nil {
			t.Fatal(err)
		}
		var res conntrack.Result
		r.tbl.In(&p, r.tbl.Now(), &res)
		if res.Conn == nil || res.Conn.Confirmed() {
			t.Fatal("no new connection")
		}
		return res.Conn
	}
	g := addr("198.18.0.1")
	c := newConn("10.10.0.2:5000", "203.0.113.7:9")
	if err := r.e.Bind(c, ManipSrc, g, 5002); !errors.Is(err, ErrPortInUse) {
		t.Fatalf("port of another endpoint: %v", err)
	}
	if err := r.e.Bind(c, ManipSrc, addr("2001:db8::1"), 5000); !errors.Is(err, ErrFamily) {
		t.Fatalf("family: %v", err)
	}
	// Its own endpoint's mapping port is shared.
	if err := r.e.Bind(c, ManipSrc, g, 5000); err != nil {
		t.Fatal(err)
	}
	if err := r.e.Bind(c, ManipSrc, g, 6000); !errors.Is(err, ErrBound) {
		t.Fatalf("second bind: %v", err)
	}
	if st := c.Status(); st&(conntrack.StatusSrcNAT|conntrack.StatusSrcNATDone) != conntrack.StatusSrcNAT|conntrack.StatusSrcNATDone {
		t.Fatalf("status %#x", st)
	}
	if err := r.tbl.Confirm(c, r.tbl.Now()); err != nil {
		t.Fatal(err)
	}
	if err := r.e.Bind(c, ManipDst, g, 1); !errors.Is(err, ErrConfirmed) {
		t.Fatalf("confirmed: %v", err)
	}
	// Another endpoint asking for a mapping's port.
	d := newConn("10.10.0.4:5000", "203.0.113.7:9")
	if err := r.e.Bind(d, ManipSrc, g, 5000); !errors.Is(err, ErrPortInUse) {
		t.Fatalf("held: %v", err)
	}
	// Binding to a tuple another connection has is a clash: this one
	// would be c's original tuple.
	x := newConn("203.0.113.7:9", "10.10.0.99:1234")
	if err := r.e.Bind(x, ManipDst, addr("10.10.0.2"), 5000); !errors.Is(err, ErrClash) {
		t.Fatalf("clash: %v", err)
	}
	if x.Status()&conntrack.StatusDstNATDone != 0 {
		t.Fatal("failed bind marked done")
	}
}

func TestBindIdentityOnlyMarksDone(t *testing.T) {
	r := newRig(t, masqConf)
	var p packet.Parsed
	if err := p.Decode(udp("10.10.0.2:5000", "203.0.113.5:1", "q").bytes()); err != nil {
		t.Fatal(err)
	}
	var res conntrack.Result
	r.tbl.In(&p, r.tbl.Now(), &res)
	if err := r.e.Bind(res.Conn, ManipDst, addr("203.0.113.5"), 0); err != nil {
		t.Fatal(err)
	}
	if st := res.Conn.Status(); st&conntrack.StatusDstNAT != 0 || st&conntrack.StatusDstNATDone == 0 {
		t.Fatalf("status %#x", st)
	}
	r.e.Prerouting(&p, &res, lan)
	if !r.e.Postrouting(&p, &res, lan, wan) {
		t.Fatal("dropped")
	}
	v := verify(t, p.Bytes())
	expectAddrs(t, "after identity bind", v, "198.18.0.1:5000", "203.0.113.5:1")
}
