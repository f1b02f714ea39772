// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

// --- part 2 ---------------------------------------------------------------
//
// Every filter gets a lane of its own (client and server namespaces and
// their veth), so all four stay loaded while the senders go from one to
// the next: no filter is loaded or removed between the samples of a size,
// and no filter's leftovers (iptables leaves its table hooked) touch
// another's numbers. Each size runs Reps rounds; a round measures every
// lane once, and each lane's figure is compared with the no-filter lane's
// of the same round.

// udpSlice is how long the alternating sender stays on one lane.
const udpSlice = 20 * time.Millisecond

// minArrived is the share of the allowed user's datagrams that must reach
// the server in a UDP round: a receiver slower than the sender drops some,
// a filter that blocks the user drops them all.
const minArrived = 0.5

// A lane is a client namespace with a veth to a server namespace of its
// own, and on the server side the probes' counter, a counter for part 2's
// datagrams and iperf3 servers.
type lane struct {
	tp          *Topology
	probe, sink *netlab.Counter
	iperf       map[netip.Addr]*exec.Cmd
}

func newLane() (*lane, error) {
	tp, err := NewTopology()
	if err != nil {
		return nil, err
	}
	l := &lane{tp: tp, iperf: map[netip.Addr]*exec.Cmd{}}
	if l.probe, err = tp.Server.CountUDP(probePort); err == nil {
		l.sink, err = tp.Server.CountUDP(sinkPort)
	}
	if err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

func (l *lane) close() {
	for _, cmd := range l.iperf {
		cmd.Process.Kill()
		cmd.Wait()
	}
	for _, c := range []*netlab.Counter{l.probe, l.sink} {
		if c != nil {
			c.Close()
		}
	}
	l.tp.Close()
}

// iperfServer starts an iperf3 server bound to dst (once per address):
// an unbound server would answer from the veth's address.
func (l *lane) iperfServer(dst netip.Addr) error {
	if _, ok := l.iperf[dst]; ok {
		return nil
	}
	cmd := l.tp.Server.Command("iperf3", "-s", "-B", dst.String(), "-p", strconv.Itoa(iperfPort))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("iperf3 server on %s: %w", dst, err)
	}
	l.iperf[dst] = cmd
	time.Sleep(300 * time.Millisecond) // until it listens
	return nil
}

// senderCPU is the CPU part 2's senders run on; the harness keeps itself,
// the receivers and the daemon off it. -1 on a machine with one CPU.
func senderCPU() int {
	if runtime.NumCPU() < 2 {
		return -1
	}
	return 0
}

