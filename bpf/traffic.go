// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
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
	// A copy: names may view a configured endpoint's name (policy.Entry), which
	// the counter, kept as long as the daemon runs, would keep alive.
	c.endpointSets = append(c.endpointSets, slices.Clone(names))
	return i
}

// Traffic reads the per-interface and per-endpoint counters.
func (f *Filter) Traffic() (Traffic, error) {
	f.mu.Lock()
	ifaces := f.counters.ifaceNames
	sets := f.counters.endpointSets
	f.mu.Unlock()
	t := Traffic{Ifaces: map[string]Verdicts{}, Endpoints: map[string]Verdicts{}}
	r, err := f.readTraffic(len(ifaces), len(sets))
	if err != nil {
		return t, err
	}
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

// trafficPerBlock is how many counters an element of ntf_traffic holds
// (NTF_TRAFFIC_BLOCK).
const trafficPerBlock = uint32(len(filterNtfTrafficBlock{}.N))

// trafficBlockSum is a block of ntf_traffic summed over the CPUs.
type trafficBlockSum [trafficPerBlock]uint64

// trafficCounts is what one read found in ntf_traffic and the verdict
// caches, by counter index (NTF_TRAFFIC_ENDPOINTS).
type trafficCounts struct {
	f      *Filter
	blocks map[uint32]*trafficBlockSum
}

// readTraffic reads the counters of the first ifaces interfaces and sets
// endpoint sets: the blocks of ntf_traffic that hold them, then the allowed
// packets that the verdict cache entries counted and have not moved there
// yet (struct ntf_verdict_entry), in that order, so that a packet moving
// meanwhile is missed by this read rather than counted twice; so that the
// counts never go back, each allowed count is at least what the last read
// returned.
func (f *Filter) readTraffic(ifaces, sets int) (*trafficCounts, error) {
	f.trafficMu.Lock()
	defer f.trafficMu.Unlock()
	r := &trafficCounts{f: f, blocks: map[uint32]*trafficBlockSum{}}
	endpoints := f.counters.max * 2
	for _, span := range [][2]uint32{{0, uint32(ifaces) * 2}, {endpoints, endpoints + uint32(sets)*2}} {
		for b := span[0] / trafficPerBlock; b*trafficPerBlock < span[1]; b++ {
			var perCPU []filterNtfTrafficBlock
			if err := f.objs.NtfTraffic.Lookup(b, &perCPU); err != nil {
				return nil, fmt.Errorf("read traffic counters: %w", err)
			}
			sum := new(trafficBlockSum)
			for _, c := range perCPU {
				for i, n := range c.N {
					sum[i] += n
				}
			}
			r.blocks[b] = sum
		}
	}
	// Everything read above is read before the entries (a read-modify-write
	// is a full barrier on every architecture Go runs on).
	atomic.AddUint32(new(uint32), 0)
	if err := f.cacheHits(func(icounter, counter uint32, hits uint64) {
		r.add(icounter*2+1, hits)
		r.add(endpoints+counter*2+1, hits)
	}); err != nil {
		return nil, err
	}
	if f.allowedSeen == nil {
		f.allowedSeen = map[uint32]uint64{}
	}
	for b, sum := range r.blocks {
		for i := 1; i < len(sum); i += 2 { // allowed counts are odd
			idx := b*trafficPerBlock + uint32(i)
			sum[i] = max(sum[i], f.allowedSeen[idx])
			if sum[i] != 0 {
				f.allowedSeen[idx] = sum[i]
			}
		}
	}
	return r, nil
}

// The words of struct ntf_verdict_entry that cacheHits reads.
var (
	entryEpoch  = unsafe.Offsetof(filterNtfVerdictEntry{}.Epoch)
	entryCounts = unsafe.Offsetof(filterNtfVerdictEntry{}.Counter) // counter, icounter, hits
)

// cacheHits calls fn with what each verdict cache entry of this run's
// epochs counted. The cache is read through a mapping of it, each word with
// one load: a syscall's copy may tear a word that the program changes
// meanwhile. The epoch is read first: an entry's epoch is only ever
// replaced by a later one, with its count taken first (flush_hits), so the
// count read after an epoch of this run is this run's.
func (f *Filter) cacheHits(fn func(icounter, counter uint32, hits uint64)) error {
	m := f.objs.NtfVerdictCache
	size := int(m.MaxEntries()) * int(m.ValueSize())
	mem, err := unix.Mmap(m.FD(), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map the verdict cache: %w", err)
	}
	defer unix.Munmap(mem)
	for off := 0; off < size; off += int(m.ValueSize()) {
		if atomic.LoadUint64((*uint64)(unsafe.Pointer(&mem[off+int(entryEpoch)]))) < f.countBase {
			continue
		}
		// Little-endian (bpfel): counter, icounter, then hits above them.
		w := atomic.LoadUint64((*uint64)(unsafe.Pointer(&mem[off+int(entryCounts)])))
		if hits := w >> 32; hits != 0 {
			fn(uint32(w>>16&0xffff), uint32(w&0xffff), hits)
		}
	}
	return nil
}

// add adds n to counter idx where this read holds it: an index beyond
// what the read was asked for is not reported.
func (r *trafficCounts) add(idx uint32, n uint64) {
	if sum, ok := r.blocks[idx/trafficPerBlock]; ok {
		sum[idx%trafficPerBlock] += n
	}
}

// verdicts is what was read for interface (or, with endpoints, endpoint
// set) number idx, with its audited count.
func (r *trafficCounts) verdicts(endpoints bool, idx uint32) (Verdicts, error) {
	first, audited := uint32(0), r.f.objs.NtfIfaceAudited
	if endpoints { // after the interfaces' pairs: NTF_TRAFFIC_ENDPOINTS
		first, audited = r.f.counters.max*2, r.f.objs.NtfEndpointAudited
	}
	var v Verdicts
	for allowed, dst := range []*uint64{&v.Denied, &v.Allowed} {
		i := first + idx*2 + uint32(allowed)
		sum, ok := r.blocks[i/trafficPerBlock]
		if !ok {
			return v, fmt.Errorf("counter %d was not read", i)
		}
		*dst = sum[i%trafficPerBlock]
	}
	if err := sumPerCPU(audited, idx, &v.Audited); err != nil {
		return v, err
	}
	return v, nil
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
