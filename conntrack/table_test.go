package conntrack

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"tungate/packet"
)

func ctSec(n int) Duration { return Duration(time.Duration(n) * time.Second) }

// nextEvent returns the event already waiting on ch; events are sent
// synchronously, so none waiting is a failure, not a reason to wait.
func nextEvent(t testing.TB, ch <-chan Event) Event {
	t.Helper()
	select {
	case e := <-ch:
		return e
	default:
		t.Fatal("no event")
		return Event{}
	}
}

// wantExpiry fails unless c expires d after the harness clock.
func (h *ctHarness) wantExpiry(what string, c *Conn, d time.Duration) {
	h.t.Helper()
	if got := time.Duration(c.Expires() - h.now); got != d {
		h.t.Fatalf("%s: expires in %v, want %v", what, got, d)
	}
}

func TestDefaultTimeoutsFollowRFCs(t *testing.T) {
	d := DefaultTimeouts()
	// RFC 4787 REQ-5: a UDP mapping lives at least 2 minutes; REQ-5a lets
	// DNS (port 53) be shorter.
	if time.Duration(d.UDP) < 2*time.Minute || time.Duration(d.UDPStream) < 2*time.Minute {
		t.Errorf("udp %v, udp_stream %v: RFC 4787 REQ-5 wants >= 2m", time.Duration(d.UDP), time.Duration(d.UDPStream))
	}
	if time.Duration(d.UDPDNS) != 30*time.Second {
		t.Errorf("udp_dns %v, want 30s", time.Duration(d.UDPDNS))
	}
	// RFC 5508 REQ-2: ICMP query mappings 60 s.
	if time.Duration(d.ICMP) != time.Minute || time.Duration(d.ICMPv6) != time.Minute {
		t.Errorf("icmp %v icmpv6 %v, want 60s", time.Duration(d.ICMP), time.Duration(d.ICMPv6))
	}
	if time.Duration(d.GRE) != 30*time.Second || time.Duration(d.GREStream) != 180*time.Second {
		t.Errorf("gre %v/%v, want 30s/180s", time.Duration(d.GRE), time.Duration(d.GREStream))
	}
}

func TestUDPLifecycle(t *testing.T) {
	cfg := Config{Timeouts: Timeouts{UDP: ctSec(100), UDPStream: ctSec(200), UDPDNS: ctSec(30)}}
	for _, f := range ctFamilies {
		for _, tc := range []struct {
			name      string
			dport     uint16
			unreplied time.Duration
		}{{"app", 5353, 100 * time.Second}, {"dns", 53, 30 * time.Second}} {
			t.Run(f.name+"/"+tc.name, func(t *testing.T) {
				h := newCTHarness(t, cfg)
				ev, cancel := h.tab.Subscribe(16)
				defer cancel()
				out := build.UDP(f.cli, 40001, f.srv, tc.dport, 10)
				back := build.UDP(f.srv, tc.dport, f.cli, 40001, 10)

				r := h.in(out)
				wantInfo(t, "first", r, New)
				c := r.Conn
				if c.Confirmed() || h.tab.Count() != 0 {
					t.Fatal("a NEW connection must stay out of the table until Confirm")
				}
				h.wantExpiry("unconfirmed", c, tc.unreplied)
				if err := h.tab.Confirm(c, h.now); err != nil {
					t.Fatal(err)
				}
				if h.tab.Count() != 1 || nextEvent(t, ev).Type != EventNew {
					t.Fatal("confirm: want one entry and a NEW event")
				}

				h.advance(time.Second)
				r = h.in(out)
				wantInfo(t, "unreplied again", r, New) // still NEW until a reply
				if r.Conn != c {
					t.Fatal("second packet found another connection")
				}

				r = h.in(back)
				wantInfo(t, "reply", r, EstablishedReply)
				if r.Dir != DirReply || c.Status()&StatusSeenReply == 0 || c.Status()&StatusAssured != 0 {
					t.Fatalf("reply: dir %v status %#x", r.Dir, c.Status())
				}
				// The first reply still gets the unreplied timeout (Linux sets
				// SEEN_REPLY after the protocol handler).
				h.wantExpiry("first reply", c, tc.unreplied)
				if e := nextEvent(t, ev); e.Type != EventUpdate || e.Conn != c {
					t.Fatalf("reply event %v", e.Type)
				}

				h.advance(500 * time.Millisecond) // 1.5 s: not a stream yet
				wantInfo(t, "early", h.in(out), Established)
				if c.Status()&StatusAssured != 0 {
					t.Fatal("assured before two seconds")
				}
				h.wantExpiry("replied", c, tc.unreplied)

				h.advance(time.Second) // 2.5 s: a stream
				wantInfo(t, "stream", h.in(back), EstablishedReply)
				if c.Status()&StatusAssured == 0 {
					t.Fatal("not assured after two seconds of traffic both ways")
				}
				h.wantExpiry("stream", c, 200*time.Second)
				if e := nextEvent(t, ev); e.Type != EventUpdate {
					t.Fatalf("assured event %v", e.Type)
				}
				if a := c.Counters(DirOriginal); a.Packets.Load() != 3 || a.Bytes.Load() != 3*uint64(len(out)) {
					t.Fatalf("original counters %d/%d", a.Packets.Load(), a.Bytes.Load())
				}
				if a := c.Counters(DirReply); a.Packets.Load() != 2 || a.Bytes.Load() != 2*uint64(len(back)) {
					t.Fatalf("reply counters %d/%d", a.Packets.Load(), a.Bytes.Load())
				}

				// Just before expiry it lives; at expiry it is gone and the
				// next packet starts over.
				h.advance(200*time.Second - 1)
				wantInfo(t, "last moment", h.in(out), Established)
				h.advance(200 * time.Second)
				r = h.in(back)
				if r.Conn == c {
					t.Fatal("expired connection still found")
				}
				if h.tab.Count() != 0 || nextEvent(t, ev).Type != EventDestroy {
					t.Fatal("expired connection not deleted on lookup")
				}
			})
		}
	}
}

