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
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"tungate/admin"
	"tungate/gateway"
	"tungate/link/tun/netns"
)

func newRunCmd(stderr io.Writer) *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:     "run [-c FILE] [--netns PATH [--userns PATH]] [-- CMD ARGS...]",
		Short:   "Run the gateway in the foreground",
		GroupID: "gateway",
		Long: `Run the gateway in the foreground on the config FILE (default: $TUNGATE_CONFIG
or ` + defaultConfig + `) until SIGINT or SIGTERM. SIGHUP (or
'tungate reload') applies the file's changes, all or none (see
'tungate reload --help'). The admin socket
(admin.socket) and the Prometheus endpoint (admin.metrics) start with it.

Command mode (-- CMD ARGS...), as an ordinary user: tungate creates a user
and network namespace, makes the [namespace] interface's TUN inside with
its addresses, routes and MTU, runs CMD there, and exits with CMD's exit
status when it ends, removing everything. CMD's only network is tungate.

Namespace hand-over (--netns PATH): the [namespace] interface's TUN is
made inside an existing network namespace (a container's /proc/PID/ns/net);
an unprivileged user also names the container's user namespace with
--userns. tungate exits when the namespace goes away. Like slirp4netns,
--ready-fd FD gets "1" written once the gateway runs, and the gateway
exits when --exit-fd FD becomes readable or is closed.

Environment:
  TUNGATE_CPUPROFILE=FILE   write a CPU profile of the whole run to FILE
  TUNGATE_HEAPPROFILE=DIR   write a heap profile to DIR every
                            TUNGATE_HEAPPROFILE_EVERY (default 5m) and at exit`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.path == "" {
				o.path = defaultConfigPath()
			}
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				if dash > 0 {
					return usageErr("tungate run: unexpected argument %q (a command goes after --)", args[0])
				}
				o.command = args
				if len(o.command) == 0 {
					return usageErr("tungate run: -- needs a command")
				}
			} else if len(args) > 0 {
				return usageErr("tungate run: unexpected argument %q (a command goes after --)", args[0])
			}
			if o.command != nil && o.netns != "" {
				return usageErr("tungate run: --netns and a command are exclusive")
			}
			if o.userns != "" && o.netns == "" {
				return usageErr("tungate run: --userns needs --netns")
			}
			if code := cmdRun(o, stderr); code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&o.path, "config", "c", "", "config `file`")
	cmd.MarkFlagFilename("config", "toml")
	cmd.Flags().StringVar(&o.netns, "netns", "", "make the [namespace] interface inside this network namespace `path`")
	cmd.Flags().StringVar(&o.userns, "userns", "", "the user namespace `path` owning --netns (unprivileged callers)")
	cmd.Flags().IntVarP(&o.readyFD, "ready-fd", "r", -1, "write \"1\" to this `fd` once running (slirp4netns -r)")
	cmd.Flags().IntVarP(&o.exitFD, "exit-fd", "e", -1, "exit when this `fd` is readable or closed (slirp4netns -e)")
	return cmd
}

// runOptions are run's flags and arguments.
type runOptions struct {
	path            string
	netns, userns   string
	readyFD, exitFD int
	// command is CMD ARGS… after --; nil outside command mode.
	command []string
}

