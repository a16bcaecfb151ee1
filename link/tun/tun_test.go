package tun

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"tungate/link"
)

// waitFor bounds every wait on the kernel.
const waitFor = 10 * time.Second

var nameSeq atomic.Int32

// uniqueName is a device or namespace name no other test process uses
// (at most 15 characters, the kernel's limit).
func uniqueName() string {
	return fmt.Sprintf("tgt%d-%d", os.Getpid()%100000, nameSeq.Add(1))
}

// needRoot skips where TUN devices and namespaces cannot be made: the only
// reason these tests may skip.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates TUN devices and network namespaces")
	}
}

func mustRun(t testing.TB, argv ...string) {
	t.Helper()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}

// newNetns makes a network namespace that is deleted when the test ends,
// with whatever devices are left in it.
func newNetns(t testing.TB) string {
	t.Helper()
	ns := uniqueName()
	mustRun(t, "ip", "netns", "add", ns)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
		}
	})
	return ns
}

// inNetns runs f on an OS thread that has entered namespace ns (and
// dropped CAP_NET_ADMIN when noAdmin). The thread is never unlocked, so it
// ends with the goroutine and nothing else runs in its state. What f
// creates (devices, sockets) stays in ns and usable from any thread.
func inNetns(t testing.TB, ns string, noAdmin bool, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- err
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			done <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		if noAdmin {
			// Capabilities are per thread: only this one loses it.
			hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
			var data [2]unix.CapUserData
			if err := unix.Capget(&hdr, &data[0]); err != nil {
				done <- err
				return
			}
			data[0].Effective &^= 1 << unix.CAP_NET_ADMIN
			if err := unix.Capset(&hdr, &data[0]); err != nil {
				done <- err
				return
			}
			if hasNetAdmin() {
				done <- errors.New("CAP_NET_ADMIN is still effective")
				return
			}
		}
		done <- f()
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// read is one packet a link's Read returned and the flags of its batch.
type read struct {
	pkt   []byte
	n     int
	flags link.Flags
}

// exercise brings dev up in ns with 10.77.0.1/24 and fd77::1/64 and
// passes a UDP datagram each way through l over IPv4 and IPv6: kernel
// socket to l.Read, l.Write to kernel socket. It closes l at the end and
// checks that Read then reports os.ErrClosed.
func exercise(t *testing.T, l *Link, ns, dev string) {
	t.Helper()
	mustRun(t, "ip", "-n", ns, "link", "set", dev, "up")
	mustRun(t, "ip", "-n", ns, "addr", "add", "10.77.0.1/24", "dev", dev)
	mustRun(t, "ip", "-n", ns, "addr", "add", "fd77::1/64", "dev", dev, "nodad")

	reads := make(chan read, 64)
	readErr := make(chan error, 1)
	go func() {
		bufs := make([][]byte, l.BatchSize())
		for i := range bufs {
			bufs[i] = make([]byte, link.Headroom+65535)
		}
		sizes := make([]int, len(bufs))
		for {
			n, err := l.Read(bufs, sizes, link.Headroom)
			if err != nil {
				readErr <- err
				return
			}
			flags := l.ReadFlags()
			for i := 0; i < n; i++ {
				select {
				case reads <- read{append([]byte(nil), bufs[i][link.Headroom:link.Headroom+sizes[i]]...), n, flags}:
				default: // nobody is waiting for this much
				}
			}
		}
	}()
	closed := false
	t.Cleanup(func() {
		if !closed {
			l.Close()
			<-readErr
		}
	})

	for _, fam := range []struct {
		name        string
		local, peer netip.Addr
	}{
		{"ipv4", netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("10.77.0.2")},
		{"ipv6", netip.MustParseAddr("fd77::1"), netip.MustParseAddr("fd77::2")},
	} {
		var conn net.PacketConn
		inNetns(t, ns, false, func() (err error) {
			conn, err = net.ListenPacket("udp", netip.AddrPortFrom(fam.local, 0).String())
			return err
		})
		defer conn.Close()
		port := uint16(conn.LocalAddr().(*net.UDPAddr).Port)

		out := []byte("to the link over " + fam.name)
		if _, err := conn.WriteTo(out, net.UDPAddrFromAddrPort(netip.AddrPortFrom(fam.peer, 9))); err != nil {
			t.Fatalf("%s: send: %v", fam.name, err)
		}
		deadline := time.After(waitFor)
	wait:
		for {
			select {
			case r := <-reads:
				src, dst, sport, dport, payload, ok := parseUDP(r.pkt)
				if !ok || !bytes.Equal(payload, out) {
					continue // the kernel's own chatter (MLD, router solicitations)
				}
				if src != fam.local || dst != fam.peer || sport != port || dport != 9 {
					t.Errorf("%s: read %v:%d > %v:%d, want %v:%d > %v:9", fam.name, src, sport, dst, dport, fam.local, port, fam.peer)
				}
				if r.n == 1 && r.flags != 0 {
					t.Errorf("%s: a one-packet read has flags %b", fam.name, r.flags)
				}
				break wait
			case err := <-readErr:
				t.Fatalf("%s: Read: %v", fam.name, err)
			case <-deadline:
				t.Fatalf("%s: the datagram the kernel routed to %s never came out of Read", fam.name, dev)
			}
		}

		in := []byte("from the link over " + fam.name)
		pkt := udpPacket(fam.peer, fam.local, 9, port, in)
		buf := make([]byte, link.Headroom+len(pkt))
		copy(buf[link.Headroom:], pkt)
		// The kernel may drop a datagram (an IPv6 address just added, a
		// loaded machine): write again every half second until one
		// arrives or the deadline passes, as a UDP sender would.
		got := make([]byte, 100)
		var k int
		var from net.Addr
		var err error
		for end := time.Now().Add(waitFor); ; {
			copy(buf[link.Headroom:], pkt)
			// wireguard-go's Linux TUN counts bytes, not packets, in n.
			if n, err := l.Write([][]byte{buf}, link.Headroom); n == 0 || err != nil {
				t.Fatalf("%s: Write: %d, %v", fam.name, n, err)
			}
			conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if k, from, err = conn.ReadFrom(got); err == nil || time.Now().After(end) {
				break
			}
		}
		if err != nil {
			t.Fatalf("%s: the datagram written to the link never reached the socket: %v", fam.name, err)
		}
		if !bytes.Equal(got[:k], in) || from.(*net.UDPAddr).AddrPort() != netip.AddrPortFrom(fam.peer, 9) {
			t.Errorf("%s: socket got %q from %v, want %q from %v:9", fam.name, got[:k], from, in, fam.peer)
		}
	}

	closed = true
	if err := l.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-readErr:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("Read after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Close did not end a blocked Read")
	}
}

