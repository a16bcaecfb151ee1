package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"go.uber.org/zap"

	"tungate/alg"
	"tungate/confdiag"
	"tungate/conntrack"
	"tungate/link/uplink"
	"tungate/link/wireguard"
	"tungate/nat"
	"tungate/rules"
)

// Config is the whole TOML file. Each package owns its section; this type
// composes them.
type Config struct {
	Log       LogConfig           `toml:"log"`
	Admin     AdminConfig         `toml:"admin"`
	ICMP      ICMPConfig          `toml:"icmp"`
	Conntrack conntrack.Config    `toml:"conntrack"`
	Interface []InterfaceConfig   `toml:"interface"`
	Route     []RouteConfig       `toml:"route"`
	Sets      map[string][]string `toml:"sets"`
	// PeerSets name groups of WireGuard peers for the rules' peer match
	// ("@laptops"); entries are peer names. They are apart from [sets],
	// whose entries are addresses.
	PeerSets  map[string][]string `toml:"peer_sets"`
	NAT       nat.Config          `toml:"nat"`
	Helpers   alg.Config          `toml:"helpers"`
	Filter    rules.FilterConfig  `toml:"filter"`
	Raw       rules.RawConfig     `toml:"raw"`
	Namespace NamespaceConfig     `toml:"namespace"`

	// path is the file the config came from (for reload).
	path string
	// file names the source in error positions ("" for ParseConfig).
	file string
	// index locates key paths in the source, for errors found after
	// decoding.
	index *confdiag.Index
	// warnings are located messages about deprecated keys.
	warnings []string
}

// LogConfig is the [log] section.
type LogConfig struct {
	Level  string `toml:"level"`  // debug | info | warn | error
	Format string `toml:"format"` // console | json
}

// AdminConfig is the [admin] section.
type AdminConfig struct {
	// Socket is the control socket path ("" disables it).
	Socket string `toml:"socket"`
	// Metrics is the Prometheus listen address ("" disables it).
	Metrics string `toml:"metrics"`
	// PortsAPI is a unix socket path for rootlesskit's /v1/ports API, so
	// a container runtime adds and removes port forwards at run time
	// ("" disables it; relative to the config file like socket).
	PortsAPI string `toml:"ports_api"`
	// KeepNetAdmin keeps CAP_NET_ADMIN when the gateway drops its
	// privileges (DropPrivileges); by default every capability goes.
	// A reload that adds a kernel TUN which does not exist yet needs it
	// (to create the device); without it such a reload is refused.
	KeepNetAdmin bool `toml:"keep_net_admin"`
}

// ICMPConfig is the [icmp] section: limits on the ICMP errors the gateway
// itself sends, so a flood cannot turn it into a reflector.
type ICMPConfig struct {
	// Rate is errors per second per destination (default 1000).
	Rate float64 `toml:"rate"`
	// Burst is the bucket size per destination (default 1000).
	Burst int `toml:"burst"`
}

// InterfaceConfig is one [[interface]]. Kind says what the link is; the
// keys of the other kinds are refused on it (see kindKeys).
type InterfaceConfig struct {
	// Name is the interface's name in rules, routes and NAT.
	Name string `toml:"name"`
	// Kind is "tun" (the default: a kernel TUN device), "uplink" (the
	// rootless way out through host sockets, package link/uplink) or
	// "wireguard" (a WireGuard interface run inside the process, package
	// link/wireguard).
	Kind string `toml:"kind"`
	// TUN names a kernel TUN device, created if absent or attached to
	// when it exists (a persistent device owned by this user needs no
	// privilege).
	TUN string `toml:"tun"`
	// TUNFD is an already open TUN file descriptor inherited from the
	// parent, as container runtimes hand devices over; -1/absent: none.
	TUNFD *int `toml:"tun_fd"`
	// Addresses are the gateway's own addresses on the link; each gives a
	// connected route.
	Addresses []string `toml:"addresses"`
	// MTU of the link (default 1500; 1420 for wireguard, the tunnel's; an
	// uplink's uplink.DefaultMTU).
	MTU int `toml:"mtu"`
	// ClampMSS lowers the MSS option of forwarded TCP SYNs entering or
	// leaving this interface to what the smaller of the two links' MTUs
	// carries, so TCP works across it even where ICMP "packet too big" is
	// filtered (PMTU black holes). Default true for wireguard, false
	// otherwise.
	ClampMSS *bool `toml:"clamp_mss"`

	// The keys of kind "wireguard", as link/wireguard's Config names them.
	// (Its mtu is the interface's own.)

	// PrivateKeyFile holds the interface's base64 private key (mode 0600).
	PrivateKeyFile string `toml:"private_key_file"`
	// PrivateKey is the key inline, refused unless AllowInlineKey is set.
	PrivateKey string `toml:"private_key"`
	// AllowInlineKey permits PrivateKey (examples, tests).
	AllowInlineKey bool `toml:"allow_inline_key"`
	// ListenPort is the UDP port; 0 picks a free one.
	ListenPort int `toml:"listen_port"`
	// Peers are the [[interface.peer]] blocks.
	Peers []wireguard.PeerConfig `toml:"peer"`

	// RPF is the reverse-path check on packets arriving here: "strict",
	// "loose" or "off" (default). See rpf.go.
	RPF string `toml:"rpf"`

	// The uplink's keys (kind = "uplink"); see uplink.Config.
	UDPTimeout             uplink.Duration `toml:"udp_timeout"`
	DialTimeout            uplink.Duration `toml:"dial_timeout"`
	MaxFlows               int             `toml:"max_flows"`
	MaxPendingDials        int             `toml:"max_pending_dials"`
	MaxPendingDialsPerHost int             `toml:"max_pending_dials_per_host"`
	MaxForwardsPerSource   int             `toml:"max_forwards_per_source"`
	AllowHostLoopback      bool            `toml:"allow_host_loopback"`
	HostLoopback           []string        `toml:"host_loopback"`
	DNS                    []string        `toml:"dns"`
	ResolvConf             string          `toml:"resolv_conf"`

	addrs []netip.Prefix
	clamp bool
	rpf   rpfMode
	// uplink is the validated uplink config (defaults filled).
	uplink uplink.Config
}

