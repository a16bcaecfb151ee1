package gateway

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"tungate/link/tun"
)

// maxReadFailures is how many reads in a row may fail with nothing read
// before the link counts as failed, whatever the error: a device that
// only fails is gone, and spinning on it would burn a core.
const maxReadFailures = 1000

// linkFailed reports whether a read error means the device is gone: the
// kernel answers EBADFD once a TUN is deleted under its descriptor (tun's
// read finds no device), ENODEV/ENXIO/EIO for other vanished devices.
func linkFailed(err error, failures int) bool {
	return errors.Is(err, unix.EBADFD) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO) ||
		errors.Is(err, unix.EIO) || failures >= maxReadFailures
}

// Reattach backoff: the first retry soon (a TUN re-created by a script),
// then slower, up to a few seconds.
const (
	reattachFirst = 50 * time.Millisecond
	reattachMax   = 5 * time.Second
)

// linkEnded runs when the reader of link l (attachment gen) returns. A
// link closed on purpose ends quietly; one whose device failed goes down:
// logged once with the reason, shown down in status and metrics, its
// routes withdrawn so traffic to it is answered with ICMP unreachable, and
// a loop attaches it again when its device comes back.
func (g *Gateway) linkEnded(l *Link, gen uint64, err error) {
	if err == nil || g.closed.Load() || l.st.removed.Load() {
		return
	}
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	st := l.st
	if st.gen.Load() != gen || g.closed.Load() || st.removed.Load() {
		return
	}
	pl := g.pl.Load()
	s := slotOfState(pl, st)
	if s < 0 {
		return
	}
	cur := pl.links[s]
	reason := err.Error()
	st.downReason.Store(&reason)
	st.down.Store(true)
	l.Dev.Close()
	g.setDown(s, true)
	ic := &pl.cfg.Interface[indexOfSlot(pl, s)]
	if ic.TUNFD != nil {
		g.log.Error("interface down; an inherited tun_fd cannot be attached again (its descriptor went with the device): restart with a new one",
			zap.String("interface", cur.Name), zap.Error(err))
		return
	}
	g.log.Error("interface down; its routes are withdrawn until the device comes back",
		zap.String("interface", cur.Name), zap.String("device", st.ident), zap.Error(err))
	if ctx := g.runCtx; ctx != nil {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			g.reattach(ctx, st)
		}()
	}
}

// setDown marks slot s down or up in a new plane whose routes leave out
// the down links. Called with reloadMu held.
func (g *Gateway) setDown(s int, down bool) {
	cur := g.pl.Load()
	pl := *cur
	pl.down = append([]bool(nil), cur.down...)
	pl.down[s] = down
	pl.buildRoutes()
	g.pl.Store(&pl)
}

// reattach opens the device of a down link again once it exists, with
// backoff, until the gateway stops or a reload removes the interface.
func (g *Gateway) reattach(ctx context.Context, st *linkState) {
	wait := reattachFirst
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, reattachMax)
		if g.tryReattach(st) {
			return
		}
	}
}

// tryReattach makes one attempt; true: done (attached, or nothing left to
// attach).
func (g *Gateway) tryReattach(st *linkState) bool {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	if g.closed.Load() || st.removed.Load() {
		return true
	}
	pl := g.pl.Load()
	s := slotOfState(pl, st)
	if s < 0 {
		return true
	}
	ic := &pl.cfg.Interface[indexOfSlot(pl, s)]
	if ic.Kind == KindTUN && ic.TUN != "" {
		exists := tun.Exists
		if g.tunProbe != nil {
			exists = g.tunProbe.exists
		}
		// Only attach to the device when it is back: creating it here
		// would hide that it went away.
		if !exists(ic.TUN) {
			return false
		}
	}
	l, err := g.openLink(ic, s, st)
	if err != nil {
		g.log.Debug("interface still down", zap.String("interface", ic.Name), zap.Error(err))
		return false
	}
	cur := *pl
	cur.links = append([]*Link(nil), pl.links...)
	cur.links[s] = l
	cur.down = append([]bool(nil), pl.down...)
	cur.down[s] = false
	cur.buildRoutes()
	g.log.Info("interface up again", zap.String("interface", ic.Name), zap.String("device", st.ident))
	g.pl.Store(&cur)
	st.down.Store(false)
	g.startReader(l)
	return true
}

// slotOfState finds the slot of the link with state st, -1 for none.
func slotOfState(pl *plane, st *linkState) int {
	for s, l := range pl.links {
		if l != nil && l.st == st {
			return s
		}
	}
	return -1
}

// indexOfSlot is the config position of slot s, -1 for none.
func indexOfSlot(pl *plane, s int) int {
	for i, x := range pl.slots {
		if x == s {
			return i
		}
	}
	return -1
}
