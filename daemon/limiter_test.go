// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"net/netip"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/bpf"
)

func ev(uid uint32, dst string, sport uint16) bpf.KernelDecision {
	return bpf.KernelDecision{
		UID: uid, Ifindex: 2, Proto: 17, Sport: sport, Dport: 80,
		Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr(dst),
	}
}

func TestLimiter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	type step struct {
		at    time.Duration // since t0
		ev    bpf.KernelDecision
		now   bool // logged at once
		flush bool // instead of an event: end the second
		sums  []uint64
		supp  uint64
	}
	bob := func(dst string, sport uint16) bpf.KernelDecision { return ev(1002, dst, sport) }
	for _, tc := range []struct {
		name  string
		rate  int
		steps []step
	}{
		{"first of a kind at once, repeats summed at the end of the second", 10, []step{
			{ev: bob("192.0.2.7", 1), now: true},
			{ev: bob("192.0.2.7", 2)}, // another source port: identical for the log
			{ev: bob("192.0.2.7", 3)},
			{ev: ev(1001, "192.0.2.7", 4), now: true},
			{at: time.Second, flush: true, sums: []uint64{2}},
			{at: time.Second, flush: true}, // nothing new: nothing
		}},
		{"a kind seen the second before is only summed", 10, []step{
			{ev: bob("192.0.2.7", 1), now: true},
			{at: time.Second, flush: true},
			{at: 1100 * time.Millisecond, ev: bob("192.0.2.7", 2)},
			{at: 2 * time.Second, flush: true, sums: []uint64{1}},
			// Quiet for a second: the kind cools down and is logged at once.
			{at: 3 * time.Second, flush: true},
			{at: 4 * time.Second, flush: true},
			{at: 4100 * time.Millisecond, ev: bob("192.0.2.7", 3), now: true},
		}},
		{"the rate holds in any one second; the rest is counted", 2, []step{
			{ev: bob("192.0.2.1", 1), now: true},
			{at: 600 * time.Millisecond, ev: bob("192.0.2.2", 1), now: true},
			// Two lines in the last second: a third waits, even after a
			// quiet log (no burst on top of the rate).
			{at: 700 * time.Millisecond, ev: bob("192.0.2.3", 1)},
			{at: 700 * time.Millisecond, ev: bob("192.0.2.3", 2)},
			{at: 800 * time.Millisecond, ev: bob("192.0.2.4", 1)},
			// The first line is a second old: one more fits, the first
			// summary's; the second summary's must wait for 1.6 s.
			{at: time.Second, flush: true, sums: []uint64{2}, supp: 1},
			{at: 1500 * time.Millisecond, ev: bob("192.0.2.5", 1)},
			{at: 1600 * time.Millisecond, ev: bob("192.0.2.6", 1), now: true},
		}},
		{"unowned decisions are one kind whatever the uid field says", 10, []step{
			{ev: bpf.KernelDecision{Unowned: true, UID: 0xffffffff, Dst: netip.MustParseAddr("192.0.2.7")}, now: true},
			{ev: bpf.KernelDecision{Unowned: true, UID: 0, Dst: netip.MustParseAddr("192.0.2.7")}},
			{at: time.Second, flush: true, sums: []uint64{1}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimiter(tc.rate)
			for i, s := range tc.steps {
				now := t0.Add(s.at)
				if !s.flush {
					if got := l.add(s.ev, now); got != s.now {
						t.Errorf("step %d: logged at once = %v, want %v", i, got, s.now)
					}
					continue
				}
				var counts []uint64
				supp := l.flush(now, func(x summary) time.Time {
					counts = append(counts, x.count)
					return now
				})
				if len(counts) != len(s.sums) || supp != s.supp {
					t.Errorf("step %d: summaries %v suppressed %d, want %v and %d", i, counts, supp, s.sums, s.supp)
					continue
				}
				for j := range counts {
					if counts[j] != s.sums[j] {
						t.Errorf("step %d: summaries %v, want %v", i, counts, s.sums)
					}
				}
			}
		})
	}
}

