package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

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

// Compile resolves a configuration set into a Policy. Every unresolvable
// principal is reported, positioned where it was written, as config.Errors.
//
// The Policy shares the configuration's slices: neither is ever modified
// once made. Large sets have 100 000 endpoints, and a reload compiles all
// of them: what it allocates per endpoint is what the garbage collector
// then spends the reload's time on.
func Compile(cfg *config.Config, r Resolver) (*Policy, error) {
	p := &Policy{Endpoints: make([]Endpoint, len(cfg.Endpoints))}
	n := 0
	for _, e := range cfg.Endpoints {
		n += len(e.Allow)
	}
	// One array each for every endpoint's allow list and uids; each
	// endpoint's part is clipped, so that an append copies.
	texts := make([]string, 0, n)
	uids := make([]uint32, 0, n)
	var scratch []uint32
	r = &memo{r: r, users: map[string]answer[uint32]{}, groups: map[string]answer[[]uint32]{}}
	var errs config.Errors
	for i, e := range cfg.Endpoints {
		pe := &p.Endpoints[i]
		*pe = Endpoint{Name: e.Name, Ifaces: e.Ifaces, Ranges: e.Ranges}
		start := len(texts)
		scratch = scratch[:0]
		for _, pr := range e.Allow {
			texts = append(texts, pr.Text)
			if err := resolve(&pe.Principals, &scratch, pr, r); err != nil {
				errs = append(errs, config.Error{Pos: pr.Pos, Msg: err.Error()})
			}
		}
		if len(texts) > start {
			pe.Allow = texts[start:len(texts):len(texts)]
		}
		if len(scratch) > 0 {
			slices.Sort(scratch)
			start := len(uids)
			uids = append(uids, slices.Compact(scratch)...)
			pe.Principals.UIDs = uids[start:len(uids):len(uids)]
		}
	}
	for pat, s := range cfg.Interfaces {
		def := s.Default
		if def != config.Allow {
			def = config.Deny // unset means deny, as everywhere
		}
		p.Interfaces = append(p.Interfaces, IfaceSetting{Pattern: pat, Default: def})
	}
	slices.SortFunc(p.Interfaces, func(a, b IfaceSetting) int { return strings.Compare(a.Pattern, b.Pattern) })
	if len(errs) > 0 {
		errs.Sort(cfg.Files)
		return nil, errs
	}
	p.Warnings = p.rootWarnings()
	return p, nil
}

// memo asks a Resolver once per name and compilation: a group that many
// endpoints allow is one NSS lookup, and every endpoint sees the same
// answer.
type memo struct {
	r      Resolver
	users  map[string]answer[uint32]
	groups map[string]answer[[]uint32]
}

type answer[T any] struct {
	v   T
	err error
}

func (m *memo) User(name string) (uint32, error) {
	return ask(m.users, name, m.r.User)
}

func (m *memo) Group(name string) ([]uint32, error) {
	return ask(m.groups, name, m.r.Group)
}

func ask[T any](known map[string]answer[T], name string, lookup func(string) (T, error)) (T, error) {
	a, ok := known[name]
	if !ok {
		a.v, a.err = lookup(name)
		known[name] = a
	}
	return a.v, a.err
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
		uid, err := r.User(pr.Name)
		if err != nil {
			return fmt.Errorf("allow %q: %w", pr.Text, err)
		}
		*uids = append(*uids, uid)
	case config.PrincipalGroup:
		members, err := r.Group(pr.Name)
		if err != nil {
			return fmt.Errorf("allow %q: %w", pr.Text, err)
		}
		*uids = append(*uids, members...)
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
		if p.Default(pat) != config.Deny {
			continue
		}
		var blocked []string
		for _, dst := range kernelDestinations {
			if !p.Decide(pat, Owner{UID: 0}, dst).Allowed {
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
