// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"net/netip"
	"slices"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
)

// ProtoOther is Class.Proto for every protocol that no endpoint of the
// prefix or of a shorter prefix containing it lists.
const ProtoOther = -1

// Class is a set of packets to a narrowed prefix that rules 2 and 3 judge
// alike: the kernel looks a narrowed prefix's packets up in its classes
// instead of searching the prefixes again for the endpoints that apply.
type Class struct {
	Proto    int    // a protocol number, or ProtoOther
	Fragment bool   // the protocol's non-first fragments
	Lo, Hi   uint16 // a port interval of the protocol; 0, 0: every packet of the protocol no other class of it holds
	// Winners decide; an invalid Prefix: the interface default does.
	Winners Winners
}

// Classes flattens rules 2 and 3 for the packets whose longest configured
// prefix on iface is q, a narrowed Entry's: for every protocol that an
// endpoint of q or of a prefix containing q lists (a ports-only endpoint
// lists the four protocols with ports), its fragments and each interval of
// ports that no listed bound splits, what decides, with the endpoints of
// q and of the shorter prefixes that contain it. Port intervals that
// decide as the protocol's portless class are left out; adjacent ones that
// decide alike are merged. The kernel finds a packet's class by the
// longest match of (proto, fragment, port), so the classes of one protocol
// need not cover every port.
func (p *Policy) Classes(iface string, q netip.Prefix) []Class {
	return p.Classifier(iface)(q)
}

// Classifier is Classes for many prefixes of one interface: it indexes
// the interface's ranges once, so that each prefix costs a lookup per
// shorter length, not a pass over every range of the policy.
func (p *Policy) Classifier(iface string) func(q netip.Prefix) []Class {
	byPrefix := map[netip.Prefix][]int{}
	var lengths4, lengths6 [129]bool
	for i, e := range p.Endpoints {
		if !e.appliesTo(iface) {
			continue
		}
		for _, r := range e.Ranges {
			if l := byPrefix[r]; len(l) == 0 || l[len(l)-1] != i {
				byPrefix[r] = append(l, i)
			}
			if r.Addr().Is4() {
				lengths4[r.Bits()] = true
			} else {
				lengths6[r.Bits()] = true
			}
		}
	}
	return func(q netip.Prefix) []Class {
		lengths := &lengths6
		if q.Addr().Is4() {
			lengths = &lengths4
		}
		// The endpoints that can apply to q's packets, with their
		// ranges that contain q: theirs are the only protocols and
		// bounds that matter.
		var cands []Endpoint
		at := map[int]int{} // endpoint index → its place in cands
		for bits := 0; bits <= q.Bits(); bits++ {
			if !lengths[bits] {
				continue
			}
			r := netip.PrefixFrom(q.Addr(), bits).Masked()
			for _, i := range byPrefix[r] {
				j, ok := at[i]
				if !ok {
					j = len(cands)
					at[i] = j
					// A copy with only the ranges that contain
					// q: the configured endpoint is shared and
					// never modified.
					e := *p.Endpoints[i].Endpoint
					e.Ranges = nil
					cands = append(cands, Endpoint{Endpoint: &e, Principals: p.Endpoints[i].Principals})
				}
				cands[j].Ranges = append(cands[j].Ranges, r)
			}
		}
		return classesAmong(cands, iface, q)
	}
}

// classesAmong is Classes with the candidate endpoints found.
func classesAmong(cands []Endpoint, iface string, q netip.Prefix) []Class {
	protos := map[int]bool{}
	var bounds []int // ports where an interval starts
	for _, e := range cands {
		for _, n := range e.Protos() {
			protos[int(n)] = true
		}
		if e.Ports() != nil && e.Protos() == nil {
			for _, n := range []uint8{config.ProtoTCP, config.ProtoUDP, config.ProtoSCTP, config.ProtoUDPLite} {
				protos[int(n)] = true
			}
		}
		for _, r := range e.Ports() {
			bounds = append(bounds, int(r.Lo), int(r.Hi)+1)
		}
	}
	bounds = append(bounds, 1, 65536)
	slices.Sort(bounds)
	bounds = slices.Compact(bounds)
	at := func(k Packet) Winners {
		k.Dst = q.Addr()
		return winnersAmong(cands, iface, k, q.Bits())
	}
	// Proto 0 is never listed (an IPv6 extension header): no narrowed
	// endpoint applies to it, as to every protocol not listed.
	out := []Class{{Proto: ProtoOther, Winners: at(Packet{})}}
	for _, n := range slices.Sorted(func(yield func(int) bool) {
		for n := range protos {
			if !yield(n) {
				return
			}
		}
	}) {
		base := at(Packet{Proto: uint8(n)})
		out = append(out, Class{Proto: n, Winners: base})
		if !config.HasPorts(uint8(n)) {
			continue
		}
		out = append(out, Class{Proto: n, Fragment: true, Winners: at(Packet{Proto: uint8(n), Fragment: true})})
		for i := 0; i+1 < len(bounds); i++ {
			lo, hi := bounds[i], bounds[i+1]-1
			if lo < 1 || lo > 65535 {
				continue
			}
			w := at(Packet{Proto: uint8(n), Port: uint16(lo)})
			if w.Equal(base) {
				continue
			}
			if last := &out[len(out)-1]; last.Proto == n && !last.Fragment && last.Hi != 0 && int(last.Hi)+1 == lo && last.Winners.Equal(w) {
				last.Hi = uint16(hi)
				continue
			}
			out = append(out, Class{Proto: n, Lo: uint16(lo), Hi: uint16(hi), Winners: w})
		}
	}
	return out
}
