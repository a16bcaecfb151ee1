"""Helpers shared by the differential conformance suites: cases_more.py and
ftp/cases_ftp.py. Both play the same world (probe.py of the shared sample
on the client and server links, the device under test in between) and both
read the connection table the same way, so the plumbing lives here once:
failures, flags, ports, polling, `conntrack -L` parsing, checksum checks,
L4 matchers, the case registry and the runner.

The runner publishes its state (cli, srv, CT_CMD, TARGET, CUR, and any
extra per-suite command) both here and in the calling suite's globals, so
cases keep using the plain names.
"""
import argparse, os, signal, struct, subprocess, sys, time, traceback
sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("CONF_SHARED") or os.path.normpath(
    os.path.join(HERE, "..", "..", "shared", "conformance"))
if not os.path.isfile(os.path.join(SHARED, "probe.py")):
    SHARED = "/work/shared/conformance"
sys.path.insert(0, SHARED)
from probe import Side  # noqa: E402  (the shared sample's probe, by path)
from scapy.all import IP, IPv6  # noqa: E402
from scapy.layers.inet import in4_chksum  # noqa: E402
from scapy.layers.inet6 import in6_chksum  # noqa: E402
from scapy.utils import checksum  # noqa: E402

NO = 0.4    # wait for a packet that must NOT arrive
YES = 2.0   # wait for a packet that must arrive (returns at once when it does)

# runner state, published into the suite's globals too (see main)
cli = srv = None
CT_CMD = ""
TARGET = ""
CUR = 0        # index of the running case, for its ports
PORT_BASE = 40000   # each suite its own range, so their flows never meet

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
FLAGS = {"F": FIN, "S": SYN, "R": RST, "P": PSH, "A": ACK, "U": URG, "E": 0x40, "C": 0x80}


def fl(s):
    """"SA" -> SYN|ACK."""
    v = 0
    for ch in s:
        v |= FLAGS[ch]
    return v


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def port(k=0):
    """A port of the running case: every case has 20 of its own."""
    return PORT_BASE + CUR * 20 + k


def summ(p):
    if p is None:
        return "none"
    if isinstance(p, tuple):
        p = p[1]
    return p.summary()


def wait_until(cond, timeout, step=0.1):
    """Poll cond until it returns a true value or timeout passes."""
    end = time.time() + timeout
    while True:
        v = cond()
        if v or time.time() >= end:
            return v
        time.sleep(step)

# ---------------------------------------------------------------- ct tables


def run_lines(cmd, what):
    """The non-empty lines cmd prints (a shell command: ct list, ct expect)."""
    p = subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.communicate()
        raise Fail(f"{what} timed out (10 s)")
    if p.returncode != 0 and not out.strip():
        raise Fail(f"{what} failed rc={p.returncode}: {(err or '').strip()[:160]}")
    return [l.strip() for l in out.splitlines() if l.strip()]


class Ct:
    """One `conntrack -L` line: proto, timeout, state, orig/reply fields, flags.

    TUPLE_KEYS None puts every key=value into orig/reply (GRE keys and ESP
    SPIs are tuple parts); a suite that wants only the address/port fields
    there sets it, and the other keys (helper=, mark=, ...) land in extra."""
    TUPLE_KEYS = None

    def __init__(self, line):
        self.line = line.strip()
        t = self.line.split()
        i = 2 if t[0] in ("ipv4", "ipv6") else 0
        self.proto, self.timeout = t[i], int(t[i + 2])
        rest = t[i + 3:]
        self.state = None
        if rest and "=" not in rest[0] and not rest[0].startswith("["):
            self.state = rest[0]
            rest = rest[1:]
        self.orig, self.reply, self.extra, self.flags = {}, {}, {}, set()
        nsrc = 0
        for tok in rest:
            if tok.startswith("["):
                self.flags.add(tok.strip("[]"))
            elif "=" in tok:
                k, v = tok.split("=", 1)
                if k == "src":
                    nsrc += 1
                if self.TUPLE_KEYS is None or k in self.TUPLE_KEYS:
                    d = self.orig if nsrc <= 1 else self.reply
                    d.setdefault(k, v)
                else:
                    self.extra[k] = v

    def __repr__(self):
        return self.line


def ct_all():
    out = []
    for l in run_lines(CT_CMD, "ct list"):
        try:
            out.append(Ct(l))
        except (ValueError, IndexError):
            pass
    return out


def ct_find(proto, **orig):
    """Entries of proto whose original tuple has the given fields."""
    want = {k: str(v) for k, v in orig.items()}
    return [e for e in ct_all() if e.proto == proto and all(e.orig.get(k) == v for k, v in want.items())]


def ct_one(proto, **orig):
    l = ct_find(proto, **orig)
    check(l, f"no {proto} ct entry with {orig}")
    check(len(l) == 1, f"{len(l)} {proto} ct entries with {orig}: {l}")
    return l[0]

# ---------------------------------------------------------------- packets


def l3l4(p):
    """(l3, proto, l4) of a parsed packet; IPv6 extension headers skipped."""
    if isinstance(p, IP):
        return p, p.proto, p.payload
    if isinstance(p, IPv6):
        nh, pl = p.nh, p.payload
        while nh in (0, 43, 60) and hasattr(pl, "nh"):
            nh, pl = pl.nh, pl.payload
        return p, nh, pl
    return None, None, None


