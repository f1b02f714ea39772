// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
)

// rejectPolicy has, on eth0 (deny: drop) and eth1 (no deny setting), a
// range of each `deny:` and two endpoints of one prefix that win together
// with different settings.
func rejectPolicy() *Policy {
	ep := func(name, r string, d config.DenyMode, p Principals) Endpoint {
		return Endpoint{Endpoint: &config.Endpoint{Name: name, Site: &config.Site{Ifaces: []string{"eth*"}}, Ranges: []netip.Prefix{pfx(r)}, Deny: d}, Principals: &p}
	}
	return &Policy{
		Endpoints: []Endpoint{
			ep("unset", "10.1.0.0/16", config.DenyUnset, uids(1000)),
			ep("reject", "10.2.0.0/16", config.DenyReject, uids(1000)),
			ep("drop", "10.3.0.0/16", config.DenyDrop, uids(1000)),
			ep("both-reject", "10.4.0.0/16", config.DenyReject, uids(1000)),
			ep("both-drop", "10.4.0.0/16", config.DenyDrop, uids(1001)),
			ep("unowned", "10.5.0.0/16", config.DenyReject, Principals{Unowned: true}),
		},
		Interfaces: []IfaceSetting{
			{Pattern: "eth0", Default: Deny, Drop: true},
			{Pattern: "eth1", Default: Deny},
			{Pattern: "eth2", Default: Allow, Drop: true},
		},
	}
}

// TestDecideReply checks SPEC §1 rule 4's choice between answering and
// dropping silently: the winners' deny, else the interface's; the default
// follows the interface; unowned and allowed packets are never answered.
func TestDecideReply(t *testing.T) {
	p := rejectPolicy()
	user := Owner{UID: 2000}
	tests := []struct {
		iface   string
		owner   Owner
		dst     string
		allowed bool
		reply   bool
	}{
		{"eth1", user, "10.1.0.1", false, true},  // nothing says drop: reject
		{"eth0", user, "10.1.0.1", false, false}, // the interface says drop
		{"eth0", user, "10.2.0.1", false, true},  // the endpoint's reject wins over the interface's drop
		{"eth1", user, "10.3.0.1", false, false}, // the endpoint says drop
		{"eth1", user, "10.4.0.1", false, false}, // one winner says drop
		{"eth1", Owner{UID: 1000}, "10.4.0.1", true, false},
		{"eth1", Owner{Unowned: true}, "10.1.0.1", false, false}, // unowned: always silent
		{"eth1", Owner{Unowned: true}, "10.5.0.1", true, false},
		{"eth1", user, "192.0.2.1", false, true},  // rule 5 on a reject interface
		{"eth0", user, "192.0.2.1", false, false}, // rule 5 follows the interface's drop
		{"eth2", user, "192.0.2.1", true, false},  // default allow
		{"eth2", user, "10.1.0.1", false, false},  // default-allow interface with drop
		{"eth3", user, "10.1.0.1", false, true},   // no interfaces: key at all
		{"wlan0", user, "10.1.0.1", true, false},  // not filtered
	}
	for _, tt := range tests {
		v := p.Decide(tt.iface, tt.owner, addr(tt.dst))
		if v.Allowed != tt.allowed || v.Reply != tt.reply {
			t.Errorf("Decide(%s, %s, %s) = allowed %v reply %v, want %v %v (%s)", tt.iface, tt.owner, tt.dst, v.Allowed, v.Reply, tt.allowed, tt.reply, v.Reason)
		}
		// The reason says so where deny: drop keeps a sender untold.
		silent := !tt.allowed && !tt.reply && !tt.owner.Unowned && v.Filtered
		if got := strings.HasSuffix(v.Reason, "; dropped silently (deny: drop)"); got != silent {
			t.Errorf("Decide(%s, %s, %s): reason %q, want the deny: drop note %v", tt.iface, tt.owner, tt.dst, v.Reason, silent)
		}
	}
}

// TestTableKeyDeny checks that interfaces that differ only in their deny
// setting do not share a kernel table: the table carries the resolved
// silence of every range.
func TestTableKeyDeny(t *testing.T) {
	p := rejectPolicy()
	if p.TableKey("eth0") == p.TableKey("eth1") {
		t.Errorf("eth0 (deny: drop) and eth1 share table key %q", p.TableKey("eth0"))
	}
	if p.TableKey("eth1") != p.TableKey("eth3") {
		t.Errorf("eth1 and eth3 (both reject, same endpoints) have table keys %q and %q", p.TableKey("eth1"), p.TableKey("eth3"))
	}
}

