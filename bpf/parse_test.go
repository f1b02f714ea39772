// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// TestParse feeds hand-made frames to the loaded program with
// BPF_PROG_TEST_RUN and checks, for each, the exact verdict, the counters it
// moved and the decision event it logged.
//
// Facts about the test run that the cases rely on (measured on 6.x):
//   - The packet's device is the loopback device of the calling thread's
//     network namespace unless the context names another ifindex, so every
//     run happens inside the test's namespace.
//   - The packet carries a dummy full socket owned by uid 0: every owned
//     verdict below is root's. The policy is made so that root's verdicts
//     differ by range: 10.0.0.0/8 and fd00:10::/32 allow root,
//     169.254.169.254/32 and fd00:ec2::254/128 allow only alice.
//   - The kernel refuses input shorter than an Ethernet header (14 bytes)
//     with EINVAL, whatever the device: the program never runs. It also
//     refuses an untagged frame whose ethertype is IPv4 (IPv6) with less
//     than 20 (40) bytes behind the Ethernet header; it does not look
//     behind VLAN tags, nor at L3 devices' packets (see ptTruncatedCases).
//   - For a context naming an L3 device (tun) the kernel still runs
//     eth_type_trans on the first 14 bytes and pushes them back, so the
//     program's data starts at byte 0 of the input: a raw IP packet,
//     whose protocol is what its bytes 12-13 say (see ptL3Src4).
func TestParse(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.NewNS(t, "p")
	// tun0 is the L3 device under test; tun1 is an interface the policy
	// does not filter. Both stay down, so no traffic of their own ever
	// reaches the program (lo is up but nothing here sends on it).
	ns.IP(t, "tuntap", "add", "dev", "tun0", "mode", "tun")
	ns.IP(t, "tuntap", "add", "dev", "tun1", "mode", "tun")
	var loIdx, tunIdx, tun1Idx int
	ns.MustDo(t, func() error {
		for name, idx := range map[string]*int{"lo": &loIdx, "tun0": &tunIdx, "tun1": &tun1Idx} {
			ifc, err := net.InterfaceByName(name)
			if err != nil {
				return err
			}
			*idx = ifc.Index
		}
		return nil
	})

	f := openFilter(t, ns, ModeAuto)
	events := openEvents(t, f)

	ifaces := []string{"lo", "tun0"}
	eps := []ep{
		{"imds", ifaces, []string{"169.254.169.254/32", "fd00:ec2::254/128"}, []string{"alice"}},
		{"internal", ifaces, []string{"10.0.0.0/8", "fd00:10::/32"}, []string{"root"}},
	}
	defaults := func(a config.Action) map[string]config.Action {
		return map[string]config.Action{"lo": a, "tun0": a}
	}
	r := &ptRunner{ns: ns, f: f, events: events}
	r.gen = apply(t, ns, f, compile(t, defaults(config.Deny), eps...), LogAll)
	mode := string(f.Mode())
	if got, want := attachedNames(f), []string{"lo/" + mode, "tun0/" + mode}; !slices.Equal(got, want) {
		t.Fatalf("attached: %v, want %v", got, want)
	}
	r.drain(t) // nothing may have been logged yet, but start clean

	groups := []struct {
		name    string
		ifindex int // 0: the loopback default of the test run
		want    int // ifindex the events must name
		cases   []ptCase
	}{
		{"ethernet/ipv4", 0, loIdx, ptIPv4Cases()},
		{"ethernet/ipv6", 0, loIdx, ptIPv6Cases()},
		{"ethernet/vlan", 0, loIdx, ptVLANCases()},
		{"ethernet/not-ip", 0, loIdx, ptNotIPCases()},
		{"ethernet/malformed", 0, loIdx, ptMalformedCases()},
		{"ethernet/ipv6-ext", 0, loIdx, ptExtCases()},
		{"ethernet/routing", 0, loIdx, ptRoutingCases()},
		{"ethernet/truncated", 0, loIdx, ptTruncatedCases()},
		{"l3", tunIdx, tunIdx, ptL3Cases()},
		{"l3/truncated", tunIdx, tunIdx, ptL3Sweeps()},
		{"ifindex", 0, 0, []ptCase{{
			name:    "interface the policy does not filter",
			ifindex: tun1Idx,
			frame:   ptEth4(ptUDP4(ptMD4)),
			want:    ptUnfiltered,
		}, {
			name:    "nonexistent ifindex is refused by the kernel",
			ifindex: 1 << 20,
			frame:   ptEth4(ptUDP4(ptMD4)),
			want:    ptRefused(unix.ENODEV),
		}, {
			name:    "ifindex 1 is the loopback default",
			ifindex: loIdx,
			frame:   ptEth4(ptUDP4(ptMD4)),
			want:    ptDenied(ev4(ptMD4, udpProto, ptSport, ptDport, ptRangeMD4)),
		}}},
	}
	for _, g := range groups {
		t.Run("deny/"+g.name, func(t *testing.T) {
			for _, c := range g.cases {
				t.Run(c.name, func(t *testing.T) { r.check(t, g.ifindex, g.want, c) })
			}
		})
	}

	// The same ranges with a default that allows: only the cases the
	// default decides change.
	r.gen = apply(t, ns, f, compile(t, defaults(config.Allow), eps...), LogAll)
	r.drain(t)
	allowGroups := []struct {
		name    string
		ifindex int
		want    int
		cases   []ptCase
	}{
		{"ethernet", 0, loIdx, ptDefaultAllowCases()},
		{"l3", tunIdx, tunIdx, []ptCase{
			{name: "raw ipv4 outside every range", frame: ptL3UDP4(ptOut4),
				want: ptAllowed(l3ev4(ptOut4, udpProto, ptSport, ptDport, ""))},
			{name: "raw ipv6 outside every range", frame: ptL3UDP6(ptOut6),
				want: ptAllowed(l3ev6(ptOut6, udpProto, ptSport, ptDport, ""))},
			{name: "raw ipv4 to metadata", frame: ptL3UDP4(ptMD4),
				want: ptDenied(l3ev4(ptMD4, udpProto, ptSport, ptDport, ptRangeMD4))},
		}},
	}
	for _, g := range allowGroups {
		t.Run("allow/"+g.name, func(t *testing.T) {
			for _, c := range g.cases {
				t.Run(c.name, func(t *testing.T) { r.check(t, g.ifindex, g.want, c) })
			}
		})
	}
}

// Verdicts as BPF_PROG_TEST_RUN reports them (the program's u32 return).
const (
	ptPass = uint32(0xffffffff) // TC_ACT_UNSPEC (-1): on to the next program
	ptDrop = uint32(2)          // TC_ACT_SHOT
)

const (
	ptSport, ptDport = 40000, 53
	tcpProto         = 6
	udpProto         = 17
	icmpProto        = 1
)

var (
	ptSrc4  = netip.MustParseAddr("198.18.0.1")
	ptSrc6  = netip.MustParseAddr("fd77::1")
	ptInt4  = netip.MustParseAddr("10.1.2.3")        // 10.0.0.0/8: root allowed
	ptInt6  = netip.MustParseAddr("fd00:10::1")      // fd00:10::/32: root allowed
	ptInt6b = netip.MustParseAddr("fd00:10::2")      // another allowed one
	ptMD4   = netip.MustParseAddr("169.254.169.254") // alice only: root denied
	ptMD6   = netip.MustParseAddr("fd00:ec2::254")   // alice only: root denied
	ptOut4  = netip.MustParseAddr("203.0.113.9")     // no range: the default decides
	ptOut6  = netip.MustParseAddr("2001:db8::9")     // no range: the default decides
	// IPv4-mapped IPv6 forms, judged as IPv4.
	ptMapMD4  = netip.MustParseAddr("::ffff:169.254.169.254")
	ptMapInt4 = netip.MustParseAddr("::ffff:10.1.2.3")
)

