// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"regexp"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// The verifier gives up on a program after this many instructions
// processed (BPF_COMPLEXITY_LIMIT_INSNS), on every kernel we support.
const verifierLimit = 1_000_000

// verifierBudget is the share of the limit the program may take on any
// kernel. The same object costs each kernel's verifier very differently
// (the merge of staging and cgroups: 208k on 6.18, over a million on 6.1),
// so the budget keeps room for the kernel that prunes worst: a change that
// passes here with room to spare still loads on the kernels of the matrix.
const verifierBudget = verifierLimit * 2 / 5

var processedInsns = regexp.MustCompile(`processed (\d+) insns`)

// TestVerifierBudget loads the kernel program as Open does and reports what
// the kernel's verifier processed; the kernel matrix names the figure per
// kernel. It fails above verifierBudget, long before the kernel refuses.
func TestVerifierBudget(t *testing.T) {
	testnet.RequireRoot(t)
	spec, err := loadFilter()
	if err != nil {
		t.Fatal(err)
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats},
	})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	defer coll.Close()
	for name, prog := range coll.Programs {
		m := processedInsns.FindStringSubmatch(prog.VerifierLog)
		if m == nil {
			t.Fatalf("%s: no instruction count in the verifier's log:\n%s", name, prog.VerifierLog)
		}
		n, _ := strconv.Atoi(m[1])
		t.Logf("verifier: %s processed %d insns (%.1f%% of the limit)", name, n, 100*float64(n)/verifierLimit)
		if n > verifierBudget {
			t.Errorf("%s: the verifier processed %d instructions, over the budget of %d (%d%% of the kernel's limit): a kernel that prunes worse will refuse it",
				name, n, verifierBudget, 100*verifierBudget/verifierLimit)
		}
	}
}
