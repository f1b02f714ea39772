// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"context"
	"errors"
	"fmt"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nettcfilter/net-tc-filter/bpf"
	"github.com/nettcfilter/net-tc-filter/daemon/logging"
	"github.com/nettcfilter/net-tc-filter/daemon/metrics"
)

// Staging (SPEC §8): a candidate set judged in the kernel beside the live
// one. The Run goroutine stages and unstages; the summary is read by
// anyone.

// ErrNothingStaged is Unstage's error when nothing is staged.
var ErrNothingStaged = errors.New("nothing is staged")

// The kinds of difference a candidate makes, as the summary names them.
const (
	NewlyDenied     = "newly denied"      // passes now, the candidate drops it
	NewlyAllowed    = "newly allowed"     // dropped now, the candidate lets it pass
	NewlyAudited    = "newly audited"     // allowed now, the candidate passes it as audit
	NoLongerAudited = "no longer audited" // passed as audit now, the candidate allows it
)

// change names a difference of verdicts.
func change(live, staged bpf.Action) string {
	switch {
	case !live.Drops() && staged.Drops():
		return NewlyDenied
	case live.Drops() && !staged.Drops():
		return NewlyAllowed
	case staged == bpf.ActionAudit:
		return NewlyAudited
	}
	return NoLongerAudited
}

// maxExamples is how many example packets the summary keeps for each
// difference (owner, endpoint, change).
const maxExamples = 3

// StagedDifference is packets of one owner that the candidate decides
// otherwise, by what decides them.
type StagedDifference struct {
	Owner          string `json:"owner"` // "uid=1002(bob)", "uid=1002" or "unowned"
	UID            uint32 `json:"uid"`
	Unowned        bool   `json:"unowned"`
	Unit           string `json:"unit"`            // systemd unit of the sender, where known
	LiveEndpoint   string `json:"live_endpoint"`   // "" : the live interface default
	StagedEndpoint string `json:"staged_endpoint"` // "" : the candidate's default
	Change         string `json:"change"`          // NewlyDenied...
	Packets        uint64 `json:"packets"`
	// Examples are the first packets the decision log saw (at most
	// maxExamples): "169.254.169.254:80/tcp".
	Examples []string `json:"examples"`
}

// StageSummary is what a stage found so far (or, from Unstage, in all).
type StageSummary struct {
	Config          string             `json:"config"`
	Files           []string           `json:"files"`
	Since           time.Time          `json:"since"`
	Until           time.Time          `json:"until"` // zero: until unstaged
	NewlyDenied     uint64             `json:"newly_denied"`
	NewlyAllowed    uint64             `json:"newly_allowed"`
	NewlyAudited    uint64             `json:"newly_audited"`
	NoLongerAudited uint64             `json:"no_longer_audited"`
	Differences     []StagedDifference `json:"differences"`
}

// stageRequest asks the Run goroutine to stage (path set) or unstage.
type stageRequest struct {
	path  string
	dur   time.Duration
	reply chan<- stageResult
}

type stageResult struct {
	sum StageSummary
	err error
}

// stageState is the stage in force, shared with the decision log (which
// adds examples) and the readers of the summary, under its own lock.
type stageState struct {
	mu     sync.Mutex
	active bool
	config string
	files  []string
	since  time.Time
	until  time.Time
	// examples by difference, from the decision log's staged events
	examples map[exampleKey][]string
	// users caches NSS's names of senders, under its own lock: a lookup
	// that hangs must not hold up the decision log's examples.
	usersMu sync.Mutex
	users   map[uint32]string
	units   *logging.Units
}

type exampleKey struct {
	uid          uint32
	unowned      bool
	stagedRule   uint32
	live, staged bpf.Action
}

// Stage compiles the set at path (its conf.d beside it) and judges every
// packet by it beside the live policy for dur (0: until Unstage). An
// invalid set stages nothing and comes back with every problem as
// config.Errors; a candidate staged before is replaced.
func (s *Service) Stage(ctx context.Context, path string, dur time.Duration) error {
	if dur < 0 {
		return fmt.Errorf("a stage cannot last %v", dur)
	}
	_, err := s.askStage(ctx, stageRequest{path: path, dur: dur})
	return err
}

// Unstage ends the stage and returns its summary.
func (s *Service) Unstage(ctx context.Context) (StageSummary, error) {
	r, err := s.askStage(ctx, stageRequest{})
	return r, err
}

func (s *Service) askStage(ctx context.Context, req stageRequest) (StageSummary, error) {
	reply := make(chan stageResult, 1)
	req.reply = reply
	select {
	case s.stages <- req:
	case <-ctx.Done():
		return StageSummary{}, ctx.Err()
	}
	select {
	case r := <-reply:
		return r.sum, r.err
	case <-ctx.Done():
		return StageSummary{}, ctx.Err()
	}
}