const (
	ptRange10   = "10.0.0.0/8"
	ptRangeInt6 = "fd00:10::/32"
	ptRangeMD4  = "169.254.169.254/32"
	ptRangeMD6  = "fd00:ec2::254/128"
)

// ptEvent is what a decision event must say. UID 0, owned, the device's
// ifindex and the live generation are checked for every event.
type ptEvent struct {
	Src, Dst     netip.Addr
	Proto        uint8
	Sport, Dport uint16
	Range        string // the deciding range; "" when the interface default decided
	Allowed      bool
}

func (e ptEvent) String() string {
	return fmt.Sprintf("{allowed=%t %s -> %s proto %d ports %d->%d range %q}",
		e.Allowed, e.Src, e.Dst, e.Proto, e.Sport, e.Dport, e.Range)
}

func ev4(dst netip.Addr, proto uint8, sport, dport uint16, rng string) ptEvent {
	return ptEvent{Src: ptSrc4, Dst: dst, Proto: proto, Sport: sport, Dport: dport, Range: rng}
}

// ev6 is an event for an IPv6 packet; an IPv4-mapped destination is judged
// and reported as IPv4 while the source stays IPv6.
func ev6(dst netip.Addr, proto uint8, sport, dport uint16, rng string) ptEvent {
	return ptEvent{Src: ptSrc6, Dst: dst.Unmap(), Proto: proto, Sport: sport, Dport: dport, Range: rng}
}

// ptWant is a complete outcome of one run.
type ptWant struct {
	err   error    // the kernel refused the input: the program did not run
	ret   uint32   // ptPass or ptDrop
	delta Counters // what the run added to the counters
	event *ptEvent // the one decision event logged; nil: none
}

func (w ptWant) String() string {
	if w.err != nil {
		return fmt.Sprintf("refused (%v), counters %+v", w.err, w.delta)
	}
	verdict := map[uint32]string{ptPass: "pass(-1)", ptDrop: "drop(2)"}[w.ret]
	if verdict == "" {
		verdict = fmt.Sprintf("ret %#x", w.ret)
	}
	ev := "no event"
	if w.event != nil {
		ev = "event " + w.event.String()
	}
	return fmt.Sprintf("%s, counters %+v, %s", verdict, w.delta, ev)
}

func ptAllowed(e ptEvent) ptWant {
	e.Allowed = true
	return ptWant{ret: ptPass, delta: Counters{Allowed: 1}, event: &e}
}

func ptDenied(e ptEvent) ptWant {
	e.Allowed = false
	return ptWant{ret: ptDrop, delta: Counters{Denied: 1}, event: &e}
}

func ptRefused(err error) ptWant { return ptWant{err: err} }

var (
	ptNotIP      = ptWant{ret: ptPass, delta: Counters{NotIP: 1}}
	ptMalformed  = ptWant{ret: ptDrop, delta: Counters{Malformed: 1}}
	ptUnfiltered = ptWant{ret: ptPass, delta: Counters{Unfiltered: 1}}
)

type ptCase struct {
	name    string
	ifindex int // overrides the group's device
	frame   []byte
	want    ptWant
}

// ptSkbCtx is struct __sk_buff up to ifindex. The kernel insists that the
// fields it does not take from the context are zero.
type ptSkbCtx struct {
	Len, PktType, Mark, QueueMapping, Protocol, VlanPresent, VlanTCI, VlanProto, Priority, IngressIfindex uint32
	Ifindex                                                                                               uint32
}

type ptRunner struct {
	ns     *testnet.NS
	f      *Filter
	events *DecisionReader
	gen    uint32
}

// run executes the program once on frame inside the namespace and collects
// what it did.
func (r *ptRunner) run(t *testing.T, ifindex int, frame []byte) (got ptWant, raw []KernelDecision) {
	t.Helper()
	before, err := r.f.Counters()
	if err != nil {
		t.Fatal(err)
	}
	r.ns.MustDo(t, func() error {
		opts := &ebpf.RunOptions{Data: frame}
		if ifindex != 0 {
			opts.Context = ptSkbCtx{Ifindex: uint32(ifindex)}
		}
		got.ret, got.err = r.f.objs.NtfEgress.Run(opts)
		return nil
	})
	after, err := r.f.Counters()
	if err != nil {
		t.Fatal(err)
	}
	got.delta = Counters{
		Allowed:    after.Allowed - before.Allowed,
		Denied:     after.Denied - before.Denied,
		NotIP:      after.NotIP - before.NotIP,
		Malformed:  after.Malformed - before.Malformed,
		Unfiltered: after.Unfiltered - before.Unfiltered,
		NoPolicy:   after.NoPolicy - before.NoPolicy,
		EventsLost: after.EventsLost - before.EventsLost,
	}
	raw = r.drain(t)
	if len(raw) > 0 {
		e := raw[0]
		pe := ptEvent{Src: e.Src, Dst: e.Dst, Proto: e.Proto, Sport: e.Sport, Dport: e.Dport, Allowed: e.Allowed}
		if rule, ok := r.f.Rule(e.Generation, e.Rule); ok {
			pe.Range = rule.Range.String()
		} else if e.Rule != 0 {
			pe.Range = fmt.Sprintf("unknown rule %d", e.Rule)
		}
		got.event = &pe
	}
	return got, raw
}

// drain returns every event logged so far. The test run is synchronous, so
// an event of the run is in the ring once Run has returned.
func (r *ptRunner) drain(t testing.TB) []KernelDecision {
	t.Helper()
	var out []KernelDecision
	r.events.SetDeadline(time.Now())
	for {
		e, err := r.events.Read()
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read event: %v", err)
			}
			return out
		}
		out = append(out, e)
	}
}

func (r *ptRunner) check(t *testing.T, ifindex, wantIfindex int, c ptCase) {
	t.Helper()
	if c.ifindex != 0 {
		ifindex, wantIfindex = c.ifindex, c.ifindex
	}
	got, raw := r.run(t, ifindex, c.frame)
	for _, e := range raw {
		if e.UID != 0 || e.Unowned || e.Ifindex != wantIfindex || e.Generation != r.gen {
			t.Errorf("event uid=%d unowned=%t ifindex=%d generation=%d, want uid=0 owned ifindex=%d generation=%d",
				e.UID, e.Unowned, e.Ifindex, e.Generation, wantIfindex, r.gen)
		}
	}
	if len(raw) > 1 {
		t.Errorf("%d events for one packet", len(raw))
	}
	if ptMatch(got, c.want) && len(raw) <= 1 {
		return
	}
	t.Errorf("frame (%d bytes) %x\n\tgot:  %s\n\twant: %s", len(c.frame), c.frame, got, c.want)
}

func ptMatch(got, want ptWant) bool {
	if want.err != nil || got.err != nil {
		return want.err != nil && errors.Is(got.err, want.err) && got.delta == (Counters{}) && got.event == nil
	}
	if got.ret != want.ret || got.delta != want.delta {
		return false
	}
	if want.event == nil || got.event == nil {
		return want.event == nil && got.event == nil
	}
	return *got.event == *want.event
}

// --- frames ---------------------------------------------------------------

func ptEth4(pkt []byte) []byte { return cat(eth(ethIPv4), pkt) }
func ptEth6(pkt []byte) []byte { return cat(eth(ethIPv6), pkt) }

func ptPayload() []byte { return udp(ptSport, ptDport, []byte("ping")) }

func ptUDP4(dst netip.Addr) []byte { return ipv4(ptSrc4, dst, udpProto, ptPayload()) }
func ptUDP6(dst netip.Addr) []byte { return ipv6(ptSrc6, dst, udpProto, ptPayload()) }

// ptTCP is a bare TCP header (SYN).
func ptTCP(sport, dport uint16) []byte {
	h := cat(be16(sport), be16(dport), make([]byte, 16))
	h[12] = 5 << 4
	h[13] = 0x02
	return h
}

