// SPDX-License-Identifier: Apache-2.0

package netlab

import (
	"os"
	"strconv"
	"time"
)

// TimeScaleEnv names the factor (1 to 100) by which Slowed stretches a
// test's waits. The kernel matrix sets it on guests under full emulation
// (qemu TCG runs the guest's CPU several times slower than the host's),
// where a wait sized for real hardware fails a daemon that is only slow.
const TimeScaleEnv = "NTF_TEST_TIME_SCALE"

// Slowed is d stretched by $NTF_TEST_TIME_SCALE; unset or out of range, d.
// Only waits for something that must happen are stretched: a test that
// something does not happen within a time gains nothing from waiting
// longer.
func Slowed(d time.Duration) time.Duration {
	f, err := strconv.ParseFloat(os.Getenv(TimeScaleEnv), 64)
	if err != nil || !(f >= 1 && f <= 100) { // NaN too
		return d
	}
	return time.Duration(float64(d) * f)
}
