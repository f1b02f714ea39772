// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
)

const (
	icmp    = config.ProtoICMP
	tcp     = config.ProtoTCP
	udp     = config.ProtoUDP
	icmpv6  = config.ProtoICMPv6
	sctp    = config.ProtoSCTP
	udplite = config.ProtoUDPLite
)

func ports(rs ...config.PortRange) []config.PortRange { return rs }
func port(n uint16) config.PortRange                  { return config.PortRange{Lo: n, Hi: n} }
func span(lo, hi uint16) config.PortRange             { return config.PortRange{Lo: lo, Hi: hi} }
func protos(ps ...uint8) []uint8                      { return ps }

// narrow is an endpoint's proto and ports, nil when it has neither.
func narrow(pr []uint8, po []config.PortRange) *config.Narrowing {
	if pr == nil && po == nil {
		return nil
	}
	return &config.Narrowing{Protos: pr, Ports: po}
}

// portsPolicy is SPEC §2's WireServer example and one prefix per tie-break.
func portsPolicy() *Policy {
	ep := func(name, rng string, pr []uint8, po []config.PortRange, who Principals) Endpoint {
		return Endpoint{Endpoint: &config.Endpoint{Name: name, Site: &config.Site{Ifaces: []string{"eth*"}}, Ranges: []netip.Prefix{pfx(rng)}, Narrow: narrow(pr, po)}, Principals: &who}
	}
	everyone := Principals{Everyone: true}
	return &Policy{
		Endpoints: []Endpoint{
			// SPEC §2: DNS for everyone, the agent's ports for root, nothing else.
			ep("wireserver-dns", "168.63.129.16/32", protos(tcp, udp), ports(port(53)), everyone),
			ep("wireserver-agent", "168.63.129.16/32", protos(tcp), ports(port(80), span(8000, 8100), port(32526)), uids(0)),
			ep("wireserver", "168.63.129.16/32", nil, nil, Principals{}),
			// Rule 3's tie-break on one /32: ports, proto, neither.
			ep("tie-ports", "10.0.0.1/32", nil, ports(port(80)), uids(1001)),
			ep("tie-proto", "10.0.0.1/32", protos(tcp), nil, uids(1002)),
			ep("tie-neither", "10.0.0.1/32", nil, nil, uids(1003)),
			// Ports and proto beat ports only.
			ep("both", "10.0.0.2/32", protos(udp), ports(port(53)), uids(1001)),
			ep("ports-only", "10.0.0.2/32", nil, ports(port(53)), uids(1002)),
			// Equal winners merge.
			ep("merge-a", "10.0.0.3/32", protos(tcp), ports(port(443)), uids(1001)),
			ep("merge-b", "10.0.0.3/32", protos(tcp), ports(span(400, 500)), uids(1002)),
			// Longest prefix first, among the endpoints that apply.
			ep("wide-tcp80", "10.1.0.0/24", protos(tcp), ports(port(80)), uids(1001)),
			ep("host-udp", "10.1.0.1/32", protos(udp), nil, uids(1002)),
			ep("wide-ports", "10.2.0.0/24", nil, ports(port(80)), uids(1001)),
			ep("host-plain", "10.2.0.1/32", nil, nil, uids(1002)),
			// Only a narrowed endpoint: other packets fall to the default.
			ep("only-tcp80", "10.3.0.1/32", protos(tcp), ports(port(80)), uids(1001)),
			// ICMP by protocol, v4 and v6.
			ep("ping", "10.4.0.0/24", protos(icmp, icmpv6), nil, uids(1001)),
			ep("ping6", "fd00::/64", protos(icmpv6), nil, uids(1001)),
		},
		Interfaces: []IfaceSetting{{Pattern: "eth0", Default: Deny}, {Pattern: "eth1", Default: Allow}},
	}
}

