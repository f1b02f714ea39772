// SPDX-License-Identifier: Apache-2.0

// Package daemon is the net-tc-filter service: it loads the configuration
// set, compiles it, makes it live in the kernel and reports the kernel's
// decisions.
package daemon

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nettcfilter/net-tc-filter/bpf"
	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
)

// DefaultConfigPath is the main configuration file; drop-ins are read from
// conf.d/ beside it.
const DefaultConfigPath = "/etc/net-tc-filter/net-tc-filter.yml"

// Load reads, checks and compiles the configuration set, as `check` judges
// it: every problem of the set, from the files or from resolving names,
// comes back at once as config.Errors, and a user or group name that does
// not resolve is one of them. With an error, the Config is what could be
// read, for its Warnings (it must never be applied), and the Policy nil.
func Load(path string, r policy.Resolver) (*config.Config, *policy.Policy, error) {
	cfg, p, err := loadPartial(path, r, nil)
	if err == nil && len(p.Unresolved) > 0 {
		errs := p.UnresolvedErrors()
		errs.Sort(cfg.Files)
		return cfg, nil, errs
	}
	return cfg, p, err
}

// LoadAsEnforced is Load as the daemon judges the set: a user or group name
// that does not resolve is no error but matches no one, and p.Unresolved
// lists it. explain answers with it what the kernel would do.
func LoadAsEnforced(path string, r policy.Resolver) (*config.Config, *policy.Policy, error) {
	return load(path, r, nil)
}

// load is Load through a cache of parsed files (nil: none), as the daemon
// judges the set: a name that does not resolve is no error, it matches no
// one and p.Unresolved lists it (SPEC §1 "Failing closed"). When the set
// is invalid for other reasons, such names are listed with its problems.
func load(path string, r policy.Resolver, cache *config.Cache) (*config.Config, *policy.Policy, error) {
	cfg, p, err := loadPartial(path, r, cache)
	if err != nil {
		return nil, nil, err
	}
	return cfg, p, nil
}

// loadPartial is load that returns, with an error, what could be read.
func loadPartial(path string, r policy.Resolver, cache *config.Cache) (*config.Config, *policy.Policy, error) {
	cfg, errs := cache.LoadPartial(path)
	return compileLoaded(cfg, errs, r, nil)
}

// compileLoaded compiles what a load read, with the loader's problems,
// after prev (policy.CompileAfter).
func compileLoaded(cfg *config.Config, errs config.Errors, r policy.Resolver, prev *policy.Policy) (*config.Config, *policy.Policy, error) {
	p, err := policy.CompileAfter(cfg, r, prev)
	var compileErrs config.Errors
	if errors.As(err, &compileErrs) {
		errs = append(errs, compileErrs...)
	} else if err != nil {
		return cfg, nil, err
	}
	if len(errs) > 0 {
		if p != nil {
			errs = append(errs, p.UnresolvedErrors()...)
		}
		errs.Sort(cfg.Files)
		return cfg, nil, errs
	}
	return cfg, p, nil
}

// Warnings are every warning about a set on this host, as the daemon's
// status and `check` list them: what the loader warns of (files not read),
// then what the host's interfaces make of the policy (host: their names;
// interfaces locked down by a deny default, endpoints whose iface matches
// none), then what the compiler finds risky.
func Warnings(cfg *config.Config, p *policy.Policy, host []string) []string {
	return warnings(cfg, p, p.HostWarnings(host))
}

// warnings is Warnings with the host's warnings already computed.
func warnings(cfg *config.Config, p *policy.Policy, hostWarnings []string) []string {
	return slices.Concat(cfg.Warnings, hostWarnings, p.Warnings)
}

// ParseOwner reads a sender as the CLI and D-Bus take it: a user name
// ("alice"), "uid:1005" or "unowned", optionally with the cgroup its
// socket was made in ("alice@unit:x.service", "uid:0@cgroup:/a/b"), or a
// cgroup alone ("unit:x.service", "cgroup:/a/b": a socket of a uid that
// no allow list names). A name NSS could not look up (as opposed to one
// that does not exist), or did not answer within policy.LookupBudget, is
// an error that wraps ErrNotReady.
func ParseOwner(s string, r policy.Resolver) (policy.Owner, error) {
	who, where := s, ""
	for _, sep := range []string{"unit:", "cgroup:"} {
		if strings.HasPrefix(s, sep) {
			who, where = "", s
		} else if i := strings.LastIndex(s, "@"+sep); i >= 0 {
			who, where = s[:i], s[i+1:]
		}
	}
	if where == "" {
		return parseOwner(s, r)
	}
	cg, err := ownerCgroup(where, r)
	if err != nil {
		return policy.Owner{}, err
	}
	if who == "" {
		return policy.Owner{UID: config.UnknownUID, Cgroup: cg}, nil
	}
	o, err := parseOwner(who, r)
	if err != nil {
		return policy.Owner{}, err
	}
	if o.Unowned {
		return policy.Owner{}, fmt.Errorf("%q: a packet without a socket has no cgroup", s)
	}
	o.Cgroup = cg
	return o, nil
}

