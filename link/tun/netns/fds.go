package netns

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// SignalReady tells whoever started tungate that the namespace's network
// is up, as slirp4netns's --ready-fd does: it writes "1" to fd and closes
// it.
func SignalReady(fd int) error {
	f := os.NewFile(uintptr(fd), "ready-fd")
	if f == nil {
		return fmt.Errorf("ready fd %d is not a descriptor", fd)
	}
	_, err := f.Write([]byte("1"))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("ready fd %d: %w", fd, err)
	}
	return nil
}

// WatchExitFD returns a channel closed when fd becomes readable or its
// other end is closed, as slirp4netns's --exit-fd asks: the starter keeps
// the write end of a pipe and closes it (or dies) to make tungate exit. The
// descriptor is left open.
func WatchExitFD(fd int) (<-chan struct{}, error) {
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
		return nil, fmt.Errorf("exit fd %d: %w", fd, err)
	}
	c := make(chan struct{})
	go func() {
		defer close(c)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, -1)
			if err == unix.EINTR {
				continue
			}
			// POLLHUP, POLLERR and POLLNVAL come whether asked or not;
			// any of them, like data, is the signal to go.
			if err != nil || n > 0 {
				return
			}
		}
	}()
	return c, nil
}