func TestICMPEcho(t *testing.T) {
	for _, f := range ctFamilies {
		t.Run(f.name, func(t *testing.T) {
			h := newCTHarness(t, Config{})
			req := build.Echo(f.cli, f.srv, false, 77, 56)
			rep := build.Echo(f.srv, f.cli, true, 77, 56)
			r := h.pass(req)
			wantInfo(t, "request", r, New)
			h.wantExpiry("request", r.Conn, time.Minute)
			h.advance(time.Second)
			r2 := h.in(rep)
			wantInfo(t, "reply", r2, EstablishedReply)
			if r2.Conn != r.Conn {
				t.Fatal("reply found another connection")
			}
			h.wantExpiry("reply", r.Conn, time.Minute)
			wantInfo(t, "next request", h.in(req), Established)

			// Replies and requests with other identifiers are other flows;
			// a reply without a request cannot start a connection.
			wantInfo(t, "unknown reply", h.in(build.Echo(f.srv, f.cli, true, 78, 56)), Invalid)
			wantInfo(t, "other id", h.in(build.Echo(f.cli, f.srv, false, 78, 56)), New)
			if h.tab.Stats.Invalid.Load() != 1 {
				t.Fatalf("invalid count %d", h.tab.Stats.Invalid.Load())
			}
		})
	}
	t.Run("mismatched", func(t *testing.T) {
		h := newCTHarness(t, Config{})
		cli, srv := ctFamilies[0].cli, ctFamilies[0].srv
		wantInfo(t, "type 42", h.in(build.ICMP(cli, srv, 42, 0, 1, 8)), Invalid)
		wantInfo(t, "router advertisement", h.in(build.ICMP(cli, srv, 9, 0, 1, 8)), Invalid)
		// ICMP carried in IPv6 is not ICMPv6: INVALID, as in Linux.
		v6 := ctFamilies[1]
		wantInfo(t, "icmp in ipv6", h.in(build.IP(v6.cli, v6.srv, packet.ProtoICMP, make([]byte, 16))), Invalid)
	})
}

func TestICMPv6NDPUntracked(t *testing.T) {
	f := ctFamilies[1]
	h := newCTHarness(t, Config{})
	for _, typ := range []uint8{130, 131, 132, 133, 134, 135, 136, 143} {
		wantInfo(t, "type "+strconv.Itoa(int(typ)), h.in(build.ICMP(f.cli, f.srv, typ, 0, 0, 16)), Untracked)
	}
	if h.tab.Stats.Ignore.Load() != 8 {
		t.Fatalf("ignore %d", h.tab.Stats.Ignore.Load())
	}
	// Redirect is not in Linux's untracked list: INVALID.
	wantInfo(t, "redirect", h.in(build.ICMP(f.cli, f.srv, 137, 0, 0, 32)), Invalid)
	if h.tab.Count() != 0 {
		t.Fatal("neighbour discovery entered the table")
	}
}

