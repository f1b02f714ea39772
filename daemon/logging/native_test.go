// SPDX-License-Identifier: Apache-2.0

package logging

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nettcfilter/net-tc-filter/daemon/testnet"
)

// bigValue is larger than a unix datagram may be, so that go-systemd passes
// the entry in a file descriptor.
const bigValue = 1 << 20

// journalChild runs inside the mount namespace with JOURNAL_STREAM naming its
// stderr, and logs what TestJournalNativeProtocol expects.
func journalChild() int {
	h := NewHandler(os.Stderr, slog.LevelDebug)
	if _, ok := h.(*journalHandler); !ok {
		fmt.Printf("NewHandler chose %T with JOURNAL_STREAM=%s\n", h, os.Getenv("JOURNAL_STREAM"))
		return 1
	}
	slog.New(h).Info("chosen by NewHandler")

	l := slog.New(NewJournalHandler(slog.LevelDebug)).With("generation", 7)
	l.Warn("denied", "MESSAGE_ID", "5e6f9c2ba1d34b7f8c0e", "NTF_ACTION", "deny",
		"err", errors.New("boom"), "files", []string{"a.yaml", "b.yaml"}, "empty", "")
	l.Error("line one\nline two", "detail", "x\ny")
	l.Debug("big", "blob", strings.Repeat("x", bigValue))
	return 0
}

// TestJournalNativeProtocol sends through go-systemd's real code path, to
// the fixed socket path journald listens on (made the test's in a private
// mount namespace by testnet's Journal.Wrap), and reads what arrives there
// as journald would.
func TestJournalNativeProtocol(t *testing.T) {
	testnet.RequireRoot(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	j := testnet.ListenJournal(t)
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()

	before := hostRun(t)
	var stdout bytes.Buffer
	args := append(j.Wrap(), exe, "-test.run=^$")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), childEnv+"=journal", "JOURNAL_STREAM="+testnet.JournalStream(t, stderr))
	cmd.Stdout = &stdout
	cmd.Stderr = stderr
	runErr := cmd.Run()
	errOut, _ := os.ReadFile(stderr.Name())
	if runErr != nil {
		t.Fatalf("child: %v\nstdout: %s\nstderr: %s", runErr, stdout.Bytes(), errOut)
	}
	if len(errOut) != 0 {
		t.Errorf("child wrote to stderr, so journald was not reached:\n%s", errOut)
	}
	if after := hostRun(t); after != before {
		t.Errorf("the host's /run changed:\nbefore: %s\nafter:  %s", before, after)
	}

	want := []map[string]string{{
		"MESSAGE": "chosen by NewHandler", "PRIORITY": "6", "SYSLOG_IDENTIFIER": "net-tc-filter",
	}, {
		"MESSAGE": "denied", "PRIORITY": "4", "SYSLOG_IDENTIFIER": "net-tc-filter",
		"MESSAGE_ID": "5e6f9c2ba1d34b7f8c0e", "NTF_ACTION": "deny",
		"GENERATION": "7", "ERR": "boom", "FILES": "[a.yaml b.yaml]", "EMPTY": "",
	}, {
		"MESSAGE": "line one\nline two", "PRIORITY": "3", "SYSLOG_IDENTIFIER": "net-tc-filter",
		"GENERATION": "7", "DETAIL": "x\ny",
	}, {
		"MESSAGE": "big", "PRIORITY": "7", "SYSLOG_IDENTIFIER": "net-tc-filter",
		"GENERATION": "7", "BLOB": strings.Repeat("x", bigValue),
	}}
	// The child has exited, so every entry is queued on the socket. A field
	// sent twice fails the test too: ParseJournalEntry refuses the entry.
	got := make([]map[string]string, len(want))
	for i := range want {
		got[i] = j.WaitFor(t, 5*time.Second, fmt.Sprintf("number %d", i+1), func(map[string]string) bool { return true })
	}
	select {
	case e := <-j.C:
		t.Errorf("more than %d entries: %.200q", len(want), e)
	case <-time.After(300 * time.Millisecond):
	}
	passed := j.PassedFD()
	for i, w := range want {
		if big := i == len(want)-1; passed[i] != big {
			t.Errorf("entry %d came in a passed file: %v, want %v", i, passed[i], big)
		}
		for k, v := range w {
			if g, ok := got[i][k]; !ok || g != v {
				t.Errorf("entry %d: %s = %.80q (present %v), want %.80q", i, k, g, ok, v)
			}
		}
		for k, v := range got[i] {
			if _, ok := w[k]; !ok {
				t.Errorf("entry %d: unexpected field %s=%.80q", i, k, v)
			}
		}
	}
}

// hostRun describes what the test could leave behind on the host: the
// directories it creates in the namespace and the mounts under /run. The
// network namespaces under /run/netns are left out: tests of other packages,
// run at the same time, add and delete theirs.
func hostRun(t *testing.T) string {
	t.Helper()
	var s strings.Builder
	for _, p := range []string{"/run", "/run/systemd", "/run/systemd/journal"} {
		_, err := os.Lstat(p)
		fmt.Fprintf(&s, "%s exists=%v; ", p, err == nil)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == "/run" || strings.HasPrefix(f[4], "/run/")) && !strings.HasPrefix(f[4], "/run/netns/") {
			fmt.Fprintf(&s, "mount %s; ", f[4])
		}
	}
	return s.String()
}
