package alg

import (
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"tungate/conntrack"
)

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		toml, err string
	}{
		{"[ftp]\nports = [21, 70000]", "helpers.ftp.ports[1]: port 70000 out of range"},
		{"[ftp]\nports = [0]", "helpers.ftp.ports[0]: port 0 out of range"},
		{"[ftp]\nports = [21, 2121, 21]", "helpers.ftp.ports[2]: port 21 listed twice"},
		{"[ftp]\nmax_expected = -1", "helpers.ftp.max_expected: -1 must not be negative"},
		{"[ftp]\nmax_expected = 1000", "helpers.ftp.max_expected: 1000 is more than 64"},
		{"[tftp]\nports = [-69]", "helpers.tftp.ports[0]: port -69 out of range"},
		{"[ftp]\ntimeout = \"-5s\"", "invalid duration"},
	} {
		var cfg Config
		_, err := toml.Decode(c.toml, &cfg)
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q: error %v, want %q", c.toml, err, c.err)
		}
	}
	var cfg Config
	md, err := toml.Decode("[ftp]\nloose = true\n[tftp]\ntimeout = \"10s\"", &cfg)
	if err != nil || len(md.Undecoded()) != 0 {
		t.Fatal(err, md.Undecoded())
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	f, tf := cfg.FTP, cfg.TFTP
	if len(f.Ports) != 1 || f.Ports[0] != 21 || !f.Loose || f.MaxExpected != 1 || f.Timeout != conntrack.Duration(300*time.Second) {
		t.Errorf("ftp defaults: %+v", f)
	}
	if len(tf.Ports) != 1 || tf.Ports[0] != 69 || tf.Timeout != conntrack.Duration(10*time.Second) {
		t.Errorf("tftp defaults: %+v", tf)
	}
	// An explicit empty list means rules only.
	cfg = Config{}
	if _, err := toml.Decode("[ftp]\nports = []", &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil || len(cfg.FTP.Ports) != 0 {
		t.Errorf("empty ports: %v %v", err, cfg.FTP.Ports)
	}
	if _, err := New(Config{FTP: &FTPConfig{Ports: []int{99999}}}, newGateway(t, Config{}).tbl, nil, nil); err == nil {
		t.Error("New accepted an invalid config")
	}
}