// handleStage runs a stage request on the Run goroutine.
func (s *Service) handleStage(req stageRequest) {
	if req.path == "" {
		sum, err := s.unstage("unstaged")
		req.reply <- stageResult{sum, err}
		return
	}
	req.reply <- stageResult{err: s.stage(req.path, req.dur)}
}

func (s *Service) stage(path string, dur time.Duration) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("stage: %q is not an absolute path", path)
	}
	cfg, p, err := Load(path, s.opts.Resolver)
	if err != nil {
		return err
	}
	all, err := bpf.Interfaces()
	if err != nil {
		return err
	}
	if err := s.filter.Stage(p, all); err != nil {
		return fmt.Errorf("stage %s: %w", path, err)
	}
	now := time.Now()
	st := &s.staged
	st.mu.Lock()
	st.active, st.config, st.files, st.since = true, path, cfg.Files, now
	st.until = time.Time{}
	if dur > 0 {
		st.until = now.Add(dur)
	}
	st.examples = map[exampleKey][]string{}
	if st.units == nil {
		st.units, _ = logging.NewUnits() // nil: units unknown
	}
	st.mu.Unlock()
	s.stageTimer.Stop()
	if dur > 0 {
		s.stageTimer.Reset(dur)
	}
	until := "until unstaged"
	if dur > 0 {
		until = "until " + st.until.Format(time.DateTime)
	}
	s.log.Info(fmt.Sprintf("staged %s beside the live policy, %s: differences are logged with NTF_STAGED_ACTION and counted (net-tc-filter staged)", path, until),
		"files", cfg.Files)
	s.emit(Change{Generation: s.filter.Generation()})
	return nil
}

// unstage ends the stage, if any, and logs its summary.
func (s *Service) unstage(why string) (StageSummary, error) {
	if !s.filter.Staged() {
		return StageSummary{}, ErrNothingStaged
	}
	sum := s.staged.base() // its times and files; the counts come with the final totals
	diffs, err := s.filter.Unstage()
	s.stageTimer.Stop()
	st := &s.staged
	st.mu.Lock()
	st.active = false
	st.mu.Unlock()
	if err != nil {
		return StageSummary{}, err
	}
	sum = s.summarize(sum, diffs, s.filter)
	s.log.Info(fmt.Sprintf("stage of %s ended (%s): %d packets newly denied, %d newly allowed, %d newly audited, %d no longer audited",
		sum.Config, why, sum.NewlyDenied, sum.NewlyAllowed, sum.NewlyAudited, sum.NoLongerAudited))
	s.emit(Change{Generation: s.filter.Generation()})
	return sum, nil
}

// StageSummary is what the stage in force found so far; the zero
// StageSummary when nothing is staged.
func (s *Service) StageSummary() StageSummary {
	s.mu.Lock()
	f := s.filter
	s.mu.Unlock()
	return s.stageSummaryOf(f)
}

// stageSummaryOf is StageSummary with the filter in hand; s.mu may be
// held (Metrics holds it).
func (s *Service) stageSummaryOf(f *bpf.Filter) StageSummary {
	sum := s.staged.base()
	if sum.Since.IsZero() || f == nil {
		return sum
	}
	diffs, err := f.StagedDiffs()
	if err != nil {
		s.log.Warn("read the staged policy's differences", "err", err)
		return sum
	}
	return s.summarize(sum, diffs, f)
}

