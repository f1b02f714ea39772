// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"fmt"
	"slices"
	"testing"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// BenchmarkClassifyStaged is BenchmarkClassify's hit and miss packets with
// a candidate staged beside the live policy (SPEC §8): "same", a candidate
// that decides every packet alike (the cost of judging twice), "differs",
// one that denies what the live policy allows (the counting too; events
// only at powers of two). The live verdict is checked in every sample.
// Nothing staged is BenchmarkClassify itself.
func BenchmarkClassifyStaged(b *testing.B) {
	testnet.RequireRoot(b)
	ns := testnet.NewNS(b, "b")
	f := openFilter(b, ns, ModeAuto)
	frame4 := ptEth4(ptUDP4(benchHit4))
	frame6 := ptEth6(ptUDP6(benchHit6))
	for _, n := range []int{100, 10_000} {
		eps := benchEndpoints(n)
		deny := map[string]config.Action{"lo": config.Deny}
		live := compile(b, deny, eps...)
		// The candidate: nobody on the targets' endpoint.
		cand := slices.Clone(eps)
		cand[0].allow = nil
		candidates := map[string]*policy.Policy{"same": live, "differs": compile(b, deny, cand...)}
		for _, which := range []string{"same", "differs"} {
			apply(b, ns, f, live, LogNone)
			ns.MustDo(b, func() error {
				ifaces, err := Interfaces()
				if err != nil {
					return err
				}
				return f.Stage(candidates[which], ifaces)
			})
			for _, c := range []struct {
				name  string
				frame []byte
				want  uint32
			}{
				{"ipv4/hit", frame4, ptPass},
				{"ipv6/hit", frame6, ptPass},
				{"ipv4/miss", ptEth4(ptUDP4(benchMiss4)), ptDrop},
			} {
				b.Run(fmt.Sprintf("staged-%s/%s/ranges=%d", which, c.name, n), func(b *testing.B) {
					benchRun(b, ns, f.objs.NtfEgress, c.frame, c.want)
				})
			}
			if _, err := f.Unstage(); err != nil {
				b.Fatal(err)
			}
		}
	}
}
