// SPDX-License-Identifier: Apache-2.0

package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

// fuzzSeeds are the shapes the tests write: the seed, the extensions,
// drop-ins that replace and merge, YAML features (anchors, merges, flow
// style, several documents) and the bad inputs the error tests use.
var fuzzSeeds = []struct{ main, dropIn string }{
	{seed, ""},
	{seed, "endpoints:\n  - imdsv2: {iface: [\"eth*\"], range: [169.254.169.254], allow: [\"group:imds\", uid:0]}\n"},
	{seed + "interfaces:\n  eth0: {default: allow}\n  \"*\": {default: deny}\nlog:\n  level: debug\n  decisions: all\n  rate: 7\non_stop: keep # comment\n", "interfaces:\n  wg0:\n"},
	{"metrics:\n  listen: \"[::1]:9963\"\n", "metrics: {listen: \"\"}\n"},
	{"endpoints:\n  - a: &base\n      iface: eth0\n      range: 10.0.0.0/8\n      allow: &admins [alice, uid:0]\n  - b:\n      <<: *base\n      range: 10.1.0.0/16\n  - c: {iface: eth1, range: 10.2.0.0/16, allow: *admins}\n", ""},
	{"endpoints:\n  - a: {iface: [eth0, \"veth*\", \"*\"], range: [\"::ffff:10.0.0.0/104\", \"fd00::/8\"], allow: [\"*\", unowned]}\n", "endpoints:\n  - a: {iface: eth0, range: 10.0.0.0/8, allow: []}\n"},
	{"", "---\n# comment\n...\n"},
	{"~\n", "\n\n"},
	{"endpoint:\n  - a: {}\n", "log: {rate: 0}\n"},
	{"endpoints:\n  - a:\n      iface: eth0\n      range: 10.0.0.1/8\n      allow: [uid:-1, 1000, \"group:\"]\n", "endpoints: [\n"},
	{"endpoints:\n  - a: {iface: eth0, range: 10.0.0.0/8, allow: []}\n  - a: {iface: eth1, range: 10.2.0.0/16, allow: []}\n", "interfaces: [eth0]\n"},
	{"endpoints:\n  - iface: eth0\n    range: 10.0.0.0/8\n    allow: []\n", "on_stop: Keep\n"},
	{"endpoints:\n  - a: {iface: [eth0, eth0, \"a very long interface name\"], range: [::1/128], allow: [x]}\n", "log: {level: loud, decisions: some, rate: 50.5}\n"},
	{"a: 1\n---\nb: 2\n", "\t- tab\n"},
	{"- just a list\n", "\"just a string\"\n"},
	{"metrics: {listen: \"localhost:0\"}\n", "metrics: [1]\n"},
	{"endpoints:\n  - a:\n", "endpoints:\n  - \"\": {iface: \"e*[\", range: \"10.0.0.0/33\", allow: \"uid:4294967295\"}\n"},
	{"x: \x00\n", "\xff\xfe"},
}

// FuzzLoad: any bytes as the main file and a drop-in give either a valid
// Config or Errors, each in one of the two files, with a line in it and a
// message — never a panic, never a problem without a place. A cached load
// gives what a fresh one gives.
func FuzzLoad(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s.main), []byte(s.dropIn))
	}
	// One set, rewritten for each input: a fresh directory per input
	// would cost more than the load. In memory where there is a tmpfs:
	// a run writes it hundreds of thousands of times.
	dir := fuzzDir(f)
	confD := filepath.Join(dir, "conf.d")
	if err := os.Mkdir(confD, 0o755); err != nil {
		f.Fatal(err)
	}
	main, dropIn := filepath.Join(dir, mainName), filepath.Join(confD, "10-fuzz.yml")
	owner := uint32(os.Getuid())
	var cache Cache
	f.Fuzz(func(t *testing.T, mainData, dropInData []byte) {
		for p, data := range map[string][]byte{main: mainData, dropIn: dropInData} {
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cfg, errs := loadPartial(main, owner)
		if cfg == nil {
			t.Fatal("LoadPartial returned no Config")
		}
		files := map[string][]byte{main: mainData, dropIn: dropInData}
		for _, e := range errs {
			data, ok := files[e.Pos.File]
			switch {
			case !ok:
				t.Errorf("error %q is not in either file", e)
			case e.Pos.Line < 1 || e.Pos.Line > bytes.Count(data, []byte("\n"))+1:
				t.Errorf("error %q: line %d, the file has %d lines", e, e.Pos.Line, bytes.Count(data, []byte("\n"))+1)
			case e.Msg == "":
				t.Errorf("error at %s without a message", e.Pos)
			}
		}
		cached, cachedErrs := cache.loadPartial(main, owner)
		if !reflect.DeepEqual(cached, cfg) || !reflect.DeepEqual(cachedErrs, errs) {
			t.Errorf("cached load differs:\n%+v %v\nfresh:\n%+v %v", cached, cachedErrs, cfg, errs)
		}
		if len(errs) == 0 { // what Load returns
			checkValid(t, cfg, []string{main, dropIn})
		}
	})
}

