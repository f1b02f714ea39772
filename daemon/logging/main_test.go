// SPDX-License-Identifier: Apache-2.0

package logging

import (
	"fmt"
	"os"
	"testing"
)

// childEnv makes the test binary play a role in a child process instead of
// running the tests: the value names the role.
const childEnv = "NTF_LOGGING_TEST_CHILD"

func TestMain(m *testing.M) {
	switch role := os.Getenv(childEnv); role {
	case "":
		os.Exit(m.Run())
	case "journal":
		os.Exit(journalChild())
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", childEnv, role)
		os.Exit(2)
	}
}
