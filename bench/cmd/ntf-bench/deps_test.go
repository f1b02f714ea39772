// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os/exec"
	"strings"
	"testing"
)

// shipped are the programs the project ships: the daemon (the .deb's
// binary) and this benchmark harness. Their test lives here, one list for
// both, because `make test` runs ./bench/... as it is.
var shipped = []string{
	"github.com/nettcfilter/net-tc-filter/cmd/net-tc-filter",
	"github.com/nettcfilter/net-tc-filter/bench/cmd/ntf-bench",
}

// testOnly says whether a package must stay out of a shipped program: the
// standard library's "testing" itself and every package under "testing/"
// (testing/fstest, testing/iotest, testing/quick, ...). They register test
// flags and bring code no user runs; a harness that imports them (as
// daemon/testnet does) belongs in tests, and programs build on
// internal/netlab instead.
func testOnly(pkg string) bool {
	return pkg == "testing" || strings.HasPrefix(pkg, "testing/")
}

// TestShippedProgramsLinkNoTesting fails when `go list -deps` of a shipped
// program lists a test-only package, and names the packages that import
// it, so the failure says where the harness leaked in.
func TestShippedProgramsLinkNoTesting(t *testing.T) {
	for _, prog := range shipped {
		t.Run(prog[strings.LastIndex(prog, "/")+1:], func(t *testing.T) {
			// Each line: a package, then what it imports.
			out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", prog).Output()
			if err != nil {
				var stderr []byte
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = ee.Stderr
				}
				t.Fatalf("go list -deps %s: %v\n%s", prog, err, stderr)
			}
			var found []string
			importers := map[string][]string{} // test-only package -> who imports it
			listed := false
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				f := strings.Fields(line)
				listed = listed || f[0] == prog
				if testOnly(f[0]) {
					found = append(found, f[0])
				}
				for _, imp := range f[1:] {
					if testOnly(imp) {
						importers[imp] = append(importers[imp], f[0])
					}
				}
			}
			if !listed {
				t.Fatalf("go list -deps %s does not list the program itself: %.300q", prog, out)
			}
			for _, pkg := range found {
				t.Errorf("%s links %s, imported by %v", prog, pkg, importers[pkg])
			}
		})
	}
}
