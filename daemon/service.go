// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nettcfilter/net-tc-filter/bpf"
	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/metrics"
	"github.com/nettcfilter/net-tc-filter/daemon/nss"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
	"github.com/nettcfilter/net-tc-filter/daemon/units"
	"github.com/nettcfilter/net-tc-filter/daemon/watch"
)

// Options configure a Service.
type Options struct {
	ConfigPath string
	PinDir     string
	Mode       bpf.Mode
	// Logger takes the daemon's own messages; its level follows log.level
	// through LogLevel when that is set.
	Logger   *slog.Logger
	LogLevel *slog.LevelVar
	// Decisions takes the decision log; nil: Logger. It should let every
	// level through: log.decisions chooses what reaches it.
	Decisions *slog.Logger
	// Resolver resolves user and group names; NSS when nil. Each load
	// or resolution waits policy.LookupBudget for it at most, and at
	// most policy.MaxStuckLookups lookups are left unanswered.
	Resolver policy.Resolver
	// AccountFiles are watched for changes of users and groups; nil:
	// /etc/passwd and /etc/group.
	AccountFiles []string
	// Events, when set, receives an Event after every reload and status
	// change. Sends never block: a full channel drops the event, and the
	// next one carries the news (observers re-read Status).
	Events chan<- Change
	// MetricsListen, when set, is told the metrics address of the
	// configuration (metrics.listen; "" for none) once the policy is live
	// at start, and again after every reload that changes it or after one
	// it failed to bind. A failure is logged; the filter does not depend
	// on it.
	MetricsListen func(addr string) error
	// ResolveInterval is how often the live policy's user and group
	// names are resolved again: LDAP and SSSD change members without a
	// file to watch, and a name that did not resolve (LDAP down at boot)
	// must start matching once it does. 0: DefaultResolveInterval.
	ResolveInterval time.Duration
	// StateDir keeps the last set that went live, enforced by a start
	// whose files are invalid (lastgood.go); "": none is kept.
	StateDir string
}

// DefaultResolveInterval is the default of Options.ResolveInterval: SPEC
// §1 "Failing closed" asks for at least every 30 s.
const DefaultResolveInterval = 30 * time.Second

// Change tells an observer (the D-Bus object) that the service changed.
type Change struct {
	Reload     bool   // a reload ended, well or not; else another status change
	Generation uint32 // the live generation
	Err        string // why the reload failed; empty when it did not
}

// State is what the service is doing.
type State string

const (
	StateStarting  State = "starting"
	StateRunning   State = "running"   // the configured policy is live
	StateReloading State = "reloading" // a reload is under way
	StateDegraded  State = "degraded"  // enforcing, but the last reload or interface change failed, or names do not resolve
	StateStopping  State = "stopping"
)

// Status is a snapshot of the service for people and tools.
type Status struct {
	State       State
	Summary     string // the STATUS= line
	Generation  uint32
	Mode        bpf.Mode
	Attachments []bpf.Attachment
	Ranges      int
	Users       int
	Files       []string
	LastReload  time.Time
	// LastError says why the last reload (or the start's load, or an
	// interface change) failed: every problem, one a line, and, while
	// the start's last good set is enforced instead of the files, a last
	// line that says so. Empty when it succeeded.
	LastError string
	// Unresolved are the live policy's user and group names that match
	// no one because they do not resolve, each with where it is written
	// and why (policy.Unresolved.String).
	Unresolved []string
	// Warnings of the live set on this host: files in conf.d that are
	// not read, interfaces locked down by a deny default, endpoints whose
	// iface matches no interface, risky settings (Warnings).
	Warnings []string
	// Units are the units the live policy names, with their cgroup and
	// its current id (0: not there now), read when Status is asked.
	Units []UnitStatus
	// Cgroups says why the live policy's cgroup principals match less
	// than configured (no cgroup2 mount, the tracepoints refused, more
	// cgroups than the kernel tracks): they match no one, fail closed,
	// and the service is degraded. "" when they match as configured.
	Cgroups string
}

// UnitStatus is a unit of the live policy and its cgroup now.
type UnitStatus struct {
	Name string
	Path string // below the cgroup2 mount
	ID   uint64 // the cgroup's id now (a restart changes it); 0: not there
}

// Problem says why the service is degraded, every problem a line: the
// last reload's (LastError), then each name that does not resolve; "" when
// it is neither.
func (st Status) Problem() string {
	var lines []string
	if st.LastError != "" {
		lines = append(lines, st.LastError)
	}
	for _, u := range st.Unresolved {
		what := "user/group name"
		if strings.HasPrefix(u, "unit:") {
			what = "unit"
		}
		lines = append(lines, what+" matches no one: "+u)
	}
	if st.Cgroups != "" {
		lines = append(lines, "cgroup principals match no one: "+st.Cgroups)
	}
	return strings.Join(lines, "\n")
}