// ptIPv4Opts puts options into a packet made by ipv4 and sets IHL and the
// total length (the checksum is left stale: the program does not read it).
func ptIPv4Opts(pkt, opts []byte) []byte {
	if len(opts)%4 != 0 {
		panic("IPv4 options must fill whole words")
	}
	out := cat(pkt[:20], opts, pkt[20:])
	out[0] = 0x40 | byte(5+len(opts)/4)
	binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
	return out
}

// ptSourceRoute is an IPv4 loose (0x83) or strict (0x89) source route option
// after one NOP, route data as a sender's stack writes it: the final
// destination last.
func ptSourceRoute(typ byte, route ...netip.Addr) []byte {
	o := []byte{1, typ, byte(3 + 4*len(route)), 4}
	for _, a := range route {
		b := a.As4()
		o = append(o, b[:]...)
	}
	return o
}

// ptRepeat is n copies of a.
func ptRepeat(a netip.Addr, n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = a
	}
	return out
}

// ptSetByte returns b with b[i] = v.
func ptSetByte(b []byte, i int, v byte) []byte {
	out := bytes.Clone(b)
	out[i] = v
	return out
}

// ptFrag4 sets an IPv4 packet's fragment offset (8-byte units) and MF.
func ptFrag4(pkt []byte, offset uint16, more bool) []byte {
	out := bytes.Clone(pkt)
	v := offset & 0x1fff
	if more {
		v |= 0x2000
	}
	binary.BigEndian.PutUint16(out[6:], v)
	return out
}

// ptVersion overwrites the first byte of an IP packet.
func ptVersion(pkt []byte, b byte) []byte {
	out := bytes.Clone(pkt)
	out[0] = b
	return out
}

// ptAH is an authentication header with a 12-byte ICV (24 bytes: its
// length field counts 4-byte units minus 2).
func ptAH(next byte) []byte {
	return cat([]byte{next, 4, 0, 0}, []byte{0, 0, 1, 0}, []byte{0, 0, 0, 1}, make([]byte, 12))
}

// ptRH is a routing header of any type carrying addresses (RH0: the route,
// final destination last; type 2: the home address).
func ptRH(typ, next, segsLeft byte, addrs ...netip.Addr) []byte {
	h := []byte{next, byte(2 * len(addrs)), typ, segsLeft, 0, 0, 0, 0}
	for _, a := range addrs {
		b := a.As16()
		h = append(h, b[:]...)
	}
	return h
}

// ptDstOpts chains n destination options headers; the last one's next
// header is last. The header before the chain must say 60.
func ptDstOpts(n int, last byte) []byte {
	var out []byte
	for i := range n {
		next := byte(unix.IPPROTO_DSTOPTS)
		if i == n-1 {
			next = last
		}
		out = append(out, ext(next)...)
	}
	return out
}

const (
	nhHop     = unix.IPPROTO_HOPOPTS
	nhRouting = unix.IPPROTO_ROUTING
	nhFrag    = unix.IPPROTO_FRAGMENT
	nhDstOpts = unix.IPPROTO_DSTOPTS
	nhAH      = unix.IPPROTO_AH
)

// --- cases ----------------------------------------------------------------

func ptIPv4Cases() []ptCase {
	portsLike := func(proto byte) []byte { return ipv4(ptSrc4, ptInt4, proto, ptPayload()) }
	return []ptCase{
		{name: "udp to 10/8: root allowed", frame: ptEth4(ptUDP4(ptInt4)),
			want: ptAllowed(ev4(ptInt4, udpProto, ptSport, ptDport, ptRange10))},
		{name: "udp to metadata: alice only, root denied", frame: ptEth4(ptUDP4(ptMD4)),
			want: ptDenied(ev4(ptMD4, udpProto, ptSport, ptDport, ptRangeMD4))},
		{name: "udp outside every range: default deny", frame: ptEth4(ptUDP4(ptOut4)),
			want: ptDenied(ev4(ptOut4, udpProto, ptSport, ptDport, ""))},
		{name: "tcp ports", frame: ptEth4(ipv4(ptSrc4, ptInt4, tcpProto, ptTCP(41000, 443))),
			want: ptAllowed(ev4(ptInt4, tcpProto, 41000, 443, ptRange10))},
		{name: "sctp ports", frame: ptEth4(portsLike(unix.IPPROTO_SCTP)),
			want: ptAllowed(ev4(ptInt4, unix.IPPROTO_SCTP, ptSport, ptDport, ptRange10))},
		{name: "udplite ports", frame: ptEth4(portsLike(unix.IPPROTO_UDPLITE)),
			want: ptAllowed(ev4(ptInt4, unix.IPPROTO_UDPLITE, ptSport, ptDport, ptRange10))},
		{name: "icmp has no ports", frame: ptEth4(ipv4(ptSrc4, ptMD4, icmpProto, []byte{8, 0, 0xf7, 0xff, 0, 0, 0, 0})),
			want: ptDenied(ev4(ptMD4, icmpProto, 0, 0, ptRangeMD4))},
		{name: "options IHL 6: ports after them", frame: ptEth4(ptIPv4Opts(ptUDP4(ptInt4), bytes.Repeat([]byte{1}, 4))),
			want: ptAllowed(ev4(ptInt4, udpProto, ptSport, ptDport, ptRange10))},
		{name: "options IHL 10: ports after them", frame: ptEth4(ptIPv4Opts(ptUDP4(ptMD4), bytes.Repeat([]byte{1}, 20))),
			want: ptDenied(ev4(ptMD4, udpProto, ptSport, ptDport, ptRangeMD4))},
		{name: "options IHL 15: ports after them", frame: ptEth4(ptIPv4Opts(ptUDP4(ptInt4), bytes.Repeat([]byte{1}, 40))),
			want: ptAllowed(ev4(ptInt4, udpProto, ptSport, ptDport, ptRange10))},
		{
			// The header says 60 bytes but the frame ends first: the
			// options (where a source route may sit) cannot be read.
			name:  "IHL 15 without the options: malformed",
			frame: ptEth4(ptVersion(ptUDP4(ptInt4), 0x4f)),
			want:  ptMalformed,
		},
		{name: "first fragment (MF): ports read", frame: ptEth4(ptFrag4(ptUDP4(ptInt4), 0, true)),
			want: ptAllowed(ev4(ptInt4, udpProto, ptSport, ptDport, ptRange10))},
		{name: "later fragment to 10/8: no ports, judged by dst", frame: ptEth4(ptFrag4(ptUDP4(ptInt4), 185, false)),
			want: ptAllowed(ev4(ptInt4, udpProto, 0, 0, ptRange10))},
		{name: "later fragment to metadata: denied", frame: ptEth4(ptFrag4(ptUDP4(ptMD4), 1, true)),
			want: ptDenied(ev4(ptMD4, udpProto, 0, 0, ptRangeMD4))},
		{
			// An IPv4 source route carries the final destination in an
			// option while the header's destination is the first hop: both
			// are judged, or a first hop the user may reach would launder
			// access to a protected final destination. This is the header
			// Linux writes for a UDP socket with IP_OPTIONS LSRR
			// [10.1.2.3] sending to 169.254.169.254 (needs CAP_NET_RAW:
			// root, whom the policy here denies the metadata range).
			name:  "loose source route via 10/8 to metadata",
			frame: ptEth4(ptIPv4Opts(ptUDP4(ptInt4), ptSourceRoute(0x83, ptMD4))),
			want:  ptDenied(ev4(ptMD4, udpProto, ptSport, ptDport, ptRangeMD4)),
		},
		{
			name:  "strict source route via 10/8 to metadata",
			frame: ptEth4(ptIPv4Opts(ptUDP4(ptInt4), ptSourceRoute(0x89, ptInt4, ptMD4))),
			want:  ptDenied(ev4(ptMD4, udpProto, ptSport, ptDport, ptRangeMD4)),
		},
		{
			name:  "source route to 10/8 via 10/8: allowed",
			frame: ptEth4(ptIPv4Opts(ptUDP4(ptInt4), ptSourceRoute(0x83, ptInt4))),
			want:  ptAllowed(ev4(ptInt4, udpProto, ptSport, ptDport, ptRange10)),
		},
		{
			name:  "loose source route with metadata in the middle: denied",
			frame: ptEth4(ptIPv4Opts(ptUDP4(ptInt4), ptSourceRoute(0x83, ptInt4, ptMD4, ptInt4))),
			want:  ptDenied(ev4(ptMD4, udpProto, ptSport, ptDport, ptRangeMD4)),
		},
		{
			name:  "strict source route of 9 addresses (all there is room for), metadata first: denied",
			frame: ptEth4(ptIPv4Opts(ptUDP4(ptInt4), ptSourceRoute(0x89, append([]netip.Addr{ptMD4}, ptRepeat(ptInt4, 8)...)...))),
			want:  ptDenied(ev4(ptMD4, udpProto, ptSport, ptDport, ptRangeMD4)),
		},
		{
			name:  "strict source route of 9 addresses, all allowed: allowed",
			frame: ptEth4(ptIPv4Opts(ptUDP4(ptInt4), ptSourceRoute(0x89, ptRepeat(ptInt4, 9)...))),
			want:  ptAllowed(ev4(ptInt4, udpProto, ptSport, ptDport, ptRange10)),
		},
		{
			// A route length that is not whole addresses cannot be read.
			name:  "source route length not whole addresses: malformed",
			frame: ptEth4(ptIPv4Opts(ptUDP4(ptInt4), []byte{1, 0x83, 9, 4, 10, 1, 2, 3, 1, 1, 0, 0})),
			want:  ptMalformed,
		},
		{
			name:  "two source routes: malformed",
			frame: ptEth4(ptIPv4Opts(ptUDP4(ptInt4), cat(ptSourceRoute(0x83, ptInt4), ptSourceRoute(0x89, ptInt4)))),
			want:  ptMalformed,
		},
		{
			name:  "option length past the options: malformed",
			frame: ptEth4(ptIPv4Opts(ptUDP4(ptInt4), []byte{0x83, 12, 4, 0})),
			want:  ptMalformed,
		},
	}
}

