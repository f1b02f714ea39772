// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"iter"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/nettcfilter/net-tc-filter/daemon/policy"
)

// Iface is a network interface as the encoder and the attacher need it.
type Iface struct {
	Name  string
	Index int
	L3    bool // no link-layer header (wireguard, tun, ipip...)
}

// LogMode says which decisions the kernel reports as events.
type LogMode uint8

const (
	LogNone   = LogMode(filterNtfLogNTF_LOG_NONE)
	LogDenied = LogMode(filterNtfLogNTF_LOG_DENIED)
	LogAll    = LogMode(filterNtfLogNTF_LOG_ALL)
)

// ParseLogMode maps the `log.decisions` setting.
func ParseLogMode(s string) (LogMode, error) {
	switch s {
	case "none":
		return LogNone, nil
	case "denied":
		return LogDenied, nil
	case "all":
		return LogAll, nil
	}
	return 0, fmt.Errorf("unknown decision log mode %q", s)
}

// Rule is what a range entry stands for, so that events can name it.
type Rule struct {
	Range     netip.Prefix
	Endpoints []string
}

// rules are an id space's rules, by id-1. A large set has a rule for
// each range, and most rules are one endpoint's range: such a rule is kept
// as pointers to that range and name in the configuration (the entry's
// Configured and Endpoints), 16 bytes rather than a Rule's 56. The others
// (several endpoints winning together, classes of narrowed ranges) are
// kept whole. The configuration never changes once parsed, so a rule of
// an earlier generation still reads as it did. An encoding that keeps a
// rule for an equal endpoint of a file parsed again points the rule at
// it (keep): the earlier parse is then garbage, not held for as long as
// the id lives. Generations share the list, so it is read and written
// under the Filter's lock.
type rules struct {
	refs  []ruleRef
	whole map[uint32]Rule // by id, where refs[id-1] is nil
}

type ruleRef struct {
	rng  *netip.Prefix
	name *string
}

func (r *rules) len() int { return len(r.refs) }

// get is rule id.
func (r *rules) get(id uint32) (Rule, bool) {
	if id == 0 || int(id) > len(r.refs) {
		return Rule{}, false
	}
	ref := r.refs[id-1]
	if ref.rng == nil {
		w, ok := r.whole[id]
		return w, ok
	}
	return Rule{Range: *ref.rng, Endpoints: []string{*ref.name}}, true
}

// add gives an entry's (range, endpoints) pair the next id.
func (r *rules) add(ent policy.Entry) uint32 {
	if ent.Configured != nil {
		r.refs = append(r.refs, ruleRef{rng: ent.Configured, name: &ent.Endpoints[0]})
		return uint32(len(r.refs))
	}
	r.refs = append(r.refs, ruleRef{})
	id := uint32(len(r.refs))
	if r.whole == nil {
		r.whole = map[uint32]Rule{}
	}
	r.whole[id] = Rule{Range: ent.Prefix, Endpoints: ent.Endpoints}
	return id
}

// keep reports whether rule id is an entry's range of the entry's
// endpoints, and if so points it at the entry's.
func (r *rules) keep(id uint32, ent policy.Entry) bool {
	ref := &r.refs[id-1]
	if ref.rng == nil {
		w := r.whole[id]
		return w.Range == ent.Prefix && slices.Equal(w.Endpoints, ent.Endpoints)
	}
	if *ref.rng != ent.Prefix || len(ent.Endpoints) != 1 || ent.Endpoints[0] != *ref.name {
		return false
	}
	if ent.Configured != nil {
		*ref = ruleRef{rng: ent.Configured, name: &ent.Endpoints[0]}
	}
	return true
}

type rangeEntry = entry[filterNtfRangeKey, filterNtfRange]