// NamespaceConfig is the [namespace] section: the interface that command
// mode (`tungate run -c FILE -- CMD`) and namespace hand-over (`tungate run
// --netns PATH`) create inside the container's network namespace. That
// interface has neither tun nor tun_fd in the file: its descriptor comes
// from the namespace.
type NamespaceConfig struct {
	// Interface names the [[interface]] the namespace's TUN becomes.
	Interface string `toml:"interface"`
	// TUN is the device's name inside the namespace (default tun0).
	TUN string `toml:"tun"`
	// Addresses are the container's own addresses on the TUN.
	Addresses []string `toml:"addresses"`
	// Gateways are the default routes' next hops inside; by default the
	// interface's own first address of each family.
	Gateways []string `toml:"gateways"`
	// DNS, in command mode, becomes the command's /etc/resolv.conf.
	DNS []string `toml:"dns"`

	iface    int
	addrs    []netip.Prefix
	gateways []netip.Addr
	dns      []netip.Addr
}

// Enabled reports whether the config has a [namespace] interface.
func (n *NamespaceConfig) Enabled() bool { return n.Interface != "" }

// Index is the position of the namespace's interface among [[interface]].
func (n *NamespaceConfig) Index() int { return n.iface }

// Prefixes are the container's parsed addresses.
func (n *NamespaceConfig) Prefixes() []netip.Prefix { return n.addrs }

// GatewayAddrs are the parsed next hops (defaults filled in).
func (n *NamespaceConfig) GatewayAddrs() []netip.Addr { return n.gateways }

// DNSAddrs are the parsed resolver addresses.
func (n *NamespaceConfig) DNSAddrs() []netip.Addr { return n.dns }

// validateNamespace checks [namespace] against the interfaces (names maps
// interface names to their index).
func (c *Config) validateNamespace(l *confdiag.List, names map[string]int) {
	n := &c.Namespace
	if !n.Enabled() {
		if len(n.Addresses)+len(n.Gateways)+len(n.DNS) > 0 || n.TUN != "" {
			l.Addf("namespace.interface", "missing: name the [[interface]] the namespace's TUN becomes")
		}
		return
	}
	i, ok := names[n.Interface]
	if !ok {
		l.Addf("namespace.interface", "unknown interface %q%s", n.Interface, confdiag.Suggest(n.Interface, c.InterfaceNames()))
		return
	}
	n.iface = i
	if n.TUN != "" && (len(n.TUN) > 15 || strings.ContainsAny(n.TUN, "/ \t")) {
		l.Addf("namespace.tun", "invalid device name %q (at most 15 characters, no '/' or spaces)", n.TUN)
	}
	n.addrs, n.gateways, n.dns = nil, nil, nil
	for j, a := range n.Addresses {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			l.Addf(fmt.Sprintf("namespace.addresses[%d]", j), "invalid address/prefix %q: %s", a, confdiag.Reason(err, a))
			continue
		}
		n.addrs = append(n.addrs, p)
	}
	if len(n.Addresses) == 0 {
		l.Addf("namespace.addresses", "missing: the container needs an address")
	}
	parseAddrs := func(key string, in []string) []netip.Addr {
		var out []netip.Addr
		for j, a := range in {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				l.Addf(fmt.Sprintf("namespace.%s[%d]", key, j), "invalid address %q: %s", a, confdiag.Reason(err, a))
				continue
			}
			out = append(out, ip)
		}
		return out
	}
	n.gateways = parseAddrs("gateways", n.Gateways)
	n.dns = parseAddrs("dns", n.DNS)
	if len(n.Gateways) == 0 {
		have4, have6 := false, false
		for _, p := range c.Interface[i].addrs {
			if a := p.Addr(); a.Is4() && !have4 {
				n.gateways, have4 = append(n.gateways, a), true
			} else if a.Is6() && !have6 {
				n.gateways, have6 = append(n.gateways, a), true
			}
		}
	}
}

