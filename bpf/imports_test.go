// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"os/exec"
	"strings"
	"testing"
)

// The kernel side knows the compiled policy and nothing else of this
// module: not the configuration it was compiled from, nor the daemon that
// drives it. A concept this package needs is defined by the package that
// owns it (policy.Action, not config.Action).
func TestImportsOnlyPolicy(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.Module.Path}}{{range .Imports}} {{.}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	fields := strings.Fields(string(out))
	if len(fields) == 0 {
		t.Fatal("go list printed nothing")
	}
	module, imports := fields[0], fields[1:]
	allowed := module + "/daemon/policy"
	for _, imp := range imports {
		if (imp == module || strings.HasPrefix(imp, module+"/")) && imp != allowed {
			t.Errorf("bpf imports %s; of this module it may import %s only", imp, allowed)
		}
	}
}
