package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// The socket modes measure a datagram path end to end through ordinary
// UDP sockets, so that the generator is not what limits the figure:
// udpsend batches its datagrams with sendmmsg (iperf3 sends one per
// system call, paced by a timer, and tops out near 60,000 64-byte
// datagrams per second on a small machine), udprecv counts them with
// recvmmsg.
//
//	floodgen udpsend -dst HOST:PORT [-size 64] [-conns 1] [-batch 64] [-rate PPS] -d DURATION
//	floodgen udprecv -listen ADDR:PORT [-d DURATION] [-idle 1s]
//
// x/net's ipv4/ipv6 PacketConn gives both batch calls (WriteBatch is
// sendmmsg, ReadBatch is recvmmsg on Linux) without hand-written
// mmsghdr plumbing.

// batchConn is what ipv4.PacketConn and ipv6.PacketConn share.
type batchConn interface {
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
}

func newBatchConn(c net.PacketConn, v6 bool) batchConn {
	if v6 {
		return v6Batch{ipv6.NewPacketConn(c)}
	}
	return ipv4.NewPacketConn(c)
}

// v6Batch adapts ipv6.PacketConn (its Message is the same type).
type v6Batch struct{ c *ipv6.PacketConn }

func (b v6Batch) WriteBatch(ms []ipv4.Message, flags int) (int, error) {
	return b.c.WriteBatch(ms, flags)
}

func (b v6Batch) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	return b.c.ReadBatch(ms, flags)
}

// sockResult is what udpsend and udprecv print.
type sockResult struct {
	Mode    string  `json:"mode"`
	Packets int     `json:"packets"`
	Errors  int     `json:"errors,omitempty"`
	LastErr string  `json:"last_error,omitempty"`
	Seconds float64 `json:"seconds"`
	PPS     float64 `json:"pps"`
	Conns   int     `json:"conns,omitempty"`
}

func sockMain(mode string, args []string) any {
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	dst := fs.String("dst", "", "udpsend: destination address:port")
	listen := fs.String("listen", "", "udprecv: address:port to receive on")
	size := fs.Int("size", 64, "udpsend: UDP payload bytes")
	conns := fs.Int("conns", 1, "udpsend: sockets (source ports), used in turn, one batch each")
	batch := fs.Int("batch", 64, "datagrams per sendmmsg/recvmmsg")
	rate := fs.Int("rate", 0, "udpsend: datagrams per second (0: as fast as possible)")
	dur := fs.Duration("d", 0, "udpsend: send for this long; udprecv: stop after this long (0: at -idle)")
	idle := fs.Duration("idle", time.Second, "udprecv: stop this long after the last datagram")
	fs.Parse(args)
	if *batch < 1 || *batch > 1024 || *size < 0 || *size > 65507 {
		fail(fmt.Errorf("-batch %d -size %d: out of range", *batch, *size))
	}
	switch mode {
	case "udpsend":
		a, err := netip.ParseAddrPort(*dst)
		if err != nil || *dur <= 0 || *conns < 1 {
			fail(fmt.Errorf("udpsend needs -dst HOST:PORT, -d DURATION and -conns >= 1 (%v)", err))
		}
		cs := make([]batchConn, *conns)
		for i := range cs {
			c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(a))
			if err != nil {
				fail(err)
			}
			// Room for a burst: a full send buffer would make
			// sendmmsg wait, which is fine, but a bigger one keeps the
			// generator ahead of a helper that reads in bursts.
			c.SetWriteBuffer(4 << 20)
			cs[i] = newBatchConn(c, a.Addr().Is6())
		}
		return udpSend(cs, *size, *batch, *rate, *dur)
	case "udprecv":
		a, err := netip.ParseAddrPort(*listen)
		if err != nil {
			fail(fmt.Errorf("udprecv needs -listen ADDR:PORT (%v)", err))
		}
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
		if err != nil {
			fail(err)
		}
		setRcvBuf(c, 16<<20)
		return udpRecv(newBatchConn(c, a.Addr().Is6()), c, *batch, *dur, *idle)
	}
	usage()
	return nil
}

// setRcvBuf asks for a receive buffer beyond net.core.rmem_max when
// running as root (SO_RCVBUFFORCE), else as big as the sysctl allows.
func setRcvBuf(c *net.UDPConn, n int) {
	rc, err := c.SyscallConn()
	if err == nil {
		var serr error
		rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, n)
		})
		if serr == nil {
			return
		}
	}
	c.SetReadBuffer(n)
}

// udpSend sends size-byte datagrams in batches, the sockets in turn, for
// dur (or until a signal). A failed batch (a refused port reported by the
// connected socket, no buffer space) is counted, not fatal.
func udpSend(cs []batchConn, size, batch, rate int, dur time.Duration) sockResult {
	payload := make([]byte, size)
	ms := make([]ipv4.Message, batch)
	for i := range ms {
		ms[i].Buffers = [][]byte{payload}
	}
	r := sockResult{Mode: "udpsend", Conns: len(cs)}
	p := newPacer(rate, dur, 0)
	for k := 0; ; k++ {
		n := 0
		for n < batch && p.next() {
			n++
		}
		if n == 0 {
			break
		}
		c := cs[k%len(cs)]
		for sent := 0; sent < n; {
			m, err := c.WriteBatch(ms[sent:n], 0)
			if err != nil {
				r.Errors++
				r.LastErr = err.Error()
				if m <= 0 {
					break
				}
			}
			sent += m
			r.Packets += m
		}
	}
	r.Seconds = time.Since(p.start).Seconds()
	if r.Seconds > 0 {
		r.PPS = float64(r.Packets) / r.Seconds
	}
	return r
}

// udpRecv counts datagrams until idle passes without one (after the
// first), dur passes (when set), or a signal. The rate is over the time
// from the first batch to the last, so the wait before the sender starts
// and the idle wait at the end do not count.
func udpRecv(bc batchConn, c *net.UDPConn, batch int, dur, idle time.Duration) sockResult {
	ms := make([]ipv4.Message, batch)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	r := sockResult{Mode: "udprecv"}
	start := time.Now()
	var first, last time.Time
	for !stopped.Load() {
		now := time.Now()
		if dur > 0 && now.Sub(start) >= dur {
			break
		}
		if !last.IsZero() && now.Sub(last) >= idle {
			break
		}
		// A short deadline so the loop above sees a signal or the end.
		c.SetReadDeadline(now.Add(100 * time.Millisecond))
		n, err := bc.ReadBatch(ms, 0)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			r.Errors++
			r.LastErr = err.Error()
			continue
		}
		if n > 0 {
			t := time.Now()
			if first.IsZero() {
				first = t
			}
			last = t
			r.Packets += n
		}
	}
	if !first.IsZero() {
		r.Seconds = last.Sub(first).Seconds()
	}
	if r.Seconds > 0 {
		r.PPS = float64(r.Packets) / r.Seconds
	}
	return r
}