func TestICMPErrorRelated(t *testing.T) {
	for _, f := range ctFamilies {
		t.Run(f.name, func(t *testing.T) {
			h := newCTHarness(t, Config{})
			// A masqueraded UDP flow: client -> server, replies to the
			// gateway's outside address.
			out := build.UDP(f.cli, 40001, f.srv, 5353, 10)
			conn := h.passNAT(out, f.nat).Conn
			asSent := build.UDP(f.nat, 40001, f.srv, 5353, 10) // after SNAT
			back := build.UDP(f.srv, 5353, f.cli, 40001, 10)   // after de-NAT
			echo := h.passNAT(build.Echo(f.cli, f.srv, false, 9, 8), f.nat).Conn
			echoSent := build.Echo(f.nat, f.srv, false, 9, 8)

			for _, tc := range []struct {
				name string
				pkt  []byte
				want Info
				conn *Conn
			}{
				// The server side answers the client's datagram: the error
				// travels in the reply direction, to the outside address.
				{"from server", build.Unreachable(f.srv, f.nat, asSent, -1), RelatedReply, conn},
				{"from router on the way", build.Unreachable(f.x, f.nat, asSent, -1), RelatedReply, conn},
				// The client answers the server's datagram.
				{"from client", build.Unreachable(f.cli, f.srv, back, -1), Related, conn},
				// Linux reads 8 bytes of transport header from the quote
				// (checked against the kernel by the conformance suite).
				{"quote cut after ports", build.Unreachable(f.srv, f.nat, asSent, ipLen(f)+4), Invalid, nil},
				{"quote of 8 transport bytes", build.Unreachable(f.srv, f.nat, asSent, ipLen(f)+8), RelatedReply, conn},
				{"about an echo", build.Unreachable(f.srv, f.nat, echoSent, -1), RelatedReply, echo},
				// A quoted type with no reply type has no inverse; inverting
				// it anyway would make it pose as the echo's reply.
				{"quoted type without a reply", build.Unreachable(f.srv, f.nat, build.ICMP(f.nat, f.srv, map[bool]uint8{false: 9, true: 133}[f.cli.Is6()], 0, 9, 8), -1), Invalid, nil},
				{"unknown connection", build.Unreachable(f.srv, f.nat, build.UDP(f.nat, 40002, f.srv, 5353, 10), -1), Invalid, nil},
				{"wrong outer destination", build.Unreachable(f.srv, f.x, asSent, -1), Invalid, nil},
				{"quote without ports", build.Unreachable(f.srv, f.nat, asSent, ipLen(f)+2), Invalid, nil},
				{"quote shorter than its IP header", build.Unreachable(f.srv, f.nat, asSent, ipLen(f)-1), Invalid, nil},
				{"quote of another family", build.Unreachable(f.srv, f.nat, build.UDP(otherFamily(f).nat, 1, otherFamily(f).srv, 2, 0), -1), Invalid, nil},
			} {
				t.Run(tc.name, func(t *testing.T) {
					before := conn.Counters(DirReply).Packets.Load()
					exp := conn.Expires()
					r := h.in(tc.pkt)
					wantInfo(t, tc.name, r, tc.want)
					if r.Conn != tc.conn {
						t.Fatalf("conn %p, want %p", r.Conn, tc.conn)
					}
					if tc.want == RelatedReply && r.Dir != DirReply || tc.want == Related && r.Dir != DirOriginal {
						t.Fatalf("dir %v for %v", r.Dir, tc.want)
					}
					// Linux neither counts nor refreshes on an ICMP error.
					if conn.Counters(DirReply).Packets.Load() != before || conn.Expires() != exp {
						t.Fatal("ICMP error was accounted or refreshed the connection")
					}
				})
			}
			bad := build.Unreachable(f.srv, f.nat, asSent, -1)
			bad[len(bad)-1] ^= 0xff // breaks the ICMP checksum
			wantInfo(t, "bad checksum", h.in(bad), Invalid)
			if n := h.tab.Stats.Error.Load(); n != 8 || h.tab.Stats.Invalid.Load() != n {
				t.Fatalf("error %d invalid %d, want 8 each", n, h.tab.Stats.Invalid.Load())
			}
		})
	}
}

func ipLen(f ctFamily) int {
	if f.cli.Is4() {
		return 20
	}
	return 40
}

func otherFamily(f ctFamily) ctFamily {
	if f.cli.Is4() {
		return ctFamilies[1]
	}
	return ctFamilies[0]
}

