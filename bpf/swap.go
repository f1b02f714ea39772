// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/cilium/ebpf"
)

// slotMaps are the inner maps that make up one slot's policy.
type slotMaps struct {
	ifaces, ranges, owners *ebpf.Map
}

// slotPart is one part of a slot: an outer map-in-map of the program and
// the inner map the slot holds in it.
type slotPart struct {
	name  string // the outer map's, as the spec names it
	outer *ebpf.Map
	inner **ebpf.Map // in a slotMaps
}

// slotParts lists the parts of a slot. TestPinnedMaps checks that they are
// every map-in-map of the spec.
func (f *Filter) slotParts(sm *slotMaps) []slotPart {
	return []slotPart{
		{filterMapNtfIfaces, f.objs.NtfIfaces, &sm.ifaces},
		{filterMapNtfRanges, f.objs.NtfRanges, &sm.ranges},
		{filterMapNtfOwners, f.objs.NtfOwners, &sm.owners},
	}
}

func (s slotMaps) close() {
	for _, m := range []*ebpf.Map{s.ifaces, s.ranges, s.owners} {
		if m != nil {
			m.Close()
		}
	}
}

// swap writes a policy into the idle slot and makes it live. A slot is only
// written after a grace period since it was last live, so no running program
// can see it half-written; the flip is one word, so every packet is judged
// by one whole policy.
func (f *Filter) swap(c *Contents) error {
	next := 1 - f.slot
	if err := f.write(next, c); err != nil {
		return err
	}
	// Nothing reads this slot (see waitForReaders), so nothing can cache
	// what it holds under the new epoch before it goes live.
	epoch := f.epoch + 1
	if f.opts.noCache {
		epoch = 0 // no caching
	}
	if err := f.objs.NtfActive.Put(epochKey(next), epoch); err != nil {
		return fmt.Errorf("set epoch of slot %d: %w", next, err)
	}
	f.epoch++
	if err := f.objs.NtfActive.Put(uint32(1), uint64(c.Generation)); err != nil {
		return fmt.Errorf("record generation: %w", err)
	}
	if err := f.setActive(next, f.stage.slot); err != nil {
		return fmt.Errorf("switch to slot %d: %w", next, err)
	}
	f.slot, f.gen = next, c.Generation

	f.mu.Lock()
	f.rules[c.Generation] = c.Rules
	for g := range f.rules {
		if g+keptGenerations <= c.Generation {
			delete(f.rules, g)
		}
	}
	f.mu.Unlock()
	return nil
}

// Mirror writes the live policy into the idle slot as well: the whole of
// it when this process does not know what the idle slot holds (after a
// start, or after adopting an earlier run's pins), and otherwise, after a
// swap, the difference between the policy before it and the live one.
// The next swap then writes only its own difference, and this process
// keeps one copy of the slots' contents instead of one per slot (at
// 100 000 ranges ~6 MB). The idle slot is written only once no program
// can still be reading it, as in a swap, and goes live again only with a
// new epoch: nothing cached from what it held before can be served.
//
// A live policy encoded as a change to the one before (Contents.delta) is
// written as that change here too, and its ranges are then laid out in
// the memory of the one before, which no slot holds any more.
func (f *Filter) Mirror() error {
	live, idle := f.contents[f.slot], 1-f.slot
	if live == nil || f.contents[idle] == live {
		return nil
	}
	err := f.write(idle, live)
	live.layOut() // no slot holds the policy before it any more
	return err
}

// write makes a slot that is not live hold c, once no program can still be
// reading it: only the difference from what it holds, where this process
// wrote that and the slot's maps have room, or else new maps filled whole.
func (f *Filter) write(slot uint32, c *Contents) error {
	if err := f.waitForReaders(slot); err != nil {
		return err
	}
	old := f.contents[slot]
	f.contents[slot] = nil // unknown until written whole
	if old == nil || old.delta != nil || old.ids != c.ids || !f.fits(slot, c) || f.update(slot, old, c) != nil {
		if err := f.replace(slot, c); err != nil {
			return err
		}
	}
	f.contents[slot] = c
	return nil
}