// Contents is a whole policy in the kernel's layout: one slot's worth.
type Contents struct {
	Generation uint32
	Ifaces     map[uint32]filterNtfIface
	Ranges     []rangeEntry
	Owners     []filterNtfOwnerKey
	Rules      rules
	ids        uint32            // the encoder's id space: contents of one space can be diffed
	tableIface map[uint32]string // table id → an interface with that table
	// delta, while Ranges and Owners are nil: they are a change to
	// another encoding's (delta.go), until Mirror applies it.
	delta *contentsChange
}

// entries are the ranges: while they are a change to another encoding's,
// laid out in fresh memory.
func (c *Contents) entries() []rangeEntry {
	if c.delta != nil {
		return c.delta.ranges.applied(c.delta.base.Ranges)
	}
	return c.Ranges
}

// rangeCount is the number of ranges.
func (c *Contents) rangeCount() int {
	if c.delta != nil {
		return c.delta.ranges.n
	}
	return len(c.Ranges)
}

// owners are the owner sets' members: while they are a change to another
// encoding's, laid out in fresh memory.
func (c *Contents) owners() []filterNtfOwnerKey {
	if c.delta != nil {
		return c.delta.owners.applied(c.delta.base.Owners)
	}
	return c.Owners
}

// ownerCount is the number of owner sets' members.
func (c *Contents) ownerCount() int {
	if c.delta != nil {
		return c.delta.owners.n
	}
	return len(c.Owners)
}

// encoder lays out policies in the kernel's layout. It keeps the ids it
// gives tables, rules and owner sets from one policy to the next, so that
// what did not change is encoded the same, and a swap writes only the
// difference into the idle slot: a small change to a large policy is a
// small write.
type encoder struct {
	counters    *counterNames
	ids         uint32            // bumped when the ids are given out afresh
	ifaceTables map[string]uint32 // interface name → its table's id, as last encoded
	nextTable   uint32
	ruleList    rules // appended to until the ids are compacted
	// classRules are the ids of the rules that win classes of narrowed
	// ranges, by range and endpoints. A table's rules need no such map:
	// addTable finds an unchanged entry's id in the table's last encoding,
	// and at 100 000 ranges the map would be a fifth of the encoder.
	classRules map[ruleKey]uint32
	// An owner set is an allow list's uids: the kernel finds the rest of
	// the list (everyone, unowned, cgroups) in the range's value, so
	// lists with the same uids share a set. sets finds a list's set by
	// the hash of its uids: an open-addressed table of set ids, at most
	// three quarters full, each slot with 32 bits of its list's hash
	// (setList says which list is equal). A map of a million hashes took
	// three times the memory, and most of a large set's first encoding;
	// a table kept at most half full took 32 bytes a set at a million.
	sets    []setSlot
	hash    func(uids []uint32) uint64
	setList uidSets // by id-1
	// last is the policy as last encoded, in the same ids: its ranges,
	// sorted by key as the next encoding's are, say what each entry was
	// (its rule, counter and owner set) without a table of their own.
	last *Contents
	// cgroupBits is the bit of each watched cgroup path (cgroupTracker);
	// a path without one matches nothing.
	cgroupBits map[string]uint64
}

type setSlot struct {
	tag uint32 // the top 32 bits of the list's hash
	id  uint32 // 0: empty
}

type ruleKey struct {
	prefix    netip.Prefix
	endpoints string
}

func newEncoder(counters *counterNames) *encoder {
	e := &encoder{counters: counters, hash: hashUIDs(maphash.MakeSeed())}
	e.reset()
	return e
}

func (e *encoder) reset() {
	e.ids++
	e.ifaceTables = map[string]uint32{}
	e.nextTable = 0
	e.classRules = map[ruleKey]uint32{}
	e.ruleList = rules{}
	e.sets = nil
	e.setList = uidSets{}
	e.last = nil
}

// encode lays out a policy for the given interfaces. Interfaces that the
// policy does not filter are left out. Interfaces with the same default and
// endpoints share one table in the kernel, and equal allow lists share one
// owner set. Ids of rules, tables and sets that no policy uses any more are
// only given back by a compaction, when they outnumber the live ones.
func (e *encoder) encode(p *policy.Policy, ifaces []Iface, gen uint32, log LogMode) *Contents {
	return e.encodeAs(p, ifaces, gen, log, false)
}