func ptIPv6Cases() []ptCase {
	return []ptCase{
		{name: "udp to fd00:10::/32: root allowed", frame: ptEth6(ptUDP6(ptInt6)),
			want: ptAllowed(ev6(ptInt6, udpProto, ptSport, ptDport, ptRangeInt6))},
		{name: "udp to metadata: alice only, root denied", frame: ptEth6(ptUDP6(ptMD6)),
			want: ptDenied(ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6))},
		{name: "udp outside every range: default deny", frame: ptEth6(ptUDP6(ptOut6)),
			want: ptDenied(ev6(ptOut6, udpProto, ptSport, ptDport, ""))},
		{name: "tcp ports", frame: ptEth6(ipv6(ptSrc6, ptInt6, tcpProto, ptTCP(41000, 443))),
			want: ptAllowed(ev6(ptInt6, tcpProto, 41000, 443, ptRangeInt6))},
		{name: "icmpv6 has no ports", frame: ptEth6(ipv6(ptSrc6, ptMD6, unix.IPPROTO_ICMPV6, []byte{128, 0, 0, 0, 0, 1, 0, 1})),
			want: ptDenied(ev6(ptMD6, unix.IPPROTO_ICMPV6, 0, 0, ptRangeMD6))},
		{name: "v4-mapped metadata is judged as IPv4", frame: ptEth6(ptUDP6(ptMapMD4)),
			want: ptDenied(ev6(ptMapMD4, udpProto, ptSport, ptDport, ptRangeMD4))},
		{name: "v4-mapped 10/8 is judged as IPv4: root allowed", frame: ptEth6(ptUDP6(ptMapInt4)),
			want: ptAllowed(ev6(ptMapInt4, udpProto, ptSport, ptDport, ptRange10))},
		{
			// Only ::ffff:0:0/96 is unmapped; the deprecated IPv4-compatible
			// form is an IPv6 address like any other.
			name:  "v4-compatible ::a.b.c.d stays IPv6",
			frame: ptEth6(ptUDP6(netip.MustParseAddr("::169.254.169.254"))),
			want:  ptDenied(ev6(netip.MustParseAddr("::169.254.169.254"), udpProto, ptSport, ptDport, "")),
		},
		{name: "no next header", frame: ptEth6(ipv6(ptSrc6, ptInt6, unix.IPPROTO_NONE, nil)),
			want: ptAllowed(ev6(ptInt6, unix.IPPROTO_NONE, 0, 0, ptRangeInt6))},
		{name: "esp is not followed: judged by dst", frame: ptEth6(ipv6(ptSrc6, ptMD6, unix.IPPROTO_ESP, ptPayload())),
			want: ptDenied(ev6(ptMD6, unix.IPPROTO_ESP, 0, 0, ptRangeMD6))},
	}
}

func ptVLANCases() []ptCase {
	q := func(vid uint16) [2]uint16 { return [2]uint16{eth8021Q, vid} }
	ad := func(vid uint16) [2]uint16 { return [2]uint16{eth8021AD, vid} }
	return []ptCase{
		{name: "802.1Q ipv4 to metadata", frame: cat(eth(ethIPv4, q(100)), ptUDP4(ptMD4)),
			want: ptDenied(ev4(ptMD4, udpProto, ptSport, ptDport, ptRangeMD4))},
		{name: "802.1Q ipv4 to 10/8", frame: cat(eth(ethIPv4, q(100)), ptUDP4(ptInt4)),
			want: ptAllowed(ev4(ptInt4, udpProto, ptSport, ptDport, ptRange10))},
		{name: "802.1Q ipv6 to metadata", frame: cat(eth(ethIPv6, q(100)), ptUDP6(ptMD6)),
			want: ptDenied(ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6))},
		{name: "QinQ (802.1ad+802.1Q) ipv4 to metadata", frame: cat(eth(ethIPv4, ad(200), q(100)), ptUDP4(ptMD4)),
			want: ptDenied(ev4(ptMD4, udpProto, ptSport, ptDport, ptRangeMD4))},
		{name: "QinQ (802.1ad+802.1Q) ipv6 to fd00:10::/32", frame: cat(eth(ethIPv6, ad(200), q(100)), ptUDP6(ptInt6)),
			want: ptAllowed(ev6(ptInt6, udpProto, ptSport, ptDport, ptRangeInt6))},
		{name: "QinQ (802.1ad+802.1Q) ipv6 to metadata", frame: cat(eth(ethIPv6, ad(200), q(100)), ptUDP6(ptMD6)),
			want: ptDenied(ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6))},
		{name: "802.1Q outer, 802.1ad inner: followed too", frame: cat(eth(ethIPv4, q(100), ad(200)), ptUDP4(ptMD4)),
			want: ptDenied(ev4(ptMD4, udpProto, ptSport, ptDport, ptRangeMD4))},
		{name: "802.1Q arp is not IP", frame: cat(eth(ethARP, q(100)), ptARP()), want: ptNotIP},
		{
			// Two in-frame tags are followed; a third would hide an IP
			// packet from the filter (frames built with AF_PACKET, or four
			// stacked VLAN devices), so it is refused, not passed as non-IP.
			name:  "three tags ipv4 to metadata: refused as malformed",
			frame: cat(eth(ethIPv4, ad(300), q(200), q(100)), ptUDP4(ptMD4)),
			want:  ptMalformed,
		},
		{name: "802.1Q TPID with the tag cut off: malformed", frame: eth(eth8021Q), want: ptMalformed},
		{name: "802.1Q tag with half the tag: malformed", frame: cat(eth(eth8021Q), []byte{0, 100, 0x08}), want: ptMalformed},
		{name: "802.1Q ipv4 with no IP header: malformed", frame: eth(ethIPv4, q(100)), want: ptMalformed},
	}
}

