// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// aep is an endpoint of an audit test: ep with a mode.
type aep struct {
	ep
	audit bool
}

// compileModes is compile with `mode:` on endpoints and interfaces.
func compileModes(t testing.TB, ifaces map[string]config.Interface, eps ...aep) *policy.Policy {
	t.Helper()
	plain := make([]ep, len(eps))
	for i, e := range eps {
		plain[i] = e.ep
	}
	// deny: drop, as compile's: what an enforcing endpoint denies is
	// dropped (TC_ACT_SHOT), not answered (TestReject's part).
	return compileWith(t, ifaces, func(ce *config.Endpoint, i int) {
		ce.Audit, ce.Deny = eps[i].audit, config.DenyDrop
	}, plain...)
}

// auditProbe is a probe with the verdict the event must carry.
type auditProbe struct {
	who    string
	uid    uint32
	dst    netip.Addr
	passes bool // the traffic arrives
	action string
}

func eventAction(ev KernelDecision) string {
	switch {
	case ev.Allowed && ev.Audit:
		return "allow+audit" // never valid
	case ev.Allowed:
		return "allow"
	case ev.Audit:
		return "audit"
	}
	return "deny"
}

// TestAudit sends real traffic as real uids through policies in mode:
// audit: a packet that every winner (or the interface's deny default)
// audits passes and is reported and counted as audited; an allowed one is
// allowed, not audited; a mix of enforcing and audit winners drops.
func TestAudit(t *testing.T) {
	eachMode(t, testAudit)
}

func testAudit(t *testing.T, mode Mode) {
	tp := testnet.NewTopology(t, testnet.Options{})
	tp.ServeTCP(t, port)
	tp.ServeUDPEcho(t, port)
	agents := map[string]*testnet.Agent{
		"alice": testnet.StartAgent(t, tp.Client, 1001),
		"bob":   testnet.StartAgent(t, tp.Client, 1002),
	}
	f := openFilter(t, tp.Client, mode)
	events := openEvents(t, f)
	eth0 := []string{"eth0"}
	imds := []string{"169.254.169.254/32", "fd00:ec2::254/128"}

	cases := []struct {
		name     string
		ifaces   map[string]config.Interface
		eps      []aep
		probes   []auditProbe
		endpoint string // its counters: audited packets, none denied
	}{{
		name:     "endpoint in audit mode",
		ifaces:   map[string]config.Interface{"eth0": {Default: config.Allow}},
		eps:      []aep{{ep{"imds-rollout", eth0, imds, []string{"alice"}}, true}},
		endpoint: "imds-rollout",
		probes: []auditProbe{
			{"bob", 1002, imds4, true, "audit"}, {"bob", 1002, imds6, true, "audit"},
			{"alice", 1001, imds4, true, "allow"}, {"alice", 1001, imds6, true, "allow"},
		},
	}, {
		name:   "interface default in audit mode",
		ifaces: map[string]config.Interface{"eth0": {Default: config.Deny, Audit: true}},
		eps:    []aep{{ep{"imds", eth0, imds, []string{"alice"}}, false}},
		probes: []auditProbe{
			{"bob", 1002, other, true, "audit"}, {"alice", 1001, other, true, "audit"},
			{"bob", 1002, imds4, false, "deny"}, // the endpoint still enforces
			{"alice", 1001, imds4, true, "allow"},
		},
	}, {
		name:   "a mix of enforcing and audit winners enforces",
		ifaces: map[string]config.Interface{"eth0": {Default: config.Allow}},
		eps: []aep{
			{ep{"enforced", eth0, imds, []string{"alice"}}, false},
			{ep{"audited", eth0, imds, []string{"uid:1003"}}, true},
		},
		probes: []auditProbe{
			{"bob", 1002, imds4, false, "deny"}, {"bob", 1002, imds6, false, "deny"},
			{"alice", 1001, imds4, true, "allow"},
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, err := f.Traffic()
			if err != nil {
				t.Fatal(err)
			}
			apply(t, tp.Client, f, compileModes(t, c.ifaces, c.eps...), LogAll)
			drain(events)
			for _, p := range c.probes {
				testnet.Expect(t, agents[p.who], p.dst, port, p.passes)
				// The UDP probe's datagram is the one judged for
				// sure (TCP adds the server's side); every event
				// of this owner and destination must agree.
				got := ownEvents(t, events, p.uid, p.dst)
				if len(got) == 0 {
					t.Errorf("%s to %s: no decision event", p.who, p.dst)
				}
				for _, ev := range got {
					if a := eventAction(ev); a != p.action {
						t.Errorf("%s to %s: event action %s, want %s (%+v)", p.who, p.dst, a, p.action, ev)
					}
				}
			}
			if c.endpoint == "" {
				return
			}
			after, err := f.Traffic()
			if err != nil {
				t.Fatal(err)
			}
			b, a := before.Endpoints[c.endpoint], after.Endpoints[c.endpoint]
			if a.Audited <= b.Audited || a.Denied != b.Denied {
				t.Errorf("counters of %s: %+v before, %+v after: want audited packets and no denied ones", c.endpoint, b, a)
			}
			c, err := f.Counters()
			if err != nil || c.Audited == 0 {
				t.Errorf("Counters() = %+v, %v: want audited packets", c, err)
			}
		})
	}
}

