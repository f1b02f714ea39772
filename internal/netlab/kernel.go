// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// KernelRelease is `uname -r` and its major and minor numbers: what tests
// that run on several kernels (`make kernels`) expect of the one they are on.
func KernelRelease() (rel string, major, minor int, err error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", 0, 0, fmt.Errorf("uname: %w", err)
	}
	rel = unix.ByteSliceToString(u.Release[:])
	if _, err := fmt.Sscanf(rel, "%d.%d", &major, &minor); err != nil {
		return rel, 0, 0, fmt.Errorf("kernel release %q: %w", rel, err)
	}
	return rel, major, minor, nil
}

// KernelHasTCX says whether this kernel has tcx (Linux 6.6 and later; Debian
// 12's 6.1 has not), from its release: an expectation independent of the
// probe the attach code relies on, so that a wrong probe fails a test
// instead of quietly changing the attach mode.
func KernelHasTCX() (bool, error) {
	_, major, minor, err := KernelRelease()
	if err != nil {
		return false, err
	}
	return major > 6 || major == 6 && minor >= 6, nil
}
