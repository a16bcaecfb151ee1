package conntrack

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"tungate/packet"
)

// SCTP chunk builders. Each makes the chunk the kernel reference runs sent
// (scapy's layout), padded to a multiple of 4 with the unpadded length in
// its header.
func sctpChunk(typ, flags uint8, body []byte) []byte {
	b := []byte{typ, flags, 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(4+len(body)))
	b = append(b, body...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// sctpInitBody is the fixed part of INIT and INIT ACK: initiate tag,
// a_rwnd 65535, one stream each way, the initial TSN.
func sctpInitBody(tag, tsn uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, tag)
	b = binary.BigEndian.AppendUint32(b, 65535)
	b = binary.BigEndian.AppendUint16(b, 1)
	b = binary.BigEndian.AppendUint16(b, 1)
	return binary.BigEndian.AppendUint32(b, tsn)
}

func sctpFlagT(t bool) uint8 {
	if t {
		return packet.SCTPChunkFlagT
	}
	return 0
}

func chInit(tag uint32) []byte { return sctpChunk(packet.SCTPChunkInit, 0, sctpInitBody(tag, 1)) }

// chInitAck carries a State Cookie parameter (type 7) of 8 bytes.
func chInitAck(tag uint32) []byte {
	body := append(sctpInitBody(tag, 100), 0, 7, 0, 12)
	return sctpChunk(packet.SCTPChunkInitAck, 0, append(body, "COOKIE!!"...))
}
func chCookieEcho() []byte { return sctpChunk(packet.SCTPChunkCookieEcho, 0, []byte("COOKIE!!")) }
func chCookieAck() []byte  { return sctpChunk(packet.SCTPChunkCookieAck, 0, nil) }

// chData is an unfragmented DATA chunk (flags B|E) of TSN 1 holding "hello".
func chData() []byte {
	return sctpChunk(packet.SCTPChunkData, 3, append(make([]byte, 12, 17), "hello"...))
}
func chSACK() []byte {
	return sctpChunk(packet.SCTPChunkSACK, 0, []byte{0, 0, 0, 1, 0, 0, 0xff, 0xff, 0, 0, 0, 0})
}
func chShutdown() []byte     { return sctpChunk(packet.SCTPChunkShutdown, 0, []byte{0, 0, 0, 100}) }
func chShutdownAck() []byte  { return sctpChunk(packet.SCTPChunkShutdownAck, 0, nil) }
func chHeartbeat() []byte    { return sctpChunk(packet.SCTPChunkHeartbeat, 0, nil) }
func chHeartbeatAck() []byte { return sctpChunk(packet.SCTPChunkHeartbeatAck, 0, nil) }
func chError() []byte        { return sctpChunk(packet.SCTPChunkError, 0, nil) }
func chAbort(t bool) []byte  { return sctpChunk(packet.SCTPChunkAbort, sctpFlagT(t), nil) }
func chShutdownComplete(t bool) []byte {
	return sctpChunk(packet.SCTPChunkShutdownComplete, sctpFlagT(t), nil)
}

// SCTP builds an SCTP packet with the given chunks (already padded) and its
// CRC32c, computed here with hash/crc32 rather than package packet.
func (pb pktBuilder) SCTP(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, vtag uint32, chunks ...[]byte) []byte {
	l4 := make([]byte, packet.SCTPHeaderLen)
	binary.BigEndian.PutUint16(l4, sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	binary.BigEndian.PutUint32(l4[4:], vtag)
	for _, c := range chunks {
		l4 = append(l4, c...)
	}
	binary.LittleEndian.PutUint32(l4[8:], crc32.Checksum(l4, crc32.MakeTable(crc32.Castagnoli)))
	return pb.IP(src, dst, packet.ProtoSCTP, l4)
}

// sctpStep is one packet of a kernel reference run, or (chunks nil) a pause.
type sctpStep struct {
	wait   time.Duration // advance the clock first
	dir    Dir
	vtag   uint32
	chunks [][]byte
	tail   []byte // raw bytes after the chunks
	badCRC bool   // flip a bit of the CRC
	// info is the ctinfo: Invalid where the kernel's "ct state invalid
	// drop" rule dropped the packet.
	info Info
	// line is the router's conntrack -L line for the association a moment
	// after the packet ("" none), IPv4 form; see kernelSCTPLine.
	line string
}

// packet builds the step's packet in family fam: the client (cli:40000)
// talks to srv:5000, which answers the masquerade address.
func (st sctpStep) packet(fam ctFamily) []byte {
	src, sp, dst, dp := fam.cli, uint16(40000), fam.srv, uint16(5000)
	if st.dir == DirReply {
		src, sp, dst, dp = fam.srv, 5000, fam.nat, 40000
	}
	chunks := append(append([][]byte(nil), st.chunks...), st.tail)
	b := build.SCTP(src, sp, dst, dp, st.vtag, chunks...)
	if st.badCRC {
		b[len(b)-len(concatChunks(chunks))-4] ^= 1
	}
	return b
}

func concatChunks(c [][]byte) []byte {
	var b []byte
	for _, x := range c {
		b = append(b, x...)
	}
	return b
}

var sctpCounters = regexp.MustCompile(`packets=(\d+) bytes=(\d+) `)

// kernelSCTPLine turns a line the IPv4 reference run printed into the one
// for fam: IPv6 addresses, and 20 more bytes a packet for the longer IP
// header (the IPv6 runs printed exactly that). Without accounting the
// counters go.
func kernelSCTPLine(line string, fam ctFamily, acct bool) string {
	if line == "" {
		return ""
	}
	line = strings.NewReplacer("10.10.0.2", fam.cli.String(), "198.18.0.2", fam.srv.String(), "198.18.0.1", fam.nat.String()).Replace(line)
	if !acct {
		return sctpCounters.ReplaceAllString(line, "")
	}
	if fam.cli.Is4() {
		return line
	}
	return sctpCounters.ReplaceAllStringFunc(line, func(s string) string {
		m := sctpCounters.FindStringSubmatch(s)
		n, _ := strconv.Atoi(m[1])
		b, _ := strconv.Atoi(m[2])
		return "packets=" + m[1] + " bytes=" + strconv.Itoa(b+20*n) + " "
	})
}

// sctpKernelCases are packet sequences run through a Linux 6.18 router
// (nftables masquerade, nf_conntrack_acct=1, "ct state invalid drop"),
// with the router's conntrack -L after each packet. The runs' timeouts
// read one less than the state's (conntrack -L ran a moment later): 9 for
// CLOSED, 2 for COOKIE_WAIT, 209 for ESTABLISHED.
//
// noAcct cases hold packets Linux accepts without refreshing the timer and
// also without counting them; the table counts every accepted packet, so
// those cases compare the lines without counters.
var sctpKernelCases = []struct {
	name   string
	noAcct bool
	steps  []sctpStep
}{
	{name: "handshake and shutdown", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chInitAck(0x22222222)}, info: EstablishedReply,
			line: "sctp     132 2 COOKIE_WAIT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chCookieEcho()}, info: Established,
			line: "sctp     132 2 COOKIE_ECHOED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chCookieAck()}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chData()}, info: Established,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=3 bytes=152 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chSACK()}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=3 bytes=152 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=3 bytes=148 [ASSURED] mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chShutdown()}, info: Established,
			line: "sctp     132 2 SHUTDOWN_SENT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=4 bytes=192 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=3 bytes=148 [ASSURED] mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chShutdownAck()}, info: EstablishedReply,
			line: "sctp     132 2 SHUTDOWN_ACK_SENT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=4 bytes=192 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=4 bytes=184 [ASSURED] mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chShutdownComplete(false)}, info: Established,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=5 bytes=228 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=4 bytes=184 [ASSURED] mark=0 use=1"},
	}},
	{name: "shutdown from the server", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chInitAck(0x22222222)}, info: EstablishedReply,
			line: "sctp     132 2 COOKIE_WAIT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chCookieEcho()}, info: Established,
			line: "sctp     132 2 COOKIE_ECHOED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chCookieAck()}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chShutdown()}, info: EstablishedReply,
			line: "sctp     132 2 SHUTDOWN_RECD src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=3 bytes=140 [ASSURED] mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chShutdownAck()}, info: Established,
			line: "sctp     132 2 SHUTDOWN_ACK_SENT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=3 bytes=132 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=3 bytes=140 [ASSURED] mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chShutdownComplete(false)}, info: EstablishedReply,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=3 bytes=132 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=4 bytes=176 [ASSURED] mark=0 use=1"},
	}},
	{name: "INIT with a nonzero tag", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x5, chunks: [][]byte{chInit(0x11111111)}, info: Invalid,
			line: ""},
	}},
	{name: "INIT bundled with DATA", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111), chData()}, info: Invalid,
			line: ""},
	}},
	{name: "DATA first", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chData()}, info: Invalid,
			line: ""},
	}},
	{name: "SACK first", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chSACK()}, info: Invalid,
			line: ""},
	}},
	{name: "INIT ACK first with tag 0", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInitAck(0x22222222)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=64 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
	}},
	{name: "INIT ACK first with a tag", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x7, chunks: [][]byte{chInitAck(0x22222222)}, info: Invalid,
			line: ""},
	}},
	{name: "COOKIE ECHO first with tag 0", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chCookieEcho()}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=44 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
	}},
	{name: "COOKIE ECHO first with a tag", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x7, chunks: [][]byte{chCookieEcho()}, info: Invalid,
			line: ""},
	}},
	{name: "ABORT first", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x7, chunks: [][]byte{chAbort(false)}, info: Invalid,
			line: ""},
	}},
	{name: "COOKIE ACK first", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chCookieAck()}, info: Invalid,
			line: ""},
	}},
	{name: "SHUTDOWN first", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x7, chunks: [][]byte{chShutdown()}, info: Invalid,
			line: ""},
	}},
	{name: "ERROR first", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chError()}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=36 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
	}},
	{name: "SHUTDOWN ACK first", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x7, chunks: [][]byte{chShutdownAck()}, info: New,
			line: "sctp     132 2 SHUTDOWN_ACK_SENT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=36 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x7, chunks: [][]byte{chShutdownComplete(false)}, info: EstablishedReply,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=36 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=36 mark=0 use=1"},
	}},
	{name: "SHUTDOWN ACK first, T bit answer", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x7, chunks: [][]byte{chShutdownAck()}, info: New,
			line: "sctp     132 2 SHUTDOWN_ACK_SENT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=36 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x0, chunks: [][]byte{chShutdownComplete(true)}, info: EstablishedReply,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=36 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=36 mark=0 use=1"},
	}},
	{name: "HEARTBEAT first", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x9, chunks: [][]byte{chHeartbeat()}, info: New,
			line: "sctp     132 29 HEARTBEAT_SENT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=36 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0xa, chunks: [][]byte{chHeartbeatAck()}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=36 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=36 [ASSURED] mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x9, chunks: [][]byte{chData()}, info: Established,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=92 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=36 [ASSURED] mark=0 use=1"},
		{dir: DirReply, vtag: 0xa, chunks: [][]byte{chData()}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=92 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=92 [ASSURED] mark=0 use=1"},
		{dir: DirReply, vtag: 0xb, chunks: [][]byte{chData()}, info: Invalid,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=92 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=92 [ASSURED] mark=0 use=1"},
	}},
	{name: "no chunks", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{}, info: Invalid,
			line: ""},
	}},
	{name: "bad CRC", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, badCRC: true, info: Invalid,
			line: ""},
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
	}},
	{name: "zero-length chunk", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{[]byte{1, 0, 0, 0, 17, 17, 17, 17, 0, 0, 255, 255, 0, 1, 0, 1, 0, 0, 0, 1}}, info: Invalid,
			line: ""},
	}},
	{name: "chunk length below 4", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x9, chunks: [][]byte{[]byte{4, 0, 0, 2}}, info: New,
			line: "sctp     132 29 HEARTBEAT_SENT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=36 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
	}},
	{name: "INIT cut short", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{[]byte{1, 0, 0, 20, 17, 17}}, info: Invalid,
			line: ""},
	}},
	{name: "INIT and a partial chunk header", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, tail: []byte{0, 0}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=54 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
	}},
	{name: "INIT and a zero chunk", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, tail: []byte{0, 0, 0, 0}, info: Invalid,
			line: ""},
	}},
	{name: "INIT length beyond the packet", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{[]byte{1, 0, 0, 100, 17, 17, 17, 17, 0, 0, 255, 255, 0, 1, 0, 1, 0, 0, 0, 1}}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
	}},
	{name: "wrong tag on INIT ACK", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111112, chunks: [][]byte{chInitAck(0x22222222)}, info: Invalid,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chInitAck(0x22222222)}, info: EstablishedReply,
			line: "sctp     132 2 COOKIE_WAIT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
	}},
	{name: "wrong tag on COOKIE ECHO", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chInitAck(0x22222222)}, info: EstablishedReply,
			line: "sctp     132 2 COOKIE_WAIT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222223, chunks: [][]byte{chCookieEcho()}, info: Invalid,
			line: "sctp     132 2 COOKIE_WAIT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chCookieEcho()}, info: Established,
			line: "sctp     132 2 COOKIE_ECHOED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
	}},
	{name: "wrong tag on DATA", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chInitAck(0x22222222)}, info: EstablishedReply,
			line: "sctp     132 2 COOKIE_WAIT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chCookieEcho()}, info: Established,
			line: "sctp     132 2 COOKIE_ECHOED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chCookieAck()}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222223, chunks: [][]byte{chData()}, info: Invalid,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111112, chunks: [][]byte{chData()}, info: Invalid,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chData()}, info: Established,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=3 bytes=152 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
	}},
	{name: "ABORT answering INIT", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chAbort(false)}, info: EstablishedReply,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=36 mark=0 use=1"},
	}},
	{name: "ABORT with T answering INIT", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x0, chunks: [][]byte{chAbort(true)}, info: EstablishedReply,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=36 mark=0 use=1"},
	}},
	{name: "ABORT with T and the wrong tag", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chAbort(true)}, info: Invalid,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
	}},
	{name: "ABORT established", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chInitAck(0x22222222)}, info: EstablishedReply,
			line: "sctp     132 2 COOKIE_WAIT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chCookieEcho()}, info: Established,
			line: "sctp     132 2 COOKIE_ECHOED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chCookieAck()}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chAbort(false)}, info: Established,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=3 bytes=132 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
	}},
	{name: "stale cookie ERROR", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chInitAck(0x22222222)}, info: EstablishedReply,
			line: "sctp     132 2 COOKIE_WAIT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chCookieEcho()}, info: Established,
			line: "sctp     132 2 COOKIE_ECHOED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chError()}, info: EstablishedReply,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 mark=0 use=1"},
	}},
	{name: "INIT retransmitted", noAcct: true, steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{wait: 2 * time.Second},
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 7 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{wait: 1 * time.Second},
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111116)}, info: New,
			line: "sctp     132 6 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
	}},
	{name: "new association after close", noAcct: true, steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chInitAck(0x22222222)}, info: EstablishedReply,
			line: "sctp     132 2 COOKIE_WAIT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chCookieEcho()}, info: Established,
			line: "sctp     132 2 COOKIE_ECHOED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chCookieAck()}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chShutdown()}, info: Established,
			line: "sctp     132 2 SHUTDOWN_SENT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=3 bytes=136 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chShutdownAck()}, info: EstablishedReply,
			line: "sctp     132 2 SHUTDOWN_ACK_SENT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=3 bytes=136 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=3 bytes=136 [ASSURED] mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chShutdownComplete(false)}, info: Established,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=4 bytes=172 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=3 bytes=136 [ASSURED] mark=0 use=1"},
		{wait: 2 * time.Second},
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x33)}, info: Established,
			line: "sctp     132 7 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=4 bytes=172 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=3 bytes=136 [ASSURED] mark=0 use=1"},
		{dir: DirReply, vtag: 0x33, chunks: [][]byte{chInitAck(0x44)}, info: EstablishedReply,
			line: "sctp     132 2 COOKIE_WAIT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=4 bytes=172 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=4 bytes=200 [ASSURED] mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x44, chunks: [][]byte{chCookieEcho()}, info: Established,
			line: "sctp     132 2 COOKIE_ECHOED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=5 bytes=216 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=4 bytes=200 [ASSURED] mark=0 use=1"},
		{dir: DirReply, vtag: 0x33, chunks: [][]byte{chCookieAck()}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=5 bytes=216 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=5 bytes=236 [ASSURED] mark=0 use=1"},
	}},
	{name: "DATA and SACK bundled", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chInitAck(0x22222222)}, info: EstablishedReply,
			line: "sctp     132 2 COOKIE_WAIT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chCookieEcho()}, info: Established,
			line: "sctp     132 2 COOKIE_ECHOED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chCookieAck()}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chData(), chSACK()}, info: Established,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=3 bytes=168 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
	}},
	{name: "COOKIE ECHO and DATA bundled", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chInitAck(0x22222222)}, info: EstablishedReply,
			line: "sctp     132 2 COOKIE_WAIT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chCookieEcho(), chData()}, info: Established,
			line: "sctp     132 2 COOKIE_ECHOED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=120 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chCookieAck(), chData()}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=120 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=124 [ASSURED] mark=0 use=1"},
	}},
	{name: "DATA before COOKIE ECHO", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chInitAck(0x22222222)}, info: EstablishedReply,
			line: "sctp     132 2 COOKIE_WAIT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chData(), chCookieEcho()}, info: Invalid,
			line: "sctp     132 2 COOKIE_WAIT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
	}},
	{name: "HEARTBEAT established", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chInitAck(0x22222222)}, info: EstablishedReply,
			line: "sctp     132 2 COOKIE_WAIT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chCookieEcho()}, info: Established,
			line: "sctp     132 2 COOKIE_ECHOED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chCookieAck()}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chHeartbeat()}, info: Established,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=3 bytes=132 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chHeartbeatAck()}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=3 bytes=132 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=3 bytes=136 [ASSURED] mark=0 use=1"},
	}},
	{name: "HEARTBEAT with new tags", noAcct: true, steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chInitAck(0x22222222)}, info: EstablishedReply,
			line: "sctp     132 2 COOKIE_WAIT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chCookieEcho()}, info: Established,
			line: "sctp     132 2 COOKIE_ECHOED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chCookieAck()}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x63, chunks: [][]byte{chHeartbeat()}, info: Established,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
		{dir: DirReply, vtag: 0x62, chunks: [][]byte{chHeartbeatAck()}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=3 bytes=136 [ASSURED] mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chData()}, info: Invalid,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=3 bytes=136 [ASSURED] mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chData()}, info: Invalid,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=3 bytes=136 [ASSURED] mark=0 use=1"},
		{dir: DirReply, vtag: 0x62, chunks: [][]byte{chData()}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=4 bytes=192 [ASSURED] mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chData()}, info: Established,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=3 bytes=152 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=4 bytes=192 [ASSURED] mark=0 use=1"},
	}},
	{name: "INIT collision", noAcct: true, steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x0, chunks: [][]byte{chInit(0x22222222)}, info: EstablishedReply,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chInitAck(0x11111111)}, info: Established,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=116 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chInitAck(0x22222222)}, info: EstablishedReply,
			line: "sctp     132 2 COOKIE_WAIT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=116 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chCookieEcho()}, info: Established,
			line: "sctp     132 2 COOKIE_ECHOED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=3 bytes=160 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chCookieAck()}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=3 bytes=160 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
	}},
	{name: "SHUTDOWN then an ABORT with the wrong tag", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chInitAck(0x22222222)}, info: EstablishedReply,
			line: "sctp     132 2 COOKIE_WAIT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chCookieEcho()}, info: Established,
			line: "sctp     132 2 COOKIE_ECHOED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chCookieAck()}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chShutdown(), chAbort(true)}, info: Invalid,
			line: "sctp     132 209 SHUTDOWN_SENT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
	}},
	{name: "INIT ACK after the handshake", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chInitAck(0x22222222)}, info: EstablishedReply,
			line: "sctp     132 2 COOKIE_WAIT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chCookieEcho()}, info: Established,
			line: "sctp     132 2 COOKIE_ECHOED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chCookieAck()}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chInitAck(0x55)}, info: Invalid,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chInitAck(0x22222222)}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=3 bytes=164 [ASSURED] mark=0 use=1"},
	}},
	{name: "HEARTBEAT with a new tag and DATA", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chInitAck(0x22222222)}, info: EstablishedReply,
			line: "sctp     132 2 COOKIE_WAIT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chCookieEcho()}, info: Established,
			line: "sctp     132 2 COOKIE_ECHOED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chCookieAck()}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x63, chunks: [][]byte{chHeartbeat(), chData()}, info: Invalid,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
	}},
	{name: "ABORT with T from the server", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chInitAck(0x22222222)}, info: EstablishedReply,
			line: "sctp     132 2 COOKIE_WAIT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chCookieEcho()}, info: Established,
			line: "sctp     132 2 COOKIE_ECHOED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chCookieAck()}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
		{dir: DirReply, vtag: 0x22222222, chunks: [][]byte{chAbort(true)}, info: EstablishedReply,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=3 bytes=136 [ASSURED] mark=0 use=1"},
	}},
	{name: "ABORT first with tag 0", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chAbort(false)}, info: Invalid,
			line: ""},
	}},
	{name: "SHUTDOWN COMPLETE first with tag 0", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chShutdownComplete(false)}, info: Invalid,
			line: ""},
	}},
	{name: "HEARTBEAT ACK with a new tag, same side", noAcct: true, steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chInitAck(0x22222222)}, info: EstablishedReply,
			line: "sctp     132 2 COOKIE_WAIT src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chCookieEcho()}, info: Established,
			line: "sctp     132 2 COOKIE_ECHOED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=1 bytes=64 mark=0 use=1"},
		{dir: DirReply, vtag: 0x11111111, chunks: [][]byte{chCookieAck()}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x63, chunks: [][]byte{chHeartbeat()}, info: Established,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x62, chunks: [][]byte{chHeartbeatAck()}, info: Invalid,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=2 bytes=100 [ASSURED] mark=0 use=1"},
		{dir: DirReply, vtag: 0x61, chunks: [][]byte{chHeartbeatAck()}, info: EstablishedReply,
			line: "sctp     132 209 ESTABLISHED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=3 bytes=136 [ASSURED] mark=0 use=1"},
	}},
	{name: "INIT with a short body", steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{[]byte{1, 0, 0, 12, 17, 17, 17, 17, 0, 0, 255, 255}}, info: Invalid,
			line: ""},
	}},
	{name: "INIT collision, INIT ACK with another tag", noAcct: true, steps: []sctpStep{
		{dir: DirOriginal, vtag: 0x0, chunks: [][]byte{chInit(0x11111111)}, info: New,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirReply, vtag: 0x0, chunks: [][]byte{chInit(0x22222222)}, info: EstablishedReply,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chInitAck(0x55)}, info: Invalid,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=1 bytes=52 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
		{dir: DirOriginal, vtag: 0x22222222, chunks: [][]byte{chInitAck(0x11111111)}, info: Established,
			line: "sctp     132 9 CLOSED src=10.10.0.2 dst=198.18.0.2 sport=40000 dport=5000 packets=2 bytes=116 src=198.18.0.2 dst=198.18.0.1 sport=5000 dport=40000 packets=0 bytes=0 mark=0 use=1"},
	}},
}