func TestGRE(t *testing.T) {
	for _, f := range ctFamilies {
		t.Run(f.name, func(t *testing.T) {
			h := newCTHarness(t, Config{})
			out := build.GRE(f.cli, f.srv, 0, false, 0, 24)
			back := build.GRE(f.srv, f.cli, 0, false, 0, 24)
			r := h.pass(out)
			wantInfo(t, "first", r, New)
			h.wantExpiry("unreplied", r.Conn, 30*time.Second)
			h.advance(time.Second)
			wantInfo(t, "reply", h.in(back), EstablishedReply)
			h.wantExpiry("first reply", r.Conn, 30*time.Second)
			wantInfo(t, "again", h.in(out), Established)
			if r.Conn.Status()&StatusAssured == 0 {
				t.Fatal("GRE seen both ways not assured")
			}
			h.wantExpiry("stream", r.Conn, 180*time.Second)
			if line := h.line(r.Conn); !strings.HasPrefix(line, "gre      47 180 src=") || !strings.Contains(line, "srckey=0x0 dstkey=0x0") {
				t.Fatalf("line %q", line)
			}

			// Keyed tunnels between the same hosts are separate connections
			// with the key in both directions.
			k1 := h.pass(build.GRE(f.cli, f.srv, 0, true, 0x12345678, 24))
			k2 := h.pass(build.GRE(f.cli, f.srv, 0, true, 0x9abcdef0, 24))
			wantInfo(t, "key 1", k1, New)
			wantInfo(t, "key 2", k2, New)
			if k1.Conn == k2.Conn || k1.Conn == r.Conn {
				t.Fatal("keyed tunnels share a connection")
			}
			r2 := h.in(build.GRE(f.srv, f.cli, 0, true, 0x9abcdef0, 24))
			if r2.Conn != k2.Conn || r2.Info != EstablishedReply {
				t.Fatal("keyed reply not matched to its tunnel")
			}
			if line := h.line(k1.Conn); !strings.Contains(line, "srckey=0x1234 dstkey=0x5678") {
				t.Fatalf("keyed line %q", line)
			}

			// PPTP's GRE v1 carries a length in its key; it must not split
			// one flow into many.
			v1 := h.pass(build.GRE(f.cli, f.x, 1, true, 100<<16|7, 24))
			wantInfo(t, "v1", v1, New)
			if r := h.in(build.GRE(f.cli, f.x, 1, true, 60<<16|7, 24)); r.Conn != v1.Conn {
				t.Fatal("GRE v1 packets of one flow split by payload length")
			}
			if r := h.in(build.GRE(f.x, f.cli, 1, true, 80<<16|9, 24)); r.Conn != v1.Conn || r.Info != EstablishedReply {
				t.Fatal("GRE v1 reply not matched")
			}
		})
	}
}

func TestGeneric(t *testing.T) {
	for _, f := range ctFamilies {
		t.Run(f.name, func(t *testing.T) {
			h := newCTHarness(t, Config{})
			r := h.pass(build.Raw(f.cli, f.srv, 253, 5))
			wantInfo(t, "first", r, New)
			h.wantExpiry("generic", r.Conn, 600*time.Second)
			if h.tab.Tracker(253).Name() != "unknown" {
				t.Fatal("generic tracker not named unknown")
			}
			wantInfo(t, "reply", h.in(build.Raw(f.srv, f.cli, 253, 5)), EstablishedReply)
			wantInfo(t, "again", h.in(build.Raw(f.cli, f.srv, 253, 5)), Established)
			wantInfo(t, "other protocol", h.in(build.Raw(f.cli, f.srv, 254, 5)), New)
		})
	}
}

