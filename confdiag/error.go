// Package confdiag is what every config section shares for reporting
// mistakes: an error type carrying the key path and, once the gateway has
// located it, the file position; a list that collects every error of a file
// instead of stopping at the first; the "did you mean" suggestion; and an
// index from key paths to positions in the TOML source.
//
// BurntSushi/toml's MetaData has no key positions and loses array-of-tables
// indexes, so the index is built by a scan of the source (index.go).
package confdiag

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Error is one configuration error: the key path of the offending value,
// what is wrong with it (quoting the value), and where it is when known.
type Error struct {
	// File is the config file ("" when the config did not come from one).
	File string
	// Line and Col locate the value, 1-based; 0 when unknown.
	Line, Col int
	// Path is the TOML key path with array indexes, e.g.
	// interface[1].addresses[0] or filter.forward.rules[3].ct_state.
	Path string
	// Msg says what is wrong, quoting the value.
	Msg string
}

// Error returns "file:line:col: path: msg", leaving out what is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(":")
		b.WriteString(strconv.Itoa(e.Col))
		b.WriteString(":")
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errorf returns an *Error for path.
func Errorf(path, format string, args ...any) *Error {
	return &Error{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// List collects the errors of a config in the order they were found, so
// the report reads top to bottom like the file. The zero value is ready.
type List struct {
	errs []error
}

// MaxErrors bounds a report: after a few dozen errors the rest are usually
// consequences of the first ones.
const MaxErrors = 32

// Addf records an error at path.
func (l *List) Addf(path, format string, args ...any) {
	l.Add(Errorf(path, format, args...))
}

// Add records err; a joined error is flattened so each of its errors is
// counted and can be located on its own. nil is ignored.
func (l *List) Add(err error) {
	if err == nil {
		return
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			l.Add(e)
		}
		return
	}
	if len(l.errs) < MaxErrors {
		l.errs = append(l.errs, err)
	}
}

// Len returns the number of errors recorded.
func (l *List) Len() int { return len(l.errs) }

// Errors returns the recorded errors.
func (l *List) Errors() []error { return l.errs }

// Err returns the errors joined (one per line), or nil when there are none.
func (l *List) Err() error {
	if len(l.errs) == 0 {
		return nil
	}
	return errors.Join(l.errs...)
}

// Flatten returns the leaves of an error joined with errors.Join (or any
// error with Unwrap() []error), in order.
func Flatten(err error) []error {
	var out []error
	flatten(err, &out)
	return out
}

func flatten(err error, out *[]error) {
	if err == nil {
		return
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			flatten(e, out)
		}
		return
	}
	*out = append(*out, err)
}

// Suggest returns ` (did you mean "x"?)` for the candidate closest to word
// by edit distance, or "" when nothing is close enough to be a typo.
func Suggest(word string, candidates []string) string {
	return SuggestPrefixed(word, candidates, "")
}

// SuggestPrefixed is Suggest with prefix put before the candidate (for
// "@set" names).
func SuggestPrefixed(word string, candidates []string, prefix string) string {
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
	limit := min(max(len(word)/3, 1), 3)
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

// Reason returns what a parser's error says is wrong with value, without
// the part that repeats the value: netip.ParsePrefix("10.0.0.300/24"):
// ParseAddr("10.0.0.300"): IPv4 field has value >255 becomes
// ParseAddr("10.0.0.300"): IPv4 field has value >255, the message having
// quoted the value already.
func Reason(err error, value string) string {
	s := err.Error()
	head := "(" + strconv.Quote(value) + "): "
	if i := strings.Index(s, head); i >= 0 && !strings.ContainsAny(s[:i], " ") {
		return s[i+len(head):]
	}
	return s
}
