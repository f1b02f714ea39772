// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"testing"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
)

// TestOwnerSetTable: thousands of lists through the table of set ids, as
// it grows, with hashes that spread and hashes that collide: an equal
// list always finds its id, a different one never does, and the table is
// never more than three quarters full, nor larger than four slots a set
// (it is 8 bytes a slot, and a large set has a set per range).
func TestOwnerSetTable(t *testing.T) {
	for _, tt := range []struct {
		name string
		hash func([]uint32) uint64
	}{
		{"maphash", nil},
		// Three hashes in all; the top bits (the slots' tags) equal.
		{"few hashes", func(u []uint32) uint64 { return uint64(u[0] % 3) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEncoder(newCounterNames(16))
			if tt.hash != nil {
				e.hash = tt.hash
			}
			n := 9000 // past two of the list's blocks
			if tt.hash != nil {
				n = 300 // every lookup walks a third of the lists
			}
			list := func(i int) []uint32 { return []uint32{uint32(i), uint32(i * 7)} }
			ids := map[uint32]int{}
			for i := range n {
				id := e.set(list(i))
				if j, dup := ids[id]; dup {
					t.Fatalf("lists %d and %d share set %d", j, i, id)
				}
				ids[id] = i
				if 4*e.setList.len() > 3*len(e.sets) || len(e.sets) > 16 && len(e.sets) > 4*e.setList.len() {
					t.Fatalf("%d sets in a table of %d", e.setList.len(), len(e.sets))
				}
			}
			for i := range n {
				if id := e.set(slices.Clone(list(i))); ids[id] != i {
					t.Fatalf("list %d again: set %d, which is list %d's", i, id, ids[id])
				}
			}
			if e.setList.len() != n {
				t.Errorf("%d sets for %d lists", e.setList.len(), n)
			}
		})
	}
}

// TestOwnerSets: allow lists with the same uids share one owner set, what
// else they allow (everyone, cgroups) being the range's; lists with other
// uids get sets of their own, also when every list's hash collides (the
// encoder probes past a taken hash); a list without uids has none; and a
// reload keeps the ids of the sets that did not change.
func TestOwnerSets(t *testing.T) {
	eps := []ep{
		{name: "a", ifaces: []string{"lo"}, ranges: []string{"10.1.0.0/16"}, allow: []string{"uid:1", "uid:2"}},
		{name: "b", ifaces: []string{"lo"}, ranges: []string{"10.2.0.0/16"}, allow: []string{"uid:2", "cgroup:/t", "uid:1"}},
		{name: "c", ifaces: []string{"lo"}, ranges: []string{"10.3.0.0/16"}, allow: []string{"*", "uid:1", "uid:2"}},
		{name: "d", ifaces: []string{"lo"}, ranges: []string{"10.4.0.0/16"}, allow: []string{"uid:3"}},
		{name: "e", ifaces: []string{"lo"}, ranges: []string{"10.5.0.0/16"}, allow: []string{"cgroup:/t"}},
		{name: "f", ifaces: []string{"lo"}, ranges: []string{"10.6.0.0/16"}, allow: []string{"uid:1", "uid:2", "uid:3"}},
	}
	defaults := map[string]config.Action{"lo": config.Deny}
	ifaces := []Iface{{Name: "lo", Index: 1}}
	for _, tt := range []struct {
		name string
		hash func([]uint32) uint64
	}{
		{"maphash", nil},
		{"every hash collides", func([]uint32) uint64 { return 7 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEncoder(newCounterNames(4096))
			if tt.hash != nil {
				e.hash = tt.hash
			}
			// sets returns each endpoint's owner set, and checks the
			// owner entries: each set holds its endpoints' uids.
			sets := func(c *Contents, uidsOf map[string][]uint32) map[string]uint32 {
				t.Helper()
				out := map[string]uint32{}
				for _, r := range c.Ranges {
					for _, x := range eps {
						if keyPrefix(r.key) == netip.MustParsePrefix(x.ranges[0]) {
							out[x.name] = r.val.Owners
						}
					}
				}
				uids := map[uint32][]uint32{}
				for _, o := range c.Owners {
					uids[o.Set] = append(uids[o.Set], o.Uid)
				}
				want := map[uint32][]uint32{}
				for name, u := range uidsOf {
					want[out[name]] = u
				}
				if !maps.EqualFunc(uids, want, slices.Equal) {
					t.Errorf("owner entries %v, want %v", uids, want)
				}
				return out
			}
			first := sets(e.encode(compile(t, defaults, eps...), ifaces, 1, LogNone),
				map[string][]uint32{"a": {1, 2}, "b": {1, 2}, "c": {1, 2}, "d": {3}, "f": {1, 2, 3}})
			if first["a"] == 0 || first["b"] != first["a"] || first["c"] != first["a"] {
				t.Errorf("a, b and c allow uids 1 and 2 but have sets %d, %d, %d", first["a"], first["b"], first["c"])
			}
			if first["d"] == 0 || first["f"] == 0 || first["d"] == first["a"] || first["f"] == first["a"] || first["f"] == first["d"] {
				t.Errorf("a, d and f allow other uids but have sets %d, %d, %d", first["a"], first["d"], first["f"])
			}
			if first["e"] != 0 {
				t.Errorf("e allows no uid but has set %d", first["e"])
			}
			// d now allows what a does; f's list is unchanged.
			changed := slices.Clone(eps)
			changed[3].allow = []string{"uid:1", "uid:2"}
			changed[5].allow = []string{"uid:3", "uid:1", "uid:2"}
			second := sets(e.encode(compile(t, defaults, changed...), ifaces, 2, LogNone),
				map[string][]uint32{"a": {1, 2}, "b": {1, 2}, "c": {1, 2}, "d": {1, 2}, "f": {1, 2, 3}})
			if second["d"] != first["a"] || second["a"] != first["a"] || second["f"] != first["f"] {
				t.Errorf("after the reload: sets %v, want d to share a's %d and a and f to keep theirs (%v before)", second, first["a"], first)
			}
		})
	}
}