func TestESPTwoClientsBehindNAT(t *testing.T) {
	for _, f := range ctFamilies {
		t.Run(f.name, func(t *testing.T) {
			h := newCTHarness(t, Config{})
			// Two LAN hosts open IPsec SAs to the same peer through one
			// outside address. Each direction's SPI was chosen by its
			// receiver: the peer picked 0xa1/0xb1, the clients 0xa2/0xb2.
			a := h.passNAT(build.ESP(f.cli, f.srv, 0xa1, 1), f.nat)
			b := h.passNAT(build.ESP(f.cli2, f.srv, 0xb1, 1), f.nat)
			wantInfo(t, "client A", a, New)
			wantInfo(t, "client B", b, New)
			if a.Conn == b.Conn {
				t.Fatal("two clients collide on one ESP entry")
			}
			// The peer answers A first, then B: each learns its own SPI.
			ra := h.in(build.ESP(f.srv, f.nat, 0xa2, 1))
			rb := h.in(build.ESP(f.srv, f.nat, 0xb2, 1))
			if ra.Conn != a.Conn || ra.Info != EstablishedReply || rb.Conn != b.Conn || rb.Info != EstablishedReply {
				t.Fatalf("first replies: A->%p(%v) B->%p(%v)", ra.Conn, ra.Info, rb.Conn, rb.Info)
			}
			// From now on each SPI finds its own connection, either order.
			for range 3 {
				for _, tc := range []struct {
					pkt  []byte
					conn *Conn
					info Info
				}{
					{build.ESP(f.srv, f.nat, 0xb2, 2), b.Conn, EstablishedReply},
					{build.ESP(f.srv, f.nat, 0xa2, 2), a.Conn, EstablishedReply},
					{build.ESP(f.cli, f.srv, 0xa1, 2), a.Conn, Established},
					{build.ESP(f.cli2, f.srv, 0xb1, 2), b.Conn, Established},
				} {
					if r := h.in(tc.pkt); r.Conn != tc.conn || r.Info != tc.info {
						t.Fatalf("got %p/%v, want %p/%v", r.Conn, r.Info, tc.conn, tc.info)
					}
				}
			}
			if line := h.line(a.Conn); !strings.Contains(line, "spi=0xa1 ") || !strings.Contains(line, "spi=0xa2 ") || !strings.HasPrefix(line, "esp      50 ") {
				t.Fatalf("line %q", line)
			}
			if a.Conn.Status()&StatusAssured == 0 {
				t.Fatal("ESP seen both ways not assured")
			}
			// An unknown SPI from the peer with nobody waiting is a new flow.
			wantInfo(t, "stray", h.in(build.ESP(f.srv, f.nat, 0xc2, 1)), New)
			// Deleting A removes its learnt SPI with it.
			h.tab.Delete(a.Conn)
			if r := h.in(build.ESP(f.srv, f.nat, 0xa2, 3)); r.Conn == a.Conn {
				t.Fatal("learnt SPI outlived its connection")
			}
			if r := h.in(build.ESP(f.srv, f.nat, 0xb2, 3)); r.Conn != b.Conn {
				t.Fatal("B lost its SPI when A died")
			}
		})
	}
}

func TestConfirmClash(t *testing.T) {
	for _, f := range ctFamilies {
		t.Run(f.name, func(t *testing.T) {
			h := newCTHarness(t, Config{})
			pkt := build.UDP(f.cli, 1000, f.srv, 2000, 4)
			r1, r2 := h.in(pkt), h.in(pkt) // two packets before the first is confirmed
			wantInfo(t, "first", r1, New)
			wantInfo(t, "second", r2, New)
			if r1.Conn == r2.Conn {
				t.Fatal("unconfirmed connections shared")
			}
			if err := h.tab.Confirm(r1.Conn, h.now); err != nil {
				t.Fatal(err)
			}
			if err := h.tab.Confirm(r2.Conn, h.now); !errors.Is(err, ErrClash) {
				t.Fatalf("second confirm: %v, want ErrClash", err)
			}
			if h.tab.Stats.InsertFailed.Load() != 1 || h.tab.Count() != 1 {
				t.Fatal("clash not counted or inserted anyway")
			}
			// A reply tuple taken by another connection clashes too (NAT
			// picked a taken port).
			r3 := h.in(build.UDP(f.cli2, 1000, f.srv, 2000, 4))
			rt := *r1.Conn.Tuple(DirReply)
			r3.Conn.SetReplyTuple(rt)
			if err := h.tab.Confirm(r3.Conn, h.now); !errors.Is(err, ErrClash) {
				t.Fatalf("reply clash: %v", err)
			}
			if !h.tab.Taken(&rt, nil) || h.tab.Taken(&rt, r1.Conn) {
				t.Fatal("Taken disagrees with the table")
			}
			// A connection deleted before its confirmation stays out.
			r4 := h.in(build.UDP(f.cli2, 1001, f.srv, 2000, 4))
			h.tab.Delete(r4.Conn)
			if err := h.tab.Confirm(r4.Conn, h.now); !errors.Is(err, ErrDead) {
				t.Fatalf("confirm after delete: %v", err)
			}
			if h.tab.Count() != 1 {
				t.Fatal("dead connection entered the table")
			}
		})
	}
}

// fill confirms n UDP connections from distinct ports of the family's
// client, optionally assured, and returns them.
func (h *ctHarness) fill(f ctFamily, n int, assured bool) []*Conn {
	conns := make([]*Conn, 0, n)
	for i := range n {
		r := h.pass(build.UDP(f.cli, uint16(1024+i), f.srv, 9, 0))
		if r.Conn == nil {
			h.t.Fatalf("fill %d: %+v", i, r)
		}
		if assured {
			r.Conn.SetStatus(StatusSeenReply | StatusAssured)
		}
		conns = append(conns, r.Conn)
	}
	return conns
}

