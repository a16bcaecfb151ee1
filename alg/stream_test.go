package alg

import (
	"encoding/binary"
	"strings"
	"testing"

	"tungate/conntrack"
	"tungate/packet"
)

func masqGateway(t *testing.T, v6 bool, cfg *FTPConfig) (*gateway, *session) {
	t.Helper()
	if cfg == nil {
		cfg = &FTPConfig{}
	}
	g := newGateway(t, Config{FTP: cfg})
	if v6 {
		g.masquerade("fd10::/64", "2001:db8:1::1")
		return g, g.open("[fd10::2]:40000", "[2001:db8:1::2]:21", "[2001:db8:1::2]:21")
	}
	g.masquerade("10.10.0.0/24", "198.18.0.1")
	return g, g.open("10.10.0.2:40000", "198.18.0.2:21", "198.18.0.2:21")
}

func plainGateway(t *testing.T, v6 bool) (*gateway, *session) {
	t.Helper()
	g := newGateway(t, Config{FTP: &FTPConfig{}})
	if v6 {
		return g, g.open("[fd10::2]:40000", "[fd20::2]:21", "[fd20::2]:21")
	}
	return g, g.open("10.10.0.2:40000", "10.20.0.2:21", "10.20.0.2:21")
}

// TestSplitEveryOffset splits each announcement at every byte across two
// segments. Without NAT both pass untouched and the expectation appears
// once the line is complete, never before. With NAT the receiver must end
// up with exactly the rewritten line: a first part that already holds
// some of the argument is held back (dropped, and the second part behind
// it too), and the sender's coalesced retransmission is rewritten whole.
func TestSplitEveryOffset(t *testing.T) {
	type split struct {
		v6         bool
		fromClient bool
		cmd, want  string // want: the line as rewritten under NAT
	}
	for _, sp := range []split{
		{false, true, "PORT 10,10,0,2,156,65\r\n", "PORT 198,18,0,1,156,65\r\n"},
		{false, true, "EPRT |1|10.10.0.2|40001|\r\n", "EPRT |1|198.18.0.1|40001|\r\n"},
		{true, true, "EPRT |2|fd10::2|40001|\r\n", "EPRT |2|2001:0db8:0001:0000:0000:0000:0000:0001|40001|\r\n"},
		{false, false, "227 Entering Passive Mode (198,18,0,2,19,137)\r\n", "227 Entering Passive Mode (198,18,0,2,19,137)\r\n"},
		{true, false, "229 Entering Extended Passive Mode (|||5001|)\r\n", "229 Entering Extended Passive Mode (|||5001|)\r\n"},
	} {
		for _, nat := range []bool{false, true} {
			name := strings.Fields(sp.cmd)[0]
			if sp.v6 {
				name += "/v6"
			}
			if nat {
				name += "/NAT"
			}
			t.Run(name, func(t *testing.T) {
				want := sp.cmd
				if nat {
					want = sp.want
				}
				for k := 1; k < len(sp.cmd)-1; k++ {
					var g *gateway
					var x *session
					if nat {
						g, x = masqGateway(t, sp.v6, nil)
					} else {
						g, x = plainGateway(t, sp.v6)
						if !sp.v6 && !sp.fromClient {
							want = strings.Replace(sp.cmd, "198,18,0,2", "10,20,0,2", 1)
						}
						if sp.v6 && sp.fromClient {
							want = sp.cmd
						}
					}
					cmd := sp.cmd
					if !nat && !sp.v6 && !sp.fromClient {
						cmd = want
					}
					from := x.s
					to := x.c
					if sp.fromClient {
						from, to = x.c, x.s
					}
					x.send(sp.fromClient, "NOOP\r\n")
					start := from.snd
					first := x.send(sp.fromClient, cmd[:k])
					if g.tbl.ExpectationCount() != 0 {
						t.Fatalf("split at %d: expectation before the line was complete", k)
					}
					if first.dropped {
						if !nat {
							t.Fatalf("split at %d: first part dropped without NAT", k)
						}
						// The second part follows before the sender
						// notices; it lies beyond a hole.
						out, _ := x.sendRaw(sp.fromClient, start+uint32(k), cmd[k:])
						if out != nil {
							t.Fatalf("split at %d: segment beyond the held command was passed on", k)
						}
						out, _ = x.sendRaw(sp.fromClient, start, cmd)
						if out == nil {
							t.Fatalf("split at %d: coalesced retransmission dropped", k)
						}
						x.deliver(to, out)
					} else {
						x.send(sp.fromClient, cmd[k:])
					}
					got := string(to.got[len(to.got)-len(want):])
					if got != want {
						t.Fatalf("split at %d: receiver got %q, want %q", k, to.got, want)
					}
					if n := g.tbl.ExpectationCount(); n != 1 {
						t.Fatalf("split at %d: %d expectations, want 1", k, n)
					}
					// The stream goes on consistently both ways.
					x.send(!sp.fromClient, "200 OK\r\n")
					x.send(sp.fromClient, "NOOP\r\n")
				}
			})
		}
	}
}