// Service enforces a configuration set and follows its changes, the
// changes of users and groups, and interfaces coming and going. One
// goroutine (Run) owns the kernel state; everything else asks it.
type Service struct {
	opts    Options
	log     *slog.Logger
	notify  notifier
	reloads chan reloadRequest
	parsed  config.Cache // files as last parsed: a reload parses what changed

	// Staging (stage.go): requests for the Run goroutine, the stage in
	// force, and the end of its --for (stopped while none).
	stages     chan stageRequest
	staged     stageState
	stageTimer *time.Timer

	// Owned by the Run goroutine.
	cfg     *config.Config // the live set's settings, without its endpoints (see policy)
	logMode bpf.LogMode
	// unsaved is a set that went live and is not saved as the last good
	// set yet: that waits until READY=1 is sent (a large set's copy takes
	// a second or more, which no start or reload should wait for).
	unsaved *config.Config
	// fallback says what is enforced instead of the files while the start
	// fell back on the last good set ("the last good set of <time>"); ""
	// once the files went live.
	fallback string
	rate     atomic.Int64 // log.rate, read by the decision log
	// hostWarnings are the live policy's warnings about this host's
	// interfaces (policy.HostWarnings) as last computed: at every apply,
	// which interfaces coming, going or being renamed cause.
	hostWarnings []string
	// metricsAddr is the metrics address last handed to MetricsListen
	// successfully.
	metricsAddr string
	metricsOK   bool

	suppressed atomic.Uint64 // decision log entries log.rate left out

	// The fields under mu are written by the Run goroutine alone, with mu
	// held: Run reads them without it, every other goroutine with it.
	mu sync.Mutex
	// filter is the kernel's state: nil until Run opened it, and again
	// from when Run lets it go (a stop, a failed start) to close or
	// detach it, so that Counters and Metrics never read closed maps.
	filter *bpf.Filter
	// policy is the live policy, nil until the first apply. A compiled
	// policy is never modified: Check uses it after letting go of mu.
	policy *policy.Policy
	status Status
	// lastError is status.LastError with its one line for STATUS=.
	lastError lastError
	loads     loadStats
}

// loadStats are the reloads' outcomes, for the metrics.
type loadStats struct {
	ok, failed uint64
	last       metrics.Reload // the start's load until the first reload
	v4, v6     int            // ranges of the live policy by family
}

type reloadRequest struct {
	reply chan<- reloadResult
}

type reloadResult struct {
	gen uint32
	err error
}

// New makes a service; Run starts it.
func New(opts Options) *Service {
	if opts.Resolver == nil {
		opts.Resolver = units.With(nss.Resolver{})
	}
	// Every load and resolution waits policy.LookupBudget at most for
	// NSS, and leaves what it stopped waiting for behind: the daemon
	// leaves that many at most.
	opts.Resolver = policy.Limit(opts.Resolver, policy.MaxStuckLookups)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Decisions == nil {
		opts.Decisions = opts.Logger
	}
	if opts.ResolveInterval <= 0 {
		opts.ResolveInterval = DefaultResolveInterval
	}
	stageTimer := time.NewTimer(time.Hour)
	stageTimer.Stop()
	return &Service{
		opts:       opts,
		log:        opts.Logger,
		reloads:    make(chan reloadRequest),
		stages:     make(chan stageRequest),
		stageTimer: stageTimer,
		status:     Status{State: StateStarting},
	}
}

// Reload reads the configuration set again and makes it live. It returns
// the new generation once the kernel enforces it, or every problem of the
// set, in which case the running policy stays. Reloads from every source
// are serialised.
func (s *Service) Reload(ctx context.Context) (uint32, error) {
	reply := make(chan reloadResult, 1)
	select {
	case s.reloads <- reloadRequest{reply: reply}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case r := <-reply:
		return r.gen, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Status returns a snapshot.
func (s *Service) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Attachments = slices.Clone(st.Attachments)
	st.Files = slices.Clone(st.Files)
	st.Unresolved = slices.Clone(st.Unresolved)
	st.Warnings = slices.Clone(st.Warnings)
	st.Units = unitsNow(s.policy)
	return st
}

// ifaceName names a filtered interface for the decision log, which runs on
// its own goroutine.
func (s *Service) ifaceName(idx int) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.status.Attachments {
		if a.Iface.Index == idx {
			return a.Iface.Name, true
		}
	}
	return "", false
}