// sctpOrig is the original tuple of the reference association.
func sctpOrig(fam ctFamily) Tuple {
	return Tuple{Src: packet.AddrFrom(fam.cli), Dst: packet.AddrFrom(fam.srv), SrcPort: 40000, DstPort: 5000, Proto: packet.ProtoSCTP, Family: map[bool]uint8{true: 4, false: 6}[fam.cli.Is4()]}
}

// sctpRun feeds one step to the harness as the datapath would (a new
// connection is masqueraded and confirmed) and returns the result.
func sctpRun(h *ctHarness, fam ctFamily, st sctpStep) Result {
	h.t.Helper()
	h.advance(st.wait)
	r := h.in(st.packet(fam))
	if r.Conn != nil && !r.Conn.Confirmed() {
		h.masquerade(r, fam.nat)
		if err := h.tab.Confirm(r.Conn, h.now); err != nil {
			h.t.Fatalf("confirm: %v", err)
		}
	}
	return r
}

// sctpLine is the association's conntrack -L line a millisecond after the
// harness clock, "" when there is none.
func sctpLine(h *ctHarness, fam ctFamily) string {
	o := sctpOrig(fam)
	c, _ := h.tab.lookup(&o, h.now)
	if c == nil {
		return ""
	}
	return string(h.tab.AppendConn(nil, c, h.now+int64(time.Millisecond)))
}

