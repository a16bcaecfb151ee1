package uplink

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// A server inside that greets and hangs up at once can be done before the
// forward's goroutine looks at its endpoint again, which is then in
// CLOSE-WAIT with the greeting unread: the host client must still get the
// greeting and a clean EOF, not a reset (TestUplinkPortForward failed
// about one run in 50 on that race). The hook holds the goroutine until
// the container's FIN has arrived, so every run takes the late path.
func TestForwardTCPServerClosesFirst(t *testing.T) {
	families(t, func(t *testing.T, v6 bool) {
		l := openLink(t, Config{HostLoopback: []string{"10.0.2.2", "fd00::2"}})
		c := newContainer(t, l)
		proto := ipv4.ProtocolNumber
		if v6 {
			proto = ipv6.ProtocolNumber
		}
		inside := netip.AddrPortFrom(ctrAddr(v6), 80)
		sln, err := gonet.ListenTCP(c.s, tcpip.FullAddress{NIC: 1, Addr: tcpipAddr(inside.Addr()), Port: 80}, proto)
		if err != nil {
			t.Fatal(err)
		}
		defer sln.Close()
		go func() {
			for {
				sc, err := sln.Accept()
				if err != nil {
					return
				}
				io.WriteString(sc, "hello "+sc.RemoteAddr().String()+"\n")
				sc.Close()
			}
		}()

		lateSeen := make(chan tcp.EndpointState, 1)
		testHookConnectWoke = func(ep tcpip.Endpoint) {
			end := time.Now().Add(5 * time.Second)
			for tcp.EndpointState(ep.State()) != tcp.StateCloseWait && time.Now().Before(end) {
				time.Sleep(time.Millisecond)
			}
			lateSeen <- tcp.EndpointState(ep.State())
		}
		defer func() { testHookConnectWoke = nil }()

		ln := listenLoopback(t, v6)
		l.ForwardTCP(ln, func(netip.AddrPort) netip.AddrPort { return inside })
		hc, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer hc.Close()
		hc.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(hc)
		if st := <-lateSeen; st != tcp.StateCloseWait {
			t.Fatalf("the hook saw %v, want CLOSE-WAIT (the test did not take the late path)", st)
		}
		seen := "10.0.2.2"
		if v6 {
			seen = "[fd00::2]"
		}
		want := "hello " + seen + ":" + strconv.Itoa(hc.LocalAddr().(*net.TCPAddr).Port) + "\n"
		if err != nil || string(got) != want {
			t.Fatalf("the host client read %q (%v), want %q and EOF", got, err, want)
		}
		if n := l.Stats()[ForwardsFailed]; n != 0 {
			t.Errorf("forwards_failed = %d, want 0", n)
		}
	})
}

// One client at max_forwards_per_source: its next forwarded connections
// are reset at once and counted, without taking a host socket of the
// budget, and a connection that ends gives its place back.
func TestForwardTCPPerSourceCap(t *testing.T) {
	families(t, func(t *testing.T, v6 bool) {
		const max = 3
		l := openLink(t, Config{HostLoopback: []string{"10.0.2.2", "fd00::2"}, MaxForwardsPerSource: max})
		c := newContainer(t, l)
		proto := ipv4.ProtocolNumber
		if v6 {
			proto = ipv6.ProtocolNumber
		}
		inside := netip.AddrPortFrom(ctrAddr(v6), 80)
		sln, err := gonet.ListenTCP(c.s, tcpip.FullAddress{NIC: 1, Addr: tcpipAddr(inside.Addr()), Port: 80}, proto)
		if err != nil {
			t.Fatal(err)
		}
		defer sln.Close()
		go func() {
			for {
				sc, err := sln.Accept()
				if err != nil {
					return
				}
				// Held open until the client's FIN.
				go func() {
					io.WriteString(sc, "hi\n")
					io.Copy(io.Discard, sc)
					sc.Close()
				}()
			}
		}()
		ln := listenLoopback(t, v6)
		l.ForwardTCP(ln, func(netip.AddrPort) netip.AddrPort { return inside })
		seen := netip.MustParseAddr("10.0.2.2")
		if v6 {
			seen = netip.MustParseAddr("fd00::2")
		}

		// greeted dials the forward and reports whether the container's
		// greeting came (false: the connection was reset or closed).
		greeted := func() (net.Conn, bool) {
			hc, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
			if errors.Is(err, syscall.ECONNRESET) {
				return nil, false // reset before connect returned
			}
			if err != nil {
				t.Fatal(err)
			}
			hc.SetReadDeadline(time.Now().Add(5 * time.Second))
			b := make([]byte, 3)
			_, err = io.ReadFull(hc, b)
			return hc, err == nil && string(b) == "hi\n"
		}
		var held []net.Conn
		for i := range max {
			hc, ok := greeted()
			if !ok {
				t.Fatalf("connection %d of %d (under the cap) was not forwarded", i+1, max)
			}
			held = append(held, hc)
		}
		for i := range 4 {
			hc, ok := greeted()
			if hc != nil {
				hc.Close()
			}
			if ok {
				t.Fatalf("connection %d over the cap was forwarded", i+1)
			}
		}
		s := l.Stats()
		if s[DropForwardSource] != 4 || s[Forwards] != max || l.fwdSrc.count(seen) != max {
			t.Fatalf("drop_forward_source %d, forwards %d, held %d; want 4, %d, %d",
				s[DropForwardSource], s[Forwards], l.fwdSrc.count(seen), max, max)
		}
		if f := l.Flows(); f != max {
			t.Errorf("%d host sockets of the budget held, want %d (refused clients take none)", f, max)
		}
		held[0].Close()
		waitFor(t, 5*time.Second, "the closed connection's place", func() bool { return l.fwdSrc.count(seen) == max-1 })
		hc, ok := greeted()
		if !ok {
			t.Fatal("a connection under the cap again was not forwarded")
		}
		held = append(held[1:], hc)
		for _, hc := range held {
			hc.Close()
		}
		waitFor(t, 5*time.Second, "every place given back", func() bool { return l.fwdSrc.count(seen) == 0 && len(l.fwdSrc.n) == 0 })
	})
}
