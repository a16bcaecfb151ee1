package admin

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"tungate/gateway"
	"tungate/internal/pcapng"
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
	cp, err := s.g.StartCapture(req.Interface, 0)
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
