// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
)

// unitResolver is testResolver with systemd units as well.
type unitResolver struct {
	fakeResolver
	units map[string]UnitCgroup
	err   error // every unit's, when set
}

func (u unitResolver) UnitCgroup(name string) (UnitCgroup, error) {
	if u.err != nil {
		return UnitCgroup{}, u.err
	}
	if c, ok := u.units[name]; ok {
		return c, nil
	}
	// As systemd places a system unit it does not know yet.
	return UnitCgroup{Path: "/system.slice/" + name}, nil
}

func testUnits() unitResolver {
	return unitResolver{fakeResolver: testResolver(), units: map[string]UnitCgroup{
		"agent.service":   {Path: "/system.slice/agent.service", Exists: true},
		"user-1000.slice": {Path: "/user.slice/user-1000.slice", Exists: true},
	}}
}

func TestCgroupUnder(t *testing.T) {
	tests := []struct {
		x, dir string
		want   bool
	}{
		{"/a", "/a", true},
		{"/a/b", "/a", true},
		{"/a/b/c", "/a", true},
		{"/ab", "/a", false}, // a sibling sharing a prefix is not below
		{"/a", "/a/b", false},
		{"/", "/", true},
		{"/x", "/", true},
		{"", "/", false}, // unknown is below nothing, not even the root
		{"", "/a", false},
		{"/system.slice/agent.service/sub", "/system.slice/agent.service", true},
		{"/system.slice/agent.service2", "/system.slice/agent.service", false},
	}
	for _, tt := range tests {
		if got := CgroupUnder(tt.x, tt.dir); got != tt.want {
			t.Errorf("CgroupUnder(%q, %q) = %v, want %v", tt.x, tt.dir, got, tt.want)
		}
	}
}

