package uplink

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	"tungate/packet"
)

const (
	synFlag = header.TCPFlagSyn
	ackFlag = header.TCPFlagAck
	pshFlag = header.TCPFlagPsh
	rstFlag = header.TCPFlagRst
)

func isTCPFrom(src, dst netip.AddrPort) func(p *packet.Parsed) bool {
	return func(p *packet.Parsed) bool {
		return p.Proto == packet.ProtoTCP && p.SrcIP() == src.Addr() && p.SrcPort == src.Port() &&
			p.DstIP() == dst.Addr() && p.DstPort == dst.Port()
	}
}

func tcpSeq(p *packet.Parsed) uint32 { return binary.BigEndian.Uint32(p.L4()[4:]) }

func tcpPayload(p *packet.Parsed) []byte {
	l4 := p.L4()
	return l4[int(l4[12]>>4)*4:]
}

// dial connects from the container's stack.
func (c *container) dial(t testing.TB, dst netip.AddrPort) *gonet.TCPConn {
	t.Helper()
	proto := ipv4.ProtocolNumber
	if dst.Addr().Is6() {
		proto = ipv6.ProtocolNumber
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := gonet.DialContextTCP(ctx, c.s, tcpip.FullAddress{Addr: tcpipAddr(dst.Addr()), Port: dst.Port()}, proto)
	if err != nil {
		t.Fatalf("container dial %v: %v", dst, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func listenLoopback(t testing.TB, v6 bool) *net.TCPListener {
	t.Helper()
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(loAddr(v6), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestTCPGet is curl against a tiny HTTP server on the host's loopback.
func TestTCPGet(t *testing.T) {
	families(t, func(t *testing.T, v6 bool) {
		l := openLink(t, Config{AllowHostLoopback: true})
		c := newContainer(t, l)
		body := make([]byte, 300<<10)
		rand.Read(body)
		ln := listenLoopback(t, v6)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Got", string(rune('0'+len(got)%10)))
			w.Write(body)
		})}
		go srv.Serve(ln)
		defer srv.Close()
		dst := ln.Addr().(*net.TCPAddr).AddrPort()
		client := &http.Client{Transport: &http.Transport{
			DialContext: func(context.Context, string, string) (net.Conn, error) { return c.dial(t, dst), nil },
		}, Timeout: 10 * time.Second}
		resp, err := client.Get("http://" + dst.String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("GET: %d bytes, err %v; want the %d bytes served", len(got), err, len(body))
		}
		client.CloseIdleConnections()
		waitFor(t, 5*time.Second, "the spliced connection to end", func() bool {
			return l.Stats()[TCPConns] == 0 && l.Flows() == 0
		})
	})
}

// TestTCPHalfClose carries data both ways and half-closes each side
// first: what one side shuts, the other reads as EOF, and it can still
// send.
func TestTCPHalfClose(t *testing.T) {
	families(t, func(t *testing.T, v6 bool) {
		l := openLink(t, Config{AllowHostLoopback: true})
		c := newContainer(t, l)
		up := make([]byte, 2<<20)
		down := make([]byte, 3<<20)
		rand.Read(up)
		rand.Read(down)

		t.Run("container shuts first", func(t *testing.T) {
			ln := listenLoopback(t, v6)
			res := make(chan []byte, 1)
			go func() {
				hc, err := ln.AcceptTCP()
				if err != nil {
					res <- nil
					return
				}
				defer hc.Close()
				got, _ := io.ReadAll(hc) // until the container's FIN
				res <- got
				hc.Write(down)
			}()
			conn := c.dial(t, ln.Addr().(*net.TCPAddr).AddrPort())
			if _, err := conn.Write(up); err != nil {
				t.Fatal(err)
			}
			conn.CloseWrite()
			if got := <-res; !bytes.Equal(got, up) {
				t.Fatalf("host read %d bytes, want the %d sent", len(got), len(up))
			}
			got, err := io.ReadAll(conn)
			if err != nil || !bytes.Equal(got, down) {
				t.Fatalf("container read %d bytes (%v), want %d after its own FIN", len(got), err, len(down))
			}
		})
		t.Run("host shuts first", func(t *testing.T) {
			ln := listenLoopback(t, v6)
			res := make(chan []byte, 1)
			go func() {
				hc, err := ln.AcceptTCP()
				if err != nil {
					res <- nil
					return
				}
				defer hc.Close()
				hc.Write(down)
				hc.CloseWrite()
				got, _ := io.ReadAll(hc)
				res <- got
			}()
			conn := c.dial(t, ln.Addr().(*net.TCPAddr).AddrPort())
			got, err := io.ReadAll(conn) // until the host's FIN
			if err != nil || !bytes.Equal(got, down) {
				t.Fatalf("container read %d bytes (%v), want %d", len(got), err, len(down))
			}
			if _, err := conn.Write(up); err != nil {
				t.Fatalf("write after the host's FIN: %v", err)
			}
			conn.CloseWrite()
			if got := <-res; !bytes.Equal(got, up) {
				t.Fatalf("host read %d bytes, want %d", len(got), len(up))
			}
		})
		waitFor(t, 5*time.Second, "both connections to end", func() bool {
			return l.Stats()[TCPConns] == 0 && l.Flows() == 0
		})
	})
}

// TestTCPRefused: a refused dial answers the SYN with a RST, never a
// SYN-ACK first.
func TestTCPRefused(t *testing.T) {
	families(t, func(t *testing.T, v6 bool) {
		l := openLink(t, Config{AllowHostLoopback: true})
		r := readPackets(t, l)
		ln := listenLoopback(t, v6)
		dst := ln.Addr().(*net.TCPAddr).AddrPort()
		ln.Close()
		ctr := netip.AddrPortFrom(ctrAddr(v6), 42000)
		write(t, l, tcpPkt(ctr, dst, 7777, 0, synFlag, nil))
		p := r.expect(t, 2*time.Second, "answer to SYN", isTCPFrom(dst, ctr))
		if p.TCPFlags&packet.TCPRst == 0 || p.TCPFlags&packet.TCPSyn != 0 {
			t.Fatalf("first answer has flags %#x, want RST without SYN", p.TCPFlags)
		}
		if ack := binary.BigEndian.Uint32(p.L4()[8:]); ack != 7778 {
			t.Errorf("RST acknowledges %d, want 7778", ack)
		}
		if s := l.Stats(); s[DialsRefused] != 1 || s[TCPConns] != 0 || l.Flows() != 0 {
			t.Errorf("dials_refused %d, tcp_conns %d, flows %d", s[DialsRefused], s[TCPConns], l.Flows())
		}
	})
}

// TestDialBound: SYNs to a black hole hold dial slots, up to the
// per-host bound; a SYN to a live listener is not held up by them, and the
// black-holed ones end with ICMP host unreachable quoting their SYN.
func TestDialBound(t *testing.T) {
	if !inNetns(t) {
		return
	}
	// A black hole: SYNs to 198.51.100.1 leave through a veth to a MAC
	// address nobody has, and the peer drops them; connects hang until
	// they time out.
	run(t, "ip", "link", "add", "bh0", "type", "veth", "peer", "name", "bh1")
	run(t, "ip", "addr", "add", "198.51.100.2/24", "dev", "bh0")
	run(t, "ip", "link", "set", "bh0", "up")
	run(t, "ip", "link", "set", "bh1", "up")
	run(t, "ip", "neigh", "add", "198.51.100.1", "lladdr", "02:00:00:00:00:01", "dev", "bh0", "nud", "permanent")
	run(t, "ip", "-6", "addr", "add", "2001:db8:1::2/64", "dev", "bh0", "nodad")
	run(t, "ip", "-6", "neigh", "add", "2001:db8:1::1", "lladdr", "02:00:00:00:00:01", "dev", "bh0", "nud", "permanent")
	// Behind it, whole networks of black-holed hosts.
	run(t, "ip", "route", "add", "198.18.0.0/16", "via", "198.51.100.1", "dev", "bh0")
	run(t, "ip", "-6", "route", "add", "2001:db8:2::/48", "via", "2001:db8:1::1", "dev", "bh0")
	t.Run("per_host", func(t *testing.T) { families(t, testDialBound) })
	t.Run("evict_oldest", func(t *testing.T) { families(t, testDialEvict) })
}

// testDialEvict: SYNs to many black-holed hosts fill every dial slot
// (the per-host bound does not help); each new SYN gives up the oldest
// pending dial, so a SYN to a live listener gets its dial at once, and the
// number of dials in progress stays at max_pending_dials.
func testDialEvict(t *testing.T, v6 bool) {
	const slots, syns = 8, 40
	l := openLink(t, Config{AllowHostLoopback: true, MaxPendingDials: slots, DialTimeout: Duration(30 * time.Second)})
	r := readPackets(t, l)
	ln := listenLoopback(t, v6)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	live := ln.Addr().(*net.TCPAddr).AddrPort()
	pkts := make([][]byte, syns)
	for i := range pkts {
		hole := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i + 1)})
		if v6 {
			hole = netip.MustParseAddr(fmt.Sprintf("2001:db8:2::%x", i+1))
		}
		pkts[i] = tcpPkt(netip.AddrPortFrom(ctrAddr(v6), uint16(44000+i)), netip.AddrPortFrom(hole, 80), uint32(1000*i), 0, synFlag, nil)
	}
	write(t, l, pkts...)
	waitFor(t, 5*time.Second, "the black-holed dials to fill every slot", func() bool {
		s := l.Stats()
		return s[DialsPending] == slots && s[DialsEvicted] == syns-slots
	})
	ctr := netip.AddrPortFrom(ctrAddr(v6), 43000)
	start := time.Now()
	write(t, l, tcpPkt(ctr, live, 1, 0, synFlag, nil))
	p := r.expect(t, 900*time.Millisecond, "SYN-ACK from the live listener (before the container's first SYN retransmission)", isTCPFrom(live, ctr))
	if p.TCPFlags != packet.TCPSyn|packet.TCPAck {
		t.Fatalf("flags %#x, want SYN-ACK", p.TCPFlags)
	}
	t.Logf("live handshake with every dial slot held by a black hole: %v", time.Since(start))
	s := l.Stats()
	if s[DialsEvicted] != syns-slots+1 || s[DropDialBudget] != 0 {
		t.Errorf("dials_evicted %d, drop_dial_budget %d; want %d and 0", s[DialsEvicted], s[DropDialBudget], syns-slots+1)
	}
	// The given-up dials answer the container nothing (its SYN
	// retransmission would get a fresh dial): no ICMP error, no RST.
	r.none(t, 200*time.Millisecond, "answer to a given-up SYN", func(p *packet.Parsed) bool {
		return p.DstPort >= 44000 && p.DstPort < 44000+syns || isUnreach(p, 1, 3)
	})
	waitFor(t, 3*time.Second, "the pending dials to stay at the bound", func() bool {
		return l.Stats()[DialsPending] == slots-1 && l.Flows() == slots
	})
}