// Run enforces the configuration until ctx ends, then honours on_stop. It
// returns an error when the service cannot start; once started, failed
// reloads are reported and the running policy stays.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	began := time.Now()
	// Watch before the first load, so that a change made while it reads
	// (the fix of a broken file, say) is reloaded after it, not missed.
	w, err := watch.New(watch.Options{ConfigPath: s.opts.ConfigPath, AccountFiles: s.opts.AccountFiles, Logger: s.log})
	if err != nil {
		return err
	}
	defer w.Close()
	// The program is loaded (and verified) while the files are read: a
	// large set's start waits for both, which need nothing of each other.
	// Opening changes nothing the pinned filter enforces, so a set that
	// turns out invalid leaves it as it was.
	opened := make(chan openResult, 1)
	go func() {
		f, err := bpf.Open(bpf.Options{PinDir: s.opts.PinDir, Mode: s.opts.Mode})
		opened <- openResult{f, err}
	}()
	cfg, p, err := s.loadAtStart()
	o := <-opened
	if err != nil {
		if o.filter != nil {
			o.filter.Close()
		}
		s.notify.status("configuration invalid; not started (the pinned filter, if any, stays)")
		return fmt.Errorf("configuration:\n%w", err)
	}
	if o.err != nil {
		return o.err
	}
	filter := o.filter
	logMode, err := bpf.ParseLogMode(cfg.Log.Decisions)
	if err != nil {
		filter.Close()
		return err
	}
	// Subscribe before listing, so that an interface created in between
	// is not missed.
	links := linkEvents(ctx, s.log)

	s.mu.Lock()
	s.filter = filter
	s.mu.Unlock()
	if filter.StagedEndedAtStart() {
		s.log.Info("stage ended: the daemon restarted (a stage never outlives the daemon that reports on it; stage it again)")
	}
	if err := s.applyLoaded(cfg, p, logMode); err != nil {
		// Whatever did attach stays: fail loudly, but never remove a
		// filter that may be protecting something.
		s.letGo().Close()
		return fmt.Errorf("apply policy: %w", err)
	}
	dlog, err := s.startDecisionLog()
	if err != nil {
		s.letGo().Close()
		return err
	}
	s.recordStart(began)
	s.setState(StateRunning)
	s.listenMetrics()
	s.log.Info("started: "+s.summary(), "generation", s.filter.Generation(), "files", cfg.Files)
	if err := s.notify.ready(s.summary()); err != nil {
		s.log.Warn("tell systemd we are ready", "err", err)
	}
	// Enforcing already; now give the idle slot the same policy, so that
	// the first reload writes only what changed, and keep the set.
	s.mirror()
	s.saveLastGood(cfg)
	release := time.NewTimer(releaseAfter)
	defer release.Stop()
	collect(release)

	var watchdog <-chan time.Time
	if d, err := watchdogInterval(); err != nil {
		s.log.Warn("watchdog", "err", err)
	} else if d > 0 {
		t := time.NewTicker(d)
		defer t.Stop()
		watchdog = t.C
		s.notify.watchdog()
	}

	changes := w.Changes()
	// While a filtered interface could not be attached, try again now
	// and then: a transient failure must not leave it unfiltered.
	retry := time.NewTicker(5 * time.Second)
	defer retry.Stop()
	// Even when every name resolves: group members in LDAP or SSSD change
	// without a file event, and this is how such a change goes live.
	resolve := time.NewTicker(s.opts.ResolveInterval)
	defer resolve.Stop()
	// NSS is asked off this goroutine: even within policy.LookupBudget,
	// the watchdog, reloads and interfaces must not wait for a hung NSS.
	res := newResolutions(s.opts.Resolver)
	for {
		gen := s.filter.Generation()
		select {
		case <-ctx.Done():
			return s.stop(dlog)
		case req := <-s.reloads:
			gen, err := s.reload(requested, "reload requested")
			req.reply <- reloadResult{gen, err}
			if err != nil {
				// The files are broken, but a deleted user must
				// still lose the access the live policy gives.
				res.start(s.policy, "the set could not be reloaded")
			}
			collect(release)
		case ch, ok := <-changes:
			if !ok {
				s.log.Error("configuration watch ended; reload with SIGHUP")
				changes = nil
				continue
			}
			if _, err := s.reload(fileChange, "changed: "+strings.Join(ch.Paths, ", ")); err != nil {
				res.start(s.policy, "the set could not be reloaded")
			}
			collect(release)
		case <-resolve.C:
			res.start(s.policy, "resolving user and group names every "+s.opts.ResolveInterval.String())
		case r := <-res.answers:
			again := res.done()
			// A reload made a new policy meanwhile, resolved as it
			// was loaded: this answer is for one that is gone.
			if r.base == s.policy {
				s.resolvedAgain(r.next, r.why)
			}
			if again != "" {
				res.start(s.policy, again)
			}
		case <-links.C:
			s.syncInterfaces(links.Gone())
		case <-retry.C:
			s.syncInterfaces(nil)
		case <-watchdog:
			s.notify.watchdog()
		case req := <-s.stages:
			s.handleStage(req)
		case <-s.stageTimer.C:
			if _, err := s.unstage("its time ran out"); err != nil && !errors.Is(err, ErrNothingStaged) {
				s.log.Error("end the stage", "err", err)
			}
		case <-release.C:
			giveBack()
		}
		// A swap made the live policy the one the idle slot does not
		// hold: bring the idle slot up to it now that the change is
		// live (READY=1 is sent), so that the reload never waited for it.
		if s.filter.Generation() != gen {
			s.mirror()
		}
		if s.unsaved != nil {
			s.saveLastGood(s.unsaved)
			s.unsaved = nil
		}
	}
}