func (h *Harness) throughput(ctx context.Context) (err error) {
	lanes := make([]*lane, 0, 6)
	defer func() {
		for _, l := range lanes {
			l.close()
		}
	}()
	for range 6 {
		l, err := newLane()
		if err != nil {
			return err
		}
		lanes = append(lanes, l)
	}
	ours := &Ours{Bin: h.opts.Daemon, NS: lanes[3].tp.Client}
	// The empty programs are the floor of each attach mode (issue 23):
	// measured in the same rounds, every filter's cost reads against them.
	emptyTCX, emptyClsact := &Empty{NS: lanes[4].tp.Client}, &Empty{NS: lanes[5].tp.Client, Clsact: true}
	filters := []Filter{noFilter{}, Iptables{NS: lanes[1].tp.Client}, Nft{NS: lanes[2].tp.Client}, ours, emptyTCX, emptyClsact}
	defer func() {
		for _, f := range []Filter{ours, emptyTCX, emptyClsact} {
			if rerr := f.Remove(); rerr != nil && err == nil {
				err = fmt.Errorf("remove %s: %w", f.Name(), rerr)
			}
		}
	}()
	cpu := senderCPU()
	restore, err := keepOff(cpu)
	if err != nil {
		return err
	}
	defer restore()
	r := &ThroughputResult{SenderCPU: cpu, SliceMs: float64(udpSlice.Milliseconds())}
	h.res.Throughput = r
	for _, n := range h.opts.ThroughputSizes {
		rs := h.ruleSet(n)
		for i, f := range filters {
			if _, err := f.Apply(rs); err != nil {
				return fmt.Errorf("apply %s at %d rules: %w", f.Name(), n, err)
			}
			if _, err := h.check(lanes[i], "throughput", f.Name(), rs); err != nil {
				return err
			}
		}
		time.Sleep(300 * time.Millisecond) // the daemon logs the checks' denied datagrams
		for rep := range h.opts.Reps {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := h.udpRound(rep, lanes, filters, rs, cpu, r); err != nil {
				return err
			}
		}
		if err := h.progStats(lanes, filters, rs, cpu, r); err != nil {
			return err
		}
		for rep := range h.opts.Reps {
			got := make([]string, len(filters))
			for j := range filters {
				if err := ctx.Err(); err != nil {
					return err
				}
				i := (j + rep) % len(filters) // each round starts at another lane
				gbps, err := h.iperf3(lanes[i], rs.Target(), cpu)
				if err != nil {
					return fmt.Errorf("%s at %d rules: %w", filters[i].Name(), n, err)
				}
				r.Samples = append(r.Samples, ThroughputSample{Rep: rep, Filter: filters[i].Name(), Size: n, Test: "tcp", Value: gbps, Unit: "Gbit/s"})
				got[i] = fmt.Sprintf("%s %.2f", filters[i].Name(), gbps)
			}
			h.logf("   %6d rules, round %d, TCP Gbit/s: %s", n, rep+1, strings.Join(got, ", "))
		}
	}
	r.Rows, r.Comparisons = summarize(r.Samples, h.opts.ThroughputSizes)
	return h.perPacket(ctx)
}

// udpRound runs the alternating sender as the allowed user over every lane
// once, Seconds of turns for each, and records each lane's datagrams per
// second: those its socket took, which is those its filter let pass.
func (h *Harness) udpRound(rep int, lanes []*lane, filters []Filter, rs RuleSet, cpu int, r *ThroughputResult) error {
	names := make([]string, len(lanes))
	for j := range lanes {
		l := lanes[(j+rep)%len(lanes)] // each round starts at another lane
		names[j] = l.tp.Client.Name
		l.sink.Reset()
	}
	dst := netip.AddrPortFrom(rs.Target(), sinkPort)
	dur := time.Duration(h.opts.Seconds * float64(len(lanes)) * float64(time.Second))
	cmd, err := agentCmd(lanes[rep%len(lanes)].tp.Client, h.allow, "alternate", "-dst", dst.String(),
		"-netns", strings.Join(names, ","), "-slice", udpSlice.String(), "-dur", dur.String(), "-cpu", strconv.Itoa(cpu))
	if err != nil {
		return err
	}
	out, err := netlab.Run(cmd)
	if err != nil {
		return fmt.Errorf("alternating sender: %w", err)
	}
	time.Sleep(100 * time.Millisecond) // the last datagrams reach the counters
	type tally struct {
		sent int64
		secs float64
	}
	got := map[string]tally{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var name string
		var t tally
		if _, err := fmt.Sscanf(line, "netns %s sent %d seconds %g", &name, &t.sent, &t.secs); err != nil || t.secs <= 0 {
			return fmt.Errorf("alternating sender: unexpected output %q", out)
		}
		got[name] = t
	}
	logged := make([]string, len(lanes))
	for i, l := range lanes {
		t, ok := got[l.tp.Client.Name]
		if !ok {
			return fmt.Errorf("alternating sender: no figure for %s in %q", l.tp.Client.Name, out)
		}
		f := filters[i].Name()
		arrived := 0.0
		if t.sent > 0 {
			arrived = float64(l.sink.Count()) / float64(t.sent)
		}
		if arrived < minArrived {
			return fmt.Errorf("%w: %s at %d rules: %d of the allowed user's %d datagrams arrived",
				ErrCorrectness, f, rs.N, l.sink.Count(), t.sent)
		}
		kpps := float64(t.sent) / t.secs / 1e3
		r.Samples = append(r.Samples, ThroughputSample{Rep: rep, Filter: f, Size: rs.N, Test: "udp64", Value: kpps, Unit: "kpps", Arrived: arrived})
		logged[i] = fmt.Sprintf("%s %.1f (%.0f%% arrived)", f, kpps, 100*arrived)
	}
	h.logf("   %6d rules, round %d, UDP 64 B kpps: %s", rs.N, rep+1, strings.Join(logged, ", "))
	return nil
}

