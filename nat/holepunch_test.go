package nat

import (
	"net/netip"
	"testing"

	"tungate/conntrack"
	"tungate/packet"
)

// local runs b, arriving on in, the way the gateway's input path does for
// a packet to its own address: conntrack, DNAT, then the connection is
// marked local and confirmed (the input rules accepted it). It returns the
// packet's connection.
func (r *rig) local(b []byte, in int) *conntrack.Conn {
	r.t.Helper()
	var p packet.Parsed
	if err := p.Decode(b); err != nil {
		r.t.Fatalf("decode: %v", err)
	}
	var res conntrack.Result
	now := r.tbl.Now()
	r.tbl.In(&p, now, &res)
	if res.Conn == nil {
		r.t.Fatalf("local packet untracked (%v)", res.Info)
	}
	r.e.Prerouting(&p, &res, in)
	if res.Drop {
		r.t.Fatal("local packet dropped by NAT")
	}
	c := res.Conn
	if c.Status()&conntrack.StatusNATMask != 0 {
		r.t.Fatalf("local packet translated: status %#x", c.Status())
	}
	if !c.Confirmed() {
		c.SetStatus(conntrack.StatusLocal)
		if err := r.tbl.Confirm(c, now); err != nil {
			r.t.Fatalf("confirm local: %v", err)
		}
	}
	return c
}

// A stranger's packet to a mapping, refused by address-and-port-dependent
// filtering and kept by the gateway as a local connection, does not cost
// the mapping its flow to that stranger: the flow keeps the mapping's
// external port (RFC 4787 REQ-1, RFC 5382 REQ-1), and the stranger's
// packets after it are the flow's replies.
func TestHolePunchThroughMapping(t *testing.T) {
	fams := []struct{ name, host, s1, s2, gw string }{
		{"ipv4", "10.10.0.2", "203.0.113.5", "192.0.2.9", "198.18.0.1"},
		{"ipv6", "fd10::2", "2001:db8:5::5", "2001:db8:9::9", "2001:db8:1::1"},
	}
	for _, f := range fams {
		for _, proto := range []string{"udp", "tcp"} {
			t.Run(f.name+"/"+proto, func(t *testing.T) {
				r := newRig(t, masqConf)
				mk := func(src, dst string, flags uint8) pkt {
					if proto == "udp" {
						return udp(src, dst, "x")
					}
					return tcp(src, dst, flags, 1, 0)
				}
				host, ext := join(f.host, 5000), join(f.gw, 5000)
				s1, s2 := join(f.s1, 3478), join(f.s2, 7777)
				out := r.must(mk(host, s1, packet.TCPSyn), lan, wan)
				expectAddrs(t, "host -> S1", out.v, ext, s1)

				stranger := r.local(mk(s2, ext, packet.TCPSyn).bytes(), wan)

				flow := r.must(mk(host, s2, packet.TCPSyn), lan, wan)
				expectAddrs(t, "host -> S2", flow.v, ext, s2)
				if st := stranger.Status(); st&conntrack.StatusDying == 0 {
					t.Fatalf("the stranger's local connection survived the flow (status %#x)", st)
				}
				var back step
				if proto == "udp" {
					back = r.must(udp(s2, ext, "y"), wan, lan)
				} else {
					back = r.must(tcp(s2, ext, packet.TCPSyn|packet.TCPAck, 9, 2), wan, lan)
				}
				expectAddrs(t, "S2 -> host", back.v, s2, host)
				if back.res.Conn != flow.res.Conn || back.res.Info != conntrack.EstablishedReply {
					t.Fatalf("S2's answer: %v, on the flow %v", back.res.Info, back.res.Conn == flow.res.Conn)
				}
				if st := r.e.Stats(); st.Clash != 0 || st.Mappings != 1 {
					t.Fatalf("stats %+v, want no clash and one mapping", st)
				}
			})
		}
	}
}

// A local connection confirmed on a port before any mapping held it (an
// input rule accepted the stranger's packet) does not move the mapping
// made for that port later: port preservation (RFC 4787 REQ-3) beats the
// gateway's own connection.
func TestLocalConnectionDoesNotMoveNewMapping(t *testing.T) {
	r := newRig(t, masqConf)
	r.local(udp("192.0.2.9:7777", "198.18.0.1:5000", "knock").bytes(), wan)
	s := r.must(udp("10.10.0.2:5000", "192.0.2.9:7777", "punch"), lan, wan)
	expectAddrs(t, "host -> stranger", s.v, "198.18.0.1:5000", "192.0.2.9:7777")
	back := r.must(udp("192.0.2.9:7777", "198.18.0.1:5000", "hello"), wan, lan)
	expectAddrs(t, "stranger -> host", back.v, "192.0.2.9:7777", "10.10.0.2:5000")
}

func join(a string, port uint16) string {
	return netip.AddrPortFrom(netip.MustParseAddr(a), port).String()
}
