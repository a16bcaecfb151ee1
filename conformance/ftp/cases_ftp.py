#!/usr/bin/python3
"""Differential conformance cases for the FTP and TFTP helpers.

Same world as ../../shared/conformance/cases.py and ../cases_more.py: scapy
probes play the client (10.10.0.2, 10.10.0.3, fd10::2) and the server side
(198.18.0.2, 198.18.0.3, 2001:db8:1::2) with AF_PACKET sockets on the links
of the client and server namespaces (probe.py of the shared sample, imported
by path); the device under test sits in between: Linux netfilter with
nf_conntrack_ftp/nf_nat_ftp and nf_conntrack_tftp/nf_nat_tftp (the
reference; helpers assigned by `ct helper set` for tcp dport 21 and udp
dport 69) or the tungate binary ([helpers.ftp] ports = [21],
[helpers.tftp] ports = [69]). Forward policy drop, established/related
accept, invalid drop, new from lan accept; masquerade on wan (IPv4 and IPv6,
NAT66 to 2001:db8:1::1).

Groups (run.sh's group_conf): ftp (that config), strict (new from lan only
to tcp 21/2121 and udp, so a data connection passes only as RELATED; a rule
assigns the ftp helper to tcp 2121), nonat (plain routing, no NAT).

Every expectation encodes what Linux does and was checked with `run.sh
kernel`; cases where tungate deliberately differs are kernel-only or
gateway-only, with the reason. The FTP cases also read the expectation table
(`conntrack -L expect`, or `tungate ct expect`) and compare its lines
token for token.

Each case prints "PASS Fnn name" or "FAIL Fnn name: why"; the last line is
"N passed, M failed".
"""
import os, random, sys
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402
from common import *  # noqa: E402,F403  (helpers shared with ../cases_more.py)
from scapy.all import IP, IPv6, TCP, UDP  # noqa: E402

C_IP, C2_IP, GW_LAN, GW_WAN = "10.10.0.2", "10.10.0.3", "10.10.0.1", "198.18.0.1"
S_IP, S2_IP = "198.18.0.2", "198.18.0.3"
C6, GW6_WAN, S6, S6_2 = "fd10::2", "2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::3"
EXP_TIMEOUT = (290, 300)   # a fresh expectation: nf_conntrack_ftp/tftp's 5 min

common.PORT_BASE = 41000
Ct.TUPLE_KEYS = ("src", "dst", "sport", "dport", "type", "code", "id")  # helper= goes to extra
CTX_CMD = ""   # the expectation table's command (--ctx), set by common.main
rnd = random.Random(2121)

# ---------------------------------------------------------------- ct tables


def expects():
    """The expectation table: [(timeout, rest of the line)]."""
    out = []
    for l in run_lines(CTX_CMD, "ct expect"):
        t = l.split(None, 1)
        if len(t) == 2 and t[0].isdigit():
            out.append((int(t[0]), t[1]))
    return out


def exp_line(proto, src, dst, dport, msrc, mdst, msport, mdport, helper, v6=False):
    """The `conntrack -L expect` line of a helper's expectation, without its
    leading timeout: any source port, everything else exact."""
    m = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" if v6 else "255.255.255.255"
    return (f"proto={proto} src={src} dst={dst} sport=0 dport={dport} "
            f"mask-src={m} mask-dst={m} sport=0 dport=65535 "
            f"master-src={msrc} master-dst={mdst} sport={msport} dport={mdport} "
            f"class=0 helper={helper}")


def exp_master_sport(l):
    """The master's source port in an expectation line (the sport= after
    master-src=), or None."""
    t = l.split()
    for i, tok in enumerate(t):
        if tok.startswith("master-src="):
            for x in t[i + 1:]:
                if x.startswith("sport="):
                    return x[6:]
    return None


def exp_of_master(msport):
    """Expectations whose master's source port is msport."""
    return [(t, l) for t, l in expects() if exp_master_sport(l) == str(msport)]


def check_expect(want, msport):
    """Exactly one expectation of this master, equal to want, fresh."""
    got = exp_of_master(msport)
    check(got, f"no expectation of the master with sport={msport}; want: {want}; table: {expects()}")
    check(len(got) == 1, f"{len(got)} expectations of the master with sport={msport}: {got}")
    t, l = got[0]
    check(l == want, f"expectation line differs:\n    got:  {l}\n    want: {want}")
    lo, hi = EXP_TIMEOUT
    check(lo <= t <= hi, f"expectation timeout {t}, want {lo}..{hi}: {l}")


def check_no_expect(msport, what):
    got = exp_of_master(msport)
    check(not got, f"{what}: expectation listed: {got}")

# ---------------------------------------------------------------- packets


# ---------------------------------------------------------------- TCP flow