// encodeChange is encode with the ranges and owners as a change to the
// last encoding's (Contents.delta), where that is laid out to change.
func (e *encoder) encodeChange(p *policy.Policy, ifaces []Iface, gen uint32, log LogMode) *Contents {
	return e.encodeAs(p, ifaces, gen, log, true)
}

func (e *encoder) encodeAs(p *policy.Policy, ifaces []Iface, gen uint32, log LogMode, change bool) *Contents {
	c := e.encodeOnce(p, ifaces, gen, log, change)
	if e.ruleList.len() > 2*c.rangeCount()+4096 || e.setList.len() > 2*c.ownerCount()+4096 || int(e.nextTable) > 2*len(c.Ifaces)+64 {
		e.reset()
		c = e.encodeOnce(p, ifaces, gen, log, false)
	}
	return c
}

func (e *encoder) encodeOnce(p *policy.Policy, ifaces []Iface, gen uint32, log LogMode, change bool) *Contents {
	c := &Contents{Generation: gen, Ifaces: map[uint32]filterNtfIface{}, ids: e.ids, tableIface: map[uint32]string{}}
	// Interfaces with equal tables share one. A table keeps the id it had
	// for its interfaces, so that a changed policy changes only what
	// changed in the kernel.
	groups := map[string][]Iface{}
	for _, ifc := range ifaces {
		if p.Filtered(ifc.Name) {
			k := p.TableKey(ifc.Name)
			groups[k] = append(groups[k], ifc)
		}
	}
	tables := map[uint32]string{} // id → an interface with that table
	for _, k := range slices.Sorted(maps.Keys(groups)) {
		g := groups[k]
		id, ok := e.ifaceTables[g[0].Name]
		if _, taken := tables[id]; !ok || taken {
			id = e.nextTable
			e.nextTable++
		}
		tables[id] = g[0].Name
		c.tableIface[id] = g[0].Name
		for _, ifc := range g {
			e.ifaceTables[ifc.Name] = id
			v := filterNtfIface{Table: id, Generation: gen, L2Len: 14, Log: uint8(log), Counter: e.counters.iface(ifc.Name)}
			if ifc.L3 {
				v.L2Len = 0
			}
			if p.Default(ifc.Name) == policy.Allow {
				v.DefaultAllow = 1
			}
			if p.AuditDefault(ifc.Name) {
				v.Flags |= uint8(filterNtfIfaceFlagsNTF_IFACE_AUDIT)
			}
			if p.DropsSilently(ifc.Name) {
				v.Flags |= uint8(filterNtfIfaceFlagsNTF_IFACE_DROP)
			}
			c.Ifaces[uint32(ifc.Index)] = v
		}
	}
	// Tables in id order, each sorted by prefix (IPv4 first): the ranges
	// come out sorted by key, which lets a swap diff two policies in one
	// pass.
	used := make([]bool, 0, e.setList.len()+1) // by owner set id; a set added on the way grows it
	var last []rangeEntry
	if e.last != nil {
		last = e.last.Ranges
	}
	var sink rangeSink
	var list *rangeList
	var rangeDiffer *differ[rangeEntry]
	change = change && e.last != nil && e.last.delta == nil
	if change {
		rangeDiffer = &differ[rangeEntry]{base: last, compare: compareRanges}
		sink = rangeDiffer
	} else {
		list = &rangeList{}
		sink = list
	}
	var narrowed []narrowedRange
	for _, id := range slices.Sorted(maps.Keys(tables)) {
		entries, bound := p.BoundedEntries(tables[id])
		if list != nil {
			// Sized once: growing a million entries step by step
			// copies them again and again, into fresh pages each time.
			list.entries = slices.Grow(list.entries, bound)
		}
		last, used, narrowed = e.addTable(sink, c, id, entries, bound, used, last, narrowed)
	}
	// The classes of narrowed ranges, behind every table (their table ids
	// have the top bit set), sorted by key like the rest.
	var classes []rangeEntry
	classifiers := map[string]func(netip.Prefix) []policy.Class{}
	for i, n := range narrowed {
		cl, ok := classifiers[n.iface]
		if !ok {
			cl = p.Classifier(n.iface)
			classifiers[n.iface] = cl
		}
		silent := func(w policy.Winners) bool { return p.SilentWinners(n.iface, w) }
		classes, used = e.addClasses(classes, uint32(i+1), cl(n.prefix), silent, used)
	}
	slices.SortFunc(classes, compareRanges)
	for _, r := range classes {
		sink.add(r)
	}
	// In set id order, each set's uids sorted: the owners come out sorted
	// by key.
	if change {
		owners := &differ[filterNtfOwnerKey]{base: e.last.Owners, compare: compareOwners}
		for id, ok := range used {
			if ok {
				for _, uid := range e.setList.at(id - 1) {
					owners.add(filterNtfOwnerKey{Set: uint32(id), Uid: uid})
				}
			}
		}
		c.delta = &contentsChange{base: e.last, ranges: rangeDiffer.finish(), owners: owners.finish()}
	} else {
		c.Ranges = list.entries
		n := 0
		for id, ok := range used {
			if ok {
				n += len(e.setList.at(id - 1))
			}
		}
		c.Owners = make([]filterNtfOwnerKey, 0, n)
		for id, ok := range used {
			if ok {
				for _, uid := range e.setList.at(id - 1) {
					c.Owners = append(c.Owners, filterNtfOwnerKey{Set: uint32(id), Uid: uid})
				}
			}
		}
	}
	c.Rules = e.ruleList
	e.last = c
	return c
}

