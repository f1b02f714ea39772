// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/spf13/cobra"

	"github.com/nettcfilter/net-tc-filter/bpf"
	"github.com/nettcfilter/net-tc-filter/daemon"
	"github.com/nettcfilter/net-tc-filter/daemon/logging"
	"github.com/nettcfilter/net-tc-filter/daemon/metrics"
	ntfdbus "github.com/nettcfilter/net-tc-filter/dbus"
)

type runOptions struct {
	config, pinDir, stateDir, mode string
	resolveEvery                   time.Duration
}

func newRunCmd(p parts) *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run [--config FILE] [--pin-dir DIR] [--state-dir DIR] [--attach-mode auto|tcx|clsact] [--resolve-interval DURATION]",
		Short: "enforce the configuration until SIGINT/SIGTERM (the daemon)",
		Long: `Enforce the configuration in the foreground until SIGINT or SIGTERM. SIGHUP,
D-Bus Reload and changes of the configuration files reload it.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.resolveEvery <= 0 {
				return usageError("--resolve-interval %v: must be more than 0", o.resolveEvery)
			}
			mode, err := bpf.ParseMode(o.mode)
			if err != nil {
				return usageError("--attach-mode: %v", err)
			}
			return exit(runDaemon(cmd.Context(), p, o, mode, cmd.ErrOrStderr()))
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", daemon.DefaultConfigPath, "main configuration `FILE`; drop-ins are read from conf.d/ beside it")
	f.StringVar(&o.pinDir, "pin-dir", bpf.DefaultPinDir, "bpffs `DIR` for the pinned programs, maps and links")
	f.StringVar(&o.stateDir, "state-dir", daemon.StateDir(), "`DIR` (root's only) keeping the last set that went live, enforced when a start finds the files invalid; $STATE_DIRECTORY when systemd sets it")
	f.StringVar(&o.mode, "attach-mode", "auto", "how to attach: auto (tcx where the kernel has it), tcx or clsact")
	f.DurationVar(&o.resolveEvery, "resolve-interval", daemon.DefaultResolveInterval,
		"how often user and group names are resolved again through NSS (`DURATION`, e.g. 30s): group members in LDAP/SSSD change without a file to watch, and a name that does not resolve matches no one until it does")
	cmd.MarkFlagFilename("config", "yml", "yaml")
	cmd.MarkFlagDirname("pin-dir")
	cmd.MarkFlagDirname("state-dir")
	cmd.RegisterFlagCompletionFunc("attach-mode", cobra.FixedCompletions([]string{"auto", "tcx", "clsact"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// runDaemon runs the service until ctx ends or SIGINT/SIGTERM. The
// goroutines it starts beside the service (D-Bus, SIGHUP) end with it:
// it returns only once they have.
func runDaemon(ctx context.Context, p parts, o runOptions, mode bpf.Mode, stderr io.Writer) int {
	level := new(slog.LevelVar)
	log := slog.New(logging.NewHandler(stderr, level))
	events := make(chan daemon.Change, 64)
	// The metrics server reads the service, and the service tells it
	// the configured address: made one after the other, used only once
	// both exist.
	var msrv *metrics.Server
	svc := daemon.New(daemon.Options{
		ConfigPath:      o.config,
		PinDir:          o.pinDir,
		StateDir:        o.stateDir,
		Mode:            mode,
		Logger:          log,
		LogLevel:        level,
		Decisions:       slog.New(logging.NewHandler(stderr, slog.LevelDebug)),
		Events:          events,
		MetricsListen:   func(addr string) error { return msrv.Listen(addr) },
		ResolveInterval: o.resolveEvery,
	})
	// Registered before anything else can take time: an early SIGHUP must
	// not kill the daemon (its default action).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	msrv, err = metrics.NewServer(ctx, svc, metrics.Options{Version: version, Logger: log})
	if err != nil {
		log.Error("net-tc-filter run: " + err.Error())
		return exitFailure
	}
	serveHandedOver(msrv, log)

	// Both end when ctx does; the deferred wait (after stop, which
	// cancels ctx, in the order defers run) keeps run from returning
	// while either still uses the service.
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	wg.Go(func() {
		p.serveBus(ctx, ntfdbus.ServerOptions{Manager: svc, Events: events, Version: version, Logger: log})
	})
	wg.Go(func() { reloadOnHangup(ctx, svc, hup) })
	if err := svc.Run(ctx); err != nil {
		log.Error("net-tc-filter run: " + err.Error())
		return exitFailure
	}
	return exitOK
}

// serveHandedOver serves the metrics on the sockets systemd passed
// (net-tc-filter-metrics.socket: LISTEN_FDS, LISTEN_PID); without them,
// nothing.
func serveHandedOver(msrv *metrics.Server, log *slog.Logger) {
	lns, err := activation.Listeners()
	if err != nil {
		log.Error("metrics: sockets from systemd", "err", err)
		return
	}
	for i, ln := range lns {
		if ln == nil {
			log.Warn(fmt.Sprintf("metrics: systemd passed file descriptor %d, which is not a listening stream socket; ignored", 3+i))
			continue
		}
		msrv.Serve(ln)
		log.Info("metrics: serving http://" + ln.Addr().String() + "/metrics (socket from systemd)")
	}
}

// reloadOnHangup makes SIGHUP a reload, as for every classic daemon.
func reloadOnHangup(ctx context.Context, svc *daemon.Service, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			// The service logs the outcome; a failed reload keeps the
			// running policy.
			svc.Reload(ctx)
		}
	}
}