// TestSeveralCommandsOneSegment: three lines in one segment, two of them
// rewritten (each changing the length), one partial line at the end.
func TestSeveralCommandsOneSegment(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		g, x := masqGateway(t, v6, &FTPConfig{MaxExpected: 4})
		in := "PORT 10,10,0,2,156,65\r\nNOOP\r\nPORT 010,010,000,002,156,66\r\nTYPE "
		want := "PORT 198,18,0,1,156,65\r\nNOOP\r\nPORT 198,18,0,1,156,66\r\nTYPE "
		if v6 {
			in = "EPRT |2|fd10::2|40001|\r\nNOOP\r\nEPRT |2|fd10:0:0:0:0:0:0:2|40002|\r\nTYPE "
			want = "EPRT |2|2001:0db8:0001:0000:0000:0000:0000:0001|40001|\r\nNOOP\r\nEPRT |2|2001:0db8:0001:0000:0000:0000:0000:0001|40002|\r\nTYPE "
		}
		sg := x.send(true, in)
		if string(sg.payload) != want {
			t.Fatalf("v6=%v: sent %q, want %q", v6, sg.payload, want)
		}
		if n := g.tbl.ExpectationCount(); n != 2 {
			t.Fatalf("v6=%v: %d expectations, want 2", v6, n)
		}
		x.send(true, "I\r\n")
		x.send(false, "200 PORT command successful\r\n")
		x.send(false, "200 PORT command successful\r\n")
		x.send(false, "200 Switching to Binary mode.\r\n")
		if got := string(x.s.got); got != want+"I\r\n" {
			t.Fatalf("v6=%v: server stream %q", v6, got)
		}
	}
}

// TestLongSessionSeqAdjust runs hundreds of length-changing rewrites
// (growing and shrinking) interleaved with replies, pure acks and SACK
// blocks, and checks that every segment continues the receiver's stream,
// every ack names exactly what the acked side sent, and every SACK edge
// maps back to the client's own sequence numbers. The net offset stays
// positive, as with real clients (announcements in canonical form only
// grow); TestNetShrinkingRewrites covers the other case.
func TestLongSessionSeqAdjust(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		grow := []string{"PORT 10,10,0,2,156,65\r\n", "PORT 198,18,0,1,156,65\r\n"}
		shrink := []string{"PORT 010,010,0,2,156,65\r\n", "PORT 198,18,0,1,156,65\r\n"}
		if v6 {
			grow = []string{"EPRT |2|fd10::2|40001|\r\n", "EPRT |2|2001:0db8:0001:0000:0000:0000:0000:0001|40001|\r\n"}
			// %pI6 output is always 39 characters: only a longer
			// address text or a port with leading zeros shrinks.
			shrink = []string{"EPRT |2|fd10:0000:0000:0000:0000:0000:0000:0002|04001|\r\n", "EPRT |2|2001:0db8:0001:0000:0000:0000:0000:0001|4001|\r\n"}
		}
		longSession(t, conntrack.Config{}, v6, grow, shrink)
	}
}

// TestNetShrinkingRewrites: rewrites that shrink the stream more than
// others grow it drive the offset negative. The helper's own mapping stays
// exact; conntrack's TCP window check maps acks with Linux's
// nf_ct_seq_offset rule, which misjudges them once the offset is
// negative (as Linux does), so that check runs liberal here.
func TestNetShrinkingRewrites(t *testing.T) {
	liberal := conntrack.Config{TCPLiberal: true}
	longSession(t, liberal, false,
		[]string{"PORT 10,10,0,2,156,65\r\n", "PORT 198,18,0,1,156,65\r\n"},
		[]string{"PORT 010,010,000,002,156,065\r\n", "PORT 198,18,0,1,156,65\r\n"})
	// The rewritten IPv6 address is always 39 characters (%pI6): only an
	// announcement almost as long grows by little.
	longSession(t, liberal, true,
		[]string{"EPRT |2|fd10:000:0000:0000:0000:0000:0000:0002|41|\r\n", "EPRT |2|2001:0db8:0001:0000:0000:0000:0000:0001|41|\r\n"},
		[]string{"EPRT |2|fd10:0000:0000:0000:0000:0000:0000:0002|00041|\r\n", "EPRT |2|2001:0db8:0001:0000:0000:0000:0000:0001|41|\r\n"})
}