class Tcp:
    """One TCP connection the probes play. Normally the client is on the lan
    link and the server on the wan link; rev=True puts the client on the
    wan link talking to the gateway's address (a DNAT port forward to the
    server on the lan). cnxt/snxt are each side's own next sequence
    number; cd/sd are how much the gateway has grown the client->server /
    server->client byte stream so far (a rewritten PORT or 227), so the
    server sees the client's sequence number cnxt+cd and the client sees
    the server's snxt+sd. Every forwarded segment's seq and ack are checked
    against that: each peer must see a consistent stream."""

    def __init__(self, cport, sport=21, v6=False, dst=None, cip=None, rev=False, srv_port=None):
        self.v6, self.rev = v6, rev
        self.ssport = srv_port or sport   # the server's port (a port forward may change it)
        if rev:
            self.cs, self.ss = srv, cli
            self.cip = cip or (S6 if v6 else S_IP)
            self.cdst = dst or (GW6_WAN if v6 else GW_WAN)
            self.sip = C6 if v6 else C_IP
        else:
            self.cs, self.ss = cli, srv
            self.cip = cip or (C6 if v6 else C_IP)
            self.cdst = self.sip = dst or (S6 if v6 else S_IP)
        self.cport, self.sport = cport, sport
        self.cisn, self.sisn = rnd.randrange(1 << 30, 1 << 31), rnd.randrange(1 << 30, 1 << 31)
        self.cnxt, self.snxt = self.cisn, self.sisn
        self.cd = self.sd = 0
        self.nat_ip, self.nat_port = None, None

    def L3(self, src, dst):
        return IPv6(src=src, dst=dst) if self.v6 else IP(src=src, dst=dst)

    def c_pkt(self, flags, seq=None, ack=None, data=b"", opts=None):
        a = (self.snxt + self.sd) if ack is None else ack
        return self.L3(self.cip, self.cdst) / TCP(
            sport=self.cport, dport=self.sport, flags=fl(flags), window=65535, options=opts or [],
            seq=(self.cnxt if seq is None else seq) & 0xffffffff,
            ack=a & 0xffffffff if "A" in flags else 0) / data

    def s_pkt(self, flags, seq=None, ack=None, data=b"", opts=None):
        a = (self.cnxt + self.cd) if ack is None else ack
        return self.L3(self.sip, self.nat_ip) / TCP(
            sport=self.ssport, dport=self.nat_port, flags=fl(flags), window=65535, options=opts or [],
            seq=(self.snxt if seq is None else seq) & 0xffffffff,
            ack=a & 0xffffffff if "A" in flags else 0) / data

    def c_raw(self, *a, **kw):
        self.cs.send(self.c_pkt(*a, **kw))

    def s_raw(self, *a, **kw):
        self.ss.send(self.s_pkt(*a, **kw))

    def at_server(self, timeout=YES, flags=None):
        return self.ss.recv(timeout, m_l4(6, sport=self.nat_port, dport=self.ssport, src=self.nat_ip,
                                          dst=self.sip, flags=None if flags is None else fl(flags)), raw=True)

    def at_client(self, timeout=YES, flags=None):
        return self.cs.recv(timeout, m_l4(6, sport=self.sport, dport=self.cport, src=self.cdst, dst=self.cip,
                                          flags=None if flags is None else fl(flags)), raw=True)

    def handshake(self):
        self.c_raw("S", seq=self.cisn)
        r = self.ss.recv(YES, m_l4(6, dport=self.ssport, dst=self.sip, flags=SYN), raw=True)
        check(r is not None, f"client SYN to {self.cdst} port {self.sport} not forwarded to {self.sip}:{self.ssport}")
        check_csum(r, "forwarded SYN")
        self.nat_ip, self.nat_port = r[1].src, l3l4(r[1])[2].sport
        self.cnxt = (self.cisn + 1) & 0xffffffff
        self.s_raw("SA", seq=self.sisn, ack=self.cnxt)
        r = self.at_client(flags="SA")
        check(r is not None, "SYN/ACK not forwarded to the client")
        self.snxt = (self.sisn + 1) & 0xffffffff
        self.c_raw("A")
        check(self.at_server(flags="A") is not None, "handshake ACK not forwarded")
        return self

    def c_send(self, data, expect=True, what="client data"):
        """The client sends data; returns the payload the server got (None
        when not forwarded, which must be what expect says). The server's
        view of seq and ack is checked."""
        return self._send(True, data, expect, what)

    def s_send(self, data, expect=True, what="server data"):
        """The same from the server: the client's view is checked."""
        return self._send(False, data, expect, what)

    def _send(self, from_client, data, expect, what):
        if from_client:
            self.c_raw("PA", data=data)
            r = self.at_server(YES if expect else NO)
            me, peer, nxt, d, pnxt, pd = "client", "server", self.cnxt, self.cd, self.snxt, self.sd
        else:
            self.s_raw("PA", data=data)
            r = self.at_client(YES if expect else NO)
            me, peer, nxt, d, pnxt, pd = "server", "client", self.snxt, self.sd, self.cnxt, self.cd
        if not expect:
            check(r is None, f"{what} {data!r} forwarded: {summ(r)} {payload(r) if r else b''!r}")
            return None
        check(r is not None, f"{what} {data!r} ({me} seq {nxt}) not forwarded")
        check_csum(r, f"forwarded {what}")
        t = l3l4(r[1])[2]
        got = payload(r)
        check(t.seq == (nxt + d) & 0xffffffff,
              f"{what}: {peer} sees seq {t.seq}, want {(nxt + d) & 0xffffffff} "
              f"({me} seq {nxt} + {d} bytes added by earlier rewrites)")
        check(t.ack == pnxt & 0xffffffff,
              f"{what}: {peer} sees ack {t.ack}, want {pnxt} ({me} ack {pnxt + pd} "
              f"- {pd} bytes the gateway added to the {peer}'s stream)")
        nxt, d = (nxt + len(data)) & 0xffffffff, d + len(got) - len(data)
        if from_client:
            self.cnxt, self.cd = nxt, d
        else:
            self.snxt, self.sd = nxt, d
        return got

    def s_ack(self):
        """The server acknowledges everything; the client must see the ack
        mapped back to its own numbering."""
        self.s_raw("A")
        r = self.at_client(flags="A")
        check(r is not None, "server ACK not forwarded")
        t = l3l4(r[1])[2]
        check(t.ack == self.cnxt & 0xffffffff,
              f"server ACK: client sees ack {t.ack}, want {self.cnxt} "
              f"(server ack {(self.cnxt + self.cd) & 0xffffffff}, {self.cd} bytes added)")
        return r

    def c_ack(self):
        self.c_raw("A")
        r = self.at_server(flags="A")
        check(r is not None, "client ACK not forwarded")
        t = l3l4(r[1])[2]
        check(t.ack == self.snxt & 0xffffffff,
              f"client ACK: server sees ack {t.ack}, want {self.snxt} "
              f"(client ack {(self.snxt + self.sd) & 0xffffffff}, {self.sd} bytes added)")
        return r

    def login(self):
        """Banner, USER, 331: each side's first line (Linux's helper parses a
        segment only where it follows a complete line of the same
        direction)."""
        self.s_send(b"220 conformance FTP ready\r\n")
        self.c_send(b"USER anonymous\r\n")
        self.s_send(b"331 Guest login ok\r\n")
        return self

    def ct(self):
        return ct_one("tcp", src=self.cip, sport=self.cport, dport=self.sport)


def ftp(k=0, v6=False, sport=21, dst=None, rev=False, cip=None, srv_port=None):
    """A logged-in control connection."""
    return Tcp(port(k), sport, v6=v6, dst=dst, rev=rev, cip=cip, srv_port=srv_port).handshake().login()


def port_arg(ip, p):
    return f"{ip.replace('.', ',')},{p >> 8},{p & 255}"


def data_conn(a, b, src, sport, dst, dport, seen, v6=False, expect=True, what="data"):
    """Side a opens a data connection src:sport -> dst:dport. With expect,
    the SYN must reach side b as seen = (src, sport, dst, dport) (None: any
    value), b's SYN/ACK must reach a as the exact reverse of what a sent,
    and a data segment must pass; returns the (src, sport, dst, dport) b
    saw. Without expect, nothing of it may reach b. Segments are told apart
    by their random sequence numbers, so a mistranslated one is still
    recognised (and reported)."""
    L3 = IPv6 if v6 else IP
    isn = rnd.randrange(1 << 30, 1 << 31)
    a.send(L3(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="S", seq=isn, window=65535))
    m = lambda p: l3l4(p)[1] == 6 and l3l4(p)[2].seq == isn and int(l3l4(p)[2].flags) == SYN
    r = b.recv(YES if expect else NO, m, raw=True)
    if not expect:
        check(r is None, f"{what} SYN {src}:{sport} -> {dst}:{dport} forwarded: {summ(r)}")
        return None
    check(r is not None, f"{what} SYN {src}:{sport} -> {dst}:{dport} not forwarded")
    check_csum(r, f"forwarded {what} SYN")
    l3, _, t = l3l4(r[1])
    got = (l3.src, t.sport, l3.dst, t.dport)
    check(all(w is None or w == g for w, g in zip(seen, got)),
          f"{what} SYN {src}:{sport} -> {dst}:{dport} arrived as {got[0]}:{got[1]} -> {got[2]}:{got[3]}, "
          f"want {seen[0] or '*'}:{seen[1] or '*'} -> {seen[2] or '*'}:{seen[3] or '*'}")
    risn = rnd.randrange(1 << 30, 1 << 31)
    b.send(L3(src=got[2], dst=got[0]) / TCP(sport=got[3], dport=got[1], flags="SA", seq=risn, ack=isn + 1,
                                             window=65535))
    r = a.recv(YES, lambda p: l3l4(p)[1] == 6 and l3l4(p)[2].seq == risn, raw=True)
    check(r is not None, f"{what} SYN/ACK not forwarded back")
    l3, _, t = l3l4(r[1])
    check((l3.src, t.sport, l3.dst, t.dport) == (dst, dport, src, sport),
          f"{what} SYN/ACK arrived as {l3.src}:{t.sport} -> {l3.dst}:{t.dport}, want {dst}:{dport} -> {src}:{sport}")
    a.send(L3(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="PA", seq=isn + 1, ack=risn + 1,
                                      window=65535) / b"DATA")
    r = b.recv(YES, lambda p: l3l4(p)[1] == 6 and l3l4(p)[2].seq == isn + 1, raw=True)
    check(r is not None, f"data on the {what} connection not forwarded")
    check(payload(r) == b"DATA", f"{what} connection payload altered")
    return got


def data_from_server(src, sport, dst, dport, v6=False, expect=True, cdst=None, cport=None):
    """The wan-side server opens an active-mode data connection; it must
    reach the client at cdst:cport from src:sport unchanged."""
    return data_conn(srv, cli, src, sport, dst, dport, (src, sport, cdst, cport), v6, expect)


