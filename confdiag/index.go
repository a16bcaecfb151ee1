package confdiag

import (
	"strconv"
	"strings"
)

// Pos is a position in the source, 1-based; the column counts bytes, as
// BurntSushi/toml's do.
type Pos struct {
	Line, Col int
}

// Entry is one key (or table header) of the source.
type Entry struct {
	// Path is the key path with array indexes: interface[1].addresses[0],
	// filter.forward.rules[3].action.
	Path string
	// Plain is Path without the indexes, as toml.Key.String() spells it.
	Plain string
	// Key is where the key (or table header) starts, Value where its value
	// starts (the header again for a table).
	Key, Value Pos
	// Kind is the TOML type of the value as written: "string", "array",
	// "table", "boolean" or "number" (numbers and dates).
	Kind string
}

// Index maps key paths to their positions in a TOML source.
type Index struct {
	entries []Entry
	byPath  map[string]int
}

// Lookup returns the position of the value at path. A path with no entry
// of its own (a key left out, a rule's implied key) falls back to its
// nearest ancestor that has one; exact reports whether path itself was
// found. ok is false only when nothing on the way was.
func (ix *Index) Lookup(path string) (p Pos, exact, ok bool) {
	if ix == nil {
		return Pos{}, false, false
	}
	exact = true
	for path != "" {
		if i, found := ix.byPath[path]; found {
			return ix.entries[i].Value, exact, true
		}
		exact = false
		path = parent(path)
	}
	return Pos{}, false, false
}

// KeyPos returns the position of the key at path itself (not its value).
func (ix *Index) KeyPos(path string) (Pos, bool) {
	if ix == nil {
		return Pos{}, false
	}
	i, ok := ix.byPath[path]
	if !ok {
		return Pos{}, false
	}
	return ix.entries[i].Key, true
}

// ByPlain returns the entries whose index-free path is plain, in source
// order: every [[interface]]'s name for "interface.name".
func (ix *Index) ByPlain(plain string) []Entry {
	if ix == nil {
		return nil
	}
	var out []Entry
	for _, e := range ix.entries {
		if e.Plain == plain {
			out = append(out, e)
		}
	}
	return out
}

// Entries returns every entry in source order.
func (ix *Index) Entries() []Entry {
	if ix == nil {
		return nil
	}
	return ix.entries
}

// parent strips the last component of a key path: "a.b[2]" → "a.b",
// "a.b" → "a", "a" → "".
func parent(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

// plainPath removes the "[n]" indexes from a path.
func plainPath(path string) string {
	if !strings.Contains(path, "[") {
		return path
	}
	var b strings.Builder
	for i := 0; i < len(path); i++ {
		if path[i] == '[' {
			j := strings.IndexByte(path[i:], ']')
			if j > 0 {
				i += j
				continue
			}
		}
		b.WriteByte(path[i])
	}
	return b.String()
}

// Scan indexes a TOML source that BurntSushi/toml has already accepted. It
// reads just enough TOML to follow keys: table and array-of-tables
// headers, dotted keys, inline tables, arrays and strings (so a '#' or ']'
// inside one is not misread). On anything it does not understand it stops
// and keeps what it found, so it never fails.
func Scan(src []byte) *Index {
	s := &scanner{src: src, line: 1, col: 1, aot: map[string]int{}}
	s.ix = &Index{byPath: map[string]int{}}
	s.run()
	return s.ix
}

type scanner struct {
	src       []byte
	off       int
	line, col int
	ix        *Index
	// table is the indexed path of the current [table] or [[table]].
	table string
	// aot counts the elements of each array of tables, by indexed path.
	aot map[string]int
	// depth bounds nesting, so a hostile file cannot exhaust the stack.
	depth int
}

func (s *scanner) eof() bool { return s.off >= len(s.src) }

func (s *scanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.off]
}

func (s *scanner) hasPrefix(p string) bool {
	return strings.HasPrefix(string(s.src[s.off:min(len(s.src), s.off+len(p))]), p)
}

func (s *scanner) next() {
	if s.eof() {
		return
	}
	if s.src[s.off] == '\n' {
		s.line++
		s.col = 1
	} else {
		s.col++
	}
	s.off++
}

func (s *scanner) pos() Pos { return Pos{s.line, s.col} }

// space skips blanks and, when lines is set, newlines and comments too.
func (s *scanner) space(lines bool) {
	for !s.eof() {
		switch c := s.peek(); {
		case c == ' ' || c == '\t' || c == '\r':
			s.next()
		case lines && c == '\n':
			s.next()
		case lines && c == '#':
			for !s.eof() && s.peek() != '\n' {
				s.next()
			}
		default:
			return
		}
	}
}

