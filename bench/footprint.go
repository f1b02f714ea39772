// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// procStat is a process's CPU time so far (user + system) and its RSS.
func procStat(pid int) (cpu time.Duration, rssKiB int64, err error) {
	cpu, rssKiB, _, err = procStatPeak(pid)
	return cpu, rssKiB, err
}

// procStatPeak is procStat with the process's peak RSS (VmHWM).
func procStatPeak(pid int) (cpu time.Duration, rssKiB, peakKiB int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, fmt.Errorf("daemon stat: %w", err)
	}
	// Fields after the command name (which may hold spaces), from field 3.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, 0, fmt.Errorf("daemon stat: unexpected %q", b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, 0, fmt.Errorf("daemon stat: unexpected %q", b)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // utime, field 14
	st, err2 := strconv.ParseInt(f[12], 10, 64) // stime, field 15
	if err1 != nil || err2 != nil {
		return 0, 0, 0, fmt.Errorf("daemon stat: unexpected %q", b)
	}
	const hz = 100 // USER_HZ on Linux
	cpu = time.Duration(ut+st) * time.Second / hz
	st2, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, fmt.Errorf("daemon status: %w", err)
	}
	for _, line := range strings.Split(string(st2), "\n") {
		for _, f := range []struct {
			name string
			to   *int64
		}{{"VmRSS:", &rssKiB}, {"VmHWM:", &peakKiB}} {
			if v, ok := strings.CutPrefix(line, f.name); ok {
				if *f.to, err = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64); err != nil {
					return 0, 0, 0, fmt.Errorf("daemon %s %q: %w", f.name, v, err)
				}
			}
		}
	}
	return cpu, rssKiB, peakKiB, nil
}

// window measures the daemon's CPU share over d and its RSS at the end.
func window(pid int, d time.Duration, during func() error) (Snapshot, error) {
	c0, _, err := procStat(pid)
	if err != nil {
		return Snapshot{}, err
	}
	t0 := time.Now()
	if during != nil {
		if err := during(); err != nil {
			return Snapshot{}, err
		}
	} else {
		time.Sleep(d)
	}
	c1, rss, peak, err := procStatPeak(pid)
	if err != nil {
		return Snapshot{}, err
	}
	el := time.Since(t0)
	return Snapshot{RSSKiB: rss, PeakKiB: peak, WindowS: el.Seconds()}.withCPU(c1-c0, el), nil
}

func (s Snapshot) withCPU(cpu, el time.Duration) Snapshot {
	s.CPUPercent = 100 * cpu.Seconds() / el.Seconds()
	return s
}

