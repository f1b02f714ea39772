// SPDX-License-Identifier: Apache-2.0

package bpf

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"

	"github.com/nettcfilter/net-tc-filter/daemon/config"
	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// What depends on the kernel, checked on whichever kernel runs the tests:
// `make kernels` runs them on Debian 12's 6.1 and Debian 13's 6.12 cloud
// kernels under qemu, and on the host's.

// eachMode runs fn as a subtest per attach mode. On a kernel without tcx
// the tcx subtest does not skip: it asserts that tcx is refused there and
// that auto mode enforces through clsact instead (assertNoTCX).
func eachMode(t *testing.T, fn func(t *testing.T, mode Mode)) {
	for _, mode := range []Mode{ModeTCX, ModeClsact} {
		t.Run(string(mode), func(t *testing.T) {
			if mode == ModeTCX && !testnet.KernelHasTCX(t) {
				assertNoTCX(t)
				return
			}
			fn(t, mode)
		})
	}
}

// assertNoTCX checks, on a kernel before 6.6, that attach mode tcx fails
// with ebpf.ErrNotSupported and attaches nothing (no silent clsact), and
// that auto mode enforces the same policy through clsact.
func assertNoTCX(t *testing.T) {
	t.Helper()
	rel, _, _ := testnet.KernelRelease(t)
	tp := testnet.NewTopology(t, testnet.Options{})
	tp.ServeTCP(t, port)
	tp.ServeUDPEcho(t, port)
	alice := testnet.StartAgent(t, tp.Client, 1001)
	bob := testnet.StartAgent(t, tp.Client, 1002)
	p := compile(t, map[string]config.Action{"eth0": config.Allow},
		ep{"imds", []string{"eth0"}, []string{"169.254.169.254/32"}, []string{"alice"}})

	tcx := openFilter(t, tp.Client, ModeTCX)
	var err error
	tp.Client.MustDo(t, func() error {
		ifaces, lerr := Interfaces()
		if lerr != nil {
			return lerr
		}
		_, err = tcx.Apply(p, ifaces, LogNone)
		return nil
	})
	if !errors.Is(err, ebpf.ErrNotSupported) {
		t.Fatalf("kernel %s has no tcx, yet attach mode tcx gave %v; want ebpf.ErrNotSupported", rel, err)
	}
	if got := attachedNames(tcx); len(got) != 0 {
		t.Errorf("attach mode tcx failed but reports attachments %v", got)
	}
	if n := programsOnEth0(t, tp.Client, ModeClsact); n != 0 {
		t.Errorf("attach mode tcx fell back to clsact by itself: %d cls_bpf filters on eth0", n)
	}
	testnet.Expect(t, bob, imds4, port, true) // nothing enforces yet

	auto := openFilter(t, tp.Client, ModeAuto)
	apply(t, tp.Client, auto, p, LogNone)
	if got := attachedNames(auto); !slices.Equal(got, []string{"eth0/clsact"}) || auto.Mode() != ModeClsact {
		t.Fatalf("auto mode on kernel %s: attached %v, mode %q; want eth0/clsact", rel, got, auto.Mode())
	}
	testnet.Expect(t, bob, imds4, port, false)
	testnet.Expect(t, alice, imds4, port, true)
	t.Logf("kernel %s has no tcx: attach mode tcx refused (%v); auto enforces through clsact", rel, err)
}