// openResult is what bpf.Open gave.
type openResult struct {
	filter *bpf.Filter
	err    error
}

// mirror gives the idle policy slot the live policy (Filter.Mirror).
func (s *Service) mirror() {
	if err := s.filter.Mirror(); err != nil {
		s.log.Warn("prepare the idle policy slot; the next reload writes it whole", "err", err)
	}
}

// collect runs the garbage collector once a load is done with, while the
// daemon is idle. A large set's load leaves tens of megabytes of garbage:
// collected now, the next reload starts with room to allocate in, instead
// of running the collector while the change waits to go live.
//
// The memory freed stays the process's until release fires, releaseAfter
// after the last load: a reload soon after (an edit of several files, a
// script) reuses it instead of faulting fresh pages in, which costs a
// 100 000-range reload hundreds of milliseconds on a nested VM. Then it
// goes back to the kernel at once (giveBack): the heap peaks near twice
// what stays live, and the runtime's own scavenger would take minutes to
// return the difference, holding it in the idle daemon's RSS meanwhile.
func collect(release *time.Timer) {
	runtime.GC()
	gcTarget(idleGCPercent)
	release.Reset(releaseAfter)
}

// The collector's targets (GOGC). While idle the heap may grow by a quarter
// over what is live before the collector runs, where the default lets it
// double: the idle daemon's garbage is the decision log's, which a flood of
// denied packets makes at the full rate of the ring buffer, and with the
// default it grew a large set's heap (100 000 ranges: ~100 MB live) to
// twice its size for as long as the flood lasted. Loads run with the
// default, where collecting four times as often would slow them.
const (
	idleGCPercent = 25
	loadGCPercent = 100
)

// gcTarget sets the collector's target, unless the administrator chose one
// (GOGC in the environment, e.g. a drop-in's Environment=).
func gcTarget(percent int) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(percent)
	}
}

// releaseAfter is how long after a load the memory it freed is given back.
const releaseAfter = 10 * time.Second

// giveBack returns the heap's free memory to the kernel.
func giveBack() {
	debug.FreeOSMemory()
}

// reloadOrigin says what started a reload.
type reloadOrigin int

const (
	// requested: Reload (SIGHUP, D-Bus, the CLI). It always makes a new
	// generation.
	requested reloadOrigin = iota
	// fileChange: the watcher saw the files, or the account files,
	// change. A reload that changes nothing is skipped (an editor's swap
	// file, a new user that no endpoint names).
	fileChange
)

// reload loads the set again.
func (s *Service) reload(origin reloadOrigin, why string) (uint32, error) {
	gcTarget(loadGCPercent)
	var gen uint32
	err := s.asReload(func() (bool, error) {
		before := s.filter.Generation()
		var err error
		gen, err = s.reloadOnce(origin, why)
		// A watcher's reload that changed nothing is not news.
		return origin == requested || gen != before, err
	}, s.listenMetrics)
	return gen, err
}

// asReload runs change as systemd and the D-Bus object see a reload:
// RELOADING=1, then READY=1 with the new STATUS=; the outcome is counted
// for the metrics and told to the observer when it failed or is news.
// settled, if not nil, runs after a successful change once its outcome is
// counted and before READY=1: a metrics listener it moves must not answer
// a scrape with the outcome of the reload before.
func (s *Service) asReload(change func() (news bool, err error), settled func()) error {
	s.notify.reloading()
	s.setState(StateReloading)
	defer func() { s.notify.ready(s.summary()) }()
	began := time.Now()
	news, err := change()
	s.recordReload(began, err)
	if err == nil && settled != nil {
		settled()
	}
	if news || err != nil {
		s.emit(Change{Reload: true, Generation: s.filter.Generation(), Err: errText(err)})
	}
	return err
}

// recordStart notes the start's load of the configuration set, the last
// load until the first reload; it counts as no reload.
func (s *Service) recordStart(began time.Time) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loads.last = metrics.Reload{At: now, Duration: now.Sub(began), OK: true}
}