// rxPackets is the server side's received packet count on the veth.
func (h *Harness) rxPackets() (int64, error) {
	out, err := h.main.tp.Server.Exec("ip", "-j", "-s", "link", "show", "dev", Iface)
	if err != nil {
		return 0, err
	}
	var links []struct {
		Stats struct {
			RX struct {
				Packets int64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		return 0, fmt.Errorf("ip -s link: unexpected %q", out)
	}
	return links[0].Stats.RX.Packets, nil
}

// --- part 4 ---------------------------------------------------------------

// releaseWait is how long the daemon is left alone after a load before its
// idle RSS is taken: it keeps the memory a load freed for 10 s after the
// load is done with, for a reload that follows soon, then gives it back to
// the kernel (daemon.releaseAfter). After a start, done means once the idle
// slot is written too, which takes seconds at 100 000 ranges on a busy
// machine. Idle is after that.
const releaseWait = 20 * time.Second

func (h *Harness) footprint(ctx context.Context) error {
	r := &FootprintResult{}
	h.res.Footprint = r
	idleWin := 3 * time.Second
	if h.opts.Quick {
		idleWin = time.Second
	}
	// Idle with the harmless configuration (protects nothing).
	d, err := StartDaemon(h.opts.Daemon, h.main.tp.Client, HarmlessYAML(), time.Minute)
	if err != nil {
		return fmt.Errorf("daemon, harmless config: %w", err)
	}
	time.Sleep(time.Second)
	r.Idle, err = window(d.Pid(), idleWin, nil)
	if serr := d.Stop(); err == nil && serr != nil {
		err = serr
	}
	if err != nil {
		return err
	}
	h.logf("   idle, harmless config: RSS %d KiB, CPU %.2f%%", r.Idle.RSSKiB, r.Idle.CPUPercent)
	if err := ctx.Err(); err != nil {
		return err
	}

	// Idle with N ranges, then a flood.
	rs := h.ruleSet(h.opts.FootprintRanges)
	d, err = StartDaemon(h.opts.Daemon, h.main.tp.Client, rs.Ours(), 5*time.Minute)
	if err != nil {
		return fmt.Errorf("daemon, %d ranges: %w", rs.N, err)
	}
	defer d.Stop()
	time.Sleep(releaseWait)
	if r.Loaded, err = window(d.Pid(), idleWin, nil); err != nil {
		return err
	}
	r.Loaded.Ranges = rs.N
	h.logf("   idle, %d ranges: RSS %d KiB, CPU %.2f%%", rs.N, r.Loaded.RSSKiB, r.Loaded.CPUPercent)
	if _, err := h.check(h.main, "footprint", NameOurs, rs); err != nil {
		return err
	}
	// Reloads must not leave the daemon bigger than it started: each
	// rewrites the last drop-in (the allowed user's range granted to the
	// denied user, then taken back), an even number, so the set the flood
	// meets is the one checked.
	for i := range h.opts.FootprintReloads {
		next := rs
		if i%2 == 0 {
			next.AlsoAllow = h.deny.UID
		}
		d.Notify.Drain()
		if _, err := d.WriteConfig(next.Ours()); err != nil {
			return err
		}
		if _, err := d.WaitNotify("RELOADING=1", time.Minute); err != nil {
			return fmt.Errorf("footprint reload %d: %w", i+1, err)
		}
		if _, err := d.WaitNotify("READY=1", 5*time.Minute); err != nil {
			return fmt.Errorf("footprint reload %d: %w", i+1, err)
		}
	}
	if h.opts.FootprintReloads > 0 {
		time.Sleep(releaseWait)
		if r.AfterReloads, err = window(d.Pid(), idleWin, nil); err != nil {
			return err
		}
		r.AfterReloads.Ranges = rs.N
		h.logf("   idle after %d reloads, %d ranges: RSS %d KiB (peak %d KiB), CPU %.2f%%", h.opts.FootprintReloads, rs.N, r.AfterReloads.RSSKiB, r.AfterReloads.PeakKiB, r.AfterReloads.CPUPercent)
		if _, err := h.check(h.main, "after reloads", NameOurs, rs); err != nil {
			return err
		}
	}

	fl := &r.Flood
	fl.Ranges, fl.Seconds, fl.Ports, fl.LogRate = rs.N, h.opts.FloodSeconds, 4096, LogRate
	logBefore, err := d.Log()
	if err != nil {
		return err
	}
	rx0, err := h.rxPackets()
	if err != nil {
		return err
	}
	dur := time.Duration(fl.Seconds * float64(time.Second))
	// The denied user floods the protected address (4096 destination
	// ports: distinct decisions, so aggregation alone cannot hide them and
	// the rate limit has to hold), 64-byte datagrams as fast as it can.
	snap, err := window(d.Pid(), dur, func() error {
		var err error
		fl.Sent, _, err = h.sendAs(h.main, h.deny, netip.AddrPortFrom(rs.Target(), floodPort), "-dur", dur.String(), "-size", "64", "-ports", strconv.Itoa(fl.Ports))
		return err
	})
	if err != nil {
		return fmt.Errorf("flood: %w", err)
	}
	fl.CPUPercent, fl.RSSKiB, fl.SentPps = snap.CPUPercent, snap.RSSKiB, float64(fl.Sent)/snap.WindowS
	// Aggregated entries come at the end of each second: wait for them.
	time.Sleep(1500 * time.Millisecond)
	fl.LogWindowS = snap.WindowS + 1.5
	logAfter, err := d.Log()
	if err != nil {
		return err
	}
	rx1, err := h.rxPackets()
	if err != nil {
		return err
	}
	fl.ServerRx = rx1 - rx0
	newLog := logAfter[min(len(logBefore), len(logAfter)):]
	fl.DecisionLines = countLines(newLog, "denied egress", "allowed egress")
	fl.LinesPerSec = float64(fl.DecisionLines) / fl.LogWindowS
	if fl.MaxLinesInSecond, err = maxInOneSecond(newLog, "denied egress", "allowed egress"); err != nil {
		return err
	}
	var warn []string
	for _, line := range strings.Split(string(newLog), "\n") {
		if line != "" && !strings.Contains(line, "denied egress") && !strings.Contains(line, "allowed egress") {
			warn = append(warn, line)
		}
	}
	fl.OtherLines = len(warn)
	fl.Warnings = strings.Join(warn[:min(len(warn), 5)], "\n")
	h.logf("   flood by the denied user, %d ranges: sent %d (%.0f pps), server received %d; daemon CPU %.1f%%, RSS %d KiB; %d decision lines (%.1f/s), %d other",
		rs.N, fl.Sent, fl.SentPps, fl.ServerRx, fl.CPUPercent, fl.RSSKiB, fl.DecisionLines, fl.LinesPerSec, fl.OtherLines)
	c := Check{Part: "flood", Filter: NameOurs, Size: rs.N, DeniedSent: fl.Sent, DeniedGot: fl.ServerRx, OK: fl.Sent > 0 && fl.ServerRx == 0}
	h.res.Correctness = append(h.res.Correctness, c)
	if !c.OK {
		return fmt.Errorf("%w: flood: %d sent, %d arrived at the server", ErrCorrectness, fl.Sent, fl.ServerRx)
	}
	// The allowed user still gets through after the flood.
	if _, err := h.check(h.main, "after flood", NameOurs, rs); err != nil {
		return err
	}
	return nil
}

// --- part 5 ---------------------------------------------------------------

// scale runs the daemon alone at ScaleRanges ranges (issue 19): start to
// live, a check of what it enforces, its RSS idle, and a one-drop-in
// reload to live.
func (h *Harness) scale(ctx context.Context) (err error) {
	n := h.opts.ScaleRanges
	if n == 0 {
		h.res.Notes = append(h.res.Notes, "part 5 (scale) not configured")
		return nil
	}
	rs := h.ruleSet(n)
	if err := rs.validate(); err != nil {
		return err
	}
	r := &ScaleResult{Ranges: n}
	h.res.Scale = r
	ours := &Ours{Bin: h.opts.Daemon, NS: h.main.tp.Client}
	cold, err := ours.Apply(rs)
	if err != nil {
		return fmt.Errorf("start with %d ranges: %w", n, err)
	}
	defer func() {
		if rerr := ours.Remove(); rerr != nil && err == nil {
			err = fmt.Errorf("remove %s: %w", NameOurs, rerr)
		}
	}()
	r.StartMs = ms(cold)
	h.logf("   %d ranges: start to live (READY=1) %.0f ms", n, r.StartMs)
	if _, err := h.check(h.main, "scale", NameOurs, rs); err != nil {
		return err
	}
	// The first and a middle range belong to uids nobody uses: the
	// denied user (and the allowed one) must be dropped there too.
	for _, i := range []int{0, n / 2} {
		if err := h.expectDropped(rs, Range(i).Addr().Next()); err != nil {
			return err
		}
	}
	r.Checked = true
	if err := ctx.Err(); err != nil {
		return err
	}
	time.Sleep(releaseWait)
	if r.Idle, err = window(ours.D.Pid(), 3*time.Second, nil); err != nil {
		return err
	}
	r.Idle.Ranges = n
	h.logf("   %d ranges idle: RSS %d KiB (peak %d KiB), CPU %.2f%%", n, r.Idle.RSSKiB, r.Idle.PeakKiB, r.Idle.CPUPercent)
	if r.Reload, err = h.reloadLive(ours, rs); err != nil {
		return err
	}
	h.logf("   %d ranges: one drop-in changed, live after %.0f ms (RELOADING=1 after %.0f ms)", n, r.Reload.LiveMs, r.Reload.ReloadingMs)
	time.Sleep(releaseWait)
	if r.After, err = window(ours.D.Pid(), 3*time.Second, nil); err != nil {
		return err
	}
	r.After.Ranges = n
	h.logf("   %d ranges idle after the reload: RSS %d KiB (peak %d KiB)", n, r.After.RSSKiB, r.After.PeakKiB)
	return nil
}

// expectDropped sends 200 datagrams from each user to dst, a protected
// address that neither user owns: none may arrive.
func (h *Harness) expectDropped(rs RuleSet, dst netip.Addr) error {
	for _, u := range []User{h.allow, h.deny} {
		h.main.probe.Reset()
		sent, _, err := h.sendAs(h.main, u, netip.AddrPortFrom(dst, probePort), "-n", "200", "-gap", "200us")
		if err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
		c := Check{Part: "scale " + dst.String(), Filter: NameOurs, Size: rs.N, DeniedSent: sent, DeniedGot: h.main.probe.Count()}
		c.OK = sent > 0 && c.DeniedGot == 0
		h.res.Correctness = append(h.res.Correctness, c)
		if !c.OK {
			return fmt.Errorf("%w: %s at %d ranges: %d of %s's %d datagrams to %s arrived", ErrCorrectness, NameOurs, rs.N, c.DeniedGot, u.Name, sent, dst)
		}
	}
	return nil
}