func TestSCTPKernelCases(t *testing.T) {
	for _, fam := range ctFamilies {
		for _, tc := range sctpKernelCases {
			t.Run(fam.name+"/"+tc.name, func(t *testing.T) {
				cfg := Config{}
				if tc.noAcct {
					off := false
					cfg.Accounting = &off
				}
				h := newCTHarness(t, cfg)
				for i, st := range tc.steps {
					if st.chunks == nil {
						h.advance(st.wait)
						continue
					}
					r := sctpRun(h, fam, st)
					if r.Info != st.info {
						t.Fatalf("step %d: info %v, want %v", i, r.Info, st.info)
					}
					if got, want := sctpLine(h, fam), kernelSCTPLine(st.line, fam, !tc.noAcct); got != want {
						t.Fatalf("step %d:\n got %q\nwant %q", i, got, want)
					}
				}
			})
		}
	}
}

// sctpHandshake establishes the reference association.
func sctpHandshake(t testing.TB, h *ctHarness, fam ctFamily) *Conn {
	t.Helper()
	var c *Conn
	for _, st := range sctpKernelCases[0].steps[:4] {
		r := sctpRun(h, fam, st)
		if r.Info != st.info {
			t.Fatalf("handshake: info %v, want %v", r.Info, st.info)
		}
		c = r.Conn
	}
	return c
}