def data_from_client(cip, cport, dst, dport, v6=False, expect=True, nat_ip=None, nat_port=None):
    """The lan-side client opens a passive-mode data connection; it must
    reach the server from nat_ip (nat_port, if given); returns the source
    port the server saw."""
    got = data_conn(cli, srv, cip, cport, dst, dport, (nat_ip, nat_port, dst, dport), v6, expect)
    return got and got[1]

# ---------------------------------------------------------------- UDP


def udp_send(side, src, dst, sport, dport, data, v6=False):
    L3 = IPv6 if v6 else IP
    side.send(L3(src=src, dst=dst) / UDP(sport=sport, dport=dport) / data)

# ================================================================= cases
CASES, case = registry("ftp")


def port_through(f, cport_data, cip=None):
    """The client sends PORT for cip:cport_data; returns the port the server
    was told (checked: the rewritten line announces 198.18.0.1)."""
    cip = cip or C_IP
    got = f.c_send(f"PORT {port_arg(cip, cport_data)}\r\n".encode(), what="PORT")
    check(got.startswith(b"PORT 198,18,0,1,") and got.endswith(b"\r\n"),
          f"PORT not rewritten to the masquerade address: server got {got!r}")
    n = [int(x) for x in got[5:-2].split(b",")]
    check(len(n) == 6, f"rewritten PORT malformed: {got!r}")
    return n[4] * 256 + n[5]

# ---------------------------------------------------------------- group ftp


@case()
def F01_port_masquerade():
    "PORT is rewritten to 198,18,0,1; ct expect lists it; the data connection from port 20 is RELATED and DNATed"
    f = ftp()
    dp = port(5)
    ext = port_through(f, dp)
    check(ext == dp, f"announced port {dp} not kept (nothing else uses it): {ext}")
    check(f.cd == 1, f"stream grew by {f.cd}, want 1 (10,10,0,2 -> 198,18,0,1)")
    check_expect(exp_line(6, S_IP, GW_WAN, ext, C_IP, S_IP, f.cport, 21, "ftp"), f.cport)
    f.s_send(b"200 PORT command successful\r\n")
    e = f.ct()
    check(e.extra.get("helper") == "ftp", f"control connection lacks helper=ftp: {e.line}")
    check(e.state == "ESTABLISHED", f"control connection state {e.state}: {e.line}")
    data_from_server(S_IP, 20, GW_WAN, ext, cdst=C_IP, cport=dp)
    d = ct_one("tcp", src=S_IP, sport=20, dport=ext)
    check(d.orig.get("dst") == GW_WAN and d.reply.get("src") == C_IP and d.reply.get("sport") == str(dp)
          and d.reply.get("dst") == S_IP and d.reply.get("dport") == "20",
          f"data connection entry: {d.line}")
    check("helper" not in d.extra, f"the data connection has a helper: {d.line}")
    e = f.ct()
    check(e.line.endswith("[ASSURED] mark=0 helper=ftp use=2"),
          f"master with one live child: want '... [ASSURED] mark=0 helper=ftp use=2', got {e.line}")
    check_no_expect(f.cport, "after the data connection came")
    f.s_send(b"150 Opening data connection\r\n")
    f.c_send(b"QUIT\r\n")


@case()
def F02_eprt_v4():
    "EPRT |1| is rewritten to |1|198.18.0.1|port|; expectation and data connection as for PORT"
    f = ftp()
    dp = port(5)
    got = f.c_send(f"EPRT |1|{C_IP}|{dp}|\r\n".encode(), what="EPRT")
    want = f"EPRT |1|{GW_WAN}|{dp}|\r\n".encode()
    check(got == want, f"EPRT at the server: {got!r}, want {want!r}")
    check_expect(exp_line(6, S_IP, GW_WAN, dp, C_IP, S_IP, f.cport, 21, "ftp"), f.cport)
    f.s_send(b"200 EPRT command successful\r\n")
    data_from_server(S_IP, 20, GW_WAN, dp, cdst=C_IP, cport=dp)
    f.c_send(b"NOOP\r\n")
    f.s_ack()


@case()
def F03_eprt_v6():
    "EPRT |2| over IPv6 is rewritten to the NAT66 address 2001:db8:1::1; the data connection is DNATed to fd10::2"
    f = ftp(v6=True)
    check(f.nat_ip == GW6_WAN, f"control connection not masqueraded: {f.nat_ip}")
    dp = port(5)
    got = f.c_send(f"EPRT |2|{C6}|{dp}|\r\n".encode(), what="EPRT")
    check(got.startswith(b"EPRT |2|") and got.endswith(f"|{dp}|\r\n".encode()),
          f"EPRT at the server: {got!r}")
    import ipaddress
    a = got[8:].split(b"|")[0].decode()
    check(ipaddress.ip_address(a) == ipaddress.ip_address(GW6_WAN),
          f"EPRT announces {a}, want {GW6_WAN}: {got!r}")
    check_expect(exp_line(6, S6, GW6_WAN, dp, C6, S6, f.cport, 21, "ftp", v6=True), f.cport)
    f.s_send(b"200 EPRT command successful\r\n")
    data_from_server(S6, 20, GW6_WAN, dp, v6=True, cdst=C6, cport=dp)
    f.c_send(b"NOOP\r\n")
    f.s_ack()


@case()
def F25_eprt_v6_text_form():
    "EPRT |2| is rewritten with the address in Linux's %pI6 form: 2001:0db8:0001:0000:0000:0000:0000:0001"
    # nf_nat_ftp formats "|2|%pI6|%u|": eight 4-digit groups, no "::".
    # Any RFC 4291 text form is valid for a server; the bytes (and so the
    # seq offset, here +21) are Linux's.
    f = ftp(v6=True)
    dp = port(5)
    got = f.c_send(f"EPRT |2|{C6}|{dp}|\r\n".encode(), what="EPRT")
    want = f"EPRT |2|2001:0db8:0001:0000:0000:0000:0000:0001|{dp}|\r\n".encode()
    check(got == want, f"EPRT at the server: {got!r}, want {want!r}")
    f.s_send(b"200 EPRT command successful\r\n")
    f.c_send(b"NOOP\r\n")
    f.s_ack()


@case()
def F04_pasv_227():
    "227 reply: expectation from the client to the server's port; the client's data connection is SNATed"
    f = ftp()
    f.c_send(b"PASV\r\n")
    sp = port(6)
    got = f.s_send(f"227 Entering Passive Mode ({port_arg(S_IP, sp)}).\r\n".encode(), what="227")
    check(got == f"227 Entering Passive Mode ({port_arg(S_IP, sp)}).\r\n".encode(),
          f"227 altered on the way to the client: {got!r}")
    check_expect(exp_line(6, C_IP, S_IP, sp, C_IP, S_IP, f.cport, 21, "ftp"), f.cport)
    np = data_from_client(C_IP, port(7), S_IP, sp, nat_ip=GW_WAN, nat_port=port(7))
    d = ct_one("tcp", src=C_IP, sport=port(7), dport=sp)
    check(d.reply.get("dst") == GW_WAN, f"data connection entry: {d.line}")
    check_no_expect(f.cport, "after the data connection came")
    f.c_send(b"RETR x\r\n")


@case()
def F05_epsv_229():
    "229 reply (IPv4 and IPv6): expectation from the client to the server's announced port"
    for v6 in (False, True):
        f = ftp(k=10 if v6 else 0, v6=v6)
        f.c_send(b"EPSV\r\n")
        sp = port(16 if v6 else 6)
        line = f"229 Entering Extended Passive Mode (|||{sp}|)\r\n".encode()
        got = f.s_send(line, what="229")
        check(got == line, f"229 altered: {got!r}")
        c, s = (C6, S6) if v6 else (C_IP, S_IP)
        check_expect(exp_line(6, c, s, sp, c, s, f.cport, 21, "ftp", v6=v6), f.cport)
        data_from_client(c, port(17 if v6 else 7), s, sp, v6=v6, nat_ip=GW6_WAN if v6 else GW_WAN)
        check_no_expect(f.cport, "after the data connection came")