// TestEncodeKeepsIDs edits a policy of two tables, IPv4 and IPv6, step by
// step as reloads do, encoding each with the same encoder: every entry
// whose range, endpoints and owners did not change is encoded exactly as
// before (its rule id, counter and owner set kept), so that a swap writes
// only what changed; every rule id names its range and endpoints.
func TestEncodeKeepsIDs(t *testing.T) {
	rng := seededRand(t)
	defaults := map[string]config.Action{"lo": config.Deny, "eth0": config.Allow}
	ifaces := []Iface{{Name: "lo", Index: 1}, {Name: "eth0", Index: 2}}
	who := []string{"uid:0", "uid:1001", "uid:1002", "*", "unowned"}
	where := [][]string{{"lo"}, {"eth0"}, {"lo", "eth0"}}
	var eps []ep
	for i := range 40 {
		e := ep{name: fmt.Sprintf("e%02d", i), ifaces: where[rng.IntN(3)], allow: []string{who[rng.IntN(len(who))]}}
		for range 1 + rng.IntN(4) {
			e.ranges = append(e.ranges, randomRange(rng))
		}
		eps = append(eps, e)
	}
	enc := newEncoder(newCounterNames(4096))
	// What an entry stands for, apart from its ids.
	meaning := func(c *Contents, r rangeEntry) string {
		rule, ok := c.Rules.get(r.val.Rule)
		if !ok || !c.Rules.keep(r.val.Rule, policy.Entry{Prefix: rule.Range, Endpoints: rule.Endpoints}) || rangeKey(r.key.Table/2, rule.Range) != r.key {
			t.Fatalf("rule %d (%v) does not name the range of key %+v", r.val.Rule, rule, r.key)
		}
		var uids []uint32
		if r.val.Owners != 0 {
			uids = enc.setList.at(int(r.val.Owners) - 1)
		}
		return fmt.Sprint(rule.Range, rule.Endpoints, uids, r.val.Flags)
	}
	last := enc.encode(compile(t, defaults, eps...), ifaces, 1, LogNone)
	kept, changed := 0, 0
	for step := range 60 {
		switch step % 4 {
		case 0:
			e := &eps[rng.IntN(len(eps))]
			e.ranges = append(slices.Clip(e.ranges), randomRange(rng))
		case 1:
			if e := &eps[rng.IntN(len(eps))]; len(e.ranges) > 1 {
				e.ranges = e.ranges[1:]
			}
		case 2:
			eps[rng.IntN(len(eps))].allow = []string{who[rng.IntN(len(who))], who[rng.IntN(len(who))]}
		case 3:
			eps[rng.IntN(len(eps))].ifaces = where[rng.IntN(3)]
		}
		c := enc.encode(compile(t, defaults, eps...), ifaces, uint32(step+2), LogNone)
		if c.ids != last.ids {
			last = c // compacted: ids given out afresh
			continue
		}
		before := map[filterNtfRangeKey]rangeEntry{}
		for _, r := range last.Ranges {
			before[r.key] = r
		}
		for _, r := range c.Ranges {
			was, ok := before[r.key]
			if !ok || meaning(last, was) != meaning(c, r) {
				changed++
				continue
			}
			if was.val != r.val {
				t.Fatalf("step %d: %+v unchanged, but encoded %+v, was %+v", step, r.key, r.val, was.val)
			}
			kept++
		}
		last = c
	}
	t.Logf("%d entries kept, %d changed", kept, changed)
	if kept == 0 || changed == 0 {
		t.Errorf("%d entries kept, %d changed: the edits did not exercise both", kept, changed)
	}
}

