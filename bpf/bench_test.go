// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// benchRepeat is how often BPF_PROG_TEST_RUN runs a packet per sample.
func benchRepeat() int {
	if n, err := strconv.Atoi(os.Getenv("NTF_BENCH_REPEAT")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

// Destinations of the per-packet benchmark: the hit targets are the longest
// ranges of their branch, the misses lie outside every range.
var (
	benchHit4  = netip.MustParseAddr("10.200.3.4")
	benchHit6  = netip.MustParseAddr("fd00:ec2::254")
	benchMiss4 = netip.MustParseAddr("192.0.2.1")
	benchMiss6 = netip.MustParseAddr("2001:db8::1")
)

// benchEndpoints makes n ranges per family spread over 100 endpoints, each
// allowed to its own uid, like a large site policy: random prefixes of every
// length inside 10.0.0.0/8 and fd00::/8, plus the targets, which root (the
// owner of BPF_PROG_TEST_RUN packets) may reach.
func benchEndpoints(n int) []ep {
	r := rand.New(rand.NewPCG(uint64(n), 6))
	const groups = 100
	eps := make([]ep, min(n, groups))
	for i := range eps {
		eps[i] = ep{name: fmt.Sprintf("site%03d", i), ifaces: []string{"lo"}, allow: []string{fmt.Sprintf("uid:%d", 2000+i)}}
	}
	eps[0].allow = append(eps[0].allow, "root")
	eps[0].ranges = []string{benchHit4.String() + "/32", benchHit6.String() + "/128"}
	seen := map[netip.Prefix]bool{}
	for fam, base := range []netip.Addr{netip.MustParseAddr("10.0.0.0"), netip.MustParseAddr("fd00::")} {
		for made := 1; made < n; {
			a := base.AsSlice()
			for i := 1; i < len(a); i++ {
				a[i] = byte(r.Uint32())
			}
			addr, _ := netip.AddrFromSlice(a)
			lo := 12 + fam*4
			p, _ := addr.Prefix(lo + r.IntN(addr.BitLen()-lo+1))
			if seen[p] || p.Contains(benchHit4) || p.Contains(benchHit6) {
				continue
			}
			seen[p] = true
			e := &eps[made%len(eps)]
			e.ranges = append(e.ranges, p.String())
			made++
		}
	}
	return eps
}

// BenchmarkClassify measures the cost of one packet through the program with
// BPF_PROG_TEST_RUN, against an empty program (the floor). It reports the
// median of the samples as ns/pkt; make bench turns that into the report.
func BenchmarkClassify(b *testing.B) {
	testnet.RequireRoot(b)
	ns := testnet.NewNS(b, "b")
	f := openFilter(b, ns, ModeAuto)
	// The same program without its caches: what a packet to a destination
	// not seen lately on its CPU costs.
	cold := testnet.NewNS(b, "b")
	var nc *Filter
	cold.MustDo(b, func() (err error) {
		nc, err = Open(Options{PinDir: testPinDir(), Mode: ModeAuto, noCache: true})
		return err
	})
	b.Cleanup(func() { cold.Do(func() error { return nc.Detach() }) })

	empty, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SchedCLS,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { empty.Close() })
	frame4 := func(dst netip.Addr) []byte { return ptEth4(ptUDP4(dst)) }
	frame6 := func(dst netip.Addr) []byte { return ptEth6(ptUDP6(dst)) }
	b.Run("empty", func(b *testing.B) { benchRun(b, ns, empty, frame4(benchHit4), ptPass) })

	for _, n := range []int{1, 100, 10_000, 100_000} {
		eps := benchEndpoints(n)
		p := compile(b, map[string]config.Action{"lo": config.Deny}, eps...)
		apply(b, ns, f, p, LogNone)
		apply(b, cold, nc, p, LogNone)
		cases := []struct {
			name  string
			frame []byte
			want  uint32
		}{
			{"ipv4/hit", frame4(benchHit4), ptPass},
			{"ipv4/miss", frame4(benchMiss4), ptDrop},
			{"ipv6/hit", frame6(benchHit6), ptPass},
			{"ipv6/miss", frame6(benchMiss6), ptDrop},
		}
		for _, c := range cases {
			b.Run(fmt.Sprintf("%s/ranges=%d", c.name, n), func(b *testing.B) {
				benchRun(b, ns, f.objs.NtfEgress, c.frame, c.want)
			})
			b.Run(fmt.Sprintf("nocache/%s/ranges=%d", c.name, n), func(b *testing.B) {
				benchRun(b, cold, nc.objs.NtfEgress, c.frame, c.want)
			})
		}
		// The same ranges and the WireServer's narrowed endpoints: a
		// packet to a narrowed range costs a second trie lookup, paid
		// on a cache miss only.
		np := compileNarrowed(b, map[string]config.Action{"lo": config.Deny}, append(benchNarrowed(), plainEps(eps)...)...)
		apply(b, ns, f, np, LogNone)
		apply(b, cold, nc, np, LogNone)
		narrowed := []struct {
			name  string
			frame []byte
			want  uint32
		}{
			{"narrowed/ipv4/udp53", frame4(benchNarrow4), ptPass},
			{"narrowed/ipv4/tcp80", ptEth4(ipv4(ptSrc4, benchNarrow4, tcpProto, ptTCP(ptSport, 80))), ptDrop},
			{"narrowed/ipv6/udp53", frame6(benchNarrow6), ptPass},
			{"narrowed/ipv6/tcp80", ptEth6(ipv6(ptSrc6, benchNarrow6, tcpProto, ptTCP(ptSport, 80))), ptDrop},
		}
		for _, c := range narrowed {
			b.Run(fmt.Sprintf("%s/ranges=%d", c.name, n), func(b *testing.B) {
				benchRun(b, ns, f.objs.NtfEgress, c.frame, c.want)
			})
			b.Run(fmt.Sprintf("nocache/%s/ranges=%d", c.name, n), func(b *testing.B) {
				benchRun(b, cold, nc.objs.NtfEgress, c.frame, c.want)
			})
		}
	}
}

// Destinations of narrowed endpoints: DNS (udp/53, the ptPayload's port)
// for everyone, tcp/80 for uid 2000 only, nothing else.
var (
	benchNarrow4 = netip.MustParseAddr("10.201.0.1")
	benchNarrow6 = netip.MustParseAddr("fd00:ec3::1")
)

func benchNarrowed() []nep {
	lo := []string{"lo"}
	r := []string{benchNarrow4.String() + "/32", benchNarrow6.String() + "/128"}
	return []nep{
		{ep{"narrow-dns", lo, r, []string{"*"}}, "udp,tcp", "53"},
		{ep{"narrow-agent", lo, r, []string{"uid:2000"}}, "tcp", "80,32526"},
		{ep{"narrow", lo, r, nil}, "", ""},
	}
}

func plainEps(eps []ep) []nep {
	out := make([]nep, len(eps))
	for i, e := range eps {
		out[i] = nep{ep: e}
	}
	return out
}

// benchRun takes b.N samples of benchRepeat() runs each and reports their
// median. Every sample checks the verdict, so no figure comes from a program
// that decided wrongly.
func benchRun(b *testing.B, ns *testnet.NS, prog *ebpf.Program, frame []byte, want uint32) {
	repeat := benchRepeat()
	var samples []time.Duration
	for b.Loop() {
		ns.MustDo(b, func() error {
			ret, d, err := prog.Benchmark(frame, repeat, nil)
			if err != nil {
				return err
			}
			if ret != want {
				return fmt.Errorf("verdict %d, want %d", int32(ret), want)
			}
			samples = append(samples, d)
			return nil
		})
	}
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "ns/pkt")
}