// ptARP is an ARP request for 198.18.0.2.
func ptARP() []byte {
	return cat(be16(1), be16(ethIPv4), []byte{6, 4}, be16(1), clientMAC, ptSrc4.AsSlice(),
		make([]byte, 6), netip.MustParseAddr("198.18.0.2").AsSlice())
}

func ptNotIPCases() []ptCase {
	return []ptCase{
		{name: "arp", frame: cat(eth(ethARP), ptARP()), want: ptNotIP},
		{name: "lldp", frame: cat(eth(0x88cc), []byte{0x02, 0x07, 0x04}, clientMAC, []byte{0, 0}), want: ptNotIP},
		{name: "802.3 length field with LLC", frame: cat(eth(0x0026), []byte{0x42, 0x42, 0x03}, make([]byte, 35)), want: ptNotIP},
		{
			// Not parsed by design: what an MPLS label stack or a PPPoE
			// session carries is not looked at (see the report).
			name:  "mpls carrying ipv4 to metadata: not IP",
			frame: cat(eth(0x8847), []byte{0, 0x01, 0x01, 0x40}, ptUDP4(ptMD4)),
			want:  ptNotIP,
		},
		{
			name:  "pppoe session carrying ipv4 to metadata: not IP",
			frame: cat(eth(0x8864), []byte{0x11, 0, 0, 1}, be16(uint16(2+len(ptUDP4(ptMD4)))), be16(0x0021), ptUDP4(ptMD4)),
			want:  ptNotIP,
		},
		{name: "ethernet header only, ethertype arp", frame: eth(ethARP), want: ptNotIP},
	}
}

func ptMalformedCases() []ptCase {
	long4 := ipv4(ptSrc4, ptMD4, udpProto, udp(ptSport, ptDport, make([]byte, 32))) // >= 40 bytes
	return []ptCase{
		{name: "ethertype ipv4, version 6", frame: ptEth4(ptUDP6(ptMD6)), want: ptMalformed},
		{name: "ethertype ipv4, version 0", frame: ptEth4(ptVersion(ptUDP4(ptInt4), 0x05)), want: ptMalformed},
		{name: "ethertype ipv4, IHL 4", frame: ptEth4(ptVersion(ptUDP4(ptInt4), 0x44)), want: ptMalformed},
		{name: "ethertype ipv4, IHL 0", frame: ptEth4(ptVersion(ptUDP4(ptInt4), 0x40)), want: ptMalformed},
		{name: "ethertype ipv6, version 4", frame: ptEth6(long4), want: ptMalformed},
		{name: "ethertype ipv6, version 0", frame: ptEth6(ptVersion(ptUDP6(ptInt6), 0x00)), want: ptMalformed},
		// The kernel's test run refuses these untagged (see ptTruncatedCases).
		{name: "ethertype ipv4, header cut at 19 bytes: refused by the kernel", frame: ptEth4(ptUDP4(ptInt4)[:19]), want: ptRefused(unix.EINVAL)},
		{name: "ethertype ipv6, header cut at 39 bytes: refused by the kernel", frame: ptEth6(ptUDP6(ptInt6)[:39]), want: ptRefused(unix.EINVAL)},
		{name: "802.1Q ipv4, header cut at 19 bytes", frame: cat(eth(ethIPv4, [2]uint16{eth8021Q, 1}), ptUDP4(ptInt4)[:19]), want: ptMalformed},
		{name: "802.1Q ipv6, header cut at 39 bytes", frame: cat(eth(ethIPv6, [2]uint16{eth8021Q, 1}), ptUDP6(ptInt6)[:39]), want: ptMalformed},
	}
}

func ptExtCases() []ptCase {
	udpTo := func(dst netip.Addr, first byte, hdrs ...[]byte) []byte {
		return ptEth6(ipv6(ptSrc6, dst, first, cat(cat(hdrs...), ptPayload())))
	}
	// An extension header that claims far more than the frame holds.
	huge := []byte{udpProto, 255, 1, 4, 0, 0, 0, 0}
	return []ptCase{
		{name: "hop-by-hop then udp: ports read", frame: udpTo(ptInt6, nhHop, ext(udpProto)),
			want: ptAllowed(ev6(ptInt6, udpProto, ptSport, ptDport, ptRangeInt6))},
		{name: "hop-by-hop then udp to metadata", frame: udpTo(ptMD6, nhHop, ext(udpProto)),
			want: ptDenied(ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6))},
		{name: "dest-opts, first fragment: ports read",
			frame: udpTo(ptInt6, nhDstOpts, ext(nhFrag), fragHdr(udpProto, 0, true)),
			want:  ptAllowed(ev6(ptInt6, udpProto, ptSport, ptDport, ptRangeInt6))},
		{name: "atomic fragment: ports read",
			frame: udpTo(ptMD6, nhFrag, fragHdr(udpProto, 0, false)),
			want:  ptDenied(ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6))},
		{name: "dest-opts, later fragment to fd00:10::/32: no ports, judged by dst",
			frame: udpTo(ptInt6, nhDstOpts, ext(nhFrag), fragHdr(udpProto, 100, false)),
			want:  ptAllowed(ev6(ptInt6, udpProto, 0, 0, ptRangeInt6))},
		{name: "dest-opts, later fragment to metadata: denied",
			frame: udpTo(ptMD6, nhDstOpts, ext(nhFrag), fragHdr(udpProto, 1, true)),
			want:  ptDenied(ev6(ptMD6, udpProto, 0, 0, ptRangeMD6))},
		{name: "7 extension headers: ports still read", frame: udpTo(ptInt6, nhDstOpts, ptDstOpts(7, udpProto)),
			want: ptAllowed(ev6(ptInt6, udpProto, ptSport, ptDport, ptRangeInt6))},
		// The transport behind the last header followed is read too: its
		// port decides where an endpoint narrows ports.
		{name: "8 extension headers: ports read", frame: udpTo(ptInt6, nhDstOpts, ptDstOpts(8, udpProto)),
			want: ptAllowed(ev6(ptInt6, udpProto, ptSport, ptDport, ptRangeInt6))},
		{name: "8 extension headers to metadata: denied", frame: udpTo(ptMD6, nhDstOpts, ptDstOpts(8, udpProto)),
			want: ptDenied(ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6))},
		// Beyond the headers followed, a routing header could hide the
		// final destination: refused whatever the first destination.
		{name: "12 extension headers to metadata: malformed", frame: udpTo(ptMD6, nhDstOpts, ptDstOpts(12, udpProto)),
			want: ptMalformed},
		{name: "12 extension headers to fd00:10::/32: malformed", frame: udpTo(ptInt6, nhDstOpts, ptDstOpts(12, udpProto)),
			want: ptMalformed},
		{name: "AH then udp: ports read", frame: udpTo(ptInt6, nhAH, ptAH(udpProto)),
			want: ptAllowed(ev6(ptInt6, udpProto, ptSport, ptDport, ptRangeInt6))},
		{name: "hop-by-hop, AH, dest-opts then udp to metadata", frame: udpTo(ptMD6, nhHop, ext(nhAH), ptAH(nhDstOpts), ext(udpProto)),
			want: ptDenied(ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6))},
		{name: "hop-by-hop announced, frame ends: malformed", frame: ptEth6(ipv6(ptSrc6, ptInt6, nhHop, nil)), want: ptMalformed},
		{name: "hop-by-hop cut after one byte: malformed", frame: ptEth6(ipv6(ptSrc6, ptInt6, nhHop, []byte{udpProto})), want: ptMalformed},
		{name: "fragment header cut: malformed", frame: ptEth6(ipv6(ptSrc6, ptInt6, nhFrag, []byte{udpProto, 0, 0})), want: ptMalformed},
		// The UDP ports the header claims to be followed by are not in
		// the packet: what it would be judged as cannot be known.
		{name: "header longer than the frame: malformed", frame: udpTo(ptInt6, nhHop, huge),
			want: ptMalformed},
		{name: "header longer than the frame, to metadata: malformed", frame: udpTo(ptMD6, nhHop, huge),
			want: ptMalformed},
	}
}