// recordReload notes the outcome of a reload (or of the names resolved
// again going live).
func (s *Service) recordReload(began time.Time, err error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loads.last = metrics.Reload{At: now, Duration: now.Sub(began), OK: err == nil}
	if err == nil {
		s.loads.ok++
	} else {
		s.loads.failed++
	}
}

// listenMetrics hands metrics.listen of the live configuration to the
// metrics server when it changed, or when the last attempt failed.
func (s *Service) listenMetrics() {
	if s.opts.MetricsListen == nil {
		return
	}
	addr := s.cfg.Metrics.Listen
	if s.metricsOK && addr == s.metricsAddr {
		return
	}
	if err := s.opts.MetricsListen(addr); err != nil {
		s.metricsOK = false
		s.log.Error("metrics not served on metrics.listen; the filter is enforced regardless (fix it and reload)", "err", err)
		return
	}
	s.metricsAddr, s.metricsOK = addr, true
}

// Metrics is the snapshot the Prometheus metrics report, read at each
// scrape.
func (s *Service) Metrics() metrics.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := metrics.Snapshot{
		State:         string(s.status.State),
		Generation:    s.status.Generation,
		ReloadsOK:     s.loads.ok,
		ReloadsFailed: s.loads.failed,
		LastReload:    s.loads.last,
		RangesIPv4:    s.loads.v4,
		RangesIPv6:    s.loads.v6,
		LogSuppressed: s.suppressed.Load(),
	}
	for _, a := range s.status.Attachments {
		snap.Interfaces = append(snap.Interfaces, metrics.Interface{Name: a.Iface.Name, Index: a.Iface.Index, Mode: string(a.Mode)})
	}
	kernel := s.enforcing()
	if kernel == nil {
		return snap
	}
	if c, err := kernel.Counters(); err != nil {
		s.log.Warn("metrics: read the kernel's counters", "err", err)
	} else {
		snap.Kernel = &metrics.Kernel{
			NotIP: c.NotIP, Malformed: c.Malformed, Unfiltered: c.Unfiltered, NoPolicy: c.NoPolicy, EventsLost: c.EventsLost,
			Rejected: c.Rejected, RejectLimited: c.RejectLimited, RejectFailed: c.RejectFailed,
		}
	}
	t, err := kernel.Traffic()
	if err != nil {
		s.log.Warn("metrics: read the kernel's per-interface counts", "err", err)
		return snap
	}
	// By name, for as long as the daemon runs: an interface that goes away
	// keeps its series, as a counter should.
	verdicts := func(in map[string]bpf.Verdicts) map[string]metrics.Verdicts {
		out := make(map[string]metrics.Verdicts, len(in))
		for k, v := range in {
			out[k] = metrics.Verdicts{Allowed: v.Allowed, Denied: v.Denied, Audited: v.Audited}
		}
		return out
	}
	snap.IfaceTraffic = verdicts(t.Ifaces)
	snap.EndpointTraffic = verdicts(t.Endpoints)
	snap.StagedDifferences = s.stagedMetrics(kernel) // s.mu is held
	return snap
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (s *Service) reloadOnce(origin reloadOrigin, why string) (uint32, error) {
	began := time.Now()
	cfg, p, err := loadSettled(s.opts.ConfigPath, s.opts.Resolver, &s.parsed, s.policy)
	loaded := time.Now()
	var logMode bpf.LogMode
	if err == nil {
		logMode, err = bpf.ParseLogMode(cfg.Log.Decisions)
	}
	if err != nil {
		s.failed("reload failed, the running policy stays", why, err)
		return s.filter.Generation(), err
	}
	// Files that compile to the last good set enforced at start are still
	// applied: they, not the state directory's copy, are the set now.
	if origin == fileChange && s.fallback == "" && logMode == s.logMode && p.Equal(s.policy) && cfg.Log == s.cfg.Log && cfg.OnStop == s.cfg.OnStop && cfg.Metrics == s.cfg.Metrics {
		s.log.Debug("configuration unchanged", "why", why)
		s.noteUnresolved(p.Unresolved) // the same uids, maybe for another reason
		s.noteWarnings(cfg)
		s.setError(lastError{}) // a broken set was fixed back to the running one
		s.setState(StateRunning)
		return s.filter.Generation(), nil
	}
	if err := s.applyLoaded(cfg, p, logMode); err != nil {
		s.failed("reload incomplete", why, err)
		return s.filter.Generation(), err
	}
	s.fallback = ""
	s.setError(lastError{})
	s.setState(StateRunning)
	s.log.Info("reloaded: "+s.summary(), "why", why, "generation", s.filter.Generation(),
		"load", loaded.Sub(began).Round(time.Millisecond), "apply", time.Since(loaded).Round(time.Millisecond), "files", cfg.Files)
	s.unsaved = cfg // once READY=1 is sent (Run)
	return s.filter.Generation(), nil
}

