package wireguard

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// DefaultMTU is the MTU of a link whose config leaves mtu unset: 1500 less
// the 80 bytes of an outer IPv6 header, UDP header and WireGuard transport
// overhead, as wg-quick picks.
const DefaultMTU = 1420

// Bounds of the mtu key. The lower bound is IPv6's minimum link MTU (the
// link carries IPv6); the upper one keeps the encapsulated packet within
// one IPv6 UDP datagram.
const (
	minMTU = 1280
	maxMTU = 65535 - 80
)

// Config is one WireGuard interface: its own key and port and the peers it
// talks to. The TOML keys are those of an [[interface]] block whose peers
// are [[interface.peer]] blocks.
type Config struct {
	// PrivateKeyFile holds the interface's base64 private key (as `wg
	// genkey` writes it); it must not be readable by group or others.
	PrivateKeyFile string `toml:"private_key_file"`
	// PrivateKey is the key inline. A key in the config file leaks with
	// every copy of the file, so it is refused unless AllowInlineKey says
	// that is intended (tests, throwaway setups).
	PrivateKey string `toml:"private_key"`
	// AllowInlineKey permits PrivateKey.
	AllowInlineKey bool `toml:"allow_inline_key"`
	// ListenPort is the UDP port; 0 picks a free one.
	ListenPort int `toml:"listen_port"`
	// MTU of the tunnel; 0 means DefaultMTU.
	MTU int `toml:"mtu"`
	// Peers are the interface's peers, [[interface.peer]] in TOML.
	Peers []PeerConfig `toml:"peer"`
}

// PeerConfig is one peer of a WireGuard interface.
type PeerConfig struct {
	// Name identifies the peer in logs, metrics and rules; unique per
	// interface.
	Name string `toml:"name"`
	// PublicKey is the peer's base64 public key.
	PublicKey string `toml:"public_key"`
	// PresharedKeyFile optionally holds a base64 preshared key (`wg
	// genpsk`); like the private key it must not be group/world readable.
	PresharedKeyFile string `toml:"preshared_key_file"`
	// Endpoint is the peer's host:port ("192.0.2.1:51820",
	// "[2001:db8::1]:51820" or a name resolved when the config is applied);
	// empty means the peer must contact us first.
	Endpoint string `toml:"endpoint"`
	// AllowedIPs are the prefixes the peer may send from and that are
	// routed to it; a bare address means a single host.
	AllowedIPs []string `toml:"allowed_ips"`
	// PersistentKeepalive sends a keepalive this often to keep NAT
	// mappings open; 0 disables.
	PersistentKeepalive Keepalive `toml:"persistent_keepalive"`
}

// Keepalive is a persistent-keepalive interval. In TOML it is whole
// seconds (25) or a duration string ("25s", "1m").
type Keepalive time.Duration

// UnmarshalTOML accepts an integer number of seconds or a duration string.
func (k *Keepalive) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 || v > 65535 {
			return fmt.Errorf("persistent_keepalive: %d seconds out of range (0-65535)", v)
		}
		*k = Keepalive(time.Duration(v) * time.Second)
	case string:
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("persistent_keepalive: %q is not a duration (want seconds or e.g. \"25s\")", v)
		}
		*k = Keepalive(d)
	default:
		return fmt.Errorf("persistent_keepalive: %v is neither seconds nor a duration string", v)
	}
	return nil
}

// seconds is the interval the UAPI takes; validate has checked it is whole.
func (k Keepalive) seconds() int { return int(time.Duration(k) / time.Second) }

// Validate reports the first problem in c, naming its key path (such as
// peer[1].public_key) and why. It reads the key files, so a Config that
// validates can be applied unless a file or a name lookup changes.
func (c *Config) Validate() error {
	_, err := c.resolve(nil)
	return err
}

// key is a Curve25519 key or a preshared key.
type key [32]byte

func (k key) isZero() bool { return k == key{} }

