package alg

import (
	"fmt"
	"slices"
	"time"

	"tungate/confdiag"
	"tungate/conntrack"
)

// Config is the [helpers] table. A helper whose table is absent is still
// registered, so a rule can assign it by name (nftables' ct helper set);
// only its automatic assignment by port needs the table.
type Config struct {
	FTP  *FTPConfig  `toml:"ftp"`
	TFTP *TFTPConfig `toml:"tftp"`
}

// FTPConfig is [helpers.ftp].
type FTPConfig struct {
	// Ports are the server ports whose new TCP connections get the helper.
	// Absent means [21]; an explicit empty list means rules only.
	Ports []int `toml:"ports"`
	// Loose accepts an announced address other than the sender's own
	// (Linux's nf_conntrack_ftp loose=1). Off, such commands are ignored:
	// that is what stops FTP bounce and NAT slipstreaming.
	Loose bool `toml:"loose"`
	// MaxExpected bounds the waiting expectations per control connection;
	// a newer command replaces the oldest (default 1, as Linux).
	MaxExpected int `toml:"max_expected"`
	// Timeout is how long an expectation waits (default 300 s).
	Timeout conntrack.Duration `toml:"timeout"`
}

// TFTPConfig is [helpers.tftp].
type TFTPConfig struct {
	// Ports are the server ports whose new UDP flows get the helper.
	// Absent means [69].
	Ports []int `toml:"ports"`
	// Timeout is how long the expectation of the server's reply waits
	// (default 300 s).
	Timeout conntrack.Duration `toml:"timeout"`
}

// Defaults, as Linux's nf_conntrack_ftp and nf_conntrack_tftp.
const (
	DefaultFTPPort     = 21
	DefaultTFTPPort    = 69
	DefaultMaxExpected = 1
	DefaultTimeout     = conntrack.Duration(300 * time.Second)
)

// maxMaxExpected keeps one control connection from holding a sizeable part
// of the table-wide expectation limit.
const maxMaxExpected = 64

// Validate checks the table and fills defaults. Every error is reported
// (joined), each a *confdiag.Error naming the key path and the value, e.g.
// `helpers.ftp.ports[1]: port 70000 out of range`.
func (c *Config) Validate() error {
	var l confdiag.List
	if f := c.FTP; f != nil {
		if f.Ports == nil {
			f.Ports = []int{DefaultFTPPort}
		}
		validatePorts(&l, "helpers.ftp.ports", f.Ports)
		switch {
		case f.MaxExpected < 0:
			l.Addf("helpers.ftp.max_expected", "%d must not be negative", f.MaxExpected)
		case f.MaxExpected > maxMaxExpected:
			l.Addf("helpers.ftp.max_expected", "%d is more than %d", f.MaxExpected, maxMaxExpected)
		case f.MaxExpected == 0:
			f.MaxExpected = DefaultMaxExpected
		}
		validateTimeout(&l, "helpers.ftp.timeout", &f.Timeout)
	}
	if t := c.TFTP; t != nil {
		if t.Ports == nil {
			t.Ports = []int{DefaultTFTPPort}
		}
		validatePorts(&l, "helpers.tftp.ports", t.Ports)
		validateTimeout(&l, "helpers.tftp.timeout", &t.Timeout)
	}
	return l.Err()
}

func validatePorts(l *confdiag.List, key string, ports []int) {
	for i, p := range ports {
		if p < 1 || p > 65535 {
			l.Addf(fmt.Sprintf("%s[%d]", key, i), "port %d out of range (1-65535)", p)
			continue
		}
		if j := slices.Index(ports[:i], p); j >= 0 {
			l.Addf(fmt.Sprintf("%s[%d]", key, i), "port %d listed twice (also %s[%d])", p, key, j)
		}
	}
}

func validateTimeout(l *confdiag.List, key string, d *conntrack.Duration) {
	if *d < 0 {
		l.Addf(key, "%s must be positive", time.Duration(*d))
	}
	if *d == 0 {
		*d = DefaultTimeout
	}
}
