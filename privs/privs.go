// Package privs drops the process's privileges once tungate holds what it
// needs (its TUN devices and sockets): every capability but, optionally,
// CAP_NET_ADMIN, from the effective, permitted, inheritable, ambient and
// bounding sets, with no_new_privs set so no exec can win any back.
//
// Capabilities are per thread in Linux and the Go runtime runs many
// threads, so every change must reach all of them: libcap's cap package
// does each capset and prctl on every thread through its psx package
// (libpsx with cgo, syscall.AllThreadsSyscall without), which is why it is
// used here rather than raw unix.Capset.
package privs

import (
	"errors"
	"fmt"
	"syscall"

	"kernel.org/pub/linux/libs/security/libcap/cap"
)

// prSetNoNewPrivs is PR_SET_NO_NEW_PRIVS from linux/prctl.h.
const prSetNoNewPrivs = 38

// securebits lock the root exceptions away (capabilities(7), "The
// securebits flags"): uid 0 gains nothing by exec (NOROOT), changing uids
// changes no capability set (NO_SETUID_FIXUP), keep-caps cannot be turned
// on and ambient capabilities cannot be raised; each is locked.
const securebits = cap.SecbitNoRoot | cap.SecbitNoRootLocked |
	cap.SecbitNoSetUIDFixup | cap.SecbitNoSetUIDFixupLocked |
	cap.SecbitKeepCapsLocked |
	cap.SecbitNoCapAmbientRaise | cap.SecbitNoCapAmbientRaiseLocked

// Result says what Drop left.
type Result struct {
	// Kept is CAP_NET_ADMIN when it was asked for and held; none else.
	Kept []cap.Value
	// BoundingDropped is false when the process lacked CAP_SETPCAP and
	// could not shrink its bounding set (a service started with only
	// ambient capabilities, whose manager shrank it already). Harmless
	// with no_new_privs: the bounding set only limits what an exec gains.
	BoundingDropped bool
}

// Drop drops every capability of every thread except CAP_NET_ADMIN when
// keepNetAdmin is set and the process holds it, clears the inheritable and
// ambient sets, shrinks the bounding set to what is kept, locks the
// securebits and sets no_new_privs. It verifies the result and fails
// rather than leave more than it reports.
func Drop(keepNetAdmin bool) (Result, error) {
	var res Result
	if _, err := cap.Prctlw(prSetNoNewPrivs, 1, 0, 0, 0); err != nil {
		return res, fmt.Errorf("set no_new_privs: %w", err)
	}
	cur := cap.GetProc()
	if keepNetAdmin {
		if ok, _ := cur.GetFlag(cap.Permitted, cap.NET_ADMIN); ok {
			res.Kept = []cap.Value{cap.NET_ADMIN}
		}
	}
	kept := func(v cap.Value) bool { return len(res.Kept) > 0 && v == cap.NET_ADMIN }
	if ok, _ := cur.GetFlag(cap.Permitted, cap.SETPCAP); ok {
		w, err := cur.Dup()
		if err != nil {
			return res, err
		}
		if err := w.SetFlag(cap.Effective, true, cap.SETPCAP); err != nil {
			return res, err
		}
		if err := w.SetProc(); err != nil {
			return res, fmt.Errorf("raise CAP_SETPCAP: %w", err)
		}
		for v := cap.Value(0); v < cap.MaxBits(); v++ {
			if kept(v) {
				continue
			}
			if err := cap.DropBound(v); err != nil {
				return res, fmt.Errorf("drop %s from the bounding set: %w", v, err)
			}
		}
		if err := securebits.Set(); err != nil {
			return res, fmt.Errorf("set securebits: %w", err)
		}
		res.BoundingDropped = true
	}
	if err := cap.ResetAmbient(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return res, fmt.Errorf("clear the ambient set: %w", err)
	}
	want := cap.NewSet()
	for _, f := range []cap.Flag{cap.Effective, cap.Permitted} {
		if err := want.SetFlag(f, true, res.Kept...); err != nil {
			return res, err
		}
	}
	if err := want.SetProc(); err != nil {
		return res, fmt.Errorf("set capabilities %q: %w", want, err)
	}
	if d, err := cap.GetProc().Cf(want); err != nil || d != 0 {
		return res, fmt.Errorf("capabilities are %q after the drop, want %q", cap.GetProc(), want)
	}
	for v := cap.Value(0); v < cap.MaxBits(); v++ {
		if a, err := cap.GetAmbient(v); err == nil && a {
			return res, fmt.Errorf("%s still ambient after the drop", v)
		}
		if b, err := cap.GetBound(v); err == nil && b && !kept(v) && res.BoundingDropped {
			return res, fmt.Errorf("%s still in the bounding set after the drop", v)
		}
	}
	return res, nil
}
