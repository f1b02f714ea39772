// SPDX-License-Identifier: Apache-2.0

package policy

import "fmt"

// MaxStuckLookups is how many NSS lookups a daemon leaves unanswered at
// most (see Limit).
const MaxStuckLookups = 4

// Limit bounds how many lookups through r may be unanswered at once. A
// compilation stops waiting for a hung NSS after LookupBudget, but the
// lookup cannot be cancelled: it stays in the C library, holding a thread,
// until NSS answers. A daemon resolving every 30 s against an NSS that
// never answers would pile up a thread each time; through Limit, a lookup
// while n are unanswered fails at once instead (and its name matches no
// one, as any that NSS does not answer). The daemon keeps one Limit for
// its lifetime.
func Limit(r Resolver, n int) Resolver {
	return limited{r: r, slots: make(chan struct{}, n)}
}

type limited struct {
	r     Resolver
	slots chan struct{} // one per lookup under way
}

func (l limited) User(name string) (uint32, error) {
	return limit(l, func() (uint32, error) { return l.r.User(name) })
}

func (l limited) Group(name string) ([]uint32, error) {
	return limit(l, func() ([]uint32, error) { return l.r.Group(name) })
}

// UnitCgroup passes unit: principals through to r, unlimited: systemd
// answers on its own bus, with a timeout of its own.
func (l limited) UnitCgroup(name string) (UnitCgroup, error) {
	u, ok := l.r.(UnitResolver)
	if !ok {
		return UnitCgroup{}, ErrNoUnitResolver
	}
	return u.UnitCgroup(name)
}

func limit[T any](l limited, lookup func() (T, error)) (T, error) {
	select {
	case l.slots <- struct{}{}:
	default:
		var zero T
		return zero, stuckError{cap(l.slots)}
	}
	defer func() { <-l.slots }()
	return lookup()
}

// stuckError is a lookup not made because earlier ones still wait for NSS.
type stuckError struct{ n int }

func (e stuckError) Error() string {
	return fmt.Sprintf("NSS lookup not attempted: %d earlier lookups are still unanswered", e.n)
}

func (e stuckError) Is(target error) bool { return target == ErrTimeout }