// sctpStateOf is the state field conntrack -L prints for c.
func sctpStateOf(c *Conn) string { return string((&sctpTracker{}).AppendState(nil, c)) }

// TestSCTPTimeouts: the per-state timeouts come from the configuration, and
// an association is gone once its timeout passes.
func TestSCTPTimeouts(t *testing.T) {
	s := func(n int) Duration { return Duration(time.Duration(n) * time.Second) }
	cfg := Config{Timeouts: Timeouts{SCTPClosed: s(5), SCTPCookieWait: s(6), SCTPCookieEchoed: s(7), SCTPEstablished: s(3600),
		SCTPShutdownSent: s(8), SCTPShutdownRecd: s(9), SCTPShutdownAckSent: s(11), SCTPHeartbeatSent: s(12)}}
	for _, fam := range ctFamilies {
		h := newCTHarness(t, cfg)
		want := []int64{5, 6, 7, 3600, 3600, 3600, 8, 11, 5}
		for i, st := range sctpKernelCases[0].steps {
			r := sctpRun(h, fam, st)
			if left := (r.Conn.Expires() - h.now) / int64(time.Second); left != want[i] {
				t.Fatalf("%s step %d: timeout %d, want %d", fam.name, i, left, want[i])
			}
		}
		h.advance(5 * time.Second)
		if sctpLine(h, fam) != "" {
			t.Fatalf("%s: closed association outlived its timeout", fam.name)
		}
		steps := sctpKernelCases[0].steps
		h = newCTHarness(t, cfg)
		sctpHandshake(t, h, fam)
		r := sctpRun(h, fam, sctpStep{dir: DirReply, vtag: steps[1].vtag, chunks: [][]byte{chShutdown()}})
		if left := (r.Conn.Expires() - h.now) / int64(time.Second); left != 9 || sctpStateOf(r.Conn) != "SHUTDOWN_RECD " {
			t.Fatalf("%s: SHUTDOWN_RECD timeout %d", fam.name, left)
		}
		h = newCTHarness(t, cfg)
		r = sctpRun(h, fam, sctpStep{vtag: 9, chunks: [][]byte{chHeartbeat()}})
		if left := (r.Conn.Expires() - h.now) / int64(time.Second); left != 12 || sctpStateOf(r.Conn) != "HEARTBEAT_SENT " {
			t.Fatalf("%s: HEARTBEAT_SENT timeout %d", fam.name, left)
		}
	}
}