// udpPacket builds an IPv4 or IPv6 UDP datagram with valid checksums.
func udpPacket(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	ul := header.UDPMinimumSize + len(payload)
	var b, l4 []byte
	var sa, da tcpip.Address
	if src.Is4() {
		sa, da = tcpip.AddrFrom4(src.As4()), tcpip.AddrFrom4(dst.As4())
		b = make([]byte, header.IPv4MinimumSize+ul)
		ip := header.IPv4(b)
		ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber), SrcAddr: sa, DstAddr: da})
		ip.SetChecksum(^ip.CalculateChecksum())
		l4 = b[header.IPv4MinimumSize:]
	} else {
		sa, da = tcpip.AddrFrom16(src.As16()), tcpip.AddrFrom16(dst.As16())
		b = make([]byte, header.IPv6MinimumSize+ul)
		header.IPv6(b).Encode(&header.IPv6Fields{PayloadLength: uint16(ul), TransportProtocol: header.UDPProtocolNumber, HopLimit: 64, SrcAddr: sa, DstAddr: da})
		l4 = b[header.IPv6MinimumSize:]
	}
	u := header.UDP(l4)
	u.Encode(&header.UDPFields{SrcPort: sport, DstPort: dport, Length: uint16(ul)})
	copy(u.Payload(), payload)
	sum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, sa, da, uint16(ul))
	u.SetChecksum(^checksum.Checksum(l4, sum))
	return b
}

// parseUDP reads the addresses, ports and payload of a UDP datagram
// without options or extension headers.
func parseUDP(b []byte) (src, dst netip.Addr, sport, dport uint16, payload []byte, ok bool) {
	var l4 []byte
	switch header.IPVersion(b) {
	case 4:
		ip := header.IPv4(b)
		if !ip.IsValid(len(b)) || ip.TransportProtocol() != header.UDPProtocolNumber {
			return
		}
		src, dst = netip.AddrFrom4(ip.SourceAddress().As4()), netip.AddrFrom4(ip.DestinationAddress().As4())
		l4 = ip.Payload()
	case 6:
		ip := header.IPv6(b)
		if !ip.IsValid(len(b)) || ip.TransportProtocol() != header.UDPProtocolNumber {
			return
		}
		src, dst = netip.AddrFrom16(ip.SourceAddress().As16()), netip.AddrFrom16(ip.DestinationAddress().As16())
		l4 = ip.Payload()
	default:
		return
	}
	if len(l4) < header.UDPMinimumSize {
		return
	}
	u := header.UDP(l4)
	return src, dst, u.SourcePort(), u.DestinationPort(), u.Payload(), true
}

// mtuIn asks l its MTU from ns: wireguard-go looks the device up by name
// in the namespace of the calling thread.
func mtuIn(t *testing.T, ns string, l *Link) (m int, err error) {
	inNetns(t, ns, false, func() error {
		m, err = l.MTU()
		return nil
	})
	return m, err
}

func observed() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	return zap.New(core), logs
}

