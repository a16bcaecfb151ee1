package rules

import (
	"fmt"
	"strings"

	"go.uber.org/zap"
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
	// Logger receives log= output (nil: log= rules log nothing).
	Logger *zap.Logger
	// Now is the clock for limit= and log rate limiting, in monotonic
	// nanoseconds (nil: the process's monotonic clock). Tests inject one so
	// token buckets can be driven without sleeping.
	Now func() int64
}

// ConfigError is a configuration error: the key path of the offending value
// and what is wrong with it. Compile returns these (joined with errors.Join
// when there are several) so `tungate check` can print all of them.
type ConfigError struct {
	// Path is the TOML key path, e.g. filter.forward.rules[3].ct_state.
	Path string
	// Msg says what is wrong, quoting the value.
	Msg string
}

// Error returns "path: msg".
func (e *ConfigError) Error() string { return e.Path + ": " + e.Msg }

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

// suggest returns ` (did you mean "x"?)` for the candidate closest to word
// by edit distance, or "" when nothing is close enough to be a typo.
func suggest(word string, candidates []string) string {
	return suggestQuoted(word, candidates, "")
}

// suggestQuoted is suggest with a prefix put before the candidate (for
// "@set" names).
func suggestQuoted(word string, candidates []string, prefix string) string {
	best, bestD := "", 1<<30
	lw := strings.ToLower(word)
	for _, c := range candidates {
		d := editDistance(lw, strings.ToLower(c))
		if d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" {
		return ""
	}
	// A typo is a small fraction of the word: one edit in short words, up
	// to a third of longer ones, never more than three.
	limit := len(word) / 3
	if limit < 1 {
		limit = 1
	}
	if limit > 3 {
		limit = 3
	}
	if bestD == 0 || bestD > limit {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", prefix+best)
}

// editDistance is the optimal-string-alignment distance (Levenshtein plus
// adjacent transposition, the commonest typo).
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			v := min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				v = min(v, prev2[j-2]+1)
			}
			cur[j] = v
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