// TestDecidePorts reads as SPEC §1 rules 2 and 3.
func TestDecidePorts(t *testing.T) {
	p := portsPolicy()
	none := netip.Prefix{}
	tests := []struct {
		name      string
		iface     string
		uid       uint32
		pkt       Packet
		allowed   bool
		rng       netip.Prefix
		endpoints []string
	}{
		// Rule 2: an endpoint applies when the packet's protocol is in its
		// proto list and its destination port in its ports list.
		{"rule2/wireserver_dns_udp53_for_everyone", "eth0", 1001, pk("168.63.129.16", udp, 53), true, pfx("168.63.129.16/32"), []string{"wireserver-dns"}},
		{"rule2/wireserver_dns_tcp53_for_everyone", "eth0", 1001, pk("168.63.129.16", tcp, 53), true, pfx("168.63.129.16/32"), []string{"wireserver-dns"}},
		{"rule2/wireserver_agent_tcp80_root", "eth0", 0, pk("168.63.129.16", tcp, 80), true, pfx("168.63.129.16/32"), []string{"wireserver-agent"}},
		{"rule2/wireserver_agent_tcp80_not_a_user", "eth0", 1001, pk("168.63.129.16", tcp, 80), false, pfx("168.63.129.16/32"), []string{"wireserver-agent"}},
		{"rule2/wireserver_agent_port_range_lo", "eth0", 0, pk("168.63.129.16", tcp, 8000), true, pfx("168.63.129.16/32"), []string{"wireserver-agent"}},
		{"rule2/wireserver_agent_port_range_hi", "eth0", 0, pk("168.63.129.16", tcp, 8100), true, pfx("168.63.129.16/32"), []string{"wireserver-agent"}},
		{"rule2/port_past_the_range_falls_to_the_unnarrowed", "eth0", 0, pk("168.63.129.16", tcp, 8101), false, pfx("168.63.129.16/32"), []string{"wireserver"}},
		{"rule2/protocol_not_listed_falls_to_the_unnarrowed", "eth0", 0, pk("168.63.129.16", udp, 80), false, pfx("168.63.129.16/32"), []string{"wireserver"}},
		{"rule2/unknown_transport_only_unnarrowed_apply", "eth0", 1001, Packet{Dst: addr("168.63.129.16")}, false, pfx("168.63.129.16/32"), []string{"wireserver"}},
		{"rule2/icmp_matches_no_ports_list", "eth0", 0, pk("168.63.129.16", icmp, 0), false, pfx("168.63.129.16/32"), []string{"wireserver"}},
		{"rule2/portless_protocol_matches_no_ports_list", "eth0", 1001, pk("10.2.0.5", 47, 0), false, none, nil},
		{"rule2/tcp_without_a_port_matches_no_ports_list", "eth0", 1001, pk("10.2.0.5", tcp, 0), false, none, nil},
		{"rule2/ports_without_proto_cover_udplite", "eth0", 1001, pk("10.2.0.5", udplite, 80), true, pfx("10.2.0.0/24"), []string{"wide-ports"}},
		{"rule2/ports_without_proto_cover_sctp", "eth0", 1001, pk("10.2.0.5", sctp, 80), true, pfx("10.2.0.0/24"), []string{"wide-ports"}},
		{"rule2/icmp_by_proto", "eth0", 1001, pk("10.4.0.9", icmp, 0), true, pfx("10.4.0.0/24"), []string{"ping"}},
		{"rule2/icmpv6_by_proto", "eth0", 1001, pk("fd00::9", icmpv6, 0), true, pfx("fd00::/64"), []string{"ping6"}},
		{"rule2/icmp_proto_not_for_tcp", "eth0", 1001, pk("10.4.0.9", tcp, 80), false, none, nil},
		{"rule2/fragment_matches_every_ports_list_of_its_protocol", "eth0", 1001, frag("168.63.129.16", udp), true, pfx("168.63.129.16/32"), []string{"wireserver-dns"}},
		{"rule2/fragment_of_tcp_matches_both_tcp_ports_lists", "eth0", 1001, frag("168.63.129.16", tcp), true, pfx("168.63.129.16/32"), []string{"wireserver-agent", "wireserver-dns"}},
		{"rule2/fragment_matches_no_ports_list_of_another_protocol", "eth0", 1001, frag("168.63.129.16", sctp), false, pfx("168.63.129.16/32"), []string{"wireserver"}},
		{"rule2/fragment_of_a_ports_only_endpoint", "eth0", 1001, frag("10.2.0.5", udp), true, pfx("10.2.0.0/24"), []string{"wide-ports"}},
		{"rule2/fragment_of_a_portless_protocol_matches_no_ports_list", "eth0", 1001, frag("10.2.0.5", 47), false, none, nil},
		{"rule2/narrowed_only_other_packets_get_the_default_deny", "eth0", 1001, pk("10.3.0.1", udp, 53), false, none, nil},
		{"rule2/narrowed_only_other_packets_get_the_default_allow", "eth1", 1002, pk("10.3.0.1", udp, 53), true, none, nil},
		{"rule2/narrowed_only_its_own_packets", "eth1", 1002, pk("10.3.0.1", tcp, 80), false, pfx("10.3.0.1/32"), []string{"only-tcp80"}},
		// Rule 3: the longest prefix among the applying endpoints' ranges
		// first; on equal prefixes ports beat proto beat neither.
		{"rule3/ports_beat_proto", "eth0", 1001, pk("10.0.0.1", tcp, 80), true, pfx("10.0.0.1/32"), []string{"tie-ports"}},
		{"rule3/ports_beat_proto_loser_denied", "eth0", 1002, pk("10.0.0.1", tcp, 80), false, pfx("10.0.0.1/32"), []string{"tie-ports"}},
		{"rule3/proto_beats_neither", "eth0", 1002, pk("10.0.0.1", tcp, 81), true, pfx("10.0.0.1/32"), []string{"tie-proto"}},
		{"rule3/proto_beats_neither_loser_denied", "eth0", 1003, pk("10.0.0.1", tcp, 81), false, pfx("10.0.0.1/32"), []string{"tie-proto"}},
		{"rule3/ports_only_beats_neither_for_udp", "eth0", 1001, pk("10.0.0.1", udp, 80), true, pfx("10.0.0.1/32"), []string{"tie-ports"}},
		{"rule3/neither_when_nothing_narrowed_applies", "eth0", 1003, pk("10.0.0.1", udp, 81), true, pfx("10.0.0.1/32"), []string{"tie-neither"}},
		{"rule3/neither_for_icmp", "eth0", 1003, pk("10.0.0.1", icmp, 0), true, pfx("10.0.0.1/32"), []string{"tie-neither"}},
		{"rule3/ports_and_proto_beat_ports_only", "eth0", 1001, pk("10.0.0.2", udp, 53), true, pfx("10.0.0.2/32"), []string{"both"}},
		{"rule3/ports_and_proto_beat_ports_only_loser_denied", "eth0", 1002, pk("10.0.0.2", udp, 53), false, pfx("10.0.0.2/32"), []string{"both"}},
		{"rule3/ports_only_where_proto_does_not_apply", "eth0", 1002, pk("10.0.0.2", tcp, 53), true, pfx("10.0.0.2/32"), []string{"ports-only"}},
		{"rule3/equal_winners_merge_a", "eth0", 1001, pk("10.0.0.3", tcp, 443), true, pfx("10.0.0.3/32"), []string{"merge-a", "merge-b"}},
		{"rule3/equal_winners_merge_b", "eth0", 1002, pk("10.0.0.3", tcp, 443), true, pfx("10.0.0.3/32"), []string{"merge-a", "merge-b"}},
		{"rule3/equal_winners_only_where_both_apply", "eth0", 1001, pk("10.0.0.3", tcp, 444), false, pfx("10.0.0.3/32"), []string{"merge-b"}},
		{"rule3/longest_prefix_before_narrowing", "eth0", 1002, pk("10.2.0.1", tcp, 80), true, pfx("10.2.0.1/32"), []string{"host-plain"}},
		{"rule3/longest_prefix_before_narrowing_loser_denied", "eth0", 1001, pk("10.2.0.1", tcp, 80), false, pfx("10.2.0.1/32"), []string{"host-plain"}},
		{"rule3/a_longer_prefix_that_does_not_apply_falls_to_the_shorter", "eth0", 1001, pk("10.1.0.1", tcp, 80), true, pfx("10.1.0.0/24"), []string{"wide-tcp80"}},
		{"rule3/a_longer_prefix_that_applies_wins", "eth0", 1002, pk("10.1.0.1", udp, 80), true, pfx("10.1.0.1/32"), []string{"host-udp"}},
		{"rule3/neither_applies_default", "eth0", 1001, pk("10.1.0.1", tcp, 81), false, none, nil},
		{"rule3/mapped_ipv4_judged_as_ipv4", "eth0", 0, pk("::ffff:168.63.129.16", tcp, 32526), true, pfx("168.63.129.16/32"), []string{"wireserver-agent"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Owner{UID: tt.uid}
			d := p.DecidePacket(tt.iface, o, tt.pkt)
			if d.Allowed != tt.allowed || !d.Filtered || d.Range != tt.rng || !slices.Equal(d.Endpoints, tt.endpoints) {
				t.Errorf("DecidePacket(%s, %v, %v %s) = {Allowed:%v Range:%v Endpoints:%q}, want {Allowed:%v Range:%v Endpoints:%q} (reason %q)",
					tt.iface, o, tt.pkt.Dst, tt.pkt, d.Allowed, d.Range, d.Endpoints, tt.allowed, tt.rng, tt.endpoints, d.Reason)
			}
			if tr := tt.pkt.String(); tr != "" && !strings.Contains(d.Reason, tr) {
				t.Errorf("Reason %q does not name the transport %s", d.Reason, tr)
			}
		})
	}
}

