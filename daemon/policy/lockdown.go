// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"fmt"
	"slices"
	"strings"
)

// HostWarnings are the warnings that depend on the interfaces of the host
// (host: the names of all of them, as the daemon or the CLI lists them;
// order and repeats do not matter), SPEC §2: every filtered interface whose
// default is deny, in plain words (what stays reachable, for whom, and the
// line that restricts only the listed ranges instead), and every endpoint
// iface that matches no interface of the host. Interfaces with the same
// table and the same governing `interfaces:` key share one warning, so
// that a glob over a hundred interfaces is one line, not a hundred.
//
// They follow from the policy and the set of interfaces it filters alone:
// a pattern matches some interface of the host exactly when it matches a
// filtered one. So they change only when that set does, and the daemon
// recomputes them only then.
//
// Large sets name the same few patterns in 100 000 endpoints: interfaces
// are matched against the distinct patterns, and the endpoints are walked
// once per warning at most, never once per interface.
func (p *Policy) HostWarnings(host []string) []string {
	names := slices.Clone(host)
	slices.Sort(names)
	names = slices.Compact(names)
	pats := p.endpointPatterns()
	return slices.Concat(p.lockdownWarnings(names, pats), p.unmatchedWarnings(names, pats))
}

// shown caps the lists a warning spells out: a warning is a sentence,
// and `check` prints the whole policy for whoever wants all of it.
const shown = 3

