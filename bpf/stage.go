// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/nettcfilter/net-tc-filter/daemon/policy"
)

// stagedSlotShift is NTF_STAGED_SLOT_SHIFT: ntf_active[0] holds the live
// slot and, above this bit, the staged one (0: nothing staged).
const stagedSlotShift = 8

// The staged pair of slots (filter.h): a candidate is written into the one
// that is not in force, as the live policy is.
const firstStagedSlot = slots

// staging is the Filter's staged candidate.
type staging struct {
	slot   uint32 // in force: firstStagedSlot or the next; 0: nothing staged
	policy *policy.Policy
	enc    *encoder                  // its own ids, counters unused: the kernel does not count it
	rules  rules                     // by staged rule id
	ifaces map[uint32]filterNtfIface // the interfaces it filters, by index
	inner  [2]slotMaps
	// endedAtStart: the pins held an earlier run's stage, which Open
	// ended (a stage never outlives the daemon that reports on it).
	endedAtStart bool
	lost         error // why Apply ended the stage, until StageLost
}

// Action is a verdict as the kernel reports it.
type Action uint8

const (
	ActionDeny  = Action(filterNtfActionNTF_DENY)
	ActionAllow = Action(filterNtfActionNTF_ALLOW)
	ActionAudit = Action(filterNtfActionNTF_AUDIT) // not allowed, passed by mode: audit
)

// String is the spelling of NTF_ACTION: allow, deny or audit.
func (a Action) String() string {
	switch a {
	case ActionAllow:
		return "allow"
	case ActionAudit:
		return "audit"
	}
	return "deny"
}

// Drops reports whether a packet with this verdict is dropped.
func (a Action) Drops() bool { return a == ActionDeny }

// DiffKey is a kind of packet that a staged policy decides otherwise
// than the live one.
type DiffKey struct {
	StagedRule uint32 // 0: the candidate's interface default (or it does not filter the interface)
	LiveRule   uint32 // 0: the live interface default
	UID        uint32 // meaningless when Unowned
	Unowned    bool
	Cgroup     uint64 // cgroup v2 id of the socket; 0: unknown or no socket
	Live       Action
	Staged     Action
}

// StagedEndedAtStart reports whether Open found an earlier run's stage
// in the pins and ended it.
func (f *Filter) StagedEndedAtStart() bool { return f.stage.endedAtStart }

// Staged reports whether a candidate is staged. Safe for concurrent use.
func (f *Filter) Staged() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stage.slot != 0
}

// setActive puts the live and the staged slot in force with one write.
func (f *Filter) setActive(live, staged uint32) error {
	return f.objs.NtfActive.Put(uint32(0), uint64(live|staged<<stagedSlotShift))
}

// epochKey is the key of ntf_active that holds the slot's epoch
// (NTF_EPOCHS).
func epochKey(slot uint32) uint32 { return 2 + slot }

// countBaseKey is the key of ntf_active that holds the first epoch of the
// run that reads ntf_traffic (NTF_COUNT_BASE: after the epochs of the
// kernel's four slots).
const countBaseKey = 2 + 4

// Stage puts a candidate policy beside the live one: the kernel judges
// every packet of the interfaces either filters by both, goes by the live
// verdict only, and counts where the candidate differs (read with
// StagedDiffs); where only the candidate filters, the live verdict is the
// pass the packet gets. Ifaces are the interfaces of the network
// namespace, as Apply takes them. A candidate staged before is replaced,
// and the counts start again.
func (f *Filter) Stage(p *policy.Policy, ifaces []Iface) error {
	if err := f.stageIn(p, ifaces); err != nil {
		return err
	}
	// The program leaves where only a candidate staged before filtered.
	// Should that fail, it passes every packet there (no policy filters
	// the interface) until the next Apply detaches it: the stage is in
	// force, which an error here would deny.
	f.detachUnfiltered()
	return f.clearDiffs()
}

// restage writes the staged candidate again for the interfaces there are
// now, keeping its counts: after a live swap, which may have come with
// new interfaces.
func (f *Filter) restage(ifaces []Iface) error {
	if f.stage.slot == 0 {
		return nil
	}
	if err := f.stageIn(f.stage.policy, ifaces); err != nil {
		return fmt.Errorf("keep the staged policy: %w", err)
	}
	return nil
}

