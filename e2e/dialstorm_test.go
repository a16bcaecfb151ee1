//go:build linux

package e2e

import (
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dialStormConfig: command mode with an uplink and the uplink's default
// dial budget (max_pending_dials 256, dial_timeout 30 s).
const dialStormConfig = `
[admin]
socket = "%SOCK%"
metrics = ""

[[interface]]
name = "lan"
addresses = ["10.0.2.1/24", "fd00::1/64"]

[namespace]
interface = "lan"
addresses = ["10.0.2.100/24", "fd00::100/64"]

[[interface]]
name = "wan"
kind = "uplink"

[[route]]
to = "0.0.0.0/0"
interface = "wan"
[[route]]
to = "::/0"
interface = "wan"

[filter.forward]
policy = "drop"
rules = [
  { ct_state = ["established", "related"], action = "accept" },
  { in = "lan", ct_state = ["new"], action = "accept" },
]
`

// dialStormScript runs inside command mode: connects to the live server
// alone, then starts 1,000 SYN/s to random black-holed hosts, waits (with
// a deadline) until they hold every dial slot, and connects again while
// the storm goes on. %BIN% and %CFG% ask the gateway for its status.
const dialStormScript = `
conn() { curl -sS -g -o /dev/null --connect-timeout 5 -w "$1 %{time_connect}\n" "$2" || echo "$1 failed"; }
for i in $(seq 10); do conn BASE4 http://192.0.2.1:8080/peer; conn BASE6 'http://[fd99::1]:8080/peer'; done
hping3 -q -S -p 80 -i u1000 --rand-dest -I tun0 198.18.x.x >/dev/null 2>&1 &
H=$!
ok=
for i in $(seq 400); do
	s=$(%BIN% status -c %CFG% | grep 'dials pending')
	case "$s" in *" 256 dials pending"*) ok=1; break;; esac
	sleep 0.05
done
[ -n "$ok" ] || { echo "NEVER-SATURATED $s"; kill $H; exit 3; }
echo "SATURATED $s"
for i in $(seq 10); do conn STORM4 http://192.0.2.1:8080/peer; conn STORM6 'http://[fd99::1]:8080/peer'; done
echo "AFTER $(%BIN% status -c %CFG% | grep 'dials pending')"
%BIN% stats -c %CFG% | grep uplink_wan_dials_evicted
kill $H || echo "STORM-DIED"
`

var dialsLine = regexp.MustCompile(`(\d+) dials pending, \d+ refused, \d+ failed, (\d+) given up`)

// TestUplinkDialStorm: while 1,000 SYN/s go to black-holed destinations
// (each host connect pending until its timeout), a new connection to a
// live host is set up within 50 ms of its time without the storm, over
// IPv4 and IPv6. The gateway runs as nobody in command mode; its host
// sockets live in a namespace of the test's own, where 198.18.0.0/15 is
// routed to a neighbour that does not exist (SYNs vanish) and the live
// HTTP server listens on 192.0.2.1 and fd99::1.
func TestUplinkDialStorm(t *testing.T) {
	needNetAdmin(t)
	needTools(t, "hping3", "curl", "setpriv", "unshare", "ip")
	bin := gatewayBinary(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, err := strconv.Atoi(nobody.Uid)
	if err != nil {
		t.Fatal(err)
	}
	ns := newNames("ds").get("h")
	addNetns(t, ns)
	for _, st := range [][]string{
		{"link", "add", "bh0", "type", "veth", "peer", "name", "bh1"},
		{"addr", "add", "198.51.100.2/24", "dev", "bh0"},
		{"link", "set", "bh0", "up"},
		{"link", "set", "bh1", "up"},
		{"neigh", "add", "198.51.100.1", "lladdr", "02:00:00:00:00:01", "dev", "bh0", "nud", "permanent"},
		{"route", "add", "198.18.0.0/15", "via", "198.51.100.1", "dev", "bh0"},
		{"addr", "add", "192.0.2.1/32", "dev", "lo"},
		{"-6", "addr", "add", "fd99::1/128", "dev", "lo"},
	} {
		mustRun(t, append([]string{"ip", "-n", ns}, st...)...)
	}
	dir := workDir(t, uid)
	startHTTPServer(t, ns, dir)
	devDir := mkdirAll(t, filepath.Join(dir, "dev"))
	cfg := filepath.Join(dir, "storm.toml")
	conf := strings.ReplaceAll(dialStormConfig, "%SOCK%", filepath.Join(dir, "admin.sock"))
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	script := strings.NewReplacer("%BIN%", bin, "%CFG%", cfg).Replace(dialStormScript)
	argv := inNS(ns, withOpenDevTun(devDir, asNobody([]string{bin, "run", "-c", cfg, "--", "sh", "-c", script}))...)
	out, err := run(120*time.Second, argv...)
	if err != nil {
		t.Fatalf("command mode: %v\n%s", err, out)
	}
	times := map[string][]float64{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || !strings.HasPrefix(f[0], "BASE") && !strings.HasPrefix(f[0], "STORM") {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			t.Fatalf("connect %s: %s\n%s", f[0], f[1], out)
		}
		times[f[0]] = append(times[f[0]], v)
	}
	for _, fam := range []string{"4", "6"} {
		base, storm := times["BASE"+fam], times["STORM"+fam]
		if len(base) != 10 || len(storm) != 10 {
			t.Fatalf("IPv%s: %d connects alone and %d in the storm, want 10 each:\n%s", fam, len(base), len(storm), out)
		}
		mb, ms := median(base), median(storm)
		t.Logf("IPv%s connect to a live host: median %.1f ms alone, %.1f ms in the storm (slowest %.1f ms)",
			fam, mb*1e3, ms*1e3, maxOf(storm)*1e3)
		if ms > mb+0.050 {
			t.Errorf("IPv%s: connect in the storm %.1f ms, alone %.1f ms: more than 50 ms slower", fam, ms*1e3, mb*1e3)
		}
		// None waited for the container's SYN retransmission (1 s):
		// no live SYN was dropped for want of a dial slot.
		if mx := maxOf(storm); mx >= 1 {
			t.Errorf("IPv%s: a connect in the storm took %.2f s (a SYN was dropped)", fam, mx)
		}
	}
	// The dials stayed at their bound, and the storm went on while the
	// live connections were made: older dials kept being given up.
	sat, after := dialsLine.FindStringSubmatch(grepLine(out, "SATURATED")), dialsLine.FindStringSubmatch(grepLine(out, "AFTER"))
	if sat == nil || after == nil {
		t.Fatalf("no status lines:\n%s", out)
	}
	g1, _ := strconv.Atoi(sat[2])
	g2, _ := strconv.Atoi(after[2])
	if after[1] != "256" || g2 <= g1 {
		t.Errorf("after the live connects: %s dials pending (want the bound, 256), given up %d then %d (want rising)", after[1], g1, g2)
	}
	// `tungate stats` counts them too.
	if !regexp.MustCompile(`(?m)^uplink_wan_dials_evicted [1-9]`).MatchString(out) {
		t.Errorf("tungate stats has no uplink_wan_dials_evicted count:\n%s", out)
	}
	if strings.Contains(out, "STORM-DIED") {
		t.Errorf("the SYN storm had stopped before the end:\n%s", out)
	}
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func maxOf(v []float64) float64 {
	m := v[0]
	for _, x := range v[1:] {
		m = max(m, x)
	}
	return m
}

func grepLine(out, prefix string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}