func TestCompileCgroupPrincipals(t *testing.T) {
	tests := []struct {
		name  string
		allow []string
		want  Principals
		units []string // names in Policy.Units
	}{
		{"cgroup", []string{"cgroup:/a/b"}, withCgroups(Principals{}, "/a/b"), nil},
		{"cgroups sorted, unique", []string{"cgroup:/b", "cgroup:/a", "unit:x.service", "cgroup:/system.slice/x.service"},
			withCgroups(Principals{}, "/a", "/b", "/system.slice/x.service"), []string{"x.service"}},
		{"unit of a slice", []string{"unit:user-1000.slice"}, withCgroups(Principals{}, "/user.slice/user-1000.slice"), []string{"user-1000.slice"}},
		{"with uids", []string{"alice", "unit:agent.service"}, withCgroups(Principals{UIDs: []uint32{1000}}, "/system.slice/agent.service"), []string{"agent.service"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &config.Config{Endpoints: []*config.Endpoint{{Name: "e", Line: 2, Site: &config.Site{File: mainFile, Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")},
				Allow: allow(3, tt.allow...)}}, Files: []string{mainFile}}
			p, err := Compile(cfg, testUnits())
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Endpoints[0].Principals; !equalPrincipals(*got, tt.want) {
				t.Errorf("principals %+v, want %+v", got, tt.want)
			}
			var names []string
			for _, u := range p.Units {
				names = append(names, u.Name)
			}
			if !slices.Equal(names, tt.units) {
				t.Errorf("units %v, want %v", names, tt.units)
			}
			if len(p.Unresolved) > 0 {
				t.Errorf("unresolved %v", p.Unresolved)
			}
		})
	}
}

// TestCompileUnits: a unit that does not exist yet is resolved to where
// systemd will put it and listed as absent; without systemd, unit:
// matches no one and says why, while the rest of the list still applies.
func TestCompileUnits(t *testing.T) {
	cfg := &config.Config{Endpoints: []*config.Endpoint{{Name: "e", Line: 2, Site: &config.Site{File: mainFile, Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")},
		Allow: allow(3, "unit:agent.service", "unit:later.service", "bob")}}, Files: []string{mainFile}}
	p, err := Compile(cfg, testUnits())
	if err != nil {
		t.Fatal(err)
	}
	absent := p.AbsentUnits()
	if len(absent) != 1 || absent[0].Name != "later.service" || absent[0].Path != "/system.slice/later.service" {
		t.Errorf("absent units %+v, want later.service in /system.slice", absent)
	}
	if want := "unit later.service does not exist now: it matches nothing until it appears (in /system.slice/later.service)"; !slices.Contains(p.Warnings, want) {
		t.Errorf("warnings %q lack %q", p.Warnings, want)
	}
	owner := Owner{UID: 5, Cgroup: "/system.slice/later.service"}
	if !p.Decide("eth0", owner, netip.MustParseAddr("10.1.1.1")).Allowed {
		t.Errorf("%v denied: a unit that appears later must match", owner)
	}

	for _, r := range []Resolver{
		unitResolver{fakeResolver: testResolver(), err: errors.New("cannot be resolved: PID 1 is not systemd (use cgroup:PATH)")},
		testResolver(), // no UnitResolver at all
	} {
		p, err := Compile(cfg, r)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Unresolved) != 2 {
			t.Fatalf("unresolved %v, want both units", p.Unresolved)
		}
		for _, u := range p.Unresolved {
			if !strings.Contains(u.String(), "cannot be resolved") || !strings.Contains(u.ConfigError().Error(), "cannot be resolved") {
				t.Errorf("unresolved %q (%v) does not say why", u, u.ConfigError())
			}
		}
		if got := p.Endpoints[0].Principals; !equalPrincipals(*got, uids(1001)) {
			t.Errorf("principals %+v, want bob's uid only", got)
		}
		if p.Decide("eth0", Owner{UID: 0, Cgroup: "/system.slice/agent.service"}, netip.MustParseAddr("10.1.1.1")).Allowed {
			t.Errorf("an unresolved unit let its cgroup pass")
		}
	}
}

func TestDecideCgroups(t *testing.T) {
	cfg := &config.Config{
		Endpoints: []*config.Endpoint{
			{Name: "imds", Line: 2, Site: &config.Site{File: mainFile, Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("169.254.169.254/32")}, Allow: allow(3, "unit:agent.service", "alice")},
			{Name: "wide", Line: 2, Site: &config.Site{File: mainFile, Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")}, Allow: allow(5, "cgroup:/T/a")},
			{Name: "narrow", Line: 2, Site: &config.Site{File: mainFile, Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("10.1.0.0/16")}, Allow: allow(6, "cgroup:/T")},
			{Name: "all", Line: 2, Site: &config.Site{File: mainFile, Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("10.2.0.0/16")}, Allow: allow(7, "cgroup:/")},
		},
		Interfaces: map[string]config.Interface{"eth0": {Default: config.Allow}},
		Files:      []string{mainFile},
	}
	p, err := Compile(cfg, testUnits())
	if err != nil {
		t.Fatal(err)
	}
	imds := netip.MustParseAddr("169.254.169.254")
	tests := []struct {
		o    Owner
		dst  string
		want bool
	}{
		{Owner{UID: 0, Cgroup: "/system.slice/agent.service"}, "169.254.169.254", true},
		{Owner{UID: 0, Cgroup: "/system.slice/agent.service/helper"}, "169.254.169.254", true},
		{Owner{UID: 0, Cgroup: "/system.slice/agent.services"}, "169.254.169.254", false},
		{Owner{UID: 0, Cgroup: "/system.slice"}, "169.254.169.254", false},
		{Owner{UID: 0}, "169.254.169.254", false},                                          // cgroup unknown
		{Owner{UID: 1000, Cgroup: "/user.slice/user-1000.slice"}, "169.254.169.254", true}, // by uid
		{Owner{Unowned: true, Cgroup: "/system.slice/agent.service"}, "169.254.169.254", false},
		{Owner{UID: 1, Cgroup: "/T/a"}, "10.9.9.9", true},
		{Owner{UID: 1, Cgroup: "/T/a/b"}, "10.9.9.9", true},
		{Owner{UID: 1, Cgroup: "/T/c"}, "10.9.9.9", false},
		{Owner{UID: 1, Cgroup: "/T"}, "10.9.9.9", false},
		{Owner{UID: 1, Cgroup: "/T/c"}, "10.1.1.1", true}, // the longer prefix's list decides
		{Owner{UID: 1, Cgroup: "/U"}, "10.1.1.1", false},
		{Owner{UID: 1, Cgroup: "/"}, "10.2.0.1", true},
		{Owner{UID: 1, Cgroup: "/any/where"}, "10.2.0.1", true},
		{Owner{UID: 1}, "10.2.0.1", false},
	}
	for _, tt := range tests {
		v := p.Decide("eth0", tt.o, netip.MustParseAddr(tt.dst))
		if v.Allowed != tt.want {
			t.Errorf("%v to %s: allowed %v, want %v (%s)", tt.o, tt.dst, v.Allowed, tt.want, v.Reason)
		}
	}
	v := p.Decide("eth0", Owner{UID: 7, Cgroup: "/system.slice/sshd.service"}, imds)
	if want := "uid:7 in cgroup /system.slice/sshd.service is not allowed to 169.254.169.254/32 (endpoint imds; allowed: uid:1000 cgroup:/system.slice/agent.service)"; v.Reason != want {
		t.Errorf("reason %q, want %q", v.Reason, want)
	}
}

// The kernel keeps a bit per cgroup path: a 65th is refused where it is
// written, and 64 are fine.
func TestCompileTooManyCgroups(t *testing.T) {
	for _, n := range []int{MaxCgroupPaths, MaxCgroupPaths + 1} {
		var texts []string
		for i := range n {
			texts = append(texts, fmt.Sprintf("cgroup:/c%03d", i))
		}
		cfg := &config.Config{Endpoints: []*config.Endpoint{{Name: "e", Line: 2, Site: &config.Site{File: mainFile, Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")},
			Allow: allow(3, texts...)}}, Files: []string{mainFile}}
		_, err := Compile(cfg, testUnits())
		if n == MaxCgroupPaths {
			if err != nil {
				t.Errorf("%d paths: %v", n, err)
			}
			continue
		}
		want := fmt.Sprintf(`net-tc-filter.yml:%d: allow "cgroup:/c064": the policy names 65 distinct cgroup paths (unit: and cgroup:); at most 64 are supported`, 3+64)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%d paths: %v; want %q", n, err, want)
		}
	}
}