// TestReloadsAddingRulesKeepNoMemory: ten reloads, each adding an endpoint
// to 100 000, keep no more memory than the one before them. A rule keeps
// the list of its endpoints' names: when the entries' lists were slices of
// one array as large as the policy, each reload's new rule kept that
// reload's array of 1.6 MB alive.
func TestReloadsAddingRulesKeepNoMemory(t *testing.T) {
	const n = 100_000
	defaults := map[string]config.Action{"lo": config.Deny}
	ifaces := []Iface{{Name: "lo", Index: 1}}
	eps := make([]ep, n, n+11)
	for i := range eps {
		eps[i] = ep{name: fmt.Sprintf("r%d", i), ifaces: []string{"lo"},
			ranges: []string{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 14), byte(i >> 6), byte(i << 2)}), 30).String()},
			allow:  []string{"uid:1"}}
	}
	e := newEncoder(newCounterNames(16))
	e.encode(compile(t, defaults, eps...), ifaces, 1, LogNone)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	reload := func(i int) {
		eps = append(eps, ep{name: fmt.Sprintf("new%d", i), ifaces: []string{"lo"}, ranges: []string{fmt.Sprintf("192.168.%d.0/24", i)}, allow: []string{"uid:2"}})
		e.encode(compile(t, defaults, eps...), ifaces, uint32(i+2), LogNone)
	}
	// After the first, the start's rule list has grown once.
	reload(0)
	before := heap()
	for i := 1; i <= 10; i++ {
		reload(i)
	}
	// The policies compiled are garbage; the encoder's last encoding,
	// its rule list and sets stay.
	grew := int64(heap()) - int64(before)
	runtime.KeepAlive(e)
	runtime.KeepAlive(eps)
	t.Logf("the heap grew %.1f MB", float64(grew)/(1<<20))
	if grew > 6<<20 {
		t.Errorf("ten reloads that each add a rule kept %.1f MB more", float64(grew)/(1<<20))
	}
}

