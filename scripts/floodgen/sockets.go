package main

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The socket modes flood a listening port through the sending host's own
// stack, which is what a flood at a port forward is: the host kernel
// completes every handshake (SYN cookies and the accept backlog are its
// defence), so what reaches the forwarder is connections, many and
// fast, or datagrams from many source ports.
//
//	floodgen connect -from 192.0.2.10 -to 192.0.2.1:8080 [-hold 1000] [-workers 8] [-rate CPS] [-d DURATION | -n COUNT]
//	floodgen udpports -from 192.0.2.10 -to 192.0.2.1:7 [-ports 4096] [-rate PPS] [-d DURATION | -n COUNT]

// connectResult is what connect prints.
type connectResult struct {
	Attempts  int64   `json:"attempts"`
	Connected int64   `json:"connected"` // handshakes the host kernel completed
	Failed    int64   `json:"failed"`    // connects refused or timed out
	Held      int64   `json:"held"`      // connections still open at the end (not reset by the far end)
	Seconds   float64 `json:"seconds"`
	LastError string  `json:"last_error,omitempty"`
}

// connectFlood opens connections from from to to with workers goroutines,
// keeping the newest hold of them open (an attacker holding what it got)
// and resetting older ones, so its own ports never run out.
func connectFlood(from netip.Addr, to netip.AddrPort, hold, workers, rate int, dur time.Duration, count int) connectResult {
	var res connectResult
	var lastErr atomic.Value
	var mu sync.Mutex // guards p
	p := newPacer(rate, dur, count)
	start := time.Now()
	per := max(hold/workers, 1)
	held := make([][]*net.TCPConn, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), Timeout: 2 * time.Second}
			for {
				mu.Lock()
				ok := p.next()
				mu.Unlock()
				if !ok {
					return
				}
				atomic.AddInt64(&res.Attempts, 1)
				c, err := d.Dial("tcp", to.String())
				if err != nil {
					atomic.AddInt64(&res.Failed, 1)
					lastErr.Store(err.Error())
					continue
				}
				atomic.AddInt64(&res.Connected, 1)
				tc := c.(*net.TCPConn)
				if len(held[w]) >= per {
					held[w][0].SetLinger(0)
					held[w][0].Close()
					held[w] = held[w][1:]
				}
				held[w] = append(held[w], tc)
			}
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	// A connection the far end reset reads an error at once; one held
	// open times out.
	dl := time.Now().Add(10 * time.Millisecond) // one wait for them all
	for _, hs := range held {
		for _, c := range hs {
			c.SetReadDeadline(dl)
			var b [1]byte
			_, err := c.Read(b[:])
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				res.Held++
			}
			c.SetLinger(0)
			c.Close()
		}
	}
	if s, ok := lastErr.Load().(string); ok {
		res.LastError = s
	}
	return res
}

// udpResult is what udpports prints.
type udpResult struct {
	Sent      int     `json:"sent"`
	Ports     int     `json:"ports"`
	Errors    int     `json:"errors"`
	Seconds   float64 `json:"seconds"`
	LastError string  `json:"last_error,omitempty"`
}

// udpPortsFlood sends datagrams from ports sockets of from (each bound to
// a port of the kernel's choosing) to to in turn: every socket is a new
// flow for whatever tracks them.
func udpPortsFlood(from netip.Addr, to netip.AddrPort, ports, rate int, dur time.Duration, count int) udpResult {
	res := udpResult{}
	var socks []*net.UDPConn
	for range ports {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0)))
		if err != nil {
			if errors.Is(err, syscall.EMFILE) && len(socks) > 0 {
				break // as many as the descriptor limit allows
			}
			fail(err)
		}
		socks = append(socks, c)
	}
	res.Ports = len(socks)
	payload := []byte("floodgen udpports")
	p := newPacer(rate, dur, count)
	start := time.Now()
	for i := 0; p.next(); i++ {
		if _, err := socks[i%len(socks)].WriteToUDPAddrPort(payload, to); err != nil {
			res.Errors++
			res.LastError = err.Error()
			continue
		}
		res.Sent++
	}
	res.Seconds = time.Since(start).Seconds()
	for _, c := range socks {
		c.Close()
	}
	return res
}