// fuzzDir makes the directory FuzzLoad's set lives in, mode 0755.
func fuzzDir(f *testing.F) string {
	dir, err := os.MkdirTemp("/dev/shm", "FuzzLoad")
	if err != nil {
		dir, err = os.MkdirTemp("", "FuzzLoad")
	}
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		f.Fatal(err)
	}
	return dir
}

// checkValid checks what every valid Config must be, whatever the input:
// what the compiler and the daemon rely on without checking again.
func checkValid(t *testing.T, cfg *Config, files []string) {
	t.Helper()
	if !slices.Equal(cfg.Files, files) {
		t.Errorf("Files %q, want %q", cfg.Files, files)
	}
	names := map[string]bool{}
	for _, ep := range cfg.Endpoints {
		if err := checkEndpointName(ep.Name); err != nil || names[ep.Name] {
			t.Errorf("endpoint name %q: %v (or seen twice)", ep.Name, err)
		}
		names[ep.Name] = true
		if !slices.Contains(files, ep.Pos().File) || ep.Pos().Line < 1 {
			t.Errorf("endpoint %q at %s", ep.Name, ep.Pos())
		}
		if len(ep.Ifaces()) == 0 || len(ep.Ranges) == 0 || ep.Allow == nil {
			t.Errorf("endpoint %q: ifaces %q ranges %v allow %v: a valid endpoint has all three", ep.Name, ep.Ifaces(), ep.Ranges, ep.Allow)
		}
		for _, i := range ep.Ifaces() {
			if err := checkIface(i); err != nil {
				t.Errorf("endpoint %q: iface %q: %v", ep.Name, i, err)
			}
		}
		for _, r := range ep.Ranges {
			if !r.IsValid() || r != r.Masked() || r.Addr().Is4In6() || r.Addr().Zone() != "" {
				t.Errorf("endpoint %q: range %v is not a masked, unmapped prefix", ep.Name, r)
			}
		}
		for _, p := range ep.Allow {
			q, err := parsePrincipal(p.Text)
			if err != nil || q.Kind != p.Kind || q.Name() != p.Name() || q.UID != p.UID {
				t.Errorf("endpoint %q: principal %+v does not read back (%+v, %v)", ep.Name, p, q, err)
			}
			if !slices.Contains(files, ep.Pos().File) || p.Line < 1 {
				t.Errorf("endpoint %q: principal %q at %s", ep.Name, p.Text, p.Pos(ep))
			}
		}
	}
	for name, it := range cfg.Interfaces {
		if err := checkIface(name); err != nil || (it.Default != Allow && it.Default != Deny) {
			t.Errorf("interface %q: %+v (%v)", name, it, err)
		}
	}
	if !slices.Contains(logLevels(), cfg.Log.Level) || !slices.Contains(logDecisions(), cfg.Log.Decisions) ||
		cfg.Log.Rate < 1 || cfg.Log.Rate > maxRate {
		t.Errorf("log %+v", cfg.Log)
	}
	if !slices.Contains(onStops(), string(cfg.OnStop)) {
		t.Errorf("on_stop %q", cfg.OnStop)
	}
	if err := checkListen(cfg.Metrics.Listen); err != nil {
		t.Errorf("metrics.listen: %v", err)
	}
}
