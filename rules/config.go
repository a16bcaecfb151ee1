package rules

import (
	"fmt"

	"go.uber.org/zap"

	"tungate/confdiag"
)

// FilterConfig is the [filter] table. Rules are decoded as raw TOML maps
// (BurntSushi/toml gives string, int64, float64, bool, []any,
// map[string]any) so Compile can report exact key paths.
type FilterConfig struct {
	Input   *Chain            `toml:"input"`
	Forward *Chain            `toml:"forward"`
	Output  *Chain            `toml:"output"`
	Chains  map[string]*Chain `toml:"chains"`
}

// RawConfig is the [raw] table; it runs before connection tracking, which is
// why notrack lives there.
type RawConfig struct {
	Prerouting *Chain `toml:"prerouting"`
}

// Chain is one chain as configured.
type Chain struct {
	// Policy is accept (default) or drop; user chains have none.
	Policy string `toml:"policy"`
	// Rules are the rules in evaluation order.
	Rules []map[string]any `toml:"rules"`
}

// Env is what Compile needs to know about the gateway around the rules.
type Env struct {
	// Interfaces are the interface names; a packet's In/Out are indexes
	// into this list.
	Interfaces []string
	// Helpers are the known helper names for helper= and ct_helper.
	Helpers []string
	// Peers are, per interface (indexed like Interfaces), the names of its
	// WireGuard peers in order: Packet.Peer-1 indexes them. Interfaces
	// without peers have none.
	Peers [][]string
	// PeerSets are the named groups of peer names that peer = "@name"
	// refers to ([peer_sets]).
	PeerSets map[string][]string
	// Logger receives log= output (nil: log= rules log nothing).
	Logger *zap.Logger
	// Now is the clock for limit= and log rate limiting, in monotonic
	// nanoseconds (nil: the process's monotonic clock). Tests inject one so
	// token buckets can be driven without sleeping.
	Now func() int64
}

// ConfigError is a configuration error: the key path of the offending value
// and what is wrong with it. Compile returns these (joined with errors.Join
// when there are several) so `tungate check` can print all of them; the
// gateway fills in the file position. It is confdiag's type so every
// section's errors are located and printed alike.
type ConfigError = confdiag.Error

// errorList collects configuration errors in the order they were found, so
// the report is deterministic and reads top to bottom like the file.
type errorList struct {
	errs []error
}

// maxErrors bounds the report: after a few dozen errors the rest are
// usually consequences of the first ones.
const maxErrors = 32

func (l *errorList) add(path, format string, args ...any) {
	if len(l.errs) < maxErrors {
		l.errs = append(l.errs, &ConfigError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
}

// suggest returns ` (did you mean "x"?)` for the candidate closest to word,
// or "": the one suggestion helper every config section uses.
func suggest(word string, candidates []string) string {
	return confdiag.Suggest(word, candidates)
}

// suggestQuoted is suggest with a prefix put before the candidate (for
// "@set" names).
func suggestQuoted(word string, candidates []string, prefix string) string {
	return confdiag.SuggestPrefixed(word, candidates, prefix)
}

// InRule reports whether the TOML key path k lies inside a rule of a
// filter or raw chain (filter.forward.rules.synproxy.mss). A rule is a
// map this package checks key by key, naming the rule's index; the TOML
// decoder, which fills the map, leaves a table inside it (synproxy = {…})
// marked undecoded, so a strict decode skips such keys.
func InRule(k []string) bool {
	if len(k) == 0 || (k[0] != "filter" && k[0] != "raw") {
		return false
	}
	for i := 2; i < len(k)-1; i++ {
		if k[i] == "rules" {
			return true
		}
	}
	return false
}
