// SPDX-License-Identifier: Apache-2.0

package config

import (
	"slices"
	"testing"
)

// TestPortsErrors: a careless administrator's proto and ports (SPEC §2:
// ports on a protocol without ports, an empty port range, a port outside
// 1-65535) are each an error at their line, all of them at once.
func TestPortsErrors(t *testing.T) {
	base := []string{"iface: eth0", "range: 10.0.0.0/8", "allow: []"} // lines 3-5
	tests := []struct {
		name string
		body []string // lines 6 on
		want []want
	}{{
		name: "port 0 and ports above 65535",
		body: []string{"proto: tcp", "ports: [0, 65536, 70000, \"0\", \"0-80\", 65535]"},
		want: []want{
			{m(7), `endpoint "a": port 0: out of range 1-65535`},
			{m(7), `endpoint "a": port 65536: out of range 1-65535`},
			{m(7), `endpoint "a": port 70000: out of range 1-65535`},
			{m(7), `endpoint "a": port 0: out of range 1-65535`},
			{m(7), `endpoint "a": port range "0-80": port 0 is no port`},
		},
	}, {
		name: "malformed and inverted ranges",
		body: []string{"ports:", `  - "80-"`, `  - "-80"`, `  - http`, `  - "8100-8000"`, `  - "80-90-100"`, `  - " 80"`, `  - "+80"`, `  - "1-65536"`, "  - 8.5", "  - true"},
		want: []want{
			{m(7), `endpoint "a": port "80-": want a number 1-65535 or a range "LO-HI"`},
			{m(8), `port "-80": want a number`},
			{m(9), `port "http": want a number`},
			{m(10), `endpoint "a": port range "8100-8000" is empty (8100 > 8000)`},
			{m(11), `port "80-90-100": want a number`},
			{m(12), `port " 80": want a number`},
			{m(13), `port "+80": want a number`},
			{m(14), `port "1-65536": want a number`},
			{m(15), `port entry must be a number or a range like "8000-8100", not the number 8.5`},
			{m(16), `not the boolean true`},
		},
	}, {
		name: "empty lists",
		body: []string{"proto: []", "ports:"},
		want: []want{
			{m(6), `endpoint "a": empty proto list: remove proto to cover every protocol`},
			{m(7), `endpoint "a": empty ports list: remove ports to cover every port`},
		},
	}, {
		name: "ports on protocols without ports",
		body: []string{"proto: [tcp, icmp]", "ports: [80]"},
		want: []want{{m(7), `endpoint "a": ports on protocol icmp, which has no ports`}},
	}, {
		name: "ports on icmpv6 and a numbered protocol",
		body: []string{"ports: [80]", "proto: [icmpv6, 47]"},
		want: []want{
			{m(6), `ports on protocol 47, which has no ports`},
			{m(6), `ports on protocol icmpv6, which has no ports`},
		},
	}, {
		name: "bad protocols",
		body: []string{"proto:", "  - tpc", "  - TCP", "  - 256", "  - 44", "  - hopopts", "  - [tcp]", "  - -1", "  - 0"},
		want: []want{
			{m(7), `endpoint "a": proto "tpc": unknown protocol (tcp, udp, udplite, sctp, icmp, icmpv6 or a number 0-255); did you mean tcp?`},
			{m(8), `proto "TCP": unknown protocol (tcp, udp, udplite, sctp, icmp, icmpv6 or a number 0-255); did you mean tcp?`},
			{m(9), `proto 256: out of range 0-255`},
			{m(10), `proto 44 is an IPv6 extension header: the filter judges the protocol after extension headers`},
			{m(11), `proto "hopopts": unknown protocol`},
			{m(12), `proto entry must be a protocol name or number, not a list`},
			{m(13), `proto "-1": unknown protocol`},
			{m(14), `proto 0 is an IPv6 extension header`},
		},
	}, {
		name: "duplicates",
		body: []string{"proto: [tcp, 6, udp]", "ports: [80, \"80\", 81]"},
		want: []want{
			{m(6), `endpoint "a": duplicate proto 6 (first at line 6)`},
			{m(7), `endpoint "a": duplicate port 80 (first at line 7)`},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeSet(t, map[string]string{mainName: endpointWith(slices.Concat(base, tt.body)...)})
			cfg, err := loadSet(t, dir)
			checkErrors(t, dir, cfg, err, tt.want)
		})
	}
}

// TestPortsParse: what proto and ports read as; an endpoint without them
// is not narrowed (nil), as every existing configuration.
func TestPortsParse(t *testing.T) {
	tests := []struct {
		name   string
		body   []string
		protos []uint8
		ports  []PortRange
		text   string
	}{{
		name: "seed: neither",
	}, {
		name:   "SPEC's wireserver-agent",
		body:   []string{"proto: [tcp]", `ports: [80, 32526, "8000-8100"]`},
		protos: []uint8{ProtoTCP},
		ports:  []PortRange{{80, 80}, {8000, 8100}, {32526, 32526}},
		text:   "tcp/80,8000-8100,32526",
	}, {
		name:   "a scalar stands for a one-item list; numbers and names",
		body:   []string{"proto: 132", `ports: "1-65535"`},
		protos: []uint8{ProtoSCTP},
		ports:  []PortRange{{1, 65535}},
		text:   "sctp/1-65535",
	}, {
		name:  "ports without proto: the port protocols, overlaps merged",
		body:  []string{`ports: ["53", "50-60", 61, 1000]`},
		ports: []PortRange{{50, 61}, {1000, 1000}},
		text:  "tcp,udp,udplite,sctp/50-61,1000",
	}, {
		name:   "proto only, sorted",
		body:   []string{"proto: [icmpv6, udp, icmp, 47, udplite]"},
		protos: []uint8{1, 17, 47, 58, 136},
		text:   "icmp,udp,47,icmpv6,udplite",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := slices.Concat([]string{"iface: eth0", "range: 10.0.0.0/8", "allow: []"}, tt.body)
			cfg := mustLoad(t, writeSet(t, map[string]string{mainName: endpointWith(body...)}))
			e := cfg.Endpoints[0]
			if !slices.Equal(e.Protos(), tt.protos) || (e.Protos() == nil) != (tt.protos == nil) {
				t.Errorf("Protos = %#v, want %#v", e.Protos(), tt.protos)
			}
			if !slices.Equal(e.Ports(), tt.ports) || (e.Ports() == nil) != (tt.ports == nil) {
				t.Errorf("Ports = %#v, want %#v", e.Ports(), tt.ports)
			}
			if (e.Narrow != nil) != (tt.protos != nil || tt.ports != nil) {
				t.Errorf("Narrow = %#v: made for an endpoint that narrows nothing, or missing", e.Narrow)
			}
			if got := FormatNarrowing(e.Protos(), e.Ports()); got != tt.text {
				t.Errorf("FormatNarrowing = %q, want %q", got, tt.text)
			}
		})
	}
}