// Interface kinds.
const (
	// KindTUN is a kernel TUN device (the default).
	KindTUN = "tun"
	// KindUplink is the rootless way out through host sockets (package
	// link/uplink).
	KindUplink = "uplink"
	// KindWireGuard is a WireGuard interface (package link/wireguard).
	KindWireGuard = "wireguard"
)

// kindKeys are the keys only one kind of interface has; the keys common to
// all (name, kind, addresses, mtu, clamp_mss) are not listed. A new kind of
// link adds its keys here, a case to validateKind and one to openLink.
var kindKeys = map[string][]string{
	KindTUN:       {"tun", "tun_fd"},
	KindWireGuard: {"private_key_file", "private_key", "allow_inline_key", "listen_port", "peer"},
	KindUplink: {"udp_timeout", "dial_timeout", "max_flows", "max_pending_dials", "max_pending_dials_per_host",
		"max_forwards_per_source", "allow_host_loopback", "host_loopback", "dns", "resolv_conf"},
}

// kindNames are the kinds in the order errors list them.
var kindNames = []string{KindTUN, KindUplink, KindWireGuard}

// wireGuard is the link/wireguard config of a wireguard interface.
func (ic *InterfaceConfig) wireGuard() wireguard.Config {
	return wireguard.Config{
		PrivateKeyFile: ic.PrivateKeyFile,
		PrivateKey:     ic.PrivateKey,
		AllowInlineKey: ic.AllowInlineKey,
		ListenPort:     ic.ListenPort,
		MTU:            ic.MTU,
		Peers:          ic.Peers,
	}
}

// PeerNames returns the names of the interface's WireGuard peers in
// config order (a peer's index in rules and PeerFor); nil for other kinds.
func (ic *InterfaceConfig) PeerNames() []string {
	if ic.Kind != KindWireGuard {
		return nil
	}
	names := make([]string, len(ic.Peers))
	for i := range ic.Peers {
		names[i] = ic.Peers[i].Name
	}
	return names
}

// UplinkConfig is the uplink config of a kind = "uplink" interface, as
// validated (defaults filled).
func (ic *InterfaceConfig) UplinkConfig() uplink.Config { return ic.uplink }

// IsUplink reports whether the interface is an uplink.
func (ic *InterfaceConfig) IsUplink() bool { return ic.Kind == KindUplink }

// RouteConfig is one [[route]].
type RouteConfig struct {
	To        string `toml:"to"`
	Interface string `toml:"interface"`

	prefix netip.Prefix
	iface  int
}

// LoadConfig reads and validates a config file. It refuses a file other
// users could have written (world-writable, or in a world-writable
// directory without the sticky bit) and an admin socket in a
// world-writable directory. Decoding is strict: an
// unknown key is an error naming its path. Every error found after a
// successful decode is returned (joined, one per line), each a
// *confdiag.Error naming the file, line, column, key path and value.
// Warnings (deprecated spellings) are kept on the Config: see Warnings.
func LoadConfig(path string) (*Config, error) {
	b, err := readConfigFile(path)
	if err != nil {
		return nil, err
	}
	c, err := parseConfig(b, path)
	if err != nil {
		return nil, err
	}
	c.path = path
	return c, nil
}

// ParseConfig decodes and validates TOML text; errors are located by
// line:column only.
func ParseConfig(b []byte) (*Config, error) {
	return parseConfig(b, "")
}

// Warnings returns what the config loaded with but should change, e.g. a
// deprecated key, located like errors.
func (c *Config) Warnings() []string { return c.warnings }

// logWarnings logs what the config loaded with but should change.
func logWarnings(log *zap.Logger, c *Config) {
	for _, w := range c.warnings {
		log.Warn("config: " + w)
	}
}

func parseConfig(b []byte, file string) (*Config, error) {
	c, l, err := decodeConfig(b, file)
	if err != nil {
		return nil, err
	}
	if l.Len() > 0 {
		return nil, c.locate(l.Errors())
	}
	return c, nil
}

// decodeConfig decodes and validates b. err is a decoding error, which
// stops everything; the list holds every error found after decoding, with
// c still usable for further checks (tungate check compiles the rules of a
// config with errors too, to report them all at once).
func decodeConfig(b []byte, file string) (*Config, *confdiag.List, error) {
	var c Config
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&c)
	ix := confdiag.Scan(b)
	if err != nil {
		return nil, nil, decodeError(err, b, ix, file)
	}
	c.index, c.file = ix, file
	var l confdiag.List
	unknownKeys(&l, md, ix)
	c.warnings = deprecations(md, ix, file)
	c.validate(&l)
	if file != "" {
		// A relative admin socket lives beside the config file, so the
		// gateway and the admin commands find the same one from any
		// working directory (configs/rootless.toml keeps its socket in
		// the build directory, no root needed).
		for _, s := range []*string{&c.Admin.Socket, &c.Admin.PortsAPI} {
			if *s != "" && !filepath.IsAbs(*s) {
				if dir, err := filepath.Abs(filepath.Dir(file)); err == nil {
					*s = filepath.Join(dir, *s)
				}
			}
		}
		// So does a relative state file.
		if s := c.Conntrack.StateFile; s != "" && !filepath.IsAbs(s) {
			if dir, err := filepath.Abs(filepath.Dir(file)); err == nil {
				c.Conntrack.StateFile = filepath.Join(dir, s)
			}
		}
		c.checkSocketDir(&l)
		c.checkStateFileDir(&l)
	}
	return &c, &l, nil
}