func longSession(t *testing.T, ct conntrack.Config, v6 bool, grow, shrink []string) {
	t.Helper()
	g := newGatewayCT(t, ct, Config{FTP: &FTPConfig{}})
	var x *session
	if v6 {
		g.masquerade("fd10::/64", "2001:db8:1::1")
		x = g.open("[fd10::2]:40000", "[2001:db8:1::2]:21", "[2001:db8:1::2]:21")
	} else {
		g.masquerade("10.10.0.0/24", "198.18.0.1")
		x = g.open("10.10.0.2:40000", "198.18.0.2:21", "198.18.0.2:21")
	}
	type mark struct{ cli, srv uint32 } // one client segment start, in both spaces
	var marks []mark
	var wantStream strings.Builder
	for i := range 300 {
		var cmd, out string
		switch i % 3 {
		case 0:
			cmd, out = grow[0], grow[1]
		case 1:
			cmd, out = shrink[0], shrink[1]
		default:
			cmd, out = "NOOP\r\n", "NOOP\r\n"
		}
		marks = append(marks, mark{cli: x.c.snd, srv: x.s.rcv})
		sg := x.send(true, cmd)
		if string(sg.payload) != out {
			t.Fatalf("v6=%v #%d: sent %q, want %q", v6, i, sg.payload, out)
		}
		wantStream.WriteString(out)
		x.send(false, "200 PORT command successful. Consider using PASV.\r\n")
		if i%7 == 3 && len(marks) > 4 {
			// The server SACKs two earlier client segments (a D-SACK
			// style report), edges as it numbers them; the client must
			// get its own numbers back, aligned or not.
			a, b := marks[len(marks)-4], marks[len(marks)-2]
			c, d := marks[len(marks)-3], marks[len(marks)-1]
			sg := x.ack(false, sackOpt(i%2 == 0, a.srv, b.srv, c.srv, d.srv)...)
			edges := sackEdges(t, sg.opts)
			want := []uint32{a.cli, b.cli, c.cli, d.cli}
			if len(edges) != 4 || edges[0] != want[0] || edges[1] != want[1] || edges[2] != want[2] || edges[3] != want[3] {
				t.Fatalf("v6=%v #%d: SACK edges %v, want %v", v6, i, edges, want)
			}
		}
		if i%11 == 5 {
			x.ack(true)
		}
	}
	if string(x.s.got[len(x.s.got)-wantStream.Len():]) != wantStream.String() {
		t.Fatalf("v6=%v: server stream differs from the rewritten commands", v6)
	}
	if x.ctrl.Status()&conntrack.StatusSeqAdjust == 0 {
		t.Errorf("v6=%v: control connection lacks SEQ_ADJUST", v6)
	}
	if n := g.tbl.ExpectationCount(); n != 1 {
		t.Errorf("v6=%v: %d expectations after 200 PORTs, want 1 (max_expected)", v6, n)
	}
}

func sackEdges(t *testing.T, opts []byte) []uint32 {
	t.Helper()
	for i := 0; i < len(opts); {
		switch opts[i] {
		case 0:
			return nil
		case 1:
			i++
			continue
		}
		l := int(opts[i+1])
		if opts[i] == 5 {
			var e []uint32
			for j := i + 2; j < i+l; j += 4 {
				e = append(e, binary.BigEndian.Uint32(opts[j:]))
			}
			return e
		}
		i += l
	}
	t.Fatal("no SACK option")
	return nil
}