func (f *Filter) stageIn(p *policy.Policy, ifaces []Iface) error {
	st := &f.stage
	if st.enc == nil {
		st.enc = newEncoder(newCounterNames(f.counters.max))
	}
	// The candidate's cgroup paths are watched beside the live ones (and
	// given their own bits) for as long as it is staged.
	if paths := p.CgroupPaths(); len(paths) > 0 {
		if err := f.prepareCgroups(paths); err != nil {
			return err
		}
	}
	st.enc.cgroupBits = nil
	if f.cg.links != nil {
		st.enc.cgroupBits = f.cg.masks()
	}
	f.mu.Lock() // the rules StagedRule reads
	c := st.enc.encode(p, ifaces, f.gen, LogNone)
	f.mu.Unlock()
	// The program goes on every interface the candidate filters before
	// the candidate is in force; on one that the live policy does not
	// filter it passes every packet until then.
	for _, ifc := range ifaces {
		if _, ok := c.Ifaces[uint32(ifc.Index)]; ok {
			if err := f.attach(ifc); err != nil {
				return errors.Join(fmt.Errorf("stage: %w", err), errors.Join(f.detachUnfiltered()...))
			}
		}
	}
	next := uint32(firstStagedSlot)
	if st.slot == next {
		next++
	}
	// Like a live swap: the slot is written only once no program can
	// still be reading what it held when it was last in force.
	inner := &st.inner[next-firstStagedSlot]
	if inner.ifaces != nil {
		if err := f.objs.NtfIfaces.Put(next, inner.ifaces); err != nil {
			return fmt.Errorf("wait for readers of staged slot %d: %w", next, err)
		}
	}
	sm, err := f.build(c)
	if err != nil {
		return err
	}
	for _, part := range f.slotParts(&sm) {
		if err := part.outer.Put(next, *part.inner); err != nil {
			sm.close()
			return fmt.Errorf("install staged policy in slot %d: %w", next, err)
		}
	}
	inner.close()
	*inner = sm
	if err := f.setActive(f.slot, next); err != nil {
		return fmt.Errorf("stage slot %d: %w", next, err)
	}
	f.mu.Lock()
	st.slot, st.policy, st.rules, st.ifaces = next, p, c.Rules, c.Ifaces
	f.mu.Unlock()
	return nil
}

// Unstage ends the stage and returns what it counted. The live policy is
// not touched. Unstaging with nothing staged returns nothing.
func (f *Filter) Unstage() (map[DiffKey]uint64, error) {
	st := &f.stage
	if st.slot == 0 {
		return nil, nil
	}
	if err := f.setActive(f.slot, 0); err != nil {
		return nil, fmt.Errorf("unstage: %w", err)
	}
	// Wait until no program can still count into the map: the totals
	// are then final.
	inner := st.inner[st.slot-firstStagedSlot]
	if err := f.objs.NtfIfaces.Put(st.slot, inner.ifaces); err != nil {
		return nil, fmt.Errorf("wait for readers of the staged policy: %w", err)
	}
	f.mu.Lock()
	st.slot, st.policy = 0, nil
	st.enc = nil // with its last encoding: a next stage starts afresh
	f.mu.Unlock()
	diffs, err := f.StagedDiffs()
	if err != nil {
		return nil, err
	}
	return diffs, errors.Join(f.clearDiffs(), f.cg.release(f.watchedPaths()), errors.Join(f.detachUnfiltered()...))
}

// watchedPaths are the cgroup paths of the live and the staged policy.
func (f *Filter) watchedPaths() []string {
	paths := f.cgPaths
	if f.stage.policy != nil {
		paths = append(slices.Clone(paths), f.stage.policy.CgroupPaths()...)
	}
	return paths
}

// loseStage ends a stage that could not follow a live swap. The live
// policy is in force whatever happens here.
func (f *Filter) loseStage(why error) {
	if err := f.setActive(f.slot, 0); err != nil {
		why = errors.Join(why, err)
	}
	f.mu.Lock()
	f.stage.slot, f.stage.policy, f.stage.enc = 0, nil, nil
	f.stage.lost = why
	f.mu.Unlock()
	// Apply, which lost the stage, detaches where only it filtered.
	if err := f.cg.release(f.watchedPaths()); err != nil {
		f.mu.Lock()
		f.stage.lost = errors.Join(f.stage.lost, err)
		f.mu.Unlock()
	}
}

// StageLost returns, once, why the last Apply ended the stage; nil when it
// did not.
func (f *Filter) StageLost() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.stage.lost
	f.stage.lost = nil
	return err
}

// StagedRule returns what a staged rule id stands for.
func (f *Filter) StagedRule(id uint32) (Rule, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stage.rules.get(id)
}

// StagedDiffs reads the counts of packets the staged policy decides
// otherwise, summed over CPUs. Safe for concurrent use.
func (f *Filter) StagedDiffs() (map[DiffKey]uint64, error) {
	out := map[DiffKey]uint64{}
	var k filterNtfDiffKey
	var perCPU []uint64
	it := f.objs.NtfStagedDiffs.Iterate()
	for it.Next(&k, &perCPU) {
		var n uint64
		for _, x := range perCPU {
			n += x
		}
		out[diffKey(k)] += n
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read staged differences: %w", err)
	}
	return out, nil
}

func diffKey(k filterNtfDiffKey) DiffKey {
	d := DiffKey{StagedRule: k.StagedRule, LiveRule: k.LiveRule, UID: k.Uid, Cgroup: k.Cgroup,
		Live: Action(k.LiveAction), Staged: Action(k.StagedAction)}
	if k.Uid == uidUnowned {
		d.UID, d.Unowned = 0, true
	}
	return d
}

// uidUnowned is NTF_UID_UNOWNED.
const uidUnowned = 0xffffffff

// clearDiffs empties the map of differences.
func (f *Filter) clearDiffs() error {
	var keys []filterNtfDiffKey
	var k filterNtfDiffKey
	var v []uint64
	it := f.objs.NtfStagedDiffs.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("clear staged differences: %w", err)
	}
	for _, k := range keys {
		if err := f.objs.NtfStagedDiffs.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("clear staged differences: %w", err)
		}
	}
	return nil
}
