// SPDX-License-Identifier: Apache-2.0

package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkLoad loads large sets the way the daemon does on start, every
// file parsed (no Cache): issue 19 cares about the time and memory of a
// load of 100 000 ranges, split over many drop-ins or in one generated file.
func BenchmarkLoad(b *testing.B) {
	for _, c := range []struct {
		dropIns, rangesEach int
	}{{1000, 100}, {1, 100000}} {
		b.Run(fmt.Sprintf("dropins=%d/ranges=%d", c.dropIns, c.dropIns*c.rangesEach), func(b *testing.B) {
			main := benchSet(b, c.dropIns, c.rangesEach)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				cfg, err := load(main, uint32(os.Getuid()))
				if err != nil {
					b.Fatal(err)
				}
				if len(cfg.Endpoints) != c.dropIns {
					b.Fatalf("%d endpoints, want %d", len(cfg.Endpoints), c.dropIns)
				}
			}
		})
	}
}

// benchSet writes a main file and dropIns drop-ins of one endpoint each,
// with rangesEach distinct IPv4 /32 ranges and a few principals, and
// returns the main file's path.
func benchSet(b *testing.B, dropIns, rangesEach int) string {
	b.Helper()
	dir := b.TempDir()
	write := func(path, content string) {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.Chmod(path, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, "conf.d")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	main := filepath.Join(dir, mainName)
	write(main, lines("interfaces:", "  eth*: {default: allow}", "log: {level: info}"))
	n := 0
	for i := range dropIns {
		var s strings.Builder
		fmt.Fprintf(&s, "endpoints:\n  - ep%d:\n      iface: [eth0]\n      allow: [uid:1001, root, group:adm]\n      range:\n", i)
		for range rangesEach {
			fmt.Fprintf(&s, "        - 10.%d.%d.%d/32\n", n>>16&0xff, n>>8&0xff, n&0xff)
			n++
		}
		write(filepath.Join(dir, "conf.d", fmt.Sprintf("%04d.yml", i)), s.String())
	}
	return main
}
