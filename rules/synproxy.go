package rules

import (
	"fmt"
	"slices"

	"tungate/packet"
)

// Defaults of a synproxy rule: window scale 10, and timestamps and SACK
// on, which carry the client's window scale and SACK permission through
// the cookie. The gateway advertises a window scale for a server it has
// not reached yet; Linux requires it to equal the server's (nft's example
// says 7), tungate rescales the server's windows when they differ, so the
// value only bounds the window the client can see (65535 << scale) and
// its granularity (1 << scale bytes). 7 capped the window at 8 MiB, below
// what a Linux server with large buffers offers (scale 10 seen here),
// and an iperf3 flow through the proxy lost a quarter of its rate to it;
// 10 allows 64 MiB in steps of 1 KiB.
const defaultSynProxyWScale = 10

// synproxy compiles action = "synproxy". The gateway proxies the
// handshake of the TCP connections the rule takes, so it needs TCP alone
// and a connection to the far side: the forward hook (user chains may be
// jumped to from any hook; there the gateway refuses the packet, counted).
func (rp *ruleParser) synproxy() {
	r := rp.r
	if rp.raw {
		rp.errf("action", "synproxy is not available in raw.prerouting (it runs before connection tracking)")
		return
	}
	if rp.chain.base && rp.chain.hook != HookForward {
		rp.errf("action", "synproxy only works in filter.forward (or a chain it jumps to): the gateway proxies connections it forwards")
		return
	}
	if !rp.hasProto || len(rp.protoPos) != 1 || rp.protoPos[0] != packet.ProtoTCP || !rp.r.proto.only(packet.ProtoTCP) {
		rp.errf("action", `synproxy needs proto = "tcp"`)
		return
	}
	r.verdict = actSynProxy
	if _, ok := rp.m["synproxy"]; !ok {
		r.synproxy = SynProxyOptions{WScale: defaultSynProxyWScale}
	}
	o := r.synproxy
	v := "synproxy"
	if o.MSS != 0 {
		v += fmt.Sprintf(" mss %d", o.MSS)
	}
	v += fmt.Sprintf(" wscale %d", o.WScale)
	if !o.NoTS {
		v += " timestamp"
	}
	if !o.NoSACK {
		v += " sack-perm"
	}
	rp.verb = v
}

var synproxyKeys = []string{"mss", "wscale", "timestamp", "sack_perm"}

// synproxyOpts compiles synproxy = { mss = N, wscale = N, timestamp =
// bool, sack_perm = bool }. It runs before action (keys are parsed in
// ruleKeys order), so action's text sees the options.
func (rp *ruleParser) synproxyOpts(v any) {
	if a, _ := rp.m["action"].(string); a != "synproxy" {
		rp.errf("synproxy", `only with action = "synproxy"`)
		return
	}
	m, ok := v.(map[string]any)
	if !ok {
		rp.errf("synproxy", "want a table { mss, wscale, timestamp, sack_perm }, got %s", describe(v))
		return
	}
	o := SynProxyOptions{WScale: defaultSynProxyWScale}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		x := m[k]
		switch k {
		case "mss":
			n, ok := x.(int64)
			if !ok || n < minClampMSS || n > maxClampMSS {
				rp.errf("synproxy.mss", "want a number %d-%d, got %s", minClampMSS, maxClampMSS, describe(x))
				continue
			}
			o.MSS = uint16(n)
		case "wscale":
			n, ok := x.(int64)
			if !ok || n < 0 || n > 14 {
				rp.errf("synproxy.wscale", "want a number 0-14 (RFC 7323), got %s", describe(x))
				continue
			}
			o.WScale = uint8(n)
		case "timestamp", "sack_perm":
			b, ok := x.(bool)
			if !ok {
				rp.errf("synproxy."+k, "want true or false, got %s", describe(x))
				continue
			}
			if k == "timestamp" {
				o.NoTS = !b
			} else {
				o.NoSACK = !b
			}
		default:
			rp.errf("synproxy", "unknown key %q%s", k, suggest(k, synproxyKeys))
		}
	}
	rp.r.synproxy = o
}

// HasSynProxy reports whether some rule's action is synproxy: the gateway
// then looks after the connections such rules opened when their packets
// arrive as INVALID (see the gateway's synproxyProbe).
func (rs *Ruleset) HasSynProxy() bool { return rs != nil && rs.synproxy }