func pk(dst string, proto uint8, port uint16) Packet {
	return Packet{Dst: addr(dst), Proto: proto, Port: port}
}

func frag(dst string, proto uint8) Packet {
	return Packet{Dst: addr(dst), Proto: proto, Fragment: true}
}

// TestPolicyEqualNarrowing: a reload that changes only a port must reach
// the kernel, so two policies that differ in it are not Equal.
func TestPolicyEqualNarrowing(t *testing.T) {
	base := func() *Policy { return portsPolicy() }
	for _, tt := range []struct {
		name   string
		change func(*Policy)
	}{
		{"a port", func(p *Policy) { e := p.Endpoints[1]; e.Narrow = narrow(e.Protos(), ports(port(81))) }},
		{"a protocol", func(p *Policy) { e := p.Endpoints[0]; e.Narrow = narrow(protos(udp), e.Ports()) }},
		{"ports removed", func(p *Policy) { e := p.Endpoints[0]; e.Narrow = narrow(e.Protos(), nil) }},
		{"proto [] is not no proto", func(p *Policy) { e := p.Endpoints[2]; e.Narrow = narrow([]uint8{}, e.Ports()) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, b := base(), base()
			tt.change(b)
			if a.Equal(b) {
				t.Errorf("policies that differ in %s are Equal", tt.name)
			}
		})
	}
	if !base().Equal(base()) {
		t.Error("equal policies are not Equal")
	}
}

