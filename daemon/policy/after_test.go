// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
)

// dropIn is a drop-in as the parse cache holds it: its endpoints, which
// stay the same objects while the file is unchanged.
type dropIn struct {
	file string
	eps  []*config.Endpoint
}

// mergeDropIns merges as config.Load does: in order, an endpoint of a name
// seen before taking the earlier one's place.
func mergeDropIns(files ...dropIn) *config.Config {
	cfg := &config.Config{Interfaces: map[string]config.Interface{}}
	at := map[string]int{}
	for _, f := range files {
		cfg.Files = append(cfg.Files, f.file)
		for _, ep := range f.eps {
			if i, ok := at[ep.Name]; ok {
				cfg.Endpoints[i] = ep
				continue
			}
			at[ep.Name] = len(cfg.Endpoints)
			cfg.Endpoints = append(cfg.Endpoints, ep)
		}
	}
	return cfg
}

func afterEndpoint(file, name string, n int, allow ...string) *config.Endpoint {
	ep := &config.Endpoint{Name: name, Line: int32(n), Site: &config.Site{File: file, Ifaces: []string{"eth0"}},
		Ranges: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(n >> 8), byte(n), 0}), 24)}}
	for _, a := range allow {
		ep.Allow = append(ep.Allow, pr(a, n))
	}
	return ep
}

// samePolicy fails unless got is what Compile makes of the set.
func samePolicy(t *testing.T, what string, got, want *Policy) {
	t.Helper()
	if !got.Equal(want) {
		t.Fatalf("%s: not the policy Compile makes of the set", what)
	}
	for i := range want.Endpoints {
		if !got.Endpoints[i].Principals.Equal(*want.Endpoints[i].Principals) {
			t.Fatalf("%s: endpoint %s allows %v, Compile says %v", what, want.Endpoints[i].Name, got.Endpoints[i].Principals, want.Endpoints[i].Principals)
		}
	}
}

// A reload keeps the principals of the endpoints it is handed again whose
// allow lists no resolver answers for, also past a drop-in that grew, and
// resolves the others again: a name whose uid changed gets the new one.
func TestCompileAfterKeeps(t *testing.T) {
	a := dropIn{"a.yml", []*config.Endpoint{
		afterEndpoint("a.yml", "a1", 1, "uid:5"), afterEndpoint("a.yml", "a2", 2, "alice"), afterEndpoint("a.yml", "a3", 3, "cgroup:/system.slice/x.service", "unowned"),
	}}
	b := dropIn{"b.yml", []*config.Endpoint{afterEndpoint("b.yml", "b1", 10, "uid:7"), afterEndpoint("b.yml", "b2", 11, "*")}}
	c := dropIn{"c.yml", []*config.Endpoint{
		afterEndpoint("c.yml", "c1", 20, "*"), afterEndpoint("c.yml", "c2", 21, "unowned", "uid:9"), afterEndpoint("c.yml", "c3", 22, "group:wheel"),
	}}
	r := testResolver()
	p1, err := Compile(mergeDropIns(a, b, c), r)
	if err != nil {
		t.Fatal(err)
	}

	// b grows by two endpoints; alice is another uid now.
	b2 := dropIn{"b.yml", []*config.Endpoint{
		afterEndpoint("b.yml", "b1", 10, "uid:7"), afterEndpoint("b.yml", "b2", 11, "*"), afterEndpoint("b.yml", "b3", 12, "uid:8"), afterEndpoint("b.yml", "b4", 13, "uid:8"),
	}}
	r.users["alice"] = 2000
	cfg2 := mergeDropIns(a, b2, c)
	p2, err := CompileAfter(cfg2, r, p1)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Compile(cfg2, r)
	samePolicy(t, "after b grew", p2, want)
	kept := map[string]bool{"a1": true, "a3": true, "c1": true, "c2": true} // literal, handed out again
	for i, e := range p2.Endpoints {
		var before *Principals
		for _, f := range p1.Endpoints {
			if f.Endpoint == e.Endpoint {
				before = f.Principals
			}
		}
		if got := before != nil && e.Principals == before; got != kept[e.Name] {
			t.Errorf("endpoint %d (%s): kept the principals before %v, want %v", i, e.Name, got, kept[e.Name])
		}
	}
	if got := p2.Endpoints[1].Principals.UIDs; len(got) != 1 || got[0] != 2000 {
		t.Errorf("a2 allows %v after alice became uid 2000", got)
	}

	// A later drop-in takes a1's name: its endpoint takes a1's place and
	// must not be given a1's principals.
	d := dropIn{"d.yml", []*config.Endpoint{afterEndpoint("d.yml", "a1", 30, "uid:6")}}
	cfg3 := mergeDropIns(a, b2, c, d)
	p3, err := CompileAfter(cfg3, r, p2)
	if err != nil {
		t.Fatal(err)
	}
	want, _ = Compile(cfg3, r)
	samePolicy(t, "a1 redefined", p3, want)
	if got := p3.Endpoints[0].Principals.UIDs; len(got) != 1 || got[0] != 6 {
		t.Errorf("a1 redefined allows %v, want [6]", got)
	}

	// Resolving names again keeps the literal principals as well.
	r.users["alice"] = 3000
	q := p3.Resolve(r)
	if q.Endpoints[2].Principals != p3.Endpoints[2].Principals || q.Endpoints[1].Principals.UIDs[0] != 3000 {
		t.Errorf("Resolve: a3 kept %v, a2 allows %v", q.Endpoints[2].Principals == p3.Endpoints[2].Principals, q.Endpoints[1].Principals.UIDs)
	}
}

