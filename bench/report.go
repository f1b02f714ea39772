// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// machineInfo describes this machine and the tools' versions.
func machineInfo(repo, daemon string) Machine {
	m := Machine{Cores: runtime.NumCPU(), Date: time.Now().UTC().Format(time.RFC3339), Go: runtime.Version()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Version[:])
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%d", &m.MemKiB)
	}
	first := func(name string, args ...string) string {
		cmd := exec.Command(name, args...)
		cmd.Dir = repo
		out, _ := cmd.CombinedOutput()
		return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	m.Commit = first("git", "describe", "--always", "--dirty", "--abbrev=12")
	m.Iptables = first("iptables", "-V")
	m.Nft = first("nft", "-v")
	m.Iperf3 = first("iperf3", "-v")
	m.Daemon = first(daemon, "version")
	m.LoadStart = loadavg()
	return m
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// Goal targets of issue 6.
const (
	GoalAboveFloorNs   = 40.0
	GoalRatioAt10k     = 0.97
	GoalReloadLiveMs   = 250.0
	GoalReloadRanges   = 100000
	GoalClassifyRanges = 100000
)

// Goal targets of issue 23 (per packet on real traffic).
const (
	GoalPerPacketNs     = 25.0  // above the empty program of the same attach mode
	GoalPerPacketRanges = 10000 //
)

// Goal targets of issue 19 (scale).
const (
	GoalRSSMiB        = 40.0    // idle, after reloads and during a flood, at GoalRSSRanges
	GoalRSSRanges     = 100000  //
	GoalColdToNft     = 0.25    // cold start over nft -f of the same set, at GoalReloadRanges
	GoalScaleRanges   = 1000000 //
	GoalScaleStartMs  = 20000.0 // start to live at GoalScaleRanges
	GoalScaleReloadMs = 1000.0  // one drop-in changed to live at GoalScaleRanges
	GoalScaleRSSMiB   = 200.0   // idle at GoalScaleRanges
)

func status(pass bool) string {
	if pass {
		return "PASS"
	}
	return "FAIL"
}

// judgeComparisons sums up part 2's comparisons for the goal "ahead of
// both peers at every size". The 64-byte UDP test is where a filter's cost
// per packet shows, and there net-tc-filter must be ahead every time. TCP
// with segmentation offload passes the filters once per 64 KB: their costs
// differ there by less than the rounds resolve, so a tie is a pass and
// only a lead of a peer that the rounds do resolve is a failure.
func judgeComparisons(cmps []Comparison) (value, verdict string) {
	count := map[string]map[string]int{"udp64": {}, "tcp": {}}
	var misses []string
	for _, c := range cmps {
		count[c.Test][c.Verdict]++
		if c.Verdict == VerdictBehind || (c.Test == "udp64" && c.Verdict != VerdictAhead) {
			misses = append(misses, fmt.Sprintf("%s at %d rules vs %s: %s (%d–%d rounds)", testName(c.Test), c.Size, c.Peer, c.Verdict, c.Ahead, c.Behind))
		}
	}
	parts := []string{}
	for _, test := range []string{"udp64", "tcp"} {
		n := count[test]
		parts = append(parts, fmt.Sprintf("%s: ahead in %d, tie in %d, behind in %d of %d comparisons", testName(test),
			n[VerdictAhead], n[VerdictTie], n[VerdictBehind], n[VerdictAhead]+n[VerdictTie]+n[VerdictBehind]))
	}
	value = strings.Join(parts, "; ")
	if len(misses) > 0 {
		value += " — " + strings.Join(misses, "; ")
	}
	return value, status(len(misses) == 0)
}

func testName(test string) string {
	if test == "udp64" {
		return "UDP 64 B"
	}
	return "TCP"
}

// Goals judges the results against the speed goals. A goal whose
// measurement is not in the run (a smaller -quick run, part 1 missing) is
// MISSING, never PASS.
func Goals(r *Results) []Goal {
	var g []Goal
	// 1: ≤ 40 ns above the floor at 100 000 ranges (every non-nocache case).
	g1 := Goal{Part: 1, Name: fmt.Sprintf("classifier at %d ranges, worst case above the floor", GoalClassifyRanges),
		Target: fmt.Sprintf("≤ %.0f ns", GoalAboveFloorNs), Status: "MISSING", Value: "not measured"}
	if r.Classify != nil && r.Classify.Error == "" {
		worst, name, n := math.Inf(-1), "", 0
		for _, row := range r.Classify.Rows {
			if row.Ranges == GoalClassifyRanges && !row.NoCache {
				n++
				if row.AboveFloor > worst {
					worst, name = row.AboveFloor, row.Name
				}
			}
		}
		if n > 0 {
			g1.Value = fmt.Sprintf("%.1f ns (%s)", worst, name)
			g1.Status = status(worst <= GoalAboveFloorNs)
		}
	}
	g = append(g, g1)

	// 2: ≥ 0.97 of no filter at 10 000 rules; ahead of both peers at every size.
	g2 := Goal{Part: 2, Name: "net-tc-filter throughput at 10000 rules, ratio to no filter (TCP, UDP 64 B)",
		Target: fmt.Sprintf("≥ %.2f", GoalRatioAt10k), Status: "MISSING", Value: "not measured"}
	g3 := Goal{Part: 2, Name: "net-tc-filter ahead of iptables and nft at every size (sign test over the paired rounds)",
		Target: "UDP 64 B: ahead at every size; TCP: behind at none", Status: "MISSING", Value: "not measured"}
	if t := r.Throughput; t != nil {
		for _, row := range t.Rows {
			if row.Filter == NameOurs && row.Size == 10000 {
				g2.Value = fmt.Sprintf("TCP %.3f, UDP %.3f", row.TCPRatio, row.UDPRatio)
				g2.Status = status(row.TCPRatio >= GoalRatioAt10k && row.UDPRatio >= GoalRatioAt10k)
			}
		}
		if len(t.Comparisons) > 0 {
			g3.Value, g3.Status = judgeComparisons(t.Comparisons)
		}
	}
	g = append(g, g2, g3)

	// 3: a 100 000-range reload live in ≤ 250 ms.
	g4 := Goal{Part: 3, Name: fmt.Sprintf("net-tc-filter reload of %d ranges, config change to live (probe)", GoalReloadRanges),
		Target: fmt.Sprintf("≤ %.0f ms", GoalReloadLiveMs), Status: "MISSING", Value: "not measured"}
	if rl := r.Reload; rl != nil {
		for _, row := range rl.Rows {
			if row.Filter == NameOurs && row.Size == GoalReloadRanges {
				g4.Value = fmt.Sprintf("%.0f ms", row.ReloadLive)
				g4.Status = status(row.ReloadLive <= GoalReloadLiveMs)
			}
		}
	}
	g = append(g, g4)

	// 4: under a flood the rate limit holds and the daemon stays under one core.
	g5 := Goal{Part: 4, Name: "decision log lines in any one second during a flood", Target: fmt.Sprintf("≤ log.rate (%d)", LogRate),
		Status: "MISSING", Value: "not measured"}
	g6 := Goal{Part: 4, Name: "daemon CPU during a flood", Target: "< 100% (one core)", Status: "MISSING", Value: "not measured"}
	if f := r.Footprint; f != nil && f.Flood.Sent > 0 {
		g5.Value = fmt.Sprintf("at most %d in one second (%.1f/s on average: %d lines in %.1f s)", f.Flood.MaxLinesInSecond, f.Flood.LinesPerSec, f.Flood.DecisionLines, f.Flood.LogWindowS)
		g5.Status = status(f.Flood.MaxLinesInSecond <= LogRate)
		if f.Flood.MaxLinesInSecond == 0 && f.Flood.DecisionLines > 0 { // a run from before the figure
			g5.Value = fmt.Sprintf("%.1f/s on average (%d lines in %.1f s)", f.Flood.LinesPerSec, f.Flood.DecisionLines, f.Flood.LogWindowS)
			g5.Status = status(f.Flood.LinesPerSec <= float64(LogRate))
		}
		g6.Value = fmt.Sprintf("%.1f%%", f.Flood.CPUPercent)
		g6.Status = status(f.Flood.CPUPercent < 100)
	}
	g = append(g, g5, g6)
	g = append(g, perPacketGoals(r)...)
	return append(g, scaleGoals(r)...)
}

// perPacketGoals judges issue 23's goal: on real traffic at
// GoalPerPacketRanges ranges, the program costs at most GoalPerPacketNs
// more than the empty program of the same attach mode, in every mode and
// family, for each of the two senders.
func perPacketGoals(r *Results) []Goal {
	var g []Goal
	for _, s := range []struct {
		batch int
		name  string
	}{{64, "sendmmsg, 64 datagrams a call"}, {1, "one datagram a call, like iperf3's writes"}} {
		goal := Goal{Part: 2, Name: fmt.Sprintf("per packet on real traffic at %d ranges above the empty program, same attach mode, IPv4 and IPv6 (%s)", GoalPerPacketRanges, s.name),
			Target: fmt.Sprintf("≤ %.0f ns", GoalPerPacketNs), Status: "MISSING", Value: "not measured"}
		if pp := r.PerPacket; pp != nil && pp.Error == "" {
			worst, at := math.Inf(-1), ""
			for _, row := range pp.Rows {
				if row.Batch == s.batch && row.AboveNs > worst {
					worst, at = row.AboveNs, row.Mode+" "+row.Family
				}
			}
			if at != "" {
				goal.Value = fmt.Sprintf("%+.1f ns (%s)", worst, at)
				goal.Status = status(worst <= GoalPerPacketNs)
			}
		}
		g = append(g, goal)
	}
	return g
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

// scaleGoals judges issue 19's goals: memory at 100 000 ranges (part 4),
// the cold start against nft -f in the same run (part 3), and a million
// ranges (part 5).
func scaleGoals(r *Results) []Goal {
	missing := func(part int, name, target string) Goal {
		return Goal{Part: part, Name: name, Target: target, Status: "MISSING", Value: "not measured"}
	}
	rssTarget := fmt.Sprintf("≤ %.0f MiB", GoalRSSMiB)
	idle := missing(4, fmt.Sprintf("daemon RSS idle at %d ranges", GoalRSSRanges), rssTarget)
	after := missing(4, fmt.Sprintf("daemon RSS idle at %d ranges after reloads", GoalRSSRanges), rssTarget)
	flood := missing(4, fmt.Sprintf("daemon RSS during a flood at %d ranges", GoalRSSRanges), rssTarget)
	if f := r.Footprint; f != nil {
		judge := func(g *Goal, s Snapshot, ranges int) {
			if ranges != GoalRSSRanges || s.RSSKiB == 0 {
				return
			}
			g.Value = fmt.Sprintf("%.1f MiB", mib(s.RSSKiB))
			if s.PeakKiB > 0 {
				g.Value += fmt.Sprintf(" (peak %.1f MiB)", mib(s.PeakKiB))
			}
			g.Status = status(mib(s.RSSKiB) <= GoalRSSMiB)
		}
		judge(&idle, f.Loaded, f.Loaded.Ranges)
		judge(&after, f.AfterReloads, f.AfterReloads.Ranges)
		judge(&flood, Snapshot{RSSKiB: f.Flood.RSSKiB}, f.Flood.Ranges)
	}
	cold := missing(3, fmt.Sprintf("cold start at %d ranges (start to READY=1) over `nft -f` of the same set, same run", GoalReloadRanges), fmt.Sprintf("≤ %.2f", GoalColdToNft))
	if rl := r.Reload; rl != nil {
		var ours, nft float64
		for _, row := range rl.Rows {
			if row.Size == GoalReloadRanges && row.Filter == NameOurs {
				ours = row.ColdMs
			}
			if row.Size == GoalReloadRanges && row.Filter == NameNft {
				nft = row.ColdMs
			}
		}
		if ours > 0 && nft > 0 {
			cold.Value = fmt.Sprintf("%.2f (%.0f ms / %.0f ms)", ours/nft, ours, nft)
			cold.Status = status(ours/nft <= GoalColdToNft)
		}
	}
	start := missing(5, fmt.Sprintf("%d ranges: start to live, enforcing correctly", GoalScaleRanges), fmt.Sprintf("≤ %.0f s", GoalScaleStartMs/1000))
	reload := missing(5, fmt.Sprintf("%d ranges: one drop-in changed to live (probe)", GoalScaleRanges), fmt.Sprintf("≤ %.0f ms", GoalScaleReloadMs))
	rss := missing(5, fmt.Sprintf("daemon RSS idle at %d ranges", GoalScaleRanges), fmt.Sprintf("≤ %.0f MiB", GoalScaleRSSMiB))
	if sc := r.Scale; sc != nil && sc.Ranges == GoalScaleRanges && sc.StartMs > 0 {
		start.Value = fmt.Sprintf("%.1f s", sc.StartMs/1000)
		if !sc.Checked {
			start.Value += ", check failed"
		}
		start.Status = status(sc.Checked && sc.StartMs <= GoalScaleStartMs)
		if sc.Reload.LiveMs > 0 {
			reload.Value = fmt.Sprintf("%.0f ms", sc.Reload.LiveMs)
			reload.Status = status(sc.Reload.LiveMs <= GoalScaleReloadMs)
		}
		if sc.Idle.RSSKiB > 0 {
			rss.Value = fmt.Sprintf("%.1f MiB (peak %.1f MiB); after the reload %.1f MiB", mib(sc.Idle.RSSKiB), mib(sc.Idle.PeakKiB), mib(sc.After.RSSKiB))
			rss.Status = status(mib(sc.Idle.RSSKiB) <= GoalScaleRSSMiB && mib(sc.After.RSSKiB) <= GoalScaleRSSMiB)
		}
	}
	return []Goal{idle, after, flood, cold, start, reload, rss}
}

// Markdown is the report README quotes: bench/results.md.
func Markdown(r *Results) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	m := r.Machine
	p("# net-tc-filter benchmark (issue 6)")
	p("")
	mode := "full run"
	if r.Config.Quick {
		mode = "**quick smoke run** (-quick: small sizes, one repetition; not the issue's figures)"
	}
	p("%s, %s, commit `%s`; kernel %s; %s, %d cores, %d MiB; %s; %s; %s; %.0f s wall.",
		mode, m.Date, m.Commit, strings.Fields(m.Kernel + " ")[0], m.CPU, m.Cores, m.MemKiB/1024, m.Iptables, m.Nft, m.Iperf3, r.WallSeconds)
	p("")
	p("Load average at the start %s, at the end %s (2 cores: anything else running on the machine widens the spread below).", m.LoadStart, m.LoadEnd)
	p("")
	p("## Goals")
	p("")
	p("| part | goal | target | measured | |")
	p("|---|---|---|---|---|")
	for _, g := range r.Goals {
		p("| %d | %s | %s | %s | **%s** |", g.Part, g.Name, g.Target, g.Value, g.Status)
	}
	p("")
	ok := 0
	for _, c := range r.Correctness {
		if c.OK {
			ok++
		}
	}
	p("Correctness: %d/%d checks passed (every filter, every size: the allowed user's datagrams all arrive, the denied user's none).", ok, len(r.Correctness))
	p("")

	p("## 1. Classifier cost (BPF_PROG_TEST_RUN)")
	p("")
	switch c := r.Classify; {
	case c == nil:
		p("Not run.")
	case c.Error != "":
		p("No results: %s (`%s`).", c.Error, c.Command)
	default:
		p("`%s`; floor (empty tc program): %.1f ns/pkt.", c.Command, c.Floor)
		p("")
		p("| case | ns/pkt | above the floor |")
		p("|---|---:|---:|")
		for _, row := range c.Rows {
			p("| %s | %.1f | %+.1f |", strings.TrimPrefix(row.Name, "BenchmarkClassify/"), row.NsPerPkt, row.AboveFloor)
		}
	}
	p("")

	p("## 2. Throughput through the filtered veth (allowed user)")
	p("")
	if t := r.Throughput; t != nil {
		pinned := "not pinned (one CPU)"
		if t.SenderCPU >= 0 {
			pinned = fmt.Sprintf("on CPU %d; the harness, the receivers and the daemon are kept off it", t.SenderCPU)
		}
		p("Every filter has a lane of its own (client and server namespaces, veth), all loaded at once; two more lanes carry an empty tc egress program (`return TC_ACT_UNSPEC`), one attached with tcx and one with clsact + cls_bpf, the floor any tc filter pays. Per size, %d rounds; a round measures every lane once, starting at a different lane each round, and each figure is compared with the no-filter lane's in the same round. Senders run as the allowed user, %s.", r.Config.Reps, pinned)
		p("")
		p("- **UDP 64 B**: one sender thread, one socket per lane, writes 64-byte datagrams (one `write` each, like iperf3) through the lanes in turns of %g ms, %g s per lane per round: the machine's drift over seconds, far larger than a filter's cost, touches every lane alike. kpps counts the datagrams each socket took (the ones its filter let pass); *arrived* is the share that reached the server's socket.", t.SliceMs, r.Config.Seconds)
		p("- **TCP**: iperf3, single stream, %g s after a first second left out (`-O 1`: slow start, buffer autotuning), one lane after another.", r.Config.Seconds)
		p("")
		p("Values are medians over the rounds, ratios the medians of each round's ratio to no filter (min–max over the rounds).")
		p("")
		p("| filter | rules | TCP Gbit/s | TCP ratio | (min–max) | UDP 64 B kpps | UDP ratio | (min–max) | arrived |")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, row := range t.Rows {
			tmin, tmax := ratioSpread(t.Samples, row.Filter, row.Size, "tcp")
			umin, umax := ratioSpread(t.Samples, row.Filter, row.Size, "udp64")
			p("| %s | %d | %.2f | %.3f | %.3f–%.3f | %.1f | %.3f | %.3f–%.3f | %.1f%% |", row.Filter, row.Size, row.TCPGbps, row.TCPRatio, tmin, tmax, row.UDPKpps, row.UDPRatio, umin, umax, 100*row.UDPArrived)
		}
		p("")
		p("Cost of a 64-byte datagram above the floor (issue 23): the sender is one thread on one CPU, so its time per datagram is 1/rate; each figure is the median over the rounds of (1/rate of the lane − 1/rate of the base lane in the same round), in ns of sender CPU, and the ratio is the median of the rounds' rate ratios. net-tc-filter attaches with tcx here: read it against the empty tcx program.")
		p("")
		p("| filter | rules | ns above no filter | ns above empty tcx | ratio to empty tcx | ns above empty clsact | ratio to empty clsact |")
		p("|---|---:|---:|---:|---:|---:|---:|")
		for _, row := range t.Rows {
			if row.Filter == NameNone {
				continue
			}
			p("| %s | %d | %+.0f | %+.0f | %.3f | %+.0f | %.3f |", row.Filter, row.Size, row.AboveNone, row.AboveTCX, row.RatioTCX, row.AboveClsact, row.RatioClsact)
		}
		p("")
		if len(t.ProgStats) > 0 {
			p("The tc programs' own time per packet, from the kernel's BPF run-time statistics (`bpf_stats`: run time and run count) in one more UDP round, not counted above, with the statistics on for that round alone; it includes the statistics' own two clock reads per run, alike for every program:")
			p("")
			p("| program | rules | runs | ns/packet |")
			p("|---|---:|---:|---:|")
			for _, st := range t.ProgStats {
				p("| %s | %d | %d | %.1f |", st.Filter, st.Size, st.Runs, st.NsPerRun)
			}
			p("")
		}
		if pp := r.PerPacket; pp != nil {
			p("Per packet on real traffic (issue 23): `%s` — the allowed user's 64-byte datagrams to a range of a %d-range policy, through a veth of their own, the program attached as the daemon attaches it and an empty program attached the same way; each figure the median of the runs. *program* is the program's own time per packet from `bpf_stats` (with its two clock reads); *sender* the sender's time per datagram. The sender enters the kernel once per datagram (batch 1) or once per 64 (batch 64, `sendmmsg`).", pp.Command, GoalPerPacketRanges)
			p("")
			if pp.Error != "" {
				p("No result: %s.", pp.Error)
			} else {
				p("| attach | family | batch | empty program ns | net-tc-filter ns | above empty | sender ns, empty | sender ns, net-tc-filter |")
				p("|---|---|---:|---:|---:|---:|---:|---:|")
				for _, row := range pp.Rows {
					p("| %s | %s | %d | %.1f | %.1f | %+.1f | %.0f | %.0f |", row.Mode, row.Family, row.Batch, row.EmptyNs, row.OursNs, row.AboveNs, row.EmptySender, row.OursSender)
				}
			}
			p("")
		}
		p("net-tc-filter against each peer, round by round: a sign test calls it ahead (behind) when a coin would give that many rounds one way with a chance of at most %g (one-sided), else a tie, which the rounds do not resolve.", signTestAlpha)
		p("")
		p("| test | rules | peer | rounds ahead | rounds behind | verdict |")
		p("|---|---:|---|---:|---:|---|")
		for _, c := range t.Comparisons {
			p("| %s | %d | %s | %d | %d | %s |", testName(c.Test), c.Size, c.Peer, c.Ahead, c.Behind, c.Verdict)
		}
		p("")
		p("TCP with segmentation offload passes a filter once per 64 KB segment, so the filters' costs per packet, which the UDP test separates, move TCP by well under 1%%: less than its rounds resolve.")
		p("")
		p("Rule sets are equivalent: N distinct (uid, /30) pairs; iptables: one OUTPUT rule per range (`-o %s -d RANGE -m owner ! --uid-owner UID -j DROP`, the allowed user's last); nft: `ip daddr @prot meta skuid . ip daddr != @allow drop` with interval sets; net-tc-filter: one endpoint per range on `%s` (`default: allow`), in drop-ins of %d endpoints.", Iface, Iface, PerDropIn)
	} else {
		p("Not run.")
	}
	p("")

	p("## 3. Policy load and reload")
	p("")
	if rl := r.Reload; rl != nil {
		p("Medians of %d. cold: iptables-restore / nft -f run time into an empty namespace; net-tc-filter: start to READY=1 (live on the interface). reload: the allowed user's range is also granted to the denied user, who probes it every %g ms; *live* is from the change (net-tc-filter: the changed drop-in's rename) to the first probe through, %g s after the cold load for every filter.", r.Config.ReloadReps, r.Config.ReloadProbeEveryMs, steadyWait.Seconds())
		p("")
		p("| filter | ranges | cold ms | reload command ms | reload live ms | rename → RELOADING=1 ms | `check` ms |")
		p("|---|---:|---:|---:|---:|---:|---:|")
		for _, row := range rl.Rows {
			extra := "| – | –"
			if row.Filter == NameOurs {
				extra = fmt.Sprintf("| %.0f | %.0f", row.ReloadingMs, row.CheckMs)
			}
			p("| %s | %d | %.1f | %.1f | %.1f %s |", row.Filter, row.Size, row.ColdMs, row.ReloadCmdMs, row.ReloadLive, extra)
		}
	} else {
		p("Not run.")
	}
	p("")

	p("## 4. Daemon footprint")
	p("")
	if f := r.Footprint; f != nil {
		p("| state | RSS MiB | CPU %% of a core |")
		p("|---|---:|---:|")
		p("| idle, harmless config (no endpoints) | %.1f | %.2f |", float64(f.Idle.RSSKiB)/1024, f.Idle.CPUPercent)
		p("| idle, %d ranges | %.1f | %.2f |", f.Loaded.Ranges, float64(f.Loaded.RSSKiB)/1024, f.Loaded.CPUPercent)
		if f.AfterReloads.RSSKiB > 0 {
			p("| idle, %d ranges, after %d one-drop-in reloads (peak so far %.1f MiB) | %.1f | %.2f |", f.AfterReloads.Ranges, r.Config.FootprintReloads, mib(f.AfterReloads.PeakKiB), mib(f.AfterReloads.RSSKiB), f.AfterReloads.CPUPercent)
		}
		p("| denied user flooding, %d ranges | %.1f | %.1f |", f.Flood.Ranges, float64(f.Flood.RSSKiB)/1024, f.Flood.CPUPercent)
		p("")
		p("Flood: %g s of 64-byte datagrams to %d destination ports of the protected address, %d sent (%.0f/s), %d received by the server; %d decision log lines (%.1f/s, at most %d in one second, log.rate %d) and %d other lines in %.1f s.",
			f.Flood.Seconds, f.Flood.Ports, f.Flood.Sent, f.Flood.SentPps, f.Flood.ServerRx, f.Flood.DecisionLines, f.Flood.LinesPerSec, f.Flood.MaxLinesInSecond, f.Flood.LogRate, f.Flood.OtherLines, f.Flood.LogWindowS)
	} else {
		p("Not run.")
	}
	p("")
	p("## 5. Scale")
	p("")
	if sc := r.Scale; sc != nil && sc.StartMs > 0 {
		p("The daemon alone with %d ranges (one endpoint and uid each, drop-ins of %d endpoints). *Start to live*: from starting the process to READY=1, which the daemon sends once the policy is live on the interface; then the allowed user's range is checked like every other size, and the first and a middle range must drop both users. RSS from /proc (VmRSS; peak: VmHWM).", sc.Ranges, PerDropIn)
		p("")
		p("| ranges | start to live | RSS idle | peak RSS | one drop-in changed → live | rename → RELOADING=1 | RSS after the reload |")
		p("|---:|---:|---:|---:|---:|---:|---:|")
		p("| %d | %.1f s | %.1f MiB | %.1f MiB | %.0f ms | %.0f ms | %.1f MiB |", sc.Ranges, sc.StartMs/1000, mib(sc.Idle.RSSKiB), mib(sc.After.PeakKiB), sc.Reload.LiveMs, sc.Reload.ReloadingMs, mib(sc.After.RSSKiB))
	} else {
		p("Not run.")
	}
	for _, n := range r.Notes {
		p("")
		p("Note: %s", n)
	}
	return b.String()
}

// ratioSpread is the smallest and largest ratio of one filter's rounds at
// one size to the no-filter rounds they ran with.
func ratioSpread(samples []ThroughputSample, filter string, size int, test string) (lo, hi float64) {
	r := roundRatios(samples, filter, size, test)
	if len(r) == 0 {
		return 0, 0
	}
	return slices.Min(r), slices.Max(r)
}
