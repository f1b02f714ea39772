// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
)

// Verdicts counts packets by outcome. Audited packets (mode: audit: not
// allowed, passed) are counted there only, not as allowed or denied.
type Verdicts struct{ Allowed, Denied, Audited uint64 }

// Traffic is what the program decided, by interface and by endpoint, since
// this Filter was opened.
type Traffic struct {
	Ifaces map[string]Verdicts // by interface name
	// By endpoint name; "" holds the packets the interface default decided.
	// A packet to a range that several endpoints name counts for each.
	Endpoints map[string]Verdicts
}

// OtherCounter names the counter shared by the interfaces or endpoint sets
// beyond the kernel's NTF_MAX_COUNTERS: the last one.
const OtherCounter = "(other)"

// counterNames gives interfaces and endpoint sets counter indexes that stay
// theirs for the life of a Filter, so that counts carry over reloads. The
// endpoint index 0 is the interface default's.
type counterNames struct {
	max                   uint32 // counters of each kind: interfaces, endpoint sets
	ifaceIdx, endpointIdx map[string]uint32
	ifaceNames            []string
	endpointSets          [][]string
}

func newCounterNames(max uint32) *counterNames {
	return &counterNames{
		max:          max,
		ifaceIdx:     map[string]uint32{},
		endpointIdx:  map[string]uint32{"": 0},
		endpointSets: [][]string{nil},
	}
}

func (c *counterNames) iface(name string) uint32 {
	if i, ok := c.ifaceIdx[name]; ok {
		return i
	}
	i := uint32(len(c.ifaceNames))
	if i == c.max-1 {
		name = OtherCounter
	} else if i >= c.max {
		return c.max - 1
	}
	c.ifaceIdx[name] = i
	c.ifaceNames = append(c.ifaceNames, name)
	return i
}

func (c *counterNames) endpoints(names []string) uint32 {
	key := strings.Join(names, "\x00")
	if i, ok := c.endpointIdx[key]; ok {
		return i
	}
	i := uint32(len(c.endpointSets))
	if i == c.max-1 {
		names = []string{OtherCounter}
	} else if i >= c.max {
		return c.max - 1
	}
	c.endpointIdx[key] = i
	c.endpointSets = append(c.endpointSets, names)
	return i
}

// Traffic reads the per-interface and per-endpoint counters.
func (f *Filter) Traffic() (Traffic, error) {
	f.mu.Lock()
	ifaces := f.counters.ifaceNames
	sets := f.counters.endpointSets
	f.mu.Unlock()
	t := Traffic{Ifaces: map[string]Verdicts{}, Endpoints: map[string]Verdicts{}}
	r := f.newTrafficReader()
	for i, name := range ifaces {
		v, err := r.verdicts(false, uint32(i))
		if err != nil {
			return t, fmt.Errorf("read counters of %s: %w", name, err)
		}
		t.Ifaces[name] = v
	}
	for i, names := range sets {
		v, err := r.verdicts(true, uint32(i))
		if err != nil {
			return t, fmt.Errorf("read counters of endpoints %v: %w", names, err)
		}
		if i == 0 {
			names = []string{""}
		}
		for _, n := range names {
			sum := t.Endpoints[n]
			sum.Allowed += v.Allowed
			sum.Denied += v.Denied
			sum.Audited += v.Audited
			t.Endpoints[n] = sum
		}
	}
	return t, nil
}

// trafficReader reads the counters of interfaces and endpoint sets, each
// block of ntf_traffic at most once.
type trafficReader struct {
	f      *Filter
	blocks map[uint32][]filterNtfTrafficBlock // per CPU, by block
}

func (f *Filter) newTrafficReader() *trafficReader {
	return &trafficReader{f: f, blocks: map[uint32][]filterNtfTrafficBlock{}}
}

// verdicts reads the counters of interface (or, with endpoints, endpoint
// set) number idx.
func (r *trafficReader) verdicts(endpoints bool, idx uint32) (Verdicts, error) {
	first, audited := uint32(0), r.f.objs.NtfIfaceAudited
	if endpoints { // after the interfaces' pairs: NTF_TRAFFIC_ENDPOINTS
		first, audited = r.f.counters.max*2, r.f.objs.NtfEndpointAudited
	}
	var v Verdicts
	for allowed, dst := range []*uint64{&v.Denied, &v.Allowed} {
		n, err := r.sum(first + idx*2 + uint32(allowed))
		if err != nil {
			return v, err
		}
		*dst = n
	}
	if err := sumPerCPU(audited, idx, &v.Audited); err != nil {
		return v, err
	}
	return v, nil
}

// sum is counter idx of ntf_traffic, summed over the CPUs.
func (r *trafficReader) sum(idx uint32) (uint64, error) {
	per := uint32(len(filterNtfTrafficBlock{}.N))
	b, ok := r.blocks[idx/per]
	if !ok {
		if err := r.f.objs.NtfTraffic.Lookup(idx/per, &b); err != nil {
			return 0, err
		}
		r.blocks[idx/per] = b
	}
	var n uint64
	for _, c := range b {
		n += c.N[idx%per]
	}
	return n, nil
}

func sumPerCPU(m *ebpf.Map, idx uint32, dst *uint64) error {
	var perCPU []uint64
	if err := m.Lookup(idx, &perCPU); err != nil {
		return err
	}
	for _, n := range perCPU {
		*dst += n
	}
	return nil
}

// clearCounters zeroes the traffic counters an earlier run left: their
// indexes meant other interfaces and endpoints then.
func clearCounters(maps ...*ebpf.Map) error {
	for _, m := range maps {
		zero := make([][]byte, ebpf.MustPossibleCPU())
		for i := range zero {
			zero[i] = make([]byte, m.ValueSize())
		}
		for i := range m.MaxEntries() {
			if err := m.Put(i, zero); err != nil {
				return fmt.Errorf("clear %s: %w", m, err)
			}
		}
	}
	return nil
}
