package bpf

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

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

	noCache bool // benchmarks: every packet takes the uncached path
}

// keptGenerations is how many policies' rules stay known, so that queued
// events still name their endpoint after a few quick swaps (interfaces
// coming and going make a generation each).
const keptGenerations = 16

const (
	progPin    = "ntf_egress"
	linkPrefix = "link_"
	slots      = 2
)

// slotMaps are the inner maps that make up one slot's policy.
type slotMaps struct {
	ifaces, ranges, owners *ebpf.Map
}

func (s slotMaps) close() {
	for _, m := range []*ebpf.Map{s.ifaces, s.ranges, s.owners} {
		if m != nil {
			m.Close()
		}
	}
}

// Attachment is a filtered interface and how the program sits on it.
type Attachment struct {
	Iface Iface
	Mode  Mode
}

type attachment struct {
	Attachment
	tcx link.Link // ModeTCX only
}

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
	rules    map[uint32][]Rule // by generation: the live one and the one before
	counters *counterNames
}

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
	if opts.noCache {
		if err := spec.Variables["ntf_nocache"].Set(uint8(1)); err != nil {
			return nil, fmt.Errorf("turn the caches off: %w", err)
		}
	}
	f := &Filter{
		opts:     opts,
		spec:     spec,
		mode:     opts.Mode,
		attached: map[int]*attachment{},
		adopted:  map[int]link.Link{},
		rules:    map[uint32][]Rule{},
		counters: newCounterNames(spec.Maps["ntf_iface_counters"].MaxEntries / 2),
	}
	f.enc = newEncoder(f.counters)
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
	if !f.fresh {
		err := f.readSlots()
		if err == nil {
			err = clearCounters(f.objs.NtfIfaceCounters, f.objs.NtfEndpointCounters)
		}
		if err != nil {
			f.objs.Close()
			return nil, err
		}
	}
	if err := f.adoptLinks(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

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
	for name, ms := range f.spec.Maps {
		if strings.HasPrefix(name, ".") {
			continue
		}
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
		if err := ms.Compatible(m); err != nil {
			release()
			return nil, nil
		}
	}
	return maps, nil
}

// readSlots learns which slot is live and what the slots hold.
func (f *Filter) readSlots() error {
	var v uint32
	if err := f.objs.NtfActive.Lookup(uint32(0), &v); err != nil {
		return fmt.Errorf("read active slot: %w", err)
	}
	f.slot = v % slots
	if err := f.objs.NtfActive.Lookup(uint32(1), &v); err != nil {
		return fmt.Errorf("read generation: %w", err)
	}
	f.gen = v
	for s := range uint32(slots) {
		var e uint64
		if err := f.objs.NtfEpoch.Lookup(s, &e); err != nil {
			return fmt.Errorf("read epoch of slot %d: %w", s, err)
		}
		f.epoch = max(f.epoch, e)
	}
	// The slots' inner maps are opened by their pins, not through the
	// outer maps: turning a map id into a descriptor takes CAP_SYS_ADMIN,
	// which the hardened service does not have.
	for s := range uint32(slots) {
		for _, part := range []struct {
			outer string
			into  **ebpf.Map
		}{
			{"ntf_ifaces", &f.inner[s].ifaces},
			{"ntf_ranges", &f.inner[s].ranges},
			{"ntf_owners", &f.inner[s].owners},
		} {
			m, err := ebpf.LoadPinnedMap(f.slotPin(s, part.outer), nil)
			if errors.Is(err, os.ErrNotExist) {
				// Not written by a run that pinned it: a slot an older
				// run left is rewritten whole before it is used.
				continue
			}
			if err != nil {
				return fmt.Errorf("open slot %d: %w", s, err)
			}
			*part.into = m
		}
	}
	return nil
}

// slotPin is where a slot's inner map is pinned.
func (f *Filter) slotPin(slot uint32, outer string) string {
	return filepath.Join(f.opts.PinDir, fmt.Sprintf("slot%d_%s", slot, strings.TrimPrefix(outer, "ntf_")))
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

// Generation is the generation of the live policy (0: none yet).
func (f *Filter) Generation() uint32 { return f.gen }

// Mode is the attach mode in use, once something is attached.
func (f *Filter) Mode() Mode { return f.mode }

// Attachments lists the filtered interfaces.
func (f *Filter) Attachments() []Attachment {
	out := make([]Attachment, 0, len(f.attached))
	for _, a := range f.attached {
		out = append(out, a.Attachment)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Iface.Index < out[j].Iface.Index })
	return out
}

