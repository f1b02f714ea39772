// SPDX-License-Identifier: Apache-2.0

package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// PortRange is an inclusive interval of destination ports, 1-65535.
type PortRange struct{ Lo, Hi uint16 }

func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// Protocol numbers with names in the configuration (IANA).
const (
	ProtoICMP    uint8 = 1
	ProtoTCP     uint8 = 6
	ProtoUDP     uint8 = 17
	ProtoICMPv6  uint8 = 58
	ProtoSCTP    uint8 = 132
	ProtoUDPLite uint8 = 136
)

// protoNames are the names `proto:` accepts. A function, so that no
// caller can change the table.
func protoNames() map[string]uint8 {
	return map[string]uint8{
		"tcp": ProtoTCP, "udp": ProtoUDP, "udplite": ProtoUDPLite, "sctp": ProtoSCTP,
		"icmp": ProtoICMP, "icmpv6": ProtoICMPv6,
	}
}

// ProtoName spells a protocol number as the configuration does: its name,
// or the number.
func ProtoName(p uint8) string {
	for name, n := range protoNames() {
		if n == p {
			return name
		}
	}
	return strconv.Itoa(int(p))
}

// ParseProto reads a protocol as `proto:` and the command line take it: a
// name or a number 0-255 that is not an IPv6 extension header.
func ParseProto(s string) (uint8, error) {
	if n, ok := protoNames()[s]; ok {
		return n, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || s == "" || s[0] == '+' {
		return 0, fmt.Errorf("proto %q: unknown protocol (tcp, udp, udplite, sctp, icmp, icmpv6 or a number 0-255)%s", s, protoHint(s))
	}
	if n > 255 {
		return 0, fmt.Errorf("proto %s: out of range 0-255", s)
	}
	if isExtHeader(uint8(n)) {
		return 0, fmt.Errorf("proto %d is an IPv6 extension header: the filter judges the protocol after extension headers", n)
	}
	return uint8(n), nil
}

// protoHint suggests the name a misspelt protocol was probably meant to be.
func protoHint(s string) string {
	low := strings.ToLower(s)
	if _, ok := protoNames()[low]; ok {
		return fmt.Sprintf("; did you mean %s?", low)
	}
	best, dist := "", 2 // one edit: further is a guess
	for name := range protoNames() {
		if d := editDistance(low, name); d < dist || (d == dist && name < best) {
			best, dist = name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %s?", best)
}

// editDistance is the optimal string alignment distance of two short
// ASCII strings: Levenshtein's, with a swap of two neighbours ("tpc") as one
// edit.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// isExtHeader reports IPv6 extension headers that the kernel program walks
// past (and IPv4 never carries as a transport): a packet is never judged
// as one of them, so narrowing to one would match nothing.
func isExtHeader(p uint8) bool {
	switch p {
	case 0, 43, 44, 51, 60: // hop-by-hop, routing, fragment, AH, destination options
		return true
	}
	return false
}

// HasPorts reports whether packets of a protocol carry ports that the
// kernel program reads: TCP, UDP, UDP-Lite and SCTP.
func HasPorts(p uint8) bool {
	switch p {
	case ProtoTCP, ProtoUDP, ProtoUDPLite, ProtoSCTP:
		return true
	}
	return false
}

// ParsePort reads one `ports:` string item: "80" or "8000-8100".
func ParsePort(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	a, errA := portNumber(lo)
	b, errB := a, errA
	if isRange {
		b, errB = portNumber(hi)
	}
	if errA != nil || errB != nil {
		if n, err := strconv.ParseUint(s, 10, 64); err == nil && !isRange {
			return PortRange{}, fmt.Errorf("port %d: out of range 1-65535", n)
		}
		return PortRange{}, fmt.Errorf("port %q: want a number 1-65535 or a range \"LO-HI\"", s)
	}
	if a == 0 && !isRange {
		return PortRange{}, fmt.Errorf("port 0: out of range 1-65535")
	}
	if a == 0 || b == 0 {
		return PortRange{}, fmt.Errorf("port range %q: port 0 is no port; ports are 1-65535", s)
	}
	if a > b {
		return PortRange{}, fmt.Errorf("port range %q is empty (%d > %d)", s, a, b)
	}
	return PortRange{uint16(a), uint16(b)}, nil
}

// portNumber reads the decimal digits of one port, 0-65535.
func portNumber(s string) (uint64, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("not a number")
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// mergePorts sorts port ranges and merges those that overlap or touch, so
// that equal narrowing compares equal however it was written.
func mergePorts(rs []PortRange) []PortRange {
	slices.SortFunc(rs, func(a, b PortRange) int { return int(a.Lo) - int(b.Lo) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && uint32(r.Lo) <= uint32(out[n-1].Hi)+1 {
			out[n-1].Hi = max(out[n-1].Hi, r.Hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

// FormatNarrowing spells an endpoint's proto and ports as `check` prints
// them: "tcp,udp/53", "tcp/80,8000-8100", "icmp", "*/53" (ports of every
// port protocol), "" for neither.
func FormatNarrowing(protos []uint8, ports []PortRange) string {
	var b strings.Builder
	if protos == nil && ports == nil {
		return ""
	}
	if protos == nil {
		b.WriteString("tcp,udp,udplite,sctp")
	}
	for i, p := range protos {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(ProtoName(p))
	}
	for i, r := range ports {
		if i == 0 {
			b.WriteByte('/')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(r.String())
	}
	return b.String()
}

func (p *fileParser) protos(ep string, v val) []uint8 {
	if v.empty() {
		p.at(v.line, "endpoint %q: empty proto list: remove proto to cover every protocol, or name one (tcp, udp, ...)", ep)
		return nil
	}
	out := []uint8{}
	first := make(map[uint8]int)
	for _, it := range v.list() {
		var s string
		switch x := it.v.(type) {
		case string:
			s = x
		case int, int64, uint64:
			s = fmt.Sprint(x)
		default:
			p.at(it.line, "endpoint %q: proto entry must be a protocol name or number, not %s", ep, describe(it.v))
			continue
		}
		n, err := ParseProto(s)
		if err != nil {
			p.at(it.line, "endpoint %q: %v", ep, err)
			continue
		}
		if line, dup := first[n]; dup {
			p.at(it.line, "endpoint %q: duplicate proto %s (first at line %d)", ep, s, line)
			continue
		}
		first[n] = it.line
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func (p *fileParser) ports(ep string, v val) []PortRange {
	if v.empty() {
		p.at(v.line, "endpoint %q: empty ports list: remove ports to cover every port, or name one (80, \"8000-8100\")", ep)
		return nil
	}
	out := []PortRange{}
	first := make(map[PortRange]int)
	for _, it := range v.list() {
		var r PortRange
		var err error
		switch x := it.v.(type) {
		case string:
			r, err = ParsePort(x)
		case int, int64, uint64:
			r, err = ParsePort(fmt.Sprint(x))
		default:
			err = fmt.Errorf("port entry must be a number or a range like \"8000-8100\", not %s", describe(it.v))
		}
		if err != nil {
			p.at(it.line, "endpoint %q: %v", ep, err)
			continue
		}
		if line, dup := first[r]; dup {
			p.at(it.line, "endpoint %q: duplicate port %s (first at line %d)", ep, r, line)
			continue
		}
		first[r] = it.line
		out = append(out, r)
	}
	return mergePorts(out)
}

// narrowing checks what proto and ports say together: ports are only
// for protocols that have them.
func (p *fileParser) narrowing(ep *Endpoint, portsLine int) {
	if ep.Ports() == nil || ep.Protos() == nil {
		return
	}
	for _, n := range ep.Protos() {
		if !HasPorts(n) {
			p.at(portsLine, "endpoint %q: ports on protocol %s, which has no ports (only tcp, udp, udplite and sctp do); put it in an endpoint of its own", ep.Name, ProtoName(n))
		}
	}
}
