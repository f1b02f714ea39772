// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"net/netip"
	"testing"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
)

// TestSizeOf: ranges by family, and users counted once however many
// endpoints and groups name them.
func TestSizeOf(t *testing.T) {
	ep := func(name string, ranges []string, uids ...uint32) *config.Endpoint {
		e := &config.Endpoint{Name: name, Site: &config.Site{Ifaces: []string{"eth0"}}}
		for _, r := range ranges {
			e.Ranges = append(e.Ranges, netip.MustParsePrefix(r))
		}
		for _, u := range uids {
			e.Allow = append(e.Allow, config.Principal{Kind: config.PrincipalUID, UID: u})
		}
		e.Allow = append(e.Allow, config.Principal{Kind: config.PrincipalEveryone})
		return e
	}
	cfg := &config.Config{Endpoints: []*config.Endpoint{
		ep("a", []string{"10.0.0.0/8", "fd00::/8"}, 7, 3),
		ep("b", []string{"192.0.2.0/24"}, 3, 9, 7),
		ep("c", []string{"2001:db8::/32", "2001:db8:1::/48"}),
		ep("d", []string{"198.51.100.0/24"}, 9),
	}}
	p, err := policy.Compile(cfg, ownerResolver{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sizeOf(p), (sizes{ranges: 6, v4: 3, v6: 3, users: 3}); got != want {
		t.Errorf("sizeOf = %+v, want %+v", got, want)
	}
}
