package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"tungate/admin"
	"tungate/link/wireguard"
)

// newWgCmd is `tungate wg`: the WireGuard interfaces of a running gateway
// in `wg show`'s format, and keys made as `wg genkey|pubkey` make them.
// There is no `wg set`: the TOML file and reload are the one source of
// truth for peers.
func newWgCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	var t target
	cmd := &cobra.Command{
		Use:     "wg",
		Short:   "WireGuard interfaces: show, genkey, pubkey",
		GroupID: "admin",
		Args:    cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErr("wg: unknown subcommand %q (see tungate wg --help)", args[0])
			}
			return cmd.Help()
		},
	}
	addTargetFlags(cmd, &t)
	show := &cobra.Command{
		Use:   "show [INTERFACE]",
		Short: "Show WireGuard interfaces and peers (wg show)",
		Long: `Print the running gateway's WireGuard interfaces in wg show's format: public
key, listening port, and each peer's endpoint, allowed ips, latest handshake,
transfer and keepalive. Peers are changed in the config file and applied
with tungate reload; there is no wg set.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &admin.Request{Cmd: "wg show"}
			if len(args) == 1 {
				req.Interface = args[0]
			}
			return t.do(req, stdout, stderr)
		},
	}
	genkey := &cobra.Command{
		Use:   "genkey",
		Short: "Print a new private key (wg genkey)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := wireguard.GenKey()
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, k)
			return nil
		},
	}
	pubkey := &cobra.Command{
		Use:   "pubkey",
		Short: "Print the public key of the private key on stdin (wg pubkey)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
			if err != nil && err != io.EOF {
				return err
			}
			pub, err := wireguard.PubKey(strings.TrimSpace(line))
			if err != nil {
				return fmt.Errorf("wg pubkey: %w", err)
			}
			fmt.Fprintln(stdout, pub)
			return nil
		},
	}
	cmd.AddCommand(show, genkey, pubkey)
	return cmd
}

// stdinReader is where wg pubkey reads; tests replace it.
var stdinReader io.Reader = os.Stdin