// addTable encodes the entries of a table (at most bound), and returns
// what is left of the last encoding's ranges after the table's, and the
// owner sets in use so far. The last encoding is walked alongside: an
// entry that did not change finds its rule, counter and owner set there
// without a lookup, which on large policies is most of a reload's
// encoding time.
func (e *encoder) addTable(sink rangeSink, c *Contents, id uint32, entries iter.Seq[policy.Entry], bound int, used []bool, last []rangeEntry, narrowed []narrowedRange) ([]rangeEntry, []bool, []narrowedRange) {
	if len(last) == 0 || last[0].key.Table/2 > id {
		e.ruleList.refs = slices.Grow(e.ruleList.refs, bound) // every entry is a new rule
	}
	for ent := range entries {
		key := rangeKey(id, ent.Prefix)
		for len(last) > 0 && compareRangeKeys(last[0].key, key) < 0 {
			last = last[1:]
		}
		var rule, counter, set uint32
		if len(last) > 0 && last[0].key == key && e.ruleList.keep(last[0].val.Rule, ent) {
			was := last[0].val
			rule, counter = was.Rule, was.Counter
			if was.Flags&uint32(filterNtfRangeFlagsNTF_RANGE_NARROWED) == 0 {
				set = was.Owners // a narrowed range's is its number
			}
		} else {
			rule, counter = e.ruleList.add(ent), e.counters.endpoints(ent.Endpoints)
		}
		switch {
		case len(ent.Principals.UIDs) == 0:
			set = 0
		case set == 0 || !slices.Equal(e.setList.at(int(set)-1), ent.Principals.UIDs):
			set = e.set(ent.Principals.UIDs)
		}
		v := rangeValue(rule, counter, set, ent.Principals)
		v.Cgroups = e.cgroupMask(ent.Principals)
		if ent.Audit {
			v.Flags |= uint32(filterNtfRangeFlagsNTF_RANGE_AUDIT)
		}
		if ent.Silent {
			v.Flags |= uint32(filterNtfRangeFlagsNTF_RANGE_SILENT)
		}
		if ent.Narrowed {
			// The packet's class decides: its id is this range's
			// number among the narrowed ones, in Owners.
			narrowed = append(narrowed, narrowedRange{iface: c.tableIface[id], prefix: ent.Prefix})
			v = filterNtfRange{Rule: rule, Counter: counter, Owners: uint32(len(narrowed)), Flags: uint32(filterNtfRangeFlagsNTF_RANGE_NARROWED)}
		} else {
			used = markUsed(used, set)
		}
		sink.add(rangeEntry{key: key, val: v})
	}
	// The rest of this table's last ranges were left out this time.
	for len(last) > 0 && last[0].key.Table/2 <= id {
		last = last[1:]
	}
	return last, used, narrowed
}

