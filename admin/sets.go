package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"tungate/gateway"
	"tungate/rules"
)

// maxSetTimeout bounds --timeout: nft caps set timeouts too, and a typo of
// years is more likely than the wish.
const maxSetTimeout = 365 * 24 * time.Hour

// setCommand serves `set add`, `set del` and `set list`.
func (s *Server) setCommand(w *frameWriter, req *Request) (string, error) {
	if req.Cmd == "set list" {
		if len(req.Elements) > 0 || req.Timeout != "" {
			return "", errors.New("set list takes a set name only")
		}
		return "", s.setList(w, req.Set, req.Output == "json")
	}
	if req.Set == "" {
		return "", fmt.Errorf("%s needs a set name", req.Cmd)
	}
	if len(req.Elements) == 0 {
		return "", fmt.Errorf("%s needs at least one element", req.Cmd)
	}
	elems := make([]netip.Prefix, 0, len(req.Elements))
	for _, e := range req.Elements {
		p, err := rules.ParseSetElement(e)
		if err != nil {
			return "", fmt.Errorf("set %q: %w", req.Set, err)
		}
		elems = append(elems, p)
	}
	var timeout time.Duration
	if req.Cmd == "set add" && req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil || d <= 0 || d > maxSetTimeout {
			return "", fmt.Errorf("timeout: %q is not a duration between 1ns and 8760h (like 10m)", req.Timeout)
		}
		timeout = d
	} else if req.Timeout != "" {
		return "", errors.New("set del takes no timeout")
	}
	var err error
	verb := "added to"
	if req.Cmd == "set add" {
		err = s.g.SetAdd(req.Set, elems, timeout)
	} else {
		verb = "deleted from"
		err = s.g.SetDelete(req.Set, elems)
	}
	if err != nil {
		return "", err
	}
	s.log.Info(req.Cmd, zapSet(req.Set, req.Elements, req.Timeout)...)
	if req.Output == "json" {
		out := struct {
			Set      string   `json:"set"`
			Added    []string `json:"added,omitempty"`
			Deleted  []string `json:"deleted,omitempty"`
			Timeout  string   `json:"timeout,omitempty"`
			Elements int      `json:"elements"`
		}{Set: req.Set, Timeout: req.Timeout, Elements: len(elems)}
		names := make([]string, len(elems))
		for i, p := range elems {
			names[i] = rules.FormatSetElement(p)
		}
		if req.Cmd == "set add" {
			out.Added = names
		} else {
			out.Deleted = names
		}
		return "", json.NewEncoder(w).Encode(out)
	}
	n := "elements"
	if len(elems) == 1 {
		n = "element"
	}
	return fmt.Sprintf("%d %s %s set %s", len(elems), n, verb, req.Set), nil
}

// SetElementJSON is one element in `set list -o json`.
type SetElementJSON struct {
	Element string `json:"element"`
	// Origin is "file", "runtime" or "file+runtime".
	Origin string `json:"origin"`
	// Expires is when a runtime element goes (RFC 3339), ExpiresIn the
	// seconds left; both absent for elements without a timeout.
	Expires   *time.Time `json:"expires,omitempty"`
	ExpiresIn *float64   `json:"expires_in_seconds,omitempty"`
}

// SetJSON is one set in `set list -o json`.
type SetJSON struct {
	Set      string           `json:"set"`
	Elements []SetElementJSON `json:"elements"`
}

func origin(e rules.SetElement) string {
	switch {
	case e.File && e.Runtime:
		return "file+runtime"
	case e.File:
		return "file"
	}
	return "runtime"
}

