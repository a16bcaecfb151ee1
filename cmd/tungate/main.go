// Command tungate is the userspace stateful firewall and NAT gateway.
//
//	tungate run -c FILE         run the gateway in the foreground
//	tungate check [-q] -c FILE  validate a config and print what it does, start nothing
//	tungate ct list|expect|stats|flush [-o json] (--socket PATH | -c FILE)
//	tungate reload|rules|stats (--socket PATH | -c FILE)
//	tungate version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"go.uber.org/zap"

	"tungate/gateway"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  tungate run -c FILE
  tungate check [-q] -c FILE
  tungate ct list [-o json] (--socket PATH | -c FILE)
  tungate ct expect|stats|flush (--socket PATH | -c FILE)
  tungate reload|rules|stats (--socket PATH | -c FILE)
  tungate version
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "ct":
		if len(args) < 2 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		switch args[1] {
		case "list", "expect", "stats", "flush":
			return cmdAdmin([]string{"ct", args[1]}, args[2:], stdout, stderr)
		}
		fmt.Fprintf(stderr, "tungate ct: unknown subcommand %q\n%s", args[1], usage)
		return 2
	case "reload", "rules", "stats":
		return cmdAdmin([]string{args[0]}, args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "tungate %s\n", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "tungate: unknown command %q\n%s", args[0], usage)
	return 2
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
	quiet := fs.Bool("q", false, "print only errors, warnings and \"ok\"")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" {
		fmt.Fprintln(stderr, "tungate check: -c FILE is required")
		return 2
	}
	cfg, err := gateway.Check(*path)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	if !*quiet {
		if err := cfg.Describe(stdout); err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return 1
		}
	}
	fmt.Fprintf(stdout, "%s: ok\n", *path)
	return 0
}

func cmdRun(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" {
		fmt.Fprintln(stderr, "tungate run: -c FILE is required")
		return 2
	}
	cfg, err := gateway.LoadConfig(*path)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	g, err := gateway.New(cfg, gateway.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "tungate: %v\n", err)
		return 1
	}
	log := g.Logger()
	if cfg.Admin.Socket != "" {
		if err := g.ServeAdmin(cfg.Admin.Socket); err != nil {
			log.Error("admin socket", zap.Error(err))
			g.Close()
			return 1
		}
	}
	if cfg.Admin.Metrics != "" {
		if _, err := g.ServeMetrics(cfg.Admin.Metrics); err != nil {
			log.Error("metrics", zap.Error(err))
			g.Close()
			return 1
		}
	}
	// TUNGATE_CPUPROFILE=FILE profiles the whole run (for measuring the
	// datapath under real traffic, e.g. ../shared/bench/versus.sh).
	if f := os.Getenv("TUNGATE_CPUPROFILE"); f != "" {
		if out, err := os.Create(f); err == nil {
			pprof.StartCPUProfile(out)
			defer pprof.StopCPUProfile()
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if err := g.Reload(); err == nil {
				log.Info("reloaded on SIGHUP")
			}
		}
	}()
	err = g.Run(ctx)
	log.Info("stopped")
	log.Sync()
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "tungate: %v\n", err)
		return 1
	}
	return 0
}

func cmdAdmin(cmd, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(cmd[len(cmd)-1], flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := configFlag(fs)
	sock := fs.String("socket", "", "admin socket path")
	output := fs.String("o", "", "output format: json (ct list)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *sock == "" {
		if *path == "" {
			fmt.Fprintln(stderr, "tungate: --socket PATH or -c FILE is required")
			return 2
		}
		cfg, err := gateway.LoadConfig(*path)
		if err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return 1
		}
		if cfg.Admin.Socket == "" {
			fmt.Fprintf(stderr, "%s: admin.socket is not set\n", *path)
			return 1
		}
		*sock = cfg.Admin.Socket
	}
	switch *output {
	case "":
	case "json":
		if len(cmd) != 2 || cmd[1] != "list" {
			fmt.Fprintln(stderr, "tungate: -o json is for ct list")
			return 2
		}
		cmd = append(cmd, "json")
	default:
		fmt.Fprintf(stderr, "tungate: unknown output format %q\n", *output)
		return 2
	}
	out, err := gateway.AdminRequest(*sock, cmd...)
	if err != nil {
		fmt.Fprintf(stderr, "tungate: %v\n", err)
		return 1
	}
	io.WriteString(stdout, out)
	return 0
}