// deprecations lists the deprecated keys the file uses.
func deprecations(md toml.MetaData, ix *confdiag.Index, file string) []string {
	var out []string
	if md.IsDefined("conntrack", "timeouts", "tcp_max_retrans") {
		e := &confdiag.Error{File: file, Path: "conntrack.timeouts.tcp_max_retrans",
			Msg: "deprecated name of the timeout tcp_retrans (in [conntrack], tcp_max_retrans is the retransmission count); rename it"}
		if p, ok := ix.KeyPos(e.Path); ok {
			e.Line, e.Col = p.Line, p.Col
		}
		out = append(out, e.Error())
	}
	return out
}

// locate gives every configuration error its file position from the key
// index and returns them joined. An error about an unknown key points at
// the key itself.
func (c *Config) locate(errs []error) error {
	seen := map[string]bool{}
	out := make([]error, 0, len(errs))
	var other []error
	for _, err := range errs {
		var ce *confdiag.Error
		if !errors.As(err, &ce) {
			other = append(other, err)
			continue
		}
		if ce.File == "" {
			ce.File = c.file
		}
		if ce.Line == 0 {
			pos, _, ok := c.index.Lookup(ce.Path)
			if k, found := strings.CutPrefix(ce.Msg, "unknown key "); found {
				if name, err := strconv.Unquote(strings.Fields(k)[0]); err == nil {
					if kp, ok2 := c.index.KeyPos(ce.Path + "." + name); ok2 {
						pos, ok = kp, true
					}
				}
			}
			if ok {
				ce.Line, ce.Col = pos.Line, pos.Col
			}
		}
		// A value checked twice reports once: the gateway and the rules
		// compiler both parse [sets], in words of their own.
		key := ce.Path + "\x00" + ce.Msg
		if strings.HasPrefix(ce.Path, "sets.") {
			key = ce.Path
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, ce)
	}
	// Top to bottom, like the file.
	slices.SortStableFunc(out, func(a, b error) int {
		pa, pb := a.(*confdiag.Error), b.(*confdiag.Error)
		if pa.Line != pb.Line {
			return pa.Line - pb.Line
		}
		return pa.Col - pb.Col
	})
	return errors.Join(append(out, other...)...)
}

// typeError matches BurntSushi/toml's errors that carry a line but no
// column, e.g. a value of the wrong type.
var typeError = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

// wrongType matches the type mismatch text inside such an error.
var wrongType = regexp.MustCompile(`incompatible types: TOML value has type (\S+); destination has type (.+)$`)

// decodeError turns a decoding error into a located *confdiag.Error: the
// decoder knows the line (and for syntax errors the column) but loses the
// array indexes of the key path, which the source index gives back.
func decodeError(err error, src []byte, ix *confdiag.Index, file string) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		e := &confdiag.Error{File: file, Line: pe.Position.Line, Col: pe.Position.Col, Msg: pe.Message}
		// The lexer's line is one too far when the error is at a newline
		// ("got '\n'"); the byte offset is exact.
		if st := pe.Position.Start; st > 0 && st <= len(src) {
			e.Line = 1 + bytes.Count(src[:st], []byte("\n"))
			e.Col = st - bytes.LastIndexByte(src[:st], '\n')
		}
		// A syntax error or a value's own parser (UnmarshalText) failing:
		// the decoder gives the position and the index-free key, the
		// source index the indexed path.
		for _, ent := range ix.ByPlain(pe.LastKey) {
			if ent.Key.Line == e.Line || ent.Value.Line == e.Line {
				e.Path = ent.Path
				break
			}
		}
		return e
	}
	m := typeError.FindStringSubmatch(err.Error())
	if m == nil {
		return &confdiag.Error{File: file, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
	}
	line, _ := strconv.Atoi(m[1])
	e := &confdiag.Error{File: file, Line: line, Col: 1, Path: m[2], Msg: m[3]}
	kind := ""
	if t := wrongType.FindStringSubmatch(m[3]); t != nil {
		var name string
		kind, name = tomlKind(t[1])
		e.Msg = fmt.Sprintf("wrong type: a TOML %s where %s is wanted", name, article(t[2]))
	}
	// The decoder's line is that of the key's last occurrence: in an
	// array of tables the culprit may be an earlier element, the first
	// whose value has the wrong kind.
	ents := ix.ByPlain(m[2])
	best := -1
	for i, ent := range ents {
		if kind != "" && ent.Kind != kind {
			continue
		}
		if best < 0 || ent.Key.Line == line {
			best = i
		}
		if kind != "" {
			break
		}
	}
	if best >= 0 {
		ent := ents[best]
		e.Path, e.Line, e.Col = ent.Path, ent.Value.Line, ent.Value.Col
	}
	return e
}