// progStats runs one more UDP round, not counted with the others, with the
// kernel's BPF run-time statistics on, and records each tc program's own
// time per packet. The statistics cost every BPF program on the machine
// two clock reads per run while on, so they are on for this round alone.
func (h *Harness) progStats(lanes []*lane, filters []Filter, rs RuleSet, cpu int, r *ThroughputResult) error {
	type measured struct {
		filter string
		prog   *ebpf.Program
		before *ebpf.ProgramStats
	}
	var progs []measured
	defer func() {
		for _, m := range progs {
			m.prog.Close()
		}
	}()
	for i, f := range filters {
		prog, err := laneProgram(lanes[i], f)
		if err != nil {
			// The daemon attached some other way (clsact on a kernel
			// without tcx): say so, measure the rest.
			h.res.Notes = append(h.res.Notes, fmt.Sprintf("bpf_stats of %s at %d rules: %v", f.Name(), rs.N, err))
			continue
		}
		if prog != nil {
			progs = append(progs, measured{filter: f.Name(), prog: prog})
		}
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		h.res.Notes = append(h.res.Notes, fmt.Sprintf("bpf_stats: %v", err))
		return nil
	}
	defer stats.Close()
	for i := range progs {
		if progs[i].before, err = progs[i].prog.Stats(); err != nil {
			return fmt.Errorf("bpf_stats of %s: %w", progs[i].filter, err)
		}
	}
	if err := h.udpRound(0, lanes, filters, rs, cpu, &ThroughputResult{}); err != nil {
		return err
	}
	var logged []string
	for _, m := range progs {
		after, err := m.prog.Stats()
		if err != nil {
			return fmt.Errorf("bpf_stats of %s: %w", m.filter, err)
		}
		st := ProgStat{Filter: m.filter, Size: rs.N, Runs: after.RunCount - m.before.RunCount}
		if st.Runs > 0 {
			st.NsPerRun = float64(after.Runtime-m.before.Runtime) / float64(st.Runs)
		}
		r.ProgStats = append(r.ProgStats, st)
		logged = append(logged, fmt.Sprintf("%s %.1f ns (%d runs)", m.filter, st.NsPerRun, st.Runs))
	}
	h.logf("   %6d rules, bpf_stats round, tc program ns/packet: %s", rs.N, strings.Join(logged, ", "))
	return nil
}

// iperf3 runs a single-stream TCP iperf3 client as the allowed user in
// the lane's client, on the sender CPU, and returns the Gbit/s received.
// Its first second (slow start, buffer autotuning) is left out: -O 1.
func (h *Harness) iperf3(l *lane, dst netip.Addr, cpu int) (float64, error) {
	if err := l.iperfServer(dst); err != nil {
		return 0, err
	}
	args := []string{"exec", "-dst", dst.String(), "iperf3", "-c", dst.String(), "-p", strconv.Itoa(iperfPort),
		"-B", ClientAddr.String(), "-t", strconv.FormatFloat(h.opts.Seconds, 'f', -1, 64), "-O", "1", "-J"}
	if cpu >= 0 {
		args = append(args, "-A", strconv.Itoa(cpu))
	}
	var out string
	var err error
	// The server takes one test at a time and may still be finishing the
	// last one: retry a busy server briefly.
	for try := 0; ; try++ {
		var cmd *exec.Cmd
		if cmd, err = agentCmd(l.tp.Client, h.allow, args...); err != nil {
			return 0, err
		}
		out, err = netlab.Run(cmd)
		if err == nil || try == 5 || !strings.Contains(out+err.Error(), "busy") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return 0, fmt.Errorf("iperf3: %w; %s", err, lastLines(out, 5))
	}
	return parseIperf3(out)
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(len(l)-n, 0):], "\n")
}

