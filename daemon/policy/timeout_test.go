// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
)

// hungResolver is NSS with a backend that hangs rather than fails (sssd or
// nslcd stuck): the names in hang are never answered until the test ends;
// the others are answered from users and groups at once. It records every
// name it was asked.
type hungResolver struct {
	hang    map[string]bool
	users   map[string]uint32
	groups  map[string][]uint32
	release chan struct{}
	once    sync.Once

	mu    sync.Mutex
	asked []string
}

func newHungResolver(t *testing.T, hang ...string) *hungResolver {
	r := &hungResolver{hang: map[string]bool{}, release: make(chan struct{}),
		users: map[string]uint32{"alice": 1000, "bob": 1001}, groups: map[string][]uint32{"readers": {1002}}}
	for _, h := range hang {
		r.hang[h] = true
	}
	// The lookups left behind end with the test.
	t.Cleanup(r.answer)
	return r
}

// answer lets the hung lookups answer.
func (r *hungResolver) answer() { r.once.Do(func() { close(r.release) }) }

func (r *hungResolver) ask(name string) {
	r.mu.Lock()
	r.asked = append(r.asked, name)
	r.mu.Unlock()
	if r.hang[name] {
		<-r.release
	}
}

func (r *hungResolver) User(name string) (uint32, error) {
	r.ask(name)
	uid, ok := r.users[name]
	if !ok {
		return 0, fmt.Errorf("%w user %q", ErrUnknown, name)
	}
	return uid, nil
}

func (r *hungResolver) Group(name string) ([]uint32, error) {
	r.ask("group:" + name)
	m, ok := r.groups[name]
	if !ok {
		return nil, fmt.Errorf("%w group %q", ErrUnknown, name)
	}
	return m, nil
}

func (r *hungResolver) askedNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.asked)
}

// A hung NSS holds a compilation for its budget, not for as long as NSS
// hangs: the name it hangs on and every name not asked by then are
// Unresolved (they match no one, and say why), the names answered before
// keep their uids, and no name is asked once the budget is spent, so that
// a compilation leaves at most one lookup hanging.
func TestCompileHungResolver(t *testing.T) {
	const budget = 100 * time.Millisecond
	tests := []struct {
		name       string
		hang       []string
		want       Principals
		unresolved []string // principal: why
		asked      []string
	}{
		{"nothing hangs", nil, uids(7, 1000, 1001, 1002), nil, []string{"alice", "group:readers", "bob"}},
		{"the first name hangs", []string{"alice"}, uids(7), []string{
			"alice: NSS lookup timed out after 100ms",
			"group:readers: NSS lookup not attempted: NSS did not answer within 100ms",
			"bob: NSS lookup not attempted: NSS did not answer within 100ms",
		}, []string{"alice"}},
		{"a group hangs", []string{"group:readers"}, uids(7, 1000), []string{
			"group:readers: NSS lookup timed out after 100ms",
			"bob: NSS lookup not attempted: NSS did not answer within 100ms",
		}, []string{"alice", "group:readers"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &config.Config{
				Endpoints: []*config.Endpoint{
					{Name: "a", Line: 2, Site: &config.Site{File: mainFile, Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")},
						Allow: allow(3, "alice", "group:readers", "uid:7", "bob")},
					// The same names again: asked once, one answer for both.
					{Name: "b", Line: 2, Site: &config.Site{File: mainFile, Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("10.1.0.0/16")},
						Allow: allow(9, "bob", "alice")},
				},
				Files: []string{mainFile},
			}
			r := newHungResolver(t, tt.hang...)
			began := time.Now()
			p, err := compile(cfg, r, budget, nil)
			took := time.Since(began)
			if err != nil {
				t.Fatal(err)
			}
			// Generous for a loaded CI machine; a hung lookup waited for
			// never returns at all.
			if took > budget+5*time.Second {
				t.Errorf("compile took %s with a %s budget", took, budget)
			}
			if got := p.Endpoints[0].Principals; !equalPrincipals(*got, tt.want) {
				t.Errorf("principals = %v, want %v", got, tt.want)
			}
			var got []string
			for _, u := range p.Unresolved {
				if u.Pos.Line < 9 {
					got = append(got, u.Principal+": "+u.Err.Error())
				}
				if !errors.Is(u.Err, ErrTimeout) || u.Missing() {
					t.Errorf("%s: %v is not a timeout", u.Principal, u.Err)
				}
				if !strings.Contains(u.String(), u.Err.Error()) || strings.Contains(u.String(), "does not exist") {
					t.Errorf("status line %q", u.String())
				}
			}
			if !slices.Equal(got, tt.unresolved) {
				t.Errorf("unresolved:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.unresolved, "\n  "))
			}
			if asked := r.askedNames(); !slices.Equal(asked, tt.asked) {
				t.Errorf("asked NSS for %q, want %q", asked, tt.asked)
			}
			// check reports what did not answer as an error, and why.
			for i, e := range p.UnresolvedErrors() {
				if !strings.Contains(e.Error(), "NSS lookup") || e.Pos != p.Unresolved[i].Pos {
					t.Errorf("check's error %q", e)
				}
			}

			// Resolved again (the daemon's periodic resolution) with NSS
			// still hanging: the same, within the same bounds.
			began = time.Now()
			q := p.resolveWithin(r, budget)
			if took := time.Since(began); took > budget+5*time.Second {
				t.Errorf("Resolve took %s with a %s budget", took, budget)
			}
			if got := q.Endpoints[0].Principals; !equalPrincipals(*got, tt.want) || len(q.Unresolved) != len(p.Unresolved) {
				t.Errorf("resolved again: %v, unresolved %v", got, q.Unresolved)
			}
		})
	}
}

// Compile and Resolve give NSS LookupBudget: the daemon's start, reloads
// and periodic resolution all go through them.
func TestCompileDefaultBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("waits LookupBudget")
	}
	cfg := &config.Config{
		Endpoints: []*config.Endpoint{{Name: "a", Line: 2, Site: &config.Site{File: mainFile, Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")},
			Allow: allow(3, "alice")}},
		Files: []string{mainFile},
	}
	r := newHungResolver(t, "alice")
	done := make(chan *Policy, 1)
	go func() {
		p, err := Compile(cfg, r)
		if err != nil {
			t.Error(err)
		}
		done <- p
	}()
	select {
	case p := <-done:
		want := fmt.Sprintf("alice (%s:3) NSS lookup timed out after %s", mainFile, LookupBudget)
		if len(p.Unresolved) != 1 || p.Unresolved[0].String() != want {
			t.Errorf("unresolved %v, want %q", p.Unresolved, want)
		}
	case <-time.After(LookupBudget + 10*time.Second):
		t.Fatalf("Compile still waits for a hung NSS after %s", LookupBudget+10*time.Second)
	}
}