func cmdRun(o runOptions, stderr io.Writer) int {
	cfg, err := gateway.LoadConfig(o.path)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	// Before New: restoring a state file fills the table.
	limit, derived := setMemoryLimit(cfg.Conntrack.Max)
	var ns *netns.Session
	if o.command != nil || o.netns != "" {
		if ns, err = openNamespace(cfg, o); err != nil {
			fmt.Fprintf(stderr, "tungate: %v\n", err)
			return 1
		}
		defer ns.Close()
	}
	g, err := gateway.New(cfg, gateway.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "tungate: %v\n", err)
		return 1
	}
	log := g.Logger()
	if derived {
		log.Info("memory limit derived from [conntrack] max (GOMEMLIMIT overrides)", zap.Int64("bytes", limit))
	} else {
		log.Info("memory limit from GOMEMLIMIT", zap.Int64("bytes", limit))
	}
	var srv *admin.Server
	if cfg.Admin.Socket != "" {
		if srv, err = admin.Listen(g, cfg.Admin.Socket); err != nil {
			log.Error("admin socket", zap.Error(err))
			g.Close()
			return 1
		}
		defer srv.Close()
	}
	if cfg.Admin.PortsAPI != "" {
		ps, err := admin.ListenPorts(g, cfg.Admin.PortsAPI)
		if err != nil {
			log.Error("ports API", zap.Error(err))
			g.Close()
			return 1
		}
		defer ps.Close()
	}
	if cfg.Admin.Metrics != "" {
		if _, err := g.ServeMetrics(cfg.Admin.Metrics); err != nil {
			log.Error("metrics", zap.Error(err))
			g.Close()
			return 1
		}
	}
	if err := serveUAPI(g, cfg, log); err != nil {
		log.Error("wireguard UAPI", zap.Error(err))
		g.Close()
		return 1
	}
	// Everything that needed a privilege is open now: devices, the admin
	// socket, the metrics port. What remains runs with no capability
	// (CAP_NET_ADMIN only with [admin] keep_net_admin).
	if err := g.DropPrivileges(); err != nil {
		log.Error("dropping privileges", zap.Error(err))
		g.Close()
		return 1
	}
	// TUNGATE_CPUPROFILE=FILE profiles the whole run (for measuring the
	// datapath under real traffic, e.g. ../shared/bench/versus.sh).
	if f := os.Getenv("TUNGATE_CPUPROFILE"); f != "" {
		if out, err := os.Create(f); err == nil {
			pprof.StartCPUProfile(out)
			defer pprof.StopCPUProfile()
		}
	}
	// TUNGATE_HEAPPROFILE=DIR: heap profiles through a long run, to diff
	// (scripts/soak.sh uses it).
	if dir := os.Getenv("TUNGATE_HEAPPROFILE"); dir != "" {
		every := 5 * time.Minute
		if d, err := time.ParseDuration(os.Getenv("TUNGATE_HEAPPROFILE_EVERY")); err == nil && d > 0 {
			every = d
		}
		if stopHeap, err := startHeapProfiles(dir, every); err != nil {
			log.Warn("heap profiles", zap.Error(err))
		} else {
			defer stopHeap()
		}
	}
	stopSignals := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if o.command != nil {
		// The terminal's Ctrl-C goes to the command (it is in our
		// process group): the command decides, and we end with it.
		signal.Ignore(os.Interrupt)
		stopSignals = []os.Signal{syscall.SIGTERM}
	}
	ctx, stop := signal.NotifyContext(context.Background(), stopSignals...)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if ns != nil {
		// The gateway reads the TUN from here on: the command may start,
		// its first packets (DNS, SYN) are not lost.
		if o.command != nil {
			if err := ns.Start(); err != nil {
				fmt.Fprintf(stderr, "tungate: %v\n", err)
				g.Close()
				return 1
			}
		}
		go func() {
			<-ns.Done()
			if o.command == nil {
				log.Info("the namespace is gone; stopping", zap.String("netns", o.netns))
			}
			cancel()
		}()
	}
	if o.exitFD >= 0 {
		gone, err := netns.WatchExitFD(o.exitFD)
		if err != nil {
			fmt.Fprintf(stderr, "tungate: --exit-fd: %v\n", err)
			g.Close()
			return 1
		}
		go func() {
			<-gone
			log.Info("exit fd closed; stopping")
			cancel()
		}()
	}
	if o.readyFD >= 0 {
		if err := netns.SignalReady(o.readyFD); err != nil {
			log.Warn("--ready-fd", zap.Error(err))
		}
	}
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
	if cfg.Conntrack.StateFile != "" {
		// The links are closed and the workers gone: the table holds
		// still while it is written. A failed save is logged; the
		// next start then begins with an empty table.
		g.SaveState()
	}
	log.Info("stopped")
	log.Sync()
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "tungate: %v\n", err)
		return 1
	}
	if ns != nil && o.command != nil {
		// Run also returns when SIGTERM ended us first: the command is
		// then stopped with the namespace. Its status is ours either way.
		ns.Close()
		code, err := ns.Wait()
		if err != nil {
			fmt.Fprintf(stderr, "tungate: %v\n", err)
			return 1
		}
		return code
	}
	return 0
}

// openNamespace makes the [namespace] interface's TUN inside the command's
// new namespaces or the one --netns names, and hands its descriptor to the
// interface's config as an inherited tun_fd.
func openNamespace(cfg *gateway.Config, o runOptions) (*netns.Session, error) {
	n := &cfg.Namespace
	if !n.Enabled() {
		return nil, fmt.Errorf("%s: command mode and --netns need a [namespace] section naming the interface to make inside (see configs/rootless.toml)", o.path)
	}
	ic := &cfg.Interface[n.Index()]
	spec := netns.Spec{
		Args:       o.command,
		NetnsPath:  o.netns,
		UsernsPath: o.userns,
		TUNName:    n.TUN,
		MTU:        ic.MTU,
		Addresses:  n.Prefixes(),
		Gateways:   n.GatewayAddrs(),
	}
	var (
		s   *netns.Session
		err error
	)
	if o.command != nil {
		spec.DNS = n.DNSAddrs()
		s, err = netns.Spawn(context.Background(), spec)
	} else {
		s, err = netns.Attach(context.Background(), spec)
	}
	if err != nil {
		return nil, err
	}
	fd := s.TakeTUN()
	ic.TUNFD = &fd
	return s, nil
}