// setList writes one set, or every set when name is empty.
func (s *Server) setList(w io.Writer, name string, asJSON bool) error {
	names := []string{name}
	if name == "" {
		names = s.g.SetNames()
		// Sets a reload dropped that still have runtime elements.
		seen := map[string]bool{}
		for _, n := range names {
			seen[n] = true
		}
		for _, e := range s.g.RuntimeState().Sets {
			if !seen[e.Set] {
				seen[e.Set] = true
				names = append(names, e.Set)
			}
		}
	}
	sets := []SetJSON{}
	var b []byte
	for _, n := range names {
		elems, now, err := s.g.SetList(n)
		if err != nil {
			return err
		}
		if !asJSON {
			if name == "" {
				b = append(b, "set "...)
				b = append(b, n...)
				b = append(b, ":\n"...)
			}
			for _, e := range elems {
				if name == "" {
					b = append(b, "  "...)
				}
				b = append(b, rules.FormatSetElement(e.Prefix)...)
				b = append(b, ' ')
				b = append(b, origin(e)...)
				if !e.Expires.IsZero() {
					b = append(b, " expires "...)
					b = appendNftDuration(b, e.Expires.Sub(now))
				}
				b = append(b, '\n')
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
			b = b[:0]
			continue
		}
		sj := SetJSON{Set: n, Elements: []SetElementJSON{}}
		for _, e := range elems {
			ej := SetElementJSON{Element: rules.FormatSetElement(e.Prefix), Origin: origin(e)}
			if !e.Expires.IsZero() {
				exp := e.Expires.UTC()
				left := e.Expires.Sub(now).Seconds()
				ej.Expires, ej.ExpiresIn = &exp, &left
			}
			sj.Elements = append(sj.Elements, ej)
		}
		sets = append(sets, sj)
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(sets)
	}
	return nil
}

// appendNftDuration writes a remaining time as nft does ("9m58s", "1d2h"),
// rounded up to the second so an element still present never shows 0s.
func appendNftDuration(b []byte, d time.Duration) []byte {
	secs := int64((d + time.Second - 1) / time.Second)
	if secs <= 0 {
		return append(b, "0s"...)
	}
	for _, u := range []struct {
		n int64
		s string
	}{{86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}} {
		if secs >= u.n {
			b = strconv.AppendInt(b, secs/u.n, 10)
			b = append(b, u.s...)
			secs %= u.n
		}
	}
	return b
}

// RuntimeStatus is the runtime layer in `status`: what was changed on top
// of the config file.
type RuntimeStatus struct {
	// SetElements are the set elements added at runtime.
	SetElements []RuntimeSetElement `json:"set_elements"`
}

// RuntimeSetElement is one runtime set element in status.
type RuntimeSetElement struct {
	Set     string `json:"set"`
	Element string `json:"element"`
	// InConfig is false for a set the running config no longer has.
	InConfig  bool       `json:"in_config"`
	Expires   *time.Time `json:"expires,omitempty"`
	ExpiresIn *float64   `json:"expires_in_seconds,omitempty"`
}

func runtimeStatus(g *gateway.Gateway) RuntimeStatus {
	st := RuntimeStatus{SetElements: []RuntimeSetElement{}}
	now := g.RuntimeNow()
	have := map[string]bool{}
	for _, n := range g.SetNames() {
		have[n] = true
	}
	for _, e := range g.RuntimeState().Sets {
		r := RuntimeSetElement{Set: e.Set, Element: rules.FormatSetElement(e.Prefix), InConfig: have[e.Set]}
		if !e.Expires.IsZero() {
			exp := e.Expires.UTC()
			left := e.Expires.Sub(now).Seconds()
			r.Expires, r.ExpiresIn = &exp, &left
		}
		st.SetElements = append(st.SetElements, r)
	}
	return st
}

func (r RuntimeStatus) writeText(w io.Writer) {
	if len(r.SetElements) == 0 {
		fmt.Fprintln(w, "runtime:     no changes on top of the config file")
		return
	}
	fmt.Fprintf(w, "runtime:     %d set elements on top of the config file\n", len(r.SetElements))
	var b []byte
	for _, e := range r.SetElements {
		b = append(b[:0], "  set "...)
		b = append(b, e.Set...)
		b = append(b, ' ')
		b = append(b, e.Element...)
		if e.ExpiresIn != nil {
			b = append(b, " expires "...)
			b = appendNftDuration(b, time.Duration(*e.ExpiresIn*float64(time.Second)))
		}
		if !e.InConfig {
			b = append(b, " (set not in the running config)"...)
		}
		b = append(b, '\n')
		w.Write(b)
	}
}

// zapSet is the log line's fields of a set change.
func zapSet(set string, elems []string, timeout string) []zap.Field {
	f := []zap.Field{zap.String("set", set), zap.String("elements", strings.Join(elems, " "))}
	if timeout != "" {
		f = append(f, zap.String("timeout", timeout))
	}
	return f
}
