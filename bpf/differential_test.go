// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// TestDifferential checks the kernel against the reference Decide(): random
// policies with hundreds of overlapping IPv4 and IPv6 ranges, endpoints
// narrowed by proto and ports (often several on one prefix), and ten
// thousand real packets from real uids (and forwarded, unowned ones): UDP
// datagrams, TCP SYNs, ICMP echoes and fragmented UDP datagrams, whose
// every fragment is a probe. Each verdict is read from the program's own
// decision event, so denied probes cost no timeout. Policies are swapped
// in one after another on the same filter, so every swap is checked too.
// Two rounds log denied packets only, which lets allowed ones take the
// program's fast path (fast_allow): there a probe Decide allows must pass
// without an event and be counted as allowed.
func TestDifferential(t *testing.T) {
	rng := seededRand(t)

	tp := testnet.NewTopology(t, testnet.Options{Container: true})
	type sender struct {
		agent *testnet.Agent
		owner policy.Owner
	}
	var senders []sender
	here := ownCgroup(t)
	for _, uid := range []uint32{0, 1001, 1002, 1003, 65534} {
		senders = append(senders, sender{testnet.StartAgent(t, tp.Client, uid), policy.Owner{UID: uid, Cgroup: here}})
	}
	senders = append(senders, sender{testnet.StartAgent(t, tp.Container, 0), policy.Owner{Unowned: true}})
	// Senders in cgroups of a tree of the test's own; the policies name
	// its directories, their parent and cousins with cgroup:.
	top := testnet.NewCgroup(t)
	cgroupPrincipals := []string{"cgroup:" + top.Path}
	for _, c := range []struct {
		rel string
		uid uint32
	}{{"a", 1001}, {"a/b", 1001}, {"a/b", 0}, {"c", 1002}, {"c", 0}} {
		cg := testnet.SubCgroup(t, top, c.rel)
		senders = append(senders, sender{testnet.StartAgentInCgroup(t, tp.Client, c.uid, cg), policy.Owner{UID: c.uid, Cgroup: cg.Path}})
	}
	for _, rel := range []string{"a", "a/b", "c", "d"} {
		cgroupPrincipals = append(cgroupPrincipals, "cgroup:"+top.Path+"/"+rel)
	}

	// ICMP echoes from unprivileged ping sockets, as any user sends them.
	tp.Client.Exec(t, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
	f := openFilter(t, tp.Client, ModeAuto)
	events := openEvents(t, f)

	const policies, probesPerPolicy = 5, 2000
	// What the probes exercised, so that a vacuous run fails.
	seen := map[string]int{}
	// Half the probes go to a few hot destinations, from every sender and
	// under every policy: the kernel's caches must follow the owner and
	// forget what an earlier policy said.
	var hot []netip.Addr
	for round := range policies {
		p, prefixes := randomPolicy(t, rng, cgroupPrincipals...)
		// Rounds 2 and 4 have nothing staged (see below).
		quiet := round == 2 || round == 4
		log := LogAll
		if quiet {
			log = LogDenied
		}
		gen := apply(t, tp.Client, f, p, log)
		// After the first, each policy goes live as a change to the
		// one before, as the daemon's reloads do (Mirror, below).
		if round > 0 && f.contents[f.slot].delta == nil {
			t.Errorf("round %d: not swapped in as a change to the last policy", round)
		}
		// Quiet rounds: the probes Decide allows, and the events read
		// past while waiting for others, none of which may be theirs.
		var passed []diffProbe
		var skipped []KernelDecision
		before, err := f.Counters()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("policy %d: %d ranges, generation %d", round, p.RangeCount(), gen)
		// Every other round stages a candidate beside it (SPEC §8):
		// each event must carry the candidate's verdict exactly where
		// it differs from the live one.
		var staged *policy.Policy
		if round%2 == 1 {
			var sp []netip.Prefix
			staged, sp = randomPolicy(t, rng, cgroupPrincipals...)
			prefixes = append(prefixes, sp...)
			tp.Client.MustDo(t, func() error {
				ifaces, err := Interfaces()
				if err != nil {
					return err
				}
				return f.Stage(staged, ifaces)
			})
		} else if _, err := f.Unstage(); err != nil {
			t.Fatal(err)
		}
		for len(hot) < 16 {
			hot = append(hot, randomDestination(rng, prefixes))
		}
		mismatches := 0
		narrowed := map[netip.Prefix]bool{}
		for ent := range p.Entries("eth0") {
			if ent.Narrowed {
				narrowed[ent.Prefix] = true
			}
		}
		for range probesPerPolicy {
			si := rng.IntN(len(senders))
			s := senders[si]
			dst := randomDestination(rng, prefixes)
			if rng.IntN(2) == 0 {
				dst = hot[rng.IntN(len(hot))]
			}
			// Ports around the policies' universe, 1000-1063.
			port := uint16(998 + rng.IntN(68))
			kind := rng.IntN(20)
			if s.owner.Unowned && kind >= 15 {
				kind = 0 // forwarded: UDP and TCP only
			}
			var probes []diffProbe
			var err error
			switch {
			case kind < 9:
				var sport uint16
				sport, err = s.agent.Send(dst, port)
				probes = []diffProbe{{"udp", dst, udpProto, sport, port, false}}
			case kind < 15:
				var sport uint16
				sport, err = s.agent.SendTCP(dst, port)
				probes = []diffProbe{{"tcp", dst, tcpProto, sport, port, false}}
			case kind < 18:
				err = s.agent.SendICMP(dst)
				proto := uint8(icmpProto)
				if !dst.Unmap().Is4() {
					proto = icmp6Proto
				}
				probes = []diffProbe{{"icmp", dst, proto, 0, 0, false}}
			default:
				// Two fragments over the veth's MTU of 1500; the
				// first has the ports, the second matches every
				// ports list of UDP (rule 2).
				// From a socket of the address's own family: a
				// v6 socket's DONTFRAG does not cover IPv4.
				var sport uint16
				dst = dst.Unmap()
				sport, err = s.agent.SendBig(dst, port, 2000)
				probes = []diffProbe{{"udp", dst, udpProto, sport, port, false}, {"udp fragment", dst, udpProto, 0, 0, true}}
			}
			if err != nil {
				t.Fatalf("probe %s %s -> %s: %v", probes[0].name, s.owner, dst, err)
			}
			// await reads the probe's event, where there is one.
			await := func(pb diffProbe) (passes bool, got []probeEvent) {
				if quiet {
					if want := p.DecidePacket("eth0", s.owner, pb.packet()); want.Allowed {
						passed = append(passed, pb)
						seen["allowed, not logged"]++
						return true, nil
					}
				}
				got = nextEvents(t, events, []diffProbe{pb}, &skipped)
				return got[0].ev.Allowed || got[0].ev.Audit, got
			}
			passes, got := await(probes[0])
			if len(probes) > 1 && passes {
				// The sender gives up a datagram whose first
				// fragment the device refused: the rest come
				// only after an allowed one.
				_, more := await(probes[1])
				got = append(got, more...)
			}
			for _, pr := range got {
				ev, pb := pr.ev, pr.probe
				k := pb.packet()
				want := p.DecidePacket("eth0", s.owner, k)
				if ev.Generation != gen {
					t.Fatalf("event of generation %d, want %d", ev.Generation, gen)
				}
				var got netip.Prefix
				if r, ok := f.Rule(ev.Generation, ev.Rule); ok {
					got = r.Range
				}
				seen[fmt.Sprintf("allowed=%t", want.Allowed)]++
				if !s.owner.Unowned && want.Allowed != p.DecidePacket("eth0", policy.Owner{UID: s.owner.UID}, k).Allowed {
					seen["decided by the cgroup"]++
				}
				seen[fmt.Sprintf("audit=%t", want.Audit)]++
				seen[fmt.Sprintf("by-range=%t", want.Range.IsValid())]++
				seen[fmt.Sprintf("unowned=%t", s.owner.Unowned)]++
				seen[fmt.Sprintf("ipv6=%t", pb.dst.Unmap().Is6())]++
				seen[pb.name]++
				if lp, ok := longestPrefix(p, pb.dst); ok && narrowed[lp] {
					seen["narrowed"]++
					if want.Range != lp {
						seen["narrowed, decided by another"]++
					}
				}
				if staged != nil {
					sw := staged.DecidePacket("eth0", s.owner, k)
					sa, la := verdictAction(sw), verdictAction(want)
					var sr netip.Prefix
					if r, ok := f.StagedRule(ev.StagedRule); ok {
						sr = r.Range
					}
					seen[fmt.Sprintf("staged differs=%t", sa != la)]++
					if ev.Staged != (sa != la) || (ev.Staged && (ev.StagedAction != sa || sr != sw.Range)) {
						mismatches++
						t.Errorf("%s %s -> %s port %d: kernel staged=%t %s range %v; staged Decide %s range %v, live %s (%s)",
							pb.name, s.owner, pb.dst, pb.dport, ev.Staged, ev.StagedAction, sr, sa, sw.Range, la, sw.Reason)
					}
				} else if ev.Staged {
					mismatches++
					t.Errorf("%s %s -> %s: staged verdict %s reported with nothing staged", pb.name, s.owner, pb.dst, ev.StagedAction)
				}
				if ev.Allowed != want.Allowed || ev.Audit != want.Audit || got != want.Range || ev.Unowned != s.owner.Unowned {
					mismatches++
					t.Errorf("%s %s -> %s port %d: kernel allowed=%t audit=%t range=%v unowned=%t; Decide allowed=%t audit=%t range=%v (%s)",
						pb.name, s.owner, pb.dst, pb.dport, ev.Allowed, ev.Audit, got, ev.Unowned, want.Allowed, want.Audit, want.Range, want.Reason)
					if mismatches > 20 {
						t.FailNow()
					}
				}
			}
		}
		if quiet {
			checkPassed(t, f, events, before, passed, skipped, gen)
		}
		// As the daemon after each reload: the idle slot gets the
		// change too, and the next policy is encoded against this one.
		if err := f.Mirror(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("probes: %v", seen)
	if n := cachedVerdicts(t, f); n < len(hot) {
		t.Errorf("%d destinations in the verdict caches of the live policy, want at least %d", n, len(hot))
	}
	for _, k := range []string{"allowed=true", "allowed=false", "audit=true", "staged differs=true", "staged differs=false", "by-range=true", "by-range=false", "unowned=true", "ipv6=true",
		"udp", "tcp", "icmp", "udp fragment", "narrowed", "narrowed, decided by another", "decided by the cgroup", "allowed, not logged"} {
		if seen[k] < 50 {
			t.Errorf("only %d probes with %s: the random policies do not exercise the kernel", seen[k], k)
		}
	}
}

// diffProbe is one packet a differential probe sends and the event it
// must log.
type diffProbe struct {
	name         string
	dst          netip.Addr
	proto        uint8
	sport, dport uint16
	frag         bool
}

func (p diffProbe) matches(ev KernelDecision) bool {
	return ev.Proto == p.proto && ev.Sport == p.sport && ev.Dport == p.dport && ev.Dst == p.dst.Unmap()
}

func (p diffProbe) packet() policy.Packet {
	return policy.Packet{Dst: p.dst, Proto: p.proto, Port: p.dport, Fragment: p.frag}
}

// checkPassed checks a round logged with LogDenied: the probes Decide
// allowed (passed) were counted as allowed and logged nothing. skipped are
// the events read past while waiting for the other probes'; the rest are
// read until the ring has been quiet for a while (a probe's event is
// written while it is sent, before the next probe).
func checkPassed(t *testing.T, f *Filter, events *DecisionReader, before Counters, passed []diffProbe, skipped []KernelDecision, gen uint32) {
	t.Helper()
	for {
		events.SetDeadline(time.Now().Add(500 * time.Millisecond))
		ev, err := events.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		skipped = append(skipped, ev)
	}
	for _, ev := range skipped {
		if ev.Generation != gen {
			continue
		}
		for _, pb := range passed {
			if pb.matches(ev) {
				t.Errorf("%s -> %s port %d: Decide allows it, the kernel logged it with log: denied (allowed=%t audit=%t)",
					pb.name, pb.dst, pb.dport, ev.Allowed, ev.Audit)
			}
		}
	}
	after, err := f.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if n := after.Allowed - before.Allowed; n < uint64(len(passed)) {
		t.Errorf("%d packets counted as allowed in a round whose %d allowed probes logged nothing", n, len(passed))
	}
}

type probeEvent struct {
	probe diffProbe
	ev    KernelDecision
}

// nextEvents reads the decision events of the probes, in whatever order
// they come; other events (a TCP server's resets, earlier probes') are
// skipped, and kept in skipped.
func nextEvents(t *testing.T, events *DecisionReader, probes []diffProbe, skipped *[]KernelDecision) []probeEvent {
	t.Helper()
	events.SetDeadline(time.Now().Add(5 * time.Second))
	var out []probeEvent
	done := make([]bool, len(probes))
	for len(out) < len(probes) {
		ev, err := events.Read()
		if err != nil {
			t.Fatalf("no decision event for %+v (found %v): %v", probes, done, err)
		}
		matched := false
		for i, p := range probes {
			if !done[i] && p.matches(ev) {
				done[i] = true
				out = append(out, probeEvent{p, ev})
				matched = true
				break
			}
		}
		if !matched {
			*skipped = append(*skipped, ev)
		}
	}
	return out
}

// longestPrefix is the longest configured prefix of eth0 containing dst.
func longestPrefix(p *policy.Policy, dst netip.Addr) (netip.Prefix, bool) {
	var best netip.Prefix
	for ent := range p.Entries("eth0") {
		if ent.Prefix.Contains(dst.Unmap()) && (!best.IsValid() || ent.Prefix.Bits() > best.Bits()) {
			best = ent.Prefix
		}
	}
	return best, best.IsValid()
}

// Address pools the random policies draw from: few bases, so that prefixes
// nest and overlap.
var (
	bases4 = []netip.Addr{
		netip.MustParseAddr("10.0.0.0"), netip.MustParseAddr("10.1.0.0"),
		netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("172.16.0.0"),
		netip.MustParseAddr("100.64.0.0"),
	}
	bases6 = []netip.Addr{
		netip.MustParseAddr("fd00:ec2::254"), netip.MustParseAddr("2001:db8::"),
		netip.MustParseAddr("2001:db8:1::"), netip.MustParseAddr("fd00:10::"),
	}
)

// randomPolicy draws a policy whose allow lists pick among uids, groups,
// "*", unowned and the extra principals.
func randomPolicy(t *testing.T, rng *rand.Rand, extra ...string) (*policy.Policy, []netip.Prefix) {
	t.Helper()
	who := append([]string{"uid:0", "uid:1001", "uid:1002", "uid:1003", "uid:65534", "*", "unowned", "group:imds"}, extra...)
	defaults := map[string]config.Action{"eth0": config.Deny}
	if rng.IntN(2) == 0 {
		defaults["eth0"] = config.Allow
	}
	var eps []nep
	var prefixes []netip.Prefix
	for e := 0; e < 40; e++ {
		var ranges []string
		seen := map[netip.Prefix]bool{}
		for range 3 + rng.IntN(8) {
			var p netip.Prefix
			if rng.IntN(2) == 0 {
				p = jitter(rng, bases4[rng.IntN(len(bases4))], 8+rng.IntN(25))
			} else {
				p = jitter(rng, bases6[rng.IntN(len(bases6))], 16+rng.IntN(113))
			}
			if seen[p] {
				continue
			}
			seen[p] = true
			ranges = append(ranges, p.String())
			prefixes = append(prefixes, p)
		}
		var allow []string
		for _, w := range who {
			if rng.IntN(4) == 0 {
				allow = append(allow, w)
			}
		}
		ne := nep{ep: ep{fmt.Sprintf("ep%d", e), []string{"eth0"}, ranges, allow}}
		narrowRandomly(rng, &ne)
		eps = append(eps, ne)
		// A twin on the same prefixes, narrowed otherwise: rule 3's
		// tie-breaks.
		if rng.IntN(5) == 0 {
			e++
			twin := nep{ep: ep{fmt.Sprintf("ep%d", e), []string{"eth0"}, ranges, nil}}
			for _, w := range who {
				if rng.IntN(4) == 0 {
					twin.allow = append(twin.allow, w)
				}
			}
			narrowRandomly(rng, &twin)
			eps = append(eps, twin)
		}
	}
	p := compileNarrowed(t, defaults, eps...)
	// mode: audit on a quarter of the endpoints (twins make mixes of
	// enforcing and audit winners) and on half of the deny defaults.
	for i := range p.Endpoints {
		p.Endpoints[i].Audit = rng.IntN(4) == 0
	}
	for i := range p.Interfaces {
		p.Interfaces[i].Audit = rng.IntN(2) == 0
	}
	return p, prefixes
}

// narrowRandomly gives about 40% of endpoints a proto list, a ports list
// (1-3 single ports and ranges from 1000-1063, overlapping) or both.
func narrowRandomly(rng *rand.Rand, e *nep) {
	if rng.IntN(5) >= 2 {
		return
	}
	withPorts := rng.IntN(2) == 0
	withProto := !withPorts || rng.IntN(2) == 0
	if withProto {
		var names []string
		for _, n := range []string{"tcp", "udp", "icmp", "icmpv6", "udplite", "sctp", "47"} {
			if rng.IntN(3) == 0 && (!withPorts || n == "tcp" || n == "udp" || n == "udplite" || n == "sctp") {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			names = []string{[]string{"tcp", "udp"}[rng.IntN(2)]}
		}
		e.proto = strings.Join(names, ",")
	}
	if withPorts {
		var items []string
		for range 1 + rng.IntN(3) {
			lo := 1000 + rng.IntN(64)
			if rng.IntN(2) == 0 {
				items = append(items, strconv.Itoa(lo))
			} else {
				items = append(items, fmt.Sprintf("%d-%d", lo, min(lo+rng.IntN(16), 1063)))
			}
		}
		e.ports = strings.Join(items, ",")
	}
}

// jitter flips a few random bits of base below bits, then masks to bits.
func jitter(rng *rand.Rand, base netip.Addr, bits int) netip.Prefix {
	b := base.AsSlice()
	for range 2 {
		if n := rng.IntN(bits + 1); n < len(b)*8 {
			b[n/8] ^= 0x80 >> (n % 8)
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return netip.PrefixFrom(a, bits).Masked()
}

// randomDestination picks an address inside a configured range most of the
// time, elsewhere otherwise, avoiding addresses the client treats specially.
func randomDestination(rng *rand.Rand, prefixes []netip.Prefix) netip.Addr {
	for {
		var a netip.Addr
		switch rng.IntN(10) {
		case 0, 1:
			b := make([]byte, 4)
			for i := range b {
				b[i] = byte(rng.UintN(256))
			}
			a, _ = netip.AddrFromSlice(b)
		case 2:
			b := make([]byte, 16)
			for i := range b {
				b[i] = byte(rng.UintN(256))
			}
			b[0] = 0x20 | b[0]&0x1f // global unicast
			a, _ = netip.AddrFromSlice(b)
		default:
			p := prefixes[rng.IntN(len(prefixes))]
			b := p.Addr().AsSlice()
			for n := p.Bits(); n < len(b)*8; n++ {
				if rng.IntN(2) == 0 {
					b[n/8] ^= 0x80 >> (n % 8)
				}
			}
			a, _ = netip.AddrFromSlice(b)
		}
		if usable(a) {
			if a.Is4() && rng.IntN(8) == 0 {
				return netip.AddrFrom16(a.As16()) // ::ffff:a.b.c.d from a v6 socket
			}
			return a
		}
	}
}

var unusable = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("224.0.0.0/3"), netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("::/8"), netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"), netip.MustParsePrefix("fd77::/16"),
}

func usable(a netip.Addr) bool {
	for _, p := range unusable {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// cachedVerdicts counts the verdict cache entries, over all CPUs, that belong
// to the live policy.
func cachedVerdicts(t *testing.T, f *Filter) int {
	t.Helper()
	entries, err := verdictCache(f.objs.NtfVerdictCache)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if e.Epoch == f.epoch && e.Seq%2 == 0 {
			n++
		}
	}
	return n
}

// ownCgroup is the cgroup v2 path of this process (and of the agents it
// starts outside a cgroup of their own), as /proc/self/cgroup says it.
func ownCgroup(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	t.Fatalf("no cgroup v2 line in /proc/self/cgroup: %q", b)
	return ""
}

// verdictAction is a reference verdict as the kernel reports it.
func verdictAction(v policy.Verdict) Action {
	switch {
	case v.Allowed:
		return ActionAllow
	case v.Audit:
		return ActionAudit
	}
	return ActionDeny
}
