// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
)

// Resolver maps user and group names to uids. The daemon resolves through
// NSS (see NSS) so that LDAP and SSSD accounts work; tests use fixed tables.
type Resolver interface {
	// User returns the uid of a user name.
	User(name string) (uint32, error)
	// Group returns the uids of every member of a group, by primary group
	// and by supplementary membership.
	Group(name string) ([]uint32, error)
}

// ErrUnknown is wrapped by resolvers when a name does not exist.
var ErrUnknown = errors.New("unknown")

// ErrTimeout is wrapped by the error of a name that NSS did not answer
// within LookupBudget.
var ErrTimeout = errors.New("NSS did not answer in time")

// LookupBudget is how long one compilation (Compile, Policy.Resolve) waits
// for NSS, for all of its names together. A hung NSS (sssd or nslcd stuck
// rather than down: their clients wait minutes) must not hold the start,
// whose filter is not attached yet, nor a reload on the daemon's one
// goroutine, which the watchdog would kill: a name not answered in time
// is Unresolved, matches no one, and the daemon resolves it again later.
const LookupBudget = 5 * time.Second

// timeoutError is a name that NSS did not answer within the compilation's
// budget: asked, or not asked at all because an earlier name spent it.
type timeoutError struct {
	budget time.Duration
	asked  bool
}

func (e timeoutError) Error() string {
	if e.asked {
		return fmt.Sprintf("NSS lookup timed out after %s", e.budget)
	}
	return fmt.Sprintf("NSS lookup not attempted: NSS did not answer within %s", e.budget)
}

func (e timeoutError) Is(target error) bool { return target == ErrTimeout }

// Unresolved is a user or group name of an allow list that did not
// resolve: it does not exist (a deleted user, a group not created yet) or
// NSS could not answer (LDAP or SSSD down). The compiled policy lets it
// match no one, so that a name that vanished takes its old uid's access
// with it, and the rest of the set can still be enforced; `check` calls it
// an error all the same.
type Unresolved struct {
	Pos       config.Pos
	Principal string // as written: "carol", "group:imds-readers"
	Err       error  // wraps ErrUnknown when the name does not exist
}

// Missing reports whether NSS said the name does not exist, rather than
// failing to answer.
func (u Unresolved) Missing() bool { return errors.Is(u.Err, ErrUnknown) }

// ConfigError is the problem as `check` reports it, where it was written.
func (u Unresolved) ConfigError() config.Error {
	return config.Error{Pos: u.Pos, Msg: fmt.Sprintf("allow %q: %v", u.Principal, u.Err)}
}

// String says, in one line for a status, what does not resolve, where it
// is written and which of the two failures it is.
func (u Unresolved) String() string {
	why := "does not exist"
	switch {
	case strings.HasPrefix(u.Principal, "unit:"):
		why = u.Err.Error()
	case errors.Is(u.Err, ErrTimeout):
		why = u.Err.Error()
	case !u.Missing():
		why = "NSS lookup failed: " + u.Err.Error()
	}
	return fmt.Sprintf("%s (%s) %s", u.Principal, u.Pos, why)
}

// Compile resolves a configuration set into a Policy. A user or group name
// that does not resolve is no error here: it matches no one, and
// Policy.Unresolved lists it (UnresolvedErrors makes errors of them for
// `check`). Errors are problems no resolver changes, positioned where they
// were written, as config.Errors.
//
// The Policy shares the configuration's slices: neither is ever modified
// once made. Large sets have 100 000 endpoints, and a reload compiles all
// of them: what it allocates per endpoint is what the garbage collector
// then spends the reload's time on.
func Compile(cfg *config.Config, r Resolver) (*Policy, error) {
	return compile(cfg, r, LookupBudget, nil)
}

// CompileAfter is Compile for a set that follows the one prev was compiled
// from (prev may be nil). An endpoint prev compiled from the same
// configured endpoint — the parse cache hands out the same one while its
// file is unchanged — keeps prev's principals when its allow list names
// no user, group or unit, whose resolution could have changed since: at
// a million endpoints, a reload of one drop-in then resolves and allocates
// the principals of that drop-in only. The result is the one Compile
// gives.
func CompileAfter(cfg *config.Config, r Resolver, prev *Policy) (*Policy, error) {
	return compile(cfg, r, LookupBudget, prev)
}

