package main

import (
	"io"

	"github.com/spf13/cobra"

	"tungate/admin"
)

func newExpectListCmd(t *target, stdout, stderr io.Writer) *cobra.Command {
	var f filterFlags
	var out string
	c := &cobra.Command{
		Use:   "list [filters]",
		Short: "List expectations (conntrack -L expect)",
		Long: `List the expectations helpers created (the FTP data connections they wait
for) in conntrack -L expect's format; -o json, -o id as ct list.

Filters: -f, -p, --tuple-src, --tuple-dst, --sport, --dport (of the expected
tuple), --helper, --id.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(out, "text", "json", "id"); err != nil {
				return err
			}
			flt, err := f.filter()
			if err != nil {
				return err
			}
			return t.do(&admin.Request{Cmd: "expect list", Output: textless(out), Filter: flt}, stdout, stderr)
		},
	}
	f.add(c, true)
	outputFlag(c, &out, "text", "json", "id")
	return c
}

func newExpectCmd(stdout, stderr io.Writer) *cobra.Command {
	var t target
	cmd := &cobra.Command{
		Use:     "expect",
		Short:   "Inspect and change expectations (conntrack -L/-D/-F expect)",
		GroupID: "admin",
		Args:    cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErr("expect: unknown subcommand %q (see tungate expect --help)", args[0])
			}
			return cmd.Help()
		},
	}
	addTargetFlags(cmd, &t)
	list := newExpectListCmd(&t, stdout, stderr)
	list.Aliases = []string{"ls"}
	var f filterFlags
	del := &cobra.Command{
		Use:   "delete filters|--id ID",
		Short: "Delete expectations (conntrack -D expect)",
		Long: `Delete the expectations the filters (or --id) select; the number deleted goes
to stderr. Filters as expect list; at least one is required.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			flt, err := f.filter()
			if err != nil {
				return err
			}
			if flt == nil {
				return usageErr("expect delete needs a filter or --id (expect flush deletes all)")
			}
			return t.do(&admin.Request{Cmd: "expect delete", Filter: flt}, stdout, stderr)
		},
	}
	f.add(del, true)
	del.Aliases = []string{"rm"}
	flush := &cobra.Command{
		Use:   "flush",
		Short: "Delete every expectation (conntrack -F expect)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return t.do(&admin.Request{Cmd: "expect flush"}, stdout, stderr)
		},
	}
	cmd.AddCommand(list, del, flush)
	return cmd
}