// TestEntriesDeny checks that table entries carry their endpoints' merged
// deny, and classes their winners'.
func TestEntriesDeny(t *testing.T) {
	p := rejectPolicy()
	got := map[netip.Prefix]config.DenyMode{}
	for e := range p.Entries("eth1") {
		got[e.Prefix] = e.Deny
	}
	want := map[netip.Prefix]config.DenyMode{
		pfx("10.1.0.0/16"): config.DenyUnset,
		pfx("10.2.0.0/16"): config.DenyReject,
		pfx("10.3.0.0/16"): config.DenyDrop,
		pfx("10.4.0.0/16"): config.DenyDrop,
		pfx("10.5.0.0/16"): config.DenyReject,
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("entry %s: deny %q, want %q", k, got[k], w)
		}
	}
	// Silent resolves each with the interface's: eth0 says drop.
	silent := map[string]map[netip.Prefix]bool{}
	for _, iface := range []string{"eth0", "eth1"} {
		silent[iface] = map[netip.Prefix]bool{}
		for e := range p.Entries(iface) {
			silent[iface][e.Prefix] = e.Silent
		}
	}
	for _, c := range []struct {
		iface  string
		prefix string
		want   bool
	}{
		{"eth0", "10.1.0.0/16", true}, {"eth1", "10.1.0.0/16", false},
		{"eth0", "10.2.0.0/16", false}, {"eth1", "10.3.0.0/16", true},
		{"eth1", "10.4.0.0/16", true}, {"eth0", "10.5.0.0/16", false},
	} {
		if got := silent[c.iface][pfx(c.prefix)]; got != c.want {
			t.Errorf("%s %s: Silent %v, want %v", c.iface, c.prefix, got, c.want)
		}
	}
	p.Endpoints = append(p.Endpoints, Endpoint{Endpoint: &config.Endpoint{Name: "dns", Site: &config.Site{Ifaces: []string{"eth*"}}, Ranges: []netip.Prefix{pfx("10.2.0.0/16")},
		Narrow: &config.Narrowing{Protos: []uint8{config.ProtoUDP}, Ports: []config.PortRange{{Lo: 53, Hi: 53}}}, Deny: config.DenyDrop}, Principals: &Principals{Everyone: true}})
	for _, c := range p.Classes("eth1", pfx("10.2.0.0/16")) {
		want := config.DenyReject
		if c.Proto == int(config.ProtoUDP) && (c.Lo == 53 || c.Fragment) { // a fragment matches every ports list
			want = config.DenyDrop
		}
		if c.Winners.Deny != want {
			t.Errorf("class %+v: deny %q, want %q", c, c.Winners.Deny, want)
		}
	}
}

// TestAuditedNeverAnswered checks that a packet that audit mode lets pass
// (SPEC §1 rules 4, 5) is never answered as if it were dropped, nor said
// to be dropped silently: the sender's connection goes through.
func TestAuditedNeverAnswered(t *testing.T) {
	p := rejectPolicy()
	p.Endpoints = append(p.Endpoints, Endpoint{Endpoint: &config.Endpoint{Name: "audited", Site: &config.Site{Ifaces: []string{"eth*"}},
		Ranges: []netip.Prefix{pfx("10.6.0.0/16")}, Deny: config.DenyReject, Audit: true}, Principals: allowing(1000)})
	p.Interfaces = append(p.Interfaces, IfaceSetting{Pattern: "eth4", Default: Deny, Audit: true})
	user := Owner{UID: 2000}
	for _, tt := range []struct {
		iface, dst   string
		audit, reply bool
	}{
		{"eth1", "10.6.0.1", true, false},   // an audited endpoint that says reject
		{"eth4", "192.0.2.1", true, false},  // an audited deny default
		{"eth4", "10.1.0.1", false, true},   // an enforcing endpoint on that interface
		{"eth0", "192.0.2.1", false, false}, // enforcing, deny: drop
	} {
		v := p.Decide(tt.iface, user, addr(tt.dst))
		if v.Allowed || v.Audit != tt.audit || v.Reply != tt.reply {
			t.Errorf("Decide(%s, %s) = allowed %v audit %v reply %v, want false %v %v (%s)", tt.iface, tt.dst, v.Allowed, v.Audit, v.Reply, tt.audit, tt.reply, v.Reason)
		}
		if tt.audit && strings.Contains(v.Reason, "dropped silently") {
			t.Errorf("Decide(%s, %s): an audited packet's reason %q says it is dropped", tt.iface, tt.dst, v.Reason)
		}
	}
}
