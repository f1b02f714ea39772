// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// FuzzParse runs random and mutated frames through the loaded program with
// BPF_PROG_TEST_RUN, on an Ethernet device (lo) and on an L3 device (tun0),
// and compares what it did with refParse, which states what the program
// must extract: not IP, malformed, or an IP packet with its source, every
// destination it is routed through, its protocol and ports.
//
// The policy makes every judged destination observable: addresses in the
// lower half of either family (0.0.0.0/1, ::/1) are denied to root, the
// owner of test-run packets; the rest is allowed by default. The first
// denied destination, in the order the packet visits them, is the one the
// decision event must name; when none is, the event names the first hop.
// A v4-mapped destination not judged as IPv4 lands in ::/1 instead of its
// IPv4 half, so the verdict shows that too.
//
// `go test ./bpf` runs the seeds (the frames of TestParse's tables) and
// testdata/fuzz/FuzzParse; `go test -run '^$' -fuzz '^FuzzParse$'
// -fuzztime 60000x -fuzzminimizetime 10s ./bpf` searches for more (every run
// costs a system call and a ring buffer read, so the default minute of
// minimizing each new input would stall the search).
func FuzzParse(f *testing.F) {
	testnet.RequireRoot(f)
	ns := testnet.NewNS(f, "fz")
	ns.IP(f, "tuntap", "add", "dev", "tun0", "mode", "tun")
	var loIdx, tunIdx int
	ns.MustDo(f, func() error {
		for name, idx := range map[string]*int{"lo": &loIdx, "tun0": &tunIdx} {
			ifc, err := net.InterfaceByName(name)
			if err != nil {
				return err
			}
			*idx = ifc.Index
		}
		return nil
	})
	fl := openFilter(f, ns, ModeAuto)
	events := openEvents(f, fl)
	ifaces := []string{"lo", "tun0"}
	p := compile(f, map[string]config.Action{"lo": config.Allow, "tun0": config.Allow},
		ep{"protected", ifaces, []string{fzLow4.String(), fzLow6.String()}, []string{"alice"}})
	r := &ptRunner{ns: ns, f: fl, events: events}
	r.gen = apply(f, ns, fl, p, LogAll)
	r.drain(f)

	for _, g := range [][]ptCase{ptIPv4Cases(), ptIPv6Cases(), ptVLANCases(), ptNotIPCases(),
		ptMalformedCases(), ptExtCases(), ptRoutingCases(), ptDefaultAllowCases()} {
		for _, c := range g {
			f.Add(c.frame, false)
		}
	}
	for _, c := range ptL3Cases() {
		f.Add(c.frame, true)
	}

	f.Fuzz(func(t *testing.T, frame []byte, l3 bool) {
		if len(frame) > fzMaxFrame {
			t.Skip("longer than any header chain the program follows")
		}
		ifindex, want := 0, loIdx // the test run's default device: lo
		if l3 {
			ifindex, want = tunIdx, tunIdx
		}
		r.check(t, ifindex, want, ptCase{frame: frame, want: refParse(frame, l3).want()})
	})
}

// fzMaxFrame bounds the frames tried: the longest header chain the
// program reads (Ethernet, two tags, IPv6, seven 8-byte headers, a routing
// header of 16 addresses, ports) fits, and shorter frames keep each run and
// the minimizing of what is found quick.
const fzMaxFrame = 512

var (
	fzLow4 = netip.MustParsePrefix("0.0.0.0/1")
	fzLow6 = netip.MustParsePrefix("::/1")
)

type refKind int

const (
	refRefused   refKind = iota // the test run does not run the program
	refNotIP                    // passes, counted as not IP
	refMalformed                // dropped, counted as malformed
	refIP                       // judged
)

// refPacket is what the program must extract from a frame.
type refPacket struct {
	kind         refKind
	src          [16]byte     // as the packet holds it: IPv4 in the first 4 bytes
	dsts         []netip.Addr // the destination, then every address of its source route; v4-mapped ones unmapped
	proto        uint8
	sport, dport uint16 // 0: none (not the first fragment, no ports, or cut off)
}

// want is the outcome under FuzzParse's policy.
func (p refPacket) want() ptWant {
	switch p.kind {
	case refRefused:
		return ptRefused(unix.EINVAL)
	case refNotIP:
		return ptNotIP
	case refMalformed:
		return ptMalformed
	}
	judged, rng := p.dsts[0], ""
	for _, d := range p.dsts {
		if fzLow4.Contains(d) || fzLow6.Contains(d) {
			judged = d
			rng = fzLow4.String()
			if d.Is6() {
				rng = fzLow6.String()
			}
			break
		}
	}
	// The event's addresses as the Go side decodes them from the raw
	// fields the program fills.
	raw := filterNtfEvent{Family: 6, Src: p.src}
	if judged.Is4() {
		raw.Family = 4
	}
	copy(raw.Dst[:], judged.AsSlice())
	dec := decodeEvent(&raw)
	e := ptEvent{Src: dec.Src, Dst: dec.Dst, Proto: p.proto, Sport: p.sport, Dport: p.dport, Range: rng}
	if rng != "" {
		return ptDenied(e)
	}
	return ptAllowed(e)
}

