// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/nettcfilter/net-tc-filter/bpf"
)

// Filtered is the set the daemon attaches to and the CLI names as this
// host's filtered interfaces: those the policy filters, in ifindex order,
// whatever order the host listed them in; "*" never takes lo.
func TestFiltered(t *testing.T) {
	all := []bpf.Iface{{Name: "eth1", Index: 3}, {Name: "lo", Index: 1}, {Name: "wg0", Index: 5, L3: true}, {Name: "eth0", Index: 2}, {Name: "ens5", Index: 4}}
	for _, tc := range []struct {
		name, yml string
		want      []string
	}{
		{"endpoint glob", "endpoints:\n  - x:\n      iface: ['eth*']\n      range: [192.0.2.7/32]\n      allow: [uid:0]\n", []string{"eth0", "eth1"}},
		{"interfaces key adds one", "endpoints:\n  - x:\n      iface: [ens5]\n      range: [192.0.2.7/32]\n      allow: [uid:0]\ninterfaces:\n  wg0: {default: allow}\n", []string{"ens5", "wg0"}},
		{"star, not lo", "endpoints:\n  - x:\n      iface: ['*']\n      range: [192.0.2.7/32]\n      allow: [uid:0]\n", []string{"eth0", "eth1", "ens5", "wg0"}},
		{"none here", "endpoints:\n  - x:\n      iface: [ntft-none0]\n      range: [192.0.2.7/32]\n      allow: [uid:0]\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "net-tc-filter.yml")
			writeFile(t, path, tc.yml)
			_, p, err := Load(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, ifc := range Filtered(p, all) {
				got = append(got, ifc.Name)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Filtered = %q, want %q", got, tc.want)
			}
		})
	}
}
