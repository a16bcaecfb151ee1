#!/bin/bash
# scripts/flood-syn-paired.sh [PAIRS] [ROUNDS] — SYN flood ratio (issue 14)
# measured in paired phases inside one long transfer (root).
#
# scripts/flood-syn.sh compares two separate 10 s iperf3 runs per system
# (without, then with the flood); a 10 s run varies by ±15 % with no flood
# at all, as much as the effect it measures, so its ratio swung 0.74–1.21
# between rounds. Here each system carries ONE established iperf3 flow
# for the whole measurement while the flood (floodgen, RATE SYN/s, random
# sources, to 198.18.0.3:80, which nobody answers) is switched on and off
# in phases of PHASE seconds: PAIRS pairs of an off and an on phase, the
# order inside a pair alternating (off-on, on-off, ...) so a trend in the
# machine's load falls on both sides alike. In each phase the first
# SETTLE seconds are skipped (the flood starting or draining through the
# queues) and the rest is measured as bytes received by the server's
# device (rx_bytes of the TUN in the server namespace: the flow's data;
# the flood's SYNs add RATE × 40 B/s, 0.06 Gbit/s, subtracted). A system
# keeps (mean of its on phases) ÷ (mean of its off phases); the ratio is
# gateway keeps ÷ copy loop keeps (goal ≥ 0.95), per round and over all
# phases of all rounds. The systems alternate inside each round and the
# order rotates between rounds.
#
# The gateway's off phases after the first flood run with its table full
# of the flood's half-open entries (SYN_SENT lives 120 s): that is the
# state a flood leaves, and the first off phase (fresh table) is printed
# apart so its difference shows.
#
# System sp is the gateway with a synproxy rule in front of the LAN's new
# TCP connections (the measured flow is proxied too, so its packets pay
# the translation in both phases): the flood's SYNs are answered with
# cookies and take no table entries.
#
# Env: PHASE (2 s), SETTLE (0.5 s), RATE (20000), MAX ([conntrack] max,
# 16384), BIN, BASE=BINARY (a second tungate measured as "base"),
# SYSTEMS (default "copy gw sp", plus base when BASE is set; any other
# name X is the tungate binary in $BIN_X, e.g. SYSTEMS="copy gw nowarm"
# BIN_nowarm=/tmp/tungate-nowarm).
set -u
HERE=$(cd $(dirname $0)/.. && pwd)
PAIRS=${1:-10}; ROUNDS=${2:-3}
PHASE=${PHASE:-2}; SETTLE=${SETTLE:-0.5}; RATE=${RATE:-20000}; MAX=${MAX:-16384}
BASE=${BASE:-}
SYSTEMS=${SYSTEMS:-copy gw sp${BASE:+ base}}
ID=fp$$
. $HERE/scripts/flood-lib.sh
trap fl_cleanup EXIT
fl_build
command -v iperf3 >/dev/null || { echo "needs iperf3 (scripts/test-deps.sh)"; exit 1; }
fl_gw_config "max = $MAX"
sed 's|^  { in = "lan", ct_state = \["new"\], action = "accept" },|  { in = "lan", proto = "tcp", ct_state = ["new"], action = "synproxy" },\n&|' $FL_DIR/gw.toml >$FL_DIR/gw-sp.toml
grep -q synproxy $FL_DIR/gw-sp.toml || { echo "no synproxy rule in gw-sp.toml"; exit 1; }
echo "flood-syn-paired: $PAIRS pairs of $PHASE s phases (first $SETTLE s of each skipped), $ROUNDS round(s), $RATE SYN/s, max $MAX, systems $SYSTEMS, load avg $(fl_load), commit $(cd $HERE && git rev-parse --short HEAD)$(cd $HERE && git diff --quiet HEAD -- . || echo ' (with changes)')${BASE:+, base binary $BASE}"

