// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

// nep is an endpoint narrowed by proto and ports, written as in a
// configuration: "tcp,udp" and "80,8000-8100"; "" narrows nothing.
type nep struct {
	ep
	proto, ports string
}

// compileNarrowed is compile for endpoints with proto and ports.
func compileNarrowed(t testing.TB, defaults map[string]config.Action, eps ...nep) *policy.Policy {
	t.Helper()
	plain := make([]ep, len(eps))
	for i, e := range eps {
		plain[i] = e.ep
	}
	p := compile(t, defaults, plain...)
	for i, e := range eps {
		if e.proto == "" && e.ports == "" {
			continue
		}
		n := new(config.Narrowing)
		if e.proto != "" {
			n.Protos = []uint8{}
			for _, s := range strings.Split(e.proto, ",") {
				proto, err := config.ParseProto(s)
				if err != nil {
					t.Fatal(err)
				}
				n.Protos = append(n.Protos, proto)
			}
		}
		if e.ports != "" {
			n.Ports = []config.PortRange{}
			for _, s := range strings.Split(e.ports, ",") {
				r, err := config.ParsePort(s)
				if err != nil {
					t.Fatal(err)
				}
				n.Ports = append(n.Ports, r)
			}
		}
		p.Endpoints[i].Narrow = n
	}
	return p
}

var (
	ptWire4  = netip.MustParseAddr("10.9.0.1")
	ptWire6  = netip.MustParseAddr("fd00:9::1")
	ptLite4  = netip.MustParseAddr("10.9.0.2")
	ptHost4  = netip.MustParseAddr("10.8.0.1")
	ptWide4  = netip.MustParseAddr("10.8.0.9")
	ptWireR4 = "10.9.0.1/32"
	ptWireR6 = "fd00:9::1/128"
)

const (
	sctpProto    = 132
	udpliteProto = 136
	icmp6Proto   = 58
)

// portsPolicy is SPEC §2's WireServer on lo, seen by root (the test run's
// owner): DNS for everyone, the agent's ports for alice only, ICMP for
// root, nothing else; a ports-only endpoint; and a /16 narrowed to 443
// below a /32 narrowed to udp.
func portsPolicyEndpoints() []nep {
	lo := []string{"lo"}
	wire := []string{ptWireR4, ptWireR6}
	return []nep{
		{ep{"wire-dns", lo, wire, []string{"*"}}, "udp,tcp", "53"},
		{ep{"wire-agent", lo, wire, []string{"alice"}}, "tcp", "80,8000-8100"},
		{ep{"wire-ping", lo, wire, []string{"root"}}, "icmp,icmpv6", ""},
		{ep{"wire", lo, wire, nil}, "", ""},
		{ep{"lite", lo, []string{"10.9.0.2/32"}, []string{"root"}}, "", "7"},
		{ep{"wide-443", lo, []string{"10.8.0.0/16"}, []string{"root"}}, "", "443"},
		{ep{"host-udp", lo, []string{"10.8.0.1/32"}, []string{"alice"}}, "udp", ""},
	}
}

func sctpHdr(sport, dport uint16) []byte { return cat(be16(sport), be16(dport), make([]byte, 8)) }
func icmpEcho() []byte                   { return []byte{8, 0, 0, 0, 0, 1, 0, 1} }
func icmp6Echo() []byte                  { return []byte{128, 0, 0, 0, 0, 1, 0, 1} }