func testDialBound(t *testing.T, v6 bool) {
	const perHost, syns = 8, 40
	l := openLink(t, Config{AllowHostLoopback: true, MaxPendingDialsPerHost: perHost, DialTimeout: Duration(2 * time.Second)})
	r := readPackets(t, l)
	ln := listenLoopback(t, v6)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	live := ln.Addr().(*net.TCPAddr).AddrPort()
	handshake := func(port uint16) time.Duration {
		ctr := netip.AddrPortFrom(ctrAddr(v6), port)
		start := time.Now()
		write(t, l, tcpPkt(ctr, live, 1, 0, synFlag, nil))
		p := r.expect(t, time.Second, "SYN-ACK from the live listener", isTCPFrom(live, ctr))
		if p.TCPFlags != packet.TCPSyn|packet.TCPAck {
			t.Fatalf("flags %#x, want SYN-ACK", p.TCPFlags)
		}
		return time.Since(start)
	}
	handshake(42999) // warm up: the first connection pays for the stack's lazy setup
	normal := handshake(43000)

	hole := netip.MustParseAddrPort("198.51.100.1:80")
	if v6 {
		hole = netip.MustParseAddrPort("[2001:db8:1::1]:80")
	}
	pkts := make([][]byte, syns)
	for i := range pkts {
		pkts[i] = tcpPkt(netip.AddrPortFrom(ctrAddr(v6), uint16(44000+i)), hole, uint32(1000*i), 0, synFlag, nil)
	}
	write(t, l, pkts...)
	waitFor(t, time.Second, "the black-holed dials to take their slots", func() bool {
		s := l.Stats()
		return s[DialsPending] == perHost && s[DropDialBudget] == syns-perHost
	})
	loaded := handshake(43001)
	t.Logf("handshake with a live listener: %v alone, %v with %d dials pending to a black hole", normal, loaded, perHost)
	// Generous for a shared machine; the point is that it is not the
	// container's SYN retransmission (1 s) or the dial timeout (2 s).
	if loaded > normal+250*time.Millisecond {
		t.Errorf("live dial delayed to %v by pending dials (alone %v)", loaded, normal)
	}
	// After dial_timeout the pending SYNs get host unreachable, quoting
	// the sequence number so the container's TCP accepts the error.
	p := r.expect(t, 4*time.Second, "host unreachable", func(p *packet.Parsed) bool { return isUnreach(p, 1, 3) })
	q := quoted(t, p)
	i := int(q.SrcPort) - 44000
	// Which SYNs won a slot is up to the scheduler: the forwarder runs
	// each in a goroutine of its own.
	if q.Proto != packet.ProtoTCP || i < 0 || i >= syns || q.DstIP() != hole.Addr() ||
		binary.BigEndian.Uint32(q.L4()[4:]) != uint32(1000*i) {
		t.Fatalf("quote %v:%d → %v:%d is not a SYN sent", q.SrcIP(), q.SrcPort, q.DstIP(), q.DstPort)
	}
	waitFor(t, 3*time.Second, "every dial to end", func() bool {
		s := l.Stats()
		return s[DialsPending] == 0 && s[DialsFailed] == perHost
	})
	// Only the three live connections hold host sockets now.
	if l.Flows() != 3 {
		t.Errorf("flows = %d, want the 3 live connections", l.Flows())
	}
}

