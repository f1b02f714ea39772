// Command net-tc-filter is a host egress firewall that decides by the user
// who owns the sending socket.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/nettcfilter/net-tc-filter/bpf"
	"github.com/nettcfilter/net-tc-filter/daemon"
	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/logging"
	"github.com/nettcfilter/net-tc-filter/daemon/metrics"
	"github.com/nettcfilter/net-tc-filter/daemon/nss"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
	ntfdbus "github.com/nettcfilter/net-tc-filter/dbus"
)

// version is stamped at build time: -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

const usage = `Usage: net-tc-filter COMMAND [OPTIONS]

A host egress firewall that decides by the user who owns the sending socket.

Commands:
  run       enforce the configuration in the foreground until SIGINT/SIGTERM;
            SIGHUP and changes of the configuration files reload it
  check     validate the configuration set and print the compiled policy
  status    show the running daemon's state, policy generation and counters
  reload    make the running daemon reload its configuration (synchronous)
  explain   say which range decides a user's packets to a destination, and why
            (the running daemon's live policy; --offline: the files)
  detach    remove the filter and its pinned state by hand
  version   print the version

Run 'net-tc-filter COMMAND --help' for a command's options.
Exit status: 0 success, 1 failure, 2 usage error.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: testable.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmds := map[string]func([]string, io.Writer, io.Writer) int{
		"run":     cmdRun,
		"check":   cmdCheck,
		"explain": cmdExplain,
		"status":  cmdStatus,
		"reload":  cmdReload,
		"detach":  cmdDetach,
		"version": cmdVersion,
	}
	switch args[0] {
	case "-h", "--help", "-help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "net-tc-filter: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	return cmd(args[1:], stdout, stderr)
}

// newFlags makes a command's flag set; parse reports usage errors as exit 2
// and --help as success.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: net-tc-filter %s\n\nOptions:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string, stdout io.Writer) (int, bool) {
	if slices.Contains(args, "-h") || slices.Contains(args, "--help") || slices.Contains(args, "-help") {
		fs.SetOutput(stdout)
		fs.Usage()
		return exitOK, false
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "net-tc-filter %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return exitUsage, false
	}
	return exitOK, true
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", "version", stderr)
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	fmt.Fprintf(stdout, "net-tc-filter %s\n", version)
	return exitOK
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", "run [--config FILE] [--pin-dir DIR] [--state-dir DIR] [--attach-mode auto|tcx|clsact] [--resolve-interval DURATION]", stderr)
	cfgPath := fs.String("config", daemon.DefaultConfigPath, "main configuration `file`; drop-ins are read from conf.d/ beside it")
	pinDir := fs.String("pin-dir", bpf.DefaultPinDir, "bpffs `directory` for the pinned programs, maps and links")
	stateDir := fs.String("state-dir", daemon.StateDir(), "`directory` (root's only) keeping the last set that went live, enforced when a start finds the files invalid; $STATE_DIRECTORY when systemd sets it")
	modeText := fs.String("attach-mode", "auto", "how to attach: auto (tcx where the kernel has it), tcx or clsact")
	resolveEvery := fs.Duration("resolve-interval", daemon.DefaultResolveInterval,
		"how often user and group names are resolved again through NSS (`duration`, e.g. 30s): group members in LDAP/SSSD change without a file to watch, and a name that does not resolve matches no one until it does")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	if *resolveEvery <= 0 {
		fmt.Fprintf(stderr, "net-tc-filter run: --resolve-interval %v: must be more than 0\n", *resolveEvery)
		return exitUsage
	}
	mode, err := bpf.ParseMode(*modeText)
	if err != nil {
		fmt.Fprintf(stderr, "net-tc-filter run: %v\n", err)
		return exitUsage
	}
	level := new(slog.LevelVar)
	log := slog.New(logging.NewHandler(stderr, level))
	events := make(chan daemon.Change, 64)
	// The metrics server reads the service, and the service tells it
	// the configured address: made one after the other, used only once
	// both exist.
	var msrv *metrics.Server
	svc := daemon.New(daemon.Options{
		ConfigPath:      *cfgPath,
		PinDir:          *pinDir,
		StateDir:        *stateDir,
		Mode:            mode,
		Logger:          log,
		LogLevel:        level,
		Decisions:       slog.New(logging.NewHandler(stderr, slog.LevelDebug)),
		Events:          events,
		MetricsListen:   func(addr string) error { return msrv.Listen(addr) },
		ResolveInterval: *resolveEvery,
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	msrv, err = metrics.NewServer(ctx, svc, metrics.Options{Version: version, Logger: log})
	if err != nil {
		log.Error("net-tc-filter run: " + err.Error())
		return exitFailure
	}
	serveHandedOver(msrv, log)
	busCtx, stopBus := context.WithCancel(ctx)
	defer stopBus()
	go ntfdbus.Serve(busCtx, ntfdbus.ServerOptions{Manager: svc, Events: events, Version: version, Logger: log})
	// Registered before anything else can take time: an early SIGHUP must
	// not kill the daemon (its default action).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadOnHangup(ctx, svc, hup)
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

// printErrors prints configuration problems one per line, file:line first.
func printErrors(w io.Writer, err error) {
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(w, e.Error())
		}
		return
	}
	fmt.Fprintln(w, err)
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", "check [--config FILE]", stderr)
	cfgPath := fs.String("config", daemon.DefaultConfigPath, "main configuration `file`; drop-ins are read from conf.d/ beside it")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	cfg, p, err := daemon.Load(*cfgPath, nss.Resolver{})
	if err != nil {
		printErrors(stderr, err)
		// A file that is not read may be where the fix was written.
		printWarnings(stderr, cfg.Warnings)
		return exitFailure
	}
	printPolicy(stdout, cfg, p)
	printWarnings(stderr, slices.Concat(cfg.Warnings, p.Warnings))
	fmt.Fprintf(stdout, "OK: %d endpoints, %d ranges\n", len(p.Endpoints), p.RangeCount())
	return exitOK
}

func printWarnings(w io.Writer, warnings []string) {
	for _, s := range warnings {
		fmt.Fprintf(w, "warning: %s\n", s)
	}
}

func printPolicy(w io.Writer, cfg *config.Config, p *policy.Policy) {
	fmt.Fprintf(w, "files: %s\n", strings.Join(cfg.Files, ", "))
	fmt.Fprintf(w, "decision log: %s, at most %d lines/s; on stop: %s\n", cfg.Log.Decisions, cfg.Log.Rate, cfg.OnStop)
	fmt.Fprintln(w, "interfaces:")
	if len(p.Interfaces) == 0 {
		fmt.Fprintln(w, "  (no interfaces: key; filtered interfaces default to deny)")
	}
	for _, s := range p.Interfaces {
		fmt.Fprintf(w, "  %-16s default %s\n", s.Pattern, s.Default)
	}
	fmt.Fprintln(w, "endpoints:")
	if len(p.Endpoints) == 0 {
		fmt.Fprintln(w, "  (none: nothing is filtered)")
	}
	for _, e := range p.Endpoints {
		fmt.Fprintf(w, "  %s on %s\n", e.Name, strings.Join(e.Ifaces, ", "))
		fmt.Fprintf(w, "    allow: %s => %s\n", strings.Join(e.Allow, ", "), e.Principals)
		for _, r := range e.Ranges {
			fmt.Fprintf(w, "    %s\n", r)
		}
	}
}

func cmdExplain(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("explain", "explain --user USER --dst ADDRESS [--iface NAME] [--offline] [--config FILE]", stderr)
	cfgPath := fs.String("config", daemon.DefaultConfigPath, "main configuration `file` for --offline; drop-ins are read from conf.d/ beside it (implies --offline)")
	who := fs.String("user", "", "sender: a user name, uid:N, or unowned (no socket)")
	dstText := fs.String("dst", "", "destination `address` (IPv4 or IPv6)")
	iface := fs.String("iface", "", "interface `name` (default: every filtered interface of this host)")
	offline := fs.Bool("offline", false, "judge by the configuration files, not by the running daemon's live policy")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	if *who == "" || *dstText == "" {
		fmt.Fprintln(stderr, "net-tc-filter explain: --user and --dst are required")
		fs.Usage()
		return exitUsage
	}
	dst, err := netip.ParseAddr(*dstText)
	if err != nil {
		fmt.Fprintf(stderr, "net-tc-filter explain: --dst: %v\n", err)
		return exitUsage
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "config" {
			*offline = true
		}
	})
	if !*offline {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := ntfdbus.Dial(ctx)
		if err == nil {
			defer c.Close()
			return explainOnline(ctx, c, *who, dst, *iface, stdout, stderr)
		}
		fmt.Fprintf(stderr, "net-tc-filter explain: %v; judging by the configuration files instead\n", err)
	}
	owner, err := daemon.ParseOwner(*who, nss.Resolver{})
	if err != nil {
		fmt.Fprintf(stderr, "net-tc-filter explain: --user: %v\n", err)
		return exitFailure
	}
	// As the daemon would enforce it: a name that does not resolve
	// matches no one (check calls it an error).
	_, p, err := daemon.LoadAsEnforced(*cfgPath, nss.Resolver{})
	if err != nil {
		printErrors(stderr, err)
		return exitFailure
	}
	for _, u := range p.Unresolved {
		fmt.Fprintf(stderr, "warning: %s: it matches no one, as in the daemon\n", u)
	}
	names := []string{*iface}
	if *iface == "" {
		if names, err = filteredHere(p); err != nil {
			fmt.Fprintf(stderr, "net-tc-filter explain: %v\n", err)
			return exitFailure
		}
		if len(names) == 0 {
			fmt.Fprintln(stderr, "net-tc-filter explain: the configuration filters no interface of this host; name one with --iface")
			return exitFailure
		}
	}
	for _, name := range names {
		d := p.Decide(name, owner, dst)
		printVerdict(stdout, name, d.Allowed, d.Reason)
	}
	return exitOK
}

func printVerdict(w io.Writer, iface string, allowed bool, reason string) {
	verdict := "denied"
	if allowed {
		verdict = "allowed"
	}
	fmt.Fprintf(w, "%s: %s: %s\n", iface, verdict, reason)
}

// explainOnline asks the running daemon (D-Bus Check) about its live policy.
func explainOnline(ctx context.Context, c *ntfdbus.Client, who string, dst netip.Addr, iface string, stdout, stderr io.Writer) int {
	names := []string{iface}
	if iface == "" {
		st, err := c.Status(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "net-tc-filter explain: %v\n", err)
			return exitFailure
		}
		names = names[:0]
		for _, a := range st.Interfaces {
			names = append(names, a.Name)
		}
		if len(names) == 0 {
			fmt.Fprintln(stderr, "net-tc-filter explain: the running daemon filters no interface; name one with --iface")
			return exitFailure
		}
	}
	for _, name := range names {
		d, err := c.Check(ctx, who, dst.String(), name)
		if err != nil {
			fmt.Fprintf(stderr, "net-tc-filter explain: %v\n", err)
			return exitFailure
		}
		printVerdict(stdout, name, d.Allowed, d.Reason)
	}
	return exitOK
}

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", "status [--json]", stderr)
	asJSON := fs.Bool("json", false, "print the status as JSON, for scripts")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ntfdbus.Dial(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "net-tc-filter status: %v\n", err)
		return exitFailure
	}
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "net-tc-filter status: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(st)
		return exitOK
	}
	printStatus(stdout, st)
	return exitOK
}

// reloadBySignal is the fallback of the unit's ExecReload= when D-Bus is
// not up yet (the service starts before it at boot): systemd names the
// daemon in $MAINPID, and SIGHUP reloads it, without the synchronous
// answer.
func reloadBySignal(busErr error, stderr io.Writer) int {
	pid, err := strconv.Atoi(os.Getenv("MAINPID"))
	if err != nil || pid <= 1 {
		fmt.Fprintf(stderr, "net-tc-filter reload: %v\n", busErr)
		return exitFailure
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		fmt.Fprintf(stderr, "net-tc-filter reload: %v; SIGHUP to %d: %v\n", busErr, pid, err)
		return exitFailure
	}
	fmt.Fprintf(stderr, "net-tc-filter reload: %v; sent SIGHUP to %d instead (the outcome is in the journal)\n", busErr, pid)
	return exitOK
}

func printStatus(w io.Writer, st ntfdbus.Status) {
	fmt.Fprintf(w, "net-tc-filter %s: %s\n", st.Version, st.State)
	applied := "never"
	if !st.LastReload.IsZero() {
		applied = st.LastReload.Local().Format("2006-01-02 15:04:05 MST")
	}
	fmt.Fprintf(w, "  %-12s %d, applied %s\n", "generation", st.Generation, applied)
	lastErr := "none"
	if st.LastError != "" {
		lastErr = st.LastError
	}
	fmt.Fprintf(w, "  %-12s %s\n", "last error", lastErr)
	fmt.Fprintf(w, "  %-12s %d ranges\n", "rules", st.RuleCount)
	fmt.Fprintf(w, "  %-12s %d allowed, %d denied\n", "packets", st.Allowed, st.Denied)
	if len(st.Interfaces) == 0 {
		fmt.Fprintf(w, "  %-12s none\n", "interfaces")
	}
	for i, a := range st.Interfaces {
		label := ""
		if i == 0 {
			label = "interfaces"
		}
		fmt.Fprintf(w, "  %-12s %s (ifindex %d, %s)\n", label, a.Name, a.Index, a.Mode)
	}
	fmt.Fprintf(w, "  %-12s %s\n", "config", strings.Join(st.ConfigFiles, ", "))
	for i, s := range st.Warnings {
		label := ""
		if i == 0 {
			label = "warnings"
		}
		fmt.Fprintf(w, "  %-12s %s\n", label, s)
	}
}

func cmdReload(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("reload", "reload", stderr)
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := ntfdbus.Dial(ctx)
	if err != nil {
		return reloadBySignal(err, stderr)
	}
	defer c.Close()
	gen, err := c.Reload(ctx)
	var de *ntfdbus.Error
	switch {
	case errors.As(err, &de) && de.Name == ntfdbus.ErrInvalidConfig:
		fmt.Fprintln(stderr, "net-tc-filter reload: the configuration is invalid; the running policy stays:")
		fmt.Fprintln(stderr, de.Message)
		return exitFailure
	case errors.As(err, &de) && de.Name == ntfdbus.ErrAccessDenied:
		fmt.Fprintf(stderr, "net-tc-filter reload: permission denied: only root may reload (%s)\n", de.Message)
		return exitFailure
	case err != nil:
		fmt.Fprintf(stderr, "net-tc-filter reload: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "reloaded: generation %d is live\n", gen)
	return exitOK
}

func filteredHere(p *policy.Policy) ([]string, error) {
	ifaces, err := bpf.Interfaces()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, i := range ifaces {
		if p.Filtered(i.Name) {
			names = append(names, i.Name)
		}
	}
	return names, nil
}

func cmdDetach(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("detach", "detach [--pin-dir DIR]", stderr)
	pinDir := fs.String("pin-dir", bpf.DefaultPinDir, "bpffs `directory` of the pinned state to remove")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	if err := bpf.Remove(*pinDir); err != nil {
		fmt.Fprintf(stderr, "net-tc-filter detach: %v\n", err)
		return exitFailure
	}
	fmt.Fprintln(stdout, "detached: no interface is filtered by net-tc-filter any more")
	return exitOK
}
