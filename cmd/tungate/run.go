package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"tungate/admin"
	"tungate/gateway"
)

func newRunCmd(stderr io.Writer) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:     "run [-c FILE]",
		Short:   "Run the gateway in the foreground",
		GroupID: "gateway",
		Long: `Run the gateway in the foreground on the config FILE (default: $TUNGATE_CONFIG
or ` + defaultConfig + `) until SIGINT or SIGTERM. SIGHUP (or
'tungate reload') reloads the rules from the file. The admin socket
(admin.socket) and the Prometheus endpoint (admin.metrics) start with it.

Environment:
  TUNGATE_CPUPROFILE=FILE   write a CPU profile of the whole run to FILE`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if path == "" {
				path = defaultConfigPath()
			}
			if code := cmdRun(path, stderr); code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "config `file`")
	cmd.MarkFlagFilename("config", "toml")
	return cmd
}

func cmdRun(path string, stderr io.Writer) int {
	cfg, err := gateway.LoadConfig(path)
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
	var srv *admin.Server
	if cfg.Admin.Socket != "" {
		if srv, err = admin.Listen(g, cfg.Admin.Socket); err != nil {
			log.Error("admin socket", zap.Error(err))
			g.Close()
			return 1
		}
		defer srv.Close()
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
			// Through the admin server when there is one, so status
			// shows the reload's result and time.
			reload := g.Reload
			if srv != nil {
				reload = srv.Reload
			}
			if err := reload(); err == nil {
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