// tomlKind maps the Go type the decoder names in a type mismatch to the
// index's kind of value and to the TOML word for it.
func tomlKind(goType string) (kind, name string) {
	switch goType {
	case "string":
		return "string", "string"
	case "int64":
		return "number", "integer"
	case "float64":
		return "number", "float"
	case "time.Time":
		return "number", "date-time"
	case "bool":
		return "boolean", "boolean"
	case "map[string]any":
		return "table", "table"
	}
	if strings.HasPrefix(goType, "[]") {
		return "array", "array"
	}
	return "", goType
}

func article(s string) string {
	if s != "" && strings.ContainsRune("aeiou", rune(s[0])) {
		return "an " + s
	}
	return "a " + s
}

// unknownKeys reports every key the decoder did not use, at each place the
// file has it, with the nearest known key as a suggestion. Keys under an
// unknown table are left out: the table is the mistake.
func unknownKeys(l *confdiag.List, md toml.MetaData, ix *confdiag.Index) {
	und := md.Undecoded()
	bad := map[string]bool{}
	for _, k := range und {
		bad[k.String()] = true
	}
	for _, k := range und {
		if len(k) > 1 && bad[k[:len(k)-1].String()] {
			continue
		}
		if rules.InRule(k) {
			// A rule is a map the rules compiler checks key by key (a
			// table in it, such as synproxy = { … }, is left undecoded by
			// the TOML decoder), and it names the rule's index.
			continue
		}
		name := k[len(k)-1]
		msg := fmt.Sprintf("unknown key %q%s", name, confdiag.Suggest(name, knownKeys(reflect.TypeFor[Config](), k[:len(k)-1])))
		ents := ix.ByPlain(k.String())
		if len(ents) == 0 {
			l.Add(&confdiag.Error{Path: k.String(), Msg: msg})
			continue
		}
		// A misnamed [[table]] is one mistake, reported at its first
		// header; a misnamed key, at each place it is set.
		if ents[0].Path == ents[0].Plain && ents[0].Kind == "array" && len(ents) > 1 && ents[1].Key == ents[0].Key {
			ents = ents[:1]
		}
		for _, e := range ents {
			l.Add(&confdiag.Error{Line: e.Key.Line, Col: e.Key.Col, Path: e.Path, Msg: msg})
		}
	}
}

// knownKeys returns the TOML keys of the table at path in a config type.
func knownKeys(t reflect.Type, path toml.Key) []string {
	for {
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array:
			t = t.Elem()
			continue
		case reflect.Map:
			if len(path) == 0 {
				return nil
			}
			t, path = t.Elem(), path[1:]
			continue
		case reflect.Struct:
		default:
			return nil
		}
		var keys []string
		var next reflect.Type
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if !f.IsExported() || name == "-" || name == "" {
				continue
			}
			if f.Name == "TCPRetransOld" {
				continue // deprecated spellings are not suggested
			}
			keys = append(keys, name)
			if len(path) > 0 && name == path[0] {
				next = f.Type
			}
		}
		if len(path) == 0 {
			return keys
		}
		if next == nil {
			return nil
		}
		t, path = next, path[1:]
	}
}

// Validate checks the whole config and fills defaults, reporting every
// error (joined).
func (c *Config) Validate() error {
	var l confdiag.List
	c.validate(&l)
	if c.index != nil {
		return c.locate(l.Errors())
	}
	return l.Err()
}

