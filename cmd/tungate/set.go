package main

import (
	"io"
	"time"

	"github.com/spf13/cobra"

	"tungate/admin"
)

func newSetCmd(stdout, stderr io.Writer) *cobra.Command {
	var t target
	cmd := &cobra.Command{
		Use:     "set",
		Short:   "Change named sets live (nft add/delete element, pfctl -T)",
		GroupID: "admin",
		Long: `Add elements to a [sets] set of the running gateway, delete them, list them.
The next packet sees the change. Elements are IPv4 and IPv6 addresses and
prefixes (host bits clear), as in the config's [sets].

Elements added here form the runtime layer on top of the config file: a
reload keeps them, status lists them apart, and only set del (or their
timeout) removes them. set del removes only elements added at runtime: an
element the config file lists is refused (edit the file and reload).`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErr("set: unknown subcommand %q (see tungate set --help)", args[0])
			}
			return cmd.Help()
		},
	}
	addTargetFlags(cmd, &t)

	var addOut string
	var timeout time.Duration
	add := &cobra.Command{
		Use:   "add NAME ELEMENT...",
		Short: "Add elements to a set, optionally with a timeout",
		Long: `Add addresses or prefixes to the named set. With --timeout each expires after
that long (set list shows the time left, like nft's "expires 9m58s"); adding
an element again sets its new timeout. All or nothing: a bad element or an
unknown set changes nothing.`,
		Example: `  tungate set add blocked 198.51.100.7 2001:db8:bad::/48 --timeout 10m`,
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(addOut, "text", "json"); err != nil {
				return err
			}
			if timeout < 0 {
				return usageErr("--timeout: %s is negative", timeout)
			}
			req := &admin.Request{Cmd: "set add", Set: args[0], Elements: args[1:], Output: textless(addOut)}
			if timeout > 0 {
				req.Timeout = timeout.String()
			}
			return t.do(req, stdout, stderr)
		},
	}
	add.Flags().DurationVar(&timeout, "timeout", 0, "remove the elements after this `duration` (like 10m; default: never)")
	outputFlag(add, &addOut, "text", "json")

	var delOut string
	del := &cobra.Command{
		Use:     "del NAME ELEMENT...",
		Aliases: []string{"delete", "rm"},
		Short:   "Delete elements added at runtime from a set",
		Long: `Delete elements added at runtime from the named set. An element only the
config file lists is refused: it belongs to the file. All or nothing.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(delOut, "text", "json"); err != nil {
				return err
			}
			return t.do(&admin.Request{Cmd: "set del", Set: args[0], Elements: args[1:], Output: textless(delOut)}, stdout, stderr)
		},
	}
	outputFlag(del, &delOut, "text", "json")

	var listOut string
	list := &cobra.Command{
		Use:     "list [NAME]",
		Aliases: []string{"ls"},
		Short:   "List a set's elements (every set without NAME)",
		Long: `List the elements of the named set, or of every set, one per line: the
element, where it comes from (file, runtime or file+runtime) and for timed
runtime elements the time left ("expires 9m58s").`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(listOut, "text", "json"); err != nil {
				return err
			}
			req := &admin.Request{Cmd: "set list", Output: textless(listOut)}
			if len(args) == 1 {
				req.Set = args[0]
			}
			return t.do(req, stdout, stderr)
		},
	}
	outputFlag(list, &listOut, "text", "json")
	cmd.AddCommand(add, del, list)
	return cmd
}