// TestSCTPTimeoutDefaults: Linux's nf_conntrack_sctp_timeout_* defaults,
// and a bad value named by its key.
func TestSCTPTimeoutDefaults(t *testing.T) {
	var c Config
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	to := &c.Timeouts
	for st, want := range map[uint8]time.Duration{sctpNone: 10, sctpClosed: 10, sctpCookieWait: 3, sctpCookieEchoed: 3, sctpEstablished: 210,
		sctpShutdownSent: 3, sctpShutdownRecd: 3, sctpShutdownAckSent: 3, sctpHeartbeatSent: 30} {
		if got := to.sctp(st); got != want*time.Second {
			t.Errorf("%s: %v, want %v", sctpStateNames[st], got, want*time.Second)
		}
	}
	c = Config{Timeouts: Timeouts{SCTPEstablished: -1}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "conntrack.timeouts.sctp_established") {
		t.Fatalf("negative timeout: %v", err)
	}
}

// TestSCTPChecksumOff: with nf_conntrack_checksum off, a bad CRC is
// tracked like a good one.
func TestSCTPChecksumOff(t *testing.T) {
	off := false
	for _, fam := range ctFamilies {
		h := newCTHarness(t, Config{Checksum: &off})
		st := sctpKernelCases[0].steps[0]
		st.badCRC = true
		if r := sctpRun(h, fam, st); r.Info != New {
			t.Fatalf("%s: info %v", fam.name, r.Info)
		}
	}
}

