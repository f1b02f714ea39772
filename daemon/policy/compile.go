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
func Compile(cfg *config.Config, r Resolver) (*Policy, error) {
	p := &Policy{}
	var errs config.Errors
	for _, e := range cfg.Endpoints {
		pe := Endpoint{Name: e.Name, Ifaces: slices.Clone(e.Ifaces), Ranges: slices.Clone(e.Ranges)}
		for _, pr := range e.Allow {
			pe.Allow = append(pe.Allow, pr.Text)
			if err := resolve(&pe.Principals, pr, r); err != nil {
				errs = append(errs, config.Error{Pos: pr.Pos, Msg: err.Error()})
			}
		}
		slices.Sort(pe.Principals.UIDs)
		pe.Principals.UIDs = slices.Compact(pe.Principals.UIDs)
		p.Endpoints = append(p.Endpoints, pe)
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

func resolve(into *Principals, pr config.Principal, r Resolver) error {
	switch pr.Kind {
	case config.PrincipalEveryone:
		into.Everyone = true
	case config.PrincipalUnowned:
		into.Unowned = true
	case config.PrincipalUID:
		into.UIDs = append(into.UIDs, pr.UID)
	case config.PrincipalUser:
		uid, err := r.User(pr.Name)
		if err != nil {
			return fmt.Errorf("allow %q: %w", pr.Text, err)
		}
		into.UIDs = append(into.UIDs, uid)
	case config.PrincipalGroup:
		uids, err := r.Group(pr.Name)
		if err != nil {
			return fmt.Errorf("allow %q: %w", pr.Text, err)
		}
		into.UIDs = append(into.UIDs, uids...)
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
	var pats []string
	for _, s := range p.Interfaces {
		pats = append(pats, s.Pattern)
	}
	for _, e := range p.Endpoints {
		pats = append(pats, e.Ifaces...)
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
