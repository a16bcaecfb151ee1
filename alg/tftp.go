package alg

import (
	"encoding/binary"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"tungate/conntrack"
	"tungate/packet"
)

var broadcast4 = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// tftpHelper is the TFTP helper (Linux's nf_conntrack_tftp with
// nf_nat_tftp): a read or write request makes the server's answer, which
// comes from a new port (RFC 1350 section 4), RELATED.
type tftpHelper struct {
	timeout time.Duration
}

func newTFTP(c TFTPConfig) *tftpHelper { return &tftpHelper{timeout: time.Duration(c.Timeout)} }

func (*tftpHelper) Name() string { return "tftp" }

func (*tftpHelper) Proto() uint8 { return packet.ProtoUDP }

// TFTP opcodes (RFC 1350 section 5).
const (
	tftpRRQ = 1
	tftpWRQ = 2
)

// Help expects, for each request, a flow from the server (any port) to the
// client's port as the server sees it; that flow follows the master's NAT.
func (t *tftpHelper) Help(x *Context) Verdict {
	if x.Dir != conntrack.DirOriginal || len(x.Data) < 2 {
		return Accept
	}
	if op := binary.BigEndian.Uint16(x.Data); op != tftpRRQ && op != tftpWRQ {
		return Accept
	}
	c := x.Conn
	o, r := c.Tuple(conntrack.DirOriginal), c.Tuple(conntrack.DirReply)
	e := &conntrack.Expectation{
		Tuple: conntrack.Tuple{
			Src: r.Src, Dst: r.Dst, DstPort: r.DstPort,
			Proto: packet.ProtoUDP, Family: r.Family,
		},
		Mask:    conntrack.FullMask,
		Master:  c,
		Helper:  "tftp",
		Expires: x.Table().Now() + int64(t.timeout),
	}
	e.Mask.SrcPort = 0
	x.FollowMaster(e, o.Dst, o.Src, o.SrcPort)
	if err := x.Expect(e, 1); err != nil {
		x.Log().Warn("tftp: cannot add expectation", zap.Error(err))
		return Drop
	}
	return Accept
}