// Apply makes a policy live on the interfaces it filters among ifaces (all
// interfaces of the network namespace): the whole policy is swapped in at
// once, then the program is attached where it is missing and detached where
// the policy no longer filters. It returns the new generation.
func (f *Filter) Apply(p *policy.Policy, ifaces []Iface, log LogMode) (uint32, error) {
	f.mu.Lock()
	c := f.enc.encode(p, ifaces, f.gen+1, log)
	f.mu.Unlock()
	if err := f.swap(c); err != nil {
		return f.gen, err
	}
	var errs []error
	for _, ifc := range ifaces {
		if _, ok := c.Ifaces[uint32(ifc.Index)]; ok {
			if err := f.attach(ifc); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for idx, a := range f.attached {
		if _, ok := c.Ifaces[uint32(idx)]; !ok {
			if err := f.detach(a); err != nil {
				errs = append(errs, err)
			}
		}
	}
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

// swap writes a policy into the idle slot and makes it live. A slot is only
// written after a grace period since it was last live, so no running program
// can see it half-written; the flip is one word, so every packet is judged
// by one whole policy. The idle slot still holds the policy before the live
// one: where this process wrote it and it has room, only the difference is
// written.
func (f *Filter) swap(c *Contents) error {
	next := 1 - f.slot
	if err := f.waitForReaders(next); err != nil {
		return err
	}
	old := f.contents[next]
	f.contents[next] = nil // unknown until written whole
	if old == nil || old.ids != c.ids || !f.fits(next, c) || f.update(next, old, c) != nil {
		if err := f.replace(next, c); err != nil {
			return err
		}
	}
	// Nothing reads this slot (see waitForReaders), so nothing can cache
	// what it holds under the new epoch before it goes live.
	if err := f.objs.NtfEpoch.Put(next, f.epoch+1); err != nil {
		return fmt.Errorf("set epoch of slot %d: %w", next, err)
	}
	f.epoch++
	if err := f.objs.NtfActive.Put(uint32(1), c.Generation); err != nil {
		return fmt.Errorf("record generation: %w", err)
	}
	if err := f.objs.NtfActive.Put(uint32(0), next); err != nil {
		return fmt.Errorf("switch to slot %d: %w", next, err)
	}
	f.contents[next] = c
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

// Mirror writes the live policy into the idle slot as well when this
// process does not know what the idle slot holds (after a start, or after
// adopting an earlier run's pins), so that the next swap writes only the
// difference instead of a whole policy.
func (f *Filter) Mirror() error {
	live, idle := f.contents[f.slot], 1-f.slot
	if live == nil || f.contents[idle] != nil {
		return nil
	}
	if err := f.waitForReaders(idle); err != nil {
		return err
	}
	if err := f.replace(idle, live); err != nil {
		return err
	}
	f.contents[idle] = live
	return nil
}

// replace fills new maps for a slot and installs them in it.
func (f *Filter) replace(slot uint32, c *Contents) error {
	sm, err := f.build(c)
	if err != nil {
		return err
	}
	for _, part := range []struct {
		outer *ebpf.Map
		inner *ebpf.Map
	}{
		{f.objs.NtfIfaces, sm.ifaces},
		{f.objs.NtfRanges, sm.ranges},
		{f.objs.NtfOwners, sm.owners},
	} {
		if err := part.outer.Put(slot, part.inner); err != nil {
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
		int(sm.ranges.MaxEntries()) >= len(c.Ranges) &&
		int(sm.owners.MaxEntries()) >= len(c.Owners)
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
	if err := syncMap(sm.ranges, old.Ranges, c.Ranges, compareKeys[filterNtfRangeKey, filterNtfRange](compareRangeKeys), rangeEntry.kv); err != nil {
		return fmt.Errorf("update range map: %w", err)
	}
	compareOwners := func(a, b filterNtfOwnerKey) int {
		return cmp.Or(cmp.Compare(a.Set, b.Set), cmp.Compare(a.Uid, b.Uid))
	}
	member := func(o filterNtfOwnerKey) (filterNtfOwnerKey, uint8) { return o, 1 }
	if err := syncMap(sm.owners, old.Owners, c.Owners, compareOwners, member); err != nil {
		return fmt.Errorf("update owner map: %w", err)
	}
	return nil
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

// pinSlot pins a slot's inner maps, so a restart can open them.
func (f *Filter) pinSlot(slot uint32) error {
	for outer, m := range map[string]*ebpf.Map{
		"ntf_ifaces": f.inner[slot].ifaces,
		"ntf_ranges": f.inner[slot].ranges,
		"ntf_owners": f.inner[slot].owners,
	} {
		if err := pinReplace(f.slotPin(slot, outer), m.Pin); err != nil {
			return err
		}
	}
	return nil
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
	newInner := func(outer string, n int) (*ebpf.Map, error) {
		spec := f.spec.Maps[outer].InnerMap.Copy()
		spec.Name = ""
		switch outer {
		case "ntf_ranges":
			spec.MaxEntries = uint32(max(2*n, 1024))
		case "ntf_owners":
			spec.MaxEntries = uint32(n + n/4 + 64)
		default:
			spec.MaxEntries = uint32(max(n, int(spec.MaxEntries)))
		}
		return ebpf.NewMap(spec)
	}
	if sm.ifaces, err = newInner("ntf_ifaces", len(c.Ifaces)); err != nil {
		return sm, fmt.Errorf("create interface map: %w", err)
	}
	if sm.ranges, err = newInner("ntf_ranges", len(c.Ranges)); err != nil {
		sm.close()
		return sm, fmt.Errorf("create range map: %w", err)
	}
	if sm.owners, err = newInner("ntf_owners", len(c.Owners)); err != nil {
		sm.close()
		return sm, fmt.Errorf("create owner map: %w", err)
	}
	for idx, v := range c.Ifaces {
		if err := sm.ifaces.Put(idx, v); err != nil {
			sm.close()
			return sm, fmt.Errorf("fill interface map: %w", err)
		}
	}
	keys := make([]filterNtfRangeKey, len(c.Ranges))
	vals := make([]filterNtfRange, len(c.Ranges))
	for i, r := range c.Ranges {
		keys[i], vals[i] = r.key, r.val
	}
	if err := putAll(sm.ranges, keys, vals); err != nil {
		sm.close()
		return sm, fmt.Errorf("fill range map: %w", err)
	}
	ones := make([]uint8, len(c.Owners))
	for i := range ones {
		ones[i] = 1
	}
	if err := putAll(sm.owners, c.Owners, ones); err != nil {
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

func (f *Filter) attach(ifc Iface) error {
	if a, ok := f.attached[ifc.Index]; ok {
		a.Iface = ifc // renamed, maybe: the program is on the device, not the name
		return nil
	}
	if l, ok := f.adopted[ifc.Index]; ok {
		delete(f.adopted, ifc.Index)
		if err := l.Update(f.objs.NtfEgress); err == nil {
			f.attached[ifc.Index] = &attachment{Attachment{ifc, ModeTCX}, l}
			f.mode = ModeTCX
			return nil
		}
		// The interface behind the link is gone (same index reused):
		// drop the dead link and attach anew.
		l.Unpin()
		l.Close()
	}
	if f.mode == ModeAuto || f.mode == ModeTCX {
		l, err := f.attachTCX(ifc)
		if err == nil {
			f.mode = ModeTCX
			f.attached[ifc.Index] = &attachment{Attachment{ifc, ModeTCX}, l}
			return nil
		}
		if f.mode == ModeTCX || !errors.Is(err, ebpf.ErrNotSupported) {
			return err
		}
		f.mode = ModeClsact // kernel before 6.6
	}
	if err := f.attachClsact(ifc); err != nil {
		return err
	}
	f.attached[ifc.Index] = &attachment{Attachment: Attachment{ifc, ModeClsact}}
	return nil
}

func (f *Filter) attachTCX(ifc Iface) (link.Link, error) {
	l, err := link.AttachTCX(link.TCXOptions{
		Interface: ifc.Index,
		Program:   f.objs.NtfEgress,
		Attach:    ebpf.AttachTCXEgress,
		Anchor:    link.Head(), // judge before other programs can redirect
	})
	if err != nil {
		return nil, fmt.Errorf("attach tcx to %s: %w", ifc.Name, err)
	}
	if err := pinReplace(f.linkPin(ifc.Index), l.Pin); err != nil {
		l.Close()
		return nil, fmt.Errorf("pin link of %s: %w", ifc.Name, err)
	}
	return l, nil
}

func (f *Filter) linkPin(idx int) string {
	return filepath.Join(f.opts.PinDir, linkPrefix+strconv.Itoa(idx))
}

func (f *Filter) detach(a *attachment) error {
	delete(f.attached, a.Iface.Index)
	if a.tcx != nil {
		// The pin holds the link (and so the program on the interface)
		// as much as our descriptor does. It was renamed into place, so
		// the link does not know its path: remove it by name.
		err := os.Remove(f.linkPin(a.Iface.Index))
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
		return errors.Join(err, a.tcx.Close())
	}
	return detachClsact(a.Iface.Index, f.objs.NtfClsact)
}

// Forget drops what attached the program to an interface that was deleted,
// so that a new device with the same index is attached to afresh.
func (f *Filter) Forget(ifindex int) {
	if a, ok := f.attached[ifindex]; ok {
		f.detach(a) // the device is gone: errors say only that
	}
	if l, ok := f.adopted[ifindex]; ok {
		delete(f.adopted, ifindex)
		l.Unpin()
		l.Close()
	}
}

// releaseAdopted drops pinned links of an earlier run that this policy does
// not filter any more, detaching them.
func (f *Filter) releaseAdopted() error {
	var errs []error
	for idx, l := range f.adopted {
		delete(f.adopted, idx)
		if err := l.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin link of ifindex %d: %w", idx, err))
		}
		l.Close()
	}
	return errors.Join(errs...)
}

// pinAll pins the program and maps, replacing what an earlier run pinned.
func (f *Filter) pinAll() error {
	pins := map[string]func(string) error{progPin: f.objs.NtfEgress.Pin}
	for name, m := range f.objs.maps() {
		pins[name] = m.Pin
	}
	for name, pin := range pins {
		if err := pinReplace(filepath.Join(f.opts.PinDir, name), pin); err != nil {
			return fmt.Errorf("pin %s: %w", name, err)
		}
	}
	return nil
}

// pinReplace pins beside the target and renames over it, so the path never
// stops naming a live object.
func pinReplace(path string, pin func(string) error) error {
	tmp := path + "_new" // bpffs refuses dots in names
	os.Remove(tmp)
	if err := pin(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func (o *filterObjects) maps() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{
		"ntf_active":   o.NtfActive,
		"ntf_clsact":   o.NtfClsact,
		"ntf_counters": o.NtfCounters,
		"ntf_events":   o.NtfEvents,
		"ntf_ifaces":   o.NtfIfaces,
		"ntf_owners":   o.NtfOwners,
		"ntf_ranges":   o.NtfRanges,
		"ntf_epoch":    o.NtfEpoch,
		"ntf_sk_addr":  o.NtfSkAddr,

		"ntf_iface_cache":       o.NtfIfaceCache,
		"ntf_verdict_cache":     o.NtfVerdictCache,
		"ntf_iface_counters":    o.NtfIfaceCounters,
		"ntf_endpoint_counters": o.NtfEndpointCounters,
	}
}

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
	return f.objs.Close()
}

// Detach removes the filter from every interface and deletes the pins.
func (f *Filter) Detach() error {
	var errs []error
	for _, a := range f.attached {
		if err := f.detach(a); err != nil {
			errs = append(errs, err)
		}
	}
	if err := f.releaseAdopted(); err != nil {
		errs = append(errs, err)
	}
	if err := removeClsactFilters(f.objs.NtfClsact); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, f.Close(), removePinDir(f.opts.PinDir))
	return errors.Join(errs...)
}

// Remove detaches whatever an earlier run left pinned in pinDir, without
// loading the program: the `detach` command.
func Remove(pinDir string) error {
	if pinDir == "" {
		pinDir = DefaultPinDir
	}
	if _, err := os.Stat(pinDir); errors.Is(err, os.ErrNotExist) {
		return removeClsactFilters(nil)
	}
	var errs []error
	paths, _ := filepath.Glob(filepath.Join(pinDir, linkPrefix+"*"))
	for _, p := range paths {
		l, err := link.LoadPinnedLink(p, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("open pinned link %s: %w", p, err))
			continue
		}
		l.Unpin()
		l.Close()
	}
	owned, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, "ntf_clsact"), nil)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if err := removeClsactFilters(owned); err != nil {
		errs = append(errs, err)
	}
	if owned != nil {
		owned.Close()
	}
	if err := removePinDir(pinDir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removePinDir removes the pins and then the directory. Under the shipped
// unit the directory is the one writable mount in a read-only /sys/fs/bpf
// (ReadWritePaths=): it cannot go, and an empty directory pins nothing.
func removePinDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.EROFS) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
