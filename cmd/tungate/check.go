package main

import (
	"flag"
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"

	"tungate/gateway"
)

func newCheckCmd(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "check -c FILE",
		Short:   "Validate a config file without starting anything",
		GroupID: "gateway",
		Long: `Load and validate a config file the way run would (strict decoding, every
NAT rule, helper and filter rule compiled) and report the first error with
its key path, without opening a device. Exit status 0 when the config is
good, 1 when it is not, 2 on usage errors.

Flags:
  -c, --config FILE   the config file to check`,
		// cmdCheck parses its own flags.
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if slices.Contains(args, "-h") || slices.Contains(args, "--help") {
				return cmd.Help()
			}
			if code := cmdCheck(args, stdout, stderr); code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	return cmd
}

func configFlag(fs *flag.FlagSet) *string {
	c := fs.String("c", "", "config file")
	fs.StringVar(c, "config", "", "config file")
	return c
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" {
		fmt.Fprintln(stderr, "tungate check: -c FILE is required")
		return 2
	}
	cfg, err := gateway.LoadConfig(*path)
	if err == nil {
		err = gateway.CheckRules(cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", *path)
	return 0
}