// compile is CompileAfter with budget for NSS.
func compile(cfg *config.Config, r Resolver, budget time.Duration, prev *Policy) (*Policy, error) {
	p := &Policy{Endpoints: make([]Endpoint, len(cfg.Endpoints))}
	// The policy points into the configuration's endpoints, which
	// config.Cache keeps as well: one copy of each for both.
	for i, ep := range cfg.Endpoints {
		p.Endpoints[i] = Endpoint{Endpoint: ep}
	}
	p.patterns = patternsOf(p.Endpoints)
	for pat, s := range cfg.Interfaces {
		def := Deny // unset means deny, as everywhere
		if s.Default == config.Allow {
			def = Allow
		}
		p.Interfaces = append(p.Interfaces, IfaceSetting{Pattern: pat, Default: def, Audit: s.Audit, Drop: s.Deny == config.DenyDrop})
	}
	slices.SortFunc(p.Interfaces, func(a, b IfaceSetting) int { return strings.Compare(a.Pattern, b.Pattern) })
	if errs := p.resolve(r, budget, prev); len(errs) > 0 {
		errs.Sort(cfg.Files)
		return nil, errs
	}
	return p, nil
}

// Resolve resolves the user and group names of a compiled policy again:
// group members in LDAP or SSSD change without a file to watch, and a name
// that did not resolve may resolve now (or one that did may be gone). The
// result shares everything but the allow lists with p, which stays as it
// is; a policy that names no user or group comes back as it is. NSS has
// LookupBudget, as in Compile.
func (p *Policy) Resolve(r Resolver) *Policy {
	return p.resolveWithin(r, LookupBudget)
}

// resolveWithin is Resolve with budget for NSS.
func (p *Policy) resolveWithin(r Resolver, budget time.Duration) *Policy {
	if !p.Named() {
		return p
	}
	q := &Policy{Endpoints: slices.Clone(p.Endpoints), Interfaces: p.Interfaces, patterns: p.patterns}
	// Compile has refused any principal resolve would refuse.
	q.resolve(r, budget, p)
	return q
}

// LookupUser resolves one user name through r as Compile would, waiting
// LookupBudget at most: a name NSS did not answer by then is an error that
// wraps ErrTimeout.
func LookupUser(r Resolver, name string) (uint32, error) {
	m := newMemo(r, LookupBudget)
	defer m.stop()
	return m.User(name)
}

// Named reports whether the policy names users or groups, whose uids NSS
// may change.
func (p *Policy) Named() bool {
	for _, e := range p.Endpoints {
		for _, pr := range e.Allow {
			// A unit's cgroup path can change too (Slice=, a unit
			// installed later).
			if pr.Kind == config.PrincipalUser || pr.Kind == config.PrincipalGroup || pr.Kind == config.PrincipalUnit {
				return true
			}
		}
	}
	return false
}

// UnresolvedErrors are the names that did not resolve as errors, as
// `check` reports them.
func (p *Policy) UnresolvedErrors() config.Errors {
	var errs config.Errors
	for _, u := range p.Unresolved {
		errs = append(errs, u.ConfigError())
	}
	return errs
}

// resolve fills the endpoints' Principals from their allow lists as
// written, and Unresolved and Warnings; it returns the principals no
// resolver can make sense of. NSS has budget for all of the names. An
// endpoint prev compiled from the same configured endpoint keeps prev's
// principals when resolving its allow list asks no resolver.
func (p *Policy) resolve(r Resolver, budget time.Duration, prev *Policy) config.Errors {
	kept := newKeeper(prev)
	n, fresh := 0, 0
	for i := range p.Endpoints {
		pe := &p.Endpoints[i]
		pe.Principals = nil
		if literal(pe.Allow) {
			pe.Principals = kept.principals(i, pe.Endpoint)
		}
		if pe.Principals == nil {
			n += len(pe.Allow)
			fresh++
		}
	}
	// One array for the new principals and one for their uids; each
	// endpoint's part of the uids is clipped, so that an append copies.
	made := make([]Principals, 0, fresh)
	uids := make([]uint32, 0, n)
	var scratch []uint32
	units := newUnitMemo(r) // before r is wrapped: r may be a UnitResolver
	m := newMemo(r, budget)
	defer m.stop()
	r = m
	var errs config.Errors
	p.Unresolved = nil
	p.Units = nil
	for i := range p.Endpoints {
		pe := &p.Endpoints[i]
		if pe.Principals != nil {
			continue
		}
		made = append(made, Principals{})
		into := &made[len(made)-1]
		scratch = scratch[:0]
		var cgroups []string
		for _, pr := range pe.Allow {
			var err error
			switch pr.Kind {
			case config.PrincipalCgroup:
				cgroups = append(cgroups, pr.Name())
			case config.PrincipalUnit:
				err = units.resolve(&cgroups, pr.Name())
			default:
				err = resolve(into, &scratch, pr, r)
			}
			if err != nil {
				p.noteResolveError(&errs, pr.Pos(pe.Endpoint), pr, err)
			}
		}
		into.setCgroups(cgroups)
		if len(scratch) > 0 {
			slices.Sort(scratch)
			start := len(uids)
			uids = append(uids, slices.Compact(scratch)...)
			into.UIDs = uids[start:len(uids):len(uids)]
		}
		pe.Principals = into
	}
	p.Units = units.list()
	if paths := p.CgroupPaths(); len(paths) > MaxCgroupPaths {
		errs = append(errs, p.tooManyCgroups(paths))
	}
	p.Warnings = slices.Concat(p.rootWarnings(), p.familyWarnings(), p.auditWarnings(), p.unitWarnings())
	return errs
}