// Random reloads (drop-ins changed, grown, shrunk, added, removed, names
// taken over by later drop-ins, reordered) each compiled after the one
// before: every result must be the policy Compile makes of the set, with
// principals compiled from the same endpoint only.
func TestCompileAfterRandom(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("NTF_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d (NTF_SEED=%d repeats this run)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	allows := []string{"uid:1", "uid:2", "*", "unowned", "cgroup:/a", "alice", "group:wheel", "uid:3"}
	line := 0
	newFile := func(name string) dropIn {
		f := dropIn{file: name}
		for range rng.IntN(6) {
			line++
			var allow []string
			for range 1 + rng.IntN(2) {
				allow = append(allow, allows[rng.IntN(len(allows))])
			}
			// Names repeat across drop-ins now and then.
			f.eps = append(f.eps, afterEndpoint(name, fmt.Sprintf("e%d", rng.IntN(60)), line, allow...))
		}
		return f
	}
	var files []dropIn
	for i := range 6 {
		files = append(files, newFile(fmt.Sprintf("%d.yml", i)))
	}
	r := testResolver()
	var prev *Policy
	for round := range 300 {
		switch k := rng.IntN(len(files) + 1); {
		case k == len(files):
			files = append(files, newFile(fmt.Sprintf("n%d.yml", round)))
		case rng.IntN(4) == 0 && len(files) > 1:
			files = append(files[:k], files[k+1:]...)
		case rng.IntN(5) == 0:
			j := rng.IntN(len(files))
			files[k], files[j] = files[j], files[k]
		default:
			files[k] = newFile(files[k].file)
		}
		if rng.IntN(10) == 0 {
			r.users["alice"] = uint32(1000 + round)
		}
		cfg := mergeDropIns(files...)
		want, werr := Compile(cfg, r)
		got, err := CompileAfter(cfg, r, prev)
		if (err == nil) != (werr == nil) {
			t.Fatalf("round %d: CompileAfter: %v, Compile: %v", round, err, werr)
		}
		if err != nil {
			continue
		}
		samePolicy(t, fmt.Sprintf("round %d", round), got, want)
		prev = got
	}
}
