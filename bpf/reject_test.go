// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

// ptRedirect is TC_ACT_REDIRECT: the packet, now the ICMP error, goes back
// in through the device (SPEC §1 rule 4).
const ptRedirect = uint32(7)

// openFilterOpts is openFilter with options beyond the pin directory.
func openFilterOpts(t testing.TB, ns *testnet.NS, opts Options) *Filter {
	t.Helper()
	opts.PinDir = testPinDir()
	var f *Filter
	ns.MustDo(t, func() (err error) {
		f, err = Open(opts)
		return err
	})
	t.Cleanup(func() {
		ns.Do(func() error { return f.Detach() })
	})
	return f
}

// sum16 is the one's complement sum of b (padded with a zero byte).
func sum16(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

// csumOK reports whether the sum of the parts, checksum field included,
// folds to 0xffff, as a receiver verifies it.
func csumOK(parts ...[]byte) bool {
	var s uint32
	for _, p := range parts {
		s += sum16(p)
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return s == 0xffff
}

// checkReply checks that out is the ICMP error answering in, whose IP
// header starts at l3 (Ethernet, with any tags, before it when l3 > 0):
// the link-layer header kept with the MAC addresses swapped, the new IP
// header from the denied destination back to the sender, the ICMP
// "administratively prohibited" of the header's family with a checksum
// that verifies, and the start of the original packet quoted: its header
// and 8 bytes (IPv4), as much as fits in 1280 bytes (IPv6).
func checkReply(in, out []byte, l3 int) error {
	if l3 > 0 {
		want := cat(in[6:12], in[0:6], in[12:l3])
		if !bytes.Equal(out[:l3], want) {
			return fmt.Errorf("link-layer header % x, want % x (MACs swapped, tags kept)", out[:l3], want)
		}
	}
	orig, ip := in[l3:], out[l3:]
	switch orig[0] >> 4 {
	case 4:
		q := min(len(orig), int(orig[0]&0xf)*4+8)
		if len(ip) != 28+q {
			return fmt.Errorf("reply of %d bytes after l3, want 28+%d", len(ip), q)
		}
		hdr, icmp := ip[:20], ip[20:]
		switch {
		case hdr[0] != 0x45 || int(binary.BigEndian.Uint16(hdr[2:])) != len(ip) || hdr[6] != 0x40 || hdr[8] != 64 || hdr[9] != 1:
			return fmt.Errorf("IPv4 header % x", hdr)
		case !bytes.Equal(hdr[12:16], orig[16:20]) || !bytes.Equal(hdr[16:20], orig[12:16]):
			return fmt.Errorf("addresses %v -> %v, want the original's swapped", netip.AddrFrom4([4]byte(hdr[12:16])), netip.AddrFrom4([4]byte(hdr[16:20])))
		case !csumOK(hdr):
			return fmt.Errorf("IPv4 header checksum does not verify: % x", hdr)
		case icmp[0] != 3 || icmp[1] != 13 || !bytes.Equal(icmp[4:8], make([]byte, 4)):
			return fmt.Errorf("ICMP header % x, want type 3 code 13", icmp[:8])
		case !csumOK(icmp):
			return fmt.Errorf("ICMP checksum does not verify")
		case !bytes.Equal(icmp[8:], orig[:q]):
			return fmt.Errorf("quote % x, want % x", icmp[8:], orig[:q])
		}
	case 6:
		q := min(len(orig), 1232)
		if len(ip) != 48+q {
			return fmt.Errorf("reply of %d bytes after l3, want 48+%d", len(ip), q)
		}
		hdr, icmp := ip[:40], ip[40:]
		switch {
		case !bytes.Equal(hdr[:4], []byte{0x60, 0, 0, 0}) || int(binary.BigEndian.Uint16(hdr[4:])) != 8+q || hdr[6] != 58 || hdr[7] != 64:
			return fmt.Errorf("IPv6 header % x", hdr[:8])
		case !bytes.Equal(hdr[8:24], orig[24:40]) || !bytes.Equal(hdr[24:40], orig[8:24]):
			return fmt.Errorf("addresses %v -> %v, want the original's swapped", netip.AddrFrom16([16]byte(hdr[8:24])), netip.AddrFrom16([16]byte(hdr[24:40])))
		case icmp[0] != 1 || icmp[1] != 1 || !bytes.Equal(icmp[4:8], make([]byte, 4)):
			return fmt.Errorf("ICMPv6 header % x, want type 1 code 1", icmp[:8])
		case !csumOK(hdr[8:40], binary.BigEndian.AppendUint32(nil, uint32(len(icmp))), []byte{0, 0, 0, 58}, icmp):
			return fmt.Errorf("ICMPv6 checksum (with the pseudo-header) does not verify")
		case !bytes.Equal(icmp[8:], orig[:q]):
			return fmt.Errorf("quote of %d bytes differs from the original's first %d", len(icmp)-8, q)
		}
	default:
		return fmt.Errorf("reply of IP version %d", orig[0]>>4)
	}
	return nil
}

// icmp4 is an ICMP message of type and code with an 8-byte body.
func icmp4(typ, code byte) []byte { return []byte{typ, code, 0, 0, 0, 0, 0, 1} }

// TestRejectFrames checks the ICMP errors the program makes of denied
// packets, byte by byte, in every shape the parser understands, and that
// it makes none where RFC 1122 §3.2.2 and RFC 4443 §2.4(e) forbid one or
// the policy says drop.
func TestRejectFrames(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.NewNS(t, "rj")
	tunIdx := addTun(t, ns, "tun0")
	// No limit worth the name: this test is about the replies' bytes.
	f := openFilterOpts(t, ns, Options{Mode: ModeAuto, rejectRate: 1e9, rejectBurst: 1e6})
	ifaces := []string{"lo", "tun0"}
	eps := []ep{{"imds", ifaces, []string{"169.254.169.254/32", "fd00:ec2::254/128"}, []string{"alice"}}}
	defaults := map[string]config.Action{"lo": config.Deny, "tun0": config.Deny}

	q := func(vid uint16) [2]uint16 { return [2]uint16{eth8021Q, vid} }
	ad := func(vid uint16) [2]uint16 { return [2]uint16{eth8021AD, vid} }
	big := udp(ptSport, ptDport, bytes.Repeat([]byte("0123456789abcdef"), 90)) // 1448 bytes
	mcast4 := netip.MustParseAddr("224.0.0.5")
	mcast6 := netip.MustParseAddr("ff02::5")
	type tc struct {
		name    string
		ifindex int
		frame   []byte
		l3      int // the IP header's offset; -1: no reply, the packet is dropped as it is
	}
	replies := []tc{
		{"ipv4 udp", 0, ptEth4(ptUDP4(ptMD4)), 14},
		{"ipv4 tcp syn", 0, ptEth4(ipv4(ptSrc4, ptMD4, tcpProto, ptTCP(ptSport, 80))), 14},
		{"ipv4 icmp echo", 0, ptEth4(ipv4(ptSrc4, ptMD4, icmpProto, icmp4(8, 0))), 14},
		{"ipv4 with options: the whole header is quoted", 0, ptEth4(ptIPv4Opts(ptUDP4(ptMD4), []byte{1, 1, 1, 0})), 14},
		{"ipv4 large: header and 8 bytes", 0, ptEth4(ipv4(ptSrc4, ptMD4, udpProto, big)), 14},
		{"ipv4 first fragment", 0, ptEth4(ptFrag4(ptUDP4(ptMD4), 0, true)), 14},
		{"ipv4 default-denied", 0, ptEth4(ptUDP4(ptOut4)), 14},
		{"ipv6 udp", 0, ptEth6(ptUDP6(ptMD6)), 14},
		{"ipv6 tcp syn", 0, ptEth6(ipv6(ptSrc6, ptMD6, tcpProto, ptTCP(ptSport, 80))), 14},
		{"ipv6 icmpv6 echo", 0, ptEth6(ipv6(ptSrc6, ptMD6, 58, icmp4(128, 0))), 14},
		{"ipv6 hop-by-hop and first fragment", 0, ptEth6(ipv6(ptSrc6, ptMD6, 0, cat(ext(44), fragHdr(udpProto, 0, true), ptPayload()))), 14},
		{"ipv6 large: 1232 bytes quoted", 0, ptEth6(ipv6(ptSrc6, ptMD6, udpProto, big)), 14},
		{"ipv4-mapped destination in ipv6", 0, ptEth6(ptUDP6(ptMapMD4)), 14},
		{"802.1Q ipv4", 0, cat(eth(ethIPv4, q(100)), ptUDP4(ptMD4)), 18},
		{"802.1Q ipv6", 0, cat(eth(ethIPv6, q(100)), ptUDP6(ptMD6)), 18},
		{"QinQ ipv4", 0, cat(eth(ethIPv4, ad(200), q(100)), ptUDP4(ptMD4)), 22},
		{"QinQ ipv6", 0, cat(eth(ethIPv6, ad(200), q(100)), ptUDP6(ptMD6)), 22},
		{"l3 ipv4", tunIdx, ptL3UDP4(ptMD4), 0},
		{"l3 ipv6", tunIdx, ptL3UDP6(ptMD6), 0},
	}
	silent := []tc{
		{"ipv4 later fragment", 0, ptEth4(ptFrag4(ptUDP4(ptMD4), 8, false)), -1},
		{"ipv6 later fragment", 0, ptEth6(ipv6(ptSrc6, ptMD6, 44, cat(fragHdr(udpProto, 8, false), ptPayload()))), -1},
		{"ipv4 icmp error", 0, ptEth4(ipv4(ptSrc4, ptMD4, icmpProto, icmp4(3, 13))), -1},
		{"ipv4 icmp time exceeded", 0, ptEth4(ipv4(ptSrc4, ptMD4, icmpProto, icmp4(11, 0))), -1},
		{"ipv6 icmpv6 error", 0, ptEth6(ipv6(ptSrc6, ptMD6, 58, icmp4(1, 1))), -1},
		{"ipv6 icmpv6 packet too big", 0, ptEth6(ipv6(ptSrc6, ptMD6, 58, icmp4(2, 0))), -1},
		{"ipv4 multicast destination", 0, ptEth4(ptUDP4(mcast4)), -1},
		{"ipv4 broadcast destination", 0, ptEth4(ptUDP4(netip.MustParseAddr("255.255.255.255"))), -1},
		{"ipv4 unspecified source", 0, ptEth4(ipv4(netip.MustParseAddr("0.0.0.0"), ptMD4, udpProto, ptPayload())), -1},
		{"ipv4 multicast source", 0, ptEth4(ipv4(mcast4, ptMD4, udpProto, ptPayload())), -1},
		{"ipv6 multicast destination", 0, ptEth6(ptUDP6(mcast6)), -1},
		{"ipv6 multicast source", 0, ptEth6(ipv6(mcast6, ptMD6, udpProto, ptPayload())), -1},
		{"ipv6 unspecified source", 0, ptEth6(ipv6(netip.IPv6Unspecified(), ptMD6, udpProto, ptPayload())), -1},
	}
	run := func(t *testing.T, c tc, wantRet uint32, wantRejected uint64) {
		t.Helper()
		before, err := f.Counters()
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, len(c.frame)+256)
		var ret uint32
		ns.MustDo(t, func() error {
			opts := &ebpf.RunOptions{Data: c.frame, DataOut: out}
			if c.ifindex != 0 {
				opts.Context = ptSkbCtx{Ifindex: uint32(c.ifindex)}
			}
			ret, err = f.objs.NtfEgress.Run(opts)
			out = opts.DataOut
			return err
		})
		after, err := f.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if ret != wantRet {
			t.Fatalf("ret %d, want %d", int32(ret), int32(wantRet))
		}
		if d := after.Rejected - before.Rejected; d != wantRejected || after.Denied-before.Denied != 1 || after.RejectFailed != before.RejectFailed {
			t.Errorf("rejected +%d denied +%d failed +%d, want +%d, +1, +0", d, after.Denied-before.Denied, after.RejectFailed-before.RejectFailed, wantRejected)
		}
		if c.l3 < 0 {
			if !bytes.Equal(out, c.frame) {
				t.Errorf("dropped packet changed:\n% x\nwant\n% x", out, c.frame)
			}
			return
		}
		if err := checkReply(c.frame, out, c.l3); err != nil {
			t.Errorf("%v\nin  % x\nout % x", err, c.frame, out)
		}
	}

	apply(t, ns, f, compileDeny(t, config.DenyUnset, defaults, eps...), LogNone)
	for _, c := range replies {
		t.Run("reject/"+c.name, func(t *testing.T) { run(t, c, ptRedirect, 1) })
	}
	for _, c := range silent {
		t.Run("never/"+c.name, func(t *testing.T) { run(t, c, ptDrop, 0) })
	}
	// deny: drop, on the endpoint and on the interfaces: nothing is
	// answered, nothing is changed.
	apply(t, ns, f, compileDeny(t, config.DenyDrop, defaults, eps...), LogNone)
	for _, c := range replies {
		c.l3 = -1
		t.Run("drop/"+c.name, func(t *testing.T) { run(t, c, ptDrop, 0) })
	}
}

// Errors as the error queue reports their origin (linux/errqueue.h).
const (
	eeOriginICMP  = 2
	eeOriginICMP6 = 3
)

// wantAnswer is what a denied sender must be told: the errno, and for
// sockets with IP_RECVERR the ICMP error itself.
func wantAnswer(dst netip.Addr, queued bool) netlab.Answer {
	if dst.Is4() {
		return netlab.Answer{Errno: unix.EHOSTUNREACH, Queued: queued, Origin: eeOriginICMP, Type: 3, Code: 13, Offender: dst}
	}
	return netlab.Answer{Errno: unix.EACCES, Queued: queued, Origin: eeOriginICMP6, Type: 1, Code: 1, Offender: dst}
}

func sameAnswer(got, want netlab.Answer) bool {
	got.Elapsed = 0
	if !want.Queued {
		return got.Errno == want.Errno
	}
	return got == want
}

// answerTimeout bounds a probe that must be answered. A TCP connect
// retries its SYN twice (1 s, then 2 s later), so a SYN nobody answers
// ends in ETIMEDOUT after about 4 s (as before answers existed): the
// errno, not the time, is what tells an answer.
const answerTimeout = 10 * time.Second

// TestReject sends real traffic as real users, IPv4 and IPv6, in both
// attach modes: a denied TCP connect fails with EHOSTUNREACH (EACCES over
// IPv6), UDP and ping sockets with IP_RECVERR get the ICMP error on their
// error queue, from the denied destination; allowed users connect;
// forwarded packets and deny: drop stay silent (SPEC §1 rule 4).
func TestReject(t *testing.T) {
	eachMode(t, testReject)
}

func testReject(t *testing.T, mode Mode) {
	tp := testnet.NewTopology(t, testnet.Options{Container: true, Tun: true})
	tp.ServeTCP(t, port)
	tp.ServeUDPEcho(t, port)
	tp.Client.Exec(t, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
	alice := testnet.StartAgent(t, tp.Client, 1001)
	bob := testnet.StartAgent(t, tp.Client, 1002)
	container := testnet.StartAgent(t, tp.Container, 0)
	f := openFilter(t, tp.Client, mode)
	deny := map[string]config.Action{"eth0": config.Deny}
	imds := ep{"imds", []string{"eth0"}, []string{"169.254.169.254/32", "fd00:ec2::254/128"}, []string{"alice"}}
	apply(t, tp.Client, f, compileDeny(t, config.DenyUnset, deny, imds), LogNone)
	if got := attachedNames(f); !slices.Equal(got, []string{"eth0/" + string(mode)}) {
		t.Fatalf("attached: %v", got)
	}
	counters := func() Counters {
		t.Helper()
		c, err := f.Counters()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	type probeFn func(a *testnet.Agent, dst netip.Addr, timeout time.Duration) (netlab.Answer, error)
	probes := []struct {
		name   string
		fn     probeFn
		queued bool
	}{
		{"tcp connect", func(a *testnet.Agent, dst netip.Addr, d time.Duration) (netlab.Answer, error) {
			return a.ConnectAnswer(dst, port, d)
		}, false},
		{"udp with recverr", func(a *testnet.Agent, dst netip.Addr, d time.Duration) (netlab.Answer, error) {
			return a.UDPAnswer(dst, port, d)
		}, true},
		{"ping with recverr", func(a *testnet.Agent, dst netip.Addr, d time.Duration) (netlab.Answer, error) {
			return a.PingAnswer(dst, d)
		}, true},
	}
	for _, p := range probes {
		for _, dst := range []netip.Addr{imds4, imds6} {
			t.Run(fmt.Sprintf("%s/%s", p.name, dst), func(t *testing.T) {
				before := counters()
				got, err := p.fn(bob, dst, answerTimeout)
				if err != nil {
					t.Fatal(err)
				}
				if want := wantAnswer(dst, p.queued); !sameAnswer(got, want) {
					t.Errorf("denied: %v, want %v", got, want)
				}
				t.Logf("denied %s to %s: %v", p.name, dst, got)
				if d := counters().Rejected - before.Rejected; d == 0 {
					t.Errorf("rejected +%d, want at least one reply counted", d)
				}
				// The allowed user is not answered, and gets through.
				got, err = p.fn(alice, dst, answerTimeout)
				if err != nil || got.Errno != 0 || got.Elapsed >= answerTimeout {
					t.Errorf("allowed: %v, %v; want a connection or an echo", got, err)
				}
			})
		}
	}
	// The answer to a connect's first SYN reaches the socket while
	// connect() holds it: kept only as a soft error, counted here.
	t.Logf("client TcpExt LockDroppedIcmps: %s", netstatField(tp.Client.Exec(t, "cat", "/proc/net/netstat"), "TcpExt", "LockDroppedIcmps"))

	// Forwarded packets have no socket to tell: never answered.
	t.Run("forwarded", func(t *testing.T) {
		events := openEvents(t, f)
		apply(t, tp.Client, f, compileDeny(t, config.DenyUnset, deny, imds), LogDenied)
		defer apply(t, tp.Client, f, compileDeny(t, config.DenyUnset, deny, imds), LogNone)
		before := settledCounters(t, f)
		for _, dst := range []netip.Addr{imds4, imds6} {
			got, err := container.UDPAnswer(dst, port, testnet.DenyTimeout)
			if err != nil || got.Errno != 0 {
				t.Errorf("forwarded to %s: %v, %v; want silence", dst, got, err)
			}
		}
		c := settledCounters(t, f)
		// The client's kernel may send denied packets of its own
		// meanwhile (neighbour discovery to an on-link address in the
		// range, owned by root, MACHINE-NOTES) and have them answered:
		// the answers may not outnumber the denied packets of sockets.
		var owned, forwarded uint64
		for {
			events.SetDeadline(time.Now().Add(100 * time.Millisecond))
			e, err := events.Read()
			if err != nil {
				break
			}
			switch {
			case e.Allowed:
			case e.Unowned:
				forwarded++
			default:
				owned++
			}
		}
		rejected := c.Rejected - before.Rejected
		t.Logf("denied +%d (forwarded %d, of local sockets %d), answered +%d", c.Denied-before.Denied, forwarded, owned, rejected)
		if forwarded < 2 || rejected > owned {
			t.Errorf("forwarded denied %d, want at least the 2 probes; answered %d, want at most the %d denied packets of local sockets",
				forwarded, rejected, owned)
		}
	})

	// deny: drop keeps drops silent: on the endpoint, or on the interface
	// for endpoints that do not say, and for the interface default.
	t.Run("deny drop", func(t *testing.T) {
		drop := map[string]config.Action{"eth0": config.Deny}
		for _, c := range []struct {
			name   string
			policy func() *policy.Policy
			dst    netip.Addr
			answer bool
		}{
			{"on the endpoint", func() *policy.Policy { return compileDeny(t, config.DenyDrop, drop, imds) }, imds4, false},
			{"on the interface, endpoint unset", func() *policy.Policy { return compileIfaceDrop(t, config.DenyUnset, imds) }, imds6, false},
			{"on the interface, default-denied", func() *policy.Policy { return compileIfaceDrop(t, config.DenyUnset, imds) }, other, false},
			{"on the interface, endpoint says reject", func() *policy.Policy { return compileIfaceDrop(t, config.DenyReject, imds) }, imds4, true},
		} {
			t.Run(c.name, func(t *testing.T) {
				apply(t, tp.Client, f, c.policy(), LogNone)
				before := counters()
				timeout := testnet.DenyTimeout
				if c.answer {
					timeout = answerTimeout
				}
				got, err := bob.UDPAnswer(c.dst, port, timeout)
				if err != nil {
					t.Fatal(err)
				}
				after := counters()
				if c.answer {
					if want := wantAnswer(c.dst, true); !sameAnswer(got, want) || after.Rejected == before.Rejected {
						t.Errorf("%v (rejected +%d), want %v", got, after.Rejected-before.Rejected, want)
					}
					return
				}
				// A drop is what it always was: nothing, or, to a
				// socket with IP_RECVERR, ENOBUFS from the send itself.
				if silent := got.Errno == 0 || got.Errno == unix.ENOBUFS && !got.Queued; !silent || after.Rejected != before.Rejected || after.Denied == before.Denied {
					t.Errorf("%v, rejected +%d denied +%d; want silence, +0, +1", got, after.Rejected-before.Rejected, after.Denied-before.Denied)
				}
				tcp, err := bob.ConnectAnswer(c.dst, port, testnet.DenyTimeout)
				if err != nil || tcp.Errno != 0 {
					t.Errorf("tcp connect: %v, %v; want nothing within %v", tcp, err, testnet.DenyTimeout)
				}
			})
		}
	})

	// An L3 device: the reply has no link-layer header to swap.
	t.Run("l3 device", func(t *testing.T) {
		tp.Client.IP(t, "route", "replace", "169.254.169.254/32", "dev", "tun0")
		t.Cleanup(func() { tp.Client.IP(t, "route", "del", "169.254.169.254/32") })
		onTun := ep{"imds", []string{"tun0"}, []string{"169.254.169.254/32"}, []string{"alice"}}
		apply(t, tp.Client, f, compileDeny(t, config.DenyUnset, nil, onTun), LogNone)
		got, err := bob.UDPAnswer(imds4, port, answerTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if want := wantAnswer(imds4, true); !sameAnswer(got, want) {
			t.Errorf("over tun0: %v, want %v", got, want)
		}
	})
}

// compileIfaceDrop is a policy whose eth0 says default: deny, deny: drop,
// with the endpoints' deny set to mode.
func compileIfaceDrop(t testing.TB, mode config.DenyMode, eps ...ep) *policy.Policy {
	t.Helper()
	ifaces := map[string]config.Interface{"eth0": {Default: config.Deny, Deny: config.DenyDrop}}
	return compileWith(t, ifaces, func(ce *config.Endpoint, _ int) { ce.Deny = mode }, eps...)
}

// netstatField reads one counter of /proc/net/netstat (a header line of
// names, then a line of values, per group).
func netstatField(text, group, name string) string {
	lines := strings.Split(text, "\n")
	for i := 0; i+1 < len(lines); i++ {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != group+":" || len(values) != len(names) || values[0] != group+":" {
			continue
		}
		for j, n := range names {
			if n == name {
				return values[j]
			}
		}
	}
	return "?"
}

// TestRejectFlood checks that a flood of denied packets does not become a
// flood of replies: with a budget of 10 replies a second and bursts of 5
// per CPU, 3000 denied datagrams get at most that many answers, every
// other one is dropped silently and counted as limited, and the answers
// counted are the ones that arrive.
func TestRejectFlood(t *testing.T) {
	eachMode(t, testRejectFlood)
}

func testRejectFlood(t *testing.T, mode Mode) {
	const (
		rate, burst = 10, 5
		n           = 3000
	)
	tp := testnet.NewTopology(t, testnet.Options{})
	bob := testnet.StartAgent(t, tp.Client, 1002)
	f := openFilterOpts(t, tp.Client, Options{Mode: mode, rejectRate: rate, rejectBurst: burst})
	imds := ep{"imds", []string{"eth0"}, []string{"169.254.169.254/32"}, []string{"alice"}}
	// The interface's default allows, so that the only denied packets are
	// bob's: under a deny default, the new namespace's own IPv6
	// neighbour and multicast traffic is denied too, never answered
	// (multicast), and was counted beside the flood on the host.
	apply(t, tp.Client, f, compileDeny(t, config.DenyUnset, map[string]config.Action{"eth0": config.Allow}, imds), LogNone)
	replies := testnet.Capture(t, tp.Client, "eth0")
	before, err := f.Counters()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := bob.Burst(imds4, port, n); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	after := settledCounters(t, f)
	denied := after.Denied - before.Denied
	rejected := after.Rejected - before.Rejected
	limited := after.RejectLimited - before.RejectLimited
	cpus := uint64(runtime.NumCPU())
	bound := cpus * (burst + uint64(rate*elapsed.Seconds()+1))
	failed := after.RejectFailed - before.RejectFailed
	t.Logf("%d datagrams in %v: %d judged denied, %d answered, %d limited, %d failed (bound %d)",
		n, elapsed, denied, rejected, limited, failed, bound)
	switch {
	case denied < n/2:
		t.Errorf("only %d of %d datagrams were judged", denied, n)
	case rejected == 0 || rejected > bound:
		t.Errorf("%d answers, want 1 to %d", rejected, bound)
	case failed != 0:
		t.Errorf("%d replies failed", failed)
	case rejected+limited != denied:
		t.Errorf("answered %d + limited %d != denied %d: every denied packet is one or the other", rejected, limited, denied)
	}
	// What arrived back on eth0 is the replies, and nothing more.
	got := 0
	for deadline := time.After(testnet.DenyTimeout); ; {
		select {
		case p := <-replies:
			if len(p) > 14+20 && binary.BigEndian.Uint16(p[12:]) == ethIPv4 && p[14+9] == icmpProto && p[14+20] == 3 && p[14+21] == 13 {
				got++
			}
			continue
		case <-deadline:
		}
		break
	}
	if uint64(got) != rejected {
		t.Errorf("%d ICMP errors arrived on eth0, %d counted as sent", got, rejected)
	}
}

// TestRejectDifferential checks the kernel's choice between answering
// and dropping silently against the reference Decide() (Verdict.Reply):
// random policies with overlapping ranges, narrowed endpoints and random
// deny: settings on endpoints and on the interface, and UDP, TCP SYN and
// ICMP echo frames to random destinations, judged by test runs (owned by
// root, the test run's socket). Answers never go to multicast or
// broadcast addresses, whatever the policy says.
func TestRejectDifferential(t *testing.T) {
	testnet.RequireRoot(t)
	rng := seededRand(t)
	ns := testnet.NewNS(t, "rd")
	ns.IP(t, "link", "add", "eth0", "type", "bridge")
	var ifindex int
	ns.MustDo(t, func() error {
		ifc, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		ifindex = ifc.Index
		return nil
	})
	f := openFilterOpts(t, ns, Options{Mode: ModeAuto, rejectRate: 1e9, rejectBurst: 1e6})
	modes := []config.DenyMode{config.DenyUnset, config.DenyReject, config.DenyDrop}
	seen := map[string]int{}
	for round := range 4 {
		p, prefixes := randomPolicy(t, rng)
		for i := range p.Endpoints {
			p.Endpoints[i].Deny = modes[rng.IntN(len(modes))]
		}
		// Every combination of the interface's default and deny.
		for i := range p.Interfaces {
			p.Interfaces[i].Default = policy.Action(round & 1)
			p.Interfaces[i].Drop = round&2 != 0
		}
		apply(t, ns, f, p, LogNone)
		mismatches := 0
		for range 1500 {
			dst := randomDestination(rng, prefixes).Unmap()
			port := uint16(998 + rng.IntN(68))
			var k policy.Packet
			var l4 []byte
			switch rng.IntN(3) {
			case 0:
				k, l4 = policy.Packet{Dst: dst, Proto: udpProto, Port: port}, udp(ptSport, port, []byte("probe"))
			case 1:
				k, l4 = policy.Packet{Dst: dst, Proto: tcpProto, Port: port}, ptTCP(ptSport, port)
			default:
				if dst.Is4() {
					k, l4 = policy.Packet{Dst: dst, Proto: icmpProto}, icmp4(8, 0)
				} else {
					k, l4 = policy.Packet{Dst: dst, Proto: icmp6Proto}, icmp4(128, 0)
				}
			}
			var frame []byte
			if dst.Is4() {
				frame = ptEth4(ipv4(ptSrc4, dst, k.Proto, l4))
			} else {
				frame = ptEth6(ipv6(ptSrc6, dst, k.Proto, l4))
			}
			d := p.DecidePacket("eth0", policy.Owner{UID: 0}, k)
			want, what := ptPass, "allowed"
			switch {
			case d.Allowed:
			case d.Audit: // passes, never answered
				what = "audited"
			case d.Reply && !dst.IsMulticast() && dst != netip.IPv4Unspecified() && dst != netip.AddrFrom4([4]byte{255, 255, 255, 255}):
				want, what = ptRedirect, "answered"
			default:
				want, what = ptDrop, "dropped silently"
			}
			var ret uint32
			ns.MustDo(t, func() (err error) {
				ret, err = f.objs.NtfEgress.Run(&ebpf.RunOptions{Data: frame, Context: ptSkbCtx{Ifindex: uint32(ifindex)}})
				return err
			})
			seen[what]++
			if ret != want {
				mismatches++
				if mismatches <= 5 {
					t.Errorf("policy %d: %s: kernel %d, Decide says %s (%s)", round, k, int32(ret), what, d.Reason)
				}
			}
		}
		if mismatches > 5 {
			t.Errorf("policy %d: %d more mismatches", round, mismatches-5)
		}
	}
	t.Logf("verdicts: %v", seen)
	for _, what := range []string{"allowed", "answered", "dropped silently"} {
		if seen[what] < 100 {
			t.Errorf("only %d probes %s: the test proves little", seen[what], what)
		}
	}
}
