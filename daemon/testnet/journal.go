// SPDX-License-Identifier: Apache-2.0

package testnet

import (
	"os"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/internal/netlab"
)

// Journal stands in for journald (see netlab.Journal); a datagram that is
// not a valid entry fails the test when it ends.
type Journal struct {
	*netlab.Journal
}

// ListenJournal opens the socket, closed when the test ends.
func ListenJournal(t testing.TB) *Journal {
	t.Helper()
	j, err := netlab.ListenJournal()
	check(t, err)
	t.Cleanup(func() {
		if err := j.Close(); err != nil {
			t.Errorf("journal socket: %v", err)
		}
	})
	return &Journal{j}
}

// WaitFor returns the first entry for which match is true, failing the
// test after timeout (stretched on an emulated CPU: netlab.Slowed).
func (j *Journal) WaitFor(t testing.TB, timeout time.Duration, what string, match func(map[string]string) bool) map[string]string {
	t.Helper()
	e, err := j.Journal.WaitFor(netlab.Slowed(timeout), what, match)
	check(t, err)
	return e
}

// JournalStream is the value of $JOURNAL_STREAM that makes a process with
// stderr f believe that stderr is connected to journald.
func JournalStream(t testing.TB, f *os.File) string {
	t.Helper()
	stream, err := netlab.JournalStream(f)
	check(t, err)
	return stream
}