// TestParseDestination: Check's destination (SPEC §5) and what is refused.
func TestParseDestination(t *testing.T) {
	tests := []struct {
		in   string
		want Packet
		err  string
	}{
		{in: "169.254.169.254", want: Packet{Dst: addr("169.254.169.254")}},
		{in: "fd00:ec2::254", want: Packet{Dst: addr("fd00:ec2::254")}},
		{in: "168.63.129.16:80/tcp", want: pk("168.63.129.16", tcp, 80)},
		{in: "168.63.129.16:53/udp", want: pk("168.63.129.16", udp, 53)},
		{in: "[fd00:ec2::254]:32526/tcp", want: pk("fd00:ec2::254", tcp, 32526)},
		{in: "[fd00::1]:7/132", want: pk("fd00::1", sctp, 7)},
		{in: "10.0.0.1:65535/udplite", want: pk("10.0.0.1", udplite, 65535)},
		{in: "10.0.0.1/icmp", want: pk("10.0.0.1", icmp, 0)},
		{in: "fd00::1/icmpv6", want: pk("fd00::1", icmpv6, 0)},
		{in: "10.0.0.1/47", want: pk("10.0.0.1", 47, 0)},
		{in: "10.0.0.1:80", err: `"10.0.0.1:80" is not an address, ADDR:PORT/PROTO or [IPv6]:PORT/PROTO`},
		{in: "10.0.0.1:0/tcp", err: "tcp needs a port from 1 to 65535"},
		{in: "10.0.0.1:65536/tcp", err: `is not ADDR:PORT/PROTO`},
		{in: "10.0.0.1:80/icmp", err: "icmp has no ports"},
		{in: "10.0.0.1/tcp", err: `"10.0.0.1/tcp": tcp needs a port`},
		{in: "10.0.0.1:80/tpc", err: `proto "tpc": unknown protocol`},
		{in: "10.0.0.1:80/44", err: "proto 44 is an IPv6 extension header"},
		{in: "fd00::1:80/tcp", err: "tcp needs a port: write ADDR:PORT/tcp ([IPv6]:PORT/tcp)"}, // an IPv6 address ending in :80
		{in: "10.0.0.1:80/tcp/udp", err: `proto "tcp/udp": unknown protocol`},
		{in: "", err: "is not an address"},
		{in: "host.example:80/tcp", err: "is not ADDR:PORT/PROTO"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDestination(tt.in)
			switch {
			case tt.err != "":
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("ParseDestination(%q) = %+v, %v; want error %q", tt.in, got, err, tt.err)
				}
			case err != nil || got != tt.want:
				t.Errorf("ParseDestination(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			case got.Destination() != tt.in && tt.in != "[fd00::1]:7/132" && tt.in != "10.0.0.1/47":
				t.Errorf("Destination() = %q, want %q back", got.Destination(), tt.in)
			}
		})
	}
}