func (k key) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// spec is a validated Config with its key files read.
type spec struct {
	private key
	public  key
	port    int
	mtu     int
	peers   []peerSpec
}

// peerSpec is a validated PeerConfig.
type peerSpec struct {
	name string
	pub  key
	psk  key // zero: none
	// host is the endpoint as written when it needs a lookup; endpoint is
	// the address to use (invalid: none).
	host      string
	endpoint  netip.AddrPort
	allowed   []netip.Prefix
	keepalive int // seconds
}

// resolver looks endpoint names up; nil leaves names unresolved (Validate
// checks syntax only).
type resolver func(ctx context.Context, host string) (netip.Addr, error)

// lookupHost is the resolver New and UpdatePeers use.
func lookupHost(ctx context.Context, host string) (netip.Addr, error) {
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.Addr{}, err
	}
	if len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("no address for %q", host)
	}
	return addrs[0].Unmap(), nil
}

func (c *Config) resolve(lookup resolver) (*spec, error) {
	s := &spec{port: c.ListenPort, mtu: c.MTU}
	switch {
	case c.PrivateKey != "" && c.PrivateKeyFile != "":
		return nil, errors.New("private_key and private_key_file are exclusive")
	case c.PrivateKey != "":
		if !c.AllowInlineKey {
			return nil, errors.New("private_key: an inline key is refused (it leaks with every copy of the config); use private_key_file, or set allow_inline_key = true")
		}
		k, err := parseKey(c.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("private_key: %v", err)
		}
		s.private = k
	case c.PrivateKeyFile != "":
		k, err := readKeyFile(c.PrivateKeyFile)
		if err != nil {
			return nil, fmt.Errorf("private_key_file: %v", err)
		}
		s.private = k
	default:
		return nil, errors.New("private_key_file: missing")
	}
	if s.private.isZero() {
		return nil, errors.New("private key is all zeros")
	}
	s.public = publicKey(s.private)
	if c.ListenPort < 0 || c.ListenPort > 65535 {
		return nil, fmt.Errorf("listen_port: %d out of range (0-65535)", c.ListenPort)
	}
	if s.mtu == 0 {
		s.mtu = DefaultMTU
	}
	if s.mtu < minMTU || s.mtu > maxMTU {
		return nil, fmt.Errorf("mtu: %d out of range (%d-%d)", c.MTU, minMTU, maxMTU)
	}
	peers, err := resolvePeers(c.Peers, s.public, lookup)
	if err != nil {
		return nil, err
	}
	s.peers = peers
	return s, nil
}