// narrowedRange is a range whose verdict depends on the packet's
// protocol and port: its classes are encoded once every table is.
type narrowedRange struct {
	iface  string // an interface of its table
	prefix netip.Prefix
}

func rangeValue(rule, counter, set uint32, p policy.Principals) filterNtfRange {
	v := filterNtfRange{Rule: rule, Counter: counter, Owners: set}
	if p.Everyone {
		v.Flags |= uint32(filterNtfRangeFlagsNTF_RANGE_EVERYONE)
	}
	if p.Unowned {
		v.Flags |= uint32(filterNtfRangeFlagsNTF_RANGE_UNOWNED)
	}
	return v
}

func markUsed(used []bool, set uint32) []bool {
	if set == 0 {
		return used
	}
	if int(set) >= len(used) {
		used = slices.Grow(used, int(set)+1-len(used))[:set+1]
	}
	used[set] = true
	return used
}

// addClasses encodes the classes of narrowed range number n (1-based) in
// the table NTF_PORTS_TABLE|n of the range trie, keyed by protocol,
// fragment and port (see filter.h): every lookup finds the "every other
// protocol" class at least.
func (e *encoder) addClasses(out []rangeEntry, n uint32, classes []policy.Class, silent func(policy.Winners) bool, used []bool) ([]rangeEntry, []bool) {
	for _, cl := range classes {
		var v filterNtfRange
		if cl.Winners.Prefix.IsValid() {
			w := cl.Winners
			ent := policy.Entry{Prefix: w.Prefix, Endpoints: w.Endpoints, Principals: w.Principals}
			var set uint32
			if len(w.Principals.UIDs) > 0 {
				set = e.set(w.Principals.UIDs)
			}
			used = markUsed(used, set)
			v = rangeValue(e.classRule(ent), e.counters.endpoints(w.Endpoints), set, w.Principals)
			v.Cgroups = e.cgroupMask(w.Principals)
			if w.Audit {
				v.Flags |= uint32(filterNtfRangeFlagsNTF_RANGE_AUDIT)
			}
			if silent(w) {
				v.Flags |= uint32(filterNtfRangeFlagsNTF_RANGE_SILENT)
			}
		} else {
			v = filterNtfRange{Flags: uint32(filterNtfRangeFlagsNTF_RANGE_DEFAULT)}
		}
		for _, k := range classKeys(n, cl) {
			out = append(out, rangeEntry{key: k, val: v})
		}
	}
	return out, used
}

// portsTable is the table id of narrowed range n's classes.
func portsTable(n uint32) uint32 { return uint32(ntfPortsTable) | n }

// classKeys are the trie keys of a class: 32 bits of table, then 8 of
// protocol, 8 of fragment, and a port interval split into prefix blocks
// of the 16 port bits.
func classKeys(n uint32, cl policy.Class) []filterNtfRangeKey {
	k := filterNtfRangeKey{Prefixlen: 32, Table: portsTable(n)}
	switch {
	case cl.Proto == policy.ProtoOther:
		return []filterNtfRangeKey{k}
	case cl.Fragment:
		k.Prefixlen = 48
		k.Addr[0] = uint8(cl.Proto)
		k.Addr[1] = 1
		return []filterNtfRangeKey{k}
	case cl.Hi == 0:
		k.Prefixlen = 40
		k.Addr[0] = uint8(cl.Proto)
		return []filterNtfRangeKey{k}
	}
	var out []filterNtfRangeKey
	for _, b := range portBlocks(cl.Lo, cl.Hi) {
		k := filterNtfRangeKey{Prefixlen: 48 + uint32(b.bits), Table: portsTable(n)}
		k.Addr[0] = uint8(cl.Proto)
		k.Addr[2] = uint8(b.start >> 8)
		k.Addr[3] = uint8(b.start)
		out = append(out, k)
	}
	return out
}