// TestUnreachable: where the host has no route, a SYN gets ICMP network
// unreachable (not a RST, not a SYN-ACK) and so does a datagram.
func TestUnreachable(t *testing.T) {
	if !inNetns(t) {
		return
	}
	// The namespace has only lo: nothing else is routed.
	families(t, func(t *testing.T, v6 bool) {
		l := openLink(t, Config{})
		r := readPackets(t, l)
		dst := netip.MustParseAddrPort("203.0.113.1:80")
		if v6 {
			dst = netip.MustParseAddrPort("[2001:db8::1]:80")
		}
		ctr := netip.AddrPortFrom(ctrAddr(v6), 45000)
		write(t, l, tcpPkt(ctr, dst, 4242, 0, synFlag, nil))
		p := r.expect(t, 2*time.Second, "answer to the SYN", func(p *packet.Parsed) bool {
			return isTCPFrom(dst, ctr)(p) || p.IsICMPError()
		})
		if !isUnreach(p, 0, 0) {
			t.Fatalf("SYN answered with proto %d type %d code %d flags %#x, want network unreachable",
				p.Proto, p.ICMPType, p.ICMPCode, p.TCPFlags)
		}
		if q := quoted(t, p); q.SrcPort != ctr.Port() || binary.BigEndian.Uint32(q.L4()[4:]) != 4242 {
			t.Errorf("quote from port %d seq %d, want %d seq 4242", q.SrcPort, binary.BigEndian.Uint32(q.L4()[4:]), ctr.Port())
		}
		write(t, l, udpPkt(ctr, dst, []byte("x")))
		r.expect(t, 2*time.Second, "network unreachable for UDP", func(p *packet.Parsed) bool {
			return isUnreach(p, 0, 0) && quoted(t, p).Proto == packet.ProtoUDP
		})
		if s := l.Stats(); s[DialsFailed] != 1 || s[DropSendError] != 1 || l.Flows() != 1 {
			t.Errorf("dials_failed %d, drop_send_error %d, flows %d (the UDP endpoint)", s[DialsFailed], s[DropSendError], l.Flows())
		}
	})
}

