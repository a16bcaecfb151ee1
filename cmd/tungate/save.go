package main

import (
	"io"

	"github.com/spf13/cobra"

	"tungate/admin"
)

func newSaveCmd(stdout, stderr io.Writer) *cobra.Command {
	var t target
	cmd := &cobra.Command{
		Use:     "save",
		Short:   "Write the connection table to the state file now",
		GroupID: "admin",
		Long: `Write the running gateway's connection table — tuples, states, TCP window
data, NAT bindings, sequence offsets, helper state, expectations, marks and
counters — to [conntrack] state_file, atomically (a temporary file beside it,
fsync, rename), as the gateway does itself when SIGTERM or SIGINT stops it.
The next start restores the entries still alive from it. The gateway keeps
forwarding meanwhile.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return t.do(&admin.Request{Cmd: "save"}, stdout, stdout)
		},
	}
	addTargetFlags(cmd, &t)
	return cmd
}
