// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// A flood of denials is a flood of events that the daemon reads one by
// one: reading one must leave no garbage, or the daemon's heap grows for
// as long as the flood lasts. Each read here is of a real event, queued
// by the program for a denied packet.
func TestReadAllocatesNothing(t *testing.T) {
	ns, f, events := denyingLo(t)

	const reads = 200
	runFrames(t, ns, f, 0, ptEth4(ptUDP4(ptMD4)), reads+1, ptDrop) // AllocsPerRun reads once more to warm up
	var got KernelDecision
	var err error
	allocs := testing.AllocsPerRun(reads, func() {
		events.SetDeadline(time.Now().Add(10 * time.Second)) // queued already: only a guard against a hang
		if got, err = events.Read(); err != nil {
			t.Fatal(err)
		}
	})
	if got.Dst != ptMD4 || got.Allowed || got.Dport != ptDport {
		t.Fatalf("last event %+v: want a denial to %s port %d", got, ptMD4, ptDport)
	}
	if allocs != 0 {
		t.Errorf("reading an event allocates %.1f times", allocs)
	}
}

// The ring buffer is what the kernel holds while the daemon is not
// reading (a log line's write, a collection, the scheduler): 1 MiB, whose
// reader maps it twice, is 2 MiB of the daemon's RSS, where 4 MiB was 8.
// It must still hold a tenth of a second of the bench's flood (110 000
// denials a second) with no decision lost.
func TestRingHoldsATenthOfAFlood(t *testing.T) {
	ns, f, events := denyingLo(t)
	before, err := f.Counters()
	if err != nil {
		t.Fatal(err)
	}

	const burst = 11_000
	runFrames(t, ns, f, 0, ptEth4(ptUDP4(ptMD4)), burst, ptDrop)
	after, err := f.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if lost := after.EventsLost - before.EventsLost; lost != 0 {
		t.Errorf("%d of %d decisions lost with nobody reading", lost, burst)
	}
	n := 0
	for {
		events.SetDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := events.Read(); err != nil {
			break
		}
		n++
	}
	if n != burst {
		t.Errorf("read %d events of %d", n, burst)
	}
}

// denyingLo is a filter on lo of a namespace of its own that drops and
// logs (LogDenied) the test runs' packets to ptMD4, and its decision
// reader, with nothing queued yet.
func denyingLo(t *testing.T) (*testnet.NS, *Filter, *DecisionReader) {
	t.Helper()
	testnet.RequireRoot(t)
	ns := testnet.NewNS(t, "ev")
	f := openFilter(t, ns, ModeAuto)
	events := openEvents(t, f)
	apply(t, ns, f, compileDeny(t, config.DenyDrop, map[string]config.Action{"lo": config.Deny},
		ep{"imds", []string{"lo"}, []string{"169.254.169.254/32"}, []string{"alice"}}), LogDenied)
	drain(events)
	return ns, f, events
}