func (s *Service) failed(msg, why string, err error) {
	failed := failure(err, s.fallback)
	s.log.Error(msg+":\n"+err.Error(), "why", why, "problems", failed.problems)
	s.setError(failed)
	s.setState(StateRunning)
}

// applyLoaded makes a set just loaded live, at the start or a reload. Its
// warnings (files not read; interfaces it locks down and endpoints that
// protect nothing on this host; what the compiler found risky, such as a
// deny default that locks out root's neighbour discovery) are logged at
// every load that applies it: whoever just started or reloaded it is
// reading the journal now. Its names that do not resolve are noted even
// when the apply fails, since the policy is swapped in all the same.
func (s *Service) applyLoaded(cfg *config.Config, p *policy.Policy, logMode bpf.LogMode) error {
	for _, w := range cfg.Warnings {
		s.log.Warn(w)
	}
	err := s.apply(cfg, p, logMode)
	s.logHostWarnings(nil)
	for _, w := range p.Warnings {
		s.log.Warn(w)
	}
	s.noteUnresolved(p.Unresolved)
	return err
}

// apply makes a compiled configuration live on the interfaces it filters.
func (s *Service) apply(cfg *config.Config, p *policy.Policy, logMode bpf.LogMode) error {
	if s.opts.LogLevel != nil {
		s.opts.LogLevel.Set(parseLevel(cfg.Log.Level))
	}
	all, err := bpf.Interfaces()
	if err != nil {
		return err
	}
	_, err = s.filter.Apply(p, all, logMode)
	s.noteCgroups(s.filter.CgroupProblem())
	s.stageLost()
	s.hostWarnings = p.HostWarnings(names(all))
	// Even a partly failed apply swapped the policy in: record what is
	// live, so status and the next change start from the truth.
	// The settings only: the endpoints are p's to read (it points into
	// them, as does the parse cache).
	kept := *cfg
	kept.Endpoints = nil
	s.cfg, s.logMode = &kept, logMode
	s.rate.Store(int64(cfg.Log.Rate))
	// Counting 100 000 ranges takes a while: once a policy, and not
	// while Status and Check wait for the lock.
	newPolicy := p != s.policy
	var n sizes
	if newPolicy {
		n = sizeOf(p)
	}
	s.mu.Lock()
	s.policy = p
	if newPolicy {
		s.status.Ranges, s.status.Users = n.ranges, n.users
		s.loads.v4, s.loads.v6 = n.v4, n.v6
	}
	s.status.Files = cfg.Files
	s.status.Warnings = warnings(cfg, p, s.hostWarnings)
	s.status.LastReload = time.Now()
	s.mu.Unlock()
	return err
}

// resolution is the live policy (base) with its user and group names
// resolved again (next).
type resolution struct {
	base, next *policy.Policy
	why        string
}

// resolutions resolves the live policy's names again off the service's
// goroutine, one resolution at a time; Run owns it.
type resolutions struct {
	r       policy.Resolver
	answers chan resolution // the running resolution's answer
	running bool
	// pending says why another resolution was asked for while one ran;
	// "": none was.
	pending string
}

func newResolutions(r policy.Resolver) *resolutions {
	return &resolutions{r: r, answers: make(chan resolution, 1)}
}

// start resolves the names of base (the live policy) again; its answer
// comes on answers. A request while a resolution runs is not dropped:
// that one may have asked NSS before what this request is for (a userdel
// while the files are broken), and its answer would keep the deleted
// user's access until the next interval. Another resolution starts once
// its answer is taken (done).
func (rs *resolutions) start(base *policy.Policy, why string) {
	if base == nil || !base.Named() {
		return
	}
	if rs.running {
		rs.pending = why
		return
	}
	rs.running = true
	go func() { rs.answers <- resolution{base: base, next: base.Resolve(rs.r), why: why} }()
}

// done notes that the running resolution's answer was taken. It returns
// why another was asked for meanwhile, for start; "" when none was.
func (rs *resolutions) done() string {
	rs.running = false
	why := rs.pending
	rs.pending = ""
	return why
}

// resolvedAgain takes the live policy with its user and group names
// resolved again (SPEC §1 "Failing closed"): every ResolveInterval, for
// members that LDAP or SSSD change without a file event and for names that
// did not resolve (LDAP down at boot), and after a reload that failed, so
// that a user deleted while the files are broken still loses the access
// the live policy gave. When the uids changed, they go live as a reload's
// would.
func (s *Service) resolvedAgain(q *policy.Policy, why string) {
	if q.Equal(s.policy) {
		before := s.summary()
		s.noteUnresolved(q.Unresolved)
		s.setState(StateRunning)
		if now := s.summary(); now != before {
			s.notify.status(now)
		}
		return
	}
	s.asReload(func() (bool, error) {
		if !slices.Equal(q.Warnings, s.policy.Warnings) {
			for _, w := range q.Warnings {
				s.log.Warn(w)
			}
		}
		before := s.hostWarnings
		err := s.apply(s.cfg, q, s.logMode)
		s.logHostWarnings(before)
		s.noteUnresolved(q.Unresolved)
		if err != nil {
			s.failed("applying the names resolved again is incomplete", why, err)
		} else {
			// The last reload's error, if any, stays: the files are
			// as broken as they were.
			s.setState(StateRunning)
			s.log.Info("user and group names resolved again: "+s.summary(), "why", why, "generation", s.filter.Generation())
		}
		return true, err
	}, nil)
}

