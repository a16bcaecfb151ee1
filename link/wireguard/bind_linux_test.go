package wireguard

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
)

// TestMixedFamilyBind: IPv4 and IPv6 sends alternating through one bind.
// wireguard-go's own bind sends the IPv6 ones to a corrupted address
// (upstream WireGuard/wireguard-go#135); through the wrapper every
// datagram arrives. Should the first half fail, upstream has fixed the
// bug and the wrapper can go.
func TestMixedFamilyBind(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	ns := fmt.Sprintf("tgwgb%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"-6", "addr", "add", "2001:db8:7::2/128", "dev", "lo", "nodad"},
		// A default route, as hosts have: a corrupted address is then
		// sent without an error (and lost), so the retry on
		// ENETUNREACH cannot hide a failed repair.
		{"-6", "route", "add", "default", "dev", "lo"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}

	type rig struct {
		bind     conn.Bind
		ep4, ep6 conn.Endpoint
		rx6      *net.UDPConn
	}
	// Sockets belong to the namespace of the thread that makes them.
	inNS := func(wrap bool) (*rig, error) {
		ch := make(chan any)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread is discarded
			fd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err == nil {
				err = unix.Setns(fd, unix.CLONE_NEWNET)
				unix.Close(fd)
			}
			if err != nil {
				ch <- err
				return
			}
			r := &rig{bind: conn.NewStdNetBind()}
			if wrap {
				r.bind = newMixedFamilyBind(r.bind)
			}
			if _, _, err := r.bind.Open(0); err != nil {
				ch <- err
				return
			}
			rx4, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				ch <- err
				return
			}
			if r.rx6, err = net.ListenUDP("udp6", &net.UDPAddr{IP: net.ParseIP("2001:db8:7::2")}); err != nil {
				ch <- err
				return
			}
			r.ep4, _ = r.bind.ParseEndpoint(rx4.LocalAddr().String())
			r.ep6, err = r.bind.ParseEndpoint(r.rx6.LocalAddr().String())
			if err != nil {
				ch <- err
				return
			}
			ch <- r
		}()
		switch v := (<-ch).(type) {
		case error:
			return nil, v
		default:
			return v.(*rig), nil
		}
	}
	run := func(wrap bool) (sendErrs, received int) {
		r, err := inNS(wrap)
		if err != nil {
			t.Fatal(err)
		}
		defer r.bind.Close()
		defer r.rx6.Close()
		const n = 100
		for i := 0; i < n; i++ {
			r.bind.Send([][]byte{[]byte("four")}, r.ep4)
			if err := r.bind.Send([][]byte{[]byte("six")}, r.ep6); err != nil {
				sendErrs++
			}
		}
		buf := make([]byte, 64)
		for {
			r.rx6.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if _, err := r.rx6.Read(buf); err != nil {
				break
			}
			received++
		}
		return sendErrs, received
	}
	if errs, got := run(false); errs == 0 && got == 100 {
		t.Log("wireguard-go's bind sent every IPv6 datagram: upstream fixed #135, mixedFamilyBind can go")
	} else {
		t.Logf("wireguard-go's bind alone: %d IPv6 send errors, %d of 100 received", errs, got)
	}
	if errs, got := run(true); errs != 0 || got != 100 {
		t.Errorf("through mixedFamilyBind: %d IPv6 send errors, %d of 100 received; want 0 and 100", errs, got)
	}
}
