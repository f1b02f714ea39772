// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"net/netip"
	"time"

	"github.com/nettcfilter/net-tc-filter/bpf"
)

// aggKey is what makes decisions "identical" for the log: the same verdict
// for the same owner, path and service. The source port is left out on
// purpose: a scanner or a retrying client opens a new port per attempt,
// and each attempt is the same story for an auditor.
type aggKey struct {
	allowed, unowned bool
	uid              uint32
	ifindex          int
	src, dst         netip.Addr
	proto            uint8
	dport            uint16
	gen, rule        uint32
	audit            bool
	// A staged policy's other verdict makes another story.
	staged       bool
	stagedAction bpf.Action
	stagedRule   uint32
}

func keyOf(ev bpf.KernelDecision) aggKey {
	k := aggKey{
		allowed: ev.Allowed, audit: ev.Audit, unowned: ev.Unowned, ifindex: ev.Ifindex,
		src: ev.Src, dst: ev.Dst, proto: ev.Proto, dport: ev.Dport,
		gen: ev.Generation, rule: ev.Rule,
		staged: ev.Staged, stagedAction: ev.StagedAction, stagedRule: ev.StagedRule,
	}
	if !ev.Unowned {
		k.uid = ev.UID
	}
	return k
}

type pending struct {
	ev    bpf.KernelDecision // the first of its kind
	count uint64             // identical decisions not logged yet
}

type summary struct {
	ev    bpf.KernelDecision
	count uint64
}

// maxKeys bounds the memory a flood of distinct decisions can take; what
// does not fit is counted as suppressed.
const maxKeys = 8192

// limiter holds the decision log to `rate` lines in any one second ("at
// most", as log.rate says): a line is logged only if the rate-th line
// before it is a second old. (A token bucket would let a quiet log's full
// bucket and a second's refill through together: twice the rate in one
// second.) The first decision of a kind is logged at once; identical ones
// that follow within the second, and all of a kind that was already seen
// the second before, are summed into one line with their count at the end
// of the second. What the budget cannot take is counted, never silently
// lost. Not safe for concurrent use.
type limiter struct {
	rate int
	// When the lines of the last second were logged, oldest first:
	// times[head:]. Expired times are skipped, and moved out only when
	// the array is full and half of it is expired, so that a line costs
	// no copy of the second's times and, once the array has grown to
	// twice a second's lines, no allocation.
	times []time.Time
	head  int
	// The kinds of this second, in the order they first appeared, and
	// their places in it. Both are emptied, not made again, each second:
	// in a flood of distinct decisions the log must not allocate for
	// every kind of every second (its garbage is the daemon's RSS).
	window   []pending
	windowAt map[aggKey]int
	hot      map[aggKey]bool // kinds seen in the previous second
	// decisions dropped since the last flush, for want of budget or room
	suppressed uint64
}

func newLimiter(rate int) *limiter {
	return &limiter{
		rate:     max(rate, 1),
		windowAt: map[aggKey]int{},
		hot:      map[aggKey]bool{},
	}
}

func (l *limiter) setRate(rate int) { l.rate = max(rate, 1) }

// take reports whether a line may be logged at now, and counts it. Only
// the last second's lines are kept: at most what was logged in a second,
// whatever the rate. The line's time is now until wrote says when it went
// out.
func (l *limiter) take(now time.Time) bool {
	for l.head < len(l.times) && now.Sub(l.times[l.head]) >= time.Second {
		l.head++
	}
	if len(l.times)-l.head >= l.rate {
		return false
	}
	if len(l.times) == cap(l.times) && l.head >= len(l.times)/2 {
		l.times = l.times[:copy(l.times, l.times[l.head:])]
		l.head = 0
	}
	l.times = append(l.times, now)
	return true
}

// wrote records when the line take let through went out (its time stamp,
// after the sender's name and unit were looked up): the rate holds for the
// lines as their readers see them.
func (l *limiter) wrote(t time.Time) {
	if n := len(l.times); n > l.head && t.After(l.times[n-1]) {
		l.times[n-1] = t
	}
}

// add counts a decision and reports whether to log it now (with count 1).
func (l *limiter) add(ev bpf.KernelDecision, now time.Time) bool {
	k := keyOf(ev)
	if i, ok := l.windowAt[k]; ok {
		l.window[i].count++
		return false
	}
	if len(l.window) >= maxKeys {
		l.suppressed++
		return false
	}
	l.windowAt[k] = len(l.window)
	l.window = append(l.window, pending{ev: ev})
	if !l.hot[k] && l.take(now) {
		return true
	}
	l.window[len(l.window)-1].count = 1
	return false
}

// flush ends the second: it logs the summaries with emit, which returns
// when the line went out, in the order the kinds first appeared and as far
// as the rate allows, and returns how many decisions were suppressed.
func (l *limiter) flush(now time.Time, emit func(summary) time.Time) uint64 {
	clear(l.hot)
	for i := range l.window {
		p := &l.window[i]
		l.hot[keyOf(p.ev)] = true
		if p.count == 0 {
			continue
		}
		if l.take(now) {
			now = emit(summary{p.ev, p.count})
			l.wrote(now)
		} else {
			l.suppressed += p.count
		}
	}
	clear(l.windowAt)
	l.window = l.window[:0]
	suppressed := l.suppressed
	l.suppressed = 0
	return suppressed
}