func ptRoutingCases() []ptCase {
	// routed: first hop dst, routing headers, then UDP.
	routed := func(dst netip.Addr, hdrs ...[]byte) []byte {
		return ptEth6(ipv6(ptSrc6, dst, nhRouting, cat(cat(hdrs...), ptPayload())))
	}
	return []ptCase{
		{name: "SRH left 1: first hop allowed, final metadata: denied",
			frame: routed(ptInt6, srh(udpProto, 1, ptMD6, ptInt6)),
			want:  ptDenied(ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6))},
		{name: "SRH left 0: judged by dst only",
			frame: routed(ptInt6, srh(udpProto, 0, ptMD6, ptInt6)),
			want:  ptAllowed(ev6(ptInt6, udpProto, ptSport, ptDport, ptRangeInt6))},
		{name: "SRH left 1: first hop and final allowed",
			frame: routed(ptInt6, srh(udpProto, 1, ptInt6b, ptInt6)),
			want:  ptAllowed(ev6(ptInt6, udpProto, ptSport, ptDport, ptRangeInt6))},
		{name: "SRH left 1: first hop metadata denied, final allowed",
			frame: routed(ptMD6, srh(udpProto, 1, ptInt6, ptMD6)),
			want:  ptDenied(ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6))},
		{name: "SRH left 1: final outside every range, default deny",
			frame: routed(ptInt6, srh(udpProto, 1, ptOut6, ptInt6)),
			want:  ptDenied(ev6(ptOut6, udpProto, ptSport, ptDport, ""))},
		{name: "SRH left 1: final v4-mapped metadata judged as IPv4",
			frame: routed(ptInt6, srh(udpProto, 1, ptMapMD4, ptInt6)),
			want:  ptDenied(ev6(ptMapMD4, udpProto, ptSport, ptDport, ptRangeMD4))},
		{
			// Every address the packet is routed through is judged (SPEC
			// §1 rule 6); the event names the one that was denied.
			name:  "SRH left 2: metadata as a middle segment: denied",
			frame: routed(ptInt6, srh(udpProto, 2, ptInt6b, ptMD6, ptInt6)),
			want:  ptDenied(ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6)),
		},
		{name: "SRH left 3: v4-mapped metadata in the middle judged as IPv4: denied",
			frame: routed(ptInt6, srh(udpProto, 3, ptInt6b, ptInt6b, ptMapMD4, ptInt6)),
			want:  ptDenied(ev6(ptMapMD4, udpProto, ptSport, ptDport, ptRangeMD4))},
		{name: "SRH left 4: every segment allowed: allowed, reported by first hop",
			frame: routed(ptInt6, srh(udpProto, 4, ptInt6b, ptInt6, ptMapInt4, ptInt6b, ptInt6)),
			want:  ptAllowed(ev6(ptInt6, udpProto, ptSport, ptDport, ptRangeInt6))},
		{name: "SRH with 16 segments (the bound), metadata last in the list: denied",
			frame: routed(ptInt6, srh(udpProto, 15, append(ptRepeat(ptInt6b, 15), ptMD6)...)),
			want:  ptDenied(ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6))},
		{name: "SRH with 16 segments (the bound), all allowed: allowed",
			frame: routed(ptInt6, srh(udpProto, 15, ptRepeat(ptInt6b, 16)...)),
			want:  ptAllowed(ev6(ptInt6, udpProto, ptSport, ptDport, ptRangeInt6))},
		{name: "SRH with 17 segments, over the bound: malformed",
			frame: routed(ptInt6, srh(udpProto, 16, ptRepeat(ptInt6b, 17)...)),
			want:  ptMalformed},
		{name: "SRH segments left beyond the list: malformed",
			frame: routed(ptInt6, srh(udpProto, 3, ptInt6b, ptInt6)),
			want:  ptMalformed},
		{name: "SRH last entry beyond its length: malformed",
			frame: routed(ptInt6, ptSetByte(srh(udpProto, 1, ptInt6b, ptInt6), 4, 2)),
			want:  ptMalformed},
		{name: "SRH left 1 with no segments (hdr_ext_len 0): malformed",
			frame: routed(ptInt6, []byte{udpProto, 0, 4, 1, 0, 0, 0, 0}),
			want:  ptMalformed},
		{name: "SRH left 1, final segment cut off: malformed",
			frame: ptEth6(ipv6(ptSrc6, ptInt6, nhRouting, srh(udpProto, 1, ptMD6, ptInt6)[:20])),
			want:  ptMalformed},
		{name: "SRH cut inside its fixed part: malformed",
			frame: ptEth6(ipv6(ptSrc6, ptInt6, nhRouting, srh(udpProto, 1, ptMD6, ptInt6)[:3])),
			want:  ptMalformed},
		{name: "RH0 left 2: last address metadata: denied",
			frame: routed(ptInt6, ptRH(0, udpProto, 2, ptInt6b, ptMD6)),
			want:  ptDenied(ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6))},
		{name: "RH0 left 2: first address metadata, last allowed: denied",
			frame: routed(ptInt6, ptRH(0, udpProto, 2, ptMD6, ptInt6b)),
			want:  ptDenied(ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6))},
		{name: "RH0 left 3: metadata in the middle: denied",
			frame: routed(ptInt6, ptRH(0, udpProto, 3, ptInt6b, ptMD6, ptInt6b)),
			want:  ptDenied(ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6))},
		{name: "RH0 left 1: every address allowed: allowed",
			frame: routed(ptInt6, ptRH(0, udpProto, 1, ptInt6b, ptInt6b, ptInt6)),
			want:  ptAllowed(ev6(ptInt6, udpProto, ptSport, ptDport, ptRangeInt6))},
		{name: "RH0 with 17 addresses, over the bound: malformed",
			frame: routed(ptInt6, ptRH(0, udpProto, 17, ptRepeat(ptInt6b, 17)...)),
			want:  ptMalformed},
		{name: "RH0 left 3 with 2 addresses: malformed",
			frame: routed(ptInt6, ptRH(0, udpProto, 3, ptInt6b, ptInt6)),
			want:  ptMalformed},
		{name: "RH0 with the last address cut off: malformed",
			frame: ptEth6(ipv6(ptSrc6, ptInt6, nhRouting, ptRH(0, udpProto, 2, ptInt6b, ptInt6b)[:8+16+8])),
			want:  ptMalformed},
		{name: "type 2 (mobile IPv6) left 1: home address metadata: denied",
			frame: routed(ptInt6, ptRH(2, udpProto, 1, ptMD6)),
			want:  ptDenied(ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6))},
		{name: "type 2 (mobile IPv6) with two addresses: malformed",
			frame: routed(ptInt6, ptRH(2, udpProto, 1, ptInt6b, ptInt6b)),
			want:  ptMalformed},
		{name: "type 2 (mobile IPv6) left 0: judged by dst only",
			frame: routed(ptInt6, ptRH(2, udpProto, 0, ptMD6)),
			want:  ptAllowed(ev6(ptInt6, udpProto, ptSport, ptDport, ptRangeInt6))},
		{name: "unknown type 3 left 1: malformed",
			frame: routed(ptInt6, ptRH(3, udpProto, 1, ptInt6b)),
			want:  ptMalformed},
		{name: "unknown type 3 left 0: judged by dst",
			frame: routed(ptInt6, ptRH(3, udpProto, 0, ptMD6)),
			want:  ptAllowed(ev6(ptInt6, udpProto, ptSport, ptDport, ptRangeInt6))},
		{name: "two routing headers both source routing: malformed",
			frame: routed(ptInt6, srh(nhRouting, 1, ptInt6b, ptInt6), srh(udpProto, 1, ptInt6b, ptInt6)),
			want:  ptMalformed},
		{name: "two routing headers, the second done (left 0): still malformed",
			frame: routed(ptInt6, srh(nhRouting, 1, ptInt6b, ptInt6), srh(udpProto, 0, ptInt6b, ptInt6)),
			want:  ptMalformed},
		{name: "two routing headers, the first done (left 0), the second to metadata: denied",
			frame: routed(ptInt6, srh(nhRouting, 0, ptInt6b, ptInt6), srh(udpProto, 1, ptMD6, ptInt6)),
			want:  ptDenied(ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6))},
		{name: "hop-by-hop then SRH to metadata: denied",
			frame: ptEth6(ipv6(ptSrc6, ptInt6, nhHop, cat(ext(nhRouting), srh(udpProto, 1, ptMD6, ptInt6), ptPayload()))),
			want:  ptDenied(ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6))},
		// The SRH is the 8th header: it is followed, and so is the UDP
		// header after it.
		{name: "7 dest-opts then SRH to metadata: denied",
			frame: ptEth6(ipv6(ptSrc6, ptInt6, nhDstOpts, cat(ptDstOpts(7, nhRouting), srh(udpProto, 1, ptMD6, ptInt6), ptPayload()))),
			want:  ptDenied(ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6))},
		{
			// The routing header is the 9th extension header, beyond
			// those followed: its final destination cannot be read, so
			// the packet is refused rather than judged by its first hop.
			name:  "8 dest-opts then SRH to metadata: malformed",
			frame: ptEth6(ipv6(ptSrc6, ptInt6, nhDstOpts, cat(ptDstOpts(8, nhRouting), srh(udpProto, 1, ptMD6, ptInt6), ptPayload()))),
			want:  ptMalformed,
		},
	}
}