func (c *Config) validate(l *confdiag.List) {
	switch c.Log.Level {
	case "":
		c.Log.Level = "info"
	case "debug", "info", "warn", "error":
	default:
		l.Addf("log.level", "unknown level %q%s", c.Log.Level, orWant([]string{"debug", "info", "warn", "error"}, c.Log.Level, "debug, info, warn or error"))
	}
	switch c.Log.Format {
	case "":
		c.Log.Format = "console"
	case "console", "json":
	default:
		l.Addf("log.format", "unknown format %q%s", c.Log.Format, orWant([]string{"console", "json"}, c.Log.Format, "console or json"))
	}
	if c.ICMP.Rate < 0 {
		l.Addf("icmp.rate", "%v must not be negative", c.ICMP.Rate)
	}
	if c.ICMP.Rate == 0 {
		c.ICMP.Rate = 1000
	}
	if c.ICMP.Burst < 0 {
		l.Addf("icmp.burst", "%d must not be negative", c.ICMP.Burst)
	}
	if c.ICMP.Burst == 0 {
		c.ICMP.Burst = 1000
	}
	l.Add(c.Conntrack.Validate())
	if len(c.Interface) == 0 {
		l.Addf("interface", "at least one [[interface]] is required")
	}
	names := map[string]int{}
	tuns := map[string]int{}
	for i := range c.Interface {
		c.validateInterface(l, i, names, tuns)
	}
	c.validateNamespace(l, names)
	for i := range c.Route {
		r := &c.Route[i]
		key := fmt.Sprintf("route[%d]", i)
		p, err := netip.ParsePrefix(r.To)
		switch {
		case err != nil:
			l.Addf(key+".to", "invalid prefix %q: %s", r.To, confdiag.Reason(err, r.To))
		case p != p.Masked():
			l.Addf(key+".to", "%q has host bits set (did you mean %q?)", r.To, p.Masked())
		}
		r.prefix = p
		j, ok := names[r.Interface]
		if !ok {
			l.Addf(key+".interface", "unknown interface %q%s", r.Interface, confdiag.Suggest(r.Interface, c.InterfaceNames()))
		}
		r.iface = j
	}
	setNames := make([]string, 0, len(c.Sets))
	for name := range c.Sets {
		setNames = append(setNames, name)
	}
	slices.Sort(setNames)
	for _, name := range setNames {
		for j, s := range c.Sets[name] {
			if _, err := netip.ParsePrefix(s); err != nil {
				if _, err2 := netip.ParseAddr(s); err2 != nil {
					if !strings.Contains(s, "/") {
						err = err2
					}
					l.Addf(fmt.Sprintf("sets.%s[%d]", name, j), "invalid CIDR %q: %s", s, confdiag.Reason(err, s))
				}
			}
		}
	}
	l.Add(c.NAT.Validate(c.InterfaceNames()))
	c.validateUplinkNAT(l)
	l.Add(c.Helpers.Validate())
}

// orWant is a suggestion for a misspelt word, or the list of valid ones.
func orWant(valid []string, word, want string) string {
	if s := confdiag.Suggest(word, valid); s != "" {
		return s
	}
	return " (want " + want + ")"
}

// validateInterface checks [[interface]] i; names and tuns map the names
// and devices seen so far to their index.
func (c *Config) validateInterface(l *confdiag.List, i int, names, tuns map[string]int) {
	ic := &c.Interface[i]
	key := fmt.Sprintf("interface[%d]", i)
	if ic.Name == "" {
		l.Addf(key+".name", "missing")
	} else if j, dup := names[ic.Name]; dup {
		l.Addf(key+".name", "duplicate name %q (also interface[%d])", ic.Name, j)
	} else {
		names[ic.Name] = i
	}
	if ic.Kind == "" {
		ic.Kind = KindTUN
	}
	c.foreignKeys(l, i)
	switch ic.Kind {
	case KindTUN:
		c.validateTUN(l, i, tuns)
	case KindUplink:
		c.validateUplink(l, i)
	case KindWireGuard:
		if ic.MTU == 0 {
			ic.MTU = wireguard.DefaultMTU
		}
		if ic.ClampMSS == nil {
			ic.clamp = true
		}
		validateWireGuard(l, key, ic)
	default:
		l.Addf(key+".kind", "unknown kind %q%s", ic.Kind, orWant(kindNames, ic.Kind, strings.Join(kindNames, " or ")))
	}
	if ic.ClampMSS != nil {
		ic.clamp = *ic.ClampMSS
	}
	if ic.MTU == 0 {
		ic.MTU = 1500
		if c.Namespace.Interface != "" && ic.Name == c.Namespace.Interface {
			// What slirp4netns and pasta use: fewer, larger packets
			// across the user-space hop.
			ic.MTU = 65520
		}
	}
	switch ic.RPF {
	case "", "off":
		ic.rpf = rpfOff
	case "strict":
		ic.rpf = rpfStrict
	case "loose":
		ic.rpf = rpfLoose
	default:
		l.Addf(key+".rpf", "unknown mode %q%s", ic.RPF, orWant([]string{"strict", "loose", "off"}, ic.RPF, "strict, loose or off"))
	}
	if (ic.MTU < 1280 || ic.MTU > 65535) && ic.Kind == KindTUN { // the other kinds check their own
		// IPv6 needs 1280 (RFC 8200 section 5).
		l.Addf(key+".mtu", "%d out of range (1280-65535)", ic.MTU)
	}
	ic.addrs = ic.addrs[:0]
	for j, a := range ic.Addresses {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			l.Addf(fmt.Sprintf("%s.addresses[%d]", key, j), "invalid address/prefix %q: %s", a, confdiag.Reason(err, a))
			continue
		}
		ic.addrs = append(ic.addrs, p)
	}
}

