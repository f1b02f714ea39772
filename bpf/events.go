// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf/ringbuf"
)

// KernelDecision is one decision reported by the kernel.
type KernelDecision struct {
	MonoNS     uint64 // CLOCK_MONOTONIC at the decision
	Cgroup     uint64 // cgroup v2 id of the sending socket (0: unknown)
	Generation uint32 // policy generation that decided
	Rule       uint32 // 0: no range matched, the interface default decided
	Ifindex    int
	UID        uint32 // meaningless when Unowned
	Unowned    bool
	Allowed    bool
	// Audit: not allowed, but passed, every winner (or the interface's
	// deny default) being in mode: audit. Never set with Allowed.
	Audit bool
	// Staged: a staged policy decides this packet otherwise; it would
	// StagedAction it by its rule StagedRule (Filter.StagedRule; 0: its
	// default).
	Staged       bool
	StagedAction Action
	StagedRule   uint32
	Proto        uint8
	Src, Dst     netip.Addr
	Sport        uint16
	Dport        uint16
}

// DecisionReader reads decision events from the kernel's ring buffer.
type DecisionReader struct {
	rd  *ringbuf.Reader
	rec ringbuf.Record
	raw filterNtfEvent
}

// Events opens a reader on the decision ring buffer. Only one reader should
// be open at a time: events are consumed.
func (f *Filter) Events() (*DecisionReader, error) {
	rd, err := ringbuf.NewReader(f.objs.NtfEvents)
	if err != nil {
		return nil, fmt.Errorf("open decision ring buffer: %w", err)
	}
	return &DecisionReader{rd: rd}, nil
}

// ErrClosed is returned by Read after Close.
var ErrClosed = ringbuf.ErrClosed

// Read blocks until the next event or Close.
func (r *DecisionReader) Read() (KernelDecision, error) {
	if err := r.rd.ReadInto(&r.rec); err != nil {
		return KernelDecision{}, err
	}
	// Decode, not Read: a flood brings ~10⁵ events a second, and Read's
	// reader and buffer made each one 128 bytes of garbage, which grew
	// the daemon's heap by megabytes for as long as the flood lasted.
	if _, err := binary.Decode(r.rec.RawSample, binary.NativeEndian, &r.raw); err != nil {
		return KernelDecision{}, fmt.Errorf("decode event: %w", err)
	}
	return decodeEvent(&r.raw), nil
}

// SetDeadline makes Read give up at t with os.ErrDeadlineExceeded.
func (r *DecisionReader) SetDeadline(t time.Time) { r.rd.SetDeadline(t) }

// Close unblocks Read.
func (r *DecisionReader) Close() error {
	err := r.rd.Close()
	if errors.Is(err, ringbuf.ErrClosed) {
		return nil
	}
	return err
}

func decodeEvent(raw *filterNtfEvent) KernelDecision {
	e := KernelDecision{
		MonoNS:     raw.Ts,
		Cgroup:     raw.Cgroup,
		Generation: raw.Generation,
		Rule:       raw.Rule,
		Ifindex:    int(raw.Ifindex),
		UID:        raw.Uid,
		Unowned:    raw.Unowned != 0,
		Allowed:    raw.Allowed != 0,
		Audit:      raw.Audit != 0,
		Staged:     raw.Staged != 0,
		Proto:      raw.Proto,
		Sport:      raw.Sport,
		Dport:      raw.Dport,
	}
	if e.Staged {
		e.StagedAction, e.StagedRule = Action(raw.StagedAction), raw.StagedRule
	}
	if raw.Family == 4 {
		e.Src = netip.AddrFrom4([4]byte(raw.Src[:4]))
		e.Dst = netip.AddrFrom4([4]byte(raw.Dst[:4]))
	} else {
		e.Src = netip.AddrFrom16(raw.Src)
		e.Dst = netip.AddrFrom16(raw.Dst)
	}
	// A v6 packet to an IPv4-mapped destination keeps its v6 source.
	if raw.Family == 4 && !isV4Prefix(raw.Src) {
		e.Src = netip.AddrFrom16(raw.Src)
	}
	return e
}

// isV4Prefix reports whether a 16-byte field holds an IPv4 address in its
// first four bytes (the rest zero).
func isV4Prefix(b [16]byte) bool {
	for _, x := range b[4:] {
		if x != 0 {
			return false
		}
	}
	return true
}

// Rule returns what a rule id of a generation stands for.
func (f *Filter) Rule(gen, id uint32) (Rule, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rules, ok := f.rules[gen]
	if !ok {
		return Rule{}, false
	}
	return rules.get(id)
}

// Counters are the program's packet counters, summed over CPUs.
type Counters struct {
	Allowed, Denied, Audited, NotIP, Malformed, Unfiltered, NoPolicy, EventsLost uint64
	// CgroupsFull counts new cgroups below a watched path that the
	// kernel could not record (ntf_cgroups full): they match no cgroup
	// principal.
	CgroupsFull uint64
	// Denied packets of local sockets that were answered with ICMP
	// "administratively prohibited" (Rejected), or were not because the
	// per-CPU budget of replies was spent (RejectLimited) or the reply
	// could not be made (RejectFailed): those two are dropped silently.
	Rejected, RejectLimited, RejectFailed uint64
}

// Counters reads the counters. Allowed, Denied and Audited are the sums over the
// interfaces since this Filter was opened.
func (f *Filter) Counters() (Counters, error) {
	var c Counters
	f.mu.Lock()
	ifaces := len(f.counters.ifaceNames)
	f.mu.Unlock()
	r, err := f.readTraffic(ifaces, 0)
	if err != nil {
		return c, err
	}
	for i := range ifaces {
		v, err := r.verdicts(false, uint32(i))
		if err != nil {
			return c, fmt.Errorf("read interface counters: %w", err)
		}
		c.Allowed += v.Allowed
		c.Denied += v.Denied
		c.Audited += v.Audited
	}
	for idx, dst := range map[filterNtfCounter]*uint64{
		filterNtfCounterNTF_CNT_NOT_IP:         &c.NotIP,
		filterNtfCounterNTF_CNT_MALFORMED:      &c.Malformed,
		filterNtfCounterNTF_CNT_UNFILTERED:     &c.Unfiltered,
		filterNtfCounterNTF_CNT_NO_POLICY:      &c.NoPolicy,
		filterNtfCounterNTF_CNT_EVENTS_LOST:    &c.EventsLost,
		filterNtfCounterNTF_CNT_CGROUPS_FULL:   &c.CgroupsFull,
		filterNtfCounterNTF_CNT_REJECTED:       &c.Rejected,
		filterNtfCounterNTF_CNT_REJECT_LIMITED: &c.RejectLimited,
		filterNtfCounterNTF_CNT_REJECT_FAILED:  &c.RejectFailed,
	} {
		var perCPU []uint64
		if err := f.objs.NtfCounters.Lookup(uint32(idx), &perCPU); err != nil {
			return c, fmt.Errorf("read counter %d: %w", idx, err)
		}
		for _, v := range perCPU {
			*dst += v
		}
	}
	return c, nil
}