// parseIperf3 reads the Gbit/s received from iperf3 -J output.
func parseIperf3(out string) (float64, error) {
	var j struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		return 0, fmt.Errorf("iperf3 JSON: %w", err)
	}
	if j.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", j.Error)
	}
	if j.End.SumReceived.BitsPerSecond <= 0 {
		return 0, errors.New("iperf3: no TCP throughput in the output")
	}
	return j.End.SumReceived.BitsPerSecond / 1e9, nil
}

// keepOff moves this process's threads off cpu, and with them what it
// starts from then on (servers, the daemon, iptables), leaving cpu to the
// senders. restore puts the old affinity back.
func keepOff(cpu int) (restore func(), err error) {
	noop := func() {}
	if cpu < 0 {
		return noop, nil
	}
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		return nil, fmt.Errorf("CPU affinity: %w", err)
	}
	rest := orig
	rest.Clear(cpu)
	if rest.Count() == 0 {
		return noop, nil
	}
	if err := setAffinity(&rest); err != nil {
		return nil, err
	}
	return func() { setAffinity(&orig) }, nil
}

// setAffinity sets the CPUs of every thread of this process. A thread made
// while the list is read inherits its maker's set, which may be the old
// one: the list is read again until it brings no new thread.
func setAffinity(set *unix.CPUSet) error {
	done := map[int]bool{}
	for pass := 0; pass < 5; pass++ {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("CPU affinity: %w", err)
		}
		fresh := false
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil || done[tid] {
				continue
			}
			fresh = true
			done[tid] = true
			if err := unix.SchedSetaffinity(tid, set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("CPU affinity of thread %d: %w", tid, err)
			}
		}
		if !fresh {
			break
		}
	}
	return nil
}

// summarize makes, per size, a row per filter: the medians of its rounds,
// and the median of its rounds' ratios to the no-filter lane of the same
// round. And per size, test and peer, a comparison of the rounds in which
// net-tc-filter was ahead and behind.
func summarize(samples []ThroughputSample, sizes []int) (rows []ThroughputRow, cmps []Comparison) {
	type key struct {
		filter string
		size   int
		rep    int
		test   string
	}
	value := map[key]ThroughputSample{}
	reps := 0
	for _, s := range samples {
		value[key{s.Filter, s.Size, s.Rep, s.Test}] = s
		reps = max(reps, s.Rep+1)
	}
	median := func(xs []float64) float64 {
		if len(xs) == 0 {
			return 0
		}
		return Median(xs)
	}
	for _, n := range sizes {
		for _, f := range []string{NameNone, NameIptables, NameNft, NameOurs, NameEmptyTCX, NameEmptyClsact} {
			row := ThroughputRow{Filter: f, Size: n}
			var tcp, udp, arrived []float64
			for rep := range reps {
				if s, ok := value[key{f, n, rep, "tcp"}]; ok {
					tcp = append(tcp, s.Value)
				}
				if s, ok := value[key{f, n, rep, "udp64"}]; ok {
					udp, arrived = append(udp, s.Value), append(arrived, s.Arrived)
				}
			}
			if len(tcp)+len(udp) == 0 {
				continue
			}
			row.TCPGbps, row.TCPRatio = median(tcp), median(roundRatios(samples, f, n, "tcp"))
			row.UDPKpps, row.UDPRatio, row.UDPArrived = median(udp), median(roundRatios(samples, f, n, "udp64")), median(arrived)
			row.AboveNone = median(roundCosts(samples, f, NameNone, n))
			row.AboveTCX, row.RatioTCX = median(roundCosts(samples, f, NameEmptyTCX, n)), median(roundRatiosTo(samples, f, NameEmptyTCX, n, "udp64"))
			row.AboveClsact, row.RatioClsact = median(roundCosts(samples, f, NameEmptyClsact, n)), median(roundRatiosTo(samples, f, NameEmptyClsact, n, "udp64"))
			rows = append(rows, row)
		}
		for _, test := range []string{"udp64", "tcp"} {
			for _, peer := range []string{NameIptables, NameNft} {
				c := Comparison{Test: test, Size: n, Peer: peer}
				for rep := range reps {
					o, ok1 := value[key{NameOurs, n, rep, test}]
					p, ok2 := value[key{peer, n, rep, test}]
					switch {
					case !ok1 || !ok2:
					case o.Value > p.Value:
						c.Ahead++
					case o.Value < p.Value:
						c.Behind++
					}
				}
				if c.Ahead+c.Behind > 0 {
					c.Verdict = signTest(c.Ahead, c.Behind)
					cmps = append(cmps, c)
				}
			}
		}
	}
	return rows, cmps
}

