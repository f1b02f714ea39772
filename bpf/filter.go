// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/nettcfilter/net-tc-filter/daemon/policy"
)

// DefaultPinDir is where the kernel state outlives the daemon.
const DefaultPinDir = "/sys/fs/bpf/net-tc-filter"

// Mode is how the program is attached to an interface.
type Mode string

const (
	ModeAuto   Mode = ""       // tcx where the kernel has it, else clsact
	ModeTCX    Mode = "tcx"    // bpf_link on the tcx egress hook (kernel >= 6.6)
	ModeClsact Mode = "clsact" // cls_bpf direct-action filter on a clsact qdisc
)

// ParseMode maps a command-line spelling to a Mode.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "auto":
		return ModeAuto, nil
	case "tcx":
		return ModeTCX, nil
	case "clsact":
		return ModeClsact, nil
	}
	return "", fmt.Errorf("unknown attach mode %q (auto, tcx, clsact)", s)
}

// Options configure a Filter.
type Options struct {
	PinDir string // default DefaultPinDir
	Mode   Mode

	noCache bool // benchmarks: every packet takes the uncached path (every slot's epoch is 0)
	// maxCgroups, when not 0, is the room in ntf_cgroups: tests fill it
	// with a few cgroups instead of NTF_MAX_CGROUPS.
	maxCgroups uint32
	// Tests: replies to denied packets per second and CPU, and how many
	// a CPU may send at once; 0: the program's own (100, 20).
	rejectRate, rejectBurst int
}

// keptGenerations is how many policies' rules stay known, so that queued
// events still name their endpoint after a few quick swaps (interfaces
// coming and going make a generation each).
const keptGenerations = 16

// slots is how many policies the kernel holds: the live one and the one
// being written.
const slots = 2

// Filter is the loaded program with its maps, pinned under PinDir. The
// methods other than Rule, Counters and Events are not safe for concurrent
// use: the daemon drives them from one goroutine.
type Filter struct {
	opts     Options
	spec     *ebpf.CollectionSpec
	objs     filterObjects
	fresh    bool // maps were created by this process and are not pinned yet
	slot     uint32
	gen      uint32
	epoch    uint64 // of the live slot; the kernel's caches are valid for it only
	inner    [slots]slotMaps
	mode     Mode
	attached map[int]*attachment
	adopted  map[int]link.Link // pinned tcx links of an earlier run, by ifindex

	enc      *encoder
	contents [slots]*Contents // what the slots hold, where this process wrote them

	mu       sync.Mutex
	rules    map[uint32]rules // by generation: the live one and the one before
	counters *counterNames

	// The first epoch of this Filter: the verdict caches' counts of
	// earlier epochs are an earlier run's (readTraffic).
	countBase   uint64
	trafficMu   sync.Mutex        // one readTraffic at a time
	allowedSeen map[uint32]uint64 // the last allowed counts readTraffic returned

	cg      *cgroupTracker // cgroup principals: the tracepoints and their maps
	cgPaths []string       // the live policy's cgroup paths
	stage   staging        // a staged candidate policy (SPEC §8), beside the live one
}

// Generation is the generation of the live policy (0: none yet).
func (f *Filter) Generation() uint32 { return f.gen }

// Mode is the attach mode in use, once something is attached.
func (f *Filter) Mode() Mode { return f.mode }

// Attachments lists the filtered interfaces: those the live policy
// filters. The program is on the interfaces a staged candidate alone
// filters too, but filters nothing there.
func (f *Filter) Attachments() []Attachment {
	out := make([]Attachment, 0, len(f.attached))
	for idx, a := range f.attached {
		if f.liveFilters(idx) {
			out = append(out, a.Attachment)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Iface.Index < out[j].Iface.Index })
	return out
}