// ptPortsCases are SPEC §1 rules 2 and 3 in the kernel, in an order that
// has the verdict cache hold one transport's verdict when another's packet
// to the same address comes.
func ptPortsCases() []ptCase {
	u4 := func(dst netip.Addr, dport uint16) []byte {
		return ptEth4(ipv4(ptSrc4, dst, udpProto, udp(ptSport, dport, []byte("ping"))))
	}
	t4 := func(dst netip.Addr, dport uint16) []byte {
		return ptEth4(ipv4(ptSrc4, dst, tcpProto, ptTCP(ptSport, dport)))
	}
	u6 := func(dst netip.Addr, dport uint16, ext ...[]byte) []byte {
		next := byte(udpProto)
		if len(ext) > 0 {
			next = nhDstOpts
		}
		return ptEth6(ipv6(ptSrc6, dst, next, cat(cat(ext...), udp(ptSport, dport, []byte("ping")))))
	}
	t6 := func(dst netip.Addr, dport uint16) []byte {
		return ptEth6(ipv6(ptSrc6, dst, tcpProto, ptTCP(ptSport, dport)))
	}
	bigUDP4 := ipv4(ptSrc4, ptWire4, udpProto, udp(ptSport, 80, make([]byte, 64)))
	return []ptCase{
		{name: "udp/53 for everyone", frame: u4(ptWire4, 53), want: ptAllowed(ev4(ptWire4, udpProto, ptSport, 53, ptWireR4))},
		{name: "tcp/80 alice's, not root's (cache held udp/53)", frame: t4(ptWire4, 80), want: ptDenied(ev4(ptWire4, tcpProto, ptSport, 80, ptWireR4))},
		{name: "udp/53 again (cache held tcp/80)", frame: u4(ptWire4, 53), want: ptAllowed(ev4(ptWire4, udpProto, ptSport, 53, ptWireR4))},
		{name: "tcp/53 for everyone", frame: t4(ptWire4, 53), want: ptAllowed(ev4(ptWire4, tcpProto, ptSport, 53, ptWireR4))},
		{name: "tcp/8000 range start", frame: t4(ptWire4, 8000), want: ptDenied(ev4(ptWire4, tcpProto, ptSport, 8000, ptWireR4))},
		{name: "udp/80: agent is tcp only, wire decides", frame: u4(ptWire4, 80), want: ptDenied(ev4(ptWire4, udpProto, ptSport, 80, ptWireR4))},
		{name: "udp/54: no ports list, wire decides", frame: u4(ptWire4, 54), want: ptDenied(ev4(ptWire4, udpProto, ptSport, 54, ptWireR4))},
		{name: "udp/0 is in no ports list", frame: u4(ptWire4, 0), want: ptDenied(ev4(ptWire4, udpProto, ptSport, 0, ptWireR4))},
		{name: "sctp/53: dns is udp and tcp", frame: ptEth4(ipv4(ptSrc4, ptWire4, sctpProto, sctpHdr(ptSport, 53))), want: ptDenied(ev4(ptWire4, sctpProto, ptSport, 53, ptWireR4))},
		{name: "icmp echo: root by proto", frame: ptEth4(ipv4(ptSrc4, ptWire4, icmpProto, icmpEcho())), want: ptAllowed(ev4(ptWire4, icmpProto, 0, 0, ptWireR4))},
		{name: "gre: no endpoint lists it", frame: ptEth4(ipv4(ptSrc4, ptWire4, 47, make([]byte, 8))), want: ptDenied(ev4(ptWire4, 47, 0, 0, ptWireR4))},
		// Rule 2's fragments: a later fragment has no port and matches
		// every ports list of its protocol.
		{name: "udp later fragment: dns's ports list", frame: ptEth4(ptFrag4(bigUDP4, 8, false)), want: ptAllowed(ev4(ptWire4, udpProto, 0, 0, ptWireR4))},
		{name: "tcp later fragment: dns and agent merge", frame: ptEth4(ptFrag4(ipv4(ptSrc4, ptWire4, tcpProto, make([]byte, 32)), 3, true)), want: ptAllowed(ev4(ptWire4, tcpProto, 0, 0, ptWireR4))},
		{name: "sctp later fragment: no ports list of sctp", frame: ptEth4(ptFrag4(ipv4(ptSrc4, ptWire4, sctpProto, make([]byte, 32)), 3, true)), want: ptDenied(ev4(ptWire4, sctpProto, 0, 0, ptWireR4))},
		{name: "udp first fragment judged by its port", frame: ptEth4(ptFrag4(bigUDP4, 0, true)), want: ptDenied(ev4(ptWire4, udpProto, ptSport, 80, ptWireR4))},
		// An attacker's tiny first fragment hides the port: malformed.
		{name: "tiny first fragment without the ports: malformed", frame: ptEth4(ptFrag4(ipv4(ptSrc4, ptWire4, udpProto, []byte{0x9c, 0x40}), 0, true)), want: ptMalformed},
		{name: "tcp cut before its destination port: malformed", frame: ptEth4(ipv4(ptSrc4, ptWire4, tcpProto, []byte{0x9c, 0x40, 0})), want: ptMalformed},
		// Ports-only endpoints cover UDP-Lite and SCTP; packets without a
		// listed port go to the default (deny), there is no other range.
		{name: "udplite/7: ports without proto", frame: ptEth4(ipv4(ptSrc4, ptLite4, udpliteProto, udp(ptSport, 7, nil))), want: ptAllowed(ev4(ptLite4, udpliteProto, ptSport, 7, "10.9.0.2/32"))},
		{name: "sctp/7: ports without proto", frame: ptEth4(ipv4(ptSrc4, ptLite4, sctpProto, sctpHdr(ptSport, 7))), want: ptAllowed(ev4(ptLite4, sctpProto, ptSport, 7, "10.9.0.2/32"))},
		{name: "udplite/8: the default", frame: ptEth4(ipv4(ptSrc4, ptLite4, udpliteProto, udp(ptSport, 8, nil))), want: ptDenied(ev4(ptLite4, udpliteProto, ptSport, 8, ""))},
		{name: "icmp to a ports-only range: the default", frame: ptEth4(ipv4(ptSrc4, ptLite4, icmpProto, icmpEcho())), want: ptDenied(ev4(ptLite4, icmpProto, 0, 0, ""))},
		// Rule 3: the longest prefix among those that apply.
		{name: "tcp/443 to the udp-only /32: the /16 decides", frame: t4(ptHost4, 443), want: ptAllowed(ev4(ptHost4, tcpProto, ptSport, 443, "10.8.0.0/16"))},
		{name: "udp/443 to the udp-only /32: it decides", frame: u4(ptHost4, 443), want: ptDenied(ev4(ptHost4, udpProto, ptSport, 443, "10.8.0.1/32"))},
		{name: "tcp/444 to the /32: neither applies, the default", frame: t4(ptHost4, 444), want: ptDenied(ev4(ptHost4, tcpProto, ptSport, 444, ""))},
		{name: "tcp/443 inside the /16", frame: t4(ptWide4, 443), want: ptAllowed(ev4(ptWide4, tcpProto, ptSport, 443, "10.8.0.0/16"))},
		// IPv6, extension headers before the transport.
		{name: "v6 udp/53", frame: u6(ptWire6, 53), want: ptAllowed(ev6(ptWire6, udpProto, ptSport, 53, ptWireR6))},
		{name: "v6 tcp/80 not root's", frame: t6(ptWire6, 80), want: ptDenied(ev6(ptWire6, tcpProto, ptSport, 80, ptWireR6))},
		{name: "v6 tcp/8100 range end", frame: t6(ptWire6, 8100), want: ptDenied(ev6(ptWire6, tcpProto, ptSport, 8100, ptWireR6))},
		{name: "v6 tcp/53", frame: t6(ptWire6, 53), want: ptAllowed(ev6(ptWire6, tcpProto, ptSport, 53, ptWireR6))},
		{name: "v6 udp/53 behind dest-opts", frame: u6(ptWire6, 53, ext(udpProto)), want: ptAllowed(ev6(ptWire6, udpProto, ptSport, 53, ptWireR6))},
		{name: "v6 udp/54 behind dest-opts", frame: u6(ptWire6, 54, ext(udpProto)), want: ptDenied(ev6(ptWire6, udpProto, ptSport, 54, ptWireR6))},
		{name: "v6 udp/53 behind 8 headers", frame: u6(ptWire6, 53, ptDstOpts(8, udpProto)), want: ptAllowed(ev6(ptWire6, udpProto, ptSport, 53, ptWireR6))},
		{name: "v6 icmpv6 echo: root by proto", frame: ptEth6(ipv6(ptSrc6, ptWire6, icmp6Proto, icmp6Echo())), want: ptAllowed(ev6(ptWire6, icmp6Proto, 0, 0, ptWireR6))},
		{name: "v6 udp later fragment", frame: ptEth6(ipv6(ptSrc6, ptWire6, nhFrag, cat(fragHdr(udpProto, 2, true), make([]byte, 16)))), want: ptAllowed(ev6(ptWire6, udpProto, 0, 0, ptWireR6))},
		{name: "v6 sctp later fragment", frame: ptEth6(ipv6(ptSrc6, ptWire6, nhFrag, cat(fragHdr(sctpProto, 2, true), make([]byte, 16)))), want: ptDenied(ev6(ptWire6, sctpProto, 0, 0, ptWireR6))},
		{name: "v6 tcp first fragment judged by its port", frame: ptEth6(ipv6(ptSrc6, ptWire6, nhFrag, cat(fragHdr(tcpProto, 0, true), ptTCP(ptSport, 80)))), want: ptDenied(ev6(ptWire6, tcpProto, ptSport, 80, ptWireR6))},
		{name: "v6 tiny first fragment: malformed", frame: ptEth6(ipv6(ptSrc6, ptWire6, nhFrag, cat(fragHdr(udpProto, 0, true), []byte{0x9c}))), want: ptMalformed},
		{name: "v6 bogus chain: 12 headers before udp/53", frame: u6(ptWire6, 53, ptDstOpts(12, udpProto)), want: ptMalformed},
		{name: "v6 mapped v4 tcp/53", frame: t6(netip.MustParseAddr("::ffff:10.9.0.1"), 53), want: ptAllowed(ev6(ptWire4, tcpProto, ptSport, 53, ptWireR4))},
	}
}

