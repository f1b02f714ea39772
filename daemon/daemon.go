// Package daemon is the net-tc-filter service: it loads the configuration
// set, compiles it, makes it live in the kernel and reports the kernel's
// decisions.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nettcfilter/net-tc-filter/bpf"
	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
)

// DefaultConfigPath is the main configuration file; drop-ins are read from
// conf.d/ beside it.
const DefaultConfigPath = "/etc/net-tc-filter/net-tc-filter.yml"

// Load reads, checks and compiles the configuration set. Every problem of
// the set, from the files or from resolving names, comes back at once as
// config.Errors.
func Load(path string, r policy.Resolver) (*config.Config, *policy.Policy, error) {
	cfg, errs := config.LoadPartial(path)
	p, err := policy.Compile(cfg, r)
	var compileErrs config.Errors
	if errors.As(err, &compileErrs) {
		errs = append(errs, compileErrs...)
	} else if err != nil {
		return nil, nil, err
	}
	if len(errs) > 0 {
		errs.Sort(cfg.Files)
		return nil, nil, errs
	}
	return cfg, p, nil
}

// Options configure Run.
type Options struct {
	ConfigPath string
	PinDir     string
	Mode       bpf.Mode
	Logger     *slog.Logger
	Resolver   policy.Resolver // NSS when nil
}

// Run enforces the configuration until ctx ends, then honours on_stop.
func Run(ctx context.Context, opts Options) error {
	log := opts.Logger
	if opts.Resolver == nil {
		opts.Resolver = policy.NSS{}
	}
	cfg, p, err := Load(opts.ConfigPath, opts.Resolver)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	for _, w := range p.Warnings {
		log.Warn(w)
	}
	logMode, err := bpf.ParseLogMode(cfg.Log.Decisions)
	if err != nil {
		return err
	}
	f, err := bpf.Open(bpf.Options{PinDir: opts.PinDir, Mode: opts.Mode})
	if err != nil {
		return err
	}
	ifaces, err := bpf.Interfaces()
	if err != nil {
		f.Close()
		return err
	}
	gen, err := f.Apply(p, ifaces, logMode)
	if err != nil {
		// Whatever did attach stays: fail loudly, but never leave a
		// half-applied filter silently.
		f.Close()
		return fmt.Errorf("apply policy: %w", err)
	}
	log.Info(statusLine(p, f), "generation", gen, "files", cfg.Files)

	events, err := f.Events()
	if err != nil {
		f.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		newDecisionLog(f, log).run(events)
	}()

	<-ctx.Done()
	events.Close()
	<-done
	if cfg.OnStop == config.OnStopKeep {
		log.Info("stopping; the filter stays enforced (on_stop: keep)")
		return f.Close()
	}
	log.Info("stopping; detaching the filter (on_stop: detach)")
	return f.Detach()
}

// statusLine is the one human line that says what is enforced.
func statusLine(p *policy.Policy, f *bpf.Filter) string {
	users := map[uint32]bool{}
	for _, e := range p.Endpoints {
		for _, u := range e.Principals.UIDs {
			users[u] = true
		}
	}
	var names string
	for i, a := range f.Attachments() {
		if i > 0 {
			names += ", "
		}
		names += a.Iface.Name
	}
	if names == "" {
		names = "no interface"
	}
	return fmt.Sprintf("enforcing %d ranges for %d users on %s; generation %d (%s)",
		p.RangeCount(), len(users), names, f.Generation(), modeName(f.Mode()))
}

func modeName(m bpf.Mode) string {
	if m == bpf.ModeAuto {
		return "not attached"
	}
	return string(m)
}