// ptSweep cuts full at every length from `from` to len(full); at says what
// each length must do.
func ptSweep(name string, full []byte, from int, at func(n int) ptWant) []ptCase {
	var cases []ptCase
	for n := from; n <= len(full); n++ {
		cases = append(cases, ptCase{name: fmt.Sprintf("%s cut at %d of %d", name, n, len(full)), frame: full[:n], want: at(n)})
	}
	return cases
}

// ptTruncatedCases cuts whole frames at every length. The verdict is always
// defined: refused below an Ethernet header, malformed (drop) while the
// destination is incomplete, then judged by the destination once the
// ports are wholly present: a port protocol's packet cut inside its ports
// is malformed (it would be judged as another class than its port's).
//
// The kernel's test run (measured on 6.18) also refuses, with EINVAL, an
// untagged frame whose ethertype says IPv4 or IPv6 but which holds less
// than a fixed IPv4 (20) or IPv6 (40) header: the program never sees those.
// It does not look behind a VLAN tag, so the tagged sweeps (and the L3
// sweeps in ptL3Cases) show what the program does with the same cuts.
func ptTruncatedCases() []ptCase {
	var cases []ptCase
	cases = append(cases, ptSweep("ipv4 udp", ptEth4(ptUDP4(ptInt4)), 0, func(n int) ptWant {
		switch {
		case n < 14+20:
			return ptRefused(unix.EINVAL)
		case n < 14+20+4:
			return ptMalformed
		}
		return ptAllowed(ev4(ptInt4, udpProto, ptSport, ptDport, ptRange10))
	})...)
	cases = append(cases, ptSweep("ipv6 udp", ptEth6(ptUDP6(ptMD6)), 0, func(n int) ptWant {
		switch {
		case n < 14+40:
			return ptRefused(unix.EINVAL)
		case n < 14+40+4:
			return ptMalformed
		}
		return ptDenied(ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6))
	})...)
	// Source routed: until every segment is wholly present the packet
	// cannot be judged, so it is malformed although dst is readable.
	fullRH := ptEth6(ipv6(ptSrc6, ptInt6, nhRouting, cat(srh(udpProto, 1, ptMD6, ptInt6), ptPayload())))
	const rhAt, udpAt = 14 + 40, 14 + 40 + 8 + 32
	cases = append(cases, ptSweep("ipv6 srh", fullRH, rhAt-1, func(n int) ptWant {
		switch {
		case n < rhAt:
			return ptRefused(unix.EINVAL)
		case n < udpAt+4:
			return ptMalformed
		}
		return ptDenied(ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6))
	})...)
	// 802.1Q tagged: the tag moves everything by 4, and the kernel lets
	// every cut through.
	q := [2]uint16{eth8021Q, 7}
	cases = append(cases, ptSweep("802.1Q ipv4 udp", cat(eth(ethIPv4, q), ptUDP4(ptMD4)), 0, func(n int) ptWant {
		switch {
		case n < 14:
			return ptRefused(unix.EINVAL)
		case n < 18+20+4:
			return ptMalformed
		}
		return ptDenied(ev4(ptMD4, udpProto, ptSport, ptDport, ptRangeMD4))
	})...)
	cases = append(cases, ptSweep("802.1Q ipv6 udp", cat(eth(ethIPv6, q), ptUDP6(ptInt6)), 0, func(n int) ptWant {
		switch {
		case n < 14:
			return ptRefused(unix.EINVAL)
		case n < 18+40+4:
			return ptMalformed
		}
		return ptAllowed(ev6(ptInt6, udpProto, ptSport, ptDport, ptRangeInt6))
	})...)
	return cases
}

// On an L3 device the test run takes the packet's protocol (skb->protocol)
// from bytes 12-13 of the input, as if they were an Ethernet type
// (eth_type_trans); the context may not set it (EINVAL). Raw packets for
// tun0 therefore come from sources whose bytes there spell the right type:
// 8.0.0.1 (IPv4: the source's first two bytes) and fd77:0:86dd::1 (IPv6:
// the source's bytes 4-5). A packet from any other source is, to the
// program, of another protocol. The test run refuses (EINVAL) an input
// whose bytes 12-13 say IPv4 (IPv6) when it holds less than 14+20 (14+40)
// bytes, so these packets carry a longer payload; the tagged Ethernet
// sweeps show what the program does with shorter ones.
var (
	ptL3Src4 = netip.MustParseAddr("8.0.0.1")
	ptL3Src6 = netip.MustParseAddr("fd77:0:86dd::1")
)

func ptL3Payload() []byte { return udp(ptSport, ptDport, bytes.Repeat([]byte("ping"), 6)) }

func ptL3UDP4(dst netip.Addr) []byte { return ipv4(ptL3Src4, dst, udpProto, ptL3Payload()) }
func ptL3UDP6(dst netip.Addr) []byte { return ipv6(ptL3Src6, dst, udpProto, ptL3Payload()) }

func l3ev4(dst netip.Addr, proto uint8, sport, dport uint16, rng string) ptEvent {
	e := ev4(dst, proto, sport, dport, rng)
	e.Src = ptL3Src4
	return e
}

func l3ev6(dst netip.Addr, proto uint8, sport, dport uint16, rng string) ptEvent {
	e := ev6(dst, proto, sport, dport, rng)
	e.Src = ptL3Src6
	return e
}

// ptL3Sweeps cut raw packets on the L3 device at every length.
func ptL3Sweeps() []ptCase {
	var cases []ptCase
	cases = append(cases, ptSweep("raw ipv4 udp", ptL3UDP4(ptMD4), 0, func(n int) ptWant {
		if n < 14+20 {
			return ptRefused(unix.EINVAL)
		}
		return ptDenied(l3ev4(ptMD4, udpProto, ptSport, ptDport, ptRangeMD4))
	})...)
	cases = append(cases, ptSweep("raw ipv6 udp", ptL3UDP6(ptInt6), 0, func(n int) ptWant {
		if n < 14+40 {
			return ptRefused(unix.EINVAL)
		}
		return ptAllowed(l3ev6(ptInt6, udpProto, ptSport, ptDport, ptRangeInt6))
	})...)
	return cases
}

