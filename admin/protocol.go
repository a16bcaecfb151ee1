// Package admin is tungate's control plane: the admin socket's protocol,
// its server (run by `tungate run` next to the gateway) and its client (the
// CLI). It asks the gateway and the connection table through their exported
// methods only.
//
// The protocol: the client sends one JSON Request on one line; the server
// answers with a stream of frames, each a type byte, a 4-byte big-endian
// length and the payload. Data frames carry output as it is produced (the
// server fills 64 KiB frames while it walks the table, so a million
// connections never sit in memory on either side); the stream ends with
// exactly one end frame (OK, with a message for the user) or error frame.
// A stream cut before its end frame is an error the client reports.
package admin

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// Request is one admin command.
type Request struct {
	// Cmd is the command: "ct list", "ct count", "ct delete", "ct flush",
	// "ct events", "ct stats", "expect list", "expect delete",
	// "expect flush", "stats", "rules", "reload", "save", "status", "wg show",
	// "set add", "set del", "set list", "capture".
	Cmd string `json:"cmd"`
	// Output is "" (conntrack's text form), "json", or "id" (text with
	// each entry's id, like conntrack -o id).
	Output string `json:"output,omitempty"`
	// Filter selects connections or expectations.
	Filter *Filter `json:"filter,omitempty"`
	// Events are the event types `ct events` streams (NEW, UPDATE,
	// DESTROY); empty means all.
	Events []string `json:"events,omitempty"`
	// Interface narrows `wg show` to one interface; empty means all.
	// For capture, the interface whose packets to record.
	Interface string `json:"interface,omitempty"`
	// Set is the named set of `set add|del|list` (empty lists all).
	Set string `json:"set,omitempty"`
	// Elements are the set elements to add or delete: addresses and
	// prefixes.
	Elements []string `json:"elements,omitempty"`
	// Timeout is how long added elements stay, a Go duration ("10m");
	// empty means until deleted.
	Timeout string `json:"timeout,omitempty"`
	// Count ends a capture after that many packets; 0 runs until the
	// client hangs up.
	Count int `json:"count,omitempty"`
	// Match selects the packets a capture records.
	Match *CaptureMatch `json:"match,omitempty"`
	// DryRun: `reload` prints the changes it would apply and applies
	// none.
	DryRun bool `json:"dry_run,omitempty"`
	// FlushNAT: `reload` deletes the NATed connections once the new NAT
	// rules are in force.
	FlushNAT bool `json:"flush_nat,omitempty"`
}

// CaptureMatch is a capture's filter, tcpdump's primitives and-ed: host
// (an address or prefix, either end), proto (tcp, udp, icmp, or a
// number), port (either end, TCP or UDP).
type CaptureMatch struct {
	Host  string `json:"host,omitempty"`
	Proto string `json:"proto,omitempty"`
	Port  int    `json:"port,omitempty"`
}

// Frame types.
const (
	frameData  = 'd' // payload: output bytes
	frameOK    = 'k' // end; payload: a message for the user (stderr), maybe empty
	frameError = 'e' // end; payload: the error
)

const (
	// frameMax is the data a server buffers before it sends a frame.
	frameMax = 64 << 10
	// frameLimit bounds what a client accepts in one frame.
	frameLimit = 1 << 20
	// requestLimit bounds a request line.
	requestLimit = 64 << 10
)

// frameWriter turns a byte stream into data frames of up to frameMax.
type frameWriter struct {
	w   io.Writer
	buf []byte // 5 header bytes, then payload
	err error
}

func newFrameWriter(w io.Writer) *frameWriter {
	return &frameWriter{w: w, buf: make([]byte, 5, 5+frameMax+4096)}
}

// Write buffers p, sending full frames as they fill.
func (f *frameWriter) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	f.buf = append(f.buf, p...)
	if len(f.buf)-5 >= frameMax {
		f.Flush()
	}
	return len(p), f.err
}

// WriteString is Write for strings.
func (f *frameWriter) WriteString(s string) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	f.buf = append(f.buf, s...)
	if len(f.buf)-5 >= frameMax {
		f.Flush()
	}
	return len(s), f.err
}

// Flush sends what is buffered as one data frame.
func (f *frameWriter) Flush() error {
	if f.err != nil || len(f.buf) == 5 {
		return f.err
	}
	f.err = f.send(frameData, f.buf)
	f.buf = f.buf[:5]
	return f.err
}

// end flushes and sends the closing frame.
func (f *frameWriter) end(typ byte, msg string) error {
	if err := f.Flush(); err != nil {
		return err
	}
	b := append(f.buf[:5], msg...)
	f.err = f.send(typ, b)
	f.buf = f.buf[:5]
	return f.err
}

// send writes b (5 header bytes, then payload) as a frame of type typ.
func (f *frameWriter) send(typ byte, b []byte) error {
	b[0] = typ
	binary.BigEndian.PutUint32(b[1:5], uint32(len(b)-5))
	_, err := f.w.Write(b)
	return err
}

// errCut is a stream that ended before its end frame.
var errCut = errors.New("admin: the gateway closed the connection mid-answer")

// readFrames copies data frames to out until the end frame, and returns
// the OK message or the error the server sent.
func readFrames(r io.Reader, out io.Writer) (string, error) {
	var hdr [5]byte
	buf := make([]byte, 0, frameMax)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
				return "", errCut
			}
			return "", err
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if n > frameLimit {
			return "", fmt.Errorf("admin: frame of %d bytes is over the limit", n)
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", errCut
		}
		switch hdr[0] {
		case frameData:
			if _, err := out.Write(buf); err != nil {
				return "", err
			}
		case frameOK:
			return string(buf), nil
		case frameError:
			return "", errors.New(string(buf))
		default:
			return "", fmt.Errorf("admin: unknown frame type %q", hdr[0])
		}
	}
}