// refParse parses frame as the program must: on an Ethernet device
// (following up to two VLAN tags, refusing a third) or, l3, on a device
// without link-layer header, where the packet's protocol says what it is.
func refParse(frame []byte, l3 bool) refPacket {
	// The test run's own checks: it needs an Ethernet header's worth of
	// bytes, takes the protocol from bytes 12-13 (eth_type_trans: below
	// 0x600 they are an 802.3 length, not IP) and wants a whole IPv4 or
	// IPv6 header behind them when they say IP.
	if len(frame) < 14 {
		return refPacket{kind: refRefused}
	}
	proto := binary.BigEndian.Uint16(frame[12:])
	if proto == ethIPv4 && len(frame) < 14+20 || proto == ethIPv6 && len(frame) < 14+40 {
		return refPacket{kind: refRefused}
	}
	off := 0
	if !l3 {
		off = 14
		for i := 0; proto == eth8021Q || proto == eth8021AD; i++ {
			if i == 2 {
				return refPacket{kind: refMalformed}
			}
			off += 4
			if len(frame) < off {
				return refPacket{kind: refMalformed}
			}
			proto = binary.BigEndian.Uint16(frame[off-2:])
		}
	}
	switch proto {
	case ethIPv4:
		return refIPv4(frame[off:])
	case ethIPv6:
		return refIPv6(frame[off:])
	}
	return refPacket{kind: refNotIP}
}

// refPorts reads the ports of a protocol that has them; false when they
// are not wholly in the packet (malformed: SPEC §1 rule 2 judges by them).
func refPorts(p *refPacket, b []byte, off int) bool {
	switch p.proto {
	case unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_UDPLITE, unix.IPPROTO_SCTP:
		if off+4 > len(b) {
			return false
		}
		p.sport = binary.BigEndian.Uint16(b[off:])
		p.dport = binary.BigEndian.Uint16(b[off+2:])
	}
	return true
}

func refIPv4(b []byte) refPacket {
	malformed := refPacket{kind: refMalformed}
	if len(b) < 20 || b[0]>>4 != 4 || b[0]&0xf < 5 {
		return malformed
	}
	p := refPacket{kind: refIP, proto: b[9]}
	copy(p.src[:], b[12:16])
	p.dsts = []netip.Addr{netip.AddrFrom4([4]byte(b[16:20]))}
	hlen := int(b[0]&0xf) * 4
	if len(b) < hlen {
		return malformed // options cut off: a source route may hide there
	}
	opts, found := b[20:hlen], false
	for at := 0; at < len(opts) && opts[at] != 0; { // 0: end of options
		if opts[at] == 1 { // no-op
			at++
			continue
		}
		n := 0
		if at+1 < len(opts) {
			n = int(opts[at+1])
		}
		if n < 2 || at+n > len(opts) {
			return malformed
		}
		if typ := opts[at]; typ == 131 || typ == 137 { // LSRR, SSRR
			if n < 7 || (n-3)%4 != 0 || found {
				return malformed
			}
			found = true
			for a := at + 3; a < at+n; a += 4 {
				p.dsts = append(p.dsts, netip.AddrFrom4([4]byte(opts[a:a+4])))
			}
		}
		at += n
	}
	if b[6]&0x1f == 0 && b[7] == 0 && !refPorts(&p, b, hlen) { // the first fragment, or none
		return malformed
	}
	return p
}

func refIsExt(next uint8) bool {
	switch next {
	case nhHop, nhDstOpts, nhRouting, nhAH, nhFrag:
		return true
	}
	return false
}

func refIPv6(b []byte) refPacket {
	malformed := refPacket{kind: refMalformed}
	if len(b) < 40 || b[0]>>4 != 6 {
		return malformed
	}
	p := refPacket{kind: refIP}
	copy(p.src[:], b[8:24])
	p.dsts = []netip.Addr{netip.AddrFrom16([16]byte(b[24:40])).Unmap()}
	next, off, routed := b[6], 40, false
	for range 8 { // NTF_MAX_EXT_HDRS
		if !refIsExt(next) {
			p.proto = next
			if !refPorts(&p, b, off) {
				return malformed
			}
			return p
		}
		if off+2 > len(b) {
			return malformed
		}
		switch next {
		case nhRouting:
			if routed {
				return malformed // a second routing header
			}
			route, ok := refRoute(b, off)
			if !ok {
				return malformed
			}
			routed = len(route) > 0
			p.dsts = append(p.dsts, route...)
		case nhFrag:
			if off+4 > len(b) {
				return malformed
			}
			p.proto = b[off]
			if binary.BigEndian.Uint16(b[off+2:])&0xfff8 != 0 {
				return p // a later fragment: no transport header
			}
			next, off = b[off], off+8
			continue
		}
		n := (int(b[off+1]) + 1) * 8
		if next == nhAH {
			n = (int(b[off+1]) + 2) * 4
		}
		next, off = b[off], off+n
	}
	if refIsExt(next) {
		return malformed // a routing header may hide behind the headers followed
	}
	p.proto = next
	if !refPorts(&p, b, off) {
		return malformed
	}
	return p
}

// refRoute reads the routing header at off: the addresses the packet is
// still source routed through (none when segments left is 0), or !ok.
func refRoute(b []byte, off int) (route []netip.Addr, ok bool) {
	if off+8 > len(b) {
		return nil, false
	}
	hdrLen, typ, left := int(b[off+1]), b[off+2], int(b[off+3])
	if left == 0 {
		return nil, true
	}
	var n int
	switch typ {
	case 0: // RH0
		n = hdrLen / 2
		if hdrLen%2 != 0 || left > n {
			return nil, false
		}
	case 2: // Mobile IPv6 home address
		n = 1
		if hdrLen != 2 || left != 1 {
			return nil, false
		}
	case 4: // segment routing
		n = int(b[off+4]) + 1
		if 2*n > hdrLen || left > n {
			return nil, false
		}
	default:
		return nil, false
	}
	if n > 16 || off+8+16*n > len(b) { // NTF_MAX_ROUTE
		return nil, false
	}
	for i := range n {
		a := off + 8 + 16*i
		route = append(route, netip.AddrFrom16([16]byte(b[a:a+16])).Unmap())
	}
	return route, true
}
