package wireguard

import (
	"encoding/base64"
	"encoding/binary"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/blake2s"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/conn/bindtest"
)

// initiation is a handshake initiation of garbage whose mac1 is made with
// the responder's public key (what anyone who knows that key can send),
// or a wrong one when !validMAC: the device must check the first cheaply
// and drop the second before any cryptography.
func initiation(t testing.TB, responderPub string, validMAC bool) []byte {
	pub, err := base64.StdEncoding.DecodeString(responderPub)
	if err != nil || len(pub) != 32 {
		t.Fatalf("public key %q: %v", responderPub, err)
	}
	m := make([]byte, msgInitiationSize)
	for i := range m {
		m[i] = byte(rand.Uint32())
	}
	binary.LittleEndian.PutUint32(m, msgInitiation)
	if validMAC {
		// mac1 = MAC(HASH("mac1----" || pub), msg up to mac1), the
		// WireGuard paper's §5.4.4.
		key := blake2s.Sum256(append([]byte("mac1----"), pub...))
		h, err := blake2s.New128(key[:])
		if err != nil {
			t.Fatal(err)
		}
		h.Write(m[:116])
		copy(m[116:132], h.Sum(nil))
	}
	return m
}

// A flood at the listen port: datagrams that are no WireGuard message,
// initiations with a wrong mac1, and initiations with a right mac1 but
// garbage inside, faster than the device can process. Each kind is
// dropped and counted (the last answered with cookies once the device is
// under load), and the peer's established tunnel carries packets both
// ways afterwards.
func TestHandshakeFloodCounted(t *testing.T) {
	binds := bindtest.NewChannelBinds()
	priv, pub := mustKey(t)
	r := newRemote(t, binds[1], peerUAPI(t, pub, "127.0.0.1:2", "10.9.0.1/32", "fd09::1/128"))
	l, err := New("wgflood", Config{
		PrivateKey: priv, AllowInlineKey: true,
		Peers: []PeerConfig{{Name: "far", PublicKey: r.pub, Endpoint: "127.0.0.1:1", AllowedIPs: []string{"10.9.0.2", "fd09::2/128"}}},
	}, Options{Bind: binds[0]})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	recv := startReader(l)
	first := udp("10.9.0.2", "10.9.0.1", "before the flood")
	r.send(t, first)
	expect(t, recv, first, "the tunnel before the flood")

	// The flooder sends from the remote's bind, as another host on the
	// remote's address would.
	to, err := binds[1].ParseEndpoint("127.0.0.1:2")
	if err != nil {
		t.Fatal(err)
	}
	flood := func(pkts [][]byte) {
		t.Helper()
		if err := binds[1].Send(pkts, to); err != nil {
			t.Fatal(err)
		}
	}

	const garbage, badMAC = 3000, 300
	var pkts [][]byte
	for i := range garbage {
		var b []byte
		switch i % 3 {
		case 0: // unknown type
			b = make([]byte, rand.IntN(200))
			if len(b) >= 4 {
				binary.LittleEndian.PutUint32(b, 5+rand.Uint32N(1<<20))
			}
		case 1: // an initiation of the wrong size
			b = make([]byte, msgInitiationSize-1-rand.IntN(100))
			binary.LittleEndian.PutUint32(b, msgInitiation)
		case 2: // shorter than any message
			b = make([]byte, rand.IntN(msgTransportMinSize))
		}
		pkts = append(pkts, b)
	}
	flood(pkts)
	waitFor(t, "every garbage datagram counted", func() bool { return l.Stats().Garbage == garbage })

	pkts = pkts[:0]
	for range badMAC {
		pkts = append(pkts, initiation(t, pub, false))
	}
	flood(pkts)
	waitFor(t, "every initiation with a wrong mac1 counted", func() bool { return l.Stats().HandshakeBadMAC == badMAC })

	// Valid mac1: each costs the device a Diffie-Hellman until it finds
	// itself under load and answers with cookies instead.
	waitFor(t, "handshakes answered with cookies under load", func() bool {
		pkts = pkts[:0]
		for range 2000 {
			pkts = append(pkts, initiation(t, pub, true))
		}
		flood(pkts)
		return l.Stats().HandshakeUnderLoad > 0
	})
	if s := l.Stats(); s.Garbage != garbage || s.HandshakeBadMAC != badMAC {
		t.Errorf("garbage %d, bad mac1 %d after the valid-mac1 flood; want %d, %d (it is neither)", s.Garbage, s.HandshakeBadMAC, garbage, badMAC)
	}

	after := udp("10.9.0.2", "10.9.0.1", "after the flood")
	r.send(t, after)
	expect(t, recv, after, "the tunnel after the flood, remote to link")
	back := udp("10.9.0.1", "10.9.0.2", "link to remote after the flood")
	writeLink(t, l, back)
	expect(t, r.received, back, "the tunnel after the flood, link to remote")
}

// isMessage is what the device's receive routine accepts, by type and size.
func TestIsMessage(t *testing.T) {
	msg := func(typ uint32, n int) []byte {
		b := make([]byte, n)
		if n >= 4 {
			binary.LittleEndian.PutUint32(b, typ)
		}
		return b
	}
	for _, tc := range []struct {
		b    []byte
		want bool
	}{
		{msg(1, 148), true}, {msg(1, 147), false}, {msg(2, 92), true}, {msg(2, 148), false},
		{msg(3, 64), true}, {msg(3, 65), false}, {msg(4, 32), true}, {msg(4, 1500), true},
		{msg(4, 31), false}, {msg(0, 148), false}, {msg(5, 148), false}, {msg(1<<24|1, 148), false},
		{nil, false}, {msg(1, 3), false},
	} {
		if got := isMessage(tc.b); got != tc.want {
			t.Errorf("isMessage(type %d, %d bytes) = %v, want %v", binary.LittleEndian.Uint32(append(tc.b, 0, 0, 0, 0)), len(tc.b), got, tc.want)
		}
	}
}

// batchBind's one receive function returns the same full batch at once.
type batchBind struct {
	conn.Bind
	pkts [][]byte
}

func (b *batchBind) Open(uint16) ([]conn.ReceiveFunc, uint16, error) {
	return []conn.ReceiveFunc{func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for i, p := range b.pkts {
			sizes[i] = copy(packets[i], p)
		}
		return len(b.pkts), nil
	}}, 0, nil
}

// BenchmarkCountingBindReceive is what counting costs the device's receive
// path per batch of 128 datagrams, half of them garbage: no allocation.
func BenchmarkCountingBindReceive(b *testing.B) {
	inner := &batchBind{}
	for i := range 128 {
		p := make([]byte, 1400)
		binary.LittleEndian.PutUint32(p, msgTransport)
		if i%2 == 1 {
			p = p[:17]
		}
		inner.pkts = append(inner.pkts, p)
	}
	bufs := make([][]byte, 128)
	for i := range bufs {
		bufs[i] = make([]byte, 1500)
	}
	sizes := make([]int, 128)
	eps := make([]conn.Endpoint, 128)
	// bare is the fake bind alone (its copies), for the difference.
	for _, bare := range []bool{true, false} {
		name := "counting"
		if bare {
			name = "bare"
		}
		b.Run(name, func(b *testing.B) {
			var garbage atomic.Uint64
			var bind conn.Bind = &countingBind{Bind: inner, garbage: &garbage}
			if bare {
				bind = inner
			}
			fns, _, _ := bind.Open(0)
			b.ReportAllocs()
			for b.Loop() {
				fns[0](bufs, sizes, eps)
			}
			if !bare && garbage.Load() == 0 {
				b.Fatal("nothing counted")
			}
		})
	}
}
