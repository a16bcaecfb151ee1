package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"tungate/gateway"
)

func newCheckCmd(stdout, stderr io.Writer) *cobra.Command {
	var path string
	var quiet bool
	cmd := &cobra.Command{
		Use:     "check -c FILE",
		Short:   "Validate a config file and print what it will do, start nothing",
		GroupID: "gateway",
		Long: `Load and validate a config file the way run would (strict decoding, every
NAT rule, helper and filter rule compiled) without opening a device. Every
error of the file is reported at once, each with file:line:column, its key
path and the reason. A good file is printed as the plan an operator reads
before a reload: interfaces, routes, NAT rules with their resolved addresses
and ports, helpers, and every chain's rules with their index.

Exit status 0 when the config is good, 1 when it is not, 2 on usage errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if path == "" {
				return usageErr("tungate check: -c FILE is required")
			}
			if code := cmdCheck(path, quiet, stdout, stderr); code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "config `file`")
	cmd.MarkFlagFilename("config", "toml")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, `print only errors, warnings and "ok"`)
	return cmd
}

func cmdCheck(path string, quiet bool, stdout, stderr io.Writer) int {
	cfg, err := gateway.Check(path)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	if !quiet {
		if err := cfg.Describe(stdout); err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return 1
		}
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return 0
}
