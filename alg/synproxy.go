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
// for it. The client's window needs nothing: the server learnt the
// client's own scale. The connection is locked.
func synproxyAdjust(p *packet.Parsed, st *conntrack.SynProxy, d conntrack.Dir) {
	if st.TSOff != 0 {
		if d == conntrack.DirReply {
			p.AdjustTCPTimestamps(st.TSOff, 0)
		} else {
			p.AdjustTCPTimestamps(0, st.TSOff)
		}
	}
	if d != conntrack.DirReply || p.TCPFlags&packet.TCPSyn != 0 {
		return // a SYN's window is never scaled (RFC 7323 2.2)
	}
	srv, our := scaleOf(st.SrvWScale), scaleOf(st.OurWScale)
	if srv == our {
		return
	}
	win := uint32(p.TCPWindow()) << srv >> our
	p.SetTCPWindow(uint16(min(win, 0xffff)))
}

// scaleOf is a window shift, 0 for none.
func scaleOf(ws uint8) uint8 {
	if ws == packet.NoWScale {
		return 0
	}
	return ws
}
