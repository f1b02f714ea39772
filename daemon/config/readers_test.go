// SPDX-License-Identifier: Apache-2.0

package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestReadersAgree: drop-ins read on several goroutines give the set, the
// errors in their order and the warnings that reading them one after
// another gives, through a cache too, on a set with every kind of file a
// load meets: valid, redefining an earlier endpoint, YAML and value errors,
// refused, not read, symlinked, yaml.v3's path.
func TestReadersAgree(t *testing.T) {
	files := map[string]string{
		mainName:               lines("interfaces:", "  eth0: {default: allow}", "endpoints:", "  - m:", "      iface: [eth0]", "      range: [10.0.0.1]", "      allow: [root]"),
		"elsewhere/linked.yml": lines("endpoints:", "  - linked:", "      iface: [eth0]", "      range: [10.9.0.0/16]", "      allow: [root]"),
	}
	for i := range 24 {
		if i >= 16 && i <= 18 {
			continue // symlinks below
		}
		files[fmt.Sprintf("conf.d/%02d.yml", i)] = lines("endpoints:",
			fmt.Sprintf("  - e%d:", i), "      iface: [eth0]", fmt.Sprintf("      range: [10.1.%d.0/24, 'fd00::%x/128']", i, i), fmt.Sprintf("      allow: [root, uid:%d]", 1000+i),
			fmt.Sprintf("  - e%d:", i/3), "      iface: [eth*]", "      range: [10.2.0.0/16]", "      allow: [root]") // redefines an earlier file's
	}
	files["conf.d/03.yml"] = "endpoints: [\n"
	files["conf.d/07.yml"] = lines("endpoints:", "  - bad:", "      iface: [eth0]", "      range: [not-a-prefix]", "      allow: [root]", "  - worse:", "      iface: [eth0]", "      range: [10.3.0.0/16]", "      allow: [uid:x]")
	files["conf.d/11.yml"] = lines("a: &x {default: deny}", "interfaces:", "  eth1: *x")
	files["conf.d/13.yml"] = "log: {level: \xff}\n"
	dir := writeSet(t, files)
	c := filepath.Join(dir, "conf.d")
	chmod(t, filepath.Join(c, "05.yml"), 0o664)
	mkdirs(t, dir, "conf.d/dir.yml")
	mkdirs(t, dir, "sub")
	mkfifo(t, filepath.Join(c, "fifo.yml"))
	symlink(t, "../sub", filepath.Join(c, "16.yml"))
	symlink(t, "../elsewhere/linked.yml", filepath.Join(c, "17.yml"))
	symlink(t, "../nowhere.yml", filepath.Join(c, "18.yml"))

	main := filepath.Join(dir, mainName)
	owner := uint32(os.Getuid())
	type result struct {
		cfg  *Config
		errs []string
	}
	load := func(c *Cache, readers int) result {
		cfg, errs := c.loadReaders(main, owner, readers)
		if cfg == nil {
			t.Fatalf("readers=%d: no Config", readers)
		}
		return result{cfg, errorList(t, dir, errs)}
	}
	want := load(nil, 1)
	// The set is as messy as meant: every kind of problem is in it.
	for _, needle := range []string{"00.yml:6", "03.yml:1", "07.yml:4", "07.yml:9", "11.yml:1", "13.yml:1", "05.yml", "16.yml", "18.yml"} {
		if !strings.Contains(strings.Join(want.errs, "\n"), needle) {
			t.Fatalf("no error at %s in:\n%s", needle, strings.Join(want.errs, "\n"))
		}
	}
	if len(want.cfg.Warnings) != 2 || len(want.cfg.Endpoints) < 20 {
		t.Fatalf("warnings %q, %d endpoints: not the set meant", want.cfg.Warnings, len(want.cfg.Endpoints))
	}
	check := func(what string, got, want result) {
		t.Helper()
		if !reflect.DeepEqual(got.errs, want.errs) {
			t.Errorf("%s: errors\n%s\nwant\n%s", what, strings.Join(got.errs, "\n"), strings.Join(want.errs, "\n"))
		}
		if !reflect.DeepEqual(got.cfg, want.cfg) {
			t.Errorf("%s: Config differs:\n%+v\nwant\n%+v", what, got.cfg, want.cfg)
		}
	}
	for _, readers := range []int{2, 3, 4, 8, 0} {
		for round := range 5 { // goroutines finish in a different order each time
			check(fmt.Sprintf("readers=%d, round %d", readers, round), load(nil, readers), want)
		}
	}

	// Through caches, one file changed and one mended between loads.
	seq, par := new(Cache), new(Cache)
	check("cached, first load", load(par, 4), load(seq, 1))
	if err := os.WriteFile(filepath.Join(c, "07.yml"), []byte(lines("endpoints:", "  - good:", "      iface: [eth0]", "      range: [10.3.0.0/16]", "      allow: [root]")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c, "20.yml"), []byte(lines("on_stop: keep")), 0o644); err != nil {
		t.Fatal(err)
	}
	second := load(seq, 1)
	if second.cfg.OnStop != OnStopKeep {
		t.Fatalf("the change to 20.yml is not in the set: on_stop %q", second.cfg.OnStop)
	}
	check("cached, after a change", load(par, 4), second)
	check("uncached, after a change", load(nil, 4), second)
}