@case()
def F06_seq_adjust_both_ways():
    "after a PORT grows the stream, seq (client->server) and ack (server->client) are adjusted, also over a second rewrite"
    f = ftp()
    port_through(f, port(5))
    check(f.cd == 1, f"first PORT grew the stream by {f.cd}, want 1")
    f.s_ack()                               # ack mapped back by 1
    f.s_send(b"200 PORT command successful\r\n")
    f.c_send(b"LIST\r\n")                   # seq +1 at the server
    f.s_send(b"150 Here comes the listing\r\n")
    f.c_ack()
    port_through(f, port(6))                # second rewrite: +2 in total
    check(f.cd == 2, f"after two PORTs the stream grew by {f.cd}, want 2")
    f.s_ack()
    f.s_send(b"200 PORT command successful\r\n")
    f.c_send(b"NLST\r\n")
    f.s_ack()
    # FIN both ways with the adjusted numbers
    cli.send(f.c_pkt("FA"))
    r = f.at_server(flags="FA")
    check(r is not None, "client FIN not forwarded")
    t = l3l4(r[1])[2]
    check(t.seq == (f.cnxt + f.cd) & 0xffffffff, f"FIN seq at the server {t.seq}, want {f.cnxt + f.cd}")
    f.cnxt += 1
    srv.send(f.s_pkt("FA"))
    r = f.at_client(flags="FA")
    check(r is not None, "server FIN not forwarded")
    t = l3l4(r[1])[2]
    check(t.ack == f.cnxt & 0xffffffff, f"server FIN/ACK acks {t.ack} at the client, want {f.cnxt}")


@case()
def F07_sack_adjusted():
    "a SACK block from the server over bytes after the rewrite is mapped back to the client's numbering"
    f = ftp()
    port_through(f, port(5))
    f.s_send(b"200 PORT command successful\r\n")
    s0 = f.cnxt
    f.c_send(b"LIST\r\n")
    f.c_send(b"NOOP\r\n")
    # the server acks up to LIST and SACKs the NOOP (its numbering: +1)
    le, re_ = (s0 + 6 + f.cd) & 0xffffffff, (s0 + 12 + f.cd) & 0xffffffff
    srv.send(f.s_pkt("A", ack=(s0 + 6 + f.cd) & 0xffffffff, opts=[("NOP", None), ("NOP", None), ("SAck", (le, re_))]))
    r = f.at_client(flags="A")
    check(r is not None, "server ACK with SACK not forwarded")
    t = l3l4(r[1])[2]
    check(t.ack == (s0 + 6) & 0xffffffff, f"ack at the client {t.ack}, want {s0 + 6}")
    sack = [o for o in t.options if o[0] == "SAck"]
    check(sack, f"SACK option lost: {t.options}")
    want = ((s0 + 6) & 0xffffffff, (s0 + 12) & 0xffffffff)
    check(tuple(sack[0][1]) == want, f"SACK block at the client {sack[0][1]}, want {want} (server's {(le, re_)})")
    check_csum(r, "forwarded SACK")


@case()
def F08_port_split_dropped():
    "a PORT segment that ends inside the argument is dropped; the whole line resent passes rewritten"
    f = ftp()
    dp = port(5)
    line = f"PORT {port_arg(C_IP, dp)}\r\n".encode()
    f.c_send(line[:16], expect=False, what="first part of PORT")
    ext = port_through(f, dp)
    check_expect(exp_line(6, S_IP, GW_WAN, ext, C_IP, S_IP, f.cport, 21, "ftp"), f.cport)
    f.s_send(b"200 PORT command successful\r\n")
    f.c_send(b"NOOP\r\n")
    f.s_ack()


@case()
def F09_port_split_cmd_word():
    "a segment holding only the start of the word PORT is dropped as a partial match too; the whole line resent passes"
    # nf_conntrack_ftp find_pattern(): a segment at a line start that is no
    # longer than "PORT " and a case-insensitive prefix of it is a partial
    # match, and the helper drops the packet (NF_DROP).
    f = ftp()
    dp = port(5)
    s0 = f.cnxt
    errs = []
    f.c_raw("PA", data=b"PO")
    r = f.at_server(NO)
    if r is not None:
        errs.append(f"'PO' alone forwarded ({summ(r)}; Linux drops it as a partial match)")
    # the client resends from the same sequence number, now the whole line
    line = f"PORT {port_arg(C_IP, dp)}\r\n".encode()
    f.c_raw("PA", seq=s0, data=line)
    r = f.at_server()
    if r is None:
        errs.append("the whole PORT line resent from the same seq was not forwarded")
    else:
        t = l3l4(r[1])[2]
        want = f"PORT {port_arg(GW_WAN, dp)}\r\n".encode()
        if t.seq != s0 or payload(r) != want:
            errs.append(f"resent PORT reached the server as seq {t.seq} {payload(r)!r}, want seq {s0} {want!r}")
    got = exp_of_master(f.cport)
    want = exp_line(6, S_IP, GW_WAN, dp, C_IP, S_IP, f.cport, 21, "ftp")
    if [l for _, l in got] != [want]:
        errs.append(f"expectations {got}, want [{want}]")
    check(not errs, "; ".join(errs))


@case()
def F10_port_third_party():
    "PORT announcing another address (10.10.0.3) is ignored: passed unchanged, no expectation"
    f = ftp()
    dp = port(5)
    line = f"PORT {port_arg(C2_IP, dp)}\r\n".encode()
    got = f.c_send(line, what="third-party PORT")
    check(got == line, f"third-party PORT altered: {got!r}")
    check_no_expect(f.cport, "third-party PORT")
    f.s_send(b"200 PORT command successful\r\n")
    data_from_server(S_IP, 20, GW_WAN, dp, expect=False)
    f.c_send(b"NOOP\r\n")


@case()
def F11_pasv_third_party():
    "227 announcing another server (198.18.0.3) is ignored: passed unchanged, no expectation"
    f = ftp()
    f.c_send(b"PASV\r\n")
    sp = port(6)
    line = f"227 Entering Passive Mode ({port_arg(S2_IP, sp)}).\r\n".encode()
    got = f.s_send(line, what="227")
    check(got == line, f"227 altered: {got!r}")
    check_no_expect(f.cport, "third-party 227")


@case()
def F12_second_port_replaces():
    "a second PORT replaces the first expectation (max_expected 1): only the second port opens"
    f = ftp()
    e1 = port_through(f, port(5))
    f.s_send(b"200 PORT command successful\r\n")
    e2 = port_through(f, port(6))
    f.s_send(b"200 PORT command successful\r\n")
    check_expect(exp_line(6, S_IP, GW_WAN, e2, C_IP, S_IP, f.cport, 21, "ftp"), f.cport)
    data_from_server(S_IP, 20, GW_WAN, e1, expect=False)
    data_from_server(S_IP, 20, GW_WAN, e2, cdst=C_IP, cport=port(6))


@case()
def F13_rst_expectation_lives_with_master():
    "after a RST of the control connection the expectation lives (and matches) until the master's CLOSE entry goes"
    # Linux removes a master's expectations only when the master itself is
    # deleted (nf_ct_delete -> nf_ct_remove_expectations), not when a RST
    # moves it to CLOSE (10 s): until then the data connection still opens.
    f = ftp()
    e1 = port_through(f, port(5))
    f.s_send(b"200 PORT command successful\r\n")
    e2 = port_through(f, port(6))
    check_expect(exp_line(6, S_IP, GW_WAN, e2, C_IP, S_IP, f.cport, 21, "ftp"), f.cport)
    cli.send(f.c_pkt("RA"))
    check(f.at_server(flags="RA") is not None, "client RST not forwarded")
    e = f.ct()
    check(e.state == "CLOSE", f"control connection after the RST: {e.line}")
    check_expect(exp_line(6, S_IP, GW_WAN, e2, C_IP, S_IP, f.cport, 21, "ftp"), f.cport)
    data_from_server(S_IP, 20, GW_WAN, e2, cdst=C_IP, cport=port(6))
    check_no_expect(f.cport, "after the data connection came")