// TestKernelFeatures checks that this kernel has every program type, helper
// and map type the program uses, that the program passes its verifier, and
// that the tcx probe the attach code relies on agrees with the release.
func TestKernelFeatures(t *testing.T) {
	testnet.RequireRoot(t)
	rel, _, _ := testnet.KernelRelease(t)
	spec, err := loadFilter()
	if err != nil {
		t.Fatal(err)
	}
	for name, ps := range spec.Programs {
		if err := features.HaveProgramType(ps.Type); err != nil {
			t.Errorf("kernel %s: program %s is of type %v: %v", rel, name, ps.Type, err)
		}
		seen := map[asm.BuiltinFunc]bool{}
		for _, ins := range ps.Instructions {
			if !ins.IsBuiltinCall() {
				continue
			}
			fn := asm.BuiltinFunc(ins.Constant)
			if seen[fn] {
				continue
			}
			seen[fn] = true
			if err := features.HaveProgramHelper(ps.Type, fn); err != nil {
				t.Errorf("kernel %s: program %s calls %v: %v", rel, name, fn, err)
			}
		}
		helpers := make([]string, 0, len(seen))
		for fn := range seen {
			helpers = append(helpers, fn.String())
		}
		slices.Sort(helpers)
		t.Logf("program %s (%v) calls %s", name, ps.Type, strings.Join(helpers, ", "))
	}
	for name, ms := range spec.Maps {
		if strings.HasPrefix(name, ".") {
			continue
		}
		for _, m := range []*ebpf.MapSpec{ms, ms.InnerMap} {
			if m == nil {
				continue
			}
			if err := features.HaveMapType(m.Type); err != nil {
				t.Errorf("kernel %s: map %s is of type %v: %v", rel, name, m.Type, err)
			}
		}
	}

	// The program loads: what the verifier of this kernel says.
	ns := testnet.NewNS(t, "k")
	f := openFilter(t, ns, ModeAuto)
	info, err := f.objs.NtfEgress.Info()
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := info.VerifiedInstructions(); ok {
		t.Logf("kernel %s: program loaded, %d instructions verified", rel, n)
	}

	// Batch writes of the range map. putAll would write one by one where a
	// kernel had no batch operations for LPM tries, but no kernel of the
	// matrix lacks them, so that path is not exercised: a kernel without
	// them fails here until it is.
	ranges, err := ebpf.NewMap(func() *ebpf.MapSpec {
		s := spec.Maps[filterMapNtfRanges].InnerMap.Copy()
		s.Name, s.MaxEntries = "", 4
		return s
	}())
	if err != nil {
		t.Fatal(err)
	}
	defer ranges.Close()
	var k filterNtfRangeKey
	_, err = ranges.BatchUpdate([]filterNtfRangeKey{k}, []filterNtfRange{{}}, nil)
	switch {
	case err == nil:
		t.Logf("kernel %s: batch updates of LPM tries", rel)
	case errors.Is(err, ebpf.ErrNotSupported):
		t.Errorf("kernel %s: no batch updates of LPM tries: the one-by-one fallback would be used untested", rel)
	default:
		t.Errorf("kernel %s: batch update of an LPM trie: %v", rel, err)
	}

	// tcx: the probe (an attach that fails with ErrNotSupported) must agree
	// with the release, or auto mode would pick wrong.
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	l, err := link.AttachTCX(link.TCXOptions{Interface: 0x7ffffff0, Program: prog, Attach: ebpf.AttachTCXEgress})
	if err == nil {
		l.Close()
		t.Fatal("tcx attached to an interface that does not exist")
	}
	probed := !errors.Is(err, ebpf.ErrNotSupported)
	if want := testnet.KernelHasTCX(t); probed != want {
		t.Errorf("kernel %s: tcx probe says %t (%v), the release says %t", rel, probed, err, want)
	}
	t.Logf("kernel %s: tcx %s", rel, map[bool]string{true: "available", false: "not available (before 6.6): clsact"}[probed])
}

// The daemon picks the attach mode by itself (auto: tcx where the kernel has
// it, clsact before 6.6) and says which in STATUS= and in its log; asked for
// a mode the kernel does not have, it refuses to start and says why.
func TestDaemonAttachMode(t *testing.T) {
	testnet.RequireRoot(t)
	rel, _, _ := testnet.KernelRelease(t)
	want := "clsact"
	if testnet.KernelHasTCX(t) {
		want = "tcx"
	}
	tp := testnet.NewTopology(t, testnet.Options{})
	dir := filepath.Join(t.TempDir(), "etc")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "net-tc-filter.yml")
	if err := os.WriteFile(cfg, []byte(`endpoints:
  - protected:
      iface: [eth0]
      range: [192.0.2.7/32]
      allow: [uid:1001]
interfaces:
  eth0: {default: allow}
`), 0o644); err != nil {
		t.Fatal(err)
	}

	d := testnet.StartDaemon(t, tp.Client, testnet.DaemonOptions{Config: cfg, PinDir: testnet.PinDir(t)})
	if s := statusLine(d.Ready); !strings.HasSuffix(s, "("+want+")") {
		t.Errorf("kernel %s: STATUS=%q, want the attach mode %s at its end", rel, s, want)
	}
	d.WaitLog(t, "started: ", 10*time.Second)
	if started := lineWith(d.Log(), "started: "); !strings.Contains(started, "("+want+")") {
		t.Errorf("kernel %s: the start is logged without the attach mode %s: %q", rel, want, started)
	}
	d.Signal(syscall.SIGTERM)
	if err := d.Wait(10 * time.Second); err != nil {
		t.Fatalf("stop: %v\n%s", err, d.Log())
	}

	if want == "tcx" {
		d := testnet.StartDaemon(t, tp.Client, testnet.DaemonOptions{
			Config: cfg, PinDir: testnet.PinDir(t), Args: []string{"--attach-mode", "clsact"}})
		if s := statusLine(d.Ready); !strings.HasSuffix(s, "(clsact)") {
			t.Errorf("kernel %s, --attach-mode clsact: STATUS=%q", rel, s)
		}
		return
	}
	d = testnet.StartDaemonNoWait(t, tp.Client, testnet.DaemonOptions{
		Config: cfg, PinDir: testnet.PinDir(t), Args: []string{"--attach-mode", "tcx"}})
	if err := d.Wait(30 * time.Second); err == nil {
		t.Fatalf("kernel %s has no tcx, yet the daemon started with --attach-mode tcx:\n%s", rel, d.Log())
	}
	if !strings.Contains(d.Log(), "tcx not supported") {
		t.Errorf("kernel %s: the refusal of --attach-mode tcx does not say why:\n%s", rel, d.Log())
	}
}

// statusLine is the STATUS= line of an sd_notify datagram.
func statusLine(msg string) string {
	for _, l := range strings.Split(msg, "\n") {
		if s, ok := strings.CutPrefix(l, "STATUS="); ok {
			return s
		}
	}
	return ""
}

// lineWith is the first line of text containing s ("" when none does).
func lineWith(text, s string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