func TestTableFull(t *testing.T) {
	// Twice as many entries as buckets, so the eight buckets early drop
	// looks at hold some (the chance they are all empty is about e^-32).
	const max = 2048
	for _, f := range ctFamilies {
		t.Run(f.name+"/early drop", func(t *testing.T) {
			h := newCTHarness(t, Config{Max: max, Buckets: 1024})
			h.fill(f, max, false)
			r := h.pass(build.UDP(f.cli2, 5, f.srv, 9, 0))
			wantInfo(t, "new while full", r, New)
			if r.Drop || h.tab.Stats.EarlyDrop.Load() == 0 || h.tab.Stats.Drop.Load() != 0 {
				t.Fatalf("drop %v early_drop %d drop %d", r.Drop, h.tab.Stats.EarlyDrop.Load(), h.tab.Stats.Drop.Load())
			}
			if h.tab.Count() > max {
				t.Fatalf("count %d above max", h.tab.Count())
			}
		})
		t.Run(f.name+"/all assured", func(t *testing.T) {
			h := newCTHarness(t, Config{Max: max, Buckets: 1024})
			conns := h.fill(f, max, true)
			r := h.in(build.UDP(f.cli2, 5, f.srv, 9, 0))
			if r.Conn != nil || !r.Drop || r.Info != Invalid || h.tab.Stats.Drop.Load() != 1 || h.tab.Stats.EarlyDrop.Load() != 0 {
				t.Fatalf("result %+v drop %d early_drop %d", r, h.tab.Stats.Drop.Load(), h.tab.Stats.EarlyDrop.Load())
			}
			// Established flows still pass.
			wantInfo(t, "established", h.in(build.UDP(f.cli, 1024, f.srv, 9, 0)), Established)
			// Expired entries make room even when assured.
			for _, c := range conns {
				c.expires.Store(h.now)
			}
			h.advance(time.Second)
			wantInfo(t, "after expiry", h.in(build.UDP(f.cli2, 6, f.srv, 9, 0)), New)
		})
	}
}

// TestEarlyDropRecent: in a table full of assured connections, a new one
// evicts the unassured connection last confirmed in its stripe, which the
// bucket scan would not reach (its bucket is far from the new tuple's).
func TestEarlyDropRecent(t *testing.T) {
	const max = 8192
	for _, f := range ctFamilies {
		h := newCTHarness(t, Config{Max: max})
		h.fill(f, max-1, true)
		x := h.pass(build.UDP(f.cli2, 1, f.srv, 9, 0)).Conn
		if x == nil || h.tab.Count() != max {
			t.Fatalf("setup: %d connections", h.tab.Count())
		}
		xh := x.Tuple(DirOriginal).hash(h.tab.seed)
		var pkt []byte
		for p := 2; pkt == nil; p++ {
			b := build.UDP(f.cli2, uint16(p), f.srv, 9, 0)
			tu := tupleOf(t, h.tab, b)
			th := tu.hash(h.tab.seed)
			if h.tab.stripe(th) == h.tab.stripe(xh) && (xh-th)&h.tab.mask >= earlyDropRange {
				pkt = b
			}
		}
		r := h.pass(pkt)
		wantInfo(t, f.name+" new while full", r, New)
		if r.Drop || !connDying(x) || h.tab.Stats.EarlyDrop.Load() != 1 || h.tab.Count() != max {
			t.Fatalf("%s: drop %v, candidate dying %v, early_drop %d, count %d", f.name, r.Drop, connDying(x), h.tab.Stats.EarlyDrop.Load(), h.tab.Count())
		}
	}
}

func TestGCIncremental(t *testing.T) {
	h := newCTHarness(t, Config{Max: 8192, Buckets: 4096, Timeouts: Timeouts{UDP: ctSec(10)}})
	var short, long []*Conn
	for _, f := range ctFamilies {
		conns := h.fill(f, 3000, false)
		for i, c := range conns {
			if i%2 == 0 {
				c.expires.Store(h.now + int64(time.Hour))
				long = append(long, c)
			} else {
				short = append(short, c)
			}
		}
	}
	h.advance(11 * time.Second)
	const step = 64
	removed, calls := 0, 0
	for removed < len(short) {
		// What the next step may remove: the expired entries whose original
		// tuple hashes into the next `step` buckets.
		h.tab.gcMu.Lock()
		cur := h.tab.gcCursor
		h.tab.gcMu.Unlock()
		inRange := 0
		for _, c := range short {
			b := int(c.node[DirOriginal].tuple.hash(h.tab.seed) & h.tab.mask)
			if (b-cur)&int(h.tab.mask) < step && !connDying(c) {
				inRange++
			}
		}
		n := h.tab.GC(h.now, step)
		if n != inRange {
			t.Fatalf("step %d removed %d, want the %d expired in its buckets", calls, n, inRange)
		}
		removed += n
		calls++
		if calls > 4096/step {
			t.Fatalf("one sweep removed %d of %d", removed, len(short))
		}
	}
	if h.tab.Count() != len(long) {
		t.Fatalf("count %d, want %d live", h.tab.Count(), len(long))
	}
	for _, c := range long {
		if connDying(c) {
			t.Fatal("GC removed a live connection")
		}
	}
	if h.tab.Stats.Delete.Load() != uint64(len(short)) {
		t.Fatalf("delete stat %d", h.tab.Stats.Delete.Load())
	}
}