def raw_csum_problem(raw):
    """None if the IPv4/IPv6 packet's IP and L4 checksums are valid, else text."""
    v = raw[0] >> 4
    if v == 4:
        ihl = (raw[0] & 15) * 4
        if checksum(raw[:ihl]) != 0:
            return "bad IPv4 header checksum"
        tot = struct.unpack("!H", raw[2:4])[0]
        if struct.unpack("!H", raw[6:8])[0] & 0x3fff:
            return None  # a fragment: no L4 checksum to check alone
        proto, l4 = raw[9], raw[ihl:tot]
        ip = IP(raw[:tot])
        if proto == 17 and l4[6:8] == b"\0\0":
            return None
        if proto in (6, 17) and in4_chksum(proto, ip, l4) != 0:
            return f"bad {'TCP' if proto == 6 else 'UDP'} checksum"
        if proto == 1 and checksum(l4) != 0:
            return "bad ICMP checksum"
        return None
    if v == 6:
        plen = struct.unpack("!H", raw[4:6])[0]
        nh, off = raw[6], 40
        while nh in (0, 43, 60) and off + 2 <= len(raw):
            nh, off = raw[off], off + (raw[off + 1] + 1) * 8
        if nh == 44:
            return None
        l4 = raw[off:40 + plen]
        if nh in (6, 17, 58):
            cs = in6_chksum(nh, IPv6(raw[:40]), l4)
            if cs != 0:
                return f"bad L4 checksum (nh {nh})"
        return None
    return "not IP"


def check_csum(r, what):
    raw = r[0]
    if getattr(raw, "partial", False):
        return  # CHECKSUM_PARTIAL: completed by offload later
    bad = raw_csum_problem(raw)
    check(bad is None, f"{what}: {bad}")


def m_l4(proto, sport=None, dport=None, src=None, dst=None, flags=None):
    def m(p):
        l3, pr, l4 = l3l4(p)
        if l3 is None or pr != proto:
            return False
        if isinstance(p, IP) and p.frag != 0:
            return False
        return ((sport is None or l4.sport == sport) and (dport is None or l4.dport == dport)
                and (src is None or l3.src == src) and (dst is None or l3.dst == dst)
                and (flags is None or int(l4.flags) == flags))
    return m


def payload(r):
    return bytes(l3l4(r[1])[2].payload)

# ================================================================= cases


def registry(default_group):
    """A fresh case list and its decorator: @case(group, only=...) registers
    a case; only="kernel"/"gateway" for a documented deliberate difference
    between Linux and tungate."""
    cases = []

    def case(group=default_group, only=None):
        def deco(fn):
            fn.group, fn.only = group, only
            fn.cid = fn.__name__.split("_")[0]
            cases.append(fn)
            return fn
        return deco
    return cases, case


def _publish(g, **kw):
    globals().update(kw)
    g.update(kw)


def main(cases, g, default_group, extra_cmds=None, on_fail=None):
    """Parse run.sh's arguments and run the selected cases of one group.
    g is the suite's globals(); extra_cmds maps more options to the global
    they set (the FTP suite's --ctx -> CTX_CMD); on_fail runs after a
    failed case."""
    extra_cmds = extra_cmds or {}
    ap = argparse.ArgumentParser()
    ap.add_argument("--list-groups", action="store_true")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--target", default="gateway")
    ap.add_argument("--group", default=default_group)
    ap.add_argument("--cns"); ap.add_argument("--sns")
    ap.add_argument("--cif"); ap.add_argument("--sif")
    ap.add_argument("--cmac"); ap.add_argument("--smac")
    ap.add_argument("--ct")
    for opt in extra_cmds:
        ap.add_argument(opt)
    ap.add_argument("--cases", nargs="*")
    a = ap.parse_args()
    sel = [fn for fn in cases if not a.cases or fn.cid in a.cases]
    if a.list_groups:
        seen = []
        for fn in sel:
            if fn.group not in seen:
                seen.append(fn.group)
        print(" ".join(seen))
        return
    if a.list:
        for fn in sel:
            tag = f" [{fn.only}-only]" if fn.only else ""
            print(f"{fn.cid} ({fn.group}){tag} {fn.__doc__.splitlines()[0]}")
        return
    _publish(g, CT_CMD=a.ct, TARGET=a.target,
             **{name: getattr(a, opt.lstrip("-").replace("-", "_")) for opt, name in extra_cmds.items()})
    _publish(g, cli=Side(a.cns, a.cif, a.cmac), srv=Side(a.sns, a.sif, a.smac))
    npass = nfail = 0
    for fn in sel:
        if fn.group != a.group:
            continue
        name = fn.__doc__.split("\n")[0]
        if fn.only and fn.only != TARGET:
            print(f"SKIP {fn.cid} {name} ({fn.only}-only)", flush=True)
            continue
        _publish(g, CUR=cases.index(fn))
        cli.drain(); srv.drain()
        t0 = time.time()
        try:
            fn()
            print(f"PASS {fn.cid} {name}", flush=True); npass += 1
        except Fail as e:
            print(f"FAIL {fn.cid} {name}: {e}", flush=True); nfail += 1
            if on_fail:
                on_fail()
        except Exception as e:
            tb = traceback.format_exc().strip().splitlines()[-3:]
            print(f"FAIL {fn.cid} {name}: exception {e!r} {' | '.join(tb)}", flush=True); nfail += 1
        if os.environ.get("CT_TIMES"):
            print(f"  {fn.cid} {time.time() - t0:.2f}s", file=sys.stderr)
    print(f"{npass} passed, {nfail} failed")
    sys.exit(0 if nfail == 0 else 1)