// TestParsePorts runs ptPortsCases through the loaded program, cached
// and, with a fresh program, uncached... the cache is what the first pass
// exercises: each case after the first finds the previous transport's
// verdict for the same address in it.
func TestParsePorts(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.NewNS(t, "pp")
	var loIdx int
	ns.MustDo(t, func() error {
		ifc, err := net.InterfaceByName("lo")
		if err == nil {
			loIdx = ifc.Index
		}
		return err
	})
	f := openFilter(t, ns, ModeAuto)
	events := openEvents(t, f)
	r := &ptRunner{ns: ns, f: f, events: events}
	p := compileNarrowed(t, map[string]config.Action{"lo": config.Deny}, portsPolicyEndpoints()...)
	r.gen = apply(t, ns, f, p, LogAll)
	r.drain(t)
	// Twice: the second pass finds every address's last verdict cached.
	for pass := range 2 {
		for _, c := range ptPortsCases() {
			t.Run(c.name, func(t *testing.T) {
				r.check(t, 0, loIdx, c)
				if t.Failed() {
					t.Logf("pass %d", pass)
				}
			})
		}
	}
	// Every verdict must be Decide's on the same packet, for root.
	for _, c := range ptPortsCases() {
		if c.want.event == nil {
			continue
		}
		e := c.want.event
		k := policy.Packet{Dst: e.Dst, Proto: e.Proto, Port: e.Dport, Fragment: e.Dport == 0 && (e.Proto == tcpProto || e.Proto == udpProto || e.Proto == sctpProto) && strings.Contains(c.name, "fragment")}
		if d := p.DecidePacket("lo", policy.Owner{UID: 0}, k); d.Allowed != e.Allowed {
			t.Errorf("%s: Decide says allowed=%v (%s), the case %v", c.name, d.Allowed, d.Reason, e.Allowed)
		}
	}
}