// TestFamilyWarnings: icmp on IPv6-only ranges (and icmpv6 on IPv4-only
// ones) matches nothing; Compile says so.
func TestFamilyWarnings(t *testing.T) {
	cfg := &config.Config{Endpoints: []*config.Endpoint{
		{Name: "v6-icmp", Site: &config.Site{Ifaces: []string{"lo"}}, Ranges: []netip.Prefix{pfx("fd00::/64")}, Narrow: &config.Narrowing{Protos: []uint8{icmp}}},
		{Name: "v4-icmpv6", Site: &config.Site{Ifaces: []string{"lo"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")}, Narrow: &config.Narrowing{Protos: []uint8{icmpv6, tcp}}},
		{Name: "both", Site: &config.Site{Ifaces: []string{"lo"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8"), pfx("fd00::/64")}, Narrow: &config.Narrowing{Protos: []uint8{icmp, icmpv6}}},
		{Name: "right", Site: &config.Site{Ifaces: []string{"lo"}}, Ranges: []netip.Prefix{pfx("10.0.0.0/8")}, Narrow: &config.Narrowing{Protos: []uint8{icmp}}},
	}, Interfaces: map[string]config.Interface{"lo": {Default: config.Allow}}}
	p, err := Compile(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"endpoint v6-icmp: proto icmp never matches its IPv6 ranges (ICMP for IPv6 is icmpv6)",
		"endpoint v4-icmpv6: proto icmpv6 never matches its IPv4 ranges (ICMP for IPv4 is icmp)",
	}
	if !slices.Equal(p.Warnings, want) {
		t.Errorf("Warnings = %q, want %q", p.Warnings, want)
	}
}
