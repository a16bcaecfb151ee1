package rules

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Helpers that turn decoded TOML values into typed entries. TOML gives
// string, int64, float64, bool, []any and map[string]any; configs built in
// Go may also use int or []string, so those are accepted too.

// describe names a value's type and value for an error message.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "nothing"
	case string:
		return fmt.Sprintf("string %q", x)
	case bool:
		return fmt.Sprintf("bool %v", x)
	case float64:
		return fmt.Sprintf("float %v", x)
	case map[string]any:
		return "a table"
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("integer %v", v)
	case reflect.Slice, reflect.Array:
		return "a list"
	}
	return fmt.Sprintf("%T %v", v, v)
}

// asList returns v's entries: a list's elements, or v itself as the only
// entry. ok is false for an empty list or a nested list/table entry, which
// the caller reports.
func asList(v any) (entries []any, ok bool) {
	switch x := v.(type) {
	case []any:
		entries = x
	case []string:
		for _, s := range x {
			entries = append(entries, s)
		}
	case []int64:
		for _, n := range x {
			entries = append(entries, n)
		}
	case []int:
		for _, n := range x {
			entries = append(entries, n)
		}
	case map[string]any:
		return nil, false
	default:
		if rv := reflect.ValueOf(v); v != nil && (rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array) {
			for i := 0; i < rv.Len(); i++ {
				entries = append(entries, rv.Index(i).Interface())
			}
		} else {
			return []any{v}, true
		}
	}
	if len(entries) == 0 {
		return nil, false
	}
	for _, e := range entries {
		switch e.(type) {
		case []any, map[string]any:
			return nil, false
		}
		if rv := reflect.ValueOf(e); e != nil && (rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array) {
			return nil, false
		}
	}
	return entries, true
}

// asInt returns v as an integer if it is one (a whole float counts: TOML
// 80.0 is still a mistake worth reporting, so callers reject floats; this
// only normalises the integer kinds).
func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int:
		return int64(x), true
	case int32:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint8:
		return int64(x), true
	case uint64:
		if x > math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	}
	return 0, false
}

// splitNeg strips a leading "!" (nft's !=), reporting whether it was there.
func splitNeg(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "!") {
		return strings.TrimSpace(s[1:]), true
	}
	return s, false
}

// parseUint parses a decimal or 0x-hex unsigned number.
func parseUint(s string, bits int) (uint64, error) {
	return strconv.ParseUint(s, 0, bits)
}

// rangeSet is a working set of inclusive ranges during compilation.
type rangeSet []portRange

// normalize sorts and merges overlapping and adjacent ranges.
func (r rangeSet) normalize() rangeSet {
	if len(r) == 0 {
		return nil
	}
	s := slices.Clone(r)
	slices.SortFunc(s, func(a, b portRange) int { return int(a.lo) - int(b.lo) })
	out := rangeSet{s[0]}
	for _, x := range s[1:] {
		last := &out[len(out)-1]
		if uint32(x.lo) <= uint32(last.hi)+1 {
			last.hi = max(last.hi, x.hi)
			continue
		}
		out = append(out, x)
	}
	return out
}

// subtract removes neg from r; both normalized.
func (r rangeSet) subtract(neg rangeSet) rangeSet {
	var out rangeSet
	for _, x := range r {
		lo, hi := uint32(x.lo), uint32(x.hi)
		for _, n := range neg {
			if uint32(n.hi) < lo || uint32(n.lo) > hi {
				continue
			}
			if uint32(n.lo) > lo {
				out = append(out, portRange{uint16(lo), n.lo - 1})
			}
			lo = uint32(n.hi) + 1
			if lo > hi {
				break
			}
		}
		if lo <= hi {
			out = append(out, portRange{uint16(lo), uint16(hi)})
		}
	}
	return out
}

// setText renders a match in nft's style: `kw v`, `kw { a, b }`,
// `kw != v`, `kw != { a, b }`; both parts when a list mixes them.
func setText(kw string, pos, neg []string) string {
	var parts []string
	one := func(op string, vs []string) {
		if len(vs) == 0 {
			return
		}
		if len(vs) == 1 {
			parts = append(parts, kw+op+vs[0])
			return
		}
		parts = append(parts, kw+op+"{ "+strings.Join(vs, ", ")+" }")
	}
	one(" ", pos)
	one(" != ", neg)
	return strings.Join(parts, " ")
}