// TestEnforcePorts: SPEC §2's WireServer with real traffic from real uids,
// IPv4 and IPv6, in both attach modes: DNS (udp/53, tcp/53) stays open to
// every user while tcp/80 of the same address is alice's alone; udp/80
// and tcp/81 fall to the un-narrowed endpoint that allows no one.
func TestEnforcePorts(t *testing.T) {
	eachMode(t, testEnforcePorts)
}

func testEnforcePorts(t *testing.T, mode Mode) {
	tp := testnet.NewTopology(t, testnet.Options{})
	for _, port := range []uint16{53, 80, 81} {
		tp.ServeTCP(t, port)
		tp.ServeUDPEcho(t, port)
	}
	alice := testnet.StartAgent(t, tp.Client, 1001)
	bob := testnet.StartAgent(t, tp.Client, 1002)
	f := openFilter(t, tp.Client, mode)
	eth0 := []string{"eth0"}
	wire := []string{"169.254.169.254/32", "fd00:ec2::254/128"}
	p := compileNarrowed(t, map[string]config.Action{"eth0": config.Deny},
		nep{ep{"wire-dns", eth0, wire, []string{"*"}}, "udp,tcp", "53"},
		nep{ep{"wire-agent", eth0, wire, []string{"alice"}}, "tcp", "80,8000-8100"},
		nep{ep{"wire", eth0, wire, nil}, "", ""},
	)
	apply(t, tp.Client, f, p, LogAll)
	type probe struct {
		a       *testnet.Agent
		proto   string
		port    uint16
		allowed bool
	}
	probes := []probe{
		{alice, "udp", 53, true}, {bob, "udp", 53, true},
		{alice, "tcp", 53, true}, {bob, "tcp", 53, true},
		{alice, "tcp", 80, true}, {bob, "tcp", 80, false},
		{alice, "udp", 80, false}, {bob, "udp", 80, false},
		{alice, "tcp", 81, false}, {bob, "tcp", 81, false},
		// Again, with every verdict cached: one port's never answers
		// for another's.
		{bob, "udp", 53, true}, {bob, "tcp", 80, false}, {alice, "tcp", 80, true}, {alice, "udp", 53, true},
	}
	for _, dst := range []netip.Addr{imds4, imds6} {
		for _, pr := range probes {
			fn := pr.a.TCP
			if pr.proto == "udp" {
				fn = pr.a.UDP
			}
			timeout := testnet.DenyTimeout
			if pr.allowed {
				timeout = netlab.Slowed(testnet.AllowTimeout)
			}
			err := fn(dst, pr.port, timeout)
			switch {
			case pr.allowed && err != nil:
				t.Errorf("uid %d %s to %s:%d: want allowed, got %v", pr.a.UID, pr.proto, dst, pr.port, err)
			case !pr.allowed && !errors.Is(err, netlab.ErrTimeout):
				t.Errorf("uid %d %s to %s:%d: want dropped (timeout), got %v", pr.a.UID, pr.proto, dst, pr.port, err)
			}
			k := policy.Packet{Dst: dst, Proto: map[string]uint8{"tcp": tcpProto, "udp": udpProto}[pr.proto], Port: pr.port}
			if d := p.DecidePacket("eth0", policy.Owner{UID: pr.a.UID}, k); d.Allowed != pr.allowed {
				t.Errorf("uid %d %s to %s:%d: Decide says %v (%s)", pr.a.UID, pr.proto, dst, pr.port, d.Allowed, d.Reason)
			}
		}
	}
}