// resolvePeers validates a peer list against the interface's own public
// key.
func resolvePeers(pcs []PeerConfig, own key, lookup resolver) ([]peerSpec, error) {
	peers := make([]peerSpec, len(pcs))
	names := make(map[string]int, len(pcs))
	keys := make(map[key]int, len(pcs))
	prefixes := make(map[netip.Prefix]int)
	for i := range pcs {
		pc := &pcs[i]
		p := &peers[i]
		path := fmt.Sprintf("peer[%d]", i)
		if pc.Name == "" {
			return nil, fmt.Errorf("%s.name: missing", path)
		}
		if strings.ContainsFunc(pc.Name, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return nil, fmt.Errorf("%s.name: %q has spaces or control characters", path, pc.Name)
		}
		if j, dup := names[pc.Name]; dup {
			return nil, fmt.Errorf("%s.name: duplicate name %q (also peer[%d])", path, pc.Name, j)
		}
		names[pc.Name] = i
		p.name = pc.Name

		if pc.PublicKey == "" {
			return nil, fmt.Errorf("%s.public_key: missing", path)
		}
		k, err := parseKey(pc.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("%s.public_key: %v", path, err)
		}
		if k == own {
			return nil, fmt.Errorf("%s.public_key: is the interface's own public key", path)
		}
		if j, dup := keys[k]; dup {
			return nil, fmt.Errorf("%s.public_key: duplicate key (also peer[%d])", path, j)
		}
		keys[k] = i
		p.pub = k

		if pc.PresharedKeyFile != "" {
			k, err := readKeyFile(pc.PresharedKeyFile)
			if err != nil {
				return nil, fmt.Errorf("%s.preshared_key_file: %v", path, err)
			}
			p.psk = k
		}

		if pc.Endpoint != "" {
			if err := p.parseEndpoint(pc.Endpoint, lookup); err != nil {
				return nil, fmt.Errorf("%s.endpoint: %v", path, err)
			}
		}

		for j, a := range pc.AllowedIPs {
			pfx, err := parseAllowed(a)
			if err != nil {
				return nil, fmt.Errorf("%s.allowed_ips[%d]: %v", path, j, err)
			}
			if o, dup := prefixes[pfx]; dup {
				if o == i {
					return nil, fmt.Errorf("%s.allowed_ips[%d]: %s listed twice", path, j, pfx)
				}
				return nil, fmt.Errorf("%s.allowed_ips[%d]: %s is also peer[%d]'s; a prefix routes to one peer", path, j, pfx, o)
			}
			prefixes[pfx] = i
			p.allowed = append(p.allowed, pfx)
		}

		d := time.Duration(pc.PersistentKeepalive)
		if d < 0 || d > 65535*time.Second {
			return nil, fmt.Errorf("%s.persistent_keepalive: %v out of range (0-65535s)", path, d)
		}
		if d%time.Second != 0 {
			return nil, fmt.Errorf("%s.persistent_keepalive: %v is not whole seconds", path, d)
		}
		p.keepalive = pc.PersistentKeepalive.seconds()
	}
	return peers, nil
}

func (p *peerSpec) parseEndpoint(s string, lookup resolver) error {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return fmt.Errorf("%q: port 0", s)
		}
		if ap.Addr().Zone() != "" {
			// The UAPI's endpoint parser takes no zones.
			return fmt.Errorf("%q: zoned addresses are not supported", s)
		}
		p.endpoint = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		return nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port (IPv6 as [addr]:port)", s)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("%q: port %q is not 1-65535", s, port)
	}
	bad := func(r rune) bool { return r <= ' ' || r == 0x7f || strings.ContainsRune("/[]%", r) }
	if _, err := netip.ParseAddr(host); err == nil || host == "" || strings.ContainsFunc(host, bad) {
		return fmt.Errorf("%q: invalid host %q", s, host)
	}
	p.host = s
	if lookup == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := lookup(ctx, host)
	if err != nil {
		return fmt.Errorf("%q: %v", s, err)
	}
	p.endpoint = netip.AddrPortFrom(a, uint16(n))
	return nil
}

func parseAllowed(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("invalid address/prefix %q", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid prefix %q", s)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q: write IPv4 prefixes as IPv4", s)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set (did you mean %q?)", s, p.Masked())
	}
	return p, nil
}

// parseKey decodes a base64 key as wg(8) writes them.
func parseKey(s string) (key, error) {
	var k key
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return k, errors.New("not base64")
	}
	if len(b) != len(k) {
		return k, fmt.Errorf("decodes to %d bytes, want %d", len(b), len(k))
	}
	copy(k[:], b)
	return k, nil
}

// readKeyFile reads a key file that only its owner may read: a key that
// others can read is as good as published, so this is refused rather than
// warned about (wg(8) only warns).
func readKeyFile(path string) (key, error) {
	f, err := os.Open(path)
	if err != nil {
		return key{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return key{}, err
	}
	if !st.Mode().IsRegular() {
		return key{}, fmt.Errorf("%s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return key{}, fmt.Errorf("%s has mode %04o: it must not be readable or writable by group or others (chmod 600)", path, perm)
	}
	var buf [256]byte
	n, err := f.Read(buf[:])
	if err != nil && n == 0 {
		return key{}, fmt.Errorf("%s: %v", path, err)
	}
	k, err := parseKey(string(buf[:n]))
	if err != nil {
		return key{}, fmt.Errorf("%s: %v", path, err)
	}
	return k, nil
}
