package admin

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"tungate/gateway"
	"tungate/internal/pcapng"
	"tungate/packet"
	"tungate/rules"
)

// captureSnaplen is the snap length the pcapng header declares: packets
// are recorded whole (a GSO-coalesced one can reach 64 KiB).
const captureSnaplen = 65535

// capture streams a link's packets as pcapng (data frames end on block
// boundaries, so a capture cut short is a readable file) until the client
// hangs up or Count packets were sent. The datapath hands packets over
// without waiting: what a slow reader misses is counted, given as the next
// packet's epb_dropcount and in the closing statistics block and message.
func (s *Server) capture(c net.Conn, w *frameWriter, req *Request) (string, error) {
	if req.Interface == "" {
		return "", errors.New("capture needs an interface")
	}
	if req.Count < 0 {
		return "", fmt.Errorf("capture: count %d is negative", req.Count)
	}
	if req.Output != "" {
		return "", errors.New("capture writes pcapng; it has no other output format")
	}
	f, err := req.Match.filter()
	if err != nil {
		return "", err
	}
	cp, err := s.g.StartCapture(req.Interface, gateway.CaptureOptions{Filter: f})
	if err != nil {
		return "", err
	}
	defer cp.Stop()
	gone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, c)
		close(gone)
	}()
	start := time.Now()
	b := pcapng.AppendHeader(nil, "tungate", captureSnaplen, req.Interface)
	w.Write(b)
	if err := w.Flush(); err != nil {
		return "", err
	}
	var reported uint64
	sent := 0
	var pk pcapng.Packet
	write := func(p *gateway.CapturedPacket) {
		pk = pcapng.Packet{Time: p.Time, Data: p.Data, Dir: pcapng.Direction(p.Dir), Comment: p.Verdict}
		if d := cp.Dropped(); d > reported {
			pk.Drops, reported = d-reported, d
		}
		b = pcapng.AppendPacket(b[:0], &pk)
		cp.Release(p)
		w.Write(b)
		sent++
	}
	done := func() bool { return req.Count > 0 && sent >= req.Count }
	for !done() {
		select {
		case p := <-cp.Packets():
			write(p)
			// Drain what is queued before flushing: one frame per burst.
			for !done() {
				select {
				case p = <-cp.Packets():
					write(p)
					continue
				default:
				}
				break
			}
		case <-gone:
			// The client hung up, or the server closed the connection.
			return "", nil
		}
		if err := w.Flush(); err != nil {
			return "", err
		}
	}
	cp.Stop()
	lost := cp.Dropped()
	b = pcapng.AppendStats(b[:0], &pcapng.Stats{Start: start, End: time.Now(), Received: uint64(sent) + lost, Dropped: lost})
	w.Write(b)
	return fmt.Sprintf("%d packets captured on %s, %d dropped because the reader was too slow", sent, req.Interface, lost), w.err
}

// filter compiles the match; nil matches everything.
func (m *CaptureMatch) filter() (gateway.CaptureFilter, error) {
	var f gateway.CaptureFilter
	if m == nil {
		return f, nil
	}
	if m.Host != "" {
		p, err := rules.ParseSetElement(m.Host)
		if err != nil {
			return f, fmt.Errorf("capture: host: %q is not an address or prefix", m.Host)
		}
		f.Host = p
	}
	if m.Proto != "" {
		switch strings.ToLower(m.Proto) {
		case "tcp":
			f.Proto = packet.ProtoTCP
		case "udp":
			f.Proto = packet.ProtoUDP
		case "icmp", "icmpv6", "icmp6":
			f.Proto = packet.ProtoICMP
		default:
			n, err := strconv.ParseUint(m.Proto, 10, 8)
			if err != nil {
				return f, fmt.Errorf("capture: proto: %q is not tcp, udp, icmp or a protocol number", m.Proto)
			}
			f.Proto = uint8(n)
		}
		f.HasProto = true
	}
	if m.Port < 0 || m.Port > 65535 {
		return f, fmt.Errorf("capture: port: %d is not a port", m.Port)
	}
	f.Port = uint16(m.Port)
	return f, nil
}
