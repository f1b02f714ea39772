// SPDX-License-Identifier: Apache-2.0

package bpf

import "slices"

// A reload's policy is mostly the last one. Laid out whole, a million
// ranges are 48 MB of fresh memory on every reload (on a VM, a page fault
// each 4 KiB costs more than the rest of the encoding), and their owner
// sets 8 MB more, only to be diffed against the last layout and dropped.
// So the live policy's ranges and owners are encoded as a change to the
// last encoding's: the swap writes the change into the idle slot, Mirror
// into the other, and only then is the last encoding patched in place
// into the new one, when no slot holds it any more.

// contentsChange is a policy's ranges and owners as a change to base's.
type contentsChange struct {
	base   *Contents
	ranges change[rangeEntry]
	owners change[filterNtfOwnerKey]
}

// layOut makes a policy encoded as a change hold its ranges and owners,
// patched in place from the policy before it, which is left with none:
// only once no slot holds that policy any more.
func (c *Contents) layOut() {
	d := c.delta
	if d == nil {
		return
	}
	c.Ranges = d.ranges.applyInPlace(d.base.Ranges)
	c.Owners = d.owners.applyInPlace(d.base.Owners)
	d.base.Ranges, d.base.Owners, c.delta = nil, nil, nil
}

// change is a sorted list of entries as a change to a base's.
type change[E any] struct {
	ops []op[E] // sorted by key
	n   int     // the number of entries once changed
}

// op is one change to the entries: an entry put (inserted, or its value
// updated) or deleted.
type op[E any] struct {
	entry E
	at    int // the index in the base of the entry updated or deleted, or that an insert goes before
	kind  opKind
}

type opKind uint8

const (
	opInsert opKind = iota
	opUpdate
	opDelete
)

// differ turns entries, added in key order, into a change to a base's,
// walking the base's alongside.
type differ[E comparable] struct {
	base    []E
	compare func(a, b E) int // orders the keys
	i       int
	c       change[E]
}

func (d *differ[E]) add(e E) {
	for d.i < len(d.base) && d.compare(d.base[d.i], e) < 0 {
		d.c.ops = append(d.c.ops, op[E]{entry: d.base[d.i], at: d.i, kind: opDelete})
		d.i++
	}
	switch {
	case d.i < len(d.base) && d.compare(d.base[d.i], e) == 0:
		if d.base[d.i] != e {
			d.c.ops = append(d.c.ops, op[E]{entry: e, at: d.i, kind: opUpdate})
		}
		d.i++
	default:
		d.c.ops = append(d.c.ops, op[E]{entry: e, at: d.i, kind: opInsert})
	}
	d.c.n++
}

// finish deletes what is left of the base.
func (d *differ[E]) finish() change[E] {
	for ; d.i < len(d.base); d.i++ {
		d.c.ops = append(d.c.ops, op[E]{entry: d.base[d.i], at: d.i, kind: opDelete})
	}
	return d.c
}

// writes splits a change into what a map write needs: the entries whose
// keys are deleted, and the entries to put.
func (c *change[E]) writes() (gone, put []E) {
	for _, op := range c.ops {
		if op.kind == opDelete {
			gone = append(gone, op.entry)
		} else {
			put = append(put, op.entry)
		}
	}
	return gone, put
}

// applied returns base changed, in fresh memory: base stays as it is.
func (c *change[E]) applied(base []E) []E {
	return c.patch(make([]E, 0, c.n), base)
}

// applyInPlace changes r into the new entries, in its own memory where
// it has room, and returns them; r is not to be used after.
func (c *change[E]) applyInPlace(r []E) []E {
	if c.n > cap(r) {
		return c.patch(make([]E, 0, c.n+c.n/16), r)
	}
	// Deletes and updates first, front to back: what is written never
	// overtakes what is still to be read. Then inserts, back to front,
	// for the same reason.
	w, from := 0, 0
	inserts := 0
	for _, op := range c.ops {
		if op.kind == opInsert {
			inserts++
			continue
		}
		w += copy(r[w:], r[from:op.at])
		from = op.at + 1
		if op.kind == opUpdate {
			r[w] = op.entry
			w++
		}
	}
	w += copy(r[w:], r[from:])
	if inserts == 0 {
		return r[:w]
	}
	// An insert goes before as many of the entries now in r[:w] as the
	// base had before it, less those deleted.
	pos := make([]int, 0, inserts)
	deleted := 0
	for _, op := range c.ops {
		switch op.kind {
		case opDelete:
			deleted++
		case opInsert:
			pos = append(pos, op.at-deleted)
		}
	}
	out := r[:w+inserts]
	end, dst := w, len(out) // out[:end] not moved yet; out[dst:] in place
	k := len(pos) - 1
	for _, op := range slices.Backward(c.ops) {
		if op.kind != opInsert {
			continue
		}
		at := pos[k]
		k--
		n := end - at
		copy(out[dst-n:dst], out[at:end])
		dst -= n + 1
		end = at
		out[dst] = op.entry
	}
	return out
}

// patch appends base, changed, to dst.
func (c *change[E]) patch(dst, base []E) []E {
	from := 0
	for _, op := range c.ops {
		dst = append(dst, base[from:op.at]...)
		from = op.at
		switch op.kind {
		case opInsert:
			dst = append(dst, op.entry)
		case opUpdate:
			dst = append(dst, op.entry)
			from++
		case opDelete:
			from++
		}
	}
	return append(dst, base[from:]...)
}

// compareRanges orders range entries by key.
func compareRanges(a, b rangeEntry) int { return compareRangeKeys(a.key, b.key) }

// rangeSink takes the entries of a policy in key order: laid out whole
// (rangeList), or as a change (differ).
type rangeSink interface {
	add(rangeEntry)
}

type rangeList struct{ entries []rangeEntry }

func (l *rangeList) add(r rangeEntry) { l.entries = append(l.entries, r) }