@case()
def F24_expectation_dies_with_master():
    "when the reset control connection's CLOSE entry expires (10 s), its expectation goes too: the data SYN is dropped"
    f = ftp()
    ext = port_through(f, port(5))
    cli.send(f.c_pkt("RA"))
    check(f.at_server(flags="RA") is not None, "client RST not forwarded")
    # listing the table makes Linux reap expired entries (ctnetlink dump)
    gone = wait_until(lambda: not ct_find("tcp", src=C_IP, sport=f.cport, dport=21), 14, 0.5)
    check(gone, f"CLOSE entry still listed 14 s after the RST: {ct_find('tcp', src=C_IP, sport=f.cport)}")
    errs = []
    left = exp_of_master(f.cport)
    if left:
        errs.append(f"master gone from ct list, its expectation still listed: {left}")
    try:
        data_from_server(S_IP, 20, GW_WAN, ext, expect=False)
    except Fail as e:
        errs.append(f"and it still matches: {e}")
    check(not errs, "; ".join(errs))


@case()
def F14_data_wrong_source():
    "a data connection from another address (198.18.0.3) or to another port does not match: dropped"
    f = ftp()
    dp = port(5)
    ext = port_through(f, dp)
    f.s_send(b"200 PORT command successful\r\n")
    data_from_server(S2_IP, 20, GW_WAN, ext, expect=False)
    data_from_server(S_IP, 20, GW_WAN, ext + 1, expect=False)
    check_expect(exp_line(6, S_IP, GW_WAN, ext, C_IP, S_IP, f.cport, 21, "ftp"), f.cport)
    data_from_server(S_IP, 20, GW_WAN, ext, cdst=C_IP, cport=dp)


@case()
def F15_no_helper_other_port():
    "a control connection to port 2100 gets no helper: PORT passes unchanged, no expectation"
    f = ftp(sport=2100)
    dp = port(5)
    line = f"PORT {port_arg(C_IP, dp)}\r\n".encode()
    got = f.c_send(line, what="PORT")
    check(got == line, f"PORT on port 2100 altered: {got!r}")
    check_no_expect(f.cport, "PORT on port 2100")
    e = f.ct()
    check("helper" not in e.extra, f"connection to port 2100 has a helper: {e.line}")
    data_from_server(S_IP, 20, GW_WAN, dp, expect=False)


@case()
def F16_port_retransmitted():
    "a retransmitted PORT is rewritten the same, at the same seq, and the stream offset is not counted twice"
    f = ftp()
    dp = port(5)
    line = f"PORT {port_arg(C_IP, dp)}\r\n".encode()
    s0, d0 = f.cnxt, f.cd
    got1 = f.c_send(line, what="PORT")
    cli.send(f.c_pkt("PA", seq=s0, data=line))
    r = f.at_server()
    check(r is not None, "retransmitted PORT not forwarded")
    t = l3l4(r[1])[2]
    check(t.seq == (s0 + d0) & 0xffffffff, f"retransmitted PORT at seq {t.seq}, want {s0 + d0}")
    check(payload(r) == got1, f"retransmission rewritten differently: {payload(r)!r} vs {got1!r}")
    check_csum(r, "retransmitted PORT")
    f.s_send(b"200 PORT command successful\r\n")
    f.c_send(b"LIST\r\n")
    f.s_ack()
    check(len(exp_of_master(f.cport)) == 1, f"expectations after the retransmission: {exp_of_master(f.cport)}")


@case(only="kernel")
def F17_port_first_segment():
    "a PORT in the client's first data segment (no complete line before it) is not parsed by Linux"
    # nf_conntrack_ftp parses a segment only if its seq is just after a
    # segment of the same direction that ended in a newline; the first
    # data segment of a direction never is. tungate deliberately parses
    # every complete line from the stream start (alg package doc,
    # "Segmentation"): see G17.
    f = Tcp(port(), 21).handshake()
    f.s_send(b"220 ready\r\n")
    line = f"PORT {port_arg(C_IP, port(5))}\r\n".encode()
    got = f.c_send(line, what="first-segment PORT")
    check(got == line, f"first-segment PORT rewritten: {got!r}")
    check_no_expect(f.cport, "first-segment PORT")


@case(only="kernel")
def F18_port_second_line():
    "a PORT that is the second line of a segment is not parsed by Linux (it matches at the segment start only)"
    # find_pattern() looks at the start of the segment only. tungate
    # deliberately parses every line of the segment (alg package doc,
    # "Segmentation"): see G18.
    f = ftp()
    line = f"NOOP\r\nPORT {port_arg(C_IP, port(5))}\r\n".encode()
    got = f.c_send(line, what="NOOP+PORT")
    check(got == line, f"PORT after NOOP in one segment rewritten: {got!r}")
    check_no_expect(f.cport, "PORT as a second line")


@case(only="gateway")
def G17_port_first_segment_gw():
    "tungate: a PORT in the client's first data segment is parsed and rewritten (Linux ignores it: F17)"
    f = Tcp(port(), 21).handshake()
    f.s_send(b"220 ready\r\n")
    dp = port(5)
    got = f.c_send(f"PORT {port_arg(C_IP, dp)}\r\n".encode(), what="first-segment PORT")
    check(got == f"PORT {port_arg(GW_WAN, dp)}\r\n".encode(), f"first-segment PORT: {got!r}")
    check_expect(exp_line(6, S_IP, GW_WAN, dp, C_IP, S_IP, f.cport, 21, "ftp"), f.cport)


@case(only="gateway")
def G18_port_second_line_gw():
    "tungate: a PORT that is the second line of a segment is rewritten (Linux ignores it: F18)"
    f = ftp()
    dp = port(5)
    got = f.c_send(f"NOOP\r\nPORT {port_arg(C_IP, dp)}\r\n".encode(), what="NOOP+PORT")
    check(got == f"NOOP\r\nPORT {port_arg(GW_WAN, dp)}\r\n".encode(), f"NOOP+PORT: {got!r}")
    check_expect(exp_line(6, S_IP, GW_WAN, dp, C_IP, S_IP, f.cport, 21, "ftp"), f.cport)
    f.s_send(b"200 NOOP ok\r\n200 PORT command successful\r\n")
    f.c_send(b"LIST\r\n")
    f.s_ack()


@case()
def F19_port_lowercase():
    "a lowercase 'port' command is recognised and rewritten (the command word kept)"
    f = ftp()
    dp = port(5)
    got = f.c_send(f"port {port_arg(C_IP, dp)}\r\n".encode(), what="port")
    check(got == f"port {port_arg(GW_WAN, dp)}\r\n".encode(), f"lowercase port at the server: {got!r}")
    check_expect(exp_line(6, S_IP, GW_WAN, dp, C_IP, S_IP, f.cport, 21, "ftp"), f.cport)


@case()
def F20_eprt_other_delimiter():
    "EPRT with '!' as delimiter is parsed and rewritten by Linux with '|' (nf_nat_ftp formats \"|1|%pI4|%u|\")"
    f = ftp()
    dp = port(5)
    got = f.c_send(f"EPRT !1!{C_IP}!{dp}!\r\n".encode(), what="EPRT")
    want = f"EPRT |1|{GW_WAN}|{dp}|\r\n".encode()
    check(got == want, f"EPRT with ! at the server: {got!r}, want {want!r}")
    check_expect(exp_line(6, S_IP, GW_WAN, dp, C_IP, S_IP, f.cport, 21, "ftp"), f.cport)