// BenchmarkTCPUpload streams from the container's stack to a loopback
// sink through the uplink: the throughput of the splice, both stacks
// and the packet copies in between on one machine.
func BenchmarkTCPUpload(b *testing.B) {
	l := openLink(b, Config{AllowHostLoopback: true})
	c := newContainer(b, l)
	ln := listenLoopback(b, false)
	done := make(chan int64, 1)
	go func() {
		hc, err := ln.Accept()
		if err != nil {
			done <- -1
			return
		}
		n, _ := io.Copy(io.Discard, hc)
		hc.Close()
		done <- n
	}()
	conn := c.dial(b, ln.Addr().(*net.TCPAddr).AddrPort())
	chunk := make([]byte, 64<<10)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := conn.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	conn.CloseWrite()
	if n := <-done; n != int64(b.N*len(chunk)) {
		b.Fatalf("sink got %d bytes, want %d", n, b.N*len(chunk))
	}
}

// TestTCPReset: a reset on the host side reaches the container as a reset,
// not as an orderly end of data.
func TestTCPReset(t *testing.T) {
	l := openLink(t, Config{AllowHostLoopback: true})
	c := newContainer(t, l)
	ln := listenLoopback(t, false)
	go func() {
		hc, err := ln.AcceptTCP()
		if err != nil {
			return
		}
		// Reset only once the container is surely established: before,
		// the container's handshake itself would fail (refused).
		buf := make([]byte, 2)
		io.ReadFull(hc, buf)
		hc.Write([]byte("bye"))
		hc.SetLinger(0)
		hc.Close()
	}()
	conn := c.dial(t, ln.Addr().(*net.TCPAddr).AddrPort())
	if _, err := conn.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(conn)
	if err == nil {
		t.Fatalf("container read %q and a clean EOF; want a reset", got)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("no reset within 5s: %v", err)
	}
	waitFor(t, 5*time.Second, "the connection to end", func() bool { return l.Stats()[TCPConns] == 0 && l.Flows() == 0 })

	// And the other way: the container's RST resets the host socket.
	// (A link of its own: the container stack reads the first one.)
	l = openLink(t, Config{AllowHostLoopback: true})
	r := readPackets(t, l)
	ln2 := listenLoopback(t, false)
	res := make(chan error, 1)
	go func() {
		hc, err := ln2.AcceptTCP()
		if err != nil {
			res <- err
			return
		}
		defer hc.Close()
		hc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadAll(hc)
		res <- err
	}()
	dst := ln2.Addr().(*net.TCPAddr).AddrPort()
	ctr := netip.AddrPortFrom(ctr4, 47000)
	write(t, l, tcpPkt(ctr, dst, 100, 0, synFlag, nil))
	sa := r.expect(t, 2*time.Second, "SYN-ACK", isTCPFrom(dst, ctr))
	write(t, l, tcpPkt(ctr, dst, 101, tcpSeq(sa)+1, ackFlag, nil))
	waitFor(t, 2*time.Second, "the connection to be spliced", func() bool { return l.Stats()[TCPConns] == 1 })
	write(t, l, tcpPkt(ctr, dst, 101, tcpSeq(sa)+1, rstFlag|ackFlag, nil))
	select {
	case err := <-res:
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("host side ended with %v, want a reset", err)
		}
	case <-time.After(6 * time.Second):
		t.Fatal("host side did not end")
	}
}