// summarize adds the kernel's counts to a summary, by owner, endpoints and
// change, largest first.
func (s *Service) summarize(sum StageSummary, diffs map[bpf.DiffKey]uint64, f *bpf.Filter) StageSummary {
	type key struct {
		uid                  uint32
		unowned              bool
		unit, live, staged   string
		change               string
		stagedRule           uint32
		liveAction, stAction bpf.Action
	}
	byKey := map[key]*StagedDifference{}
	st := &s.staged
	st.mu.Lock()
	for k, n := range diffs {
		dk := key{uid: k.UID, unowned: k.Unowned, change: change(k.Live, k.Staged), stagedRule: k.StagedRule, liveAction: k.Live, stAction: k.Staged}
		if k.Cgroup != 0 && st.units != nil {
			dk.unit = st.units.Unit(k.Cgroup)
		}
		if f != nil {
			if r, ok := f.Rule(f.Generation(), k.LiveRule); ok {
				dk.live = strings.Join(r.Endpoints, ",")
			}
			if r, ok := f.StagedRule(k.StagedRule); ok {
				dk.staged = strings.Join(r.Endpoints, ",")
			}
		}
		d := byKey[dk]
		if d == nil {
			d = &StagedDifference{UID: k.UID, Unowned: k.Unowned, Unit: dk.unit, LiveEndpoint: dk.live, StagedEndpoint: dk.staged, Change: dk.change}
			d.Examples = slices.Clone(st.examples[exampleKey{k.UID, k.Unowned, k.StagedRule, k.Live, k.Staged}])
			if d.Examples == nil {
				d.Examples = []string{}
			}
			byKey[dk] = d
		}
		d.Packets += n
		switch dk.change {
		case NewlyDenied:
			sum.NewlyDenied += n
		case NewlyAllowed:
			sum.NewlyAllowed += n
		case NewlyAudited:
			sum.NewlyAudited += n
		default:
			sum.NoLongerAudited += n
		}
	}
	st.mu.Unlock()
	sum.Differences = make([]StagedDifference, 0, len(byKey))
	for _, d := range byKey {
		d.Owner = st.owner(d.UID, d.Unowned)
		sum.Differences = append(sum.Differences, *d)
	}
	slices.SortFunc(sum.Differences, func(a, b StagedDifference) int {
		if a.Packets != b.Packets {
			if a.Packets > b.Packets {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Owner+a.Change+a.StagedEndpoint, b.Owner+b.Change+b.StagedEndpoint)
	})
	return sum
}

// base is the summary of the stage in force without its counts; the zero
// StageSummary when nothing is staged.
func (st *stageState) base() StageSummary {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.active {
		return StageSummary{}
	}
	return StageSummary{Config: st.config, Files: slices.Clone(st.files), Since: st.since, Until: st.until}
}

// owner names a sender as the decision log does.
func (st *stageState) owner(uid uint32, unowned bool) string {
	if unowned {
		return "unowned"
	}
	st.usersMu.Lock()
	name, ok := st.users[uid]
	st.usersMu.Unlock()
	if !ok {
		if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
			name = u.Username
		}
		st.usersMu.Lock()
		if st.users == nil {
			st.users = map[uint32]string{}
		}
		if len(st.users) < 4096 {
			st.users[uid] = name
		}
		st.usersMu.Unlock()
	}
	if name == "" {
		return fmt.Sprintf("uid=%d", uid)
	}
	return fmt.Sprintf("uid=%d(%s)", uid, name)
}

// noteExample keeps a staged event's packet as an example of its
// difference; the decision log calls it.
func (s *Service) noteExample(ev bpf.KernelDecision) {
	if !ev.Staged {
		return
	}
	st := &s.staged
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.active {
		return
	}
	live := bpf.ActionDeny
	switch {
	case ev.Allowed:
		live = bpf.ActionAllow
	case ev.Audit:
		live = bpf.ActionAudit
	}
	k := exampleKey{ev.UID, ev.Unowned, ev.StagedRule, live, ev.StagedAction}
	if ev.Unowned {
		k.uid = 0
	}
	ex := st.examples[k]
	if len(ex) >= maxExamples || len(st.examples) >= 4096 {
		return
	}
	text := hostPort(ev.Dst, ev.Dport, ev.Proto) + "/" + protoName(ev.Proto)
	if !slices.Contains(ex, text) {
		st.examples[k] = append(ex, text)
	}
}

// stagedEndpoints names the candidate's endpoints that decide a staged
// event ("" : its default).
func (d *decisionLog) stagedEndpoints(ev bpf.KernelDecision) string {
	if r, ok := d.filter.StagedRule(ev.StagedRule); ok {
		return strings.Join(r.Endpoints, ",")
	}
	return ""
}

// stagedMetrics are the stage's differences by the candidate's endpoint
// and direction, for the metrics; nil while nothing is staged. No NSS
// here: s.mu is held.
func (s *Service) stagedMetrics(f *bpf.Filter) map[metrics.StagedKey]uint64 {
	if f == nil || !f.Staged() {
		return nil
	}
	diffs, err := f.StagedDiffs()
	if err != nil {
		s.log.Warn("metrics: read the staged policy's differences", "err", err)
		return nil
	}
	out := map[metrics.StagedKey]uint64{}
	for k, n := range diffs {
		var endpoint string
		if r, ok := f.StagedRule(k.StagedRule); ok {
			endpoint = strings.Join(r.Endpoints, ",")
		}
		out[metrics.StagedKey{Endpoint: endpoint, Direction: strings.ReplaceAll(change(k.Live, k.Staged), " ", "_")}] += n
	}
	return out
}

// stageLost notes a stage that the last apply ended because the candidate
// could not follow it (the live policy went live regardless).
func (s *Service) stageLost() {
	err := s.filter.StageLost()
	if err == nil {
		return
	}
	st := &s.staged
	st.mu.Lock()
	st.active = false
	st.mu.Unlock()
	s.stageTimer.Stop()
	s.log.Error("the stage ended: the staged policy could not follow the change of the live one or of the interfaces (the live policy is in force); stage it again", "err", err)
}
