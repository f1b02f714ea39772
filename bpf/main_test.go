// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/policy"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

func TestMain(m *testing.M) { testnet.Main(m) }

// ep is a terse endpoint for tests: ranges and principals as written.
type ep struct {
	name   string
	ifaces []string
	ranges []string
	allow  []string
}

// users and groups the test resolver knows.
var testUsers = map[string]uint32{"alice": 1001, "bob": 1002, "nobody": 65534, "root": 0}
var testGroups = map[string][]uint32{"imds": {1001, 1003}}

type mapResolver struct{}

func (mapResolver) User(name string) (uint32, error) {
	if uid, ok := testUsers[name]; ok {
		return uid, nil
	}
	return 0, fmt.Errorf("%w user %q", policy.ErrUnknown, name)
}

func (mapResolver) Group(name string) ([]uint32, error) {
	if uids, ok := testGroups[name]; ok {
		return uids, nil
	}
	return nil, fmt.Errorf("%w group %q", policy.ErrUnknown, name)
}

func principal(t testing.TB, s string) config.Principal {
	switch {
	case s == "*":
		return config.Principal{Kind: config.PrincipalEveryone, Text: s}
	case s == "unowned":
		return config.Principal{Kind: config.PrincipalUnowned, Text: s}
	case strings.HasPrefix(s, "uid:"):
		n, err := strconv.ParseUint(s[4:], 10, 32)
		if err != nil {
			t.Fatal(err)
		}
		return config.Principal{Kind: config.PrincipalUID, UID: uint32(n), Text: s}
	case strings.HasPrefix(s, "group:"):
		return config.Principal{Kind: config.PrincipalGroup, Text: s}
	case strings.HasPrefix(s, "cgroup:"):
		return config.Principal{Kind: config.PrincipalCgroup, Text: s}
	}
	return config.Principal{Kind: config.PrincipalUser, Text: s}
}

// compile builds a policy from terse endpoints and `interfaces:` defaults
// whose denied packets are dropped silently (deny: drop on every endpoint
// and interfaces: key): the tests that read the verdict from the program's
// return value predate the answers of SPEC §1 rule 4, which
// compileDeny's policies give (reject_test.go).
func compile(t testing.TB, defaults map[string]config.Action, eps ...ep) *policy.Policy {
	t.Helper()
	return compileDeny(t, config.DenyDrop, defaults, eps...)
}

// compileDeny is compile with `deny: mode` on every endpoint and
// interfaces: key (DenyUnset: none, the default reject).
func compileDeny(t testing.TB, mode config.DenyMode, defaults map[string]config.Action, eps ...ep) *policy.Policy {
	t.Helper()
	ifaces := map[string]config.Interface{}
	for pat, a := range defaults {
		ifaces[pat] = config.Interface{Default: a, Deny: mode}
	}
	return compileWith(t, ifaces, func(ce *config.Endpoint, _ int) { ce.Deny = mode }, eps...)
}

// compileWith compiles the endpoints eps, each made a config.Endpoint and
// then given its settings by set (called with its index in eps), under
// the interfaces: key ifaces.
func compileWith(t testing.TB, ifaces map[string]config.Interface, set func(ce *config.Endpoint, i int), eps ...ep) *policy.Policy {
	t.Helper()
	cfg := &config.Config{Interfaces: ifaces}
	for i, e := range eps {
		ce := config.Endpoint{Name: e.name, Site: &config.Site{Ifaces: e.ifaces}}
		for _, r := range e.ranges {
			ce.Ranges = append(ce.Ranges, netip.MustParsePrefix(r))
		}
		for _, a := range e.allow {
			ce.Allow = append(ce.Allow, principal(t, a))
		}
		set(&ce, i)
		cfg.Endpoints = append(cfg.Endpoints, &ce)
	}
	p, err := policy.Compile(cfg, mapResolver{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// openFilter loads the program with its own pin directory inside ns.
func openFilter(t testing.TB, ns *testnet.NS, mode Mode) *Filter {
	t.Helper()
	var f *Filter
	ns.MustDo(t, func() (err error) {
		f, err = Open(Options{PinDir: testPinDir(), Mode: mode})
		return err
	})
	t.Cleanup(func() {
		ns.Do(func() error { return f.Detach() })
	})
	return f
}

// openEvents opens f's decision reader, closed when the test ends.
func openEvents(t testing.TB, f *Filter) *DecisionReader {
	t.Helper()
	events, err := f.Events()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { events.Close() })
	return events
}

// addTun adds a tun device (an L3 device, down) to ns and returns its
// ifindex.
func addTun(t testing.TB, ns *testnet.NS, name string) int {
	t.Helper()
	ns.IP(t, "tuntap", "add", "dev", name, "mode", "tun")
	return ns.Index(t, name)
}

func testPinDir() string {
	b := make([]byte, 4)
	rand.Read(b)
	return filepath.Join("/sys/fs/bpf", "ntft-"+hex.EncodeToString(b))
}

// apply makes p live on every interface of ns that it filters.
func apply(t testing.TB, ns *testnet.NS, f *Filter, p *policy.Policy, log LogMode) uint32 {
	t.Helper()
	var gen uint32
	ns.MustDo(t, func() error {
		ifaces, err := Interfaces()
		if err != nil {
			return err
		}
		gen, err = f.Apply(p, ifaces, log)
		return err
	})
	return gen
}

func attachedNames(f *Filter) []string {
	var names []string
	for _, a := range f.Attachments() {
		names = append(names, a.Iface.Name+"/"+string(a.Mode))
	}
	slices.Sort(names)
	return names
}

// testSeed replays a randomised run: NTF_SEED=<seed from the log>.
func testSeed() uint64 {
	s, _ := strconv.ParseUint(os.Getenv("NTF_SEED"), 10, 64)
	return s
}

// seededRand is a randomised test's source: a fresh seed each run, or
// NTF_SEED's, logged either way so that a failure can be replayed.
func seededRand(t testing.TB) *mrand.Rand {
	t.Helper()
	seed := mrand.Uint64()
	if s := testSeed(); s != 0 {
		seed = s
	}
	t.Logf("seed %d (set NTF_SEED to replay)", seed)
	return mrand.New(mrand.NewPCG(seed, seed>>1))
}

// settled calls read until two results 100 ms apart agree: a packet whose
// sender's call has returned may still be judged later (one that waited
// for neighbour resolution leaves from a softirq), so counts taken at once
// can miss it, under emulation especially.
func settled(t *testing.T, read func() (uint64, error)) {
	t.Helper()
	prev, err := read()
	for range 50 {
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		var cur uint64
		if cur, err = read(); err == nil && cur == prev {
			return
		}
		prev = cur
	}
	t.Fatalf("still changing after 5 s: %d (%v)", prev, err)
}

// settledCounters reads the counters once they have settled (see settled).
func settledCounters(t *testing.T, f *Filter) Counters {
	t.Helper()
	var c Counters
	settled(t, func() (uint64, error) {
		var err error
		c, err = f.Counters()
		return c.Allowed + c.Denied + c.Audited + c.Rejected + c.RejectLimited + c.RejectFailed, err
	})
	return c
}
