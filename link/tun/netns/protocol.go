package netns

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// roleEnv names the helper's role in its environment; the helper removes
// it before anything else so the command never sees it.
const roleEnv = "TUNGATE_NETNS_HELPER"

const (
	roleCommand = "command"
	roleAttach  = "attach"
)

// config is what the helper is told to build, sent as the first message.
type config struct {
	Role      string
	TUNName   string
	MTU       int
	Addresses []netip.Prefix
	Gateways  []netip.Addr
	Routes    []netip.Prefix
	DNS       []netip.Addr
	Args      []string
	Dir       string
}

// message is one datagram on the control socket. Helper to parent: Hello;
// parent to helper: Config; helper to parent: Ready with the TUN's
// descriptor attached (or Error); parent to helper: Start; helper to
// parent: Exit with the command's status.
type message struct {
	Hello  bool         `json:",omitempty"`
	Config *config      `json:",omitempty"`
	Start  bool         `json:",omitempty"`
	Ready  bool         `json:",omitempty"`
	Name   string       `json:",omitempty"`
	Exit   *int         `json:",omitempty"`
	Error  *remoteError `json:",omitempty"`

	// joinErr is the joining fork's failure (spawnJoined), which comes
	// as a raw record: the fork cannot marshal JSON.
	joinErr error
}

// Error kinds the helper reports so the parent can add its diagnosis.
const (
	kindTUNAccess  = "tun-access"
	kindPermission = "permission"
)

// remoteError is an error of the helper, with what kind it is.
type remoteError struct {
	Msg  string
	Kind string `json:",omitempty"`
}

func newRemoteError(err error) *remoteError {
	e := &remoteError{Msg: err.Error()}
	switch {
	case errors.Is(err, ErrTUNAccess):
		e.Kind = kindTUNAccess
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		e.Kind = kindPermission
	}
	return e
}

func (e *remoteError) err() error {
	switch e.Kind {
	case kindTUNAccess:
		return &wrapped{msg: "netns: " + e.Msg, err: ErrTUNAccess}
	case kindPermission:
		return withUsernsDiagnosis(&wrapped{msg: "netns: " + e.Msg, err: unix.EPERM}, hostRoot)
	}
	return errors.New("netns: " + e.Msg)
}

// wrapped is an error whose text came over the socket and whose identity
// (for errors.Is) is restored on this side.
type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.err }

// maxMsg bounds a message: a config with its command line. A datagram
// must fit the socket's send buffer (net.core.wmem_default, 208 KiB by
// default), so the environment goes by exec instead.
const maxMsg = 128 << 10

func writeMsg(c *net.UnixConn, m message, fd *int) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > maxMsg {
		return fmt.Errorf("message of %d bytes is over %d (command line too long?)", len(b), maxMsg)
	}
	var oob []byte
	if fd != nil {
		oob = unix.UnixRights(*fd)
	}
	_, _, err = c.WriteMsgUnix(b, oob, nil)
	return err
}

// readMsg returns the next message and the descriptor it carried, -1 if
// none. The end of the peer is io.EOF.
func readMsg(c *net.UnixConn) (message, int, error) {
	var m message
	buf := make([]byte, maxMsg)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	fd := -1
	if oobn > 0 {
		if cmsgs, perr := unix.ParseSocketControlMessage(oob[:oobn]); perr == nil {
			for _, cm := range cmsgs {
				fds, _ := unix.ParseUnixRights(&cm)
				for _, f := range fds {
					if fd < 0 {
						fd = f
					} else {
						unix.Close(f) // only one is ever sent
					}
				}
			}
		}
	}
	if n == 0 && (err == nil || errors.Is(err, io.EOF)) {
		// A zero-length read on a SEQPACKET socket is the peer's end
		// (net reports it as io.EOF).
		return m, fd, errEOF
	}
	if err != nil {
		return m, fd, err
	}
	if n == joinFailLen && [4]byte(buf[:4]) == joinFailMagic {
		m.joinErr = joinFailure(buf[:n])
		return m, fd, nil
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		return m, fd, errors.New("truncated message")
	}
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		return m, fd, fmt.Errorf("bad message: %w", err)
	}
	return m, fd, nil
}

var errEOF = errors.New("helper closed the control socket")