@case()
def F26_port_clash_other_port():
    "two lan hosts announce the same port to one server: the second PORT is rewritten to another free port"
    # nf_nat_exp_find_port(): the expectation tuple (server -> 198.18.0.1
    # :port) is taken, so another port is tried and announced instead.
    dp = port(5)
    f1 = ftp()
    e1 = port_through(f1, dp)
    check(e1 == dp, f"first announcement's port not kept: {e1}")
    f2 = Tcp(port(2), 21, cip=C2_IP).handshake().login()
    e2 = port_through(f2, dp, cip=C2_IP)
    check(e2 != dp, f"second host's PORT announces the same external port {e2}")
    check_expect(exp_line(6, S_IP, GW_WAN, e2, C2_IP, S_IP, f2.cport, 21, "ftp"), f2.cport)
    check_expect(exp_line(6, S_IP, GW_WAN, e1, C_IP, S_IP, f1.cport, 21, "ftp"), f1.cport)
    data_from_server(S_IP, 20, GW_WAN, e2, cdst=C2_IP, cport=dp)
    data_from_server(S_IP, 20, GW_WAN, e1, cdst=C_IP, cport=dp)


@case()
def F27_pasv_normalised():
    "a 227 with leading zeros is rewritten by Linux in normal form (it mangles every announcement of a NATed connection): the reply stream shrinks, seq/ack adjusted"
    f = ftp()
    f.c_send(b"PASV\r\n")
    sp = port(6)
    line = f"227 Entering Passive Mode (198,018,000,002,{sp >> 8:03d},{sp & 255:03d}).\r\n".encode()
    got = f.s_send(line, what="227")
    want = f"227 Entering Passive Mode ({port_arg(S_IP, sp)}).\r\n".encode()
    check(got == want, f"227 at the client: {got!r}, want {want!r}")
    check_expect(exp_line(6, C_IP, S_IP, sp, C_IP, S_IP, f.cport, 21, "ftp"), f.cport)
    f.c_ack()                       # the client's ack mapped back (+4)
    f.s_send(b"150 ok\r\n")       # the server's seq mapped (-4)
    f.c_send(b"NOOP\r\n")


@case()
def F28_epsv_other_delimiter():
    "a 229 with '!' as delimiter is rewritten by Linux with '|' ('|||port|')"
    f = ftp()
    f.c_send(b"EPSV\r\n")
    sp = port(6)
    got = f.s_send(f"229 Entering Extended Passive Mode (!!!{sp}!)\r\n".encode(), what="229")
    want = f"229 Entering Extended Passive Mode (|||{sp}|)\r\n".encode()
    check(got == want, f"229 at the client: {got!r}, want {want!r}")
    check_expect(exp_line(6, C_IP, S_IP, sp, C_IP, S_IP, f.cport, 21, "ftp"), f.cport)


def beyond_hole():
    """A control connection whose client sends "LIST" one PORT line ahead of
    its stream (the PORT segment missing): (f, PORT's port, the hole's seq,
    the PORT line)."""
    f = ftp()
    dp = port(5)
    line = f"PORT {port_arg(C_IP, dp)}\r\n".encode()
    s0 = f.cnxt
    f.c_raw("PA", seq=s0 + len(line), data=b"LIST\r\n")
    return f, dp, s0, line


@case(only="kernel")
def F29_segment_beyond_hole():
    "on a masqueraded control connection a segment beyond a hole passes (unparsed); the missing one then is parsed"
    # Linux: the later segment does not start after a newline it saw, so it
    # is not parsed, but it is in the window and forwarded. tungate
    # documents dropping such segments where it must rewrite (alg package
    # doc, "Segmentation"): the sender resends them.
    f, dp, s0, line = beyond_hole()
    r = f.at_server(NO + 0.6)
    check(r is not None, "segment beyond a hole not forwarded (Linux forwards it)")
    t = l3l4(r[1])[2]
    check(t.seq == s0 + len(line) and payload(r) == b"LIST\r\n", f"segment beyond the hole: seq {t.seq} {payload(r)!r}")
    ext = port_through(f, dp)
    check_expect(exp_line(6, S_IP, GW_WAN, ext, C_IP, S_IP, f.cport, 21, "ftp"), f.cport)


@case(only="kernel")
def F30_port_number_over_255():
    "PORT with a field over 255: Linux has no range check, the port wraps to 16 bits and is announced rewritten"
    # tungate deliberately counts such a line as malformed (parseFTPLine:
    # "absurd numbers") and ignores it: see G30.
    f = ftp()
    line = f"PORT {C_IP.replace('.', ',')},300,1\r\n".encode()
    got = f.c_send(line, what="PORT 300,1")
    wrapped = (300 * 256 + 1) & 0xffff
    want = f"PORT {port_arg(GW_WAN, wrapped)}\r\n".encode()
    check(got == want, f"PORT with 300 at the server: {got!r}, want {want!r}")
    check_expect(exp_line(6, S_IP, GW_WAN, wrapped, C_IP, S_IP, f.cport, 21, "ftp"), f.cport)


@case(only="gateway")
def G29_segment_beyond_hole_gw():
    "tungate: a segment beyond a hole of a rewritten direction is dropped; resent after the hole is filled, it passes adjusted"
    f, dp, _, _ = beyond_hole()
    r = f.at_server(NO)
    check(r is None, f"segment beyond a hole forwarded: {summ(r)}")
    ext = port_through(f, dp)
    check_expect(exp_line(6, S_IP, GW_WAN, ext, C_IP, S_IP, f.cport, 21, "ftp"), f.cport)
    f.c_send(b"LIST\r\n")


@case(only="gateway")
def G30_port_number_over_255_gw():
    "tungate: PORT with a field over 255 is malformed: passed unchanged, no expectation (Linux wraps it: F30)"
    f = ftp()
    line = f"PORT {C_IP.replace('.', ',')},300,1\r\n".encode()
    got = f.c_send(line, what="PORT 300,1")
    check(got == line, f"PORT with 300 at the server: {got!r}")
    check_no_expect(f.cport, "PORT with 300")


@case(only="kernel")
def F31_pasv_split_dropped():
    "a 227 split inside its argument is dropped even where no rewrite is needed (masquerade: the server's address is real)"
    # nf_conntrack_ftp drops partial matches in both directions, whatever
    # the NAT. tungate deliberately holds back only announcements it must
    # rewrite (alg package doc, "Segmentation"): see G31.
    f = ftp()
    f.c_send(b"PASV\r\n")
    sp = port(6)
    line = f"227 Entering Passive Mode ({port_arg(S_IP, sp)}).\r\n".encode()
    f.s_send(line[:34], expect=False, what="first part of 227")
    f.s_send(line, what="227")
    check_expect(exp_line(6, C_IP, S_IP, sp, C_IP, S_IP, f.cport, 21, "ftp"), f.cport)


@case(only="gateway")
def G31_pasv_split_passes_gw():
    "tungate: a 227 split inside its argument passes in two parts (no rewrite needed); the expectation follows the line end"
    f = ftp()
    f.c_send(b"PASV\r\n")
    sp = port(6)
    line = f"227 Entering Passive Mode ({port_arg(S_IP, sp)}).\r\n".encode()
    f.s_send(line[:34], what="first part of 227")
    check_no_expect(f.cport, "half a 227")
    f.s_send(line[34:], what="rest of 227")
    check_expect(exp_line(6, C_IP, S_IP, sp, C_IP, S_IP, f.cport, 21, "ftp"), f.cport)


@case()
def F32_port_on_ipv6_control():
    "PORT (an IPv4 command) on an IPv6 control connection is ignored: unchanged, no expectation"
    f = ftp(v6=True)
    dp = port(5)
    line = f"PORT {port_arg(C_IP, dp)}\r\n".encode()
    got = f.c_send(line, what="PORT over IPv6")
    check(got == line, f"PORT over IPv6 at the server: {got!r}")
    check_no_expect(f.cport, "PORT over IPv6")