// lockdownWarnings: one per group of deny-default interfaces.
func (p *Policy) lockdownWarnings(names, pats []string) []string {
	type group struct {
		ifaces  []string
		setting IfaceSetting
		set     bool     // an `interfaces:` key says deny; else no key matches
		pats    []string // the endpoint patterns that match the interfaces
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, name := range names {
		// Filtered and Default, from the distinct patterns.
		s, set := p.setting(name)
		var matched []string
		for _, pat := range pats {
			if MatchIface(pat, name) {
				matched = append(matched, pat)
			}
		}
		if (!set && len(matched) == 0) || (set && s.Default != Deny) {
			continue
		}
		// Interfaces matched by the same patterns have the same
		// endpoints, as TableKey says.
		key := s.Pattern + "\x00" + strings.Join(matched, "\x00")
		g := byKey[key]
		if g == nil {
			g = &group{setting: s, set: set, pats: matched}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.ifaces = append(g.ifaces, name)
	}
	warns := make([]string, 0, len(groups))
	for _, g := range groups {
		subject, there := "interface "+g.ifaces[0]+" is", "on it"
		if len(g.ifaces) > 1 {
			subject, there = "interfaces "+list(g.ifaces, "interfaces")+" are", "on them"
		}
		why := "no interfaces: entry sets its default, and deny is the default"
		fixKey := `"*"`
		if len(g.ifaces) == 1 {
			fixKey = fmt.Sprintf("%q", g.ifaces[0])
		}
		if g.set {
			why = fmt.Sprintf("interfaces: %q says default: deny", g.setting.Pattern)
			fixKey = fmt.Sprintf("%q", g.setting.Pattern)
		}
		fix := fmt.Sprintf("interfaces: {%s: {default: allow}}", fixKey)
		if fixKey != `"*"` {
			fix += ` (or "*" for every interface)`
		}
		left, decides := p.reachable(g.pats)
		if !decides {
			continue
		}
		dropped := "is dropped"
		if g.set && g.setting.Audit {
			// Nothing is dropped yet, but this is what enforcing
			// would do: the reason to audit first.
			why += " in mode: audit"
			dropped = "passes now, logged as audit, and would be dropped once mode: audit is removed,"
		}
		warns = append(warns, fmt.Sprintf(
			"%s filtered with default deny (%s): every destination %s that no endpoint lists %s for every user, root included, and for forwarded traffic: SSH, DNS and package updates too. %s To restrict only the listed ranges instead: %s",
			subject, why, there, dropped, left, fix))
	}
	return warns
}

// reachable says what stays reachable on a deny-default interface, and for
// whom, as the configuration writes it; pats are the endpoint patterns that
// match the interface. decides is false where the endpoints list
// 0.0.0.0/0 and ::/0: every destination is in a range, the default never
// decides, and there is no lock-down to speak of.
func (p *Policy) reachable(pats []string) (text string, decides bool) {
	var parts []string
	n := 0
	has4, has6 := false, false
	all4, all6 := false, false
	for _, e := range p.Endpoints {
		if !slices.ContainsFunc(e.Ifaces(), func(pat string) bool { return slices.Contains(pats, pat) }) {
			continue
		}
		for _, r := range e.Ranges {
			// A narrowed /0 leaves every other protocol and port
			// to the default.
			whole := r.Bits() == 0 && !e.Narrowed()
			if r.Addr().Is4() {
				has4, all4 = true, all4 || whole
			} else {
				has6, all6 = true, all6 || whole
			}
		}
		n++
		if n > shown {
			continue
		}
		who := "no one"
		if allow := e.AllowList(); len(allow) > 0 {
			who = strings.Join(allow, ", ")
		}
		what := rangeList(e)
		if e.Narrowed() {
			what += " " + e.Narrowing()
		}
		parts = append(parts, fmt.Sprintf("%s for %s (endpoint %s)", what, who, e.Name))
	}
	if n == 0 {
		return "Nothing stays reachable there.", true
	}
	if all4 && all6 {
		return "", false
	}
	if n > shown {
		parts = append(parts, fmt.Sprintf("and what %d more endpoints allow", n-shown))
	}
	s := "Only these stay reachable: " + strings.Join(parts, "; ")
	switch {
	case !has4:
		s += "; no IPv4 destination at all"
	case !has6:
		s += "; no IPv6 destination at all"
	}
	return s + ".", true
}

// rangeList names an endpoint's ranges, the first few of many.
func rangeList(e Endpoint) string {
	n := len(e.Ranges)
	if n > shown+1 {
		n = shown
	}
	texts := make([]string, n)
	for i, r := range e.Ranges[:n] {
		texts[i] = r.String()
	}
	s := strings.Join(texts, ", ")
	if n < len(e.Ranges) {
		s += fmt.Sprintf(" and %d more ranges", len(e.Ranges)-n)
	}
	return s
}

// list joins the first items and says how many more there are.
func list(items []string, what string) string {
	if len(items) <= shown+1 {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more %s", strings.Join(items[:shown], ", "), len(items)-shown, what)
}

// unmatchedWarnings: one per endpoint iface pattern that matches no
// interface of the host, told apart by whether the endpoints that name it
// filter elsewhere or nowhere at all.
func (p *Policy) unmatchedWarnings(names, pats []string) []string {
	matched := make(map[string]bool, len(pats))
	all := true
	for _, pat := range pats {
		matched[pat] = slices.ContainsFunc(names, func(n string) bool { return MatchIface(pat, n) })
		all = all && matched[pat]
	}
	// The endpoints are walked only to name those of an unmatched
	// pattern: after every reload of a large set, where all match.
	if all {
		return nil
	}
	type naming struct {
		nowhere, elsewhere []string // endpoint names
		lone               Endpoint // the endpoint of nowhere, when it has one
	}
	byPat := map[string]*naming{}
	for _, e := range p.Endpoints {
		somewhere := slices.ContainsFunc(e.Ifaces(), func(pat string) bool { return matched[pat] })
		for _, pat := range e.Ifaces() {
			if matched[pat] {
				continue
			}
			n := byPat[pat]
			if n == nil {
				n = &naming{}
				byPat[pat] = n
			}
			list := &n.nowhere
			if somewhere {
				list = &n.elsewhere
			}
			// Names are unique; an iface list may repeat a pattern.
			if len(*list) == 0 || (*list)[len(*list)-1] != e.Name {
				*list = append(*list, e.Name)
			}
			if !somewhere {
				n.lone = e
			}
		}
	}
	var warns []string
	for _, pat := range pats {
		n := byPat[pat]
		if n == nil {
			continue
		}
		fix := `Name an interface of this host (ip -brief link lists them), or "*" for every interface; one that appears later is filtered at once`
		if len(n.nowhere) == 1 {
			warns = append(warns, fmt.Sprintf(
				"endpoint %s protects nothing: its iface %q matches no interface of this host, so %s %s reachable by everyone until such an interface appears. %s",
				n.lone.Name, pat, rangeList(n.lone), verb(len(n.lone.Ranges), "stays", "stay"), fix))
		} else if len(n.nowhere) > 1 {
			warns = append(warns, fmt.Sprintf(
				"endpoints %s protect nothing: their iface %q matches no interface of this host, so their ranges stay reachable by everyone until such an interface appears. %s",
				list(n.nowhere, "endpoints"), pat, fix))
		}
		if len(n.elsewhere) > 0 {
			whose, rest := "endpoint", "it filters only on its other interfaces"
			if len(n.elsewhere) > 1 {
				whose, rest = "endpoints", "they filter only on their other interfaces"
			}
			warns = append(warns, fmt.Sprintf(
				"iface %q of %s %s matches no interface of this host: %s until such an interface appears",
				pat, whose, list(n.elsewhere, "endpoints"), rest))
		}
	}
	return warns
}

func verb(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