type portBlock struct {
	start uint16
	bits  int // leading bits of the port that the block fixes
}

// portBlocks splits [lo, hi] into the fewest aligned blocks of 2^k ports.
func portBlocks(lo, hi uint16) []portBlock {
	var out []portBlock
	for a := uint32(lo); a <= uint32(hi); {
		size := uint32(1)
		for size < 1<<16 && a%(size*2) == 0 && a+size*2-1 <= uint32(hi) {
			size *= 2
		}
		bits := 16
		for s := size; s > 1; s >>= 1 {
			bits--
		}
		out = append(out, portBlock{start: uint16(a), bits: bits})
		a += size
	}
	return out
}

// cgroupMask is the bits of an allow list's cgroup paths: 0 for most, so
// that the kernel never asks for the socket's cgroup.
func (e *encoder) cgroupMask(p policy.Principals) uint64 {
	var m uint64
	if p.Everyone {
		return 0 // everyone passes anyway
	}
	for _, c := range p.Cgroups() {
		m |= e.cgroupBits[c]
	}
	return m
}

// set gives a uid list its owner set id; an equal list keeps it.
func (e *encoder) set(uids []uint32) uint32 {
	if 4*(e.setList.len()+1) > 3*len(e.sets) {
		e.growSets()
	}
	h := e.hash(uids)
	id, slot := e.findSet(h, uids)
	if id == 0 {
		e.setList.append(uids)
		id = uint32(e.setList.len())
		*slot = setSlot{tag: uint32(h >> 32), id: id}
	}
	return id
}

// findSet returns the id of the set of uids, whose hash is h, or 0 and
// the empty slot where it belongs.
func (e *encoder) findSet(h uint64, uids []uint32) (uint32, *setSlot) {
	mask := uint64(len(e.sets) - 1)
	tag := uint32(h >> 32)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &e.sets[i]
		if s.id == 0 {
			return 0, s
		}
		if s.tag == tag && slices.Equal(e.setList.at(int(s.id)-1), uids) {
			return s.id, nil
		}
	}
}

// growSets makes the table of set ids at most half full, doubling it.
func (e *encoder) growSets() {
	size := 16
	for size < 2*(e.setList.len()+1) {
		size *= 2
	}
	e.sets = make([]setSlot, size)
	for i := range e.setList.len() {
		uids := e.setList.at(i)
		h := e.hash(uids)
		_, slot := e.findSet(h, uids)
		*slot = setSlot{tag: uint32(h >> 32), id: uint32(i + 1)}
	}
}

// hashUIDs is the hash of owner sets under seed.
func hashUIDs(seed maphash.Seed) func([]uint32) uint64 {
	return func(uids []uint32) uint64 {
		var h maphash.Hash
		h.SetSeed(seed)
		var b [4]byte
		for _, u := range uids {
			binary.LittleEndian.PutUint32(b[:], u)
			h.Write(b[:])
		}
		return h.Sum64()
	}
}

func endpointsKey(names []string) string {
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names, "\x00")
}

// classRule gives the winner of a class its id; the same pair keeps it,
// so that an unchanged class is encoded the same.
func (e *encoder) classRule(ent policy.Entry) uint32 {
	k := ruleKey{prefix: ent.Prefix, endpoints: endpointsKey(ent.Endpoints)}
	if id, ok := e.classRules[k]; ok {
		return id
	}
	id := e.ruleList.add(ent)
	e.classRules[k] = id
	return id
}

