package testnet

import (
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// KernelRelease is `uname -r` and its major and minor numbers: what tests
// that run on several kernels (`make kernels`) expect of the one they are on.
func KernelRelease(t testing.TB) (string, int, int) {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	var major, minor int
	if _, err := fmt.Sscanf(rel, "%d.%d", &major, &minor); err != nil {
		t.Fatalf("kernel release %q: %v", rel, err)
	}
	return rel, major, minor
}

// KernelHasTCX says whether this kernel has tcx (Linux 6.6 and later; Debian
// 12's 6.1 has not), from its release: an expectation independent of the
// probe the attach code relies on, so that a wrong probe fails a test
// instead of quietly changing the attach mode.
func KernelHasTCX(t testing.TB) bool {
	_, major, minor := KernelRelease(t)
	return major > 6 || major == 6 && minor >= 6
}