// roundRatios is, for every round of one filter at one size in one test,
// its figure over the no-filter lane's in the same round.
func roundRatios(samples []ThroughputSample, filter string, size int, test string) []float64 {
	return roundRatiosTo(samples, filter, NameNone, size, test)
}

// roundRatiosTo is, for every round of one filter at one size in one test,
// its figure over the base lane's in the same round.
func roundRatiosTo(samples []ThroughputSample, filter, base string, size int, test string) []float64 {
	var r []float64
	pairRounds(samples, filter, base, size, test, func(v, b float64) { r = append(r, v/b) })
	return r
}

// roundCosts is, for every round of one filter at one size, what a 64-byte
// datagram cost the sender above the base lane's in the same round, in ns:
// one thread sends, so its time per datagram is 1/rate.
func roundCosts(samples []ThroughputSample, filter, base string, size int) []float64 {
	var r []float64
	pairRounds(samples, filter, base, size, "udp64", func(kpps, baseKpps float64) { r = append(r, 1e6/kpps-1e6/baseKpps) })
	return r
}

// pairRounds calls fn with the figures of filter and base, for every round
// at one size in one test where both have one.
func pairRounds(samples []ThroughputSample, filter, base string, size int, test string, fn func(v, b float64)) {
	byRep := map[int]float64{}
	for _, s := range samples {
		if s.Filter == base && s.Size == size && s.Test == test {
			byRep[s.Rep] = s.Value
		}
	}
	for _, s := range samples {
		if b := byRep[s.Rep]; s.Filter == filter && s.Size == size && s.Test == test && b > 0 && s.Value > 0 {
			fn(s.Value, b)
		}
	}
}

// Verdicts of a comparison.
const (
	VerdictAhead  = "ahead"
	VerdictBehind = "behind"
	VerdictTie    = "tie"
)

// signTestAlpha is the chance the sign test may take of calling a tie a
// lead (one-sided).
const signTestAlpha = 0.05

// signTest judges paired rounds: ahead (behind) when so many rounds went
// one way that a coin would do it with a chance of at most signTestAlpha,
// else a tie, a difference the rounds do not resolve.
func signTest(ahead, behind int) string {
	switch n := ahead + behind; {
	case binomialTail(n, ahead) <= signTestAlpha:
		return VerdictAhead
	case binomialTail(n, behind) <= signTestAlpha:
		return VerdictBehind
	}
	return VerdictTie
}

// binomialTail is the chance of at least k heads in n fair coin tosses.
func binomialTail(n, k int) float64 {
	if k <= 0 {
		return 1
	}
	p, c := 0.0, 1.0 // c: n choose i
	for i := 0; i <= n; i++ {
		if i >= k {
			p += c
		}
		c = c * float64(n-i) / float64(i+1)
	}
	for range n {
		p /= 2
	}
	return p
}