// ptL3Cases run on tun0 (l2_len 0): the program's data is the IP packet.
func ptL3Cases() []ptCase {
	// v6in4 is an IPv6 packet whose protocol says IPv4 (bytes 12-13 of
	// its source are 08 00), v4in6 the other way round.
	v6in4 := ipv6(netip.MustParseAddr("fd77:0:800::1"), ptMD6, udpProto, ptL3Payload())
	v4in6 := ipv4(netip.MustParseAddr("134.221.0.1"), ptMD4, udpProto, cat(ptL3Payload(), ptL3Payload()))
	return []ptCase{
		{name: "raw ipv4 udp to 10/8", frame: ptL3UDP4(ptInt4),
			want: ptAllowed(l3ev4(ptInt4, udpProto, ptSport, ptDport, ptRange10))},
		{name: "raw ipv4 udp to metadata", frame: ptL3UDP4(ptMD4),
			want: ptDenied(l3ev4(ptMD4, udpProto, ptSport, ptDport, ptRangeMD4))},
		{name: "raw ipv4 outside every range: default deny", frame: ptL3UDP4(ptOut4),
			want: ptDenied(l3ev4(ptOut4, udpProto, ptSport, ptDport, ""))},
		{name: "raw ipv4 tcp with options", frame: ptIPv4Opts(ipv4(ptL3Src4, ptInt4, tcpProto, ptTCP(41000, 22)), bytes.Repeat([]byte{1}, 8)),
			want: ptAllowed(l3ev4(ptInt4, tcpProto, 41000, 22, ptRange10))},
		{name: "raw ipv6 udp to fd00:10::/32", frame: ptL3UDP6(ptInt6),
			want: ptAllowed(l3ev6(ptInt6, udpProto, ptSport, ptDport, ptRangeInt6))},
		{name: "raw ipv6 udp to metadata", frame: ptL3UDP6(ptMD6),
			want: ptDenied(l3ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6))},
		{name: "raw ipv6 to v4-mapped metadata: judged as IPv4", frame: ptL3UDP6(ptMapMD4),
			want: ptDenied(l3ev6(ptMapMD4, udpProto, ptSport, ptDport, ptRangeMD4))},
		{name: "raw ipv6 hop-by-hop then udp", frame: ipv6(ptL3Src6, ptInt6, nhHop, cat(ext(udpProto), ptL3Payload())),
			want: ptAllowed(l3ev6(ptInt6, udpProto, ptSport, ptDport, ptRangeInt6))},
		{name: "raw ipv6 SRH to metadata", frame: ipv6(ptL3Src6, ptInt6, nhRouting, cat(srh(udpProto, 1, ptMD6, ptInt6), ptPayload())),
			want: ptDenied(l3ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6))},
		{name: "raw ipv4 IHL 4: malformed", frame: ptVersion(ptL3UDP4(ptInt4), 0x44), want: ptMalformed},
		{name: "raw ipv4 IHL 15, options past the end: malformed", frame: ptVersion(ptL3UDP4(ptInt4)[:40], 0x4f), want: ptMalformed},
		{name: "raw ipv6 SRH cut in its segments: malformed", frame: ipv6(ptL3Src6, ptInt6, nhRouting, srh(udpProto, 1, ptMD6, ptInt6)[:24]), want: ptMalformed},
		// What is IP is told by the protocol, never by the first byte
		// (SPEC §1 rule 1).
		{name: "protocol IPv4, version nibble 5: malformed", frame: ptVersion(ptL3UDP4(ptMD4), 0x55), want: ptMalformed},
		{name: "protocol IPv4, version nibble 0: malformed", frame: ptVersion(ptL3UDP4(ptMD4), 0x05), want: ptMalformed},
		{name: "protocol IPv4 carrying an IPv6 header: malformed", frame: v6in4, want: ptMalformed},
		{name: "protocol IPv6 carrying an IPv4 header: malformed", frame: v4in6, want: ptMalformed},
		{name: "protocol IPv6, version nibble 4: malformed", frame: ptVersion(ptL3UDP6(ptMD6), 0x45), want: ptMalformed},
		{
			// Bytes 12-13 are c6 12 (the source 198.18.0.1): another
			// protocol, although the packet reads as IPv4 to metadata.
			name:  "other protocol starting with 0x45: not IP",
			frame: ptUDP4(ptMD4),
			want:  ptNotIP,
		},
		{name: "other protocol starting with 0x4f: not IP", frame: ptVersion(ptUDP4(ptMD4), 0x4f), want: ptNotIP},
		{
			// Bytes 12-13 are 00 00 (the source fd77::1): an 802.3 length.
			name:  "other protocol starting with 0x60: not IP",
			frame: ptUDP6(ptMD6),
			want:  ptNotIP,
		},
		{name: "other protocol starting with 0x00: not IP", frame: ptVersion(ptUDP6(ptMD6), 0x00), want: ptNotIP},
		{
			// An Ethernet frame handed to an L3 device with the IPv4
			// protocol (its bytes 12-13 are its Ethernet type) is broken
			// IPv4: its first byte (of the destination MAC) is no version.
			name:  "ethernet frame with the IPv4 protocol on an L3 device: malformed",
			frame: ptEth4(ptUDP4(ptMD4)),
			want:  ptMalformed,
		},
		{name: "ethernet ARP frame on an L3 device: not IP", frame: cat(eth(ethARP), ptARP()), want: ptNotIP},
	}
}

func ptDefaultAllowCases() []ptCase {
	return []ptCase{
		{name: "ipv4 outside every range: default allow", frame: ptEth4(ptUDP4(ptOut4)),
			want: ptAllowed(ev4(ptOut4, udpProto, ptSport, ptDport, ""))},
		{name: "ipv6 outside every range: default allow", frame: ptEth6(ptUDP6(ptOut6)),
			want: ptAllowed(ev6(ptOut6, udpProto, ptSport, ptDport, ""))},
		{name: "ipv4 to metadata: still denied", frame: ptEth4(ptUDP4(ptMD4)),
			want: ptDenied(ev4(ptMD4, udpProto, ptSport, ptDport, ptRangeMD4))},
		{name: "ipv6 to metadata: still denied", frame: ptEth6(ptUDP6(ptMD6)),
			want: ptDenied(ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6))},
		{name: "ipv4 to 10/8: allowed by range", frame: ptEth4(ptUDP4(ptInt4)),
			want: ptAllowed(ev4(ptInt4, udpProto, ptSport, ptDport, ptRange10))},
		{name: "v4-mapped outside every range: default allow", frame: ptEth6(ptUDP6(netip.AddrFrom16(ptOut4.As16()))),
			want: ptAllowed(ev6(ptOut4, udpProto, ptSport, ptDport, ""))},
		{name: "SRH final outside every range: allowed, reported by first hop",
			frame: ptEth6(ipv6(ptSrc6, ptInt6, nhRouting, cat(srh(udpProto, 1, ptOut6, ptInt6), ptPayload()))),
			want:  ptAllowed(ev6(ptInt6, udpProto, ptSport, ptDport, ptRangeInt6))},
		{name: "SRH first hop outside every range, final metadata: denied",
			frame: ptEth6(ipv6(ptSrc6, ptOut6, nhRouting, cat(srh(udpProto, 1, ptMD6, ptOut6), ptPayload()))),
			want:  ptDenied(ev6(ptMD6, udpProto, ptSport, ptDport, ptRangeMD6))},
		{name: "three tags: malformed whatever the default", frame: cat(eth(ethIPv4, [2]uint16{eth8021AD, 3}, [2]uint16{eth8021Q, 2}, [2]uint16{eth8021Q, 1}), ptUDP4(ptMD4)),
			want: ptMalformed},
		{name: "malformed is dropped whatever the default", frame: ptEth4(ptVersion(ptUDP4(ptOut4), 0x44)), want: ptMalformed},
	}
}