// noteUnresolved records the names of the live policy that do not resolve,
// and logs when they change: a name that matches no one is why the
// service is degraded, until it resolves.
func (s *Service) noteUnresolved(list []policy.Unresolved) {
	lines := make([]string, len(list))
	for i, u := range list {
		lines[i] = u.String()
	}
	s.mu.Lock()
	changed := !slices.Equal(lines, s.status.Unresolved)
	if changed {
		s.status.Unresolved = lines
	}
	s.mu.Unlock()
	switch {
	case !changed:
	case len(lines) == 0:
		s.log.Info("every user and group name of the policy resolves again")
	default:
		s.log.Error(fmt.Sprintf("degraded: user and group names that do not resolve match no one until they do (resolved again when /etc/passwd or /etc/group change and every %s):\n  %s",
			s.opts.ResolveInterval, strings.Join(lines, "\n  ")), "unresolved", len(lines))
	}
}

// ErrNotReady is wrapped by the errors of Check that are the service's
// condition rather than the question's (nothing is live yet): asked again
// later, the same question may get an answer.
var ErrNotReady = errors.New("not ready")

// notReady is an error that ErrNotReady matches, in its own words.
type notReady struct{ error }

func (e notReady) Is(target error) bool { return target == ErrNotReady }
func (e notReady) Unwrap() error        { return e.error }

// Check says what the live policy does with packet k from owner leaving
// iface. With iface empty, the one filtered interface is meant; it
// returns the interface it judged for. Errors wrap ErrNotReady when the
// service cannot answer yet.
func (s *Service) Check(owner policy.Owner, k policy.Packet, iface string) (policy.Verdict, string, error) {
	s.mu.Lock()
	p, attached := s.policy, s.status.Attachments
	s.mu.Unlock()
	if p == nil {
		return policy.Verdict{}, "", notReady{errors.New("no policy is live yet")}
	}
	if iface == "" {
		switch len(attached) {
		case 0:
			return policy.Verdict{}, "", notReady{errors.New("no interface is filtered (yet); name one")}
		case 1:
			iface = attached[0].Iface.Name
		default:
			names := make([]string, len(attached))
			for i, a := range attached {
				names[i] = a.Iface.Name
			}
			return policy.Verdict{}, "", fmt.Errorf("several interfaces are filtered (%s); name one", strings.Join(names, ", "))
		}
	}
	return p.DecidePacket(iface, owner, k), iface, nil
}

// Counters reads the kernel's packet counters.
func (s *Service) Counters() (bpf.Counters, error) {
	// Read under the lock: stop closes the maps, and must not do so
	// under a reader.
	s.mu.Lock()
	defer s.mu.Unlock()
	kernel := s.enforcing()
	if kernel == nil {
		return bpf.Counters{}, errors.New("the filter is not loaded")
	}
	return kernel.Counters()
}

// enforcing is the filter from the first apply until Run lets it go; nil
// outside that time. mu must be held.
func (s *Service) enforcing() *bpf.Filter {
	if s.policy == nil {
		return nil
	}
	return s.filter
}

// letGo takes the filter from the other goroutines (Counters, Metrics)
// for Run to close or detach it.
func (s *Service) letGo() *bpf.Filter {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.filter
	s.filter = nil
	return f
}

// emit tells the observer, if any, without ever waiting for it.
func (s *Service) emit(ev Change) {
	if s.opts.Events == nil {
		return
	}
	select {
	case s.opts.Events <- ev:
	default:
	}
}

// logHostWarnings logs the warnings about this host's interfaces that are
// new since before, and says which of before cleared (an interface that an
// endpoint's iface waited for appeared): once per change, so that neither
// the periodic re-resolution of names nor the retry of attachments repeats
// them in the journal.
func (s *Service) logHostWarnings(before []string) {
	for _, w := range s.hostWarnings {
		if !slices.Contains(before, w) {
			s.log.Warn(w)
		}
	}
	for _, w := range before {
		if !slices.Contains(s.hostWarnings, w) {
			s.log.Info("no longer so, the interfaces changed: " + w)
		}
	}
}

