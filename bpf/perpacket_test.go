// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

// BenchmarkPerPacket is the program on real traffic (issue 23): the allowed
// user's 64-byte UDP datagrams through a veth to a range of a 10 000-range
// policy, against an empty program attached the same way (tcx, clsact). Each
// run sends b.N datagrams: ns/op is the sender's time per datagram,
// prog-ns/pkt the program's own, from the kernel's run-time statistics
// (bpf_stats, which add two clock reads to every run of every program
// alike). The sender enters the kernel once per datagram (batch1: like
// iperf3's writes) or once per 64 (batch64: sendmmsg).
func BenchmarkPerPacket(b *testing.B) {
	testnet.RequireRoot(b)
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("bpf_stats: %v", err)
	}
	b.Cleanup(func() { stats.Close() })
	eps := benchEndpoints(10_000)
	for i := range eps {
		eps[i].ifaces = []string{"eth0"}
	}
	eps[0].allow = append(eps[0].allow, "alice") // the hit targets
	p := compile(b, map[string]config.Action{"eth0": config.Deny}, eps...)

	for _, mode := range []Mode{ModeTCX, ModeClsact} {
		if mode == ModeTCX && !testnet.KernelHasTCX(b) {
			continue
		}
		tp := testnet.NewTopology(b, testnet.Options{})
		tp.CountUDP(b, port)
		alice := testnet.StartAgent(b, tp.Client, 1001)
		f := openFilter(b, tp.Client, mode)
		apply(b, tp.Client, f, p, LogDenied)

		floor := testnet.NewTopology(b, testnet.Options{})
		floor.CountUDP(b, port)
		floorAlice := testnet.StartAgent(b, floor.Client, 1001)
		var empty *netlab.EmptyProgram
		floor.Client.MustDo(b, func() (err error) {
			empty, err = netlab.AttachEmpty(floor.Client.NS, "eth0", mode == ModeClsact)
			return err
		})
		b.Cleanup(func() { empty.Close() })

		lanes := []struct {
			name   string
			sender *testnet.Agent
			prog   *ebpf.Program
		}{{"empty", floorAlice, empty.Prog}, {"ntf", alice, f.objs.NtfEgress}}
		for _, l := range lanes {
			for _, dst := range []struct {
				name string
				addr netip.Addr
			}{{"ipv4", benchHit4}, {"ipv6", benchHit6}} {
				for _, batch := range []int{1, 64} {
					b.Run(fmt.Sprintf("%s/%s/%s/batch%d", mode, l.name, dst.name, batch), func(b *testing.B) {
						before, err := f.Counters()
						if err != nil {
							b.Fatal(err)
						}
						s0, err := l.prog.Stats()
						if err != nil {
							b.Fatal(err)
						}
						b.ResetTimer()
						sent, err := l.sender.BurstBatched(dst.addr, port, b.N, batch)
						b.StopTimer()
						if err != nil {
							b.Fatal(err)
						}
						s1, err := l.prog.Stats()
						if err != nil {
							b.Fatal(err)
						}
						after, err := f.Counters()
						if err != nil {
							b.Fatal(err)
						}
						// The datagrams were the allowed user's, judged allowed
						// (besides them, the kernel's own packets are denied).
						if l.name == "ntf" && after.Allowed-before.Allowed < uint64(sent) {
							b.Fatalf("%d datagrams sent, %d allowed", sent, after.Allowed-before.Allowed)
						}
						if runs := s1.RunCount - s0.RunCount; runs > 0 {
							b.ReportMetric(float64(s1.Runtime-s0.Runtime)/float64(runs), "prog-ns/pkt")
						}
					})
				}
			}
		}
	}
}
