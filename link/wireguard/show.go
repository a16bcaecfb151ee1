package wireguard

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PeerStats is one peer's state, for metrics.
type PeerStats struct {
	Name      string
	PublicKey string // base64
	// Endpoint is the address the peer was last heard from or configured
	// with; "" if none.
	Endpoint string
	// LastHandshake is when the current session was made; zero if never.
	LastHandshake time.Time
	// RxBytes and TxBytes count WireGuard payload bytes from and to the
	// peer, as `wg show` does.
	RxBytes, TxBytes uint64
}

// devState is the device as its UAPI get operation describes it.
type devState struct {
	private key
	port    int
	fwmark  uint64
	peers   []peerState
}

type peerState struct {
	pub, psk  key
	endpoint  string
	handshake time.Time
	rx, tx    uint64
	keepalive int
	allowed   []string
}

// state reads the device's configuration and counters.
func (l *Link) state() (*devState, error) {
	text, err := l.dev.IpcGet()
	if err != nil {
		return nil, err
	}
	return parseState(text)
}

// parseState parses UAPI get output: key=value lines, a public_key line
// starting each peer. Keys are hex there.
func parseState(text string) (*devState, error) {
	s := &devState{}
	var p *peerState
	var sec, nsec int64
	flush := func() {
		if p != nil && (sec != 0 || nsec != 0) {
			p.handshake = time.Unix(sec, nsec)
		}
		sec, nsec = 0, 0
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("uapi: malformed line %q", line)
		}
		var err error
		switch k {
		case "private_key":
			s.private, err = hexKey(v)
		case "listen_port":
			s.port, err = strconv.Atoi(v)
		case "fwmark":
			s.fwmark, err = strconv.ParseUint(v, 10, 32)
		case "public_key":
			flush()
			s.peers = append(s.peers, peerState{})
			p = &s.peers[len(s.peers)-1]
			p.pub, err = hexKey(v)
		default:
			if p == nil {
				continue // a device key this package does not show
			}
			switch k {
			case "preshared_key":
				p.psk, err = hexKey(v)
			case "endpoint":
				p.endpoint = v
			case "last_handshake_time_sec":
				sec, err = strconv.ParseInt(v, 10, 64)
			case "last_handshake_time_nsec":
				nsec, err = strconv.ParseInt(v, 10, 64)
			case "rx_bytes":
				p.rx, err = strconv.ParseUint(v, 10, 64)
			case "tx_bytes":
				p.tx, err = strconv.ParseUint(v, 10, 64)
			case "persistent_keepalive_interval":
				p.keepalive, err = strconv.Atoi(v)
			case "allowed_ip":
				p.allowed = append(p.allowed, v)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("uapi: %s: %v", k, err)
		}
	}
	flush()
	return s, sc.Err()
}

func hexKey(s string) (key, error) {
	var k key
	if len(s) != 2*len(k) {
		return k, fmt.Errorf("key of %d hex digits", len(s))
	}
	_, err := hex.Decode(k[:], []byte(s))
	return k, err
}

// PeerStats returns every configured peer's state, in peer-index order.
func (l *Link) PeerStats() ([]PeerStats, error) {
	l.cfgMu.Lock()
	defer l.cfgMu.Unlock()
	s, err := l.state()
	if err != nil {
		return nil, err
	}
	byKey := make(map[key]*peerState, len(s.peers))
	for i := range s.peers {
		byKey[s.peers[i].pub] = &s.peers[i]
	}
	out := make([]PeerStats, len(l.cur))
	for i := range l.cur {
		out[i] = PeerStats{Name: l.cur[i].name, PublicKey: l.cur[i].pub.String()}
		if p := byKey[l.cur[i].pub]; p != nil {
			out[i].Endpoint = p.endpoint
			out[i].LastHandshake = p.handshake
			out[i].RxBytes = p.rx
			out[i].TxBytes = p.tx
		}
	}
	return out, nil
}

