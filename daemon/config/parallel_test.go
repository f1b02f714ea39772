// SPDX-License-Identifier: Apache-2.0

package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// TestManyDropIns: a set of more drop-ins than files parsed at once loads,
// through the cache and without it, into what its files say in their
// order: endpoints in file order (a name given again replaces the earlier
// one in its place), settings by the last file, and every file's problems
// sorted by file and line, the walk's (a refused file) with the parser's.
// The files are parsed side by side (parses); run with -race.
func TestManyDropIns(t *testing.T) {
	n := 4*runtime.GOMAXPROCS(0) + 3
	files := map[string]string{mainName: "log: {rate: 10}\n"}
	name := func(i int) string { return fmt.Sprintf("conf.d/%03d.yml", i) }
	for i := range n {
		var b strings.Builder
		b.WriteString("endpoints:\n")
		for j := range 3 {
			fmt.Fprintf(&b, "  - f%d-%d:\n      iface: [eth0]\n      range: [10.%d.%d.0/24]\n      allow: [\"uid:%d\"]\n", i, j, i, j, 1000+i)
		}
		switch i % 4 {
		case 1: // a problem at its line
			b.WriteString("  - bad:\n      iface: [eth0]\n      range: [10.0.0.1/8]\n      allow: []\n")
		case 2: // a name of an earlier file again: replaces it in its place
			fmt.Fprintf(&b, "  - f0-1:\n      iface: [eth0]\n      range: [192.0.2.%d/32]\n      allow: []\n", i)
		case 3: // a setting the next files may set again
			fmt.Fprintf(&b, "log: {rate: %d}\n", 100+i)
		}
		files[name(i)] = b.String()
	}
	dir := writeSet(t, files)
	chmod(t, filepath.Join(dir, name(n-2)), 0o620) // refused by the walk, before its parse

	var c Cache
	main, owner := filepath.Join(dir, mainName), uint32(os.Getuid())
	for _, step := range []string{"fresh", "cached", "one file changed"} {
		if step == "one file changed" {
			p := filepath.Join(dir, name(n/2))
			if err := os.WriteFile(p, []byte(files[name(n/2)]+"on_stop: keep\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cfg, errs := c.loadPartial(main, owner)
		fresh, freshErrs := loadPartial(main, owner)
		if !reflect.DeepEqual(cfg, fresh) || !reflect.DeepEqual(errs, freshErrs) {
			t.Fatalf("%s: cached load differs from a fresh one:\n%+v\n%v\n%+v\n%v", step, cfg, errs, fresh, freshErrs)
		}
		var want []string
		for i := range n {
			if i%4 == 1 && i != n-2 {
				want = append(want, fmt.Sprintf("%s:%d: endpoint \"bad\": range 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?", name(i), 16))
			}
			if i == n-2 {
				want = append(want, name(i)+": refusing: writable by group or others (mode 0620); a user who can write it could grant itself access — chmod go-w "+filepath.Join(dir, name(i)))
			}
		}
		got := errorList(t, dir, errs)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("%s: errors\n%s\nwant\n%s", step, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		var names []string
		for _, ep := range cfg.Endpoints {
			names = append(names, ep.Name)
		}
		if names[0] != "f0-0" || names[1] != "f0-1" || names[3] != "f1-0" {
			t.Errorf("%s: endpoints out of file order: %v", step, names[:min(len(names), 8)])
		}
		// The last file with a name again sets it: the largest i%4 == 2 below n.
		last := n - 1
		for last%4 != 2 {
			last--
		}
		if got := cfg.Endpoints[1].Ranges[0].String(); got != fmt.Sprintf("192.0.2.%d/32", last) {
			t.Errorf("%s: f0-1 is %s, want the one of %s", step, got, name(last))
		}
		lastRate := n - 1
		for lastRate%4 != 3 || lastRate == n-2 {
			lastRate--
		}
		if cfg.Log.Rate != 100+lastRate {
			t.Errorf("%s: log.rate %d, want %d (%s)", step, cfg.Log.Rate, 100+lastRate, name(lastRate))
		}
		if len(cfg.Files) != n || len(cfg.Sums) != n {
			t.Errorf("%s: %d files, %d sums, want %d (main and the drop-ins but the refused one)", step, len(cfg.Files), len(cfg.Sums), n)
		}
	}
}