// replace fills new maps for a slot and installs them in it.
func (f *Filter) replace(slot uint32, c *Contents) error {
	sm, err := f.build(c)
	if err != nil {
		return err
	}
	for _, p := range f.slotParts(&sm) {
		if err := p.outer.Put(slot, *p.inner); err != nil {
			sm.close()
			return fmt.Errorf("install policy in slot %d: %w", slot, err)
		}
	}
	f.inner[slot].close()
	f.inner[slot] = sm
	// A restart's adoption opens the slot by these pins.
	if err := f.pinSlot(slot); err != nil {
		return fmt.Errorf("pin slot %d: %w", slot, err)
	}
	return nil
}

// fits reports whether a slot's maps have room for c.
func (f *Filter) fits(slot uint32, c *Contents) bool {
	sm := f.inner[slot]
	return sm.ifaces != nil && sm.ranges != nil && sm.owners != nil &&
		int(sm.ifaces.MaxEntries()) >= len(c.Ifaces) &&
		int(sm.ranges.MaxEntries()) >= c.rangeCount() &&
		int(sm.owners.MaxEntries()) >= c.ownerCount()
}

// update rewrites a slot that holds old so that it holds c.
func (f *Filter) update(slot uint32, old, c *Contents) error {
	sm := f.inner[slot]
	ifaces := func(m map[uint32]filterNtfIface) []entry[uint32, filterNtfIface] {
		out := make([]entry[uint32, filterNtfIface], 0, len(m))
		for _, k := range slices.Sorted(maps.Keys(m)) {
			out = append(out, entry[uint32, filterNtfIface]{k, m[k]})
		}
		return out
	}
	if err := syncMap(sm.ifaces, ifaces(old.Ifaces), ifaces(c.Ifaces), compareKeys[uint32, filterNtfIface](cmp.Compare[uint32]), entry[uint32, filterNtfIface].kv); err != nil {
		return fmt.Errorf("update interface map: %w", err)
	}
	if err := f.updateRanges(sm.ranges, old, c); err != nil {
		return fmt.Errorf("update range map: %w", err)
	}
	if err := f.updateOwners(sm.owners, old, c); err != nil {
		return fmt.Errorf("update owner map: %w", err)
	}
	return nil
}

// updateRanges rewrites a range trie that holds old's so that it holds c's.
func (f *Filter) updateRanges(m *ebpf.Map, old, c *Contents) error {
	if c.delta != nil && c.delta.base == old {
		return writeChange(m, c.delta.ranges, rangeEntry.kv)
	}
	return syncMap(m, old.Ranges, c.entries(), compareRanges, rangeEntry.kv)
}

// updateOwners rewrites an owner map that holds old's members so that it
// holds c's.
func (f *Filter) updateOwners(m *ebpf.Map, old, c *Contents) error {
	if c.delta != nil && c.delta.base == old {
		return writeChange(m, c.delta.owners, member)
	}
	return syncMap(m, old.Owners, c.owners(), compareOwners, member)
}

// member is an owner set member as a map entry.
func member(o filterNtfOwnerKey) (filterNtfOwnerKey, uint8) { return o, 1 }

// writeChange makes a map that holds a change's base hold the changed
// entries: it deletes and writes only what the change says.
func writeChange[E any, K, V any](m *ebpf.Map, c change[E], kv func(E) (K, V)) error {
	gone, put := c.writes()
	for _, e := range gone {
		k, _ := kv(e)
		if err := m.Delete(k); err != nil {
			return err
		}
	}
	keys, vals := make([]K, len(put)), make([]V, len(put))
	for i, e := range put {
		keys[i], vals[i] = kv(e)
	}
	return putAll(m, keys, vals)
}

// entry is a map entry as user space keeps it.
type entry[K, V comparable] struct {
	key K
	val V
}

func (e entry[K, V]) kv() (K, V) { return e.key, e.val }

func compareKeys[K, V comparable](compare func(a, b K) int) func(a, b entry[K, V]) int {
	return func(a, b entry[K, V]) int { return compare(a.key, b.key) }
}

