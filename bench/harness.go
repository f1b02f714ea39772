// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

// Options configure a run.
type Options struct {
	Config
	Daemon string    // the net-tc-filter binary
	Repo   string    // module root, for part 1's go test
	Log    io.Writer // progress
	// SkipClassify leaves part 1 out (tests of the harness).
	SkipClassify bool
	// Parts, when set, are the only parts to run (1-5), to measure one
	// thing again; the report marks what was not measured.
	Parts []int
}

// QuickConfig is a smoke run: every part, small sizes, one repetition.
func QuickConfig() Config {
	return Config{Quick: true, Reps: 1, Seconds: 1, ThroughputSizes: []int{100}, ReloadSizes: []int{100}, ReloadReps: 1,
		FootprintRanges: 1000, FootprintReloads: 2, FloodSeconds: 1, ScaleRanges: 20000,
		ClassifyBenchtime: "1x", ClassifyCount: 1, ReloadProbeEveryMs: 1, PerPacketDatagrams: 2000, PerPacketCount: 1}
}

// FullConfig is the run.
func FullConfig() Config {
	return Config{Reps: 7, Seconds: 1, ThroughputSizes: []int{1, 100, 10000}, ReloadSizes: []int{100, 10000, 100000}, ReloadReps: 3,
		FootprintRanges: 100000, FootprintReloads: 4, FloodSeconds: 5, ScaleRanges: 1000000,
		ClassifyBenchtime: "1s", ClassifyCount: 3, ReloadProbeEveryMs: 1, PerPacketDatagrams: 200000, PerPacketCount: 5}
}

// steadyWait is how long after a cold load every filter is left before its
// reload is measured.
const steadyWait = 2 * time.Second

// ErrCorrectness is returned (wrapped) when a filter let a denied user
// through or blocked the allowed one: no figure of such a run counts.
var ErrCorrectness = errors.New("correctness check failed")

// Ports on the server.
const (
	probePort  = 9000 // correctness probes
	sinkPort   = 9002 // part 2's datagrams
	reloadPort = 9001 // the reload probe
	floodPort  = 9100 // the flood (and the ports above it)
	iperfPort  = 5201
)

// Harness runs the parts on one topology.
type Harness struct {
	opts        Options
	main        *lane // parts 3 and 4; part 2 makes a lane per filter
	allow, deny User
	madeUsers   []string
	reload      *netlab.Counter
	res         *Results
}

// Run sets up the namespaces and users, runs every part and returns the
// results. The error wraps ErrCorrectness when a filter misbehaved; the
// results are still returned for the report.
func Run(ctx context.Context, opts Options) (*Results, error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	start := time.Now()
	h := &Harness{opts: opts, res: &Results{Config: opts.Config, Correctness: []Check{}, Goals: []Goal{}}}
	defer h.close()
	if err := h.setup(); err != nil {
		return nil, err
	}
	h.res.Machine = machineInfo(opts.Repo, opts.Daemon)
	var failed error
	defer func() {
		h.res.Machine.LoadEnd = loadavg()
		h.res.Goals = Goals(h.res)
		h.res.WallSeconds = time.Since(start).Seconds()
	}()
	parts := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"1 classifier (BPF_PROG_TEST_RUN)", h.classify},
		{"2 throughput", h.throughput},
		{"3 load and reload", h.reloads},
		{"4 daemon footprint", h.footprint},
		{"5 scale", h.scale},
	}
	for i, p := range parts {
		if len(opts.Parts) > 0 && !slices.Contains(opts.Parts, i+1) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return h.res, err
		}
		h.logf("== part %s", p.name)
		if err := p.fn(ctx); err != nil {
			if !errors.Is(err, ErrCorrectness) {
				return h.res, fmt.Errorf("part %s: %w", p.name, err)
			}
			failed = errors.Join(failed, fmt.Errorf("part %s: %w", p.name, err))
		}
	}
	for _, c := range h.res.Correctness {
		if !c.OK && failed == nil {
			failed = fmt.Errorf("%w: %s at %d rules (%s)", ErrCorrectness, c.Filter, c.Size, c.Part)
		}
	}
	return h.res, failed
}