// TestRulesFollowTheLiveEndpoints: a rule that is one endpoint's range is
// kept as that endpoint, and an encoding of the same set parsed again
// (new endpoint objects, equal) keeps the rule's id but points it at the
// new endpoint, so that the old parse is not held for as long as the id
// lives; a rule an earlier generation gave out still reads as it did.
// Ranges of several endpoints are kept whole.
func TestRulesFollowTheLiveEndpoints(t *testing.T) {
	defaults := map[string]config.Action{"lo": config.Deny}
	ifaces := []Iface{{Name: "lo", Index: 1}}
	eps := []ep{
		{"a", []string{"lo"}, []string{"10.0.0.0/8", "fd00::/64"}, []string{"alice"}},
		{"b", []string{"lo"}, []string{"10.1.0.0/16"}, []string{"bob"}},
		{"c", []string{"lo"}, []string{"10.1.0.0/16", "10.2.0.0/16"}, nil},
	}
	e := newEncoder(newCounterNames(16))
	read := func(c *Contents) map[filterNtfRangeKey]string {
		t.Helper()
		out := map[filterNtfRangeKey]string{}
		for _, r := range c.Ranges {
			rule, ok := c.Rules.get(r.val.Rule)
			if !ok || rangeKey(r.key.Table/2, rule.Range) != r.key {
				t.Fatalf("rule %d (%v) does not name the range of key %+v", r.val.Rule, rule, r.key)
			}
			out[r.key] = fmt.Sprint(r.val.Rule, rule.Range, rule.Endpoints)
		}
		return out
	}
	p1 := compile(t, defaults, eps...)
	c1 := e.encode(p1, ifaces, 1, LogNone)
	first := read(c1)
	if len(first) != 4 || len(c1.Rules.whole) != 1 {
		t.Fatalf("%d ranges, %d rules kept whole (want 4, 1: 10.1.0.0/16 of b and c): %v", len(first), len(c1.Rules.whole), first)
	}
	p2 := compile(t, defaults, eps...)
	c2 := e.encode(p2, ifaces, 2, LogNone)
	if got := read(c2); !maps.Equal(got, first) {
		t.Errorf("the same set parsed again encodes\n%v\nwant the same ids and rules\n%v", got, first)
	}
	if got := read(c1); !maps.Equal(got, first) {
		t.Errorf("generation 1's rules now read\n%v\nwant\n%v", got, first)
	}
	names, ranges := map[*string]bool{}, map[*netip.Prefix]bool{}
	for _, pe := range p2.Endpoints {
		names[&pe.Name] = true
		for i := range pe.Ranges {
			ranges[&pe.Ranges[i]] = true
		}
	}
	for id, ref := range c2.Rules.refs {
		if ref.rng != nil && (!names[ref.name] || !ranges[ref.rng]) {
			t.Errorf("rule %d still points at %q of the earlier parse", id+1, *ref.name)
		}
	}
}

// TestUIDSets: owner sets' uids come back as they went in, however long,
// across chunks; each is a copy (the policy's array is not held), and an
// append to one copies rather than writing over the next.
func TestUIDSets(t *testing.T) {
	var s uidSets
	r := rand.New(rand.NewPCG(1, 2))
	var want [][]uint32
	for i := range 40_000 {
		n := 1 + r.IntN(8)
		switch {
		case i%1000 == 0:
			n = uidChunk/8 + 1 // a long list: a slice of its own
		case i%997 == 0:
			n = uidChunk / 8 // the longest that goes in a chunk
		}
		uids := make([]uint32, n)
		for j := range uids {
			uids[j] = r.Uint32()
		}
		s.append(uids)
		want = append(want, slices.Clone(uids))
		uids[0]++ // the caller's array is its own
	}
	if s.len() != len(want) {
		t.Fatalf("%d sets, want %d", s.len(), len(want))
	}
	for i, w := range want {
		got := s.at(i)
		if !slices.Equal(got, w) {
			t.Fatalf("set %d (%d uids): not the %d uids put in", i, len(got), len(w))
		}
		if cap(got) != len(got) {
			t.Fatalf("set %d: cap %d, len %d: an append would write over the next", i, cap(got), len(got))
		}
	}
	if len(s.long) != 40 {
		t.Errorf("%d long lists, want 40", len(s.long))
	}
	// Chunks are filled: at most the longest list that goes in one is
	// left unused at the end of each.
	total := 0
	for _, w := range want {
		if len(w) <= uidChunk/8 {
			total += len(w)
		}
	}
	if len(s.chunks) > total/(uidChunk-uidChunk/8)+1 {
		t.Errorf("%d chunks for %d uids", len(s.chunks), total)
	}
}
