// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
)

// auditPolicy has an audited endpoint, an enforcing and an audited
// endpoint on one prefix (a mix), two audited ones on another, an
// audited default on eth1 and an enforcing one on eth0.
func auditPolicy() *Policy {
	return &Policy{
		Endpoints: []Endpoint{
			{Endpoint: &config.Endpoint{Name: "imds-rollout", Site: &config.Site{Ifaces: []string{"eth*"}}, Ranges: []netip.Prefix{pfx("169.254.169.254/32")}, Audit: true}, Principals: allowing(1001)},
			{Endpoint: &config.Endpoint{Name: "mix-enforce", Site: &config.Site{Ifaces: []string{"eth*"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")}}, Principals: allowing(1001)},
			{Endpoint: &config.Endpoint{Name: "mix-audit", Site: &config.Site{Ifaces: []string{"eth*"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")}, Audit: true}, Principals: allowing(1003)},
			{Endpoint: &config.Endpoint{Name: "both-a", Site: &config.Site{Ifaces: []string{"eth*"}}, Ranges: []netip.Prefix{pfx("192.0.2.0/24")}, Audit: true}, Principals: allowing(1001)},
			{Endpoint: &config.Endpoint{Name: "both-b", Site: &config.Site{Ifaces: []string{"eth*"}}, Ranges: []netip.Prefix{pfx("192.0.2.0/24")}, Audit: true}, Principals: allowing(1003)},
			// A longer enforcing prefix inside an audited one decides alone.
			{Endpoint: &config.Endpoint{Name: "inner", Site: &config.Site{Ifaces: []string{"eth*"}}, Ranges: []netip.Prefix{pfx("192.0.2.128/25")}}, Principals: allowing(1001)},
		},
		Interfaces: []IfaceSetting{
			{Pattern: "eth0", Default: Deny},
			{Pattern: "eth1", Default: Deny, Audit: true},
			{Pattern: "eth2", Default: Allow, Audit: true},
		},
	}
}

func TestDecideAudit(t *testing.T) {
	p := auditPolicy()
	tests := []struct {
		name           string
		iface          string
		uid            uint32
		dst            string
		allowed, audit bool
	}{
		{"rule4/all_winners_audit_passes_as_audit", "eth0", 1002, "169.254.169.254", false, true},
		{"rule4/allowed_owner_is_allow_not_audit", "eth0", 1001, "169.254.169.254", true, false},
		{"rule4/mixed_winners_enforce", "eth0", 1002, "10.1.2.3", false, false},
		{"rule4/mixed_winners_allow_either", "eth0", 1003, "10.1.2.3", true, false},
		{"rule4/two_audit_winners_audit", "eth0", 1002, "192.0.2.1", false, true},
		{"rule4/two_audit_winners_merge_principals", "eth0", 1003, "192.0.2.1", true, false},
		{"rule3/longer_enforcing_prefix_decides", "eth0", 1003, "192.0.2.200", false, false},
		{"rule5/enforcing_default_denies", "eth0", 1001, "198.51.100.1", false, false},
		{"rule5/audit_default", "eth1", 1001, "198.51.100.1", false, true},
		{"rule5/audit_default_endpoint_still_enforces", "eth1", 1002, "10.1.2.3", false, false},
		{"rule5/audit_on_allow_default_is_allow", "eth2", 1001, "198.51.100.1", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(tt.iface, Owner{UID: tt.uid}, addr(tt.dst))
			if d.Allowed != tt.allowed || d.Audit != tt.audit {
				t.Fatalf("Decide(%s, uid %d, %s) = allowed %v audit %v (%s), want allowed %v audit %v",
					tt.iface, tt.uid, tt.dst, d.Allowed, d.Audit, d.Reason, tt.allowed, tt.audit)
			}
			if d.Audit != strings.Contains(d.Reason, "mode: audit") {
				t.Errorf("reason %q does not say audit mode as it should (audit %v)", d.Reason, d.Audit)
			}
		})
	}
}

// TestEntriesAudit: an entry is audited only when every endpoint of its
// prefix is; classes carry it in their winners.
func TestEntriesAudit(t *testing.T) {
	p := auditPolicy()
	got := map[string]bool{}
	for e := range p.Entries("eth0") {
		got[e.Prefix.String()] = e.Audit
	}
	want := map[string]bool{"169.254.169.254/32": true, "10.0.0.0/8": false, "192.0.2.0/24": true, "192.0.2.128/25": false}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("entry %s: Audit = %v, want %v", k, got[k], v)
		}
	}
	q := &Policy{Endpoints: []Endpoint{
		{Endpoint: &config.Endpoint{Name: "dns", Site: &config.Site{Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")}, Narrow: &config.Narrowing{Protos: []uint8{17}}}, Principals: &Principals{Everyone: true}},
		{Endpoint: &config.Endpoint{Name: "rest", Site: &config.Site{Ifaces: []string{"eth0"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")}, Audit: true}, Principals: allowing(0)},
	}}
	classes := q.Classes("eth0", pfx("10.0.0.0/8"))
	i := slices.IndexFunc(classes, func(c Class) bool { return c.Proto == ProtoOther })
	if i < 0 || !classes[i].Winners.Audit {
		t.Errorf("class of other protocols: %+v, want audited winners (rest only)", classes)
	}
	j := slices.IndexFunc(classes, func(c Class) bool { return c.Proto == 17 && !c.Fragment && c.Hi == 0 })
	if j < 0 || classes[j].Winners.Audit {
		t.Errorf("udp class: %+v, want enforcing winners (dns)", classes)
	}
}

// TestTableKeyAuditMode: two interfaces with the same endpoints and
// default but different modes must not share a table.
func TestTableKeyAuditMode(t *testing.T) {
	p := &Policy{
		Endpoints:  []Endpoint{{Endpoint: &config.Endpoint{Name: "a", Site: &config.Site{Ifaces: []string{"*"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")}}}},
		Interfaces: []IfaceSetting{{Pattern: "eth0", Default: Deny}, {Pattern: "eth1", Default: Deny, Audit: true}, {Pattern: "eth2", Default: Deny}},
	}
	if p.TableKey("eth0") == p.TableKey("eth1") {
		t.Errorf("eth0 (enforce) and eth1 (audit) share table key %q", p.TableKey("eth0"))
	}
	if p.TableKey("eth0") != p.TableKey("eth2") {
		t.Errorf("eth0 and eth2 (both enforce) have keys %q and %q", p.TableKey("eth0"), p.TableKey("eth2"))
	}
}

func TestAuditWarnings(t *testing.T) {
	p := auditPolicy()
	w := p.auditWarnings()
	if len(w) != 1 || !strings.Contains(w[0], "interface eth2: mode: audit has no effect: its default is allow") {
		t.Errorf("auditWarnings = %q, want one about eth2", w)
	}
}
