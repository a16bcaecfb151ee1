// Command tungate is the userspace stateful firewall and NAT gateway: one
// binary, one file per command group (run, check, ct, expect, the admin
// commands, completion, version).
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"tungate/link/tun/netns"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	// Command mode and namespace hand-over re-execute this binary as
	// their helper inside the namespaces; in that role this call does the
	// helper's work and exits.
	netns.MaybeChild()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// exitError carries a command's exit status: 1 for failures, 2 for usage
// errors (as the flag-based CLI had).
type exitError struct {
	code int
	err  error // nil: already reported
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func usageErr(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

// run runs the command line args and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		if ee.err != nil {
			fmt.Fprintf(stderr, "tungate: %v\n", ee.err)
		}
		return ee.code
	case strings.HasPrefix(err.Error(), "unknown command"), strings.HasPrefix(err.Error(), "unknown flag"),
		strings.HasPrefix(err.Error(), "unknown shorthand flag"), strings.HasPrefix(err.Error(), "invalid argument"),
		strings.Contains(err.Error(), "arg(s)"):
		fmt.Fprintf(stderr, "tungate: %v\nRun 'tungate --help' for usage.\n", err)
		return 2
	}
	fmt.Fprintf(stderr, "tungate: %v\n", err)
	return 1
}

// newRoot builds the command tree writing to stdout and stderr.
func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "tungate",
		Short: "Userspace stateful firewall and NAT gateway",
		Long: `tungate is a userspace stateful firewall and NAT gateway. It reads IP packets
from TUN devices, tracks every connection the way Linux netfilter conntrack
does, applies NAT, filter rules and protocol helpers, and forwards packets
between its interfaces. One TOML file configures it.

The admin commands (ct, expect, status, stats, rules, reload) talk to a
running gateway over its admin socket: --socket PATH names it, or -c FILE
names the config whose admin.socket it is. Without either they use the
config at $TUNGATE_CONFIG or ` + defaultConfig + `, and
` + defaultSocket + ` when that file does not exist.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(stderr)
			cmd.Help()
			return &exitError{code: 2}
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("tungate {{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &exitError{code: 2, err: fmt.Errorf("%w\nRun '%s --help' for usage", err, c.CommandPath())}
	})
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddGroup(&cobra.Group{ID: "gateway", Title: "Gateway:"}, &cobra.Group{ID: "admin", Title: "Running gateway (admin socket):"})
	root.AddCommand(newRunCmd(stderr), newCheckCmd(stdout, stderr),
		newCtCmd(stdout, stderr), newExpectCmd(stdout, stderr),
		newWgCmd(stdinReader, stdout, stderr), newStatusCmd(stdout, stderr), newStatsCmd(stdout, stderr), newRulesCmd(stdout, stderr), newReloadCmd(stdout, stderr), newSaveCmd(stdout, stderr),
		newSetCmd(stdout, stderr), newCaptureCmd(stdout, stderr),
		newCompletionCmd(stdout), newVersionCmd(stdout), newManCmd())
	return root
}
