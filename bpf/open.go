// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Open loads the program. Pinned maps of an earlier run are adopted when
// they are compatible, so the policy they hold stays enforced until Apply
// replaces it; incompatible (older) pins are replaced once the new program
// is attached in their place.
func Open(opts Options) (*Filter, error) {
	if opts.PinDir == "" {
		opts.PinDir = DefaultPinDir
	}
	if err := ensurePinDir(opts.PinDir); err != nil {
		return nil, err
	}
	spec, err := loadFilter()
	if err != nil {
		return nil, fmt.Errorf("load program spec: %w", err)
	}
	if opts.maxCgroups != 0 {
		spec.Maps[filterMapNtfCgroups].MaxEntries = opts.maxCgroups
	}
	// The caches hold a section of entries for each CPU (filter.c).
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count the CPUs: %w", err)
	}
	for _, name := range []string{filterMapNtfIfaceCache, filterMapNtfVerdictCache, filterMapNtfVerdictCgroups} {
		spec.Maps[name].MaxEntries *= uint32(cpus)
	}
	if opts.rejectRate > 0 {
		// Per CPU: a reply costs 1/rate s of credit, of which a bucket
		// holds burst replies' worth.
		cost := uint64(time.Second) / uint64(opts.rejectRate)
		if err := spec.Variables[filterVarNtfRejectCostNs].Set(cost); err != nil {
			return nil, fmt.Errorf("set the reply rate: %w", err)
		}
		if err := spec.Variables[filterVarNtfRejectBurstNs].Set(cost * uint64(opts.rejectBurst)); err != nil {
			return nil, fmt.Errorf("set the reply burst: %w", err)
		}
	}
	f := &Filter{
		opts:     opts,
		spec:     spec,
		mode:     opts.Mode,
		attached: map[int]*attachment{},
		adopted:  map[int]link.Link{},
		rules:    map[uint32]rules{},
	}
	replacements, err := f.pinnedMaps()
	if err != nil {
		return nil, err
	}
	f.fresh = replacements == nil
	err = spec.LoadAndAssign(&f.objs, &ebpf.CollectionOptions{MapReplacements: replacements})
	for _, m := range replacements {
		m.Close() // LoadAndAssign holds its own references
	}
	if err != nil {
		return nil, fmt.Errorf("load program: %w", err)
	}
	f.cg, err = newCgroupTracker(f.objs.NtfCgroups, f.objs.NtfCgWatch)
	if err != nil {
		f.objs.Close()
		return nil, err
	}
	// ntf_traffic holds an allowed and a denied count per interface
	// counter and per endpoint counter.
	f.counters = newCounterNames(f.objs.NtfTraffic.MaxEntries() * trafficPerBlock / 4)
	f.enc = newEncoder(f.counters)
	err = nil
	if !f.fresh {
		err = f.readSlots()
	}
	if err == nil {
		// Before the counters are cleared: from here on, what the verdict
		// caches counted under an earlier run's indexes is dropped.
		f.countBase = f.epoch + 1
		if err = f.objs.NtfActive.Put(uint32(countBaseKey), f.countBase); err != nil {
			err = fmt.Errorf("set the counters' first epoch: %w", err)
		}
	}
	if err == nil && !f.fresh {
		err = clearCounters(f.objs.NtfTraffic, f.objs.NtfIfaceAudited, f.objs.NtfEndpointAudited)
	}
	if err != nil {
		f.objs.Close()
		return nil, err
	}
	if err := f.adoptLinks(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ensurePinDir makes the pin directory, mounting bpffs on its parent where
// none is mounted yet (a host that boots without one).
func ensurePinDir(dir string) error {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", parent, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(parent, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", parent, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		if err := unix.Mount("bpf", parent, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mount bpffs on %s: %w", parent, err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create pin directory: %w", err)
	}
	return nil
}

// pinnedMaps returns the pinned maps to reuse, or nil when there are none or
// when any of them does not fit this program (an older version's layout).
func (f *Filter) pinnedMaps() (map[string]*ebpf.Map, error) {
	maps := map[string]*ebpf.Map{}
	release := func() {
		for _, m := range maps {
			m.Close()
		}
	}
	for _, name := range pinnedMapNames(f.spec) {
		m, err := ebpf.LoadPinnedMap(filepath.Join(f.opts.PinDir, name), nil)
		if errors.Is(err, os.ErrNotExist) {
			release()
			return nil, nil
		}
		if err != nil {
			release()
			return nil, fmt.Errorf("open pinned map %s: %w", name, err)
		}
		maps[name] = m
		if err := f.spec.Maps[name].Compatible(m); err != nil {
			release()
			return nil, nil
		}
	}
	return maps, nil
}

// readSlots learns which slot is live and what the slots hold.
func (f *Filter) readSlots() error {
	var v uint64
	if err := f.objs.NtfActive.Lookup(uint32(0), &v); err != nil {
		return fmt.Errorf("read active slot: %w", err)
	}
	// An earlier run's stage ends with it: nothing would report on it.
	if v>>stagedSlotShift != 0 {
		if err := f.objs.NtfActive.Put(uint32(0), v&(1<<stagedSlotShift-1)); err != nil {
			return fmt.Errorf("end an earlier run's stage: %w", err)
		}
		f.stage.endedAtStart = true
	}
	f.slot = uint32(v&(1<<stagedSlotShift-1)) % slots
	if err := f.objs.NtfActive.Lookup(uint32(1), &v); err != nil {
		return fmt.Errorf("read generation: %w", err)
	}
	f.gen = uint32(v)
	for s := range uint32(slots) {
		var e uint64
		if err := f.objs.NtfActive.Lookup(epochKey(s), &e); err != nil {
			return fmt.Errorf("read epoch of slot %d: %w", s, err)
		}
		f.epoch = max(f.epoch, e)
	}
	// The slots' inner maps are opened by their pins, not through the
	// outer maps: turning a map id into a descriptor takes CAP_SYS_ADMIN,
	// which the hardened service does not have.
	for s := range uint32(slots) {
		for _, p := range f.slotParts(&f.inner[s]) {
			m, err := ebpf.LoadPinnedMap(f.slotPin(s, p.name), nil)
			if errors.Is(err, os.ErrNotExist) {
				// Not written by a run that pinned it: a slot an older
				// run left is rewritten whole before it is used.
				continue
			}
			if err != nil {
				return fmt.Errorf("open slot %d: %w", s, err)
			}
			*p.inner = m
		}
	}
	return nil
}

// adoptLinks opens the tcx links an earlier run pinned, so Apply can move
// them to this program without a moment unfiltered.
func (f *Filter) adoptLinks() error {
	paths, err := filepath.Glob(filepath.Join(f.opts.PinDir, linkPrefix+"*"))
	if err != nil {
		return err
	}
	for _, p := range paths {
		idx, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(p), linkPrefix))
		if err != nil {
			continue
		}
		l, err := link.LoadPinnedLink(p, nil)
		if err != nil {
			return fmt.Errorf("open pinned link %s: %w", p, err)
		}
		f.adopted[idx] = l
	}
	return nil
}
