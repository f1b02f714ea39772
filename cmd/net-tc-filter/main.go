// Command net-tc-filter is a host egress firewall that decides by the user
// who owns the sending socket.
package main

import (
	"context"
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

	"github.com/nettcfilter/net-tc-filter/bpf"
	"github.com/nettcfilter/net-tc-filter/daemon"
	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/logging"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
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
  explain   say which range decides a user's packets to a destination, and why
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
	fs := newFlags("run", "run [--config FILE] [--pin-dir DIR] [--attach-mode auto|tcx|clsact]", stderr)
	cfgPath := fs.String("config", daemon.DefaultConfigPath, "main configuration `file`; drop-ins are read from conf.d/ beside it")
	pinDir := fs.String("pin-dir", bpf.DefaultPinDir, "bpffs `directory` for the pinned programs, maps and links")
	modeText := fs.String("attach-mode", "auto", "how to attach: auto (tcx where the kernel has it), tcx or clsact")
	if code, ok := parse(fs, args, stdout); !ok {
		return code
	}
	mode, err := bpf.ParseMode(*modeText)
	if err != nil {
		fmt.Fprintf(stderr, "net-tc-filter run: %v\n", err)
		return exitUsage
	}
	level := new(slog.LevelVar)
	log := slog.New(logging.NewHandler(stderr, level))
	svc := daemon.New(daemon.Options{
		ConfigPath: *cfgPath,
		PinDir:     *pinDir,
		Mode:       mode,
		Logger:     log,
		LogLevel:   level,
		Decisions:  slog.New(logging.NewHandler(stderr, slog.LevelDebug)),
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
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
	cfg, p, err := daemon.Load(*cfgPath, policy.NSS{})
	if err != nil {
		printErrors(stderr, err)
		return exitFailure
	}
	printPolicy(stdout, cfg, p)
	for _, w := range p.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	fmt.Fprintf(stdout, "OK: %d endpoints, %d ranges\n", len(p.Endpoints), p.RangeCount())
	return exitOK
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
	fs := newFlags("explain", "explain --user USER --dst ADDRESS [--iface NAME] [--config FILE]", stderr)
	cfgPath := fs.String("config", daemon.DefaultConfigPath, "main configuration `file`; drop-ins are read from conf.d/ beside it")
	who := fs.String("user", "", "sender: a user name, uid:N, or unowned (no socket)")
	dstText := fs.String("dst", "", "destination `address` (IPv4 or IPv6)")
	iface := fs.String("iface", "", "interface `name` (default: every filtered interface of this host)")
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
	owner, err := parseOwner(*who, policy.NSS{})
	if err != nil {
		fmt.Fprintf(stderr, "net-tc-filter explain: --user: %v\n", err)
		return exitFailure
	}
	_, p, err := daemon.Load(*cfgPath, policy.NSS{})
	if err != nil {
		printErrors(stderr, err)
		return exitFailure
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
		verdict := "denied"
		if d.Allowed {
			verdict = "allowed"
		}
		fmt.Fprintf(stdout, "%s: %s: %s\n", name, verdict, d.Reason)
	}
	return exitOK
}

// parseOwner reads "alice", "uid:1005" or "unowned".
func parseOwner(s string, r policy.Resolver) (policy.Owner, error) {
	if s == "unowned" {
		return policy.Owner{Unowned: true}, nil
	}
	if n, ok := strings.CutPrefix(s, "uid:"); ok {
		uid, err := strconv.ParseUint(n, 10, 32)
		if err != nil || uid == 1<<32-1 {
			return policy.Owner{}, fmt.Errorf("%q is not a uid", n)
		}
		return policy.Owner{UID: uint32(uid)}, nil
	}
	uid, err := r.User(s)
	if err != nil {
		return policy.Owner{}, err
	}
	return policy.Owner{UID: uid}, nil
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
