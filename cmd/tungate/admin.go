package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"

	"tungate/admin"
	"tungate/gateway"
)

const (
	// defaultConfig is the config file used when neither -c nor
	// $TUNGATE_CONFIG names one.
	defaultConfig = "/etc/tungate/tungate.toml"
	// defaultSocket is the admin socket used when no config file exists.
	defaultSocket = "/run/tungate/admin.sock"
)

func defaultConfigPath() string {
	if p := os.Getenv("TUNGATE_CONFIG"); p != "" {
		return p
	}
	return defaultConfig
}

// target is where an admin command sends its request.
type target struct {
	socket string
	config string
}

// addTargetFlags adds --socket and -c to an admin command and its
// subcommands.
func addTargetFlags(cmd *cobra.Command, t *target) {
	f := cmd.PersistentFlags()
	f.StringVar(&t.socket, "socket", "", "admin socket `path` (default: the config's admin.socket)")
	f.StringVarP(&t.config, "config", "c", "", "config `file` whose admin.socket to use (default $TUNGATE_CONFIG or "+defaultConfig+")")
	cmd.MarkPersistentFlagFilename("socket", "sock")
	cmd.MarkPersistentFlagFilename("config", "toml")
}

// path resolves the socket: --socket, else the admin.socket of -c FILE,
// $TUNGATE_CONFIG or the default config, else the default socket when no
// config was named and the default one does not exist.
func (t *target) path() (string, error) {
	if t.socket != "" {
		return t.socket, nil
	}
	path, named := t.config, t.config != ""
	if !named {
		path = defaultConfigPath()
		named = os.Getenv("TUNGATE_CONFIG") != ""
	}
	cfg, err := gateway.LoadConfig(path)
	if err != nil {
		if !named && errors.Is(err, fs.ErrNotExist) {
			return defaultSocket, nil
		}
		return "", err
	}
	if cfg.Admin.Socket == "" {
		return "", fmt.Errorf("%s: admin.socket is not set", path)
	}
	return cfg.Admin.Socket, nil
}

// do sends req and streams the answer to stdout; the server's closing
// message goes to msgOut (stderr, or stdout for reload). Ctrl-C ends it.
func (t *target) do(req *admin.Request, stdout, msgOut io.Writer) error {
	sock, err := t.path()
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	msg, err := admin.Do(ctx, sock, req, stdout)
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted: a normal end of ct events
		}
		return &exitError{code: 1, err: err}
	}
	if msg != "" {
		fmt.Fprintln(msgOut, msg)
	}
	return nil
}

// outputFlag adds -o.
func outputFlag(cmd *cobra.Command, out *string, formats ...string) {
	cmd.Flags().StringVarP(out, "output", "o", "", "output `format`: "+joinOr(formats))
	cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(formats, cobra.ShellCompDirectiveNoFileComp))
}

func joinOr(s []string) string {
	out := ""
	for i, v := range s {
		switch {
		case i == 0:
		case i == len(s)-1:
			out += " or "
		default:
			out += ", "
		}
		out += v
	}
	return out
}

func checkOutput(out string, formats ...string) error {
	if out == "" || out == "text" {
		return nil
	}
	for _, f := range formats {
		if out == f {
			return nil
		}
	}
	return usageErr("unknown output format %q (%s)", out, joinOr(formats))
}

func newStatusCmd(stdout, stderr io.Writer) *cobra.Command {
	var t target
	var out string
	cmd := &cobra.Command{
		Use:     "status",
		Short:   "Show the running gateway's status",
		GroupID: "admin",
		Long: `Show uptime, the config file and its sha256 (and whether the file changed
since it was loaded), the last reload's result and time, connection table
fill, helpers, NAT mappings, and every interface with its packet and byte
counters and the routes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(out, "text", "json"); err != nil {
				return err
			}
			return t.do(&admin.Request{Cmd: "status", Output: textless(out)}, stdout, stderr)
		},
	}
	addTargetFlags(cmd, &t)
	outputFlag(cmd, &out, "text", "json")
	return cmd
}

func textless(out string) string {
	if out == "text" {
		return ""
	}
	return out
}

func newStatsCmd(stdout, stderr io.Writer) *cobra.Command {
	var t target
	var out string
	cmd := &cobra.Command{
		Use:     "stats",
		Short:   "Show the datapath and NAT counters",
		GroupID: "admin",
		Long:    "Print the datapath counters (packets received, forwarded, sent, dropped by reason) and the NAT engine's, one 'name value' per line.",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(out, "text", "json"); err != nil {
				return err
			}
			return t.do(&admin.Request{Cmd: "stats", Output: textless(out)}, stdout, stderr)
		},
	}
	addTargetFlags(cmd, &t)
	outputFlag(cmd, &out, "text", "json")
	return cmd
}

func newRulesCmd(stdout, stderr io.Writer) *cobra.Command {
	var t target
	cmd := &cobra.Command{
		Use:     "rules",
		Short:   "Show the running rule set with its counters",
		GroupID: "admin",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return t.do(&admin.Request{Cmd: "rules"}, stdout, stderr)
		},
	}
	addTargetFlags(cmd, &t)
	return cmd
}

func newReloadCmd(stdout, stderr io.Writer) *cobra.Command {
	var t target
	var dryRun, flushNAT bool
	cmd := &cobra.Command{
		Use:     "reload",
		Short:   "Apply the config file to the running gateway",
		GroupID: "admin",
		Long: `Reload the running gateway's config file, as SIGHUP does, and apply every
difference from the running config, or none. It prints the changes, one a line
("~" changed, "+" added, "-" removed).

Applied while running: rules and sets (a rule kept unchanged, same chain and
text, keeps its counters; a new or edited one starts at zero); NAT rules (new
connections use them, existing ones keep their translation unless
--flush-nat; a port forward's port is reserved from masquerade at once, and a
mapping already holding it keeps its connections but is not reused); helper
ports (helper counters carry over);
[conntrack] limits and timeouts (an entry takes a new timeout at its next
packet); per_source_max values; ICMP rate limits; log level; routes;
interfaces added (opened), removed (closed, their connections deleted),
renamed or reordered (a running link is matched by its device: TUN name,
tun_fd, WireGuard listen port, uplink) and their addresses, rpf, clamp_mss
and WireGuard peers.

What cannot change while running (a running interface's device or MTU, the
admin socket, the metrics address, the log format, [namespace], turning
per_source_max on or off, conntrack.buckets, uplink port forwards, a kernel
TUN to create without CAP_NET_ADMIN) refuses the whole reload with the key
path and why; the running config stays untouched (exit status 1). So does a config
that fails to load or compile.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return t.do(&admin.Request{Cmd: "reload", DryRun: dryRun, FlushNAT: flushNAT}, stdout, stdout)
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the changes the reload would apply (and what it would refuse); apply nothing")
	cmd.Flags().BoolVar(&flushNAT, "flush-nat", false, "delete every NATed connection once the new NAT rules are in force")
	addTargetFlags(cmd, &t)
	return cmd
}

// parseID reads --id.
func parseID(s string) (*uint32, error) {
	if s == "" {
		return nil, nil
	}
	v, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return nil, usageErr("--id: %q is not a 32-bit number", s)
	}
	id := uint32(v)
	return &id, nil
}
