package wireguard

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestConfigValidate(t *testing.T) {
	priv, pub := mustKey(t)
	_, peerA := mustKey(t)
	_, peerB := mustKey(t)
	keyFile := writeFile(t, priv, 0o600)
	pskFile := writeFile(t, peerA, 0o600) // any 32-byte base64 value is a valid psk
	loosePSK := writeFile(t, peerA, 0o644)

	base := func() Config {
		return Config{
			PrivateKeyFile: keyFile,
			ListenPort:     51820,
			Peers: []PeerConfig{
				{Name: "a", PublicKey: peerA, Endpoint: "192.0.2.1:51820", AllowedIPs: []string{"10.0.0.2/32", "fd00::2"}},
				{Name: "b", PublicKey: peerB, Endpoint: "[2001:db8::1]:51820", AllowedIPs: []string{"10.1.0.0/16"}, PresharedKeyFile: pskFile, PersistentKeepalive: Keepalive(25 * time.Second)},
			},
		}
	}
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   string // substring of the error; "" for valid
	}{
		{"valid", func(c *Config) {}, ""},
		{"valid without peers", func(c *Config) { c.Peers = nil }, ""},
		{"valid inline key when allowed", func(c *Config) { c.PrivateKeyFile = ""; c.PrivateKey = priv; c.AllowInlineKey = true }, ""},
		{"valid hostname endpoint", func(c *Config) { c.Peers[0].Endpoint = "vpn.example.org:51820" }, ""},
		{"no key", func(c *Config) { c.PrivateKeyFile = "" }, "private_key_file: missing"},
		{"inline key refused", func(c *Config) { c.PrivateKeyFile = ""; c.PrivateKey = priv }, "private_key: an inline key is refused"},
		{"both keys", func(c *Config) { c.PrivateKey = priv; c.AllowInlineKey = true }, "exclusive"},
		{"bad inline key", func(c *Config) { c.PrivateKeyFile = ""; c.PrivateKey = "abc"; c.AllowInlineKey = true }, "private_key: not base64"},
		{"short inline key", func(c *Config) { c.PrivateKeyFile = ""; c.PrivateKey = "AAAA"; c.AllowInlineKey = true }, "private_key: decodes to 3 bytes, want 32"},
		{"missing key file", func(c *Config) { c.PrivateKeyFile = "/nonexistent/key" }, "private_key_file: open /nonexistent/key"},
		{"port range", func(c *Config) { c.ListenPort = 70000 }, "listen_port: 70000 out of range"},
		{"mtu small", func(c *Config) { c.MTU = 576 }, "mtu: 576 out of range (1280-65455)"},
		{"mtu large", func(c *Config) { c.MTU = 65500 }, "mtu: 65500 out of range"},
		{"peer name missing", func(c *Config) { c.Peers[1].Name = "" }, "peer[1].name: missing"},
		{"peer name duplicate", func(c *Config) { c.Peers[1].Name = "a" }, `peer[1].name: duplicate name "a" (also peer[0])`},
		{"peer name spaces", func(c *Config) { c.Peers[0].Name = "a b" }, "peer[0].name: \"a b\" has spaces"},
		{"public key missing", func(c *Config) { c.Peers[1].PublicKey = "" }, "peer[1].public_key: missing"},
		{"public key not base64", func(c *Config) { c.Peers[1].PublicKey = "!!!" }, "peer[1].public_key: not base64"},
		{"public key short", func(c *Config) { c.Peers[1].PublicKey = "AAAA" }, "peer[1].public_key: decodes to 3 bytes, want 32"},
		{"public key duplicate", func(c *Config) { c.Peers[1].PublicKey = peerA }, "peer[1].public_key: duplicate key (also peer[0])"},
		{"public key is own", func(c *Config) { c.Peers[0].PublicKey = pub }, "peer[0].public_key: is the interface's own public key"},
		{"psk file loose", func(c *Config) { c.Peers[1].PresharedKeyFile = loosePSK }, "peer[1].preshared_key_file: " + loosePSK + " has mode 0644"},
		{"endpoint no port", func(c *Config) { c.Peers[0].Endpoint = "192.0.2.1" }, `peer[0].endpoint: "192.0.2.1" is not host:port`},
		{"endpoint v6 unbracketed", func(c *Config) { c.Peers[0].Endpoint = "2001:db8::1:51820" }, "peer[0].endpoint:"},
		{"endpoint port zero", func(c *Config) { c.Peers[0].Endpoint = "192.0.2.1:0" }, "peer[0].endpoint: \"192.0.2.1:0\": port 0"},
		{"endpoint port range", func(c *Config) { c.Peers[0].Endpoint = "vpn.example.org:99999" }, "port \"99999\" is not 1-65535"},
		{"endpoint bad host", func(c *Config) { c.Peers[0].Endpoint = "a b:1" }, `invalid host "a b"`},
		{"allowed ip invalid", func(c *Config) { c.Peers[0].AllowedIPs = []string{"10.0.0.0/8", "10.0.0.300/32"} }, `peer[0].allowed_ips[1]: invalid prefix "10.0.0.300/32"`},
		{"allowed ip bare invalid", func(c *Config) { c.Peers[1].AllowedIPs = []string{"nope"} }, `peer[1].allowed_ips[0]: invalid address/prefix "nope"`},
		{"allowed ip host bits", func(c *Config) { c.Peers[0].AllowedIPs = []string{"10.0.0.1/24"} }, `peer[0].allowed_ips[0]: "10.0.0.1/24" has host bits set (did you mean "10.0.0.0/24"?)`},
		{"allowed ip mapped", func(c *Config) { c.Peers[0].AllowedIPs = []string{"::ffff:10.0.0.0/120"} }, "write IPv4 prefixes as IPv4"},
		{"allowed ip twice", func(c *Config) { c.Peers[0].AllowedIPs = []string{"10.0.0.2", "10.0.0.2/32"} }, "peer[0].allowed_ips[1]: 10.0.0.2/32 listed twice"},
		{"allowed ip two peers", func(c *Config) { c.Peers[1].AllowedIPs = []string{"fd00::2/128"} }, "peer[1].allowed_ips[0]: fd00::2/128 is also peer[0]'s"},
		{"keepalive negative", func(c *Config) { c.Peers[0].PersistentKeepalive = Keepalive(-time.Second) }, "peer[0].persistent_keepalive: -1s out of range"},
		{"keepalive too long", func(c *Config) { c.Peers[0].PersistentKeepalive = Keepalive(20 * time.Hour) }, "out of range (0-65535s)"},
		{"keepalive fraction", func(c *Config) { c.Peers[0].PersistentKeepalive = Keepalive(1500 * time.Millisecond) }, "peer[0].persistent_keepalive: 1.5s is not whole seconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.mutate(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate accepted it; want error containing %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("Validate: %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestKeyFilePermissions(t *testing.T) {
	priv, _ := mustKey(t)
	for _, tc := range []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o600, true},
		{0o400, true},
		{0o640, false},
		{0o604, false},
		{0o644, false},
		{0o620, false},
	} {
		path := writeFile(t, priv, tc.mode)
		c := Config{PrivateKeyFile: path}
		err := c.Validate()
		if tc.ok {
			if err != nil {
				t.Errorf("mode %04o: %v", tc.mode, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("mode %04o accepted", tc.mode)
			continue
		}
		want := "private_key_file: " + path + " has mode " + fmt.Sprintf("%04o", tc.mode) + ": it must not be readable or writable by group or others (chmod 600)"
		if err.Error() != want {
			t.Errorf("mode %04o: %v\nwant %s", tc.mode, err, want)
		}
	}
	// A directory or garbage in the file is refused too.
	c := Config{PrivateKeyFile: t.TempDir()}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	c = Config{PrivateKeyFile: writeFile(t, "hello", 0o600)}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "not base64") {
		t.Errorf("garbage key: %v", err)
	}
}

func TestConfigTOML(t *testing.T) {
	priv, _ := mustKey(t)
	_, peerA := mustKey(t)
	_, peerB := mustKey(t)
	keyFile := writeFile(t, priv, 0o600)
	doc := `
[[interface]]
private_key_file = "` + keyFile + `"
listen_port = 51820
mtu = 1380

[[interface.peer]]
name = "laptop"
public_key = "` + peerA + `"
endpoint = "[2001:db8::7]:51820"
allowed_ips = ["10.0.0.2/32", "fd00::2/128"]
persistent_keepalive = 25

[[interface.peer]]
name = "phone"
public_key = "` + peerB + `"
allowed_ips = ["10.0.0.3"]
persistent_keepalive = "1m"
`
	var f struct {
		Interface []Config `toml:"interface"`
	}
	md, err := toml.Decode(doc, &f)
	if err != nil {
		t.Fatal(err)
	}
	if u := md.Undecoded(); len(u) != 0 {
		t.Fatalf("undecoded keys %v", u)
	}
	c := f.Interface[0]
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.MTU != 1380 || len(c.Peers) != 2 || c.Peers[0].Name != "laptop" || c.Peers[1].AllowedIPs[0] != "10.0.0.3" {
		t.Errorf("decoded %+v", c)
	}
	if c.Peers[0].PersistentKeepalive != Keepalive(25*time.Second) || c.Peers[1].PersistentKeepalive != Keepalive(time.Minute) {
		t.Errorf("keepalives %v %v", c.Peers[0].PersistentKeepalive, c.Peers[1].PersistentKeepalive)
	}

	for _, bad := range []struct{ value, want string }{
		{`"soon"`, `persistent_keepalive: "soon" is not a duration`},
		{`-3`, "persistent_keepalive: -3 seconds out of range"},
		{`1.5`, "neither seconds nor a duration string"},
	} {
		doc := "[[interface]]\n[[interface.peer]]\npersistent_keepalive = " + bad.value + "\n"
		_, err := toml.Decode(doc, &f)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("persistent_keepalive = %s: %v, want %q", bad.value, err, bad.want)
		}
	}
}