// TestSCTPShortPacket: a packet short of the common header is INVALID
// (Linux's "short packet"), in both families.
func TestSCTPShortPacket(t *testing.T) {
	for _, fam := range ctFamilies {
		h := newCTHarness(t, Config{})
		full := build.SCTP(fam.cli, 40000, fam.srv, 5000, 0, chInit(1))
		hl := len(full) - 32
		for _, n := range []int{0, 4, 8, 11} {
			b := build.IP(fam.cli, fam.srv, packet.ProtoSCTP, full[hl:hl+n])
			if r := h.in(b); r.Info != Invalid || r.Conn != nil {
				t.Fatalf("%s: %d bytes: info %v", fam.name, n, r.Info)
			}
		}
	}
}

// TestSCTPICMPError: an ICMP error about an SCTP packet finds the
// association by the quoted ports (RELATED), as it did through the kernel
// reference router; a quote without the ports is INVALID.
func TestSCTPICMPError(t *testing.T) {
	for _, fam := range ctFamilies {
		h := newCTHarness(t, Config{})
		sctpHandshake(t, h, fam)
		// The server's copy of a client packet, after masquerade.
		seen := build.SCTP(fam.nat, 40000, fam.srv, 5000, 0x22222222, chData())
		for _, n := range []int{-1, 8 + 40, 10 + 40} {
			r := h.in(build.Unreachable(fam.srv, fam.nat, seen, n))
			if r.Info != RelatedReply || r.Conn == nil || r.Conn.Tuple(DirOriginal).Proto != packet.ProtoSCTP {
				t.Fatalf("%s: quote %d: info %v", fam.name, n, r.Info)
			}
		}
		hl := len(seen) - 36
		if r := h.in(build.Unreachable(fam.srv, fam.nat, seen, hl+4)); r.Info != Invalid {
			t.Fatalf("%s: quote without the tag: info %v", fam.name, r.Info)
		}
	}
}