func TestOpenCreatesDevice(t *testing.T) {
	needRoot(t)
	ns, dev := newNetns(t), uniqueName()
	log, logs := observed()
	var l *Link
	inNetns(t, ns, false, func() (err error) {
		l, err = Open(Config{Name: dev, MTU: 1400}, log)
		return err
	})
	if l.Name() != dev {
		t.Errorf("Name() = %q, want %q", l.Name(), dev)
	}
	if m, err := mtuIn(t, ns, l); m != 1400 || err != nil {
		t.Errorf("MTU() = %d, %v; want the configured 1400", m, err)
	}
	if l.BatchSize() < 1 {
		t.Errorf("BatchSize() = %d", l.BatchSize())
	}
	exercise(t, l, ns, dev)
	if n := logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != 0 {
		t.Errorf("creating a device logged %d warnings: %v", n, logs.All())
	}
	// A device this process created is gone with its descriptor.
	for deadline := time.Now().Add(waitFor); ; {
		if exec.Command("ip", "-n", ns, "link", "show", dev).Run() != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still exists after Close", dev)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOpenAttachesPersistentDeviceWithoutNetAdmin(t *testing.T) {
	needRoot(t)
	ns, dev := newNetns(t), uniqueName()
	mustRun(t, "ip", "-n", ns, "tuntap", "add", "dev", dev, "mode", "tun", "user", "0", "vnet_hdr")
	log, logs := observed()
	var l *Link
	inNetns(t, ns, true, func() (err error) {
		l, err = Open(Config{Name: dev, MTU: 1400}, log)
		return err
	})
	// The MTU is the owner's: only a warning says it differs.
	if m, err := mtuIn(t, ns, l); m != 1500 || err != nil {
		t.Errorf("MTU() = %d, %v; want the device's own 1500", m, err)
	}
	warn := logs.FilterMessage("TUN MTU differs from config; the device owner sets it").All()
	if len(warn) != 1 || warn[0].ContextMap()["device_mtu"] != int64(1500) || warn[0].ContextMap()["config_mtu"] != int64(1400) {
		t.Errorf("want one MTU warning with device_mtu 1500, config_mtu 1400; logged %v", logs.All())
	}
	if n := logs.FilterMessage("privileged TUN setup failed; attaching without it").Len(); n != 0 {
		t.Errorf("tried the privileged setup without CAP_NET_ADMIN")
	}
	exercise(t, l, ns, dev)
	// The device outlives the link: it is persistent.
	mustRun(t, "ip", "-n", ns, "link", "show", dev)
}

func TestOpenRefusesSomeoneElsesDevice(t *testing.T) {
	needRoot(t)
	ns, dev := newNetns(t), uniqueName()
	mustRun(t, "ip", "-n", ns, "tuntap", "add", "dev", dev, "mode", "tun", "user", "65534")
	var err error
	inNetns(t, ns, true, func() error {
		var l *Link
		if l, err = Open(Config{Name: dev, MTU: 1500}, zap.NewNop()); err == nil {
			l.Close()
		}
		return nil
	})
	if !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), fmt.Sprintf("attach TUN %q", dev)) {
		t.Errorf("attaching to nobody's device without CAP_NET_ADMIN: %v, want attach TUN %q: EPERM", err, dev)
	}
}

// TestOpenSecondInstance: a device another gateway already reads is
// refused with that said, not a bare "device or resource busy".
func TestOpenSecondInstance(t *testing.T) {
	needRoot(t)
	ns, dev := newNetns(t), uniqueName()
	var first *Link
	var err error
	inNetns(t, ns, false, func() (err error) {
		first, err = Open(Config{Name: dev, MTU: 1500}, zap.NewNop())
		return err
	})
	defer first.Close()
	inNetns(t, ns, false, func() error {
		var l *Link
		if l, err = Open(Config{Name: dev, MTU: 1500}, zap.NewNop()); err == nil {
			l.Close()
		}
		return nil
	})
	if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), "another process holds it") {
		t.Errorf("second Open of %s: %v, want EBUSY saying another process holds it", dev, err)
	}
}

func TestOpenInheritsDescriptor(t *testing.T) {
	needRoot(t)
	ns, dev := newNetns(t), uniqueName()
	var fd int
	inNetns(t, ns, false, func() error {
		var err error
		if fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
			return err
		}
		ifr, err := unix.NewIfreq(dev)
		if err != nil {
			return err
		}
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		return unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	})
	log, logs := observed()
	l, err := Open(Config{FD: &fd, MTU: 1500}, log)
	if err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	if l.Name() != dev {
		t.Errorf("Name() = %q, want the device the descriptor is bound to, %q", l.Name(), dev)
	}
	if logs.FilterMessage("attached inherited TUN").FilterField(zap.String("device", dev)).Len() != 1 {
		t.Errorf("no info line naming the inherited device; logged %v", logs.All())
	}
	exercise(t, l, ns, dev)
}

func TestOpenErrors(t *testing.T) {
	// Not closed here: a failed Open may have wrapped it in an *os.File
	// whose finalizer closes it.
	fd, err := unix.Open(os.DevNull, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", unix.IFNAMSIZ)
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{FD: &fd, MTU: 1500}, fmt.Sprintf("tun_fd %d: ", fd)},
		{Config{Name: long, MTU: 1500}, fmt.Sprintf("create TUN %q: ", long)},
	} {
		l, err := Open(c.cfg, zap.NewNop())
		if err == nil {
			l.Close()
			t.Errorf("Open(%+v) succeeded", c.cfg)
			continue
		}
		if !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("Open(%+v): %v, want an error starting %q", c.cfg, err, c.want)
		}
	}
}