// syncMap turns a map that holds have into one that holds want: both are
// sorted by compare, which orders their keys, and kv makes an element a
// map entry. It deletes what is gone and writes what is new or changed, in
// one pass over both.
func syncMap[E comparable, K, V any](m *ebpf.Map, have, want []E, compare func(a, b E) int, kv func(E) (K, V)) error {
	var keys []K
	var vals []V
	var gone []K
	i, j := 0, 0
	for i < len(have) || j < len(want) {
		// Most of a large policy is what it was.
		if i < len(have) && j < len(want) && have[i] == want[j] {
			i, j = i+1, j+1
			continue
		}
		c := 0
		switch {
		case i == len(have):
			c = 1
		case j == len(want):
			c = -1
		default:
			c = compare(have[i], want[j])
		}
		switch {
		case c < 0:
			k, _ := kv(have[i])
			gone = append(gone, k)
			i++
		default: // new, or the same key with another value
			k, v := kv(want[j])
			keys, vals = append(keys, k), append(vals, v)
			j++
			if c == 0 {
				i++
			}
		}
	}
	for _, k := range gone {
		if err := m.Delete(k); err != nil {
			return err
		}
	}
	return putAll(m, keys, vals)
}

// waitForReaders returns once no program can still be using a slot. Writing
// a map-in-map entry makes the kernel wait for running programs (an RCU grace
// period); rewriting an entry with the map it already holds changes nothing
// else.
func (f *Filter) waitForReaders(slot uint32) error {
	m := f.inner[slot].ifaces
	if m == nil {
		return nil // never written: nobody can be reading it
	}
	if err := f.objs.NtfIfaces.Put(slot, m); err != nil {
		return fmt.Errorf("wait for readers of slot %d: %w", slot, err)
	}
	return nil
}

// build creates and fills the inner maps of one slot.
func (f *Filter) build(c *Contents) (slotMaps, error) {
	var sm slotMaps
	var err error
	// Room to grow, so that the next policies can be written in place:
	// the range trie allocates per entry (its size is a limit only); the
	// owner hash preallocates.
	newInner := func(outer string, size func(template uint32) int) (*ebpf.Map, error) {
		spec := f.spec.Maps[outer].InnerMap.Copy()
		spec.Name = ""
		spec.MaxEntries = uint32(size(spec.MaxEntries))
		return ebpf.NewMap(spec)
	}
	ifaces := func(template uint32) int { return max(len(c.Ifaces), int(template)) }
	if sm.ifaces, err = newInner(filterMapNtfIfaces, ifaces); err != nil {
		return sm, fmt.Errorf("create interface map: %w", err)
	}
	ranges := func(uint32) int { return max(2*c.rangeCount(), 1024) }
	if sm.ranges, err = newInner(filterMapNtfRanges, ranges); err != nil {
		sm.close()
		return sm, fmt.Errorf("create range map: %w", err)
	}
	owners := func(uint32) int { return c.ownerCount() + c.ownerCount()/4 + 64 }
	if sm.owners, err = newInner(filterMapNtfOwners, owners); err != nil {
		sm.close()
		return sm, fmt.Errorf("create owner map: %w", err)
	}
	for idx, v := range c.Ifaces {
		if err := sm.ifaces.Put(idx, v); err != nil {
			sm.close()
			return sm, fmt.Errorf("fill interface map: %w", err)
		}
	}
	entries := c.entries()
	keys := make([]filterNtfRangeKey, len(entries))
	vals := make([]filterNtfRange, len(entries))
	for i, r := range entries {
		keys[i], vals[i] = r.key, r.val
	}
	if err := putAll(sm.ranges, keys, vals); err != nil {
		sm.close()
		return sm, fmt.Errorf("fill range map: %w", err)
	}
	members := c.owners()
	ones := make([]uint8, len(members))
	for i := range ones {
		ones[i] = 1
	}
	if err := putAll(sm.owners, members, ones); err != nil {
		sm.close()
		return sm, fmt.Errorf("fill owner map: %w", err)
	}
	return sm, nil
}

// putAll writes in one batch where the kernel supports it for the map type.
func putAll[K, V any](m *ebpf.Map, keys []K, vals []V) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := m.BatchUpdate(keys, vals, nil)
	if !errors.Is(err, ebpf.ErrNotSupported) {
		return err
	}
	for i := range keys {
		if err := m.Put(keys[i], vals[i]); err != nil {
			return err
		}
	}
	return nil
}