// Show writes the interface as `wg show` prints it (without colour), peers
// with the latest handshake first.
func (l *Link) Show(w io.Writer) error {
	l.cfgMu.Lock()
	order := make(map[key]int, len(l.cur))
	for i := range l.cur {
		order[l.cur[i].pub] = i
	}
	l.cfgMu.Unlock()
	s, err := l.state()
	if err != nil {
		return err
	}
	return writeShow(w, l.name, s, order, time.Now())
}

func writeShow(w io.Writer, name string, s *devState, order map[key]int, now time.Time) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "interface: %s\n", name)
	if !s.private.isZero() {
		fmt.Fprintf(bw, "  public key: %s\n", publicKey(s.private))
		bw.WriteString("  private key: (hidden)\n")
	}
	if s.port != 0 {
		fmt.Fprintf(bw, "  listening port: %d\n", s.port)
	}
	if s.fwmark != 0 {
		fmt.Fprintf(bw, "  fwmark: 0x%x\n", s.fwmark)
	}
	// wg sorts by handshake time, newest first; ties go by config order
	// here so the output is stable (the device lists peers in map order).
	peers := slices.Clone(s.peers)
	slices.SortStableFunc(peers, func(a, b peerState) int {
		if c := b.handshake.Compare(a.handshake); c != 0 {
			return c
		}
		return order[a.pub] - order[b.pub]
	})
	for _, p := range peers {
		fmt.Fprintf(bw, "\npeer: %s\n", p.pub)
		if !p.psk.isZero() {
			bw.WriteString("  preshared key: (hidden)\n")
		}
		if p.endpoint != "" {
			fmt.Fprintf(bw, "  endpoint: %s\n", p.endpoint)
		}
		allowed := "(none)"
		if len(p.allowed) > 0 {
			allowed = strings.Join(p.allowed, ", ")
		}
		fmt.Fprintf(bw, "  allowed ips: %s\n", allowed)
		if !p.handshake.IsZero() {
			fmt.Fprintf(bw, "  latest handshake: %s\n", ago(now, p.handshake))
		}
		if p.rx != 0 || p.tx != 0 {
			fmt.Fprintf(bw, "  transfer: %s received, %s sent\n", bytesText(p.rx), bytesText(p.tx))
		}
		if p.keepalive != 0 {
			fmt.Fprintf(bw, "  persistent keepalive: every %s\n", prettyTime(uint64(p.keepalive)))
		}
	}
	return bw.Flush()
}

// ago is how wg words a handshake's age: whole seconds, "Now" within the
// same second.
func ago(now, t time.Time) string {
	n, s := now.Unix(), t.Unix()
	switch {
	case n == s:
		return "Now"
	case n < s:
		return "(FUTURE)"
	}
	return prettyTime(uint64(n-s)) + " ago"
}

// prettyTime spells a number of seconds as wg does: "1 hour, 2 seconds".
func prettyTime(left uint64) string {
	const (
		minute = 60
		hour   = 60 * minute
		day    = 24 * hour
		year   = 365 * day
	)
	units := [...]struct {
		size uint64
		name string
	}{{year, "year"}, {day, "day"}, {hour, "hour"}, {minute, "minute"}, {1, "second"}}
	var b strings.Builder
	for _, u := range units {
		n := left / u.size
		left %= u.size
		if n == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d %s", n, u.name)
		if n != 1 {
			b.WriteByte('s')
		}
	}
	return b.String()
}

// bytesText spells a byte count as wg does: "148 B", "1.50 KiB".
func bytesText(b uint64) string {
	const k = 1024
	switch {
	case b < k:
		return fmt.Sprintf("%d B", b)
	case b < k*k:
		return fmt.Sprintf("%.2f KiB", float64(b)/k)
	case b < k*k*k:
		return fmt.Sprintf("%.2f MiB", float64(b)/(k*k))
	case b < k*k*k*k:
		return fmt.Sprintf("%.2f GiB", float64(b)/(k*k*k))
	}
	return fmt.Sprintf("%.2f TiB", float64(b)/(k*k*k*k))
}
