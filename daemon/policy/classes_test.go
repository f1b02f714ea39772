// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
)

// lookupClasses is the kernel's way to a decision, in Go: the longest
// configured prefix, and for a narrowed one its class by protocol,
// fragment and port.
func lookupClasses(p *Policy, iface string, k Packet) Winners {
	dst := k.Dst.Unmap()
	var best Entry
	found := false
	for ent := range p.Entries(iface) {
		if ent.Prefix.Contains(dst) && (!found || ent.Prefix.Bits() > best.Prefix.Bits()) {
			best, found = ent, true
		}
	}
	if !found {
		return Winners{}
	}
	if !best.Narrowed {
		return Winners{Prefix: best.Prefix, Principals: best.Principals, Endpoints: best.Endpoints}
	}
	classes := p.Classes(iface, best.Prefix)
	var base, other *Class
	for i := range classes {
		c := &classes[i]
		switch {
		case c.Proto == ProtoOther:
			other = c
		case c.Proto != int(k.Proto):
		case c.Fragment:
			if k.Fragment {
				return c.Winners
			}
		case c.Hi == 0:
			base = c
		case !k.Fragment && c.Lo <= k.Port && k.Port <= c.Hi:
			return c.Winners
		}
	}
	if base != nil {
		return base.Winners
	}
	return other.Winners
}

// randomPortsPolicy narrows about half of its endpoints, often several on
// one prefix, from small universes so that they overlap.
func randomPortsPolicy(r *rand.Rand) *Policy {
	prefixes := []string{"10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32", "10.1.2.4/31", "fd00::/16", "fd00:1::/32", "fd00:1::5/128"}
	protoU := []uint8{config.ProtoTCP, config.ProtoUDP, config.ProtoICMP, config.ProtoICMPv6, config.ProtoSCTP, config.ProtoUDPLite, 47}
	p := &Policy{Interfaces: []IfaceSetting{{Pattern: "eth0", Default: Action(r.IntN(2))}}}
	for i := range 1 + r.IntN(8) {
		e := Endpoint{Endpoint: &config.Endpoint{Name: fmt.Sprintf("e%d", i), Site: &config.Site{Ifaces: []string{"eth0"}}}, Principals: &Principals{UIDs: []uint32{uint32(r.IntN(4))}, Everyone: r.IntN(8) == 0}}
		for range 1 + r.IntN(2) {
			e.Ranges = append(e.Ranges, netip.MustParsePrefix(prefixes[r.IntN(len(prefixes))]))
		}
		withPorts := r.IntN(3) == 0
		var pr []uint8
		var po []config.PortRange
		if r.IntN(2) == 0 {
			for _, n := range protoU {
				if r.IntN(3) == 0 && (!withPorts || config.HasPorts(n)) {
					pr = append(pr, n)
				}
			}
			if len(pr) == 0 {
				pr = []uint8{config.ProtoTCP}
			}
			slices.Sort(pr)
		}
		if withPorts {
			for range 1 + r.IntN(3) {
				lo := uint16(1000 + r.IntN(20))
				po = append(po, config.PortRange{Lo: lo, Hi: lo + uint16(r.IntN(3))*uint16(r.IntN(4))})
			}
			slices.SortFunc(po, func(a, b config.PortRange) int { return int(a.Lo) - int(b.Lo) })
		}
		e.Narrow = narrow(pr, po)
		p.Endpoints = append(p.Endpoints, e)
	}
	return p
}