// BenchmarkApply measures making a policy live: encoding, writing the idle
// slot and the swap. "new" writes a whole policy into fresh maps (a
// restart's first reloads); "one-changed" alternates two policies that
// differ in one range, as a reload after a small edit does.
func BenchmarkApply(b *testing.B) {
	testnet.RequireRoot(b)
	ns := testnet.NewNS(b, "b")
	defaults := map[string]config.Action{"lo": config.Deny}
	for _, n := range []int{100, 10_000, 100_000} {
		eps := benchEndpoints(n)
		p := compile(b, defaults, eps...)
		eps[1].ranges = append(slices.Clip(eps[1].ranges), "192.0.2.0/24")
		q := compile(b, defaults, eps...)
		b.Run(fmt.Sprintf("new/ranges=%d", n), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				f := openFilter(b, ns, ModeAuto)
				b.StartTimer()
				apply(b, ns, f, p, LogNone)
				b.StopTimer()
				ns.MustDo(b, f.Detach)
				b.StartTimer()
			}
		})
		b.Run(fmt.Sprintf("one-changed/ranges=%d", n), func(b *testing.B) {
			f := openFilter(b, ns, ModeAuto)
			for _, x := range []*policy.Policy{p, q, p, q} {
				apply(b, ns, f, x, LogNone)
			}
			i := 0
			for b.Loop() {
				apply(b, ns, f, []*policy.Policy{p, q}[i%2], LogNone)
				i++
			}
		})
	}
}