func (h *Harness) logf(format string, args ...any) {
	fmt.Fprintf(h.opts.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func (h *Harness) setup() error {
	if err := mountBPF(); err != nil {
		return err
	}
	var err error
	for _, u := range []struct {
		name string
		to   *User
	}{{"ntfb-allow", &h.allow}, {"ntfb-deny", &h.deny}} {
		if *u.to, err = h.ensureUser(u.name); err != nil {
			return err
		}
	}
	if h.main, err = newLane(); err != nil {
		return err
	}
	if h.reload, err = h.main.tp.Server.CountUDP(reloadPort); err != nil {
		return err
	}
	return nil
}

func mountBPF() error {
	if _, err := os.Stat("/sys/fs/bpf"); err != nil {
		return fmt.Errorf("bpffs: %w", err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs("/sys/fs/bpf", &st); err != nil {
		return fmt.Errorf("bpffs: %w", err)
	}
	const bpfMagic = 0xcafe4a11
	if st.Type == bpfMagic {
		return nil
	}
	if _, err := netlab.Output("mount", "-t", "bpf", "bpf", "/sys/fs/bpf"); err != nil {
		return fmt.Errorf("bpffs: %w", err)
	}
	return nil
}

// ensureUser returns the account name, creating it (system user, no home,
// no login) when missing; what this run created is removed at the end.
func (h *Harness) ensureUser(name string) (User, error) {
	u, err := user.Lookup(name)
	if err != nil {
		if _, err := netlab.Output("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", name); err != nil {
			return User{}, fmt.Errorf("create user: %w", err)
		}
		h.madeUsers = append(h.madeUsers, name)
		if u, err = user.Lookup(name); err != nil {
			return User{}, fmt.Errorf("user %s after useradd: %w", name, err)
		}
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return User{}, fmt.Errorf("user %s: %w", name, err)
	}
	if uid == 0 {
		return User{}, fmt.Errorf("user %s is uid 0", name)
	}
	return User{Name: name, UID: uid, GID: gid}, nil
}

func (h *Harness) close() {
	if h.reload != nil {
		h.reload.Close()
	}
	if h.main != nil {
		h.main.close()
	}
	for _, name := range h.madeUsers {
		if _, err := netlab.Output("userdel", name); err != nil {
			h.logf("warning: %v", err)
		}
	}
}

func (h *Harness) ruleSet(n int) RuleSet { return RuleSet{N: n, Allowed: h.allow.UID} }

// sendAs runs the agent as u in the lane's client: send datagrams to dst
// and report how many writes it tried and how many the socket took
// (netfilter's drops fail the write with EPERM; tc's are silent).
func (h *Harness) sendAs(l *lane, u User, dst netip.AddrPort, args ...string) (tried, sent int64, err error) {
	cmd, err := agentCmd(l.tp.Client, u, append([]string{"send", "-dst", dst.String()}, args...)...)
	if err != nil {
		return 0, 0, err
	}
	out, err := netlab.Run(cmd)
	if err != nil {
		return 0, 0, fmt.Errorf("sender as %s: %w", u.Name, err)
	}
	if _, err := fmt.Sscanf(out, "tried %d sent %d", &tried, &sent); err != nil {
		return 0, 0, fmt.Errorf("sender as %s: unexpected output %q", u.Name, out)
	}
	return tried, sent, nil
}

// check probes the filter live on the lane: 200 paced datagrams from each
// user to the allowed user's address. With a filter the denied user's must
// all be dropped and the allowed user's all arrive; without one, all arrive.
func (h *Harness) check(l *lane, part, filter string, rs RuleSet) (Check, error) {
	c := Check{Part: part, Filter: filter, Size: rs.N}
	dst := netip.AddrPortFrom(rs.Target(), probePort)
	// sent counts attempts: a write netfilter refused is a datagram
	// dropped, and must not shrink what the allowed user is owed.
	count := func(u User) (sent, got int64, err error) {
		l.probe.Reset()
		sent, _, err = h.sendAs(l, u, dst, "-n", "200", "-gap", "200us")
		if err != nil {
			return 0, 0, err
		}
		deadline := time.Now().Add(time.Second)
		for l.probe.Count() < sent && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond) // late arrivals of what should be dropped
		return sent, l.probe.Count(), nil
	}
	var err error
	if c.AllowedSent, c.AllowedGot, err = count(h.allow); err != nil {
		return c, err
	}
	if c.DeniedSent, c.DeniedGot, err = count(h.deny); err != nil {
		return c, err
	}
	wantDenied := int64(0)
	if isFloor(filter) {
		wantDenied = c.DeniedSent
	}
	c.OK = c.AllowedSent > 0 && c.AllowedGot == c.AllowedSent && c.DeniedSent > 0 && c.DeniedGot == wantDenied
	h.res.Correctness = append(h.res.Correctness, c)
	if !c.OK {
		h.logf("   CORRECTNESS FAILED: %s %d rules: allowed %d/%d arrived, denied %d/%d arrived",
			filter, rs.N, c.AllowedGot, c.AllowedSent, c.DeniedGot, c.DeniedSent)
		return c, fmt.Errorf("%w: %s at %d rules: allowed %d/%d arrived, denied %d/%d arrived",
			ErrCorrectness, filter, rs.N, c.AllowedGot, c.AllowedSent, c.DeniedGot, c.DeniedSent)
	}
	return c, nil
}

// --- part 1 ---------------------------------------------------------------

func (h *Harness) classify(ctx context.Context) error {
	if h.opts.SkipClassify {
		h.res.Notes = append(h.res.Notes, "part 1 (classifier) skipped by the caller")
		return nil
	}
	r := &ClassifyResult{}
	h.res.Classify = r
	var err error
	if r.Raw, err = h.benchBPF(ctx, "BenchmarkClassify", h.opts.ClassifyBenchtime, h.opts.ClassifyCount, &r.Command); err != nil {
		return err
	}
	if r.Floor, r.Rows, err = Classify(r.Raw); err != nil {
		// Not a correctness failure: the benchmarks are missing or
		// incomplete. The report says so and the goal is MISSING.
		r.Error = err.Error()
		h.logf("   no classifier results: %v", err)
		return nil
	}
	for _, row := range r.Rows {
		h.logf("   %-50s %8.1f ns/pkt  %+7.1f over the floor", row.Name, row.NsPerPkt, row.AboveFloor)
	}
	return nil
}

// benchBPF runs benchmarks of package bpf (`go test -bench`) in the module
// root and parses their lines; *cmdline is the command, set before it runs
// for the report.
func (h *Harness) benchBPF(ctx context.Context, name, benchtime string, count int, cmdline *string) ([]GoBench, error) {
	args := []string{"test", "./bpf", "-run", "^$", "-bench", name, "-benchtime=" + benchtime, "-count=" + strconv.Itoa(max(count, 1))}
	*cmdline = "go " + strings.Join(args, " ")
	h.logf("   %s", *cmdline)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = h.opts.Repo
	out, err := netlab.Run(cmd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return ParseGoBench(strings.NewReader(out))
}

// --- part 2 ---------------------------------------------------------------

// --- part 3 ---------------------------------------------------------------

func (h *Harness) reloads(ctx context.Context) error {
	c := h.main.tp.Client
	ipt, nft, ours := Iptables{NS: c}, Nft{NS: c}, &Ours{Bin: h.opts.Daemon, NS: c}
	r := &ReloadResult{}
	h.res.Reload = r
	checkMs := map[int]float64{}
	for _, n := range h.opts.ReloadSizes {
		ms, err := h.timeCheck(h.ruleSet(n))
		if err != nil {
			return err
		}
		checkMs[n] = ms
		h.logf("   net-tc-filter check, %d ranges: %.0f ms", n, ms)
	}
	for rep := range h.opts.ReloadReps {
		for _, n := range h.opts.ReloadSizes {
			for _, f := range []Filter{ipt, nft, ours} {
				if err := ctx.Err(); err != nil {
					return err
				}
				if err := h.reloadOne(rep, f, n, r); err != nil {
					return err
				}
			}
		}
	}
	for _, n := range h.opts.ReloadSizes {
		for _, f := range []Filter{ipt, nft, ours} {
			row := ReloadRow{Filter: f.Name(), Size: n}
			var cold, cmd, live, rl []float64
			for _, s := range r.Samples {
				if s.Filter != f.Name() || s.Size != n {
					continue
				}
				if s.Kind == "cold" {
					cold = append(cold, s.CommandMs)
				} else {
					cmd, live, rl = append(cmd, s.CommandMs), append(live, s.LiveMs), append(rl, s.ReloadingMs)
				}
			}
			if len(cold) == 0 || len(cmd) == 0 {
				continue
			}
			row.ColdMs, row.ReloadCmdMs, row.ReloadLive = Median(cold), Median(cmd), Median(live)
			if f.Name() == NameOurs {
				row.ReloadingMs, row.CheckMs = Median(rl), checkMs[n]
			}
			r.Rows = append(r.Rows, row)
		}
	}
	return nil
}

// timeCheck times `net-tc-filter check` of the rule set's file: parsing
// and compiling without the kernel.
func (h *Harness) timeCheck(rs RuleSet) (float64, error) {
	dir, err := os.MkdirTemp("", "ntfb-check-")
	if err != nil {
		return 0, fmt.Errorf("check directory: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return 0, fmt.Errorf("check directory: %w", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		return 0, fmt.Errorf("check directory: %w", err)
	}
	for name, data := range rs.Ours() {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return 0, fmt.Errorf("check config: %w", err)
		}
	}
	path := filepath.Join(dir, MainFile)
	start := time.Now()
	cmd := exec.Command(h.opts.Daemon, "check", "--config", path)
	cmd.Stderr = &bytes.Buffer{}
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("net-tc-filter check of %d ranges: %w: %s", rs.N, err, cmd.Stderr)
	}
	return float64(time.Since(start).Microseconds()) / 1e3, nil
}

// reloadOne: cold load of the rule set (the allowed user owns the last
// range), a correctness check, then a change that also allows the denied
// user while that user probes every millisecond: live is the time from
// the change to the first probe that arrives.
func (h *Harness) reloadOne(rep int, f Filter, n int, r *ReloadResult) (err error) {
	rs := h.ruleSet(n)
	coldD, err := f.Apply(rs)
	if err != nil {
		return fmt.Errorf("cold load %s, %d ranges: %w", f.Name(), n, err)
	}
	defer func() {
		if rerr := f.Remove(); rerr != nil && err == nil {
			err = fmt.Errorf("remove %s: %w", f.Name(), rerr)
		}
	}()
	r.Samples = append(r.Samples, ReloadSample{Filter: f.Name(), Size: n, Kind: "cold", Rep: rep, CommandMs: ms(coldD)})
	if _, err := h.check(h.main, "reload", f.Name(), rs); err != nil {
		return err
	}
	// Steady state, the same wait for every filter: right after its start
	// the daemon also writes its idle policy slot (so that reloads write
	// only the difference), and the first reload within that moment waits
	// for it.
	time.Sleep(steadyWait)
	s, err := h.reloadLive(f, rs)
	if err != nil {
		return err
	}
	s.Rep = rep
	r.Samples = append(r.Samples, s)
	extra := ""
	if s.ReloadingMs > 0 {
		extra = fmt.Sprintf(" (RELOADING=1 after %.0f ms)", s.ReloadingMs)
	}
	h.logf("   rep %d %-14s %6d ranges: cold %8.1f ms, reload command %8.1f ms, live after %8.1f ms%s",
		rep+1, f.Name(), n, ms(coldD), s.CommandMs, s.LiveMs, extra)
	return nil
}

// reloadLive changes the live rule set rs of f so that it also allows the
// denied user to the allowed user's range, while that user probes it
// every ReloadProbeEveryMs: live is the time from the change to the first
// probe through. For the daemon the change rewrites one drop-in.
func (h *Harness) reloadLive(f Filter, rs RuleSet) (ReloadSample, error) {
	n := rs.N
	// The probe: the denied user, every millisecond, to its future address.
	h.reload.Reset()
	dst := netip.AddrPortFrom(rs.Target(), reloadPort)
	every := time.Duration(h.opts.ReloadProbeEveryMs * float64(time.Millisecond))
	probe, err := agentCmd(h.main.tp.Client, h.deny, "send", "-dst", dst.String(), "-gap", every.String(), "-dur", "5m")
	if err != nil {
		return ReloadSample{}, err
	}
	if err := probe.Start(); err != nil {
		return ReloadSample{}, fmt.Errorf("reload probe: %w", err)
	}
	defer func() {
		probe.Process.Kill()
		probe.Wait()
	}()
	time.Sleep(200 * time.Millisecond)
	if got := h.reload.Count(); got != 0 {
		return ReloadSample{}, fmt.Errorf("%w: %s at %d ranges: %d probes of the denied user arrived before the reload", ErrCorrectness, f.Name(), n, got)
	}
	changed := rs
	changed.AlsoAllow = h.deny.UID
	start := time.Now()
	cmdD, err := f.Apply(changed)
	if err != nil {
		return ReloadSample{}, fmt.Errorf("reload %s, %d ranges: %w", f.Name(), n, err)
	}
	s := ReloadSample{Filter: f.Name(), Size: n, Kind: "reload", CommandMs: ms(cmdD)}
	if o, ok := f.(*Ours); ok {
		start = o.LastChange
		s.ReloadingMs = ms(o.LastReloading.Sub(start))
	}
	deadline := time.Now().Add(2 * time.Minute)
	for h.reload.Count() == 0 {
		if time.Now().After(deadline) {
			return ReloadSample{}, fmt.Errorf("%w: %s at %d ranges: the changed policy never let the probe through", ErrCorrectness, f.Name(), n)
		}
		time.Sleep(200 * time.Microsecond)
	}
	s.LiveMs = ms(h.reload.First().Sub(start))
	return s, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }
