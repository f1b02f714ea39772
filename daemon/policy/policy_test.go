// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

func uids(u ...uint32) Principals { return Principals{UIDs: u} }

// allowing is uids for an endpoint, which holds its principals by pointer.
func allowing(u ...uint32) *Principals { return &Principals{UIDs: u} }

// withCgroups is p allowing the cgroup paths as well.
func withCgroups(p Principals, paths ...string) Principals {
	p.setCgroups(paths)
	return p
}

// TestPrincipalsSize: a compiled policy keeps one Principals per endpoint
// whose allow list needed resolving, a million at the scale issue 19
// measures; a field added costs that much again.
func TestPrincipalsSize(t *testing.T) {
	if n := unsafe.Sizeof(Principals{}); n != 40 {
		t.Errorf("Principals is %d bytes, want 40", n)
	}
}

// The cgroup paths are kept sorted and unique, nil when there are none,
// and a list that names none says so with nil.
func TestSetCgroups(t *testing.T) {
	var p Principals
	p.setCgroups([]string{"/b", "/a", "/b"})
	if got := p.Cgroups(); !slices.Equal(got, []string{"/a", "/b"}) {
		t.Errorf("Cgroups() = %q", got)
	}
	p.setCgroups(nil)
	if p.Cgroups() != nil || p.cgroups != nil {
		t.Errorf("no paths: Cgroups() = %q", p.Cgroups())
	}
}

func TestMatchIface(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		// exact names
		{"eth0", "eth0", true},
		{"eth0", "eth1", false},
		{"eth0", "eth01", false},
		{"eth0", "eth", false},
		{"", "eth0", false},
		{"wg0", "wg0", true},
		// eth*
		{"eth*", "eth0", true},
		{"eth*", "eth", true},
		{"eth*", "eth10.100", true},
		{"eth*", "veth0", false},
		{"eth*", "wlan0", false},
		// *
		{"*", "eth0", true},
		{"*", "wg0", true},
		{"*", "ens5", true},
		// ?
		{"eth?", "eth1", true},
		{"eth?", "eth10", false},
		{"eth?", "eth", false},
		{"?", "a", true},
		// [...]
		{"eth[0-2]", "eth1", true},
		{"eth[0-2]", "eth3", false},
		{"eth[^0]", "eth1", true},
		{"eth[^0]", "eth0", false},
		{"ens[3-5]*", "ens4f0", true},
		// malformed glob never matches
		{"eth[", "eth0", false},
		// lo: only by exact name
		{"lo", "lo", true},
		{"*", "lo", false},
		{"l?", "lo", false},
		{"lo*", "lo", false},
		{"[l]o", "lo", false},
		{"?o", "lo", false},
		{"*o", "lo", false},
		// a glob may match names that only start with lo
		{"lo*", "lo0", true},
	}
	for _, tt := range tests {
		if got := MatchIface(tt.pattern, tt.name); got != tt.want {
			t.Errorf("MatchIface(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestFilteredAndDefault(t *testing.T) {
	p := &Policy{
		Endpoints: []Endpoint{
			{Endpoint: &config.Endpoint{Name: "wg", Site: &config.Site{Ifaces: []string{"wg*"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")}}, Principals: allowing(1)},
			{Endpoint: &config.Endpoint{Name: "tun", Site: &config.Site{Ifaces: []string{"tun0"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")}}, Principals: allowing(1)},
		},
		// sorted by pattern, as Compile leaves them
		Interfaces: []IfaceSetting{
			{Pattern: "*", Default: Deny},
			{Pattern: "e*", Default: Deny},
			{Pattern: "ens*", Default: Deny},
			{Pattern: "ens?", Default: Allow},
			{Pattern: "eth*", Default: Allow},
			{Pattern: "eth0", Default: Deny},
			{Pattern: "eth0*", Default: Allow},
			{Pattern: "eth1.*", Default: Deny},
			{Pattern: "wg1", Default: Allow},
		},
	}
	tests := []struct {
		name     string
		filtered bool
		def      Action
	}{
		{"eth0", true, Deny},     // exact beats the longer glob eth0*
		{"eth01", true, Allow},   // eth0* (5) beats eth* (4)
		{"eth1", true, Allow},    // eth* beats e* and *
		{"eth1.100", true, Deny}, // eth1.* (6) beats eth* (4)
		{"ens5", true, Deny},     // ens* and ens? tie in length: lexically first (ens*)
		{"ens10", true, Deny},    // only ens* among the ens globs
		{"enp0s3", true, Deny},   // e*
		{"wlan0", true, Deny},    // *
		{"wg0", true, Deny},      // "*" key (and endpoint)
		{"wg1", true, Allow},     // exact key
		{"lo", false, Deny},      // no glob matches lo
	}
	for _, tt := range tests {
		if got := p.Filtered(tt.name); got != tt.filtered {
			t.Errorf("Filtered(%q) = %v, want %v", tt.name, got, tt.filtered)
		}
		if got := p.Default(tt.name); got != tt.def {
			t.Errorf("Default(%q) = %q, want %q", tt.name, got, tt.def)
		}
	}

	// Without interfaces: keys, endpoints alone decide what is filtered, and
	// the default is deny.
	q := &Policy{Endpoints: p.Endpoints}
	for _, tt := range []struct {
		name     string
		filtered bool
	}{
		{"wg0", true},
		{"wg", true},
		{"tun0", true},
		{"tun1", false},
		{"eth0", false},
		{"lo", false},
	} {
		if got := q.Filtered(tt.name); got != tt.filtered {
			t.Errorf("endpoints only: Filtered(%q) = %v, want %v", tt.name, got, tt.filtered)
		}
		if got := q.Default(tt.name); got != Deny {
			t.Errorf("endpoints only: Default(%q) = %q, want deny", tt.name, got)
		}
	}

	// An interfaces: key alone (no endpoint) filters an interface.
	r := &Policy{Interfaces: []IfaceSetting{{Pattern: "eth0", Default: Allow}}}
	if !r.Filtered("eth0") || r.Default("eth0") != Allow {
		t.Errorf("interfaces key only: Filtered(eth0)=%v Default(eth0)=%q, want true allow", r.Filtered("eth0"), r.Default("eth0"))
	}
	if r.Filtered("eth1") {
		t.Errorf("interfaces key only: eth1 filtered")
	}

	// lo is filtered when named, by a key or by an endpoint.
	l := &Policy{Interfaces: []IfaceSetting{{Pattern: "*", Default: Allow}, {Pattern: "lo", Default: Allow}}}
	if !l.Filtered("lo") || l.Default("lo") != Allow {
		t.Errorf("lo named: Filtered=%v Default=%q, want true allow", l.Filtered("lo"), l.Default("lo"))
	}
	le := &Policy{Endpoints: []Endpoint{{Endpoint: &config.Endpoint{Name: "x", Site: &config.Site{Ifaces: []string{"*", "lo"}}}}}}
	if !le.Filtered("lo") {
		t.Errorf("endpoint naming lo: lo not filtered")
	}
	star := &Policy{Endpoints: []Endpoint{{Endpoint: &config.Endpoint{Name: "x", Site: &config.Site{Ifaces: []string{"*"}}}}}}
	if star.Filtered("lo") || !star.Filtered("eth0") {
		t.Errorf("endpoint iface *: Filtered(lo)=%v Filtered(eth0)=%v, want false true", star.Filtered("lo"), star.Filtered("eth0"))
	}
}

// decidePolicy is the fixture of TestDecide.
func decidePolicy() *Policy {
	return &Policy{
		Endpoints: []Endpoint{
			{Endpoint: &config.Endpoint{Name: "imds-wide", Site: &config.Site{Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("169.254.0.0/16"), pfx("fd00:ec2::/32")}}, Principals: &Principals{Everyone: true}},
			{Endpoint: &config.Endpoint{Name: "imds", Site: &config.Site{Ifaces: []string{"eth*"}}, Ranges: []netip.Prefix{pfx("169.254.169.254/32"), pfx("fd00:ec2::254/128")}}, Principals: allowing(1000)},
			{Endpoint: &config.Endpoint{Name: "imds-extra", Site: &config.Site{Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("169.254.169.254/32")}}, Principals: allowing(1001, 1002)},
			{Endpoint: &config.Endpoint{Name: "v6all", Site: &config.Site{Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("::/0")}}, Principals: allowing(2000)},
			{Endpoint: &config.Endpoint{Name: "fwd", Site: &config.Site{Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")}}, Principals: &Principals{Unowned: true}},
			{Endpoint: &config.Endpoint{Name: "wg", Site: &config.Site{Ifaces: []string{"wg0"}}, Ranges: []netip.Prefix{pfx("0.0.0.0/0")}}, Principals: allowing(3000)},
			{Endpoint: &config.Endpoint{Name: "any", Site: &config.Site{Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("192.0.2.0/24")}}, Principals: &Principals{Everyone: true}},
			{Endpoint: &config.Endpoint{Name: "nobody-user", Site: &config.Site{Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("198.51.100.0/24")}}, Principals: allowing(65534)},
			{Endpoint: &config.Endpoint{Name: "root-ll", Site: &config.Site{Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("fe80::/10")}}, Principals: allowing(0)},
			{Endpoint: &config.Endpoint{Name: "all-kinds", Site: &config.Site{Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("203.0.113.0/24")}}, Principals: &Principals{Everyone: true, Unowned: true}},
		},
		Interfaces: []IfaceSetting{
			{Pattern: "eth0", Default: Deny},
			{Pattern: "eth1", Default: Allow},
		},
	}
}

func TestDecide(t *testing.T) {
	p := decidePolicy()
	user := func(u uint32) Owner { return Owner{UID: u} }
	unowned := Owner{Unowned: true}
	none := netip.Prefix{}
	tests := []struct {
		name      string
		iface     string
		owner     Owner
		dst       string
		allowed   bool
		filtered  bool
		rng       netip.Prefix
		endpoints []string
	}{
		// longest prefix wins, IPv4 carve-out
		{"v4 carve-out, listed uid", "eth0", user(1000), "169.254.169.254", true, true, pfx("169.254.169.254/32"), []string{"imds", "imds-extra"}},
		{"v4 carve-out, merged uid", "eth0", user(1001), "169.254.169.254", true, true, pfx("169.254.169.254/32"), []string{"imds", "imds-extra"}},
		{"v4 carve-out, merged uid 2", "eth0", user(1002), "169.254.169.254", true, true, pfx("169.254.169.254/32"), []string{"imds", "imds-extra"}},
		{"v4 carve-out beats wider *", "eth0", user(1003), "169.254.169.254", false, true, pfx("169.254.169.254/32"), []string{"imds", "imds-extra"}},
		{"v4 carve-out, root not listed", "eth0", user(0), "169.254.169.254", false, true, pfx("169.254.169.254/32"), []string{"imds", "imds-extra"}},
		{"v4 wider range outside carve-out", "eth0", user(1003), "169.254.1.1", true, true, pfx("169.254.0.0/16"), []string{"imds-wide"}},
		{"v4 wider range, unowned not in *", "eth0", unowned, "169.254.1.1", false, true, pfx("169.254.0.0/16"), []string{"imds-wide"}},
		// longest prefix wins, IPv6 carve-out
		{"v6 carve-out, listed uid", "eth0", user(1000), "fd00:ec2::254", true, true, pfx("fd00:ec2::254/128"), []string{"imds"}},
		{"v6 carve-out beats /32 and ::/0", "eth0", user(2000), "fd00:ec2::254", false, true, pfx("fd00:ec2::254/128"), []string{"imds"}},
		{"v6 carve-out, v4-only endpoint not merged", "eth0", user(1001), "fd00:ec2::254", false, true, pfx("fd00:ec2::254/128"), []string{"imds"}},
		{"v6 /32 beats ::/0", "eth0", user(1003), "fd00:ec2::1", true, true, pfx("fd00:ec2::/32"), []string{"imds-wide"}},
		{"v6 ::/0", "eth0", user(2000), "2001:db8::1", true, true, pfx("::/0"), []string{"v6all"}},
		{"v6 ::/0 other uid", "eth0", user(1000), "2001:db8::1", false, true, pfx("::/0"), []string{"v6all"}},
		// link-local with a zone
		{"zoned link-local", "eth0", user(0), "fe80::1%eth0", true, true, pfx("fe80::/10"), []string{"root-ll"}},
		{"zoned link-local other uid", "eth0", user(1000), "fe80::1%eth0", false, true, pfx("fe80::/10"), []string{"root-ll"}},
		// endpoints of other interfaces do not apply
		{"eth1: eth0-only endpoint not merged", "eth1", user(1001), "169.254.169.254", false, true, pfx("169.254.169.254/32"), []string{"imds"}},
		{"eth1: glob endpoint applies", "eth1", user(1000), "169.254.169.254", true, true, pfx("169.254.169.254/32"), []string{"imds"}},
		{"eth1: eth0-only wide range absent, default allow", "eth1", user(1003), "169.254.1.1", true, true, none, nil},
		{"eth0: wg0 endpoint does not apply", "eth0", user(3000), "8.8.8.8", false, true, none, nil},
		{"wg0: its own endpoint", "wg0", user(3000), "8.8.8.8", true, true, pfx("0.0.0.0/0"), []string{"wg"}},
		{"wg0: other uid", "wg0", user(1000), "8.8.8.8", false, true, pfx("0.0.0.0/0"), []string{"wg"}},
		{"wg0: 0.0.0.0/0 does not cover IPv6, default deny", "wg0", user(3000), "2001:db8::1", false, true, none, nil},
		{"eth2: only the eth* endpoint, default deny", "eth2", user(1003), "8.8.8.8", false, true, none, nil},
		// default allow vs deny
		{"default deny", "eth0", user(1000), "8.8.8.8", false, true, none, nil},
		{"default allow", "eth1", user(1000), "8.8.8.8", true, true, none, nil},
		{"default allow, unowned", "eth1", unowned, "8.8.8.8", true, true, none, nil},
		{"default deny, root", "eth0", user(0), "8.8.8.8", false, true, none, nil},
		// IPv4-mapped IPv6 destinations are judged as IPv4
		{"mapped imds, listed uid", "eth0", user(1000), "::ffff:169.254.169.254", true, true, pfx("169.254.169.254/32"), []string{"imds", "imds-extra"}},
		{"mapped imds, ::/0 uid not allowed", "eth0", user(2000), "::ffff:169.254.169.254", false, true, pfx("169.254.169.254/32"), []string{"imds", "imds-extra"}},
		{"mapped, not matched by ::/0", "eth0", user(2000), "::ffff:8.8.8.8", false, true, none, nil},
		{"mapped, wide v4 range", "eth0", user(2000), "::ffff:169.254.1.1", true, true, pfx("169.254.0.0/16"), []string{"imds-wide"}},
		{"mapped on wg0, v4 0.0.0.0/0", "wg0", user(3000), "::ffff:8.8.8.8", true, true, pfx("0.0.0.0/0"), []string{"wg"}},
		// "*" allows every uid, never unowned
		{"* allows root", "eth0", user(0), "192.0.2.7", true, true, pfx("192.0.2.0/24"), []string{"any"}},
		{"* allows nobody", "eth0", user(65534), "192.0.2.7", true, true, pfx("192.0.2.0/24"), []string{"any"}},
		{"* allows uid 1000", "eth0", user(1000), "192.0.2.7", true, true, pfx("192.0.2.0/24"), []string{"any"}},
		{"* allows max uid", "eth0", user(4294967294), "192.0.2.7", true, true, pfx("192.0.2.0/24"), []string{"any"}},
		{"* does not allow unowned", "eth0", unowned, "192.0.2.7", false, true, pfx("192.0.2.0/24"), []string{"any"}},
		{"* + unowned allows unowned", "eth0", unowned, "203.0.113.9", true, true, pfx("203.0.113.0/24"), []string{"all-kinds"}},
		{"* + unowned allows root", "eth0", user(0), "203.0.113.9", true, true, pfx("203.0.113.0/24"), []string{"all-kinds"}},
		// unowned allows only unowned
		{"unowned allows unowned", "eth0", unowned, "10.1.2.3", true, true, pfx("10.0.0.0/8"), []string{"fwd"}},
		{"unowned does not allow root", "eth0", user(0), "10.1.2.3", false, true, pfx("10.0.0.0/8"), []string{"fwd"}},
		{"unowned does not allow uid", "eth0", user(1000), "10.1.2.3", false, true, pfx("10.0.0.0/8"), []string{"fwd"}},
		{"unowned does not allow nobody", "eth0", user(65534), "10.1.2.3", false, true, pfx("10.0.0.0/8"), []string{"fwd"}},
		// uid 65534 is a plain user
		{"nobody listed", "eth0", user(65534), "198.51.100.1", true, true, pfx("198.51.100.0/24"), []string{"nobody-user"}},
		{"nobody listed, other uid", "eth0", user(1000), "198.51.100.1", false, true, pfx("198.51.100.0/24"), []string{"nobody-user"}},
		{"nobody listed, unowned", "eth0", unowned, "198.51.100.1", false, true, pfx("198.51.100.0/24"), []string{"nobody-user"}},
		{"nobody listed, root", "eth0", user(0), "198.51.100.1", false, true, pfx("198.51.100.0/24"), []string{"nobody-user"}},
		// unfiltered interfaces
		{"unfiltered interface", "ens3", user(1003), "169.254.169.254", true, false, none, nil},
		{"unfiltered interface, unowned", "ens3", unowned, "8.8.8.8", true, false, none, nil},
		{"lo unfiltered", "lo", user(1003), "169.254.169.254", true, false, none, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(tt.iface, tt.owner, addr(tt.dst))
			if d.Allowed != tt.allowed || d.Filtered != tt.filtered || d.Range != tt.rng || !slices.Equal(d.Endpoints, tt.endpoints) {
				t.Errorf("Decide(%s, %v, %s) = {Allowed:%v Filtered:%v Range:%v Endpoints:%q}, want {Allowed:%v Filtered:%v Range:%v Endpoints:%q} (reason %q)",
					tt.iface, tt.owner, tt.dst, d.Allowed, d.Filtered, d.Range, d.Endpoints,
					tt.allowed, tt.filtered, tt.rng, tt.endpoints, d.Reason)
			}
			if d.Reason == "" {
				t.Fatalf("empty Reason")
			}
			switch {
			case !tt.filtered:
				if !strings.Contains(d.Reason, tt.iface) || !strings.Contains(d.Reason, "not filtered") {
					t.Errorf("Reason %q does not say that %s is not filtered", d.Reason, tt.iface)
				}
			case tt.rng.IsValid():
				if !strings.Contains(d.Reason, tt.rng.String()) {
					t.Errorf("Reason %q does not name range %s", d.Reason, tt.rng)
				}
				for _, e := range tt.endpoints {
					if !strings.Contains(d.Reason, e) {
						t.Errorf("Reason %q does not name endpoint %s", d.Reason, e)
					}
				}
				if !strings.Contains(d.Reason, tt.owner.String()) {
					t.Errorf("Reason %q does not name owner %s", d.Reason, tt.owner)
				}
			default:
				def := "deny"
				if tt.allowed {
					def = "allow"
				}
				if !strings.Contains(d.Reason, "default "+def) || !strings.Contains(d.Reason, tt.iface) {
					t.Errorf("Reason %q does not name default %s on %s", d.Reason, def, tt.iface)
				}
			}
		})
	}
}

func TestDecideSamePrefixMerge(t *testing.T) {
	// Three endpoints name the same prefix, in no particular order; one names
	// it twice. Principals merge, every endpoint is named once, sorted.
	p := &Policy{Endpoints: []Endpoint{
		{Endpoint: &config.Endpoint{Name: "zeta", Site: &config.Site{Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("fd00::/64"), pfx("fd00::/64")}}, Principals: allowing(7)},
		{Endpoint: &config.Endpoint{Name: "alpha", Site: &config.Site{Ifaces: []string{"eth*"}}, Ranges: []netip.Prefix{pfx("fd00::/64")}}, Principals: &Principals{Unowned: true}},
		{Endpoint: &config.Endpoint{Name: "mid", Site: &config.Site{Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("fd00::/64")}}, Principals: allowing(3, 7)},
		{Endpoint: &config.Endpoint{Name: "other", Site: &config.Site{Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("fd00::/63")}}, Principals: allowing(9)},
	}}
	want := []string{"alpha", "mid", "zeta"}
	for _, tt := range []struct {
		o    Owner
		want bool
	}{
		{Owner{UID: 3}, true},
		{Owner{UID: 7}, true},
		{Owner{Unowned: true}, true},
		{Owner{UID: 9}, false}, // only on the shorter /63
		{Owner{UID: 0}, false},
	} {
		d := p.Decide("eth0", tt.o, addr("fd00::5"))
		if d.Allowed != tt.want || d.Range != pfx("fd00::/64") || !slices.Equal(d.Endpoints, want) {
			t.Errorf("Decide(eth0, %v, fd00::5) = %+v, want Allowed=%v Range=fd00::/64 Endpoints=%q", tt.o, d, tt.want, want)
		}
		for _, n := range want {
			if !strings.Contains(d.Reason, n) {
				t.Errorf("Reason %q does not name endpoint %s", d.Reason, n)
			}
		}
	}
	// On eth1 only alpha applies.
	d := p.Decide("eth1", Owner{UID: 7}, addr("fd00::5"))
	if d.Allowed || !slices.Equal(d.Endpoints, []string{"alpha"}) {
		t.Errorf("Decide(eth1, uid:7) = %+v, want denied by alpha only", d)
	}
	// Decide must not modify the policy it reads (union must not write into
	// an endpoint's UIDs).
	if !slices.Equal(p.Endpoints[0].Principals.UIDs, []uint32{7}) || !slices.Equal(p.Endpoints[2].Principals.UIDs, []uint32{3, 7}) {
		t.Errorf("Decide modified endpoint principals: %v %v", p.Endpoints[0].Principals, p.Endpoints[2].Principals)
	}
}

func equalPrincipals(a, b Principals) bool {
	return a.Everyone == b.Everyone && a.Unowned == b.Unowned && slices.Equal(a.UIDs, b.UIDs) && slices.Equal(a.Cgroups(), b.Cgroups())
}

func equalTables(a, b Table) bool {
	if a.Default != b.Default || len(a.Entries) != len(b.Entries) {
		return false
	}
	for i := range a.Entries {
		x, y := a.Entries[i], b.Entries[i]
		if x.Prefix != y.Prefix || !slices.Equal(x.Endpoints, y.Endpoints) || !equalPrincipals(x.Principals, y.Principals) {
			return false
		}
	}
	return true
}

func tablePolicy() *Policy {
	return &Policy{
		Endpoints: []Endpoint{
			{Endpoint: &config.Endpoint{Name: "b", Site: &config.Site{Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("fd00::/8"), pfx("10.0.0.0/8"), pfx("10.0.0.0/8")}}, Principals: allowing(3, 7)},
			{Endpoint: &config.Endpoint{Name: "a", Site: &config.Site{Ifaces: []string{"eth*"}}, Ranges: []netip.Prefix{pfx("192.0.2.1/32"), pfx("10.0.0.0/16"), pfx("10.0.0.0/8")}}, Principals: &Principals{Unowned: true, UIDs: []uint32{5, 7}}},
			{Endpoint: &config.Endpoint{Name: "c", Site: &config.Site{Ifaces: []string{"wg0"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")}}, Principals: &Principals{Everyone: true}},
			{Endpoint: &config.Endpoint{Name: "d", Site: &config.Site{Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("2001:db8::/32"), pfx("9.0.0.0/8")}}, Principals: &Principals{Everyone: true}},
		},
		Interfaces: []IfaceSetting{
			{Pattern: "eth0", Default: Allow},
			{Pattern: "veth*", Default: Deny},
		},
	}
}

func TestTable(t *testing.T) {
	p := tablePolicy()
	aP := Principals{Unowned: true, UIDs: []uint32{5, 7}}
	tests := []struct {
		iface string
		ok    bool
		want  Table
	}{
		{"eth0", true, Table{Default: Allow, Entries: []Entry{
			{Prefix: pfx("9.0.0.0/8"), Endpoints: []string{"d"}, Principals: Principals{Everyone: true}},
			{Prefix: pfx("10.0.0.0/8"), Endpoints: []string{"a", "b"}, Principals: Principals{Unowned: true, UIDs: []uint32{3, 5, 7}}},
			{Prefix: pfx("10.0.0.0/16"), Endpoints: []string{"a"}, Principals: aP},
			{Prefix: pfx("192.0.2.1/32"), Endpoints: []string{"a"}, Principals: aP},
			{Prefix: pfx("2001:db8::/32"), Endpoints: []string{"d"}, Principals: Principals{Everyone: true}},
			{Prefix: pfx("fd00::/8"), Endpoints: []string{"b"}, Principals: uids(3, 7)},
		}}},
		{"eth1", true, Table{Default: Deny, Entries: []Entry{
			{Prefix: pfx("10.0.0.0/8"), Endpoints: []string{"a"}, Principals: aP},
			{Prefix: pfx("10.0.0.0/16"), Endpoints: []string{"a"}, Principals: aP},
			{Prefix: pfx("192.0.2.1/32"), Endpoints: []string{"a"}, Principals: aP},
		}}},
		{"wg0", true, Table{Default: Deny, Entries: []Entry{
			{Prefix: pfx("10.0.0.0/8"), Endpoints: []string{"c"}, Principals: Principals{Everyone: true}},
		}}},
		{"veth0", true, Table{Default: Deny}},
		{"ens3", false, Table{}},
		{"lo", false, Table{}},
	}
	// Entries are sorted by address (IPv4 before IPv6), then prefix length.
	for _, tt := range tests {
		got, ok := p.Table(tt.iface)
		if ok != tt.ok {
			t.Errorf("Table(%s) ok = %v, want %v", tt.iface, ok, tt.ok)
			continue
		}
		if !equalTables(got, tt.want) {
			t.Errorf("Table(%s) =\n  %+v\nwant\n  %+v", tt.iface, got, tt.want)
		}
	}

	// Table must not modify the policy.
	if !slices.Equal(p.Endpoints[0].Principals.UIDs, []uint32{3, 7}) || !slices.Equal(p.Endpoints[1].Principals.UIDs, []uint32{5, 7}) {
		t.Errorf("Table modified endpoint principals: %v %v", p.Endpoints[0].Principals, p.Endpoints[1].Principals)
	}

	// The table of an interface does not depend on the order of endpoints.
	q := tablePolicy()
	slices.Reverse(q.Endpoints)
	for _, iface := range []string{"eth0", "eth1", "wg0", "veth0"} {
		a, _ := p.Table(iface)
		b, _ := q.Table(iface)
		if !equalTables(a, b) {
			t.Errorf("Table(%s) depends on endpoint order:\n  %+v\n  %+v", iface, a, b)
		}
	}
	// Interfaces with equal keys share a table: their tables must be equal.
	ifaces := []string{"eth0", "eth1", "eth2", "wg0", "veth0"}
	for _, x := range ifaces {
		for _, y := range ifaces {
			tx, _ := p.Table(x)
			ty, _ := p.Table(y)
			if p.TableKey(x) == p.TableKey(y) && !equalTables(tx, ty) {
				t.Errorf("%s and %s have the key %q but different tables", x, y, p.TableKey(x))
			}
		}
	}
	if p.TableKey("eth1") != p.TableKey("eth2") {
		t.Errorf("eth1 and eth2 have the same endpoints and default but keys %q and %q", p.TableKey("eth1"), p.TableKey("eth2"))
	}
	if p.TableKey("eth0") == p.TableKey("eth1") {
		t.Errorf("eth0 and eth1 have different tables but the same key %q", p.TableKey("eth0"))
	}
}

func TestPrincipalsAllows(t *testing.T) {
	root, alice, nobody, maxUID := Owner{UID: 0}, Owner{UID: 1000}, Owner{UID: 65534}, Owner{UID: 4294967295}
	unowned := Owner{Unowned: true}
	unownedUID0 := Owner{UID: 0, Unowned: true} // UID is meaningless when unowned
	tests := []struct {
		name string
		p    Principals
		o    Owner
		want bool
	}{
		{"empty denies root", Principals{}, root, false},
		{"empty denies unowned", Principals{}, unowned, false},
		{"* root", Principals{Everyone: true}, root, true},
		{"* uid", Principals{Everyone: true}, alice, true},
		{"* nobody", Principals{Everyone: true}, nobody, true},
		{"* max uid", Principals{Everyone: true}, maxUID, true},
		{"* not unowned", Principals{Everyone: true}, unowned, false},
		{"* not unowned with uid 0", Principals{Everyone: true}, unownedUID0, false},
		{"unowned allows unowned", Principals{Unowned: true}, unowned, true},
		{"unowned allows unowned with uid 0", Principals{Unowned: true}, unownedUID0, true},
		{"unowned not root", Principals{Unowned: true}, root, false},
		{"unowned not nobody", Principals{Unowned: true}, nobody, false},
		{"uids listed first", uids(0, 1000, 65534), root, true},
		{"uids listed middle", uids(0, 1000, 65534), alice, true},
		{"uids listed last", uids(0, 1000, 65534), nobody, true},
		{"uids not listed", uids(0, 1000, 65534), Owner{UID: 1001}, false},
		{"uids not unowned", uids(0, 1000, 65534), unowned, false},
		{"uid 0 list not unowned uid 0", uids(0), unownedUID0, false},
		{"nobody is a plain user", uids(65534), alice, false},
		{"nobody listed", uids(65534), nobody, true},
		{"* + unowned: unowned", Principals{Everyone: true, Unowned: true}, unowned, true},
		{"* + unowned: uid", Principals{Everyone: true, Unowned: true}, alice, true},
		{"max uid listed", uids(4294967295), maxUID, true},
	}
	for _, tt := range tests {
		if got := tt.p.Allows(tt.o); got != tt.want {
			t.Errorf("%s: %v.Allows(%v) = %v, want %v", tt.name, tt.p, tt.o, got, tt.want)
		}
	}
}

func TestPrincipalsString(t *testing.T) {
	tests := []struct {
		p   Principals
		str string
	}{
		{Principals{}, "nobody"},
		{Principals{Everyone: true}, "*"},
		{Principals{Unowned: true}, "unowned"},
		{Principals{Everyone: true, Unowned: true}, "* unowned"},
		{uids(0, 1000), "uid:0 uid:1000"},
		{uids(12), "uid:12"},
		{uids(1, 2), "uid:1 uid:2"},
		{Principals{Unowned: true, UIDs: []uint32{5}}, "unowned uid:5"},
		{Principals{Everyone: true, Unowned: true, UIDs: []uint32{65534}}, "* unowned uid:65534"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.str {
			t.Errorf("%#v.String() = %q, want %q", tt.p, got, tt.str)
		}
	}
}

func TestOwnerString(t *testing.T) {
	for _, tt := range []struct {
		o    Owner
		want string
	}{
		{Owner{UID: 0}, "uid:0"},
		{Owner{UID: 65534}, "uid:65534"},
		{Owner{Unowned: true}, "unowned"},
		{Owner{UID: 5, Unowned: true}, "unowned"},
	} {
		if got := tt.o.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.o, got, tt.want)
		}
	}
}

func TestPrincipalsUnion(t *testing.T) {
	a := Principals{UIDs: []uint32{1, 5, 9}}
	b := Principals{Unowned: true, UIDs: []uint32{0, 5, 10}}
	got := a.union(b)
	want := Principals{Unowned: true, UIDs: []uint32{0, 1, 5, 9, 10}}
	if !equalPrincipals(got, want) {
		t.Errorf("union = %v, want %v", got, want)
	}
	if !slices.Equal(a.UIDs, []uint32{1, 5, 9}) || !slices.Equal(b.UIDs, []uint32{0, 5, 10}) {
		t.Errorf("union modified its operands: %v %v", a, b)
	}
	if got := (Principals{Everyone: true}).union(Principals{}); !got.Everyone || got.Unowned || len(got.UIDs) != 0 {
		t.Errorf("union with * = %v, want *", got)
	}
}

func TestRangeCount(t *testing.T) {
	if got := tablePolicy().RangeCount(); got != 9 {
		t.Errorf("RangeCount() = %d, want 9", got)
	}
	if got := (&Policy{}).RangeCount(); got != 0 {
		t.Errorf("empty RangeCount() = %d, want 0", got)
	}
}

// TestTableKeyOddEndpointNames: the encoder (package bpf) gives interfaces
// whose tables have equal keys one shared kernel table. An endpoint name the
// config accepts must not make two different tables share a key, or one
// interface is enforced with the other's ranges and principals.
func TestTableKeyOddEndpointNames(t *testing.T) {
	p := &Policy{Endpoints: []Endpoint{
		{Endpoint: &config.Endpoint{Name: "a,b:false/false,1,2|fd00::/8=c", Site: &config.Site{Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")}}, Principals: &Principals{Everyone: true}},
		{Endpoint: &config.Endpoint{Name: "a", Site: &config.Site{Ifaces: []string{"eth1"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")}}, Principals: allowing(1, 2)},
		{Endpoint: &config.Endpoint{Name: "b", Site: &config.Site{Ifaces: []string{"eth1"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")}}, Principals: allowing(1, 2)},
		{Endpoint: &config.Endpoint{Name: "c", Site: &config.Site{Ifaces: []string{"eth1"}}, Ranges: []netip.Prefix{pfx("fd00::/8")}}, Principals: &Principals{Everyone: true}},
	}}
	t0, _ := p.Table("eth0")
	t1, _ := p.Table("eth1")
	if equalTables(t0, t1) {
		t.Fatalf("fixture broken: tables are equal")
	}
	if p.TableKey("eth0") == p.TableKey("eth1") {
		t.Errorf("different tables of eth0 and eth1 share the key %q: the kernel would enforce one for both", p.TableKey("eth0"))
	}
	// The reference decision on eth1, which a shared table would contradict.
	if d := p.Decide("eth1", Owner{UID: 5}, addr("10.1.1.1")); d.Allowed {
		t.Errorf("uid:5 to 10.1.1.1 on eth1 allowed: %+v", d)
	}
}
