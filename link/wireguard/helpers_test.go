package wireguard

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"tungate/link"
)

// wait is how long a test waits for a packet or a condition; generous
// because the machine is shared, and never slept: every wait ends as soon
// as its condition holds.
const wait = 10 * time.Second

func mustKey(t testing.TB) (priv, pub string) {
	t.Helper()
	priv, err := GenKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err = PubKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

func b64hex(t testing.TB, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// writeFile writes a key file with the given mode.
func writeFile(t testing.TB, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, []byte(content+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode passes through the umask; set it exactly.
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// remote is a plain wireguard-go device with a channel TUN: the far end of
// a tunnel, configured through the UAPI directly so it checks this
// package against the device as upstream intends it to be used.
type remote struct {
	dev      *device.Device
	tun      *tuntest.ChannelTUN
	priv     string
	pub      string
	received chan []byte
}

func newRemote(t *testing.T, bind conn.Bind, uapiPeers string) *remote {
	t.Helper()
	r := &remote{tun: tuntest.NewChannelTUN(), received: make(chan []byte, 64)}
	r.priv, r.pub = mustKey(t)
	r.dev = device.NewDevice(r.tun.TUN(), bind, device.NewLogger(device.LogLevelSilent, ""))
	cfg := fmt.Sprintf("private_key=%s\nlisten_port=0\n%s", b64hex(t, r.priv), uapiPeers)
	if err := r.dev.IpcSet(cfg); err != nil {
		t.Fatalf("remote IpcSet: %v\n%s", err, cfg)
	}
	if err := r.dev.Up(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.dev.Close)
	go func() {
		for p := range r.tun.Inbound {
			r.received <- p
		}
	}()
	return r
}

// peerUAPI is the remote's config of its one peer, the link.
func peerUAPI(t testing.TB, pub, endpoint string, allowed ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "public_key=%s\n", b64hex(t, pub))
	if endpoint != "" {
		fmt.Fprintf(&b, "endpoint=%s\n", endpoint)
	}
	for _, a := range allowed {
		fmt.Fprintf(&b, "allowed_ip=%s\n", a)
	}
	return b.String()
}

func (r *remote) send(t testing.TB, pkt []byte) {
	t.Helper()
	select {
	case r.tun.Outbound <- pkt:
	case <-time.After(wait):
		t.Fatal("remote did not take a packet to send")
	}
}

func (r *remote) port(t testing.TB) int {
	t.Helper()
	s, err := r.dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseState(s)
	if err != nil {
		t.Fatal(err)
	}
	return st.port
}

// expect waits for the next packet on ch and checks it is want.
func expect(t testing.TB, ch <-chan []byte, want []byte, what string) {
	t.Helper()
	select {
	case got, ok := <-ch:
		if !ok {
			t.Fatalf("%s: channel closed", what)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: got packet\n% x\nwant\n% x", what, got, want)
		}
	case <-time.After(wait):
		t.Fatalf("%s: no packet within %v", what, wait)
	}
}

// startReader reads the link in a goroutine until it closes, passing
// copies of the packets on.
func startReader(l *Link) <-chan []byte {
	ch := make(chan []byte, 64)
	go func() {
		defer close(ch)
		bufs := make([][]byte, l.BatchSize())
		sizes := make([]int, len(bufs))
		for i := range bufs {
			bufs[i] = make([]byte, link.Headroom+2048)
		}
		for {
			n, err := l.Read(bufs, sizes, link.Headroom)
			if err != nil {
				return
			}
			for i := 0; i < n; i++ {
				ch <- bytes.Clone(bufs[i][link.Headroom : link.Headroom+sizes[i]])
			}
		}
	}()
	return ch
}

// writeLink writes packets to l with the gateway's headroom in front.
func writeLink(t testing.TB, l *Link, pkts ...[]byte) {
	t.Helper()
	bufs := make([][]byte, len(pkts))
	for i, p := range pkts {
		bufs[i] = make([]byte, link.Headroom+len(p))
		copy(bufs[i][link.Headroom:], p)
	}
	n, err := l.Write(bufs, link.Headroom)
	if err != nil || n != len(pkts) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(pkts))
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// udp builds an IPv4 or IPv6 UDP packet from src to dst.
func udp(src, dst string, payload string) []byte {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	var b []byte
	var l4 int
	if s.Is4() {
		l4 = 20
		b = make([]byte, l4+8+len(payload))
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		b[8] = 64
		b[9] = 17
		s4, d4 := s.As4(), d.As4()
		copy(b[12:16], s4[:])
		copy(b[16:20], d4[:])
		binary.BigEndian.PutUint16(b[10:], ^sum(b[:20]))
	} else {
		l4 = 40
		b = make([]byte, l4+8+len(payload))
		b[0] = 0x60
		binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
		b[6] = 17
		b[7] = 64
		s16, d16 := s.As16(), d.As16()
		copy(b[8:24], s16[:])
		copy(b[24:40], d16[:])
	}
	binary.BigEndian.PutUint16(b[l4:], 40000)
	binary.BigEndian.PutUint16(b[l4+2:], 7)
	binary.BigEndian.PutUint16(b[l4+4:], uint16(8+len(payload)))
	copy(b[l4+8:], payload)
	return b
}

// sum is the ones'-complement sum of b (RFC 1071), folded.
func sum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

func timeAfterWait() <-chan time.Time { return time.After(wait) }
