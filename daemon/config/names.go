// SPDX-License-Identifier: Apache-2.0

package config

import "hash/maphash"

// nameCount counts the endpoint names of the set a Cache merged last, by
// the hash of each name, file by file. A merge must know whether any name
// is given twice (the later endpoint then takes the earlier one's place);
// at a million endpoints, indexing every name again on each reload was a
// third of the reload, in 16 MB of fresh pages. With the count kept, a
// reload counts the names of the files that changed, came or went, and
// when no hash is counted twice, no name is given twice: the endpoints
// are the files' in order. Equal hashes of different names only send the
// merge the long way, which compares the names themselves.
type nameCount struct {
	seed  maphash.Seed
	files map[string][]Endpoint // by path: the endpoints counted
	// slots is an open-addressed set of hashes (0: empty), at most half
	// full; a hash counted more than once has its other counts in extra.
	slots []uint64
	n     int
	extra map[uint64]int
}

// update counts the names of a merge's files (paths[i] is files[i]'s)
// instead of the last merge's, and reports whether no name is given
// twice.
func (c *nameCount) update(files []fileSettings, paths []string) bool {
	if c.files == nil {
		c.seed, c.files, c.extra = maphash.MakeSeed(), map[string][]Endpoint{}, map[uint64]int{}
		total := 0
		for _, f := range files {
			total += len(f.endpoints)
		}
		c.resize(total)
	}
	next := make(map[string][]Endpoint, len(paths))
	for i, path := range paths {
		eps := files[i].endpoints
		next[path] = eps
		old, counted := c.files[path]
		if counted && len(old) == len(eps) && (len(eps) == 0 || &old[0] == &eps[0]) {
			continue // the file parsed to the same endpoints: unchanged
		}
		c.remove(old)
		c.add(eps)
	}
	for path, old := range c.files {
		if _, ok := next[path]; !ok {
			c.remove(old)
		}
	}
	c.files = next
	if c.n < len(c.slots)/8 && len(c.slots) > 1024 {
		c.resize(c.n) // a set that shrank a lot
	}
	return len(c.extra) == 0
}

func (c *nameCount) hash(name string) uint64 {
	h := maphash.String(c.seed, name)
	if h == 0 {
		h = 1 // 0 marks an empty slot
	}
	return h
}

func (c *nameCount) add(eps []Endpoint) {
	for i := range eps {
		if 2*(c.n+1) > len(c.slots) {
			c.resize(2 * (c.n + 1))
		}
		h := c.hash(eps[i].Name)
		s := c.find(h)
		if c.slots[s] == h {
			c.extra[h]++
			continue
		}
		c.slots[s] = h
		c.n++
	}
}

func (c *nameCount) remove(eps []Endpoint) {
	for i := range eps {
		h := c.hash(eps[i].Name)
		if k := c.extra[h]; k > 0 {
			if k == 1 {
				delete(c.extra, h)
			} else {
				c.extra[h] = k - 1
			}
			continue
		}
		s := c.find(h)
		if c.slots[s] != h {
			continue // never counted: cannot be
		}
		c.delete(s)
		c.n--
	}
}

// find returns h's slot, or the empty slot where it belongs.
func (c *nameCount) find(h uint64) uint64 {
	mask := uint64(len(c.slots) - 1)
	i := h & mask
	for c.slots[i] != 0 && c.slots[i] != h {
		i = (i + 1) & mask
	}
	return i
}

// delete empties slot s and moves back the hashes after it that linear
// probing put past it, so that every hash stays reachable from its home
// slot without tombstones.
func (c *nameCount) delete(s uint64) {
	mask := uint64(len(c.slots) - 1)
	for j := (s + 1) & mask; c.slots[j] != 0; j = (j + 1) & mask {
		home := c.slots[j] & mask
		// The hash at j may fill the hole at s unless its home slot
		// lies cyclically in (s, j].
		if (j > s && (home <= s || home > j)) || (j < s && home <= s && home > j) {
			c.slots[s] = c.slots[j]
			s = j
		}
	}
	c.slots[s] = 0
}

// resize makes room for n hashes at most half full, and counts the
// current ones again.
func (c *nameCount) resize(n int) {
	size := 16
	for size < 2*n {
		size *= 2
	}
	old := c.slots
	c.slots = make([]uint64, size)
	for _, h := range old {
		if h != 0 {
			c.slots[c.find(h)] = h
		}
	}
}