// ownerCgroup is the cgroup path of "unit:NAME" or "cgroup:PATH".
func ownerCgroup(s string, r policy.Resolver) (string, error) {
	if p, ok := strings.CutPrefix(s, "cgroup:"); ok {
		if err := config.CheckCgroupPath(p); err != nil {
			return "", err
		}
		return p, nil
	}
	name := strings.TrimPrefix(s, "unit:")
	if err := config.CheckUnitName(name); err != nil {
		return "", err
	}
	u, ok := r.(policy.UnitResolver)
	if !ok {
		return "", fmt.Errorf("unit %s %w", name, policy.ErrNoUnitResolver)
	}
	c, err := u.UnitCgroup(name)
	if err != nil {
		return "", fmt.Errorf("unit %s %w", name, err)
	}
	return c.Path, nil
}

func parseOwner(s string, r policy.Resolver) (policy.Owner, error) {
	if s == "unowned" {
		return policy.Owner{Unowned: true}, nil
	}
	if n, ok := strings.CutPrefix(s, "uid:"); ok {
		uid, err := strconv.ParseUint(n, 10, 32)
		if err != nil || uid == 1<<32-1 {
			return policy.Owner{}, fmt.Errorf("%q is not a uid", n)
		}
		return policy.Owner{UID: uint32(uid)}, nil
	}
	uid, err := policy.LookupUser(r, s)
	if err != nil && !errors.Is(err, policy.ErrUnknown) {
		return policy.Owner{}, notReady{err}
	}
	if err != nil {
		return policy.Owner{}, err
	}
	return policy.Owner{UID: uid}, nil
}

// statusLine is the one human line that says what is enforced, e.g.
// "enforcing 3 ranges for 2 users on eth0, ens5; generation 7 (tcx)";
// lastError is st.LastError in one line (lastError.line).
func statusLine(st Status, lastError string) string {
	names := make([]string, len(st.Attachments))
	for i, a := range st.Attachments {
		names[i] = a.Iface.Name
	}
	on := strings.Join(names, ", ")
	if on == "" {
		on = "no interface yet"
	}
	line := fmt.Sprintf("enforcing %d ranges for %d users on %s; generation %d (%s)",
		st.Ranges, st.Users, on, st.Generation, modeName(st.Mode))
	if lastError != "" {
		line += "; last reload failed: " + lastError
	}
	if u := unresolvedLine(st.Unresolved); u != "" {
		line += "; degraded: " + u
	}
	if st.Cgroups != "" {
		line += "; degraded: unit: and cgroup: principals match no one: " + st.Cgroups
	}
	return line
}

// lastError is what status says of a failed load: every problem, one a
// line (Status.LastError), and the same in one line for STATUS=, which
// systemctl shows as one line (the first problem and how many more). The
// zero value: it succeeded.
type lastError struct {
	text, line string
	problems   int
}

// failure words err, a failed load or apply, for status. fallback is what
// is enforced instead of the files ("the last good set of <time>"); "":
// the running policy stays.
func failure(err error, fallback string) lastError {
	list := problems(err)
	e := lastError{text: strings.Join(list, "\n"), line: oneLine(list[0]), problems: len(list)}
	if len(list) > 1 {
		e.line += fmt.Sprintf(" (and %d more)", len(list)-1)
	}
	if fallback != "" {
		instead := "enforcing " + fallback + " until the files are valid"
		e.text += "\n" + instead
		e.line += "; " + instead
	}
	return e
}

// problems lists every problem of a failed load: each of the set's
// (config.Errors), else each line of the error (errors.Join of several).
func problems(err error) []string {
	var errs config.Errors
	if errors.As(err, &errs) && len(errs) > 0 {
		out := make([]string, len(errs))
		for i, e := range errs {
			out[i] = e.Error()
		}
		return out
	}
	return strings.Split(err.Error(), "\n")
}

// unresolvedLine says in one line which names match no one because they
// do not resolve: the first, and how many more.
func unresolvedLine(names []string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return "1 user/group name matches no one: " + names[0]
	}
	return fmt.Sprintf("%d user/group names match no one: %s (and %d more)", len(names), names[0], len(names)-1)
}

// sizes are what status and the metrics say of a policy's size: its
// (endpoint, range) pairs (RangeCount), by address family, and the
// distinct uids it names.
type sizes struct {
	ranges, v4, v6 int
	users          int
}

func sizeOf(p *policy.Policy) sizes {
	var n sizes
	// Sorted rather than a set: a million uids in a map take longer to
	// count than the rest of a reload's bookkeeping, and delay READY=1.
	var users []uint32
	for _, e := range p.Endpoints {
		for _, r := range e.Ranges {
			if r.Addr().Is4() {
				n.v4++
			} else {
				n.v6++
			}
		}
		users = append(users, e.Principals.UIDs...)
	}
	slices.Sort(users)
	n.ranges, n.users = n.v4+n.v6, len(slices.Compact(users))
	return n
}

func modeName(m bpf.Mode) string {
	if m == bpf.ModeAuto {
		return "not attached"
	}
	return string(m)
}