// drain skips the events queued so far.
func drain(events *DecisionReader) {
	for {
		events.SetDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := events.Read(); err != nil {
			return
		}
	}
}

// ownEvents reads the events queued so far and keeps those of packets
// from uid to dst.
func ownEvents(t *testing.T, events *DecisionReader, uid uint32, dst netip.Addr) []KernelDecision {
	t.Helper()
	var out []KernelDecision
	for {
		events.SetDeadline(time.Now().Add(100 * time.Millisecond))
		ev, err := events.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatalf("read events: %v", err)
		}
		if !ev.Unowned && ev.UID == uid && ev.Dst == dst.Unmap() {
			out = append(out, ev)
		}
	}
}

// TestAuditSourceRoute: every address of a source route is judged (SPEC
// §1 rule 6) with audit mode too: addresses that audit mode passes let
// the packet pass as audited, one that is denied for good drops it.
// Test runs send as root, whom no endpoint here allows.
func TestAuditSourceRoute(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.NewNS(t, "a")
	f := openFilter(t, ns, ModeAuto)
	events := openEvents(t, f)
	lo := []string{"lo"}
	p := compileModes(t, map[string]config.Interface{"lo": {Default: config.Allow}},
		aep{ep{"md", lo, []string{"169.254.169.254/32"}, []string{"alice"}}, true},
		aep{ep{"int", lo, []string{"10.0.0.0/8"}, []string{"alice"}}, false},
		aep{ep{"int2", lo, []string{"172.16.0.0/12"}, []string{"alice"}}, true},
	)
	r := &ptRunner{ns: ns, f: f, events: events}
	r.gen = apply(t, ns, f, p, LogAll)
	r.drain(t)
	int2 := netip.MustParseAddr("172.16.1.1")
	cases := []struct {
		name   string
		frame  []byte
		ret    uint32
		dst    netip.Addr // the address the event names
		action string
	}{
		{"audited destination", ptEth4(ptUDP4(ptMD4)), ptPass, ptMD4, "audit"},
		{"audited first hop, audited route", ptEth4(ptIPv4Opts(ptUDP4(int2), ptSourceRoute(0x83, ptMD4))), ptPass, int2, "audit"},
		{"audited first hop, enforced route address", ptEth4(ptIPv4Opts(ptUDP4(int2), ptSourceRoute(0x83, ptInt4, ptMD4))), ptDrop, ptInt4, "deny"},
		{"audited first hop, audited then enforced route address", ptEth4(ptIPv4Opts(ptUDP4(int2), ptSourceRoute(0x83, ptMD4, ptInt4))), ptDrop, ptInt4, "deny"},
		{"allowed first hop, audited route", ptEth4(ptIPv4Opts(ptUDP4(ptOut4), ptSourceRoute(0x89, ptMD4))), ptPass, ptMD4, "audit"},
		{"enforced first hop", ptEth4(ptIPv4Opts(ptUDP4(ptInt4), ptSourceRoute(0x83, ptMD4))), ptDrop, ptInt4, "deny"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, raw := r.run(t, 0, c.frame)
			if got.err != nil || got.ret != c.ret {
				t.Errorf("ret %#x (err %v), want %#x", got.ret, got.err, c.ret)
			}
			if len(raw) != 1 {
				t.Fatalf("%d events, want 1", len(raw))
			}
			if a := eventAction(raw[0]); a != c.action || raw[0].Dst != c.dst {
				t.Errorf("event %s to %s, want %s to %s", a, raw[0].Dst, c.action, c.dst)
			}
		})
	}
}
