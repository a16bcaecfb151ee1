package admin

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"tungate/conntrack"
	"tungate/gateway"
	"tungate/internal/lowprio"
	"tungate/link/wireguard"
)

// eventBuffer is how many events a `ct events` reader may fall behind
// before the table drops (and counts) the ones that do not fit.
const eventBuffer = 4096

// Server serves the admin socket of one gateway.
type Server struct {
	g       *gateway.Gateway
	ln      net.Listener
	log     *zap.Logger
	started time.Time
	uid     uint32 // besides root, the only uid let in

	mu         sync.Mutex // guards the fields below
	configHash string     // sha256 of the config file as last loaded
	lastReload time.Time
	reloadErr  error
	conns      map[net.Conn]struct{}
	closed     bool

	// reloadChanges is how many changes the last reload applied (mu).
	reloadChanges int

	wg sync.WaitGroup
}

// Listen creates the unix socket at path (mode 0600; a stale socket file
// is replaced, a live one is an error) and serves it until Close or until
// the gateway closes.
func Listen(g *gateway.Gateway, path string) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("admin.socket: %w", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin.socket: %s is in use by a running gateway", path)
	}
	os.Remove(path)
	// Until the chmod below the socket has the umask's mode (no write
	// permission for others under the usual 022); the process-wide umask
	// is not changed for it. Whoever connects in that moment still meets
	// the SO_PEERCRED check.
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin.socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin.socket: %w", err)
	}
	s := &Server{g: g, ln: ln, log: g.Logger().Named("admin"), started: time.Now(), uid: uint32(os.Getuid()),
		conns: map[net.Conn]struct{}{}}
	s.configHash = hashFile(g.Config().Path())
	g.CloseWith(ln)
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr returns the socket's path.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server, ends every session (event streams too) and
// removes the socket file.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil && !errors.Is(err, net.ErrClosed) {
			// Out of descriptors or the like: the next connection may
			// well succeed.
			s.log.Warn("admin accept", zap.Error(err))
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err != nil {
			// The listener is closed (by Close or the gateway's Close):
			// end the sessions still open.
			s.mu.Lock()
			s.closed = true
			for c := range s.conns {
				c.Close()
			}
			s.mu.Unlock()
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

// peerUID returns the uid of the process at the other end (SO_PEERCRED).
func peerUID(c net.Conn) (uint32, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, errors.New("not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return cred.Uid, nil
}

// serve runs one session: one request, one streamed answer.
func (s *Server) serve(c net.Conn) {
	fw := newFrameWriter(c)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(io.LimitReader(c, requestLimit), 4096)
	line, err := br.ReadString('\n')
	if err != nil && line == "" {
		return
	}
	c.SetReadDeadline(time.Time{})
	// The request is read before the credentials are checked, so a
	// refused client is sure to read the refusal rather than a broken
	// pipe.
	uid, err := peerUID(c)
	if err != nil {
		fw.end(frameError, "admin: cannot tell who is asking: "+err.Error())
		return
	}
	if uid != 0 && uid != s.uid {
		s.log.Warn("admin request refused", zap.Uint32("uid", uid))
		fw.end(frameError, fmt.Sprintf("admin: permission denied: uid %d is neither root nor the gateway's uid %d", uid, s.uid))
		return
	}
	req, err := parseRequest(line)
	if err != nil {
		fw.end(frameError, err.Error())
		return
	}
	msg, err := s.handle(c, fw, req)
	if err != nil {
		if fw.err != nil {
			return // the client went away; nobody to tell
		}
		// Output already sent stays; the error ends the stream.
		fw.end(frameError, err.Error())
		return
	}
	fw.end(frameOK, msg)
}

// parseRequest reads a JSON request, or an old-style command line
// ("ct list", "ct list json", "ct expect", …) for hand use with socat.
func parseRequest(line string) (*Request, error) {
	line = strings.TrimSpace(line)
	req := &Request{}
	if strings.HasPrefix(line, "{") {
		if err := json.Unmarshal([]byte(line), req); err != nil {
			return nil, fmt.Errorf("admin: bad request: %v", err)
		}
		return req, nil
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return nil, errors.New("empty command")
	}
	if len(f) > 1 && f[len(f)-1] == "json" {
		req.Output = "json"
		f = f[:len(f)-1]
	}
	req.Cmd = strings.Join(f, " ")
	if req.Cmd == "ct expect" {
		req.Cmd = "expect list"
	}
	return req, nil
}

// handle runs one request, streaming its output into w. It returns the
// message for the user (stderr) that ends a successful answer.
func (s *Server) handle(c net.Conn, w *frameWriter, req *Request) (string, error) {
	switch req.Output {
	case "", "json", "id":
	default:
		return "", fmt.Errorf("unknown output format %q (text, json or id)", req.Output)
	}
	t := s.g.Table()
	switch req.Cmd {
	case "ct list", "ct delete", "ct count", "ct events":
		m, err := req.Filter.compile()
		if err != nil {
			return "", err
		}
		switch req.Cmd {
		case "ct list":
			// The walk runs at the lowest CPU priority: a script listing
			// the table back to back must not take a core from the
			// datapath on a small machine (lowprio.Do).
			var msg string
			lowprio.Do(func() { msg, err = ctList(w, t, m, req.Output, false) })
			return msg, err
		case "ct delete":
			if req.Filter.Empty() {
				return "", errors.New("ct delete needs a filter or an id (ct flush deletes everything)")
			}
			var msg string
			lowprio.Do(func() { msg, err = ctList(w, t, m, req.Output, true) })
			return msg, err
		case "ct count":
			n := 0
			if req.Filter.Empty() {
				n = t.Count()
			} else {
				t.Range(func(c *conntrack.Conn) bool {
					if m.match(t, c) {
						n++
					}
					return true
				})
			}
			if req.Output == "json" {
				fmt.Fprintf(w, "{\"count\":%d}\n", n)
			} else {
				fmt.Fprintf(w, "%d\n", n)
			}
			return "", nil
		default:
			types, err := parseEventTypes(req.Events)
			if err != nil {
				return "", err
			}
			return "", s.ctEvents(c, w, t, m, types, req.Output)
		}
	case "ct flush":
		n := t.Count()
		t.Flush()
		return fmt.Sprintf("connection tracking table has been emptied (%d entries).", n), nil
	case "ct stats":
		return "", writeCtStats(w, t, req.Output == "json")
	case "expect list", "expect delete":
		if err := req.Filter.checkExpectation(); err != nil {
			return "", err
		}
		m, err := req.Filter.compile()
		if err != nil {
			return "", err
		}
		if req.Cmd == "expect list" {
			return "", expectList(w, t, m, req.Output)
		}
		if req.Filter.Empty() {
			return "", errors.New("expect delete needs a filter or an id (expect flush deletes all)")
		}
		n := t.DeleteExpectations(m.matchExpectation)
		return fmt.Sprintf("%d expectations have been deleted.", n), nil
	case "expect flush":
		n := t.ExpectationCount()
		t.FlushExpectations()
		return fmt.Sprintf("expectation table has been emptied (%d entries).", n), nil
	case "stats":
		m := s.g.Stats()
		if req.Output == "json" {
			return "", json.NewEncoder(w).Encode(m)
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "%s %d\n", k, m[k])
		}
		return "", nil
	case "rules":
		return "", s.g.Rules().Dump(w)
	case "reload":
		plan, err := s.ReloadWith(gateway.ReloadOptions{DryRun: req.DryRun, FlushNAT: req.FlushNAT})
		if plan != nil && (len(plan.Changes) > 0 || req.DryRun) {
			if err := plan.WriteText(w); err != nil {
				return "", err
			}
		}
		if err != nil {
			return "", err
		}
		if req.DryRun {
			return fmt.Sprintf("dry run: %d changes would apply; nothing was changed", len(plan.Changes)), nil
		}
		if plan.Deleted > 0 {
			fmt.Fprintf(w, "%d connections deleted\n", plan.Deleted)
		}
		return "reloaded", nil
	case "save":
		rep, err := s.g.SaveState()
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("state saved to %s: %d connections, %d expectations, %d bytes",
			s.g.Config().Conntrack.StateFile, rep.Conns, rep.Expectations, rep.Bytes), nil
	case "wg show":
		n := 0
		for _, l := range s.g.Links() {
			wl, ok := l.Dev.(*wireguard.Link)
			if !ok || (req.Interface != "" && req.Interface != l.Name) {
				continue
			}
			if n > 0 {
				io.WriteString(w, "\n")
			}
			if err := wl.Show(w); err != nil {
				return "", fmt.Errorf("interface %q: %w", l.Name, err)
			}
			n++
		}
		if n == 0 && req.Interface != "" {
			return "", fmt.Errorf("no wireguard interface %q", req.Interface)
		}
		if n == 0 {
			return "", errors.New("the gateway has no wireguard interface")
		}
		return "", nil
	case "set add", "set del", "set list":
		return s.setCommand(w, req)
	case "capture":
		return s.capture(c, w, req)
	case "status":
		st := s.Status()
		if req.Output == "json" {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return "", enc.Encode(st)
		}
		st.writeText(w)
		return "", nil
	}
	return "", fmt.Errorf("unknown command %q", req.Cmd)
}

// ctList streams the connections m selects (deleting each first when
// del, as conntrack -D prints what it deleted). Range holds no lock, so a
// slow reader delays nobody but itself.
func ctList(w *frameWriter, t *conntrack.Table, m *matcher, output string, del bool) (string, error) {
	now := t.Now()
	b := make([]byte, 0, 1024)
	var scratch []byte
	n := 0
	if output == "json" {
		w.WriteString("[")
	}
	t.Range(func(c *conntrack.Conn) bool {
		if !m.match(t, c) {
			return true
		}
		if del && !t.Delete(c) {
			return true
		}
		b = b[:0]
		if output == "json" {
			if n > 0 {
				b = append(b, ',')
			}
			b = append(b, '\n')
			b, scratch = appendConnJSON(b, t, c, now, scratch, nil)
		} else {
			b = appendConnText(b, t, c, now, output == "id")
			b = append(b, '\n')
		}
		n++
		_, err := w.Write(b)
		return err == nil
	})
	if output == "json" {
		if n > 0 {
			w.WriteString("\n")
		}
		w.WriteString("]\n")
	}
	if del {
		// Like conntrack -D, the count goes to stderr after the entries.
		return fmt.Sprintf("%d flow entries have been deleted.", n), w.err
	}
	return "", w.err
}

func expectList(w *frameWriter, t *conntrack.Table, m *matcher, output string) error {
	now := t.Now()
	var b []byte
	n := 0
	if output == "json" {
		w.WriteString("[")
	}
	t.Expectations(func(e *conntrack.Expectation) bool {
		if !m.matchExpectation(e) {
			return true
		}
		b = b[:0]
		if output == "json" {
			if n > 0 {
				b = append(b, ',')
			}
			b = append(b, '\n')
			b = appendExpectJSON(b, e, now)
		} else {
			b = t.AppendExpectation(b, e, now)
			if output == "id" {
				b = append(b, " id="...)
				b = strconv.AppendUint(b, uint64(conntrack.ExpectationID(e)), 10)
			}
			b = append(b, '\n')
		}
		n++
		_, err := w.Write(b)
		return err == nil
	})
	if output == "json" {
		if n > 0 {
			w.WriteString("\n")
		}
		w.WriteString("]\n")
	}
	return w.err
}

// parseEventTypes reads -e's list (NEW, UPDATE, DESTROY, ALL).
func parseEventTypes(names []string) (conntrack.EventType, error) {
	var types conntrack.EventType
	for _, n := range names {
		switch strings.ToUpper(strings.TrimSpace(n)) {
		case "NEW":
			types |= conntrack.EventNew
		case "UPDATE":
			types |= conntrack.EventUpdate
		case "DESTROY":
			types |= conntrack.EventDestroy
		case "ALL":
			types |= conntrack.EventAll
		default:
			return 0, fmt.Errorf("event: unknown event type %q (NEW, UPDATE, DESTROY or ALL)", n)
		}
	}
	if types == 0 {
		types = conntrack.EventAll
	}
	return types, nil
}

// ctEvents streams events until the client goes away or the server
// closes. The table hands events over without waiting: when this reader
// falls eventBuffer behind, the excess is dropped and counted, and the
// reader is told how many it lost as soon as it reads again.
func (s *Server) ctEvents(c net.Conn, w *frameWriter, t *conntrack.Table, m *matcher, types conntrack.EventType, output string) error {
	sub := t.SubscribeEvents(eventBuffer, types)
	defer sub.Cancel()
	// The client sends nothing more: a read returns when it hangs up.
	gone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, c)
		close(gone)
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var reported uint64
	var b, scratch []byte
	json := output == "json"
	write := func(ev conntrack.Event) {
		if !m.match(t, ev.Conn) {
			return
		}
		b = b[:0]
		if json {
			b = append(b, `{"type":"`...)
			b = append(b, ev.Type.String()...)
			b = append(b, `","conn":`...)
			b, scratch = appendConnJSON(b, t, ev.Conn, t.Now(), scratch, &ev)
			b = append(b, "}\n"...)
		} else {
			b = appendEventText(b, t, &ev, t.Now(), output == "id")
			b = append(b, '\n')
		}
		w.Write(b)
	}
	lost := func() {
		if l := sub.Lost(); l > reported {
			if json {
				fmt.Fprintf(w, "{\"type\":\"LOST\",\"lost\":%d}\n", l-reported)
			} else {
				fmt.Fprintf(w, "[LOST] %d events lost: this reader was too slow\n", l-reported)
			}
			reported = l
		}
	}
	for {
		select {
		case ev := <-sub.C:
			write(ev)
			// Drain what is queued before flushing: one frame per burst.
			for i := 0; i < eventBuffer; i++ {
				select {
				case ev = <-sub.C:
					write(ev)
					continue
				default:
				}
				break
			}
			lost()
		case <-tick.C:
			lost()
		case <-gone:
			return nil
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
}

// writeCtStats writes the `conntrack -S` counters the table really counts
// (Linux's search_restart, clash_resolve and chaintoolong have no
// counterpart here and are left out), then the table's own.
func writeCtStats(w io.Writer, t *conntrack.Table, asJSON bool) error {
	s := &t.Stats
	type kv struct {
		k string
		v uint64
	}
	line1 := []kv{
		{"found", s.Found.Load()}, {"invalid", s.Invalid.Load()}, {"insert", s.Insert.Load()},
		{"insert_failed", s.InsertFailed.Load()}, {"drop", s.Drop.Load()},
		{"early_drop", s.EarlyDrop.Load()}, {"error", s.Error.Load()},
	}
	line2 := []kv{
		{"entries", uint64(t.Count())}, {"max", uint64(t.Config().Max)},
		{"expectations", uint64(t.ExpectationCount())}, {"expect_new", s.ExpectNew.Load()},
		{"expect_create", s.ExpectCreate.Load()}, {"expect_delete", s.ExpectDelete.Load()},
		{"delete", s.Delete.Load()}, {"ignore", s.Ignore.Load()}, {"events_lost", s.EventsLost.Load()},
	}
	if asJSON {
		m := map[string]uint64{}
		for _, f := range append(line1, line2...) {
			m[f.k] = f.v
		}
		return json.NewEncoder(w).Encode(m)
	}
	var b []byte
	b = append(b, "cpu=0   \t"...)
	for i, l := range [][]kv{line1, line2} {
		if i == 1 {
			b = append(b, '\n')
		}
		for j, f := range l {
			if j > 0 {
				b = append(b, ' ')
			}
			b = append(b, f.k...)
			b = append(b, '=')
			b = strconv.AppendUint(b, f.v, 10)
		}
	}
	b = append(b, '\n')
	_, err := w.Write(b)
	return err
}

// Reload reloads the gateway's config file (as SIGHUP does) and records
// the result and time for status.
func (s *Server) Reload() error {
	_, err := s.ReloadWith(gateway.ReloadOptions{})
	return err
}

// ReloadWith is Reload with options; a dry run records nothing.
func (s *Server) ReloadWith(opt gateway.ReloadOptions) (*gateway.Plan, error) {
	plan, err := s.g.ReloadFile(opt)
	if opt.DryRun {
		return plan, err
	}
	s.mu.Lock()
	s.lastReload, s.reloadErr = time.Now(), err
	s.reloadChanges = 0
	if err == nil {
		s.configHash = hashFile(s.g.Config().Path())
		s.reloadChanges = len(plan.Changes)
	}
	s.mu.Unlock()
	return plan, err
}

// hashFile returns the hex sha256 of a file, "" when it cannot be read.
func hashFile(path string) string {
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