// literal reports whether an allow list resolves without a resolver: uids,
// "*", "unowned" and cgroup paths, which mean the same at every
// compilation.
func literal(allow []config.Principal) bool {
	for _, pr := range allow {
		switch pr.Kind {
		case config.PrincipalUID, config.PrincipalEveryone, config.PrincipalUnowned, config.PrincipalCgroup:
		default:
			return false
		}
	}
	return true
}

// keeper finds, for the endpoints of a new compilation in order, the
// principals an earlier one (prev) compiled from the same configured
// endpoint. A reload's endpoints are mostly prev's, in prev's order, with
// a changed drop-in's in the middle: the endpoint at i is looked for at
// i+shift in prev, shift being where the last one was found, and a
// drop-in's first endpoint where prev had that drop-in's first endpoint,
// which finds the shift again after a drop-in that grew or shrank. It
// only ever answers with principals compiled from the very endpoint
// asked about; one it does not find is resolved again.
type keeper struct {
	prev  []Endpoint
	first map[string]int // a file's first endpoint in prev; nil until a miss
	shift int
}

func newKeeper(prev *Policy) *keeper {
	k := &keeper{}
	if prev != nil {
		k.prev = prev.Endpoints
	}
	return k
}

// indexFiles finds each file's first endpoint in prev: when one is first
// looked for, as a reload that changed nothing (names resolved again)
// never does.
func (k *keeper) indexFiles() {
	k.first = map[string]int{}
	for i, e := range k.prev {
		if i == 0 || e.Pos().File != k.prev[i-1].Pos().File {
			if _, ok := k.first[e.Pos().File]; !ok {
				k.first[e.Pos().File] = i
			}
		}
	}
}

// principals are prev's principals of ep, the i-th endpoint, or nil.
func (k *keeper) principals(i int, ep *config.Endpoint) *Principals {
	if k.prev == nil {
		return nil
	}
	if j := i + k.shift; j >= 0 && j < len(k.prev) && k.prev[j].Endpoint == ep {
		return k.prev[j].Principals
	}
	if k.first == nil {
		k.indexFiles()
	}
	if j, ok := k.first[ep.Pos().File]; ok && k.prev[j].Endpoint == ep {
		k.shift = j - i
		return k.prev[j].Principals
	}
	return nil
}

// lookupError is a name NSS did not resolve, as opposed to a principal
// that makes no sense.
type lookupError struct{ err error }

func (e *lookupError) Error() string { return e.err.Error() }

// memo asks a Resolver once per name and compilation: a group that many
// endpoints allow is one NSS lookup, and every endpoint sees the same
// answer. It waits for NSS up to the compilation's budget: a lookup stuck
// in the C library cannot be cancelled, so each runs on a goroutine of its
// own, which is left behind when the budget is spent. Once it is, the
// names not asked yet fail at once: a compilation leaves at most one
// lookup behind, however many names a hung NSS would never answer.
type memo struct {
	r       Resolver
	budget  time.Duration
	timer   *time.Timer
	expired bool // the budget is spent
	users   map[string]answer[uint32]
	groups  map[string]answer[[]uint32]
}

type answer[T any] struct {
	v   T
	err error
}

func newMemo(r Resolver, budget time.Duration) *memo {
	return &memo{
		r: r, budget: budget, timer: time.NewTimer(budget),
		users: map[string]answer[uint32]{}, groups: map[string]answer[[]uint32]{},
	}
}

func (m *memo) stop() { m.timer.Stop() }

func (m *memo) User(name string) (uint32, error) {
	return ask(m, m.users, name, m.r.User)
}

func (m *memo) Group(name string) ([]uint32, error) {
	return ask(m, m.groups, name, m.r.Group)
}

func ask[T any](m *memo, known map[string]answer[T], name string, lookup func(string) (T, error)) (T, error) {
	a, ok := known[name]
	if ok {
		return a.v, a.err
	}
	if m.expired {
		a.err = timeoutError{budget: m.budget}
	} else {
		// Buffered: a lookup that answers after the budget is spent
		// ends instead of waiting for a reader forever.
		got := make(chan answer[T], 1)
		go func() {
			var a answer[T]
			a.v, a.err = lookup(name)
			got <- a
		}()
		select {
		case a = <-got:
		case <-m.timer.C:
			m.expired = true
			a = answer[T]{err: timeoutError{budget: m.budget, asked: true}}
		}
	}
	known[name] = a
	return a.v, a.err
}