# run_phases SYSTEM: the forwarder is up; one iperf3 flow, the phases.
# Appends "SYSTEM ROUND PAIR STATE GBPS" lines to $FL_DIR/phases.
run_phases() {
  local dur
  dur=$(fl_py "print(int(1 + 2 * $PAIRS * $PHASE + 3))")
  ip netns exec $FL_S iperf3 -s -1 -B 198.18.0.2 >/dev/null 2>&1 &
  local sp=$!
  sleep 0.3
  ip netns exec $FL_C iperf3 -c 198.18.0.2 -t $dur >$FL_DIR/iperf.out 2>&1 &
  local cp=$!
  sleep 1 # the flow's window opens
  fl_py "
import subprocess, time, json, sys
pairs, phase, settle, rate = $PAIRS, $PHASE, $SETTLE, $RATE
def rx():
    # the server namespace's view of its devices, through the iperf3
    # server's /proc (ip netns exec execs it under the same pid)
    for line in open('/proc/$sp/net/dev'):
        name, _, rest = line.partition(':')
        if name.strip() == '$FL_W':
            return int(rest.split()[0])
    raise SystemExit('no $FL_W in /proc/$sp/net/dev')
out = open('$FL_DIR/phases', 'a')
for p in range(pairs):
    order = ('off', 'on') if p % 2 == 0 else ('on', 'off')
    for state in order:
        t0 = time.monotonic()
        gen = None
        if state == 'on':
            gen = subprocess.Popen(['ip', 'netns', 'exec', '$FL_C', '$FL_DIR/floodgen', 'syn', '-i', '$FL_L',
                                    '-src', '0.0.0.0/0', '-dst', '198.18.0.3', '-dport', '80', '-rate', str(rate),
                                    '-d', '%gs' % phase], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(max(0, t0 + settle - time.monotonic()))
        b0, m0 = rx(), time.monotonic()
        time.sleep(max(0, t0 + phase - time.monotonic()))
        b1, m1 = rx(), time.monotonic()
        sent = 0
        if gen:
            o = gen.communicate()[0]
            try:
                sent = json.loads(o[o.index('{'):])['sent']
            except Exception:
                print('floodgen: ' + o.strip(), file=sys.stderr)
        gbps = (b1 - b0 - (rate * 40 * (m1 - m0) if state == 'on' else 0)) * 8 / (m1 - m0) / 1e9
        out.write('%s %d %d %s %.4f %d\n' % ('$1', $2, p, state, gbps, sent))
        out.flush()
"
  kill $cp $sp 2>/dev/null; wait $cp $sp 2>/dev/null
  return 0
}

: >$FL_DIR/phases
set -- $SYSTEMS; nsys=$#
for r in $(seq $ROUNDS); do
  # rotate the order by one system per round
  order=()
  for i in $(seq 0 $((nsys - 1))); do
    k=$(( (i + r - 1) % nsys + 1 )); order+=("${!k}")
  done
  for s in "${order[@]}"; do
    bin=$BIN
    [ $s = base ] && BIN=$BASE
    v=BIN_$s; [ -n "${!v:-}" ] && BIN=${!v}
    if [ $s = copy ]; then fl_up_copy; elif [ $s = sp ]; then fl_up_gw $FL_DIR/gw-sp.toml; else fl_up_gw; fi
    run_phases $s $r
    if [ $s != copy ]; then
      echo "  round $r $s: $(fl_ctl ct stats -o json | fl_py "
import json, sys
s = json.load(sys.stdin); print('entries %d/%d, early_drop %d, drop %d, insert %d' % (s['entries'], s['max'], s['early_drop'], s['drop'], s['insert']))"), $(fl_ctl stats -o json | fl_py "
import json, sys
s = json.load(sys.stdin); print('cookies sent %d, proxied %d' % (s['synproxy_syn_received'], s['synproxy_conn_open']))"); RSS $(fl_rss) kB"
    fi
    fl_down
    BIN=$bin
  done
  fl_py "
rows = [l.split() for l in open('$FL_DIR/phases')]
for s in '$SYSTEMS'.split():
    on = [float(r[4]) for r in rows if r[0] == s and r[1] == '$r' and r[3] == 'on']
    off = [float(r[4]) for r in rows if r[0] == s and r[1] == '$r' and r[3] == 'off']
    syn = [int(r[5]) / ($PHASE) for r in rows if r[0] == s and r[1] == '$r' and r[3] == 'on']
    if on and off:
        print('  round $r %s: off %.2f Gbit/s (first, fresh %.2f), on %.2f; keeps %.3f; SYN/s sent %.0f-%.0f' % (
            s, sum(off)/len(off), off[0], sum(on)/len(on), (sum(on)/len(on))/(sum(off)/len(off)), min(syn), max(syn)))
"
done
fl_py "
import statistics
rows = [l.split() for l in open('$FL_DIR/phases')]
systems = '$SYSTEMS'.split()
def keeps(s, r=None):
    sel = [x for x in rows if x[0] == s and (r is None or x[1] == str(r))]
    on = [float(x[4]) for x in sel if x[3] == 'on']; off = [float(x[4]) for x in sel if x[3] == 'off']
    return (sum(on)/len(on)) / (sum(off)/len(off)) if on and off and sum(off) else float('nan')
def pairs(s):
    # each pair's own on/off ratio: their spread says how well one pair
    # resolves the effect
    out = []
    for r in range(1, $ROUNDS + 1):
        for p in range($PAIRS):
            d = {x[3]: float(x[4]) for x in rows if x[0] == s and x[1] == str(r) and x[2] == str(p)}
            if d.get('off'):
                out.append(d['on'] / d['off'])
    return out
for s in systems:
    pr = pairs(s)
    if pr:
        q = statistics.quantiles(pr, n=4) if len(pr) >= 4 else [min(pr), statistics.median(pr), max(pr)]
        print('%s keeps %.3f over all phases (per pair: median %.3f, quartiles %.3f-%.3f, n %d)' % (s, keeps(s), statistics.median(pr), q[0], q[-1], len(pr)))
for s in systems:
    if s == 'copy':
        continue
    per = ['%.3f' % (keeps(s, r) / keeps('copy', r)) for r in range(1, $ROUNDS + 1)]
    print('ratio %s ÷ copy loop: %.3f over all rounds; per round %s (goal >= 0.95)' % (s, keeps(s) / keeps('copy'), ' '.join(per)))
print('(load avg now $(fl_load))')
"
