// SPDX-License-Identifier: Apache-2.0

package config

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// seed is the seed's configuration, byte for byte.
const seed = `endpoints:
    - imdsv2:
        iface: [eth0]
        range: [169.254.169.254/32, fd00:ec2::254/128]
        allow:
          - testuser
`

func TestSeedParsesUnchanged(t *testing.T) {
	dir := writeSet(t, map[string]string{mainName: seed})
	main := filepath.Join(dir, mainName)
	got := mustLoad(t, dir)
	want := &Config{
		Endpoints: []*Endpoint{{
			Name:   "imdsv2",
			Site:   &Site{File: main, Ifaces: []string{"eth0"}},
			Ranges: prefixes("169.254.169.254/32", "fd00:ec2::254/128"),
			Allow: []Principal{{
				Kind: PrincipalUser, Text: "testuser", Line: 6,
			}},
			Line: 2,
		}},
		Interfaces: map[string]Interface{},
		Log:        Log{Level: "info", Decisions: "denied", Rate: 50},
		OnStop:     OnStopDetach,
		Files:      []string{main},
		Sums:       [][sha256.Size]byte{sha256.Sum256([]byte(seed))},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load(seed) =\n%+v\nwant\n%+v", got, want)
	}
}

// TestSums: a Config names the version of each file it was parsed from,
// through the cache as without it, and a file changed since is told apart.
func TestSums(t *testing.T) {
	dir := writeSet(t, map[string]string{mainName: seed, "conf.d/a.yml": "on_stop: keep\n"})
	main, dropIn := filepath.Join(dir, mainName), filepath.Join(dir, "conf.d/a.yml")
	var c Cache
	for i, content := range []string{"on_stop: keep\n", "on_stop: keep\n", "on_stop: detach\n"} {
		if err := os.WriteFile(dropIn, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		want := [][sha256.Size]byte{sha256.Sum256([]byte(seed)), sha256.Sum256([]byte(content))}
		plain, err := loadSet(t, dir)
		if err != nil {
			t.Fatal(err)
		}
		cached, errs := c.loadPartial(main, uint32(os.Getuid()))
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		for _, cfg := range []*Config{plain, cached} {
			if !reflect.DeepEqual(cfg.Sums, want) || len(cfg.Files) != len(cfg.Sums) {
				t.Errorf("load %d: Sums = %x, want %x (files %v)", i, cfg.Sums, want, cfg.Files)
			}
		}
	}
}

func TestLoadRequiresRootOwnership(t *testing.T) {
	testnet.RequireRoot(t)
	dir := writeSet(t, map[string]string{mainName: seed})
	cfg, err := Load(filepath.Join(dir, mainName))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(cfg.Endpoints) != 1 || cfg.Endpoints[0].Name != "imdsv2" {
		t.Errorf("Endpoints = %+v, want imdsv2 only", cfg.Endpoints)
	}
}

func TestExtendedExample(t *testing.T) {
	dir := writeSet(t, map[string]string{mainName: seed + lines(
		`interfaces:`,               // 7
		`  eth0: {default: allow}`,  // 8
		`  "*": {default: deny}`,    // 9
		`log:`,                      // 10
		`  level: debug`,            // 11
		`  decisions: all`,          // 12
		`  rate: 7`,                 // 13
		`on_stop: keep # comment`)}, // 14
	)
	main := filepath.Join(dir, mainName)
	got := mustLoad(t, dir)
	wantIfs := map[string]Interface{
		"eth0": {Default: Allow, Pos: Pos{File: main, Line: 8}},
		"*":    {Default: Deny, Pos: Pos{File: main, Line: 9}},
	}
	if !reflect.DeepEqual(got.Interfaces, wantIfs) {
		t.Errorf("Interfaces = %+v, want %+v", got.Interfaces, wantIfs)
	}
	if want := (Log{Level: "debug", Decisions: "all", Rate: 7}); got.Log != want {
		t.Errorf("Log = %+v, want %+v", got.Log, want)
	}
	if got.OnStop != OnStopKeep {
		t.Errorf("OnStop = %q, want keep", got.OnStop)
	}
}

// TestMode reads `mode:` on endpoints and interfaces, and a drop-in that
// replaces an endpoint or an interfaces key takes its mode with it.
func TestMode(t *testing.T) {
	dir := writeSet(t, map[string]string{
		mainName: lines(
			"endpoints:",
			"  - a: {iface: eth0, range: 10.0.0.0/8, allow: [], mode: audit}",
			"  - b: {iface: eth0, range: 10.1.0.0/16, allow: [], mode: enforce}",
			"  - c: {iface: eth0, range: 10.2.0.0/16, allow: [], mode: audit}",
			"  - d: {iface: eth0, range: 10.3.0.0/16, allow: []}",
			"interfaces:",
			"  eth0: {default: deny, mode: audit}",
			"  eth1: {default: deny, mode: audit}",
			"  eth2: {}"),
		"conf.d/50-x.yml": lines(
			"endpoints:",
			"  - c: {iface: eth0, range: 10.2.0.0/16, allow: []}",
			"interfaces:",
			"  eth1: {default: deny}"),
	})
	got := mustLoad(t, dir)
	audit := map[string]bool{}
	for _, e := range got.Endpoints {
		audit[e.Name] = e.Audit
	}
	if want := map[string]bool{"a": true, "b": false, "c": false, "d": false}; !reflect.DeepEqual(audit, want) {
		t.Errorf("endpoint modes (audit) = %v, want %v", audit, want)
	}
	ifs := map[string]bool{}
	for k, v := range got.Interfaces {
		ifs[k] = v.Audit
	}
	if want := map[string]bool{"eth0": true, "eth1": false, "eth2": false}; !reflect.DeepEqual(ifs, want) {
		t.Errorf("interface modes (audit) = %v, want %v", ifs, want)
	}
}

// endpointNames lists the endpoints' names with the file:line they come from.
func endpointNames(dir string, cfg *Config) []string {
	var out []string
	for _, ep := range cfg.Endpoints {
		rel, _ := filepath.Rel(dir, ep.Pos().File)
		out = append(out, ep.Name+"@"+Pos{File: rel, Line: ep.Pos().Line}.String())
	}
	return out
}

const (
	epA = "  - a: {iface: eth0, range: 10.0.0.0/8, allow: [alice]}\n"
	epB = "  - b: {iface: eth1, range: 10.1.0.0/16, allow: []}\n"
	epC = "  - c: {iface: eth2, range: 10.2.0.0/16, allow: []}\n"
)

func TestMerge(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		check func(t *testing.T, dir string, cfg *Config)
	}{{
		name: "endpoint replaced whole, keeping its place",
		files: map[string]string{
			mainName: "endpoints:\n" + epA + epB,
			"conf.d/50-a.yml": lines(
				"# replaces a",
				"endpoints:",
				"  - c: {iface: eth2, range: 10.2.0.0/16, allow: []}",
				"  - a: {iface: wg0, range: [192.0.2.0/24], allow: []}"),
		},
		check: func(t *testing.T, dir string, cfg *Config) {
			names := endpointNames(dir, cfg)
			wantNames := []string{"a@conf.d/50-a.yml:4", "b@" + m(3), "c@conf.d/50-a.yml:3"}
			if !reflect.DeepEqual(names, wantNames) {
				t.Errorf("endpoints = %v, want %v", names, wantNames)
			}
			a := cfg.Endpoints[0]
			if !reflect.DeepEqual(a.Ifaces(), []string{"wg0"}) || !reflect.DeepEqual(a.Ranges, prefixes("192.0.2.0/24")) || len(a.Allow) != 0 {
				t.Errorf("a = %+v, want the drop-in's a only (wg0, 192.0.2.0/24, nobody)", a)
			}
		},
	}, {
		name: "drop-ins apply in lexical order, later wins",
		files: map[string]string{
			mainName:         "on_stop: keep\nlog: {rate: 1}\n",
			"conf.d/10.yml":  "log: {rate: 10}\n",
			"conf.d/9.yml":   "log: {rate: 9}\n",
			"conf.d/a-x.yml": "on_stop: detach\n",
		},
		check: func(t *testing.T, dir string, cfg *Config) {
			if cfg.Log.Rate != 9 || cfg.OnStop != OnStopDetach {
				t.Errorf("rate %d on_stop %q, want 9 (\"9.yml\" sorts after \"10.yml\") and detach", cfg.Log.Rate, cfg.OnStop)
			}
			var rel []string
			for _, f := range cfg.Files {
				r, _ := filepath.Rel(dir, f)
				rel = append(rel, r)
			}
			if want := []string{mainName, "conf.d/10.yml", "conf.d/9.yml", "conf.d/a-x.yml"}; !reflect.DeepEqual(rel, want) {
				t.Errorf("Files = %v, want %v", rel, want)
			}
		},
	}, {
		name: "interfaces merge key by key",
		files: map[string]string{
			mainName:       "interfaces:\n  eth0: {default: allow}\n  eth1: {default: allow}\n",
			"conf.d/x.yml": "interfaces:\n  eth1: {default: deny}\n  \"wg*\": {default: allow}\n",
		},
		check: func(t *testing.T, dir string, cfg *Config) {
			x := filepath.Join(dir, "conf.d/x.yml")
			want := map[string]Interface{
				"eth0": {Default: Allow, Pos: Pos{File: filepath.Join(dir, mainName), Line: 2}},
				"eth1": {Default: Deny, Pos: Pos{File: x, Line: 2}},
				"wg*":  {Default: Allow, Pos: Pos{File: x, Line: 3}},
			}
			if !reflect.DeepEqual(cfg.Interfaces, want) {
				t.Errorf("Interfaces = %+v, want %+v", cfg.Interfaces, want)
			}
		},
	}, {
		name: "deny on interfaces and endpoints",
		files: map[string]string{
			mainName: lines(
				"interfaces:",
				"  ens6: {default: deny, deny: drop}",
				"  eth0: {deny: reject}",
				"  eth1: {default: allow}",
				"endpoints:",
				"  - a: {iface: eth0, range: 10.0.0.0/8, allow: [], deny: drop}",
				"  - b: {iface: eth0, range: 10.1.0.0/16, allow: [], deny: reject}",
				"  - c: {iface: eth0, range: 10.2.0.0/16, allow: []}"),
		},
		check: func(t *testing.T, dir string, cfg *Config) {
			main := filepath.Join(dir, mainName)
			wantIfs := map[string]Interface{
				"ens6": {Default: Deny, Deny: DenyDrop, Pos: Pos{File: main, Line: 2}},
				"eth0": {Default: Deny, Deny: DenyReject, Pos: Pos{File: main, Line: 3}},
				"eth1": {Default: Allow, Pos: Pos{File: main, Line: 4}},
			}
			if !reflect.DeepEqual(cfg.Interfaces, wantIfs) {
				t.Errorf("Interfaces = %+v, want %+v", cfg.Interfaces, wantIfs)
			}
			var got []DenyMode
			for _, e := range cfg.Endpoints {
				got = append(got, e.Deny)
			}
			if want := []DenyMode{DenyDrop, DenyReject, DenyUnset}; !reflect.DeepEqual(got, want) {
				t.Errorf("endpoints' deny = %q, want %q", got, want)
			}
		},
	}, {
		name: "scalars merge key by key",
		files: map[string]string{
			mainName:       "log: {level: warn, decisions: all, rate: 5}\non_stop: keep\n",
			"conf.d/x.yml": "log: {rate: 100}\n",
			"conf.d/y.yml": "log: {level: error}\n",
		},
		check: func(t *testing.T, dir string, cfg *Config) {
			if want := (Log{Level: "error", Decisions: "all", Rate: 100}); cfg.Log != want {
				t.Errorf("Log = %+v, want %+v", cfg.Log, want)
			}
			if cfg.OnStop != OnStopKeep {
				t.Errorf("OnStop = %q, want keep (drop-ins do not set it)", cfg.OnStop)
			}
		},
	}, {
		name:  "defaults where the set is silent",
		files: map[string]string{mainName: "endpoints:\n" + epC},
		check: func(t *testing.T, dir string, cfg *Config) {
			if want := (Log{Level: DefaultLogLevel, Decisions: DefaultLogDecisions, Rate: DefaultLogRate}); cfg.Log != want {
				t.Errorf("Log = %+v, want %+v", cfg.Log, want)
			}
			if cfg.OnStop != DefaultOnStop || cfg.Interfaces == nil || len(cfg.Interfaces) != 0 {
				t.Errorf("OnStop %q Interfaces %v, want detach and an empty map", cfg.OnStop, cfg.Interfaces)
			}
		},
	}, {
		name: "an endpoint only in a drop-in is appended",
		files: map[string]string{
			mainName:       "endpoints:\n" + epA,
			"conf.d/b.yml": "endpoints:\n" + epB,
		},
		check: func(t *testing.T, dir string, cfg *Config) {
			if got, want := endpointNames(dir, cfg), []string{"a@" + m(2), "b@conf.d/b.yml:2"}; !reflect.DeepEqual(got, want) {
				t.Errorf("endpoints = %v, want %v", got, want)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeSet(t, tt.files)
			tt.check(t, dir, mustLoad(t, dir))
		})
	}
}

// TestErrorsAcrossFiles checks that every problem of every file comes back
// in one Errors, sorted by file order and then line.
func TestErrorsAcrossFiles(t *testing.T) {
	dir := writeSet(t, map[string]string{
		mainName: lines(
			"endpoints:",              // 1
			"  - a:",                  // 2
			"      iface: eth0",       // 3
			"      range: 10.0.0.1/8", // 4
			"      allow: [1005]",     // 5
			"log: {rate: 0}",          // 6
			"on_stop: never"),         // 7
		"conf.d/10-first.yml": lines(
			"interfaces:",              // 1
			"  eth0: {default: maybe}", // 2
			"endpoints:",               // 3
			"  - b:",                   // 4
			"      iface: eth0"),       // 5
		"conf.d/20-second.yml": lines("bogus: 1"),
		"conf.d/30-unsafe.yml": "on_stop: keep\n",
	})
	chmod(t, filepath.Join(dir, "conf.d/30-unsafe.yml"), 0o620)
	cfg, err := loadSet(t, dir)
	if cfg != nil {
		t.Errorf("Config = %+v, want nil", cfg)
	}
	got := errorList(t, dir, err)
	want := []string{
		m(4) + `: endpoint "a": range 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?`,
		m(5) + `: endpoint "a": allow entry 1005 is a number; write uid:1005 for a uid (a bare number could be read as a name or an id)`,
		m(6) + `: log.rate must be between 1 and 2147483647, not 0`,
		m(7) + `: on_stop must be one of detach, keep, not the string "never"`,
		`conf.d/10-first.yml:2: interface "eth0": default must be one of allow, deny, not the string "maybe"`,
		`conf.d/10-first.yml:4: endpoint "b": missing range (the addresses or CIDR prefixes it guards)`,
		`conf.d/10-first.yml:4: endpoint "b": missing allow; write allow: [] to deny everyone`,
		`conf.d/20-second.yml:1: unknown key "bogus"; known: endpoints, interfaces, log, on_stop, metrics`,
		`conf.d/30-unsafe.yml: refusing: writable by group or others (mode 0620); a user who can write it could grant itself access — chmod go-w ` + filepath.Join(dir, "conf.d/30-unsafe.yml"),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestErrorsSortedByLine(t *testing.T) {
	// Emitted out of line order: the missing-settings error is found after
	// the unknown key below it, at the endpoint's name.
	dir := writeSet(t, map[string]string{mainName: lines(
		"endpoints:",      // 1
		"  - a:",          // 2
		"      range: x",  // 3
		"      colour: 1", // 4
		"whatever: 1",     // 5
	)})
	_, err := loadSet(t, dir)
	got := errorList(t, dir, err)
	var at []string
	for _, e := range got {
		a, _, _ := strings.Cut(e, ": ")
		at = append(at, a)
	}
	if want := []string{m(2), m(2), m(3), m(4), m(5)}; !reflect.DeepEqual(at, want) {
		t.Errorf("positions %v, want %v\n%s", at, want, strings.Join(got, "\n"))
	}
}

func TestIPv4MappedNormalisation(t *testing.T) {
	dir := writeSet(t, map[string]string{mainName: lines(
		"endpoints:",
		"  - a:",
		"      iface: eth0",
		"      allow: []",
		"      range:",
		"        - ::ffff:169.254.169.254",
		"        - ::ffff:10.0.0.0/104",
		"        - ::ffff:0.0.0.0/96",
		"        - 192.0.2.7",
		"        - fd00::1",
		"        - ::/80",
	)})
	got := mustLoad(t, dir).Endpoints[0].Ranges
	want := prefixes("169.254.169.254/32", "10.0.0.0/8", "0.0.0.0/0", "192.0.2.7/32", "fd00::1/128", "::/80")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ranges = %v, want %v", got, want)
	}
	for _, p := range got[:4] {
		if !p.Addr().Is4() {
			t.Errorf("%v is not stored as IPv4", p)
		}
	}
}

func TestPrincipals(t *testing.T) {
	dir := writeSet(t, map[string]string{mainName: lines(
		"endpoints:",                   // 1
		"  - a:",                       // 2
		"      iface: eth0",            // 3
		"      range: 10.0.0.0/8",      // 4
		"      allow:",                 // 5
		"        - alice",              // 6
		"        - uid:0",              // 7
		"        - uid:4294967293",     // 8
		"        - group:imds-readers", // 9
		`        - "*"`,                // 10
		"        - unowned",            // 11
		"        - nobody",             // 12
	)})
	got := mustLoad(t, dir).Endpoints[0].Allow
	want := []Principal{
		{Kind: PrincipalUser, Text: "alice", Line: 6},
		{Kind: PrincipalUID, UID: 0, Text: "uid:0", Line: 7},
		{Kind: PrincipalUID, UID: 4294967293, Text: "uid:4294967293", Line: 8},
		{Kind: PrincipalGroup, Text: "group:imds-readers", Line: 9},
		{Kind: PrincipalEveryone, Text: "*", Line: 10},
		{Kind: PrincipalUnowned, Text: "unowned", Line: 11},
		{Kind: PrincipalUser, Text: "nobody", Line: 12},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("allow =\n%+v\nwant\n%+v", got, want)
	}
	names := []string{"alice", "", "", "imds-readers", "", "", "nobody"}
	for i, pr := range got {
		if i < len(names) && pr.Name() != names[i] {
			t.Errorf("%q: Name %q, want %q", pr.Text, pr.Name(), names[i])
		}
	}
}

func TestValidForms(t *testing.T) {
	tests := []struct {
		name    string
		content string
		check   func(t *testing.T, cfg *Config)
	}{{
		name:    "scalars for iface, range and allow",
		content: "endpoints:\n  - a:\n      iface: eth0.100\n      range: 10.0.0.0/8\n      allow: alice\n",
		check: func(t *testing.T, cfg *Config) {
			ep := cfg.Endpoints[0]
			if !reflect.DeepEqual(ep.Ifaces(), []string{"eth0.100"}) || !reflect.DeepEqual(ep.Ranges, prefixes("10.0.0.0/8")) ||
				len(ep.Allow) != 1 || ep.Allow[0].Name() != "alice" || ep.Allow[0].Line != 5 {
				t.Errorf("endpoint = %+v", ep)
			}
		},
	}, {
		name:    "allow: [] allows nobody",
		content: "endpoints:\n  - a: {iface: [eth0, \"veth*\", \"*\"], range: [10.0.0.0/8], allow: []}\n",
		check: func(t *testing.T, cfg *Config) {
			ep := cfg.Endpoints[0]
			if ep.Allow == nil || len(ep.Allow) != 0 || !reflect.DeepEqual(ep.Ifaces(), []string{"eth0", "veth*", "*"}) {
				t.Errorf("endpoint = %+v, want empty non-nil Allow and three ifaces", ep)
			}
		},
	}, {
		name:    "interface without settings defaults to deny",
		content: "interfaces:\n  eth0:\n  wg0: {}\n",
		check: func(t *testing.T, cfg *Config) {
			if cfg.Interfaces["eth0"].Default != Deny || cfg.Interfaces["wg0"].Default != Deny || cfg.Interfaces["wg0"].Pos.Line != 3 {
				t.Errorf("Interfaces = %+v, want eth0 and wg0 deny", cfg.Interfaces)
			}
		},
	}, {
		name:    "empty sections",
		content: "endpoints:\ninterfaces:\nlog:\n",
		check: func(t *testing.T, cfg *Config) {
			if len(cfg.Endpoints) != 0 || len(cfg.Interfaces) != 0 || cfg.Log.Rate != DefaultLogRate {
				t.Errorf("cfg = %+v, want an empty config with defaults", cfg)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeSet(t, map[string]string{mainName: tt.content})
			tt.check(t, mustLoad(t, dir))
		})
	}
}

// TestAliases checks that values reached through YAML aliases and merge
// keys are decoded and positioned where they are written.
func TestAliases(t *testing.T) {
	dir := writeSet(t, map[string]string{mainName: lines(
		"endpoints:",                          // 1
		"  - a: &base",                        // 2
		"      iface: eth0",                   // 3
		"      range: 10.0.0.0/8",             // 4
		"      allow: &admins [alice, uid:0]", // 5
		"  - b:",                              // 6
		"      <<: *base",                     // 7
		"      range: 10.1.0.0/16",            // 8
		"  - c: {iface: eth1, range: 10.2.0.0/16, allow: *admins}", // 9
	)})
	cfg := mustLoad(t, dir)
	if len(cfg.Endpoints) != 3 {
		t.Fatalf("endpoints = %+v, want a, b, c", cfg.Endpoints)
	}
	b, c := cfg.Endpoints[1], cfg.Endpoints[2]
	if !reflect.DeepEqual(b.Ifaces(), []string{"eth0"}) || !reflect.DeepEqual(b.Ranges, prefixes("10.1.0.0/16")) || len(b.Allow) != 2 {
		t.Errorf("b = %+v, want eth0 (merged), 10.1.0.0/16 (own), two principals", b)
	}
	if c.Allow[1].Text != "uid:0" || c.Allow[1].Line != 5 {
		t.Errorf("c's uid:0 = %+v, want it positioned at the anchor, line 5", c.Allow[1])
	}

	dir = writeSet(t, map[string]string{mainName: lines(
		"endpoints:",                // 1
		"  - a: &base",              // 2
		"      iface: eth0",         // 3
		"      range: 10.0.0.0/8",   // 4
		"      allow: [uid:-1]",     // 5
		"  - b:",                    // 6
		"      <<: *base",           // 7
		"      range: [10.0.0.1/8]", // 8
	)})
	_, err := loadSet(t, dir)
	checkErrors(t, dir, nil, err, []want{
		{m(5), `endpoint "a": uid:-1 is not a uid`},
		{m(5), `endpoint "b": uid:-1 is not a uid`},
		{m(8), `endpoint "b": range 10.0.0.1/8 has host bits set`},
	})
}

// TestCache: a cached load equals a fresh one after every kind of change,
// reuses what an unchanged file parsed to, still checks permissions, and
// forgets removed files.
func TestCache(t *testing.T) {
	dir := writeSet(t, map[string]string{
		mainName:          "endpoints:\n" + epA,
		"conf.d/10-b.yml": "endpoints:\n" + epB,
	})
	main := filepath.Join(dir, mainName)
	dropIn := filepath.Join(dir, "conf.d/10-b.yml")
	var c Cache
	owner := uint32(os.Getuid())
	check := func(step string) *Config {
		t.Helper()
		got, gotErrs := c.loadPartial(main, owner)
		want, wantErrs := loadPartial(main, owner)
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotErrs, wantErrs) {
			t.Fatalf("%s: cached load\n  %+v %v\nfresh load\n  %+v %v", step, got, gotErrs, want, wantErrs)
		}
		return got
	}
	first := check("first load")
	if err := os.WriteFile(main, []byte("endpoints:\n"+epA+"log: {rate: 7}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	second := check("main file changed")
	if &first.Endpoints[1].Ranges[0] != &second.Endpoints[1].Ranges[0] {
		t.Errorf("the unchanged drop-in was parsed again")
	}
	if &first.Endpoints[0].Ranges[0] == &second.Endpoints[0].Ranges[0] {
		t.Errorf("the changed main file was not parsed again")
	}
	if err := os.WriteFile(dropIn, []byte("endpoints: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	check("drop-in broken")
	chmod(t, main, 0o666)
	if _, errs := c.loadPartial(main, owner); len(errs) == 0 {
		t.Fatalf("a group/other-writable main file passed a cached load")
	}
	check("main file writable by others")
	chmod(t, main, 0o644)
	if err := os.Remove(dropIn); err != nil {
		t.Fatal(err)
	}
	check("drop-in removed")
	if _, ok := c.files[dropIn]; ok {
		t.Errorf("the removed drop-in is still cached")
	}
}

// TestIfacesShared: consecutive endpoints that name the same interfaces
// share one Site, their list and file (the parse cache keeps every
// endpoint), and a list that differs in any way is its own, on both
// parsers' paths.
func TestIfacesShared(t *testing.T) {
	doc := "endpoints:\n" +
		"  - a: {iface: [eth0, wg0], range: 10.0.0.1, allow: []}\n" +
		"  - b: {iface: [eth0, wg0], range: 10.0.0.2, allow: []}\n" +
		"  - c: {iface: [wg0, eth0], range: 10.0.0.3, allow: []}\n" +
		"  - d: {iface: [wg0], range: 10.0.0.4, allow: []}\n" +
		"  - e: {iface: [wg0, eth1], range: 10.0.0.5, allow: []}\n" +
		"  - f: {iface: [wg0, eth1], range: 10.0.0.6, allow: []}\n"
	for _, text := range []string{doc, doc + "x: &a 1\n"} { // an anchor: not the fast path
		fs, errs := parseFile("a.yml", []byte(text), nil)
		if len(errs) > 1 || len(fs.endpoints) != 6 {
			t.Fatalf("parsed %d endpoints: %v", len(fs.endpoints), errs)
		}
		shared := func(i, j int) bool { return fs.endpoints[i].Site == fs.endpoints[j].Site }
		want := []string{"eth0", "wg0", "eth0", "wg0", "wg0", "eth0", "wg0", "wg0", "eth1", "wg0", "eth1"}
		var got []string
		for i, ep := range fs.endpoints {
			got = append(got, ep.Ifaces()...)
			if pos := ep.Pos(); pos != (Pos{File: "a.yml", Line: i + 2}) {
				t.Errorf("endpoint %s at %s", ep.Name, pos)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("interfaces %q, want %q", got, want)
		}
		if !shared(0, 1) || !shared(4, 5) {
			t.Error("equal consecutive lists not shared")
		}
		if shared(1, 2) || shared(2, 3) || shared(3, 4) {
			t.Error("different lists share")
		}
	}
}

// TestCacheShares: a cached load points into what each file parsed to,
// so an unchanged file's endpoints are the very objects of the last load
// (nothing is copied on a reload of a large set), a changed file's are
// new, an endpoint named again is the later file's; and every cached load
// equals a fresh one.
func TestCacheShares(t *testing.T) {
	dir := writeSet(t, map[string]string{
		mainName: "endpoints:\n" + epA,
		// c is replaced by 20-c.yml's.
		"conf.d/10-b.yml": "endpoints:\n" + epB + "  - c: {iface: eth1, range: 10.2.0.0/16, allow: [bob]}\n",
		"conf.d/20-c.yml": "endpoints:\n  - c: {iface: eth2, range: 10.3.0.0/16, allow: [carol]}\n  - d: {iface: eth2, range: 10.4.0.0/16, allow: []}\n",
		"conf.d/30-e.yml": "endpoints:\n  - e: {iface: eth3, range: 10.5.0.0/16, allow: [erin]}\n  - f: {iface: eth3, range: 10.6.0.0/16, allow: [frank]}\n",
	})
	main := filepath.Join(dir, mainName)
	path := func(name string) string { return filepath.Join(dir, "conf.d", name) }
	owner := uint32(os.Getuid())
	var c Cache
	load := func(step string) *Config {
		t.Helper()
		got, gotErrs := c.loadPartial(main, owner)
		want, wantErrs := loadPartial(main, owner)
		if len(wantErrs) > 0 || !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotErrs, wantErrs) {
			t.Fatalf("%s: cached load\n  %+v %v\nfresh load\n  %+v %v", step, got, gotErrs, want, wantErrs)
		}
		return got
	}
	// from says which file's parsed endpoint each of cfg's is, as
	// "file:index", "?" for none the cache holds.
	from := func(cfg *Config) []string {
		var out []string
		for _, ep := range cfg.Endpoints {
			where := "?"
			for p, f := range c.files {
				for i := range f.settings.endpoints {
					if &f.settings.endpoints[i] == ep {
						where = fmt.Sprintf("%s:%d", filepath.Base(p), i)
					}
				}
			}
			out = append(out, where)
		}
		return out
	}
	first := load("first load") // a b c d e f, c as 20-c.yml has it
	want := []string{mainName + ":0", "10-b.yml:0", "20-c.yml:0", "20-c.yml:1", "30-e.yml:0", "30-e.yml:1"}
	if got := from(first); !slices.Equal(got, want) {
		t.Fatalf("endpoints from %v, want %v", got, want)
	}
	second := load("unchanged")
	for i := range second.Endpoints {
		if second.Endpoints[i] != first.Endpoints[i] {
			t.Errorf("unchanged set: endpoint %s is a new object", second.Endpoints[i].Name)
		}
	}
	if err := os.WriteFile(path("30-e.yml"), []byte("endpoints:\n  - e: {iface: eth3, range: 10.5.0.0/16, allow: [eve]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	third := load("30-e.yml changed") // a b c d e
	if third.Endpoints[4] == first.Endpoints[4] || first.Endpoints[4].Allow[0].Name() != "erin" {
		t.Errorf("30-e.yml changed: e is the old object, or the old object changed (allow %v)", first.Endpoints[4].Allow)
	}
	for i := range 4 {
		if third.Endpoints[i] != first.Endpoints[i] {
			t.Errorf("30-e.yml changed: endpoint %s of an unchanged file is a new object", third.Endpoints[i].Name)
		}
	}
	if err := os.Remove(path("20-c.yml")); err != nil {
		t.Fatal(err)
	}
	fourth := load("20-c.yml removed: 10-b.yml's c is back") // a b c e
	want = []string{mainName + ":0", "10-b.yml:0", "10-b.yml:1", "30-e.yml:0"}
	if got := from(fourth); !slices.Equal(got, want) {
		t.Errorf("endpoints from %v, want %v", got, want)
	}
	if err := os.WriteFile(main, []byte("endpoints:\n"+epA+"  - e: {iface: eth9, range: 10.9.0.0/16, allow: [root]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifth := load("main file names e, which 30-e.yml replaces") // a e b c
	want = []string{mainName + ":0", "30-e.yml:0", "10-b.yml:0", "10-b.yml:1"}
	if got := from(fifth); !slices.Equal(got, want) {
		t.Errorf("endpoints from %v, want %v", got, want)
	}
}

// TestMergeNames: the merge against the obvious map, on sets with many
// names given again and sets where every name is new, in files large and
// small (the index is sized by the number of endpoints, so small sets wrap
// around its end), merged fresh and as a cache merges them: with the names
// counted since the last merge, through rounds that change some files,
// keep the others, add and remove files.
func TestMergeNames(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{1, 2, 7, 100, 5000} {
		for _, pool := range []int{size, 1000 * size} {
			var counted nameCount
			type file struct {
				path string
				f    fileSettings
			}
			var set []file
			newFile := func(path string) file {
				var f fileSettings
				for range rnd.IntN(size + 1) {
					// From a pool as small as the set, many names repeat;
					// from one a thousand times larger, few do.
					f.endpoints = append(f.endpoints, Endpoint{Name: fmt.Sprintf("e%d", rnd.IntN(pool)), Site: &Site{}, Line: int32(rnd.IntN(1000))})
				}
				return file{path, f}
			}
			for round := range 40 {
				switch k := rnd.IntN(len(set) + 1); {
				case k == len(set) || len(set) < 2:
					set = append(set, newFile(fmt.Sprintf("r%d", round)))
				case rnd.IntN(4) == 0:
					set = slices.Delete(set, k, k+1)
				case rnd.IntN(3) == 0:
					// unchanged: the same endpoints again
				default:
					set[k] = newFile(set[k].path)
				}
				var files []fileSettings
				var paths []string
				for _, f := range set {
					files, paths = append(files, f.f), append(paths, f.path)
				}
				var want []*Endpoint
				at := map[string]int{}
				for _, f := range files {
					for i := range f.endpoints {
						ep := &f.endpoints[i]
						if j, ok := at[ep.Name]; ok {
							want[j] = ep
							continue
						}
						at[ep.Name] = len(want)
						want = append(want, ep)
					}
				}
				if got := merge(files, paths, nil); !slices.Equal(got.Endpoints, want) {
					t.Fatalf("size %d round %d: merged %d endpoints, want %d (or other objects)", size, round, len(got.Endpoints), len(want))
				}
				if got := merge(files, paths, &counted); !slices.Equal(got.Endpoints, want) {
					t.Fatalf("size %d, pool %d, round %d, names counted: merged %d endpoints, want %d (or other objects)", size, pool, round, len(got.Endpoints), len(want))
				}
				total := 0
				for _, f := range files {
					total += len(f.endpoints)
				}
				n := counted.n
				for _, k := range counted.extra {
					n += k
				}
				if n != total || (len(at) == total) != (len(counted.extra) == 0) {
					t.Fatalf("size %d, pool %d, round %d: %d names counted (%d twice or more) for %d endpoints of %d names", size, pool, round, counted.n, len(counted.extra), total, len(at))
				}
			}
		}
	}
}