// noteResolveError records why pr did not resolve: a name NSS did not
// find (or answer) in Unresolved, anything else in errs. Apart from the
// loop of resolve so that the loop allocates nothing per principal (the
// target errors.As is given escapes).
func (p *Policy) noteResolveError(errs *config.Errors, at config.Pos, pr config.Principal, err error) {
	var lookup *lookupError
	if errors.As(err, &lookup) {
		p.Unresolved = append(p.Unresolved, Unresolved{Pos: at, Principal: pr.Text, Err: lookup.err})
		return
	}
	*errs = append(*errs, config.Error{Pos: at, Msg: err.Error()})
}

func resolve(into *Principals, uids *[]uint32, pr config.Principal, r Resolver) error {
	switch pr.Kind {
	case config.PrincipalEveryone:
		into.Everyone = true
	case config.PrincipalUnowned:
		into.Unowned = true
	case config.PrincipalUID:
		*uids = append(*uids, pr.UID)
	case config.PrincipalUser:
		uid, err := r.User(pr.Name())
		if err != nil {
			return &lookupError{err}
		}
		if uid >= config.UnknownUID {
			// The kernel gives this uid to an owner it could not read
			// (or it is no uid at all): NSS naming it matches no one.
			return &lookupError{fmt.Errorf("NSS says uid %d, which is reserved for an owner the kernel could not read", uid)}
		}
		*uids = append(*uids, uid)
	case config.PrincipalGroup:
		members, err := r.Group(pr.Name())
		if err != nil {
			return &lookupError{err}
		}
		for _, uid := range members {
			if uid < config.UnknownUID { // see PrincipalUser
				*uids = append(*uids, uid)
			}
		}
	default:
		return fmt.Errorf("allow %q: unsupported principal", pr.Text)
	}
	return nil
}

// The kernel answers neighbour solicitations, sends ICMP errors and TCP
// resets on sockets owned by root. Where the default is deny and root may
// not reach these, IPv6 stops working on the interface.
var kernelDestinations = []netip.Addr{
	netip.MustParseAddr("ff02::1:ff00:1"), // solicited-node multicast
	netip.MustParseAddr("fe80::1"),        // link-local neighbours and routers
}

func (p *Policy) rootWarnings() []string {
	pats := p.endpointPatterns()
	for _, s := range p.Interfaces {
		pats = append(pats, s.Pattern)
	}
	slices.Sort(pats)
	pats = slices.Compact(pats)
	var warns []string
	for _, pat := range pats {
		if p.Default(pat) != Deny {
			continue
		}
		var blocked []string
		for _, dst := range kernelDestinations {
			// Neighbour discovery is ICMPv6, whatever else the
			// range is narrowed to.
			if !p.DecidePacket(pat, Owner{UID: 0}, Packet{Dst: dst, Proto: config.ProtoICMPv6}).Allowed {
				blocked = append(blocked, dst.String())
			}
		}
		if len(blocked) > 0 {
			warns = append(warns, fmt.Sprintf(
				"interface %s: default deny and root (uid 0) may not reach %s: the kernel sends IPv6 neighbour discovery, ICMP errors and TCP resets as root, so IPv6 will break there; allow root to fe80::/10 and ff02::/16, or set default: allow",
				pat, strings.Join(blocked, ", ")))
		}
	}
	return warns
}

// familyWarnings names endpoints whose proto list has an ICMP of one
// family only while their ranges are all of the other: such an endpoint
// never applies to an ICMP packet, which is rarely what was meant.
func (p *Policy) familyWarnings() []string {
	var warns []string
	for _, e := range p.Endpoints {
		if len(e.Protos()) == 0 {
			continue
		}
		v4, v6 := false, false
		for _, r := range e.Ranges {
			v4 = v4 || r.Addr().Is4()
			v6 = v6 || !r.Addr().Is4()
		}
		if slices.Contains(e.Protos(), config.ProtoICMP) && !v4 {
			warns = append(warns, fmt.Sprintf("endpoint %s: proto icmp never matches its IPv6 ranges (ICMP for IPv6 is icmpv6)", e.Name))
		}
		if slices.Contains(e.Protos(), config.ProtoICMPv6) && !v6 {
			warns = append(warns, fmt.Sprintf("endpoint %s: proto icmpv6 never matches its IPv4 ranges (ICMP for IPv4 is icmp)", e.Name))
		}
	}
	return warns
}

// auditWarnings names interfaces whose `mode: audit` does nothing: with an
// allow default there is no default drop to audit.
func (p *Policy) auditWarnings() []string {
	var warns []string
	for _, s := range p.Interfaces {
		if s.Audit && s.Default == Allow {
			warns = append(warns, fmt.Sprintf("interface %s: mode: audit has no effect: its default is allow (the mode of an interface audits its deny default only; set mode: audit on endpoints to audit them)", s.Pattern))
		}
	}
	return warns
}