// names are the names of interfaces.
func names(ifaces []bpf.Iface) []string {
	out := make([]string, len(ifaces))
	for i, ifc := range ifaces {
		out[i] = ifc.Name
	}
	return out
}

// noteWarnings follows the loader's warnings of a set that was read again
// without anything to apply (a backup file left in conf.d): they are
// logged, and status lists them, all the same.
func (s *Service) noteWarnings(cfg *config.Config) {
	if slices.Equal(cfg.Warnings, s.cfg.Warnings) {
		return
	}
	for _, w := range cfg.Warnings {
		if !slices.Contains(s.cfg.Warnings, w) {
			s.log.Warn(w)
		}
	}
	kept := *s.cfg
	kept.Warnings = cfg.Warnings
	s.cfg = &kept
	s.mu.Lock()
	s.status.Warnings = warnings(s.cfg, s.policy, s.hostWarnings)
	s.mu.Unlock()
}

// syncInterfaces follows interfaces that appeared, were renamed or went
// away: when the set the policy filters changed, the policy is applied
// again so the kernel's interface table and attachments match it.
func (s *Service) syncInterfaces(gone []int) {
	for _, idx := range gone {
		// Deleted: whatever held the program there went with the
		// device; an interface that comes back with the same index is
		// a new one to attach to.
		s.filter.Forget(idx)
	}
	all, err := bpf.Interfaces()
	if err != nil {
		s.log.Error("list interfaces", "err", err)
		return
	}
	if len(gone) == 0 && slices.Equal(Filtered(s.policy, all), s.attached()) {
		return
	}
	before := s.hostWarnings
	err = s.apply(s.cfg, s.policy, s.logMode)
	s.logHostWarnings(before)
	if err != nil {
		s.log.Error("follow interface change", "err", err)
		s.setError(failure(err, ""))
		s.setState(StateRunning)
		s.notify.status(s.summary())
		return
	}
	s.setError(lastError{})
	s.setState(StateRunning)
	s.log.Info("interfaces changed: "+s.summary(), "generation", s.filter.Generation())
	s.notify.status(s.summary())
}

// attached lists the interfaces the program is on, in ifindex order.
func (s *Service) attached() []bpf.Iface {
	var out []bpf.Iface
	for _, a := range s.filter.Attachments() {
		out = append(out, a.Iface)
	}
	return out
}

// Filtered lists the interfaces of all that p filters, in ifindex order:
// the set the daemon attaches to, and the one the CLI names when asked
// about "every filtered interface of this host" (all from bpf.Interfaces).
func Filtered(p *policy.Policy, all []bpf.Iface) []bpf.Iface {
	var out []bpf.Iface
	for _, ifc := range all {
		if p.Filtered(ifc.Name) {
			out = append(out, ifc)
		}
	}
	slices.SortFunc(out, func(a, b bpf.Iface) int { return a.Index - b.Index })
	return out
}

func (s *Service) stop(dlog *decisionLog) error {
	s.setState(StateStopping)
	s.notify.stopping()
	// A stage never outlives the daemon that reports on it.
	if _, err := s.unstage("the daemon stops"); err != nil && !errors.Is(err, ErrNothingStaged) {
		s.log.Warn("end the stage", "err", err)
	}
	dlog.close()
	filter := s.letGo()
	if s.cfg.OnStop == config.OnStopKeep {
		s.log.Info("stopping; the filter stays enforced (on_stop: keep)")
		return filter.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	switch restart, err := restarting(ctx); {
	case err != nil:
		// A filter left behind is undone by `net-tc-filter detach`; a
		// gap in filtering is not undone at all.
		s.log.Warn("cannot tell a restart from a stop; the filter stays enforced (net-tc-filter detach removes it)", "err", err)
		return filter.Close()
	case restart:
		s.log.Info("restarting; the filter stays enforced for the next start to adopt")
		return filter.Close()
	}
	s.log.Info("stopping; detaching the filter (on_stop: detach)")
	return filter.Detach()
}

// setError records the outcome of the last reload; lastError{} when it
// succeeded.
func (s *Service) setError(e lastError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastError = e
	s.status.LastError = e.text
}

// setState records the state and refreshes the snapshot from the filter.
func (s *Service) setState(st State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st == StateRunning && (s.status.LastError != "" || len(s.status.Unresolved) > 0 || s.status.Cgroups != "") {
		st = StateDegraded
	}
	s.status.State = st
	if s.filter == nil || s.policy == nil {
		return
	}
	s.status.Generation = s.filter.Generation()
	s.status.Mode = s.filter.Mode()
	s.status.Attachments = s.filter.Attachments()
	s.status.Summary = statusLine(s.status, s.lastError.line)
	s.emit(Change{Generation: s.status.Generation})
}

func (s *Service) summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status.Summary
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo // the loader has refused anything else
	}
	return l
}