// TestClassesAgreeWithDecide: what the kernel's lookup finds through the
// flattened classes is what rules 2 and 3 say, for random policies and
// packets (protocols, ports, fragments, IPv4 and IPv6).
func TestClassesAgreeWithDecide(t *testing.T) {
	r := rand.New(rand.NewPCG(16, 2026))
	dsts := []string{"10.1.2.3", "10.1.2.4", "10.1.2.5", "10.1.9.9", "10.9.9.9", "192.0.2.1", "fd00:1::5", "fd00:1::6", "fd00:2::1", "::ffff:10.1.2.3"}
	protoU := []uint8{0, config.ProtoTCP, config.ProtoUDP, config.ProtoICMP, config.ProtoICMPv6, config.ProtoSCTP, config.ProtoUDPLite, 47, 99}
	narrowed, n := 0, 0
	for range 300 {
		p := randomPortsPolicy(r)
		for ent := range p.Entries("eth0") {
			if ent.Narrowed {
				narrowed++
			}
		}
		for range 200 {
			k := Packet{Dst: netip.MustParseAddr(dsts[r.IntN(len(dsts))]), Proto: protoU[r.IntN(len(protoU))]}
			switch {
			case config.HasPorts(k.Proto) && r.IntN(6) == 0:
				k.Fragment = true
			case config.HasPorts(k.Proto) && r.IntN(10) > 0:
				k.Port = uint16(996 + r.IntN(30))
			}
			want := winnersAmong(p.Endpoints, "eth0", Packet{Dst: k.Dst.Unmap(), Proto: k.Proto, Port: k.Port, Fragment: k.Fragment}, 128)
			got := lookupClasses(p, "eth0", k)
			n++
			if !got.Equal(want) {
				t.Fatalf("policy %+v\npacket %v %s: classes say %+v, Decide %+v", p.Endpoints, k.Dst, k, got, want)
			}
			for uid := range uint32(4) {
				d := p.DecidePacket("eth0", Owner{UID: uid}, k)
				allowed := p.Default("eth0") == Allow
				if got.Prefix.IsValid() {
					allowed = got.Principals.Allows(Owner{UID: uid})
				}
				if d.Allowed != allowed {
					t.Fatalf("packet %v %s uid %d: classes allow %v, Decide %v (%s)", k.Dst, k, uid, allowed, d.Allowed, d.Reason)
				}
			}
		}
	}
	if narrowed < 100 {
		t.Fatalf("only %d narrowed prefixes in the random policies", narrowed)
	}
	t.Logf("%d packets, %d narrowed prefixes", n, narrowed)
}

// TestClassifierLeavesPolicy: classifying a policy's ranges changes
// nothing in it. Its configured endpoints are shared with the
// configuration and the parse cache: a candidate endpoint cut down to the
// ranges that contain a prefix must be a copy (the daemon's D-Bus Check
// once answered from endpoints whose ranges the encoder's classifying had
// cut).
func TestClassifierLeavesPolicy(t *testing.T) {
	policy := func() *Policy {
		p := portsPolicy()
		// Endpoints of more than one range, one narrowed: a prefix's
		// candidates hold only some of their ranges.
		p.Endpoints = append(p.Endpoints,
			Endpoint{Endpoint: &config.Endpoint{Name: "dns", Site: &config.Site{Ifaces: []string{"eth*"}}, Ranges: []netip.Prefix{pfx("10.8.0.0/16"), pfx("fd00::/8")},
				Narrow: narrow(protos(udp), ports(port(53)))}, Principals: &Principals{Everyone: true}},
			Endpoint{Endpoint: &config.Endpoint{Name: "wide", Site: &config.Site{Ifaces: []string{"eth*"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8"), pfx("fd00::/16")}}, Principals: allowing(1)})
		return p
	}
	p, want := policy(), policy()
	for _, iface := range []string{"eth0", "eth1"} {
		classify := p.Classifier(iface)
		for _, e := range want.Endpoints {
			for _, r := range e.Ranges {
				classify(r)
			}
		}
	}
	if !p.Equal(want) {
		for i := range p.Endpoints {
			if got := p.Endpoints[i].Ranges; !slices.Equal(got, want.Endpoints[i].Ranges) {
				t.Errorf("endpoint %s: ranges %v after classifying, %v before", p.Endpoints[i].Name, got, want.Endpoints[i].Ranges)
			}
		}
		t.Fatal("classifying changed the policy")
	}
}