func TestRunGC(t *testing.T) {
	tab, err := NewTable(Config{})
	if err != nil {
		t.Fatal(err)
	}
	now := tab.Now()
	for i := range 100 {
		tu := Tuple{SrcPort: uint16(i), DstPort: 53, Proto: packet.ProtoUDP, Family: 4}
		tu.Src[0], tu.Dst[0] = 10, 198
		life := time.Duration(0) // expired at once
		if i%10 == 0 {
			life = time.Hour
		}
		if err := tab.Confirm(tab.NewUnconfirmed(tu, now, life), now); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tab.RunGC(ctx); close(done) }()
	// The sweeper covers the whole table about once a second.
	deadline := time.Now().Add(10 * time.Second)
	for tab.Count() != 10 {
		if time.Now().After(deadline) {
			t.Fatalf("RunGC left %d entries, want the 10 live ones", tab.Count())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunGC did not return after its context ended")
	}
}

func TestGCPace(t *testing.T) {
	for _, tc := range []struct {
		removed, live int
		remaining     time.Duration
		full          bool
		want          time.Duration
	}{
		{0, 0, 0, false, gcSweepMax},                              // empty table: rarely
		{0, 100, 100 * 30 * time.Second, false, 30 * time.Second}, // sweep as often as they expire
		{0, 100, 100 * 5 * time.Hour, false, gcSweepMax},          // capped
		{0, 100, 100 * time.Millisecond, false, gcSweepMin},       // floored
		{50, 100, 100 * 30 * time.Second, false, gcSweepMin},      // a third had expired
		{0, 100, 100 * 30 * time.Second, true, gcSweepMin},        // table nearly full
	} {
		if got := nextSweep(tc.removed, tc.live, int64(tc.remaining), tc.full); got != tc.want {
			t.Errorf("%+v: %v, want %v", tc, got, tc.want)
		}
	}
}

// connDying reports whether c was deleted.
func connDying(c *Conn) bool { return c.Status()&StatusDying != 0 }

func TestDeleteAndFlush(t *testing.T) {
	for _, f := range ctFamilies {
		t.Run(f.name, func(t *testing.T) {
			h := newCTHarness(t, Config{})
			var hooked []*Conn
			h.tab.AddDestroyHook(func(c *Conn) { hooked = append(hooked, c) })
			conns := h.fill(f, 10, false)
			unconf := h.in(build.UDP(f.cli2, 1, f.srv, 2, 0)).Conn

			if !h.tab.Delete(conns[0]) || h.tab.Delete(conns[0]) {
				t.Fatal("Delete must report true exactly once")
			}
			if r := h.in(build.UDP(f.cli, 1024, f.srv, 9, 0)); r.Conn == conns[0] || r.Info != New {
				t.Fatal("deleted connection still found")
			}
			if !h.tab.Delete(unconf) || h.tab.Count() != 9 {
				t.Fatal("deleting an unconfirmed connection changed the count")
			}
			n := 0
			h.tab.Range(func(*Conn) bool { n++; return true })
			if n != 9 {
				t.Fatalf("range saw %d", n)
			}
			h.tab.Flush()
			if h.tab.Count() != 0 {
				t.Fatalf("count %d after flush", h.tab.Count())
			}
			h.tab.Range(func(*Conn) bool { t.Fatal("range after flush"); return false })
			if len(hooked) != 11 || hooked[0] != conns[0] || hooked[1] != unconf {
				t.Fatalf("destroy hooks ran %d times", len(hooked))
			}
			for _, c := range conns {
				if r := h.in(build.UDP(f.srv, 9, f.cli, c.Tuple(DirOriginal).SrcPort, 0)); r.Conn != nil && r.Conn.Confirmed() {
					t.Fatal("flushed reply tuple still found")
				}
			}
		})
	}
}

func TestEvents(t *testing.T) {
	h := newCTHarness(t, Config{})
	f := ctFamilies[0]
	all, cancelAll := h.tab.Subscribe(64)
	small, cancelSmall := h.tab.Subscribe(1)
	r := h.pass(build.UDP(f.cli, 1, f.srv, 2, 0)) // NEW
	h.in(build.UDP(f.srv, 2, f.cli, 1, 0))        // UPDATE (reply seen)
	h.tab.Delete(r.Conn)                          // DESTROY
	var got []EventType
	for range 3 {
		e := nextEvent(t, all)
		if e.Conn != r.Conn {
			t.Fatal("event for another connection")
		}
		got = append(got, e.Type)
	}
	if got[0] != EventNew || got[1] != EventUpdate || got[2] != EventDestroy {
		t.Fatalf("events %v", got)
	}
	if e := nextEvent(t, small); e.Type != EventNew {
		t.Fatalf("small buffer got %v", e.Type)
	}
	if h.tab.Stats.EventsLost.Load() != 2 {
		t.Fatalf("events lost %d, want 2", h.tab.Stats.EventsLost.Load())
	}
	cancelSmall()
	cancelAll()
	h.pass(build.UDP(f.cli, 3, f.srv, 2, 0))
	if len(all) != 0 || len(small) != 0 || h.tab.Stats.EventsLost.Load() != 2 {
		t.Fatal("events delivered after cancel")
	}
	// Unconfirmed connections make no events.
	ev, cancel := h.tab.Subscribe(4)
	defer cancel()
	h.tab.Delete(h.in(build.UDP(f.cli, 4, f.srv, 2, 0)).Conn)
	if len(ev) != 0 {
		t.Fatal("event for an unconfirmed connection")
	}
}

func TestBadChecksum(t *testing.T) {
	for _, f := range ctFamilies {
		t.Run(f.name, func(t *testing.T) {
			h := newCTHarness(t, Config{})
			pkt := build.UDP(f.cli, 1, f.srv, 2, 8)
			pkt[len(pkt)-1] ^= 1
			wantInfo(t, "bad udp checksum", h.in(pkt), Invalid)
			off := Config{Checksum: new(bool)}
			h2 := newCTHarness(t, off)
			wantInfo(t, "checksum off", h2.in(pkt), New)
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Max: -1}, "conntrack.max"},
		{Config{Max: 1 << 40}, "conntrack.max"},
		{Config{Buckets: 1 << 30}, "conntrack.buckets"},
		{Config{ExpectMax: -3}, "conntrack.expect_max"},
		{Config{TCPMaxRetrans: 300}, "conntrack.tcp_max_retrans"},
		{Config{Timeouts: Timeouts{UDPStream: -1}}, "conntrack.timeouts.udp_stream"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
	var c Config
	if err := c.Validate(); err != nil || c.Max != DefaultMax || c.ExpectMax != MaxExpectations || c.Timeouts != DefaultTimeouts() {
		t.Fatalf("defaults: %v %+v", err, c)
	}
	var d Duration
	if err := d.UnmarshalText([]byte("-5s")); err == nil {
		t.Fatal("negative duration accepted")
	}
	if err := d.UnmarshalText([]byte("90s")); err != nil || time.Duration(d) != 90*time.Second {
		t.Fatal(err)
	}
}

func TestSetTimeouts(t *testing.T) {
	h := newCTHarness(t, Config{})
	f := ctFamilies[0]
	r := h.pass(build.UDP(f.cli, 1, f.srv, 2, 0))
	h.wantExpiry("before", r.Conn, 120*time.Second)
	if err := h.tab.SetTimeouts(Timeouts{UDP: ctSec(45)}); err != nil {
		t.Fatal(err)
	}
	h.wantExpiry("kept", r.Conn, 120*time.Second)
	h.in(build.UDP(f.cli, 1, f.srv, 2, 0))
	h.wantExpiry("after", r.Conn, 45*time.Second)
	if h.tab.Config().Timeouts.ICMP != ctSec(60) {
		t.Fatal("unset timeouts not defaulted")
	}
	if err := h.tab.SetTimeouts(Timeouts{ICMP: -1}); err == nil {
		t.Fatal("bad timeouts accepted")
	}
}

func TestStatsLine(t *testing.T) {
	h := newCTHarness(t, Config{})
	f := ctFamilies[0]
	h.pass(build.UDP(f.cli, 1, f.srv, 2, 0))
	h.in(build.Echo(f.srv, f.cli, true, 1, 0))
	got := string(h.tab.AppendStats(nil))
	// conntrack -S of conntrack-tools 1.4.7 on Linux 6.18, one line.
	want := "cpu=0   \tfound=0 invalid=1 insert=1 insert_failed=0 drop=0 early_drop=0 error=0 search_restart=0 clash_resolve=0 chaintoolong=0 "
	if got != want {
		t.Fatalf("stats\n got %q\nwant %q", got, want)
	}
}
