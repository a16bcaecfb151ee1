package alg

import (
	"tungate/conntrack"
	"tungate/packet"
)

// synproxyAdjust translates what differs between the server's handshake
// and the one the gateway's SYN proxy made with the client, beyond the
// sequence numbers (seqAdjust): the server's timestamps are moved into
// the client's view (Linux's synproxy_tstamp_adjust), and its window is
// rescaled when its window scale is not the one the gateway advertised
// for it. The client's window needs it only when the server declined
// window scaling, which the client, scaling by its own, cannot know.
func synproxyAdjust(p *packet.Parsed, st *conntrack.SynProxy, d conntrack.Dir) {
	if st.TSOff != 0 {
		if d == conntrack.DirReply {
			p.AdjustTCPTimestamps(st.TSOff, 0)
		} else {
			p.AdjustTCPTimestamps(0, st.TSOff)
		}
	}
	if p.TCPFlags&packet.TCPSyn != 0 {
		return // a SYN's window is never scaled (RFC 7323 2.2)
	}
	var from, to uint8
	switch {
	case d == conntrack.DirReply:
		from, to = scaleOf(st.SrvWScale), scaleOf(st.OurWScale)
	case st.CliWScale != packet.NoWScale && st.SrvWScale == packet.NoWScale:
		from, to = st.CliWScale, 0
	}
	if from == to {
		return
	}
	raw := p.TCPWindow()
	win := uint32(raw) << from >> to
	if win == 0 && raw != 0 {
		// Rounded down to nothing, a small open window would read as
		// shut and the sender would wait for an update that may never
		// come: one unit instead.
		win = 1
	}
	p.SetTCPWindow(uint16(min(win, 0xffff)))
}

// scaleOf is a window shift, 0 for none.
func scaleOf(ws uint8) uint8 {
	if ws == packet.NoWScale {
		return 0
	}
	return ws
}