// Apply makes a policy live on the interfaces it filters among ifaces (all
// interfaces of the network namespace): the whole policy is swapped in at
// once, then the program is attached where it is missing and detached where
// the policy no longer filters. It returns the new generation.
func (f *Filter) Apply(p *policy.Policy, ifaces []Iface, log LogMode) (uint32, error) {
	paths := p.CgroupPaths()
	if err := f.prepareCgroups(paths); err != nil {
		return f.gen, err
	}
	// The last policy must be in both slots, its ranges laid out, before
	// the next is encoded as a change to it (the daemon's Mirror after
	// each reload has done this already). Should this Mirror fail, the
	// idle slot is written whole, and that write reports.
	if live := f.contents[f.slot]; live != nil && live.delta != nil {
		_ = f.Mirror()
	}
	f.mu.Lock()
	f.enc.cgroupBits = f.cg.masks()
	if f.cg.links == nil {
		// Not tracked: no cgroup can be known to be at or below them.
		f.enc.cgroupBits = nil
	}
	change := f.contents[0] != nil && f.contents[0] == f.contents[1] && f.contents[0] == f.enc.last
	c := f.enc.encodeAs(p, ifaces, f.gen+1, log, change)
	f.mu.Unlock()
	if err := f.swap(c); err != nil {
		if c.delta != nil {
			f.mu.Lock()
			f.enc.last = c.delta.base // still what is live
			f.mu.Unlock()
		}
		return f.gen, err
	}
	var errs []error
	f.cgPaths = paths
	if err := f.cg.release(f.watchedPaths()); err != nil {
		errs = append(errs, err)
	}
	// The candidate follows the interfaces as the live policy does: a
	// live reload keeps the stage. A candidate that cannot follow ends
	// (StageLost says why): the live policy went live all the same.
	if err := f.restage(ifaces); err != nil {
		f.loseStage(err)
	}
	errs = append(errs, f.follow(ifaces)...)
	if err := f.releaseAdopted(); err != nil {
		errs = append(errs, err)
	}
	if f.fresh && len(errs) == 0 {
		// Only now, with every link on this program, do the new maps
		// take the place of an older version's pins.
		if err := f.pinAll(); err != nil {
			errs = append(errs, err)
		} else {
			f.fresh = false
		}
	}
	return f.gen, errors.Join(errs...)
}

// liveFilters reports whether the live policy filters the interface.
func (f *Filter) liveFilters(idx int) bool {
	live := f.contents[f.slot]
	if live == nil {
		return false
	}
	_, ok := live.Ifaces[uint32(idx)]
	return ok
}

// filters reports whether the live policy or the staged candidate filters
// the interface: the program is on it either way (the kernel judges a
// packet there by the candidate alone when only the candidate filters it).
func (f *Filter) filters(idx int) bool {
	if f.liveFilters(idx) {
		return true
	}
	_, ok := f.stage.ifaces[uint32(idx)]
	return f.stage.slot != 0 && ok
}

// follow attaches the program to the interfaces among ifaces that the live
// policy or the candidate filters, and detaches it where neither does.
func (f *Filter) follow(ifaces []Iface) []error {
	var errs []error
	for _, ifc := range ifaces {
		if f.filters(ifc.Index) {
			if err := f.attach(ifc); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return append(errs, f.detachUnfiltered()...)
}

// detachUnfiltered detaches the program where neither the live policy nor
// the candidate filters.
func (f *Filter) detachUnfiltered() []error {
	var errs []error
	for idx, a := range f.attached {
		if !f.filters(idx) {
			if err := f.detach(a); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// prepareCgroups makes the kernel track the cgroups at or below paths
// before a policy naming them goes live. Without the tracepoints (a
// kernel or capability set that refuses them) the paths match nothing,
// and CgroupProblem says why.
func (f *Filter) prepareCgroups(paths []string) error {
	if f.cg.links == nil {
		if len(paths) == 0 {
			f.cg.problem = "" // nothing to track, nothing amiss
			return nil
		}
		if err := f.cg.attach(f.objs.NtfCgroupMkdir, f.objs.NtfCgroupRelease, f.opts.PinDir); err != nil {
			f.cg.problem = err.Error()
			return nil
		}
	}
	return f.cg.prepare(paths)
}

// CgroupProblem says why cgroup principals of the live policy may match
// less than they should (no cgroup2 mount, tracepoints refused, too many
// cgroups to track); "" when they match as configured.
func (f *Filter) CgroupProblem() string { return f.cg.problem }

// Close releases this process's hold on the filter. What is pinned stays
// enforced; use Detach to remove it.
func (f *Filter) Close() error {
	for _, a := range f.attached {
		if a.tcx != nil {
			a.tcx.Close()
		}
	}
	for _, l := range f.adopted {
		l.Close()
	}
	for _, s := range f.inner {
		s.close()
	}
	if f.cg != nil {
		f.cg.closeLinks()
	}
	for _, s := range f.stage.inner {
		s.close()
	}
	return f.objs.Close()
}