// FuzzPeerConfig feeds arbitrary peer values through validation: it must
// answer with an error or a peer, never panic, and what it accepts must be
// what the UAPI takes.
func FuzzPeerConfig(f *testing.F) {
	f.Add("a", "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=", "192.0.2.1:51820", "10.0.0.0/8", int64(25))
	f.Add("b", "AAAA", "[fe80::1%eth0]:1", "::ffff:1.2.3.4", int64(-1))
	f.Add("", "", "host:", "1.2.3.4/33", int64(1<<40))
	f.Fuzz(func(t *testing.T, name, pub, endpoint, allowed string, keepalive int64) {
		pcs := []PeerConfig{{
			Name:                name,
			PublicKey:           pub,
			Endpoint:            endpoint,
			AllowedIPs:          []string{allowed},
			PersistentKeepalive: Keepalive(keepalive),
		}}
		peers, err := resolvePeers(pcs, key{}, nil)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "peer[0].") {
				t.Fatalf("error without key path: %v", err)
			}
			return
		}
		p := peers[0]
		if !p.allowed[0].IsValid() || p.allowed[0] != p.allowed[0].Masked() {
			t.Fatalf("accepted prefix %v", p.allowed[0])
		}
		if p.endpoint.IsValid() && p.endpoint.Addr().Zone() != "" {
			t.Fatalf("accepted zoned endpoint %v", p.endpoint)
		}
		var b strings.Builder
		writePeer(&b, &p, nil)
		if strings.Count(b.String(), "\n") != strings.Count(b.String(), "=") {
			t.Fatalf("UAPI lines broken by the input:\n%s", b.String())
		}
	})
}