@case()
def F21_tftp_rrq():
    "TFTP RRQ: expectation for the server's reply from any port; the reply (new port) reaches the client, RELATED"
    cp = port()
    udp_send(cli, C_IP, S_IP, cp, 69, b"\x00\x01file.txt\x00octet\x00")
    r = srv.recv(YES, m_l4(17, dport=69, dst=S_IP), raw=True)
    check(r is not None, "RRQ not forwarded")
    check(r[1].src == GW_WAN, f"RRQ src {r[1].src}")
    np = l3l4(r[1])[2].sport
    m = ct_one("udp", src=C_IP, sport=cp, dport=69)
    check(m.extra.get("helper") == "tftp", f"TFTP master lacks helper=tftp: {m.line}")
    got = [(t, l) for t, l in expects() if "proto=17" in l]
    want = exp_line(17, S_IP, GW_WAN, np, C_IP, S_IP, cp, 69, "tftp")
    check(len(got) == 1 and got[0][1] == want, f"tftp expectation {got}, want {want}")
    udp_send(srv, S_IP, GW_WAN, 5001, np, b"\x00\x03\x00\x01hello")
    r = cli.recv(YES, m_l4(17, sport=5001, dport=cp), raw=True)
    check(r is not None, "TFTP DATA from the server's new port not forwarded")
    check(r[1].src == S_IP and r[1].dst == C_IP, f"TFTP DATA at the client: {summ(r)}")
    check_csum(r, "TFTP DATA")
    udp_send(cli, C_IP, S_IP, cp, 5001, b"\x00\x04\x00\x01")
    r = srv.recv(YES, m_l4(17, sport=np, dport=5001), raw=True)
    check(r is not None, "TFTP ACK to the server's new port not forwarded")
    check(r[1].src == GW_WAN, f"TFTP ACK src {r[1].src}")
    check(not [l for t, l in expects() if "proto=17" in l], f"tftp expectation left: {expects()}")
    e = ct_one("udp", src=S_IP, sport=5001)
    check(e.orig.get("dst") == GW_WAN and e.reply.get("src") == C_IP, f"TFTP data flow entry: {e.line}")


@case()
def F22_tftp_v6():
    "TFTP WRQ over IPv6 (NAT66): the server's answer from a new port reaches fd10::2"
    cp = port()
    udp_send(cli, C6, S6, cp, 69, b"\x00\x02up.bin\x00octet\x00", v6=True)
    r = srv.recv(YES, m_l4(17, dport=69, dst=S6), raw=True)
    check(r is not None, "WRQ not forwarded")
    check(r[1].src == GW6_WAN, f"WRQ src {r[1].src}")
    np = l3l4(r[1])[2].sport
    got = [(t, l) for t, l in expects() if "proto=17" in l]
    want = exp_line(17, S6, GW6_WAN, np, C6, S6, cp, 69, "tftp", v6=True)
    check(len(got) == 1 and got[0][1] == want, f"tftp expectation {got}, want {want}")
    udp_send(srv, S6, GW6_WAN, 5002, np, b"\x00\x04\x00\x00", v6=True)
    r = cli.recv(YES, m_l4(17, sport=5002, dport=cp), raw=True)
    check(r is not None, "TFTP ACK from the server's new port not forwarded")
    check(r[1].src == S6 and r[1].dst == C6, f"TFTP ACK at the client: {summ(r)}")


@case()
def F23_tftp_other_opcode():
    "a TFTP packet that is not RRQ/WRQ (DATA) makes no expectation; unsolicited answers are dropped"
    cp = port()
    udp_send(cli, C_IP, S_IP, cp, 69, b"\x00\x03\x00\x01junk")
    r = srv.recv(YES, m_l4(17, dport=69, dst=S_IP), raw=True)
    check(r is not None, "datagram to port 69 not forwarded")
    np = l3l4(r[1])[2].sport
    check(not [l for t, l in expects() if "proto=17" in l], f"expectation for a DATA packet: {expects()}")
    udp_send(srv, S_IP, GW_WAN, 5003, np, b"\x00\x04\x00\x01")
    check(cli.recv(NO, m_l4(17, sport=5003)) is None, "answer from a new port forwarded without expectation")

# ---------------------------------------------------------------- group strict


@case("strict")
def S01_pasv_related():
    "PASV: the client's data connection passes a policy that admits only ports 21/2121 as new: it is RELATED"
    f = ftp()
    sp = port(6)
    data_from_client(C_IP, port(7), S_IP, sp, expect=False)     # not yet: no expectation
    f.c_send(b"PASV\r\n")
    f.s_send(f"227 Entering Passive Mode ({port_arg(S_IP, sp)}).\r\n".encode())
    data_from_client(C_IP, port(8), S_IP, sp, nat_ip=GW_WAN)
    data_from_client(C_IP, port(9), S_IP, sp, expect=False)     # used up


@case("strict")
def S02_epsv_v6_related():
    "EPSV over IPv6: the client's data connection is RELATED (the policy would drop it as new)"
    f = ftp(v6=True)
    sp = port(6)
    f.c_send(b"EPSV\r\n")
    f.s_send(f"229 Entering Extended Passive Mode (|||{sp}|)\r\n".encode())
    data_from_client(C6, port(8), S6, sp, v6=True, nat_ip=GW6_WAN)


@case("strict")
def S03_helper_by_rule():
    "a rule assigns the ftp helper to port 2121: PORT rewritten, expectation, helper=ftp, data RELATED"
    f = ftp(sport=2121)
    dp = port(5)
    ext = port_through(f, dp)
    check_expect(exp_line(6, S_IP, GW_WAN, ext, C_IP, S_IP, f.cport, 2121, "ftp"), f.cport)
    e = f.ct()
    check(e.extra.get("helper") == "ftp", f"control connection on 2121 lacks helper=ftp: {e.line}")
    data_from_server(S_IP, 20, GW_WAN, ext, cdst=C_IP, cport=dp)


@case("strict")
def S04_pasv_no_helper_port():
    "without a helper (port 2100 is not even admitted): nothing; a 227-like reply opens nothing on port 21's peer"
    f = ftp()
    # the expectation is per master: a PASV data connection to another
    # server port than announced stays unrelated
    sp = port(6)
    f.c_send(b"PASV\r\n")
    f.s_send(f"227 Entering Passive Mode ({port_arg(S_IP, sp)}).\r\n".encode())
    data_from_client(C_IP, port(8), S_IP, sp + 1, expect=False)
    data_from_client(C_IP, port(9), S2_IP, sp, expect=False)

# ---------------------------------------------------------------- group nonat


@case("nonat")
def N01_port_no_nat():
    "without NAT PORT passes unchanged (no seq offset) and the expectation is for the client's own address"
    f = ftp()
    check(f.nat_ip == C_IP, f"control connection translated without NAT: {f.nat_ip}")
    dp = port(5)
    line = f"PORT {port_arg(C_IP, dp)}\r\n".encode()
    got = f.c_send(line, what="PORT")
    check(got == line, f"PORT altered without NAT: {got!r}")
    check_expect(exp_line(6, S_IP, C_IP, dp, C_IP, S_IP, f.cport, 21, "ftp"), f.cport)
    f.s_send(b"200 PORT command successful\r\n")
    data_from_server(S_IP, 20, C_IP, dp, cdst=C_IP, cport=dp)


@case("nonat")
def N02_pasv_no_nat():
    "without NAT a 227 makes the expectation client -> server port; the data connection passes"
    f = ftp()
    f.c_send(b"PASV\r\n")
    sp = port(6)
    f.s_send(f"227 Entering Passive Mode ({port_arg(S_IP, sp)}).\r\n".encode())
    check_expect(exp_line(6, C_IP, S_IP, sp, C_IP, S_IP, f.cport, 21, "ftp"), f.cport)
    data_from_client(C_IP, port(7), S_IP, sp, nat_ip=C_IP)


