package gateway

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"tungate/link"
	"tungate/packet"
)

// partialSource reads like the uplink's TCP stack: every TCP packet
// arrives in a batch of its own marked link.ChecksumPartial, with a wrong
// checksum in place of the one the stack did not compute.
type partialSource struct {
	*link.TUN
	flags link.Flags
}

func (s *partialSource) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := s.TUN.Read(bufs, sizes, offset)
	s.flags = 0
	if n == 1 {
		b := bufs[0][offset : offset+sizes[0]]
		if off := tcpHeaderAt(b); off >= 0 {
			binary.BigEndian.PutUint16(b[off+16:], binary.BigEndian.Uint16(b[off+16:])^0x5555)
			s.flags = link.ChecksumsVerified | link.ChecksumPartial
		}
	}
	return n, err
}

func (s *partialSource) ReadFlags() link.Flags { return s.flags }

// tcpHeaderAt is where the TCP header of an IPv4 or IPv6 (no extension
// headers) TCP packet begins, -1 for other packets.
func tcpHeaderAt(b []byte) int {
	switch {
	case len(b) >= 40 && b[0]>>4 == 4 && b[9] == packet.ProtoTCP:
		return int(b[0]&0xf) * 4
	case len(b) >= 60 && b[0]>>4 == 6 && b[6] == packet.ProtoTCP:
		return 40
	}
	return -1
}

// partialSink offloads like a TUN with the virtio header: it counts the
// packets handed to it unfinished and finishes them itself.
type partialSink struct {
	*link.TUN
	offload        bool
	marked, notTCP atomic.Int64
}

func (s *partialSink) CanWritePartial() bool { return s.offload }

func (s *partialSink) WritePartial(bufs [][]byte, offset int, partial []bool) (int, error) {
	for i, b := range bufs {
		if partial[i] {
			s.marked.Add(1)
			if !packet.FinishTCPChecksum(b[offset:]) {
				s.notTCP.Add(1)
			}
		}
	}
	return s.Write(bufs, offset)
}

// offloadGateway runs the lan (client) as a partial-checksum source and
// the wan (server) behind sink.
func offloadGateway(t *testing.T, offload bool) (client, server *host, sink *partialSink) {
	client = newHost(t, 1500, "10.10.0.2", "fd10::2")
	server = newHost(t, 1500, "198.18.0.2", "2001:db8:1::2")
	cfg, err := ParseConfig([]byte(fmt.Sprintf(twoLinks, 1500, 1500)))
	if err != nil {
		t.Fatal(err)
	}
	sink = &partialSink{TUN: link.FromTUN(server.dev), offload: offload}
	i := 0
	g, err := New(cfg, Options{
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
		Open: func(ic *InterfaceConfig, log *zap.Logger) (link.Link, error) {
			i++
			if i == 1 {
				return &partialSource{TUN: link.FromTUN(client.dev)}, nil
			}
			return sink, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, g)
	return client, server, sink
}

// TCP segments read with their checksums unfilled reach the server whole:
// a link that offloads gets them marked, any other gets them summed by the
// datapath (the server's stack drops a segment with a wrong checksum, so
// the transfer's digest proves every one was finished).
func TestPartialChecksums(t *testing.T) {
	for _, offload := range []bool{true, false} {
		t.Run(fmt.Sprintf("offload=%v", offload), func(t *testing.T) {
			client, server, sink := offloadGateway(t, offload)
			for _, dst := range []string{"198.18.0.2:8080", "[2001:db8:1::2]:8080"} {
				transfer(t, client, server, netip.MustParseAddrPort(dst), 256<<10)
			}
			if offload && sink.marked.Load() == 0 {
				t.Error("no segment reached the offloading link marked partial")
			}
			if !offload && sink.marked.Load() != 0 {
				t.Errorf("%d segments marked partial reached a link that cannot offload", sink.marked.Load())
			}
			// A ping from the same link is not the stack's: never marked.
			// (The marked count may still move during it: the transfers'
			// last segments, a FIN or a retransmission, can come late.
			// Anything marked that is not TCP is counted in notTCP.)
			ping(t, client, "10.10.0.2", "198.18.0.2")
			if n := sink.notTCP.Load(); n != 0 {
				t.Errorf("%d packets marked partial were not TCP (an ICMP echo among them?)", n)
			}
		})
	}
}
