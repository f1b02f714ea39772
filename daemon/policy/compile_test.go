// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
)

// fakeResolver resolves names from fixed tables.
type fakeResolver struct {
	users  map[string]uint32
	groups map[string][]uint32
}

func (f fakeResolver) User(name string) (uint32, error) {
	uid, ok := f.users[name]
	if !ok {
		return 0, fmt.Errorf("%w user %q", ErrUnknown, name)
	}
	return uid, nil
}

func (f fakeResolver) Group(name string) ([]uint32, error) {
	uids, ok := f.groups[name]
	if !ok {
		return nil, fmt.Errorf("%w group %q", ErrUnknown, name)
	}
	return slices.Clone(uids), nil
}

func testResolver() fakeResolver {
	return fakeResolver{
		users: map[string]uint32{"root": 0, "alice": 1000, "bob": 1001, "nobody": 65534},
		groups: map[string][]uint32{
			"imds-readers": {1003, 1000, 1002, 1000}, // unsorted, with a duplicate
			"empty":        nil,
			"wheel":        {0},
		},
	}
}

// TestCompileReservedUID: NSS answering with the uid the kernel gives an
// owner it could not read (or with no uid at all) grants nothing: a user
// with it does not resolve, a group member with it is left out.
func TestCompileReservedUID(t *testing.T) {
	r := fakeResolver{
		users:  map[string]uint32{"odd": 4294967294, "none": 4294967295, "alice": 1000},
		groups: map[string][]uint32{"g": {1000, 4294967294}},
	}
	cfg := &config.Config{Endpoints: []*config.Endpoint{{Name: "e", Site: &config.Site{Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")},
		Allow: []config.Principal{pr("odd", 3), pr("none", 4), pr("group:g", 5)}}},
		Files: []string{mainFile}}
	p, err := Compile(cfg, r)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Endpoints[0].Principals, uids(1000); !equalPrincipals(*got, want) {
		t.Errorf("principals %v, want %v", got, want)
	}
	if len(p.Unresolved) != 2 {
		t.Errorf("unresolved %v, want odd and none", p.Unresolved)
	}
}

const (
	mainFile = "/etc/net-tc-filter/net-tc-filter.yml"
	dropFile = "/etc/net-tc-filter/conf.d/10-extra.yml"
)

// pr builds a principal as the config parser would: an allow entry
// written at line of its endpoint's file.
func pr(text string, line int) config.Principal {
	p := config.Principal{Text: text, Line: int32(line)}
	switch {
	case text == "*":
		p.Kind = config.PrincipalEveryone
	case text == "unowned":
		p.Kind = config.PrincipalUnowned
	case strings.HasPrefix(text, "uid:"):
		var u uint32
		if _, err := fmt.Sscanf(text, "uid:%d", &u); err != nil {
			panic(err)
		}
		p.Kind, p.UID = config.PrincipalUID, u
	case strings.HasPrefix(text, "group:"):
		p.Kind = config.PrincipalGroup
	case strings.HasPrefix(text, "unit:"):
		p.Kind = config.PrincipalUnit
	case strings.HasPrefix(text, "cgroup:"):
		p.Kind = config.PrincipalCgroup
	default:
		p.Kind = config.PrincipalUser
	}
	return p
}

func allow(line int, texts ...string) []config.Principal {
	var ps []config.Principal
	for i, s := range texts {
		ps = append(ps, pr(s, line+i))
	}
	return ps
}

func TestCompilePrincipals(t *testing.T) {
	tests := []struct {
		name  string
		allow []string
		want  Principals
	}{
		{"user", []string{"alice"}, uids(1000)},
		{"users sorted", []string{"bob", "alice"}, uids(1000, 1001)},
		{"root user", []string{"root"}, uids(0)},
		{"nobody user", []string{"nobody"}, uids(65534)},
		{"uid", []string{"uid:1005"}, uids(1005)},
		{"uid 0", []string{"uid:0"}, uids(0)},
		{"max uid", []string{"uid:4294967293"}, uids(4294967293)},
		{"group expanded, sorted, unique", []string{"group:imds-readers"}, uids(1000, 1002, 1003)},
		{"empty group", []string{"group:empty"}, Principals{}},
		{"mixed, deduplicated", []string{"uid:1005", "group:imds-readers", "alice", "uid:1000", "bob", "group:wheel"}, uids(0, 1000, 1001, 1002, 1003, 1005)},
		{"everyone", []string{"*"}, Principals{Everyone: true}},
		{"unowned", []string{"unowned"}, Principals{Unowned: true}},
		{"everyone and unowned", []string{"unowned", "*"}, Principals{Everyone: true, Unowned: true}},
		{"everyone with a user", []string{"*", "alice"}, Principals{Everyone: true, UIDs: []uint32{1000}}},
		{"unowned with a uid", []string{"uid:7", "unowned"}, Principals{Unowned: true, UIDs: []uint32{7}}},
		{"empty allow list", nil, Principals{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &config.Config{
				Endpoints: []*config.Endpoint{{
					Name:   "ep",
					Site:   &config.Site{File: mainFile, Ifaces: []string{"eth0", "wg*"}},
					Ranges: []netip.Prefix{pfx("169.254.169.254/32"), pfx("fd00:ec2::254/128")},
					Allow:  allow(5, tt.allow...),
					Line:   2,
				}},
				Interfaces: map[string]config.Interface{"eth0": {Default: config.Allow}},
				Files:      []string{mainFile},
			}
			p, err := Compile(cfg, testResolver())
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			if len(p.Endpoints) != 1 {
				t.Fatalf("got %d endpoints, want 1", len(p.Endpoints))
			}
			e := p.Endpoints[0]
			if !equalPrincipals(*e.Principals, tt.want) {
				t.Errorf("principals = %#v (%v), want %#v (%v)", e.Principals, e.Principals, tt.want, tt.want)
			}
			if e.Name != "ep" || !slices.Equal(e.Ifaces(), []string{"eth0", "wg*"}) ||
				!slices.Equal(e.Ranges, []netip.Prefix{pfx("169.254.169.254/32"), pfx("fd00:ec2::254/128")}) {
				t.Errorf("endpoint = %+v, want name ep, ifaces [eth0 wg*], the two ranges", e)
			}
			if !slices.Equal(e.AllowList(), tt.allow) {
				t.Errorf("AllowList() = %q, want %q (as written)", e.AllowList(), tt.allow)
			}
		})
	}
}

func TestCompileStructure(t *testing.T) {
	mk := func() *config.Config {
		return &config.Config{
			Endpoints: []*config.Endpoint{
				{Name: "second-first", Site: &config.Site{Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")}, Allow: allow(3, "alice")},
				{Name: "a-later", Site: &config.Site{Ifaces: []string{"*"}}, Ranges: []netip.Prefix{pfx("fe80::/10"), pfx("ff02::/16")}, Allow: allow(9, "uid:0")},
			},
			Interfaces: map[string]config.Interface{
				"eth0": {Default: config.Allow},
				"*":    {Default: config.Deny},
				"eth*": {Default: config.Allow},
				"ens5": {Default: config.Deny},
			},
			Files: []string{mainFile},
		}
	}
	cfg, before := mk(), mk()
	p, err := Compile(cfg, testResolver())
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	var names []string
	for _, e := range p.Endpoints {
		names = append(names, e.Name)
	}
	if !slices.Equal(names, []string{"second-first", "a-later"}) {
		t.Errorf("endpoints = %q, want config order [second-first a-later]", names)
	}
	want := []IfaceSetting{
		{Pattern: "*", Default: Deny},
		{Pattern: "ens5", Default: Deny},
		{Pattern: "eth*", Default: Allow},
		{Pattern: "eth0", Default: Allow},
	}
	if !slices.Equal(p.Interfaces, want) {
		t.Errorf("Interfaces = %+v, want %+v", p.Interfaces, want)
	}
	if got := p.RangeCount(); got != 3 {
		t.Errorf("RangeCount = %d, want 3", got)
	}
	// The policy shares the configuration's slices, so compiling must
	// leave the configuration as it was, and compile it the same again.
	if !reflect.DeepEqual(cfg, before) {
		t.Errorf("Compile modified the configuration:\n%+v\nwas\n%+v", cfg, before)
	}
	if again, err := Compile(cfg, testResolver()); err != nil || !again.Equal(p) {
		t.Errorf("compiled again: %+v, %v; want %+v", again, err, p)
	}
	// The compiled policy decides as expected.
	if d := p.Decide("eth0", Owner{UID: 1000}, addr("10.1.1.1")); !d.Allowed {
		t.Errorf("alice to 10.1.1.1 on eth0: %+v", d)
	}
	if d := p.Decide("eth0", Owner{UID: 1001}, addr("10.1.1.1")); d.Allowed {
		t.Errorf("bob to 10.1.1.1 on eth0: %+v", d)
	}
	if d := p.Decide("eth0", Owner{UID: 1001}, addr("8.8.8.8")); !d.Allowed {
		t.Errorf("bob to 8.8.8.8 on eth0 (default allow): %+v", d)
	}
}

// Names that do not resolve match no one, and are listed where they were
// written; the rest of the set compiles. As errors (for check) they say
// which principal and why, one line each.
func TestCompileUnresolved(t *testing.T) {
	cfg := &config.Config{
		Endpoints: []*config.Endpoint{
			// from the drop-in, but first in the list
			{Name: "dropped", Site: &config.Site{File: dropFile, Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")}, Line: 2,
				Allow: []config.Principal{
					pr("alice", 4),
					pr("ghost", 6),
					pr("group:nogroup", 5),
				}},
			{Name: "main-a", Site: &config.Site{File: mainFile, Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("10.1.0.0/16")}, Line: 8,
				Allow: []config.Principal{
					pr("group:missing", 12),
					pr("uid:5", 11),
					pr("phantom", 10),
				}},
			{Name: "main-b", Site: &config.Site{File: mainFile, Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("10.2.0.0/16")}, Line: 18,
				Allow: []config.Principal{pr("bob", 20), pr("group:imds-readers", 21)}},
			{Name: "only-ghosts", Site: &config.Site{File: mainFile, Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("10.3.0.0/16")}, Line: 24,
				Allow: []config.Principal{pr("ghost", 26)}},
		},
		Files: []string{mainFile, dropFile},
	}
	p, err := Compile(cfg, testResolver())
	if err != nil {
		t.Fatalf("Compile: %v; names that do not resolve are no error", err)
	}
	// Each endpoint keeps what resolves, and nothing for the rest.
	for i, want := range []Principals{uids(1000), uids(5), uids(1000, 1001, 1002, 1003), {}} {
		if got := p.Endpoints[i].Principals; !equalPrincipals(*got, want) {
			t.Errorf("%s: principals %v, want %v", p.Endpoints[i].Name, got, want)
		}
	}
	if d := p.Decide("eth0", Owner{UID: 1000}, addr("10.3.0.1")); d.Allowed {
		t.Errorf("an endpoint whose only name does not resolve allows uid 1000: %+v", d)
	}
	want := []struct {
		pos  config.Pos
		text string
	}{ // in the order of the endpoints and their allow lists
		{config.Pos{File: dropFile, Line: 6}, "ghost"},
		{config.Pos{File: dropFile, Line: 5}, "group:nogroup"},
		{config.Pos{File: mainFile, Line: 12}, "group:missing"},
		{config.Pos{File: mainFile, Line: 10}, "phantom"},
		{config.Pos{File: mainFile, Line: 26}, "ghost"},
	}
	if len(p.Unresolved) != len(want) {
		t.Fatalf("got %d unresolved, want %d: %v", len(p.Unresolved), len(want), p.Unresolved)
	}
	for i, w := range want {
		u := p.Unresolved[i]
		if u.Pos != w.pos || u.Principal != w.text || !u.Missing() {
			t.Errorf("unresolved %d = %+v, want %s at %v, missing", i, u, w.text, w.pos)
		}
		if s := u.String(); !strings.HasPrefix(s, w.text+" ("+w.pos.String()+") ") || !strings.HasSuffix(s, "does not exist") {
			t.Errorf("unresolved %d reads %q", i, s)
		}
	}

	// For check, each is an error: file:line, the principal quoted,
	// "unknown"; one line each.
	errs := p.UnresolvedErrors()
	errs.Sort(cfg.Files)
	sorted := []config.Pos{{File: mainFile, Line: 10}, {File: mainFile, Line: 12}, {File: mainFile, Line: 26}, {File: dropFile, Line: 5}, {File: dropFile, Line: 6}}
	if len(errs) != len(sorted) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(sorted), errs)
	}
	for i, pos := range sorted {
		if errs[i].Pos != pos {
			t.Errorf("error %d at %v, want %v (%s)", i, errs[i].Pos, pos, errs[i].Msg)
		}
		if !strings.Contains(errs[i].Msg, "unknown") || !strings.HasPrefix(errs[i].Msg, "allow \"") {
			t.Errorf("error %d %q does not quote the principal and say unknown", i, errs[i].Msg)
		}
	}
	if msg := errs.Error(); strings.Count(msg, "\n") != len(sorted)-1 || !strings.Contains(msg, mainFile+":26: allow \"ghost\": unknown user") {
		t.Errorf("error text:\n%s", msg)
	}
}

// resolverError fails every lookup with an error that is not ErrUnknown
// (an NSS backend that is down).
type resolverError struct{}

func (resolverError) User(string) (uint32, error)    { return 0, errors.New("nss backend down") }
func (resolverError) Group(string) ([]uint32, error) { return nil, errors.New("nss backend down") }

// NSS failing is not "does not exist": the name matches no one all the
// same, and says which it is.
func TestCompileResolverFailure(t *testing.T) {
	cfg := &config.Config{
		Endpoints: []*config.Endpoint{{Name: "ep", Site: &config.Site{Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")},
			Allow: []config.Principal{pr("alice", 3), pr("uid:1", 4), pr("group:g", 5), pr("*", 6)}}},
		Files: []string{mainFile},
	}
	p, err := Compile(cfg, resolverError{})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	if got := p.Endpoints[0].Principals; !equalPrincipals(*got, Principals{Everyone: true, UIDs: []uint32{1}}) {
		t.Errorf("principals = %v, want * and uid:1", got)
	}
	if len(p.Unresolved) != 2 || p.Unresolved[0].Pos.Line != 3 || p.Unresolved[1].Pos.Line != 5 {
		t.Fatalf("unresolved = %+v", p.Unresolved)
	}
	for _, u := range p.Unresolved {
		if u.Missing() {
			t.Errorf("%+v: NSS failing taken for a missing name", u)
		}
		if s := u.String(); !strings.HasSuffix(s, "NSS lookup failed: nss backend down") {
			t.Errorf("unresolved reads %q", s)
		}
		if e := u.ConfigError(); !strings.Contains(e.Msg, "nss backend down") || e.Pos != u.Pos {
			t.Errorf("as an error: %+v", e)
		}
	}

	// A principal kind the compiler does not know is an error, not a no-op.
	cfg.Endpoints[0].Allow = []config.Principal{{Kind: config.PrincipalKind(99), Text: "weird", Line: 7}}
	_, err = Compile(cfg, testResolver())
	var errs config.Errors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Pos.Line != 7 {
		t.Errorf("unknown principal kind: err = %v", err)
	}
}

// Resolve asks NSS again for a compiled policy: members that changed
// without any file event (LDAP, SSSD), a user deleted, a group created.
func TestResolve(t *testing.T) {
	cfg := &config.Config{
		Endpoints: []*config.Endpoint{
			{Name: "imds", Site: &config.Site{Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("169.254.169.254/32")},
				Allow: allow(3, "alice", "carol", "group:readers", "uid:7")},
			{Name: "plain", Site: &config.Site{Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")}, Allow: allow(9, "uid:5", "*")},
		},
		Interfaces: map[string]config.Interface{"eth0": {Default: config.Allow}},
		Files:      []string{mainFile},
	}
	r := fakeResolver{users: map[string]uint32{"alice": 1000, "carol": 1005}, groups: map[string][]uint32{}}
	p, err := Compile(cfg, r)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Endpoints[0].Principals; !equalPrincipals(*got, uids(7, 1000, 1005)) || len(p.Unresolved) != 1 {
		t.Fatalf("compiled: %v, unresolved %v", got, p.Unresolved)
	}
	if again := p.Resolve(r); !again.Equal(p) || len(again.Unresolved) != 1 {
		t.Errorf("resolved again with nothing changed: %+v, want equal", again)
	}

	tests := []struct {
		name       string
		users      map[string]uint32
		groups     map[string][]uint32
		want       Principals
		unresolved []string
	}{
		{"group created", map[string]uint32{"alice": 1000, "carol": 1005}, map[string][]uint32{"readers": {1002}},
			uids(7, 1000, 1002, 1005), nil},
		// userdel carol; useradd dave, who gets carol's uid: no access.
		{"user deleted, uid reused", map[string]uint32{"alice": 1000, "dave": 1005}, map[string][]uint32{"readers": {1002}},
			uids(7, 1000, 1002), []string{"carol"}},
		{"members changed", map[string]uint32{"alice": 1000, "carol": 1005}, map[string][]uint32{"readers": {1003, 1004}},
			uids(7, 1000, 1003, 1004, 1005), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := p.Resolve(fakeResolver{users: tt.users, groups: tt.groups})
			if got := q.Endpoints[0].Principals; !equalPrincipals(*got, tt.want) {
				t.Errorf("principals = %v, want %v", got, tt.want)
			}
			var names []string
			for _, u := range q.Unresolved {
				names = append(names, u.Principal)
			}
			if !slices.Equal(names, tt.unresolved) {
				t.Errorf("unresolved = %q, want %q", names, tt.unresolved)
			}
			if !slices.Equal(q.Endpoints[0].AllowList(), p.Endpoints[0].AllowList()) || !equalPrincipals(*q.Endpoints[1].Principals, *p.Endpoints[1].Principals) {
				t.Errorf("resolved again: %+v, want the same allow lists", q.Endpoints)
			}
			if q.Equal(p) {
				t.Error("the new uids compare equal to the old")
			}
			// p is live in the daemon while q is made: untouched.
			if got := p.Endpoints[0].Principals; !equalPrincipals(*got, uids(7, 1000, 1005)) || len(p.Unresolved) != 1 {
				t.Errorf("Resolve changed the policy it started from: %v %v", got, p.Unresolved)
			}
		})
	}

	// NSS down: names match no one, for that reason.
	q := p.Resolve(resolverError{})
	if got := q.Endpoints[0].Principals; !equalPrincipals(*got, uids(7)) || len(q.Unresolved) != 3 || q.Unresolved[0].Missing() {
		t.Errorf("NSS down: %v, unresolved %+v", got, q.Unresolved)
	}

	// Nothing to resolve: the policy itself, and Named says so.
	plain := &config.Config{Endpoints: cfg.Endpoints[1:], Files: []string{mainFile}}
	pp, err := Compile(plain, r)
	if err != nil {
		t.Fatal(err)
	}
	if pp.Named() || !p.Named() {
		t.Errorf("Named: %v for uids and *, %v for names", pp.Named(), p.Named())
	}
	if pp.Resolve(resolverError{}) != pp {
		t.Error("Resolve of a policy without names made a new one")
	}
	// A policy not made by Compile has no names to resolve: its uids
	// stay.
	hand := &Policy{Endpoints: []Endpoint{{Endpoint: &config.Endpoint{Name: "x", Site: &config.Site{Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")}}, Principals: allowing(1)}}}
	if got := hand.Resolve(resolverError{}); got != hand {
		t.Errorf("Resolve of a hand-made policy: %+v", got)
	}
}

func TestCompileRootWarnings(t *testing.T) {
	imds := func(iface string, who ...string) *config.Endpoint {
		return &config.Endpoint{Name: "imds-" + iface, Site: &config.Site{Ifaces: []string{iface}},
			Ranges: []netip.Prefix{pfx("169.254.169.254/32"), pfx("fd00:ec2::254/128")}, Allow: allow(3, who...)}
	}
	nd := func(iface string, ranges []string, who ...string) *config.Endpoint {
		e := &config.Endpoint{Name: "nd-" + iface, Site: &config.Site{Ifaces: []string{iface}}, Allow: allow(10, who...)}
		for _, r := range ranges {
			e.Ranges = append(e.Ranges, pfx(r))
		}
		return e
	}
	ll := []string{"fe80::/10", "ff02::/16"}
	deny := config.Interface{Default: config.Deny}
	allowDef := config.Interface{Default: config.Allow}
	type want struct {
		iface   string   // named in the warning
		blocked []string // kernel destinations the warning names
	}
	both := []string{"ff02::1:ff00:1", "fe80::1"}
	tests := []struct {
		name      string
		endpoints []*config.Endpoint
		ifaces    map[string]config.Interface
		want      []want
	}{
		{"explicit deny, root not allowed", []*config.Endpoint{imds("eth0", "alice")},
			map[string]config.Interface{"eth0": deny}, []want{{"eth0", both}}},
		{"implicit deny, root not allowed", []*config.Endpoint{imds("eth0", "alice")},
			nil, []want{{"eth0", both}}},
		{"allow default", []*config.Endpoint{imds("eth0", "alice")},
			map[string]config.Interface{"eth0": allowDef}, nil},
		{"allow default via glob", []*config.Endpoint{imds("eth0", "alice")},
			map[string]config.Interface{"eth*": allowDef}, nil},
		{"root allowed to fe80::/10 and ff02::/16 by uid", []*config.Endpoint{imds("eth0", "alice"), nd("eth0", ll, "uid:0")},
			map[string]config.Interface{"eth0": deny}, nil},
		{"root allowed by name", []*config.Endpoint{imds("eth0", "alice"), nd("eth0", ll, "root")},
			map[string]config.Interface{"eth0": deny}, nil},
		{"root allowed by group", []*config.Endpoint{imds("eth0", "alice"), nd("eth0", ll, "group:wheel")},
			map[string]config.Interface{"eth0": deny}, nil},
		{"root allowed by *", []*config.Endpoint{imds("eth0", "alice"), nd("eth0", ll, "*")},
			map[string]config.Interface{"eth0": deny}, nil},
		{"root allowed to ::/0", []*config.Endpoint{imds("eth0", "alice"), nd("eth0", []string{"::/0"}, "uid:0")},
			map[string]config.Interface{"eth0": deny}, nil},
		{"root allowed through a glob endpoint", []*config.Endpoint{imds("eth0", "alice"), nd("eth*", ll, "uid:0")},
			map[string]config.Interface{"eth0": deny}, nil},
		{"only fe80::/10", []*config.Endpoint{nd("eth0", []string{"fe80::/10"}, "uid:0")},
			nil, []want{{"eth0", []string{"ff02::1:ff00:1"}}}},
		{"only ff02::/16", []*config.Endpoint{nd("eth0", []string{"ff02::/16"}, "uid:0")},
			nil, []want{{"eth0", []string{"fe80::1"}}}},
		{"unowned is not root", []*config.Endpoint{nd("eth0", ll, "unowned")},
			nil, []want{{"eth0", both}}},
		{"carve-out inside fe80::/10 without root", []*config.Endpoint{
			nd("eth0", ll, "uid:0"),
			{Name: "carve", Site: &config.Site{Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("fe80::/64")}, Allow: allow(20, "alice")}},
			nil, []want{{"eth0", []string{"fe80::1"}}}},
		{"root allowed on eth0 only", []*config.Endpoint{nd("eth0", ll, "uid:0"), imds("eth1", "alice")},
			nil, []want{{"eth1", both}}},
		{"two deny interfaces", []*config.Endpoint{imds("eth0", "alice"), imds("eth1", "bob")},
			map[string]config.Interface{"eth0": deny, "eth1": deny, "eth2": allowDef}, []want{{"eth0", both}, {"eth1", both}}},
		{"deny glob key with nothing for root", []*config.Endpoint{nd("eth0", ll, "uid:0")},
			map[string]config.Interface{"*": deny}, []want{{"*", both}}},
		{"deny glob key, allow everywhere else", []*config.Endpoint{nd("eth0", ll, "uid:0")},
			map[string]config.Interface{"*": allowDef, "eth0": deny}, nil},
		{"no endpoints, no interfaces", nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &config.Config{Endpoints: tt.endpoints, Interfaces: tt.ifaces, Files: []string{mainFile}}
			p, err := Compile(cfg, testResolver())
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			if len(p.Warnings) != len(tt.want) {
				t.Fatalf("got %d warnings, want %d: %q", len(p.Warnings), len(tt.want), p.Warnings)
			}
			used := make([]bool, len(p.Warnings))
		next:
			for _, w := range tt.want {
				for i, msg := range p.Warnings {
					if used[i] || !strings.Contains(msg, "interface "+w.iface+":") {
						continue
					}
					used[i] = true
					for _, b := range w.blocked {
						if !strings.Contains(msg, b) {
							t.Errorf("warning %q does not name %s", msg, b)
						}
					}
					if !strings.Contains(msg, "root") {
						t.Errorf("warning %q does not mention root", msg)
					}
					continue next
				}
				t.Errorf("no warning names interface %s: %q", w.iface, p.Warnings)
			}
		})
	}
}
