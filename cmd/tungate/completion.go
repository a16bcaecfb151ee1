package main

import (
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

func newCompletionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script",
		Long: `Print the completion script for a shell. Subcommands, flags and flag values
(protocols, states, status names, event types, output formats) complete.

  bash:  source <(tungate completion bash)
         or: tungate completion bash > /etc/bash_completion.d/tungate
  zsh:   tungate completion zsh > "${fpath[1]}/_tungate"
  fish:  tungate completion fish > ~/.config/fish/completions/tungate.fish`,
		ValidArgs: []string{"bash", "zsh", "fish", "powershell"},
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(stdout, true)
			case "zsh":
				return root.GenZshCompletion(stdout)
			case "fish":
				return root.GenFishCompletion(stdout, true)
			default:
				return root.GenPowerShellCompletionWithDesc(stdout)
			}
		},
	}
}

// newManCmd writes the man pages (`make man`); hidden, it is for packaging.
func newManCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "Write man pages for every command into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true
			return doc.GenManTree(root, &doc.GenManHeader{Title: "TUNGATE", Section: "8", Source: "tungate " + version, Manual: "tungate manual"}, args[0])
		},
	}
}
