// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
)

// UnitResolver finds the cgroup of a systemd unit. A Resolver that also
// implements it resolves the unit: principals of the policies it compiles;
// with one that does not, every unit: principal is Unresolved
// (ErrNoUnitResolver).
type UnitResolver interface {
	// UnitCgroup returns the cgroup path a unit has, or will have once
	// it starts: units that do not exist yet are resolved too (Exists
	// false), so that installing one later just works. An error means
	// the path cannot be known (no systemd).
	UnitCgroup(name string) (UnitCgroup, error)
}

// UnitCgroup is where a unit's processes run.
type UnitCgroup struct {
	Path   string // below the cgroup2 mount: "/system.slice/foo.service"
	Exists bool   // systemd knows the unit now (loaded, or a unit file exists)
}

// Unit is a unit an allow list names, as resolved.
type Unit struct {
	Name string
	UnitCgroup
}

// ErrNoUnitResolver is the error of a unit: principal compiled without a
// way to ask systemd.
var ErrNoUnitResolver = errors.New("cannot be resolved: no systemd to ask (use cgroup:PATH)")

// unitMemo asks a UnitResolver once per unit and compilation.
type unitMemo struct {
	r     UnitResolver
	known map[string]answer[UnitCgroup]
}

func newUnitMemo(r Resolver) *unitMemo {
	u, _ := r.(UnitResolver)
	return &unitMemo{r: u, known: map[string]answer[UnitCgroup]{}}
}

func (m *unitMemo) resolve(cgroups *[]string, name string) error {
	a, ok := m.known[name]
	if !ok {
		if m.r == nil {
			a.err = ErrNoUnitResolver
		} else {
			a.v, a.err = m.r.UnitCgroup(name)
		}
		m.known[name] = a
	}
	if a.err != nil {
		return &lookupError{a.err}
	}
	*cgroups = append(*cgroups, a.v.Path)
	return nil
}

// list is every unit resolved, by name.
func (m *unitMemo) list() []Unit {
	var out []Unit
	for _, name := range slices.Sorted(maps.Keys(m.known)) {
		if a := m.known[name]; a.err == nil {
			out = append(out, Unit{Name: name, UnitCgroup: a.v})
		}
	}
	return out
}

// AbsentUnits are the units that allow lists name which systemd does not
// know now: they match nothing until they appear, which `check` says.
func (p *Policy) AbsentUnits() []Unit {
	var out []Unit
	for _, u := range p.Units {
		if !u.Exists {
			out = append(out, u)
		}
	}
	return out
}

// MaxCgroupPaths is how many distinct cgroup paths (cgroup: and resolved
// unit: principals together) a policy may name: the kernel program keeps
// one bit per path.
const MaxCgroupPaths = 64

// CgroupPaths are the distinct cgroup paths the allow lists name, sorted.
func (p *Policy) CgroupPaths() []string {
	var out []string
	for _, e := range p.Endpoints {
		out = append(out, e.Principals.Cgroups()...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// tooManyCgroups is the error of a policy over MaxCgroupPaths, where the
// first path over it is written.
func (p *Policy) tooManyCgroups(paths []string) config.Error {
	over := paths[MaxCgroupPaths]
	for _, e := range p.Endpoints {
		for _, pr := range e.Allow {
			if (pr.Kind == config.PrincipalCgroup && pr.Name() == over) || (pr.Kind == config.PrincipalUnit && slices.ContainsFunc(p.Units, func(u Unit) bool { return u.Name == pr.Name() && u.Path == over })) {
				return config.Error{Pos: pr.Pos(e.Endpoint), Msg: fmt.Sprintf("allow %q: the policy names %d distinct cgroup paths (unit: and cgroup:); at most %d are supported", pr.Text, len(paths), MaxCgroupPaths)}
			}
		}
	}
	return config.Error{Msg: fmt.Sprintf("the policy names %d distinct cgroup paths (unit: and cgroup:); at most %d are supported", len(paths), MaxCgroupPaths)}
}

// unitWarnings name the units that do not exist now: they match nothing
// until they appear (installing the agent later just works).
func (p *Policy) unitWarnings() []string {
	var warns []string
	for _, u := range p.AbsentUnits() {
		warns = append(warns, fmt.Sprintf("unit %s does not exist now: it matches nothing until it appears (in %s)", u.Name, u.Path))
	}
	return warns
}