// BenchmarkEncode measures laying out a reload's policy, alone: the part of
// a swap done in Go before anything is written to the kernel. One range per
// endpoint and user, as the daemon's benchmark (bench/) writes them.
func BenchmarkEncode(b *testing.B) {
	defaults := map[string]config.Action{"lo": config.Deny}
	ifaces := []Iface{{Name: "lo", Index: 1}}
	for _, n := range []int{10_000, 100_000} {
		eps := make([]ep, n)
		for i := range eps {
			eps[i] = ep{name: fmt.Sprintf("r%d", i), ifaces: []string{"lo"},
				ranges: []string{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 14), byte(i >> 6), byte(i << 2)}), 30).String()},
				allow:  []string{fmt.Sprintf("uid:%d", 20000+i)}}
		}
		p := compile(b, defaults, eps...)
		eps[n/2].allow = append(slices.Clip(eps[n/2].allow), "uid:1")
		q := compile(b, defaults, eps...)
		b.Run(fmt.Sprintf("one-changed/ranges=%d", n), func(b *testing.B) {
			e := newEncoder(newCounterNames(4096))
			i := 0
			for b.Loop() {
				e.encode([]*policy.Policy{p, q}[i%2], ifaces, uint32(i), LogNone)
				i++
			}
		})
		// As a reload encodes: a change to the last policy, laid out in
		// its memory once written (Mirror).
		b.Run(fmt.Sprintf("as-change/ranges=%d", n), func(b *testing.B) {
			e := newEncoder(newCounterNames(4096))
			e.encode(p, ifaces, 0, LogNone)
			i := 1
			for b.Loop() {
				c := e.encodeChange([]*policy.Policy{p, q}[i%2], ifaces, uint32(i), LogNone)
				if c.delta == nil {
					b.Fatal("not encoded as a change")
				}
				c.layOut()
				i++
			}
		})
	}
}

// BenchmarkRetained measures what the daemon keeps on the heap for a large
// policy once it is loaded, part by part, in bytes per range: the parse
// cache (what each file parsed to, so that a reload parses only the changed
// file), the compiled policy (explain, D-Bus Check), and the encoder with
// the contents of one slot (what lets a reload write only the difference).
// The set is the one make bench loads: 100 000 ranges, one endpoint and
// one user each, in 100 drop-ins. Memory the policy shares with the parse
// cache counts as the policy's. Issue 19's goal is the daemon's RSS (make
// bench, parts 4 and 5); this says whose it is, without a daemon.
func BenchmarkRetained(b *testing.B) {
	const n, perFile = 100_000, 1000
	dir := b.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	mainPath := filepath.Join(dir, "net-tc-filter.yml")
	files := map[string]string{mainPath: "interfaces:\n  lo: {default: allow}\nlog:\n  decisions: denied\n"}
	for first := 0; first < n; first += perFile {
		var sb strings.Builder
		sb.WriteString("endpoints:\n")
		for i := first; i < first+perFile; i++ {
			r := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 14), byte(i >> 6), byte(i << 2)}), 30)
			fmt.Fprintf(&sb, "  - r%d:\n      iface: [lo]\n      range: [%s]\n      allow: [\"uid:%d\"]\n", i, r, 300000+i)
		}
		files[filepath.Join(dir, "conf.d", fmt.Sprintf("%06d.yml", first/perFile))] = sb.String()
	}
	if err := os.Mkdir(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		b.Fatal(err)
	}
	for path, text := range files {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	live := func() float64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return float64(m.HeapAlloc)
	}
	var cache, pol, enc float64
	for b.Loop() {
		base := live()
		c := new(config.Cache)
		cfg, err := c.Load(mainPath)
		if err != nil {
			b.Fatal(err)
		}
		p, err := policy.Compile(cfg, mapResolver{})
		if err != nil {
			b.Fatal(err)
		}
		// cfg is dead from here: the daemon keeps the policy, which
		// points into the endpoints the cache holds. c is dead after
		// the KeepAlive.
		withCache := live()
		runtime.KeepAlive(c)
		policyOnly := live()
		e := newEncoder(newCounterNames(4096))
		contents := e.encode(p, []Iface{{Name: "lo", Index: 1}}, 1, LogNone)
		withEncoder := live()
		if len(contents.Ranges) != n {
			b.Fatalf("encoded %d ranges, want %d", len(contents.Ranges), n)
		}
		runtime.KeepAlive(p)
		runtime.KeepAlive(e)
		runtime.KeepAlive(contents)
		cache, pol, enc = (withCache-policyOnly)/n, (policyOnly-base)/n, (withEncoder-policyOnly)/n
	}
	b.ReportMetric(cache, "cache-B/range")
	b.ReportMetric(pol, "policy-B/range")
	b.ReportMetric(enc, "encoder-B/range")
	b.ReportMetric(cache+pol+enc, "B/range")
}