@case("nonat")
def N03_eprt_v6_no_nat():
    "without NAT EPRT |2| over IPv6 passes unchanged and the server's data connection reaches fd10::2"
    f = ftp(v6=True)
    dp = port(5)
    line = f"EPRT |2|{C6}|{dp}|\r\n".encode()
    got = f.c_send(line, what="EPRT")
    check(got == line, f"EPRT altered without NAT: {got!r}")
    check_expect(exp_line(6, S6, C6, dp, C6, S6, f.cport, 21, "ftp", v6=True), f.cport)
    data_from_server(S6, 20, C6, dp, v6=True, cdst=C6, cport=dp)


@case("nonat", only="kernel")
def N04_port_split_no_nat():
    "without NAT a PORT split inside its argument is still dropped by Linux (partial match); resent whole it passes"
    # tungate deliberately drops nothing where nothing is rewritten: N05.
    f = ftp()
    dp = port(5)
    line = f"PORT {port_arg(C_IP, dp)}\r\n".encode()
    f.c_send(line[:16], expect=False, what="first part of PORT")
    got = f.c_send(line, what="PORT")
    check(got == line, f"PORT altered without NAT: {got!r}")
    check_expect(exp_line(6, S_IP, C_IP, dp, C_IP, S_IP, f.cport, 21, "ftp"), f.cport)


@case("nonat", only="gateway")
def N05_port_split_no_nat_gw():
    "tungate: without NAT a PORT split inside its argument passes in two parts; the expectation follows the line end"
    f = ftp()
    dp = port(5)
    line = f"PORT {port_arg(C_IP, dp)}\r\n".encode()
    f.c_send(line[:16], what="first part of PORT")
    f.c_send(line[16:], what="rest of PORT")
    check_expect(exp_line(6, S_IP, C_IP, dp, C_IP, S_IP, f.cport, 21, "ftp"), f.cport)


# ---------------------------------------------------------------- group dnat
# A port forward 198.18.0.1:21 (and 2121) -> 10.10.0.2:21, [2001:db8:1::1]:21
# -> [fd10::2]:21: the FTP client is on the wan side (198.18.0.2), the
# server on the lan (10.10.0.2). The forward policy admits new connections
# from the wan only to port 21 with ct status dnat, so data connections pass
# only as RELATED.


@case("dnat")
def D01_pasv_dnat_rewritten():
    "the lan server's 227 (10,10,0,2) is rewritten to 198,18,0,1; server->client seq and client->server ack adjusted"
    f = ftp(rev=True)
    check(f.nat_ip == S_IP, f"the server sees the client as {f.nat_ip}")
    f.c_send(b"PASV\r\n")
    sp = port(6)
    got = f.s_send(f"227 Entering Passive Mode ({port_arg(C_IP, sp)}).\r\n".encode(), what="227")
    want = f"227 Entering Passive Mode ({port_arg(GW_WAN, sp)}).\r\n".encode()
    check(got == want, f"227 at the wan client: {got!r}, want {want!r}")
    check(f.sd == 1, f"reply stream grew by {f.sd}, want 1")
    check_expect(exp_line(6, S_IP, GW_WAN, sp, S_IP, GW_WAN, f.cport, 21, "ftp"), f.cport)
    f.c_ack()                                   # ack mapped back by 1
    f.s_send(b"150 Opening BINARY mode data connection\r\n")
    f.c_send(b"RETR x\r\n")
    # the wan client's data connection to 198.18.0.1:sp goes to 10.10.0.2:sp
    data_conn(srv, cli, S_IP, port(7), GW_WAN, sp, (S_IP, port(7), C_IP, sp))
    check_no_expect(f.cport, "after the data connection came")
    f.s_send(b"226 Transfer complete\r\n")
    f.c_ack()


@case("dnat")
def D02_port_from_wan_client():
    "the wan client's PORT needs no rewrite; the lan server's data connection from port 20 is SNATed to 198.18.0.1"
    f = ftp(rev=True)
    dp = port(5)
    line = f"PORT {port_arg(S_IP, dp)}\r\n".encode()
    got = f.c_send(line, what="PORT")
    check(got == line, f"wan client's PORT altered: {got!r}")
    check_expect(exp_line(6, C_IP, S_IP, dp, S_IP, GW_WAN, f.cport, 21, "ftp"), f.cport)
    f.s_send(b"200 PORT command successful\r\n")
    data_conn(cli, srv, C_IP, 20, S_IP, dp, (GW_WAN, 20, S_IP, dp))


@case("dnat")
def D03_epsv_dnat_v6():
    "EPSV through an IPv6 port forward: 229 unchanged; the client's data connection reaches [fd10::2]:port as RELATED"
    f = ftp(rev=True, v6=True)
    f.c_send(b"EPSV\r\n")
    sp = port(6)
    line = f"229 Entering Extended Passive Mode (|||{sp}|)\r\n".encode()
    got = f.s_send(line, what="229")
    check(got == line, f"229 altered: {got!r}")
    check_expect(exp_line(6, S6, GW6_WAN, sp, S6, GW6_WAN, f.cport, 21, "ftp", v6=True), f.cport)
    data_conn(srv, cli, S6, port(7), GW6_WAN, sp, (S6, port(7), C6, sp), v6=True)


@case("dnat")
def D04_dnat_other_port_gets_helper():
    "a forward from 198.18.0.1:2121 to 10.10.0.2:21 gets the ftp helper (by the server's port): 227 rewritten"
    f = ftp(rev=True, sport=2121, srv_port=21)
    e = ct_one("tcp", src=S_IP, sport=f.cport, dport=2121)
    check(e.extra.get("helper") == "ftp", f"forwarded control connection lacks helper=ftp: {e.line}")
    f.c_send(b"PASV\r\n")
    sp = port(6)
    got = f.s_send(f"227 Entering Passive Mode ({port_arg(C_IP, sp)}).\r\n".encode(), what="227")
    want = f"227 Entering Passive Mode ({port_arg(GW_WAN, sp)}).\r\n".encode()
    check(got == want, f"227 at the wan client: {got!r}, want {want!r}")
    check_expect(exp_line(6, S_IP, GW_WAN, sp, S_IP, GW_WAN, f.cport, 2121, "ftp"), f.cport)
    data_conn(srv, cli, S_IP, port(7), GW_WAN, sp, (S_IP, port(7), C_IP, sp))


@case("dnat")
def D05_pasv_dnat_unrelated_blocked():
    "without an announcement a wan connection to the lan server's data port is dropped (policy admits only 21)"
    f = ftp(rev=True)
    sp = port(6)
    data_conn(srv, cli, S_IP, port(7), GW_WAN, sp, (S_IP, port(7), C_IP, sp), expect=False)
    f.c_send(b"PASV\r\n")
    f.s_send(f"227 Entering Passive Mode ({port_arg(C_IP, sp)}).\r\n".encode(), what="227")
    data_conn(srv, cli, S2_IP, port(8), GW_WAN, sp, (None, None, None, None), expect=False)
    data_conn(srv, cli, S_IP, port(9), GW_WAN, sp, (S_IP, port(9), C_IP, sp))


def verbose(msg):
    if os.environ.get("CT_VERBOSE"):
        print("  " + msg, file=sys.stderr, flush=True)

# ================================================================= main


def show_tables():
    """CT_VERBOSE: both tables after a failed case."""
    if os.environ.get("CT_VERBOSE"):
        try:
            verbose("ct list:\n    " + "\n    ".join(run_lines(CT_CMD, "ct list")))
            verbose("ct expect:\n    " + "\n    ".join(run_lines(CTX_CMD, "ct expect")))
        except Fail:
            pass


if __name__ == "__main__":
    common.main(CASES, globals(), "ftp", extra_cmds={"--ctx": "CTX_CMD"}, on_fail=show_tables)