// compareRangeKeys orders range keys as encode emits them: by table, then
// address, then prefix length.
func compareRangeKeys(a, b filterNtfRangeKey) int {
	return cmp.Or(cmp.Compare(a.Table, b.Table), bytes.Compare(a.Addr[:], b.Addr[:]), cmp.Compare(a.Prefixlen, b.Prefixlen))
}

// compareOwners orders owner set members by set, then uid.
func compareOwners(a, b filterNtfOwnerKey) int {
	return cmp.Or(cmp.Compare(a.Set, b.Set), cmp.Compare(a.Uid, b.Uid))
}

// rangeKey places a prefix in its table: IPv4 in table*2, IPv6 in table*2+1,
// behind the 32 bits of the table id that every lookup matches fully.
func rangeKey(table uint32, p netip.Prefix) filterNtfRangeKey {
	k := filterNtfRangeKey{Prefixlen: 32 + uint32(p.Bits()), Table: table * 2}
	a := p.Addr()
	if a.Is4() {
		b := a.As4()
		copy(k.Addr[:], b[:])
	} else {
		k.Table++
		k.Addr = a.As16()
	}
	return k
}

// ntfPortsTable is NTF_PORTS_TABLE (filter.h): the top bit of a class
// table's id.
const ntfPortsTable = 0x80000000

// uidSets holds the owner sets' uid lists, by id-1, each copied into a
// chunk of uids where it stays until the encoder is reset: 8 bytes and
// its uids a set, where a slice of the policy's uids was 24 bytes (a
// million sets at a million ranges) and held the policy's array. Nothing
// is copied again as sets are added (see blocks); a long list, or one
// past what an offset can reach, is a slice of its own.
type uidSets struct {
	refs   blocks[setRef]
	chunks [][]uint32 // each of uidChunk, filled in turn
	long   [][]uint32
}

// setRef is where a set's uids are: at is their offset in the chunks, one
// chunk after the other, or with setLong the index of their slice in long.
type setRef struct{ at, n uint32 }

const (
	uidChunk = 1 << 16
	setLong  = 1 << 31
)

func (s *uidSets) append(uids []uint32) {
	n := len(uids)
	last := len(s.chunks) - 1
	if last < 0 || len(s.chunks[last])+n > uidChunk {
		last++
	}
	if n > uidChunk/8 || last*uidChunk >= setLong {
		s.long = append(s.long, slices.Clip(slices.Clone(uids)))
		s.refs.append(setRef{at: setLong | uint32(len(s.long)-1), n: uint32(n)})
		return
	}
	if last == len(s.chunks) {
		s.chunks = append(s.chunks, make([]uint32, 0, uidChunk))
	}
	at := last*uidChunk + len(s.chunks[last])
	s.chunks[last] = append(s.chunks[last], uids...)
	s.refs.append(setRef{at: uint32(at), n: uint32(n)})
}

// at is set i's uids; an append to them copies.
func (s *uidSets) at(i int) []uint32 {
	r := s.refs.at(i)
	if r.at&setLong != 0 {
		return s.long[r.at&^setLong]
	}
	c, off := s.chunks[r.at/uidChunk], r.at%uidChunk
	return c[off : off+r.n : off+r.n]
}

func (s *uidSets) len() int { return s.refs.len() }

// blocks is an append-only list kept in blocks of blockLen: it grows by a
// block, never by copying what it holds. The encoder's owner sets are a
// million at a million ranges; as one slice, the reload that added one set
// after a start (which sized it exactly) copied all of them, 24 MB, into
// fresh pages, and append's growth by quarters allocated it five times
// over on the way to a million.
type blocks[T any] struct {
	b [][]T
	n int
}

const blockLen = 4096

func (l *blocks[T]) append(v T) {
	if l.n%blockLen == 0 {
		l.b = append(l.b, make([]T, 0, blockLen))
	}
	last := &l.b[len(l.b)-1]
	*last = append(*last, v)
	l.n++
}

func (l *blocks[T]) at(i int) T { return l.b[i/blockLen][i%blockLen] }

func (l *blocks[T]) len() int { return l.n }