// TestSCTPEarlyDrop: a full table may drop an assured association only
// while it shuts down (Linux's sctp_can_early_drop).
func TestSCTPEarlyDrop(t *testing.T) {
	tr := &sctpTracker{}
	for st := sctpNone; st < sctpInvalid; st++ {
		var c Conn
		c.proto.sctp().state = st
		want := st == sctpShutdownSent || st == sctpShutdownRecd || st == sctpShutdownAckSent
		if got := tr.canEarlyDrop(&c); got != want {
			t.Errorf("%s: canEarlyDrop %v", sctpStateNames[st], got)
		}
		if got := string(tr.AppendState(nil, &c)); got != sctpStateNames[st]+" " {
			t.Errorf("AppendState %q", got)
		}
	}
	for _, fam := range ctFamilies {
		h := newCTHarness(t, Config{})
		c := sctpHandshake(t, h, fam)
		hash := c.Tuple(DirOriginal).hash(h.tab.seed)
		if h.tab.earlyDrop(hash, h.now) {
			t.Fatalf("%s: an assured ESTABLISHED association was early-dropped", fam.name)
		}
		sctpRun(h, fam, sctpKernelCases[0].steps[6]) // SHUTDOWN
		if !h.tab.earlyDrop(hash, h.now) || c.Status()&StatusDying == 0 || sctpLine(h, fam) != "" {
			t.Fatalf("%s: SHUTDOWN_SENT association not early-dropped", fam.name)
		}
	}
}

// TestSCTPEvents: state changes are UPDATE events, and so is becoming
// ASSURED; DATA in ESTABLISHED is none.
func TestSCTPEvents(t *testing.T) {
	for _, fam := range ctFamilies {
		h := newCTHarness(t, Config{})
		ev, cancel := h.tab.Subscribe(64)
		steps := sctpKernelCases[0].steps
		for i, st := range steps {
			sctpRun(h, fam, st)
			var got []EventType
			for len(ev) > 0 {
				got = append(got, (<-ev).Type)
			}
			want := []EventType{EventUpdate}
			switch i {
			case 0:
				want = []EventType{EventNew}
			case 4, 5:
				want = nil
			}
			if len(got) != len(want) || (len(want) == 1 && got[0] != want[0]) {
				t.Fatalf("%s step %d: events %v, want %v", fam.name, i, got, want)
			}
		}
		cancel()
	}
}

// TestSCTPConnSize: the SCTP state costs a connection nothing. The budget
// is the allocator's 224-byte size class (the master and the peer moved
// out of the Conn to get there).
func TestSCTPConnSize(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 224 {
		t.Fatalf("Conn is %d bytes, budget 224", n)
	}
	if unsafe.Sizeof(sctpState{}) > unsafe.Sizeof(tcpState{}) {
		t.Fatal("sctpState does not fit in tcpState")
	}
}