// validateTUN checks the keys of a kind "tun" interface.
func (c *Config) validateTUN(l *confdiag.List, i int, tuns map[string]int) {
	ic := &c.Interface[i]
	key := fmt.Sprintf("interface[%d]", i)
	inNamespace := c.Namespace.Interface != "" && ic.Name == c.Namespace.Interface
	switch {
	case inNamespace && (ic.TUN != "" || ic.TUNFD != nil):
		l.Addf(key, "the [namespace] interface gets its TUN from the namespace: drop tun and tun_fd")
	case !inNamespace && ic.TUN == "" && ic.TUNFD == nil:
		l.Addf(key, "one of tun or tun_fd is required (or name this interface in [namespace])")
	}
	if ic.TUN != "" && ic.TUNFD != nil {
		l.Addf(key, "tun and tun_fd are exclusive")
	}
	if ic.TUN != "" {
		if len(ic.TUN) > 15 || strings.ContainsAny(ic.TUN, "/ \t") {
			l.Addf(key+".tun", "invalid device name %q (at most 15 characters, no '/' or spaces)", ic.TUN)
		} else if j, dup := tuns[ic.TUN]; dup {
			l.Addf(key+".tun", "device %q already used by interface[%d]", ic.TUN, j)
		} else {
			tuns[ic.TUN] = i
		}
	}
	if ic.TUNFD != nil && *ic.TUNFD < 0 {
		l.Addf(key+".tun_fd", "%d is not a file descriptor", *ic.TUNFD)
	}
}

// wgKeyPath matches the key path link/wireguard puts in front of its
// errors ("peer[1].public_key: ..."), relative to the interface.
var wgKeyPath = regexp.MustCompile(`^[a-z_]+(\[\d+\])?(\.[a-z_]+)?$`)

// validateWireGuard checks a wireguard interface with link/wireguard's own
// validation (which reads the key files), moving the key path of its
// error under the interface's.
func validateWireGuard(l *confdiag.List, key string, ic *InterfaceConfig) {
	wc := ic.wireGuard()
	err := wc.Validate()
	if err == nil {
		return
	}
	path, msg := key, err.Error()
	if k, rest, ok := strings.Cut(msg, ": "); ok && wgKeyPath.MatchString(k) {
		path, msg = key+"."+k, rest
	}
	l.Addf(path, "%s", msg)
}

// foreignKeys reports each key interface i has that belongs to another
// kind, naming the key and its kind.
func (c *Config) foreignKeys(l *confdiag.List, i int) {
	ic := &c.Interface[i]
	key := fmt.Sprintf("interface[%d]", i)
	for _, kind := range kindNames {
		if kind == ic.Kind {
			continue
		}
		for _, k := range kindKeys[kind] {
			if c.hasKey(i, k) {
				l.Addf(key+"."+k, "%q is a key of %s interfaces, not of kind %q", k, kind, ic.Kind)
			}
		}
	}
}

// uplinkKeys names the uplink-only keys the interface sets.
func (ic *InterfaceConfig) uplinkKeys() []string {
	var set []string
	for _, k := range []struct {
		name string
		set  bool
	}{
		{"udp_timeout", ic.UDPTimeout != 0}, {"dial_timeout", ic.DialTimeout != 0},
		{"max_flows", ic.MaxFlows != 0}, {"max_pending_dials", ic.MaxPendingDials != 0},
		{"max_pending_dials_per_host", ic.MaxPendingDialsPerHost != 0},
		{"max_forwards_per_source", ic.MaxForwardsPerSource != 0},
		{"allow_host_loopback", ic.AllowHostLoopback}, {"host_loopback", ic.HostLoopback != nil},
		{"dns", ic.DNS != nil}, {"resolv_conf", ic.ResolvConf != ""},
	} {
		if k.set {
			set = append(set, k.name)
		}
	}
	return set
}

// uplinkErr matches the uplink's own validation errors, which start with
// the key (and index) they are about: "dns[1]: ...".
var uplinkErr = regexp.MustCompile(`^([a-z_]+(?:\[\d+\])?): (.*)$`)

// validateUplink checks the keys of a kind = "uplink" interface with the
// uplink's own validation, locating its errors at their key.
func (c *Config) validateUplink(l *confdiag.List, i int) {
	ic := &c.Interface[i]
	key := fmt.Sprintf("interface[%d]", i)
	ic.uplink = uplink.Config{
		MTU: ic.MTU, UDPTimeout: ic.UDPTimeout, DialTimeout: ic.DialTimeout,
		MaxFlows: ic.MaxFlows, MaxPendingDials: ic.MaxPendingDials,
		MaxPendingDialsPerHost: ic.MaxPendingDialsPerHost,
		MaxForwardsPerSource:   ic.MaxForwardsPerSource,
		AllowHostLoopback:      ic.AllowHostLoopback,
		HostLoopback:           ic.HostLoopback, DNS: ic.DNS, ResolvConf: ic.ResolvConf,
	}
	// A client's forwarded connections are conntrack connections from its
	// address too: beyond per_source_max the datapath drops their SYNs
	// and each would hold a host socket until dial_timeout for nothing.
	if ic.uplink.MaxForwardsPerSource == 0 && c.Conntrack.PerSourceMax > 0 {
		ic.uplink.MaxForwardsPerSource = c.Conntrack.PerSourceMax
	}
	if err := ic.uplink.Validate(); err != nil {
		if m := uplinkErr.FindStringSubmatch(err.Error()); m != nil {
			l.Addf(key+"."+m[1], "%s", m[2])
		} else {
			l.Addf(key, "%s", err.Error())
		}
		return
	}
	ic.MTU = ic.uplink.MTU
}

