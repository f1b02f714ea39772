// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

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
		sendTestRuns(t, ns, f, dst, n, want)
	}
	// Test runs send as root. Allowed packets to a destination the CPU's
	// verdict cache holds are counted in the cache entry.
	send("169.254.169.254", 3, ptDrop)
	send("10.1.2.3", 20, ptPass)
	send("192.0.2.1", 1, ptDrop)
	if cachedHits(t, f) == 0 {
		t.Error("no allowed packet was counted in the verdict cache")
	}
	apply(t, ns, f, p, LogNone) // a reload: counts stay
	send("10.9.9.9", 1, ptPass)
	// The entry is refilled for the new policy: its count moves on to
	// ntf_traffic.
	send("10.1.2.3", 1, ptPass)

	got, err := f.Traffic()
	if err != nil {
		t.Fatal(err)
	}
	want := Traffic{
		Ifaces: map[string]Verdicts{"lo": {Allowed: 22, Denied: 4}},
		Endpoints: map[string]Verdicts{
			"imds":  {Denied: 3},
			"net-a": {Allowed: 22},
			"net-b": {Allowed: 22},
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
	if c.Allowed != 22 || c.Denied != 4 {
		t.Errorf("counters allowed %d denied %d, want 22 and 4", c.Allowed, c.Denied)
	}
}

// sendTestRuns runs the program on n UDP datagrams to dst (as root, from
// test runs on lo) and checks their verdict.
func sendTestRuns(t *testing.T, ns *testnet.NS, f *Filter, dst string, n int, want uint32) {
	t.Helper()
	runFrames(t, ns, f, 0, ptEth4(ptUDP4(netip.MustParseAddr(dst))), n, want)
}

// runFrames runs the program n times on frame, as a packet of interface
// ifindex (0: lo), and checks the verdict. The runs are on the first CPU
// this process may use, whose verdict cache every call fills and reads.
func runFrames(t *testing.T, ns *testnet.NS, f *Filter, ifindex int, frame []byte, n int, want uint32) {
	t.Helper()
	ns.MustDo(t, func() error {
		var all, first unix.CPUSet
		if err := unix.SchedGetaffinity(0, &all); err != nil {
			return err
		}
		for cpu := 0; first.Count() == 0; cpu++ {
			if all.IsSet(cpu) {
				first.Set(cpu)
			}
		}
		if err := unix.SchedSetaffinity(0, &first); err != nil {
			return err
		}
		defer unix.SchedSetaffinity(0, &all)
		opts := &ebpf.RunOptions{Data: frame}
		if ifindex != 0 {
			opts.Context = ptSkbCtx{Ifindex: uint32(ifindex)}
		}
		for range n {
			ret, err := f.objs.NtfEgress.Run(opts)
			if err != nil {
				return err
			}
			if ret != want {
				t.Errorf("verdict %d, want %d", int32(ret), int32(want))
			}
		}
		return nil
	})
}

// TestFastPathInterfaces: the fast path answers from a verdict cache entry
// only for packets of the interface that filled it, parsed with that
// interface's header. An L3 device's packet that reads as an Ethernet frame
// (its source address begins 8.0, the bytes of an IPv4 ethertype) hides,
// where an Ethernet frame's destination would be, a destination the cache
// allows (the attack): it is judged by its own destination. Interfaces
// with the same table share the entries of the full path, and each counts
// its own packets.
func TestFastPathInterfaces(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.NewNS(t, "t")
	tunIdx := addTun(t, ns, "tun0")
	f := openFilter(t, ns, ModeAuto)
	ifaces := []string{"lo", "tun0"}
	p := compile(t, map[string]config.Action{"lo": config.Deny, "tun0": config.Deny},
		ep{"imds", ifaces, []string{"169.254.169.254/32"}, []string{"alice"}},
		ep{"net-a", ifaces, []string{"10.0.0.0/8"}, []string{"root"}})
	apply(t, ns, f, p, LogNone)

	allowed, denied := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("169.254.169.254")
	// The source 8.0.69.1: bytes 12-13 08 00, byte 14 0x45. Read as an
	// Ethernet frame, the packet's IPv4 destination is its bytes 30-33:
	// the UDP payload's bytes 2-5.
	src := netip.MustParseAddr("8.0.69.1")
	hidden := func(dst netip.Addr) []byte {
		payload := cat([]byte{0, 0}, allowed.AsSlice(), bytes.Repeat([]byte{0}, 18))
		return ipv4(src, dst, udpProto, udp(ptSport, ptDport, payload))
	}
	// Test runs of an L3 device's packets: the kernel takes the protocol
	// from their bytes 12-13 (see TestParse), 08 00 here: IPv4.
	runFrames(t, ns, f, tunIdx, hidden(allowed), 5, ptPass) // tun0's entry for 10.1.2.3
	runFrames(t, ns, f, tunIdx, hidden(denied), 3, ptDrop)
	runFrames(t, ns, f, 0, ptEth4(ptUDP4(allowed)), 1, ptPass) // lo's entry for 10.1.2.3
	runFrames(t, ns, f, tunIdx, hidden(denied), 3, ptDrop)
	// Frames of lo read the same from an entry lo filled.
	before := cachedHits(t, f)
	runFrames(t, ns, f, 0, ptEth4(ptUDP4(allowed)), 10, ptPass)
	if got := cachedHits(t, f) - before; got != 10 {
		t.Errorf("%d of lo's 10 packets were counted in the verdict cache, want all", got)
	}
	// lo's entry does not answer for tun0 (the full path does, from it).
	runFrames(t, ns, f, tunIdx, hidden(allowed), 4, ptPass)

	got, err := f.Traffic()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Verdicts{"lo": {Allowed: 11}, "tun0": {Allowed: 9, Denied: 6}}
	if !maps.Equal(got.Ifaces, want) {
		t.Errorf("traffic by interface %+v, want %+v", got.Ifaces, want)
	}
	if got.Endpoints["net-a"].Allowed != 20 || got.Endpoints["imds"].Denied != 6 {
		t.Errorf("traffic by endpoint %+v, want net-a 20 allowed, imds 6 denied", got.Endpoints)
	}
}

// verdictCache reads every CPU's verdict cache entries.
func verdictCache(m *ebpf.Map) ([]filterNtfVerdictEntry, error) {
	entries := make([]filterNtfVerdictEntry, m.MaxEntries())
	keys := make([]uint32, len(entries))
	n, err := m.BatchLookup(new(ebpf.MapBatchCursor), keys, entries, nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, fmt.Errorf("read the verdict cache: %w", err)
	}
	return entries[:n], nil
}

// TestVerdictEntryLayout: cacheHits reads an entry's counter indexes and
// count as one aligned word, and entries are a cache line each.
func TestVerdictEntryLayout(t *testing.T) {
	var e filterNtfVerdictEntry
	if size := unsafe.Sizeof(e); size != 64 {
		t.Errorf("entry is %d bytes, want 64", size)
	}
	if entryCounts%8 != 0 || unsafe.Offsetof(e.Icounter) != entryCounts+2 || unsafe.Offsetof(e.Hits) != entryCounts+4 {
		t.Errorf("counter, icounter, hits at %d, %d, %d: not one word", entryCounts, unsafe.Offsetof(e.Icounter), unsafe.Offsetof(e.Hits))
	}
	if entryEpoch%8 != 0 {
		t.Errorf("epoch at %d: not aligned", entryEpoch)
	}
}

// cachedHits is how many allowed packets the verdict cache entries, over
// all CPUs, hold that are not in ntf_traffic yet.
func cachedHits(t *testing.T, f *Filter) uint64 {
	t.Helper()
	entries, err := verdictCache(f.objs.NtfVerdictCache)
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, e := range entries {
		n += uint64(e.Hits)
	}
	return n
}

// TestTrafficAfterRestart: a run that adopts an earlier run's pins counts
// from zero, and what the earlier run's verdict cache entries counted, under
// that run's counter indexes, is never counted as its own, neither while
// it is in the cache nor when the entry is refilled.
func TestTrafficAfterRestart(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.NewNS(t, "t")
	dir := testPinDir()
	t.Cleanup(func() { removePinDir(dir) })
	open := func() *Filter {
		var f *Filter
		ns.MustDo(t, func() (err error) {
			f, err = Open(Options{PinDir: dir})
			return err
		})
		return f
	}
	// The earlier run knows more interfaces and endpoints, so its indexes
	// mean other names than the next run's.
	f := open()
	p := compile(t, map[string]config.Action{"lo": config.Deny},
		ep{"other", []string{"lo"}, []string{"10.0.0.0/8"}, []string{"root"}},
		ep{"net-a", []string{"lo"}, []string{"10.1.0.0/16"}, []string{"root"}})
	apply(t, ns, f, p, LogNone)
	sendTestRuns(t, ns, f, "10.1.2.3", 10, ptPass)
	if cachedHits(t, f) == 0 {
		t.Fatal("no allowed packet was counted in the verdict cache")
	}
	f.Close()

	g := open()
	t.Cleanup(func() { ns.Do(func() error { return g.Detach() }) })
	if g.fresh {
		t.Fatal("the pins were not adopted")
	}
	p = compile(t, map[string]config.Action{"lo": config.Deny},
		ep{"net-a", []string{"lo"}, []string{"10.1.0.0/16"}, []string{"root"}})
	apply(t, ns, g, p, LogNone)
	check := func(want uint64) {
		t.Helper()
		got, err := g.Traffic()
		if err != nil {
			t.Fatal(err)
		}
		if got.Ifaces["lo"].Allowed != want || got.Endpoints["net-a"].Allowed != want || got.Endpoints["other"].Allowed != 0 {
			t.Errorf("traffic %+v, want %d allowed on lo, for net-a", got, want)
		}
	}
	check(0)
	sendTestRuns(t, ns, g, "10.1.2.3", 4, ptPass)
	check(4)
}

// TestTrafficNeverGoesBack: packets that leave a verdict cache entry for
// ntf_traffic may be missed by a read that falls between the two (the
// reader reads ntf_traffic first); the next read never reports fewer than
// the last.
func TestTrafficNeverGoesBack(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.NewNS(t, "t")
	f := openFilter(t, ns, ModeAuto)
	p := compile(t, map[string]config.Action{"lo": config.Deny},
		ep{"net-a", []string{"lo"}, []string{"10.0.0.0/8"}, []string{"root"}})
	apply(t, ns, f, p, LogNone)
	sendTestRuns(t, ns, f, "10.1.2.3", 10, ptPass)
	before, err := f.Traffic()
	if err != nil {
		t.Fatal(err)
	}
	if before.Endpoints["net-a"].Allowed != 10 {
		t.Fatalf("traffic %+v, want 10 allowed for net-a", before)
	}
	// A move caught half way: the entries' counts are gone, ntf_traffic
	// does not hold them yet.
	entries, err := verdictCache(f.objs.NtfVerdictCache)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range entries {
		if e.Hits != 0 {
			e.Hits = 0
			if err := f.objs.NtfVerdictCache.Put(uint32(i), e); err != nil {
				t.Fatal(err)
			}
		}
	}
	after, err := f.Traffic()
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(after.Ifaces, before.Ifaces) || !maps.Equal(after.Endpoints, before.Endpoints) {
		t.Errorf("traffic went from %+v to %+v", before, after)
	}
	if c, err := f.Counters(); err != nil || c.Allowed != 10 {
		t.Errorf("counters %+v (%v), want 10 allowed", c, err)
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