// TestSCTPConcurrent sends DATA both ways at once on one association; the
// race detector checks the state is only touched under the lock.
func TestSCTPConcurrent(t *testing.T) {
	for _, fam := range ctFamilies {
		h := newCTHarness(t, Config{})
		sctpHandshake(t, h, fam)
		steps := sctpKernelCases[0].steps
		var wg sync.WaitGroup
		for _, st := range []sctpStep{steps[4], steps[5], {dir: DirOriginal, vtag: steps[2].vtag, chunks: [][]byte{chHeartbeat()}}} {
			b := st.packet(fam)
			want := Established
			if st.dir == DirReply {
				want = EstablishedReply
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				var p packet.Parsed
				var r Result
				for range 500 {
					if err := p.Decode(b); err != nil {
						t.Error(err)
						return
					}
					h.tab.In(&p, h.now, &r)
					if r.Info != want {
						t.Errorf("info %v, want %v", r.Info, want)
						return
					}
				}
			}()
		}
		wg.Wait()
		if got := sctpLine(h, fam); !strings.Contains(got, " ESTABLISHED ") || !strings.Contains(got, "packets=1002 ") {
			t.Fatalf("%s: %s", fam.name, got)
		}
	}
}

// TestSCTPNoAllocs: tracking packets of a known association allocates
// nothing.
func TestSCTPNoAllocs(t *testing.T) {
	for _, fam := range ctFamilies {
		h := newCTHarness(t, Config{})
		sctpHandshake(t, h, fam)
		steps := sctpKernelCases[0].steps
		out, back := steps[4].packet(fam), steps[5].packet(fam)
		var p packet.Parsed
		var r Result
		if n := testing.AllocsPerRun(200, func() {
			for _, b := range [][]byte{out, back} {
				if p.Decode(b) != nil {
					t.Fatal("decode")
				}
				h.tab.In(&p, h.now, &r)
				if r.Conn == nil {
					t.Fatal("not tracked")
				}
			}
		}); n != 0 {
			t.Fatalf("%s: %v allocations per packet pair", fam.name, n)
		}
	}
}

// BenchmarkSCTPData is the per-packet cost of DATA on an established
// association: checksum, chunk walk, tag check, state.
func BenchmarkSCTPData(b *testing.B) {
	fam := ctFamilies[0]
	h := newCTHarness(b, Config{})
	sctpHandshake(b, h, fam)
	pkt := sctpKernelCases[0].steps[4].packet(fam)
	var p packet.Parsed
	var r Result
	if p.Decode(pkt) != nil {
		b.Fatal("decode")
	}
	b.ReportAllocs()
	for b.Loop() {
		h.tab.In(&p, h.now, &r)
	}
	if r.Info != Established {
		b.Fatal(r.Info)
	}
}

// FuzzSCTPTracker drives an association with arbitrary chunks in both
// directions: nothing panics, the state stays a known one, and a packet
// refused as the first of an association leaves nothing in the table.
func FuzzSCTPTracker(f *testing.F) {
	var seed []byte
	for _, st := range sctpKernelCases[0].steps {
		c := concatChunks(st.chunks)
		seed = append(seed, byte(st.dir), byte(len(c)))
		seed = binary.BigEndian.AppendUint32(seed, st.vtag)
		seed = append(seed, c...)
	}
	f.Add(seed)
	f.Add([]byte{0, 4, 0, 0, 0, 9, 4, 0, 0, 4, 1, 4, 0, 0, 0, 10, 5, 0, 0, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		fam := ctFamilies[len(data)%2]
		// A small table: allocating and zeroing the default one's bucket
		// array was most of each execution.
		h := newCTHarness(t, Config{Max: 64})
		for len(data) >= 6 {
			dir := Dir(data[0] & 1)
			n := min(int(data[1]), len(data)-6)
			vtag := binary.BigEndian.Uint32(data[2:])
			st := sctpStep{dir: dir, vtag: vtag, chunks: [][]byte{data[6 : 6+n]}}
			data = data[6+n:]
			before := h.tab.Count()
			r := h.in(st.packet(fam))
			if r.Conn != nil && !r.Conn.Confirmed() {
				if dir == DirOriginal {
					h.masquerade(r, fam.nat)
				}
				// A server-side packet with no association starts one of
				// its own, whose tuple a masqueraded client one may then
				// clash with: NAT would pick another port; here it is
				// dropped.
				if err := h.tab.Confirm(r.Conn, h.now); err != nil && !errors.Is(err, ErrClash) {
					t.Fatal(err)
				}
			}
			if r.Info == Invalid && h.tab.Count() > before {
				t.Fatal("an INVALID packet created an entry")
			}
			if r.Conn != nil {
				r.Conn.Lock()
				s := r.Conn.proto.sctp().state
				r.Conn.Unlock()
				if s == sctpNone || s >= sctpInvalid {
					t.Fatalf("state %d after an accepted packet", s)
				}
			}
			h.advance(time.Second)
		}
	})
}