// TestRetransmissions: a retransmitted announcement creates nothing new
// and leaves the receiver with consistent bytes: a rewritten segment is
// rewritten the same way again, whole or coalesced with later data.
func TestRetransmissions(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		g, x := masqGateway(t, v6, nil)
		cmd := "PORT 10,10,0,2,156,65\r\n"
		if v6 {
			cmd = "EPRT |2|fd10::2|40001|\r\n"
		}
		x.send(true, "NOOP\r\n")
		start := x.c.snd
		x.send(true, cmd)
		created := g.m.Stats.Expected.Load()
		mangled := g.m.Stats.Mangled.Load()

		// The same segment again.
		out, _ := x.sendRaw(true, start, cmd)
		if out == nil {
			t.Fatal("retransmission dropped")
		}
		x.retransmitted(false, out)
		// Coalesced with the preceding NOOP and a new command.
		out, _ = x.sendRaw(true, start-6, "NOOP\r\n"+cmd+"NOOP\r\n")
		if out == nil {
			t.Fatal("coalesced retransmission dropped")
		}
		var p packet.Parsed
		_ = p.Decode(out)
		old := p.Payload()[:len(p.Payload())-6]
		p2 := make([]byte, len(out))
		copy(p2, out)
		x.retransmitted(false, truncatePayload(t, p2, len(old)))
		if string(p.Payload()[len(old):]) != "NOOP\r\n" {
			t.Fatalf("new part of the coalesced segment: %q", p.Payload()[len(old):])
		}
		x.s.rcv += 6
		x.s.got = append(x.s.got, "NOOP\r\n"...)
		if got := g.m.Stats.Expected.Load(); got != created {
			t.Errorf("retransmissions created %d more expectations", got-created)
		}
		if got := g.m.Stats.Mangled.Load(); got != mangled {
			t.Errorf("retransmissions were parsed again (%d new rewrites)", got-mangled)
		}
		if g.m.Stats.Replayed.Load() != 2 {
			t.Errorf("replayed %d rewrites, want 2", g.m.Stats.Replayed.Load())
		}
		// A retransmission starting inside the rewritten bytes cannot be
		// translated consistently: dropped.
		if out, _ := x.sendRaw(true, start+7, cmd[7:]); out != nil {
			t.Errorf("retransmission starting inside a rewrite passed")
		}
		x.send(false, "200 OK\r\n")
		x.send(true, "QUIT\r\n")
	}
}

// truncatePayload returns the packet with its payload cut to n bytes,
// checksums fixed, to compare only the retransmitted part.
func truncatePayload(t *testing.T, b []byte, n int) []byte {
	t.Helper()
	var p packet.Parsed
	if err := p.Decode(b); err != nil {
		t.Fatal(err)
	}
	if err := p.ReplacePayload(n, len(p.Payload())-n, nil); err != nil {
		t.Fatal(err)
	}
	return p.Bytes()
}

// TestOutOfOrder: a segment beyond a hole is never parsed. Where the
// direction needs no rewrite it passes; once the hole is filled the
// helper resumes after the skipped bytes at the next line. Where it needs
// rewriting it is dropped, and the sender's resend is parsed in order.
func TestOutOfOrder(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		// No rewrite needed (client and server both untranslated).
		g, x := plainGateway(t, v6)
		cmd := "PORT 10,10,0,2,156,65\r\n"
		if v6 {
			cmd = "EPRT |2|fd10::2|40001|\r\n"
		}
		hole := "NOOP\r\n"
		start := x.c.snd
		out, _ := x.sendRaw(true, start+uint32(len(hole)), cmd)
		if out == nil {
			t.Fatal("out-of-order segment dropped where no rewrite is needed")
		}
		if g.tbl.ExpectationCount() != 0 {
			t.Fatal("out-of-order segment was parsed")
		}
		out, _ = x.sendRaw(true, start, hole)
		if out == nil {
			t.Fatal("hole filler dropped")
		}
		// The receiver had the later segment already; the stream goes on.
		x.c.snd = start + uint32(len(hole)+len(cmd))
		x.s.rcv = x.c.snd
		x.s.got = append(x.s.got, (hole + cmd)...)
		x.send(false, "200 OK\r\n")
		// The skipped bytes may have ended mid-line: the first line after
		// them is not trusted to start at a line boundary.
		x.send(true, cmd)
		if g.tbl.ExpectationCount() != 0 {
			t.Fatal("first line after skipped bytes was parsed")
		}
		x.send(true, cmd)
		if g.tbl.ExpectationCount() != 1 {
			t.Fatal("in-order command after the skipped range not parsed")
		}

		// Rewrite needed: dropped, then parsed in order.
		g, x = masqGateway(t, v6, nil)
		start = x.c.snd
		if out, _ := x.sendRaw(true, start+uint32(len(hole)), cmd); out != nil {
			t.Fatal("out-of-order segment passed where it needs rewriting")
		}
		x.c.snd = start
		x.send(true, hole)
		sg := x.send(true, cmd)
		if strings.Contains(string(sg.payload), "10,10,0,2") || strings.Contains(string(sg.payload), "fd10::2") {
			t.Fatalf("resent command not rewritten: %q", sg.payload)
		}
		if g.tbl.ExpectationCount() != 1 {
			t.Fatal("resent command not parsed")
		}
	}
}
