package gateway

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// configErrorShape is what every config error must look like: it names
// where the problem is, either a key path ("interface[2].mtu:",
// "filter.forward.rules[0].ct_state:", "sets.bad[0]:", "log.levle: unknown
// key") or a TOML position ("line 3", "line 3, column 7"). The pattern is
// loose on purpose: the wording of messages may change, the promise that an
// error points somewhere may not.
var configErrorShape = regexp.MustCompile(`line \d+|` + keySeg + `(\.` + keySeg + `)*:`)

// keySeg is one key of a path: bare, or quoted as TOML quotes it, with an
// optional array index.
const keySeg = `("(\\.|[^"\\])*"|'[^']*'|[A-Za-z0-9_-]+)(\[\d+\])?`

// FuzzConfig feeds arbitrary bytes to the TOML config loader. Any input is
// either a config that passes `tungate check` and builds a gateway, or an
// error that names a key path or position; never a panic. Seeds: every
// example in configs/ and every conformance group's config
// (testdata/conformance, written by scripts/conformance-configs.sh).
func FuzzConfig(f *testing.F) {
	var seeds []string
	for _, glob := range []string{"../configs/*.toml", "testdata/conformance/*.toml"} {
		files, err := filepath.Glob(glob)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, files...)
	}
	if len(seeds) < 10 {
		f.Fatalf("only %d seed configs found (configs/, testdata/conformance/)", len(seeds))
	}
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		// A seed that does not load is a stale seed, not a fuzz finding.
		if _, err := ParseConfig(b); err != nil {
			f.Fatalf("seed %s: %v", s, err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := ParseConfig(b)
		if err != nil {
			checkConfigError(t, b, err.Error())
			return
		}
		if err := CheckRules(cfg); err != nil {
			checkConfigError(t, b, err.Error())
			return
		}
		// The conntrack sizes are validated already; building the
		// table allocates its buckets up front, and a valid max of 2^26
		// would make each input cost 512 MiB.
		cfg.Conntrack.Max = min(cfg.Conntrack.Max, 4096)
		cfg.Conntrack.Buckets = min(cfg.Conntrack.Buckets, 4096)
		g, err := New(cfg, Options{Logger: nopLogger(), Open: nullOpen})
		if err != nil {
			// check passed, so the only thing left to fail is opening
			// the (null) devices, which cannot.
			t.Fatalf("config passes check but New fails: %v", err)
		}
		g.Close()
	})
}

// checkConfigError asserts the error for input is one a user can act on.
// Messages quote the input, so a Go failure's marks count only when the
// input does not contain them itself.
func checkConfigError(t *testing.T, input []byte, msg string) {
	t.Helper()
	if strings.TrimSpace(msg) == "" {
		t.Fatal("empty config error")
	}
	for _, bad := range []string{"runtime error", "goroutine ", "<nil>", "%!"} {
		if strings.Contains(msg, bad) && !bytes.Contains(input, []byte(bad)) {
			t.Fatalf("config error looks like a Go failure (%q): %s", bad, msg)
		}
	}
	if !configErrorShape.MatchString(msg) {
		t.Fatalf("config error names no key path or position: %s", msg)
	}
}
