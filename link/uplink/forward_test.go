package uplink

import (
	"io"
	"net"
	"net/netip"
	"strconv"
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
