// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"maps"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// TestTraffic checks the per-interface and per-endpoint counters: merged
// ranges count for each endpoint that names them, the default for "", and
// counts carry over a reload.
func TestTraffic(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.NewNS(t, "t")
	f := openFilter(t, ns, ModeAuto)
	eps := []ep{
		{"imds", []string{"lo"}, []string{"169.254.169.254/32"}, []string{"alice"}},
		{"net-a", []string{"lo"}, []string{"10.0.0.0/8"}, []string{"root"}},
		{"net-b", []string{"lo"}, []string{"10.0.0.0/8"}, []string{"bob"}},
	}
	p := compile(t, map[string]config.Action{"lo": config.Deny}, eps...)
	apply(t, ns, f, p, LogNone)

	send := func(dst string, n int, want uint32) {
		t.Helper()
		frame := ptEth4(ptUDP4(netip.MustParseAddr(dst)))
		ns.MustDo(t, func() error {
			for range n {
				ret, err := f.objs.NtfEgress.Run(&ebpf.RunOptions{Data: frame})
				if err != nil {
					return err
				}
				if ret != want {
					t.Errorf("%s: verdict %d, want %d", dst, int32(ret), int32(want))
				}
			}
			return nil
		})
	}
	// Test runs send as root.
	send("169.254.169.254", 3, ptDrop)
	send("10.1.2.3", 2, ptPass)
	send("192.0.2.1", 1, ptDrop)
	apply(t, ns, f, p, LogNone) // a reload: counts stay
	send("10.9.9.9", 1, ptPass)

	got, err := f.Traffic()
	if err != nil {
		t.Fatal(err)
	}
	want := Traffic{
		Ifaces: map[string]Verdicts{"lo": {Allowed: 3, Denied: 4}},
		Endpoints: map[string]Verdicts{
			"imds":  {Denied: 3},
			"net-a": {Allowed: 3},
			"net-b": {Allowed: 3},
			"":      {Denied: 1},
		},
	}
	if !maps.Equal(got.Ifaces, want.Ifaces) || !maps.Equal(got.Endpoints, want.Endpoints) {
		t.Errorf("traffic %+v, want %+v", got, want)
	}
	c, err := f.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.Allowed != 3 || c.Denied != 4 {
		t.Errorf("counters allowed %d denied %d, want 3 and 4", c.Allowed, c.Denied)
	}
}

func TestCounterNames(t *testing.T) {
	c := newCounterNames(4)
	for _, tc := range []struct {
		name string
		want uint32
	}{{"eth0", 0}, {"eth1", 1}, {"eth0", 0}, {"eth2", 2}, {"eth3", 3}, {"eth4", 3}} {
		if got := c.iface(tc.name); got != tc.want {
			t.Errorf("iface(%s) = %d, want %d", tc.name, got, tc.want)
		}
	}
	if got := c.ifaceNames[3]; got != OtherCounter {
		t.Errorf("last interface counter is %q, want %q", got, OtherCounter)
	}
	for _, tc := range []struct {
		names []string
		want  uint32
	}{{[]string{"a"}, 1}, {[]string{"a", "b"}, 2}, {[]string{"a"}, 1}, {[]string{"c"}, 3}, {[]string{"d"}, 3}} {
		if got := c.endpoints(tc.names); got != tc.want {
			t.Errorf("endpoints(%v) = %d, want %d", tc.names, got, tc.want)
		}
	}
}