func (s *scanner) add(path string, key, val Pos, kind string) {
	if _, dup := s.ix.byPath[path]; dup {
		return
	}
	s.ix.byPath[path] = len(s.ix.entries)
	s.ix.entries = append(s.ix.entries, Entry{Path: path, Plain: plainPath(path), Key: key, Value: val, Kind: kind})
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

func (s *scanner) run() {
	for {
		s.space(true)
		if s.eof() {
			return
		}
		start := s.pos()
		if s.peek() == '[' {
			if !s.header(start) {
				return
			}
			continue
		}
		segs, ok := s.key()
		if !ok || s.peek() != '=' {
			return
		}
		s.next()
		s.space(false)
		path := s.table
		for _, k := range segs {
			path = join(path, k)
		}
		if !s.value(path, start) {
			return
		}
	}
}

// header reads [a.b] or [[a.b]] and makes it the current table.
func (s *scanner) header(start Pos) bool {
	s.next()
	aot := s.peek() == '['
	if aot {
		s.next()
	}
	s.space(false)
	segs, ok := s.key()
	if !ok || s.peek() != ']' {
		return false
	}
	s.next()
	if aot {
		if s.peek() != ']' {
			return false
		}
		s.next()
	}
	cur := ""
	for i, seg := range segs {
		cur = join(cur, seg)
		if i == len(segs)-1 && aot {
			n := s.aot[cur]
			s.aot[cur] = n + 1
			s.add(cur, start, start, "array")
			cur += "[" + strconv.Itoa(n) + "]"
		} else if n, ok := s.aot[cur]; ok && n > 0 {
			cur += "[" + strconv.Itoa(n-1) + "]"
		}
	}
	s.add(cur, start, start, "table")
	s.table = cur
	return true
}

// key reads a dotted key and the blanks after it.
func (s *scanner) key() ([]string, bool) {
	var segs []string
	for {
		s.space(false)
		var seg string
		switch c := s.peek(); {
		case c == '"' || c == '\'':
			v, ok := s.str()
			if !ok {
				return nil, false
			}
			seg = v
		default:
			b := s.off
			for !s.eof() && isBare(s.peek()) {
				s.next()
			}
			if s.off == b {
				return nil, false
			}
			seg = string(s.src[b:s.off])
		}
		segs = append(segs, seg)
		s.space(false)
		if s.peek() != '.' {
			return segs, true
		}
		s.next()
	}
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// str reads a basic or literal string, single- or multi-line, and returns
// its raw text (escapes are left as written: keys rarely have any).
func (s *scanner) str() (string, bool) {
	q := s.peek()
	multi := s.hasPrefix(strings.Repeat(string(q), 3))
	n := 1
	if multi {
		n = 3
	}
	for range n {
		s.next()
	}
	b := s.off
	for !s.eof() {
		c := s.peek()
		if c == '\\' && q == '"' {
			s.next()
			s.next()
			continue
		}
		if c == '\n' && !multi {
			return "", false
		}
		if c == q && (!multi || s.hasPrefix(strings.Repeat(string(q), 3))) {
			v := string(s.src[b:s.off])
			if multi {
				// Up to two more quotes may end the string's content.
				for s.hasPrefix(strings.Repeat(string(q), 4)) {
					s.next()
				}
				v = string(s.src[b:s.off])
			}
			for range n {
				s.next()
			}
			return v, true
		}
		s.next()
	}
	return "", false
}

// value reads the value of path, recording it and what it contains.
func (s *scanner) value(path string, key Pos) bool {
	s.depth++
	defer func() { s.depth-- }()
	if s.depth > 64 {
		return false
	}
	at := s.pos()
	switch c := s.peek(); {
	case c == '"' || c == '\'':
		s.add(path, key, at, "string")
		_, ok := s.str()
		return ok
	case c == '[':
		s.add(path, key, at, "array")
		s.next()
		for i := 0; ; i++ {
			s.space(true)
			if s.peek() == ']' {
				s.next()
				return true
			}
			if !s.value(path+"["+strconv.Itoa(i)+"]", s.pos()) {
				return false
			}
			s.space(true)
			if s.peek() == ',' {
				s.next()
			}
		}
	case c == '{':
		s.add(path, key, at, "table")
		s.next()
		for {
			s.space(true)
			if s.peek() == '}' {
				s.next()
				return true
			}
			kp := s.pos()
			segs, ok := s.key()
			if !ok || s.peek() != '=' {
				return false
			}
			s.next()
			s.space(false)
			p := path
			for _, k := range segs {
				p = join(p, k)
			}
			if !s.value(p, kp) {
				return false
			}
			s.space(true)
			if s.peek() == ',' {
				s.next()
			}
		}
	default:
		b := s.off
		for !s.eof() && !strings.ContainsRune(",]}#\n", rune(s.peek())) {
			s.next()
		}
		if s.off == b {
			return false
		}
		kind := "number"
		if v := strings.TrimSpace(string(s.src[b:s.off])); v == "true" || v == "false" {
			kind = "boolean"
		}
		s.add(path, key, at, kind)
		return true
	}
}
