package gateway

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"tungate/conntrack"
)

// The admin protocol: the client sends one command line; the server answers
// "ok\n" or "error: …\n", then the body, and closes.

// ServeAdmin listens on the unix socket path (mode 0600) and serves admin
// commands until the gateway closes. A stale socket file is replaced.
func (g *Gateway) ServeAdmin(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("admin.socket: %w", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return fmt.Errorf("admin.socket: %s is in use by a running gateway", path)
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("admin.socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("admin.socket: %w", err)
	}
	g.adminMu.Lock()
	g.adminLn = append(g.adminLn, ln)
	g.adminMu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go g.serveAdminConn(c)
		}
	}()
	return nil
}

func (g *Gateway) serveAdminConn(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(io.LimitReader(c, 4096)).ReadString('\n')
	if err != nil && line == "" {
		return
	}
	w := bufio.NewWriterSize(c, 64<<10)
	defer w.Flush()
	args := strings.Fields(line)
	if err := g.adminCommand(w, args); err != nil {
		w.Reset(c)
		fmt.Fprintf(w, "error: %v\n", err)
	}
}

func (g *Gateway) adminCommand(w *bufio.Writer, args []string) error {
	if len(args) == 0 {
		return errors.New("empty command")
	}
	cmd := strings.Join(args, " ")
	switch {
	case cmd == "ct list":
		w.WriteString("ok\n")
		g.writeConns(w)
	case cmd == "ct list json":
		w.WriteString("ok\n")
		return g.writeConnsJSON(w)
	case cmd == "ct expect":
		w.WriteString("ok\n")
		now := g.ct.Now()
		var b []byte
		g.ct.Expectations(func(e *conntrack.Expectation) bool {
			b = g.ct.AppendExpectation(b[:0], e, now)
			b = append(b, '\n')
			w.Write(b)
			return true
		})
	case cmd == "ct stats":
		w.WriteString("ok\n")
		// The `conntrack -S` line, then what -S does not show.
		w.Write(g.ct.AppendStats(nil))
		s := &g.ct.Stats
		fmt.Fprintf(w, "\nentries=%d expectations=%d expect_new=%d expect_create=%d expect_delete=%d delete=%d ignore=%d events_lost=%d\n",
			g.ct.Count(), g.ct.ExpectationCount(), s.ExpectNew.Load(), s.ExpectCreate.Load(), s.ExpectDelete.Load(),
			s.Delete.Load(), s.Ignore.Load(), s.EventsLost.Load())
	case cmd == "ct flush":
		g.ct.Flush()
		w.WriteString("ok\n")
	case cmd == "stats":
		w.WriteString("ok\n")
		m := g.Counters.Snapshot()
		for k, v := range natStats(g.nat.Stats()) {
			m["nat_"+k] = v
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "%s %d\n", k, m[k])
		}
	case cmd == "rules":
		w.WriteString("ok\n")
		return g.Rules().Dump(w)
	case cmd == "reload":
		if err := g.Reload(); err != nil {
			return err
		}
		w.WriteString("ok\nreloaded\n")
	default:
		return fmt.Errorf("unknown command %q", cmd)
	}
	return nil
}

func (g *Gateway) writeConns(w *bufio.Writer) {
	now := g.ct.Now()
	b := make([]byte, 0, 512)
	g.ct.Range(func(c *conntrack.Conn) bool {
		b = g.ct.AppendConn(b[:0], c, now)
		b = append(b, '\n')
		w.Write(b)
		return true
	})
}

// ConnJSON is one connection in `ct list -o json`.
type ConnJSON struct {
	Proto    string    `json:"proto"`
	ProtoNum uint8     `json:"protonum"`
	Timeout  int64     `json:"timeout"`
	State    string    `json:"state,omitempty"`
	Orig     TupleJSON `json:"original"`
	Reply    TupleJSON `json:"reply"`
	Status   []string  `json:"status"`
	Mark     uint32    `json:"mark"`
	Helper   string    `json:"helper,omitempty"`
}

// TupleJSON is one direction of a connection.
type TupleJSON struct {
	Src     string `json:"src"`
	Dst     string `json:"dst"`
	Sport   uint16 `json:"sport"`
	Dport   uint16 `json:"dport"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

func (g *Gateway) writeConnsJSON(w *bufio.Writer) error {
	now := g.ct.Now()
	var list []ConnJSON
	g.ct.Range(func(c *conntrack.Conn) bool {
		o, r := c.Tuple(conntrack.DirOriginal), c.Tuple(conntrack.DirReply)
		st := c.Status()
		var names []string
		for _, s := range []struct {
			bit  conntrack.Status
			name string
		}{{conntrack.StatusSeenReply, "SEEN_REPLY"}, {conntrack.StatusAssured, "ASSURED"}, {conntrack.StatusConfirmed, "CONFIRMED"},
			{conntrack.StatusExpected, "EXPECTED"}, {conntrack.StatusSrcNAT, "SRC_NAT"}, {conntrack.StatusDstNAT, "DST_NAT"},
			{conntrack.StatusSeqAdjust, "SEQ_ADJUST"}, {conntrack.StatusDying, "DYING"}} {
			if st&s.bit != 0 {
				names = append(names, s.name)
			}
		}
		tj := func(t *conntrack.Tuple, d conntrack.Dir) TupleJSON {
			k := c.Counters(d)
			return TupleJSON{Src: t.SrcAddr().String(), Dst: t.DstAddr().String(), Sport: t.SrcPort, Dport: t.DstPort,
				Packets: k.Packets.Load(), Bytes: k.Bytes.Load()}
		}
		left := (c.Expires() - now) / 1e9
		if left < 0 {
			left = 0
		}
		list = append(list, ConnJSON{
			Proto: g.ct.Tracker(o.Proto).Name(), ProtoNum: o.Proto, Timeout: left,
			State: c.TCPStateName(), Orig: tj(o, conntrack.DirOriginal), Reply: tj(r, conntrack.DirReply),
			Status: names, Mark: c.Mark(), Helper: c.Helper(),
		})
		return true
	})
	if list == nil {
		list = []ConnJSON{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(list)
}

// AdminRequest sends one command to the admin socket at path and returns
// the body of the answer.
func AdminRequest(path string, args ...string) (string, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return "", fmt.Errorf("admin socket %s: %w", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\n", strings.Join(args, " ")); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return "", err
	}
	s := string(b)
	if rest, ok := strings.CutPrefix(s, "ok\n"); ok {
		return rest, nil
	}
	if rest, ok := strings.CutPrefix(s, "error: "); ok {
		return "", errors.New(strings.TrimSpace(rest))
	}
	return "", fmt.Errorf("admin: unexpected answer %q", s)
}
