// Package daemon is the net-tc-filter service: it loads the configuration
// set, compiles it, makes it live in the kernel and reports the kernel's
// decisions.
package daemon

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nettcfilter/net-tc-filter/bpf"
	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
)

// DefaultConfigPath is the main configuration file; drop-ins are read from
// conf.d/ beside it.
const DefaultConfigPath = "/etc/net-tc-filter/net-tc-filter.yml"

// Load reads, checks and compiles the configuration set. Every problem of
// the set, from the files or from resolving names, comes back at once as
// config.Errors.
func Load(path string, r policy.Resolver) (*config.Config, *policy.Policy, error) {
	return load(path, r, nil)
}

// load is Load through a cache of parsed files (nil: none).
func load(path string, r policy.Resolver, cache *config.Cache) (*config.Config, *policy.Policy, error) {
	cfg, errs := cache.LoadPartial(path)
	p, err := policy.Compile(cfg, r)
	var compileErrs config.Errors
	if errors.As(err, &compileErrs) {
		errs = append(errs, compileErrs...)
	} else if err != nil {
		return nil, nil, err
	}
	if len(errs) > 0 {
		errs.Sort(cfg.Files)
		return nil, nil, errs
	}
	return cfg, p, nil
}

// ParseOwner reads a sender as the CLI and D-Bus take it: a user name
// ("alice"), "uid:1005" or "unowned".
func ParseOwner(s string, r policy.Resolver) (policy.Owner, error) {
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
	uid, err := r.User(s)
	if err != nil {
		return policy.Owner{}, err
	}
	return policy.Owner{UID: uid}, nil
}

// statusLine is the one human line that says what is enforced, e.g.
// "enforcing 3 ranges for 2 users on eth0, ens5; generation 7 (tcx)".
func statusLine(st Status) string {
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
	if st.LastError != "" {
		line += "; last reload failed: " + st.LastError
	}
	return line
}

// rangesByFamily counts the (endpoint, range) pairs of RangeCount by
// address family.
func rangesByFamily(p *policy.Policy) (v4, v6 int) {
	for _, e := range p.Endpoints {
		for _, r := range e.Ranges {
			if r.Addr().Is4() {
				v4++
			} else {
				v6++
			}
		}
	}
	return v4, v6
}

// userCount counts the distinct uids the policy names.
func userCount(p *policy.Policy) int {
	users := map[uint32]bool{}
	for _, e := range p.Endpoints {
		for _, u := range e.Principals.UIDs {
			users[u] = true
		}
	}
	return len(users)
}

func modeName(m bpf.Mode) string {
	if m == bpf.ModeAuto {
		return "not attached"
	}
	return string(m)
}