// Memory stays bounded under a flood of distinct decisions, and none
// vanishes: what does not fit is counted.
func TestLimiterBounded(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := newLimiter(50)
	logged := 0
	const n = 3 * maxKeys
	for i := range n {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if l.add(bpf.KernelDecision{UID: 1, Dst: a}, t0) {
			logged++
		}
	}
	if len(l.window) > maxKeys || len(l.windowAt) > maxKeys {
		t.Errorf("%d kinds held, bound is %d", len(l.window), maxKeys)
	}
	if logged != 50 {
		t.Errorf("%d logged at once at rate 50", logged)
	}
	// Within the second, nothing more; a second later, 50 more.
	if l.take(t0.Add(999 * time.Millisecond)) {
		t.Error("a 51st line within the second at rate 50")
	}
	sums := 0
	supp := l.flush(t0.Add(time.Second), func(s summary) time.Time {
		sums++
		logged += int(s.count)
		return t0.Add(time.Second)
	})
	if sums != 50 {
		t.Errorf("%d summaries a second later at rate 50, want 50", sums)
	}
	if logged+int(supp) != n {
		t.Errorf("logged %d + suppressed %d != %d", logged, supp, n)
	}
}

// Whatever log.rate allows (up to 2^31-1 a second), the limiter keeps the
// times of one second's lines only.
func TestLimiterKeepsOneSecond(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := newLimiter(1<<31 - 1)
	for i := range 10_000 { // 1000 lines a second for 10 s
		if !l.take(t0.Add(time.Duration(i) * time.Millisecond)) {
			t.Fatalf("line %d refused far below the rate", i)
		}
	}
	if n := len(l.times) - l.head; n != 1000 {
		t.Errorf("%d line times kept, want the last second's 1000", n)
	}
	if cap(l.times) > 4*1000 {
		t.Errorf("%d line times' room for a second's 1000", cap(l.times))
	}
	// Grown to its second's lines, it allocates no more.
	i := 10_000
	if allocs := testing.AllocsPerRun(1000, func() {
		l.take(t0.Add(time.Duration(i) * time.Millisecond))
		i++
	}); allocs != 0 {
		t.Errorf("a line allocates %.2f times", allocs)
	}
}

// The rate holds for lines as they went out: a line's second starts when it
// was written (after its sender's name was looked up), not when it was let
// through.
func TestLimiterCountsFromTheWrite(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := newLimiter(2)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	for i, step := range []struct {
		take, wrote time.Duration
		want        bool
	}{
		{0, 300 * time.Millisecond, true},
		{100 * time.Millisecond, 400 * time.Millisecond, true},
		{1100 * time.Millisecond, 0, false}, // the first line went out 0.8 s ago
		{1300 * time.Millisecond, 1300 * time.Millisecond, true},
		{1350 * time.Millisecond, 0, false},
		{1400 * time.Millisecond, 1400 * time.Millisecond, true},
	} {
		if got := l.take(at(step.take)); got != step.want {
			t.Errorf("step %d: take = %v, want %v", i, got, step.want)
		}
		if step.want {
			l.wrote(at(step.wrote))
		}
	}
	// Summaries at the end of a second are written one after another.
	l = newLimiter(2)
	l.add(ev(1002, "192.0.2.1", 1), t0)
	l.add(ev(1002, "192.0.2.2", 1), t0)
	l.add(ev(1002, "192.0.2.3", 1), t0)
	l.add(ev(1002, "192.0.2.3", 2), t0)
	l.add(ev(1002, "192.0.2.4", 1), t0)
	l.add(ev(1002, "192.0.2.4", 2), t0)
	l.flush(at(time.Second), func(summary) time.Time { return at(1200 * time.Millisecond) })
	if l.take(at(2100 * time.Millisecond)) {
		t.Error("a line 0.9 s after the last summaries went out at rate 2")
	}
}

// A flood of distinct decisions (the bench's: 4096 ports of one address)
// goes on for many seconds; once its first second has sized the limiter,
// the seconds after it allocate nothing, or the daemon's heap would grow
// for as long as the flood lasts.
func TestLimiterFloodAllocatesNothing(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := newLimiter(50)
	evs := make([]bpf.KernelDecision, 4096)
	for i := range evs {
		evs[i] = ev(1002, "169.254.169.254", 40000)
		evs[i].Dport = uint16(i)
	}
	sec := 0
	second := func() {
		now := t0.Add(time.Duration(sec) * time.Second)
		for range 3 {
			for _, e := range evs {
				l.add(e, now)
			}
		}
		sec++
		l.flush(t0.Add(time.Duration(sec)*time.Second), func(summary) time.Time { return now })
	}
	second() // sizes the window, its index and the kinds of the second before
	if allocs := testing.AllocsPerRun(5, second); allocs != 0 {
		t.Errorf("a second of the flood allocates %.0f times", allocs)
	}
}