// validateUplinkNAT refuses the NAT rules that cannot apply on an uplink:
// its host sockets are its translation, so masquerade is implicit there,
// and nothing reaches the container through it unasked except a port
// forward, which tungate would have to listen for on the host.
func (c *Config) validateUplinkNAT(l *confdiag.List) {
	up := map[string]bool{}
	for i := range c.Interface {
		if c.Interface[i].IsUplink() {
			up[c.Interface[i].Name] = true
		}
	}
	if len(up) == 0 {
		return
	}
	const implicit = "interface %q is an uplink: masquerade is implicit there (the host socket's address and port are the translation); remove this rule"
	for i, r := range c.NAT.Masquerade {
		if up[r.Out] {
			l.Addf(fmt.Sprintf("nat.masquerade[%d].out", i), implicit, r.Out)
		}
	}
	for i, r := range c.NAT.SNAT {
		if up[r.Out] {
			l.Addf(fmt.Sprintf("nat.snat[%d].out", i), implicit, r.Out)
		}
	}
	for i, r := range c.NAT.Netmap {
		if up[r.Out] {
			l.Addf(fmt.Sprintf("nat.netmap[%d].out", i), "interface %q is an uplink: it has no addresses of its own to map to", r.Out)
		}
	}
	for i := range c.NAT.DNAT {
		r := &c.NAT.DNAT[i]
		if !up[r.In] {
			continue
		}
		key := fmt.Sprintf("nat.dnat[%d]", i)
		if r.Proto != "tcp" && r.Proto != "udp" {
			l.Addf(key+".in", "interface %q is an uplink: a port forward from it needs proto = \"tcp\" or \"udp\", and nothing else arrives there unasked", r.In)
			continue
		}
		if lo, hi, ok := r.DPort.Bounds(); !ok || lo != hi {
			l.Addf(key+".dport", "a port forward from uplink %q needs one port, which tungate listens on", r.In)
			continue
		}
		// The forwarded connections are addressed to the host's
		// addresses, not the gateway's (the default).
		if len(r.Dst) == 0 {
			r.Dst = nat.StringList{"0.0.0.0/0", "::/0"}
		}
	}
}

// hasKey reports whether interface i sets key k: from the file's key index
// when there is one, else from the decoded value.
func (c *Config) hasKey(i int, k string) bool {
	if c.index != nil {
		p := fmt.Sprintf("interface[%d].%s", i, k)
		if _, ok := c.index.KeyPos(p); ok {
			return true
		}
		_, ok := c.index.KeyPos(p + "[0]")
		return ok
	}
	ic := &c.Interface[i]
	switch k {
	case "tun":
		return ic.TUN != ""
	case "tun_fd":
		return ic.TUNFD != nil
	case "private_key_file":
		return ic.PrivateKeyFile != ""
	case "private_key":
		return ic.PrivateKey != ""
	case "allow_inline_key":
		return ic.AllowInlineKey
	case "listen_port":
		return ic.ListenPort != 0
	case "peer":
		return len(ic.Peers) > 0
	}
	return slices.Contains(ic.uplinkKeys(), k)
}

// uplinkForward is one host port to listen on for an uplink's forwards.
type uplinkForward struct {
	iface int
	proto string // "tcp" or "udp"
	port  uint16
}

// uplinkForwards are the host ports to listen on for the uplinks' port
// forwards, once each (one listener serves both families).
func (c *Config) uplinkForwards() []uplinkForward {
	var out []uplinkForward
	for _, r := range c.NAT.DNAT {
		for i := range c.Interface {
			ic := &c.Interface[i]
			if !ic.IsUplink() || ic.Name != r.In || (r.Proto != "tcp" && r.Proto != "udp") {
				continue
			}
			if lo, hi, ok := r.DPort.Bounds(); ok && lo == hi {
				f := uplinkForward{i, r.Proto, lo}
				if !slices.Contains(out, f) {
					out = append(out, f)
				}
			}
		}
	}
	return out
}

// InterfaceNames returns the interface names in config order; a packet's
// interface index is its position here.
func (c *Config) InterfaceNames() []string {
	n := make([]string, len(c.Interface))
	for i := range c.Interface {
		n[i] = c.Interface[i].Name
	}
	return n
}

// rulesEnv is what the rules compile against.
func (c *Config) rulesEnv(helpers []string, log *zap.Logger) rules.Env {
	peers := make([][]string, len(c.Interface))
	for i := range c.Interface {
		peers[i] = c.Interface[i].PeerNames()
	}
	return rules.Env{
		Interfaces: c.InterfaceNames(),
		Helpers:    helpers,
		Logger:     log,
		Peers:      peers,
		PeerSets:   c.PeerSets,
	}
}

// natIfaces returns the per-interface own addresses for the NAT engine.
func (c *Config) natIfaces() []nat.Iface {
	out := make([]nat.Iface, len(c.Interface))
	for i := range c.Interface {
		out[i] = nat.Iface{Name: c.Interface[i].Name, Addrs: append([]netip.Prefix(nil), c.Interface[i].addrs...)}
	}
	return out
}
