// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
)

// The warnings of SPEC §2 about the host's interfaces: a deny default,
// whether by omission or written, says in plain words what is dropped,
// what stays reachable, and the line that restricts only the listed
// ranges; an endpoint iface that matches no interface of the host says
// that the endpoint protects nothing there.
func TestHostWarnings(t *testing.T) {
	endpoint := func(name string, ifaces []string, ranges []string, who ...string) *config.Endpoint {
		e := &config.Endpoint{Name: name, Site: &config.Site{Ifaces: ifaces}, Allow: allow(3, who...)}
		for _, r := range ranges {
			e.Ranges = append(e.Ranges, pfx(r))
		}
		return e
	}
	narrowed := func(e *config.Endpoint, port uint16) *config.Endpoint {
		e.Narrow = &config.Narrowing{Protos: []uint8{6, 17}, Ports: []config.PortRange{{Lo: port, Hi: port}}} // sorted, as config has them
		return e
	}
	imdsRanges := []string{"169.254.169.254/32", "fd00:ec2::254/128"}
	imds := func(ifaces ...string) *config.Endpoint {
		return endpoint("imdsv2", ifaces, imdsRanges, "alice")
	}
	deny := config.Interface{Default: config.Deny}
	allowDef := config.Interface{Default: config.Allow}
	many := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("10.0.%d.0/24", i))
		}
		return out
	}
	const (
		dropped   = "that no endpoint lists is dropped for every user, root included, and for forwarded traffic: SSH, DNS and package updates too."
		imdsLeft  = "Only these stay reachable: 169.254.169.254/32, fd00:ec2::254/128 for alice (endpoint imdsv2)."
		byDefault = "no interfaces: entry sets its default, and deny is the default"
		nameIt    = `Name an interface of this host (ip -brief link lists them), or "*" for every interface; one that appears later is filtered at once`
	)
	tests := []struct {
		name      string
		endpoints []*config.Endpoint
		ifaces    map[string]config.Interface
		host      []string
		want      []string
	}{
		{"the seed: deny by omission", []*config.Endpoint{imds("eth0")}, nil, []string{"lo", "eth0"}, []string{
			"interface eth0 is filtered with default deny (" + byDefault + "): every destination on it " + dropped + " " + imdsLeft +
				` To restrict only the listed ranges instead: interfaces: {"eth0": {default: allow}} (or "*" for every interface)`,
		}},
		// SPEC §2: "whenever an interface is filtered with a deny
		// default": written out, it is still every destination but a few.
		{"explicit deny", []*config.Endpoint{imds("eth0")}, map[string]config.Interface{"eth0": deny}, []string{"lo", "eth0"}, []string{
			`interface eth0 is filtered with default deny (interfaces: "eth0" says default: deny): every destination on it ` + dropped + " " + imdsLeft +
				` To restrict only the listed ranges instead: interfaces: {"eth0": {default: allow}} (or "*" for every interface)`,
		}},
		// mode: audit: nothing is dropped yet; the warning says so,
		// and what enforcing would drop.
		{"explicit deny in mode: audit", []*config.Endpoint{imds("eth0")}, map[string]config.Interface{"eth0": {Default: config.Deny, Audit: true}}, []string{"lo", "eth0"}, []string{
			`interface eth0 is filtered with default deny (interfaces: "eth0" says default: deny in mode: audit): every destination on it that no endpoint lists passes now, logged as audit, and would be dropped once mode: audit is removed, for every user, root included, and for forwarded traffic: SSH, DNS and package updates too. ` + imdsLeft +
				` To restrict only the listed ranges instead: interfaces: {"eth0": {default: allow}} (or "*" for every interface)`,
		}},
		{"allow by name", []*config.Endpoint{imds("eth0")}, map[string]config.Interface{"eth0": allowDef}, []string{"lo", "eth0"}, nil},
		{`allow by "*"`, []*config.Endpoint{imds("*")}, map[string]config.Interface{"*": allowDef}, []string{"lo", "eth0", "ens5"}, nil},
		{`the exact key wins over "*"`, []*config.Endpoint{imds("*")}, map[string]config.Interface{"*": allowDef, "ens5": deny}, []string{"lo", "eth0", "ens5"}, []string{
			`interface ens5 is filtered with default deny (interfaces: "ens5" says default: deny): every destination on it ` + dropped + " " + imdsLeft +
				` To restrict only the listed ranges instead: interfaces: {"ens5": {default: allow}} (or "*" for every interface)`,
		}},
		// One warning for every interface a glob filters alike; "*"
		// never takes lo, so lo is not named.
		{`"*" endpoint, deny by omission`, []*config.Endpoint{imds("*")}, nil, []string{"lo", "eth1", "eth0", "eth0"}, []string{
			"interfaces eth0, eth1 are filtered with default deny (" + byDefault + "): every destination on them " + dropped + " " + imdsLeft +
				` To restrict only the listed ranges instead: interfaces: {"*": {default: allow}}`,
		}},
		{`"*": deny filters every interface`, []*config.Endpoint{imds("eth0")}, map[string]config.Interface{"*": deny}, []string{"lo", "eth0", "docker0", "wg0"}, []string{
			`interfaces docker0, wg0 are filtered with default deny (interfaces: "*" says default: deny): every destination on them ` + dropped +
				` Nothing stays reachable there. To restrict only the listed ranges instead: interfaces: {"*": {default: allow}}`,
			`interface eth0 is filtered with default deny (interfaces: "*" says default: deny): every destination on it ` + dropped + " " + imdsLeft +
				` To restrict only the listed ranges instead: interfaces: {"*": {default: allow}}`,
		}},
		{"many interfaces", []*config.Endpoint{imds("eth*")}, nil, []string{"eth0", "eth1", "eth2", "eth3", "eth4", "eth5"}, []string{
			"interfaces eth0, eth1, eth2 and 3 more interfaces are filtered with default deny (" + byDefault + "): every destination on them " + dropped + " " + imdsLeft +
				` To restrict only the listed ranges instead: interfaces: {"*": {default: allow}}`,
		}},
		{"v6 only", []*config.Endpoint{endpoint("imds6", []string{"eth0"}, []string{"fd00:ec2::254/128"}, "uid:0", "unowned")}, nil, []string{"eth0"}, []string{
			"interface eth0 is filtered with default deny (" + byDefault + "): every destination on it " + dropped +
				" Only these stay reachable: fd00:ec2::254/128 for uid:0, unowned (endpoint imds6); no IPv4 destination at all." +
				` To restrict only the listed ranges instead: interfaces: {"eth0": {default: allow}} (or "*" for every interface)`,
		}},
		{"v4 only, allowed to no one", []*config.Endpoint{endpoint("imds4", []string{"eth0"}, []string{"169.254.169.254/32"})}, nil, []string{"eth0"}, []string{
			"interface eth0 is filtered with default deny (" + byDefault + "): every destination on it " + dropped +
				" Only these stay reachable: 169.254.169.254/32 for no one (endpoint imds4); no IPv6 destination at all." +
				` To restrict only the listed ranges instead: interfaces: {"eth0": {default: allow}} (or "*" for every interface)`,
		}},
		{"many endpoints and ranges", []*config.Endpoint{
			endpoint("a", []string{"eth0"}, many(5), "alice"), endpoint("b", []string{"eth0"}, many(4), "*"),
			endpoint("c", []string{"eth0"}, []string{"::/0"}, "bob"), endpoint("d", []string{"eth0"}, many(1), "bob"),
			endpoint("e", []string{"eth0"}, many(1), "bob"),
		}, nil, []string{"eth0"}, []string{
			"interface eth0 is filtered with default deny (" + byDefault + "): every destination on it " + dropped +
				" Only these stay reachable: 10.0.0.0/24, 10.0.1.0/24, 10.0.2.0/24 and 2 more ranges for alice (endpoint a);" +
				" 10.0.0.0/24, 10.0.1.0/24, 10.0.2.0/24, 10.0.3.0/24 for * (endpoint b); ::/0 for bob (endpoint c); and what 2 more endpoints allow." +
				` To restrict only the listed ranges instead: interfaces: {"eth0": {default: allow}} (or "*" for every interface)`,
		}},
		// Every destination is in a range: the default never decides.
		{"0.0.0.0/0 and ::/0 listed", []*config.Endpoint{imds("eth0"), endpoint("rest", []string{"eth0"}, []string{"0.0.0.0/0", "::/0"}, "*")},
			nil, []string{"eth0"}, nil},
		// Narrowed, the ranges leave every other protocol and port to
		// the default: still a lock-down, and the warning says which
		// ports stay.
		{"0.0.0.0/0 and ::/0 narrowed", []*config.Endpoint{narrowed(endpoint("dns", []string{"eth0"}, []string{"0.0.0.0/0", "::/0"}, "*"), 53)},
			nil, []string{"eth0"}, []string{
				"interface eth0 is filtered with default deny (" + byDefault + "): every destination on it " + dropped +
					" Only these stay reachable: 0.0.0.0/0, ::/0 tcp,udp/53 for * (endpoint dns)." +
					` To restrict only the listed ranges instead: interfaces: {"eth0": {default: allow}} (or "*" for every interface)`,
			}},
		{"0.0.0.0/0 only", []*config.Endpoint{endpoint("rest", []string{"eth0"}, []string{"0.0.0.0/0"}, "*")}, nil, []string{"eth0"}, []string{
			"interface eth0 is filtered with default deny (" + byDefault + "): every destination on it " + dropped +
				" Only these stay reachable: 0.0.0.0/0 for * (endpoint rest); no IPv6 destination at all." +
				` To restrict only the listed ranges instead: interfaces: {"eth0": {default: allow}} (or "*" for every interface)`,
		}},
		// The ens* endpoint on an eth0 host: nothing filtered, nothing
		// said until now.
		{"iface matches nothing", []*config.Endpoint{imds("ens*")}, map[string]config.Interface{"*": allowDef}, []string{"lo", "eth0"}, []string{
			`endpoint imdsv2 protects nothing: its iface "ens*" matches no interface of this host, so 169.254.169.254/32, fd00:ec2::254/128 stay reachable by everyone until such an interface appears. ` + nameIt,
		}},
		{"iface matches nothing, deny by omission", []*config.Endpoint{imds("ens*")}, nil, []string{"lo", "eth0"}, []string{
			`endpoint imdsv2 protects nothing: its iface "ens*" matches no interface of this host, so 169.254.169.254/32, fd00:ec2::254/128 stay reachable by everyone until such an interface appears. ` + nameIt,
		}},
		{"the interface appeared", []*config.Endpoint{imds("ens*")}, map[string]config.Interface{"*": allowDef}, []string{"lo", "eth0", "ens5"}, nil},
		{"lo named", []*config.Endpoint{imds("*")}, map[string]config.Interface{"*": allowDef}, []string{"lo"}, []string{
			`endpoint imdsv2 protects nothing: its iface "*" matches no interface of this host, so 169.254.169.254/32, fd00:ec2::254/128 stay reachable by everyone until such an interface appears. ` + nameIt,
		}},
		{"several endpoints match nothing", []*config.Endpoint{imds("ens5"), endpoint("wire", []string{"ens5"}, []string{"168.63.129.16/32"}, "root")},
			map[string]config.Interface{"*": allowDef}, []string{"eth0"}, []string{
				`endpoints imdsv2, wire protect nothing: their iface "ens5" matches no interface of this host, so their ranges stay reachable by everyone until such an interface appears. ` + nameIt,
			}},
		{"one of two ifaces matches nothing", []*config.Endpoint{imds("eth0", "ens5")}, map[string]config.Interface{"*": allowDef}, []string{"eth0"}, []string{
			`iface "ens5" of endpoint imdsv2 matches no interface of this host: it filters only on its other interfaces until such an interface appears`,
		}},
		{"no interfaces listed", []*config.Endpoint{imds("eth0")}, nil, nil, []string{
			`endpoint imdsv2 protects nothing: its iface "eth0" matches no interface of this host, so 169.254.169.254/32, fd00:ec2::254/128 stay reachable by everyone until such an interface appears. ` + nameIt,
		}},
		{"no endpoints", nil, nil, []string{"lo", "eth0"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(&config.Config{Endpoints: tt.endpoints, Interfaces: tt.ifaces, Files: []string{mainFile}}, testResolver())
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			got := p.HostWarnings(tt.host)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("HostWarnings(%q):\n%s\nwant:\n%s", tt.host, strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// The warnings are computed from the policy alone: the list of host
// interfaces handed in is not kept or changed.
func TestHostWarningsLeavesHostAlone(t *testing.T) {
	p, err := Compile(&config.Config{Endpoints: []*config.Endpoint{{Name: "x", Site: &config.Site{Ifaces: []string{"*"}},
		Ranges: []netip.Prefix{pfx("192.0.2.0/24")}, Allow: allow(3, "alice")}}, Files: []string{mainFile}}, testResolver())
	if err != nil {
		t.Fatal(err)
	}
	host := []string{"eth1", "eth0", "eth0"}
	p.HostWarnings(host)
	if strings.Join(host, ",") != "eth1,eth0,eth0" {
		t.Errorf("HostWarnings reordered its argument: %q", host)
	}
}

// One range stays, several stay; several endpoints filter elsewhere.
func TestHostWarningsGrammar(t *testing.T) {
	e := func(name string, ifaces ...string) *config.Endpoint {
		return &config.Endpoint{Name: name, Site: &config.Site{Ifaces: ifaces}, Ranges: []netip.Prefix{pfx("192.0.2.0/24")}, Allow: allow(3, "alice")}
	}
	p, err := Compile(&config.Config{Endpoints: []*config.Endpoint{e("one", "ens5"), e("x", "eth0", "wg0"), e("y", "eth0", "wg0")},
		Interfaces: map[string]config.Interface{"*": {Default: config.Allow}}, Files: []string{mainFile}}, testResolver())
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(p.HostWarnings([]string{"eth0"}), "\n")
	for _, want := range []string{
		`so 192.0.2.0/24 stays reachable by everyone`,
		`iface "wg0" of endpoints x, y matches no interface of this host: they filter only on their other interfaces until such an interface appears`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings lack %q:\n%s", want, got)
		}
	}
}

// The lock-down warnings name exactly the interfaces that Filtered and
// Default say are filtered with a deny default (the endpoint's range leaves
// the default destinations to decide), over combinations of
// endpoint patterns and interfaces: keys (HostWarnings matches the
// distinct patterns itself, for large sets).
func TestHostWarningsAgreeWithFiltered(t *testing.T) {
	host := []string{"lo", "eth0", "eth1", "ens5"}
	patterns := [][]string{{"eth0"}, {"eth*"}, {"*"}, {"lo"}, {"ens5", "eth1"}, {"wg*"}}
	keys := []map[string]config.Interface{
		nil,
		{"*": {Default: config.Allow}},
		{"*": {Default: config.Deny}},
		{"eth*": {Default: config.Allow}, "eth1": {Default: config.Deny}},
		{"lo": {Default: config.Deny}, "ens5": {Default: config.Allow}},
	}
	named := func(warns []string) []string {
		var out []string
		for _, w := range warns {
			var list string
			if rest, ok := strings.CutPrefix(w, "interface "); ok {
				list, _, _ = strings.Cut(rest, " is filtered with default deny")
			} else if rest, ok := strings.CutPrefix(w, "interfaces "); ok {
				list, _, _ = strings.Cut(rest, " are filtered with default deny")
			} else {
				continue
			}
			out = append(out, strings.Split(list, ", ")...)
		}
		slices.Sort(out)
		return out
	}
	for _, pats := range patterns {
		for _, ifaces := range keys {
			p, err := Compile(&config.Config{Endpoints: []*config.Endpoint{{Name: "x", Site: &config.Site{Ifaces: pats},
				Ranges: []netip.Prefix{pfx("192.0.2.0/24")}, Allow: allow(3, "alice")}},
				Interfaces: ifaces, Files: []string{mainFile}}, testResolver())
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, name := range host {
				if p.Filtered(name) && p.Default(name) == Deny {
					want = append(want, name)
				}
			}
			slices.Sort(want)
			if got := named(p.HostWarnings(host)); !slices.Equal(got, want) {
				t.Errorf("iface %q, interfaces %v: warned of %q, want %q", pats, ifaces, got, want)
			}
		}
	}
}
